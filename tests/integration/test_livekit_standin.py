"""The LiveKit stand-in, driven by the real `livekit-api` client (no mocks)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
from livekit.api import AccessToken, LiveKitAPI, SIPGrants, VideoGrants
from livekit.api.twirp_client import ServerError, SipCallError
from livekit.protocol import agent_dispatch as proto_dispatch
from livekit.protocol import models as proto_models
from livekit.protocol import room as proto_room
from livekit.protocol import sip as proto_sip

from dialer.livekit_standin import AnsweredCall, DialRecord, LiveKitStandIn, ScenarioBook

T = TypeVar("T")
SECRET = "stand-in-test-secret-0123456789abcdef"
ROOT = Path(__file__).resolve().parents[2]


def run(factory: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        return await factory()

    return asyncio.run(main())


@pytest.fixture()
def lk() -> Iterator[LiveKitStandIn]:
    with LiveKitStandIn(
        api_secret=SECRET, ring_seconds=0.2, slow_seconds=0.2, hang_seconds=30
    ) as standin:
        yield standin


def client(lk: LiveKitStandIn, secret: str | None = None) -> LiveKitAPI:
    return LiveKitAPI(lk.url, lk.api_key, secret or lk.api_secret, failover=False)


def sip_request(
    number: str, room: str = "room-1", identity: str = "phone_user", ringing: int = 5
) -> proto_sip.CreateSIPParticipantRequest:
    return proto_sip.CreateSIPParticipantRequest(
        room_name=room,
        sip_trunk_id="ST_trunk",
        sip_call_to=number,
        sip_number="+3225550000",
        participant_identity=identity,
        wait_until_answered=True,
        ringing_timeout={"seconds": ringing},
    )


async def dial(lk: LiveKitStandIn, number: str, **kwargs: Any) -> proto_sip.SIPParticipantInfo:
    api = client(lk)
    try:
        return await api.sip.create_sip_participant(sip_request(number, **kwargs))
    finally:
        await api.aclose()


async def dial_error(lk: LiveKitStandIn, number: str, **kwargs: Any) -> ServerError:
    with pytest.raises(ServerError) as caught:
        await dial(lk, number, **kwargs)
    return caught.value


async def participants(lk: LiveKitStandIn, room: str) -> list[proto_models.ParticipantInfo]:
    api = client(lk)
    try:
        listed = await api.room.list_participants(proto_room.ListParticipantsRequest(room=room))
        return list(listed.participants)
    finally:
        await api.aclose()


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def post_json(url: str, body: Any) -> Any:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


# -- authentication --------------------------------------------------------------------------


def test_wrong_secret_is_unauthenticated(lk: LiveKitStandIn) -> None:
    async def go() -> None:
        api = client(lk, secret="not-the-secret-not-the-secret-00000")
        try:
            with pytest.raises(ServerError) as caught:
                await api.room.create_room(proto_room.CreateRoomRequest(name="r"))
        finally:
            await api.aclose()
        assert caught.value.code == "unauthenticated"
        assert caught.value.status == 401

    run(go)
    assert lk.rooms == []


def test_wrong_api_key_and_expired_token_are_unauthenticated(lk: LiveKitStandIn) -> None:
    import datetime as dt

    grants = VideoGrants(room_create=True)
    wrong_key = AccessToken("other-key", lk.api_secret).with_grants(grants).to_jwt()
    expired = (
        AccessToken(lk.api_key, lk.api_secret)
        .with_grants(grants)
        .with_ttl(dt.timedelta(minutes=-10))
        .to_jwt()
    )

    async def go(token: str) -> ServerError:
        api = LiveKitAPI.with_token(token, lk.url, failover=False)
        try:
            with pytest.raises(ServerError) as caught:
                await api.room.create_room(proto_room.CreateRoomRequest(name="r"))
            return caught.value
        finally:
            await api.aclose()

    for token in (wrong_key, expired):
        error = run(lambda token=token: go(token))  # type: ignore[misc]
        assert (error.code, error.status) == ("unauthenticated", 401)


def test_missing_bearer_token_is_unauthenticated(lk: LiveKitStandIn) -> None:
    async def go() -> tuple[int, Any]:
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"{lk.url}/twirp/livekit.RoomService/CreateRoom",
                data=b"",
                headers={"Content-Type": "application/protobuf"},
            ) as response,
        ):
            return response.status, await response.json()

    status, body = run(go)
    assert status == 401
    assert body["code"] == "unauthenticated"


@pytest.mark.parametrize(
    ("grants", "sip", "call"),
    [
        (VideoGrants(room_admin=True), None, "create_room"),
        (VideoGrants(room_create=True), None, "list_participants"),
        (VideoGrants(room_admin=True, room="another-room"), None, "list_participants"),
        (VideoGrants(room_create=True), SIPGrants(admin=True), "create_sip_participant"),
        (VideoGrants(room_create=True), None, "create_dispatch"),
    ],
)
def test_missing_grant_is_permission_denied(
    lk: LiveKitStandIn, grants: VideoGrants, sip: SIPGrants | None, call: str
) -> None:
    token = AccessToken(lk.api_key, lk.api_secret).with_grants(grants)
    if sip is not None:
        token.with_sip_grants(sip)
    jwt_token = token.to_jwt()

    async def go() -> ServerError:
        api = LiveKitAPI.with_token(jwt_token, lk.url, failover=False)
        requests: dict[str, Callable[[], Awaitable[Any]]] = {
            "create_room": lambda: api.room.create_room(proto_room.CreateRoomRequest(name="r")),
            "list_participants": lambda: api.room.list_participants(
                proto_room.ListParticipantsRequest(room="room-1")
            ),
            "create_sip_participant": lambda: api.sip.create_sip_participant(
                sip_request("+3247000001")
            ),
            "create_dispatch": lambda: api.agent_dispatch.create_dispatch(
                proto_dispatch.CreateAgentDispatchRequest(agent_name="a", room="room-1")
            ),
        }
        try:
            with pytest.raises(ServerError) as caught:
                await requests[call]()
            return caught.value
        finally:
            await api.aclose()

    error = run(go)
    assert (error.code, error.status) == ("permission_denied", 403)
    assert lk.dials == []


def test_unknown_route_is_bad_route(lk: LiveKitStandIn) -> None:
    async def go() -> tuple[int, Any]:
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"{lk.url}/twirp/livekit.RoomService/Teleport",
                data=b"",
                headers={"Content-Type": "application/protobuf"},
            ) as response,
        ):
            return response.status, await response.json()

    status, body = run(go)
    assert (status, body["code"]) == (404, "bad_route")


def test_json_bodies_are_accepted(lk: LiveKitStandIn) -> None:
    token = AccessToken(lk.api_key, lk.api_secret).with_grants(VideoGrants(room_create=True))

    async def go() -> Any:
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"{lk.url}/twirp/livekit.RoomService/CreateRoom",
                json={"name": "json-room", "empty_timeout": 12, "metadata": "{}"},
                headers={"Authorization": f"Bearer {token.to_jwt()}"},
            ) as response,
        ):
            assert response.status == 200
            return await response.json()

    body = run(go)
    assert body["name"] == "json-room"
    assert body["empty_timeout"] == 12


# -- scenarios through the real client -------------------------------------------------------


@pytest.mark.parametrize(
    ("scenario", "sip_code", "twirp_code", "http_status"),
    [
        ("busy", 486, "resource_exhausted", 429),
        ("no_answer", 480, "resource_exhausted", 429),
        ("decline", 603, "permission_denied", 403),
        ("invalid", 404, "not_found", 404),
        ("throttled", 503, "failed_precondition", 412),
        ("sip:600", 600, "resource_exhausted", 429),
        ("sip:484", 484, "invalid_argument", 400),
    ],
)
def test_failure_scenarios_raise_sip_call_errors(
    lk: LiveKitStandIn, scenario: str, sip_code: int, twirp_code: str, http_status: int
) -> None:
    lk.set_scenarios({"+3247000001": scenario})
    error = run(lambda: dial_error(lk, "+3247000001"))
    assert isinstance(error, SipCallError)
    assert error.sip_status_code == sip_code
    assert (error.code, error.status) == (twirp_code, http_status)
    assert error.metadata["sip_status_code"] == str(sip_code)
    assert error.sip_status
    [record] = lk.dials
    assert (record.result, record.sip_status_code, record.scenario) == (
        "failed",
        sip_code,
        scenario,
    )
    assert not record.active
    assert run(lambda: participants(lk, "room-1")) == []


def test_throttled_message_names_the_limit(lk: LiveKitStandIn) -> None:
    lk.set_scenarios({"+3247000001": "throttled"})
    error = run(lambda: dial_error(lk, "+3247000001"))
    assert "limit" in error.message.lower()
    assert error.metadata["sip_status"] == "Service Unavailable"


def test_no_answer_rings_for_the_scaled_ring_time(lk: LiveKitStandIn) -> None:
    lk.set_scenarios({"+3247000001": "no_answer"})
    started = time.monotonic()
    run(lambda: dial_error(lk, "+3247000001"))
    assert 0.2 <= time.monotonic() - started < 2


def test_server_error_never_reaches_the_trunk(lk: LiveKitStandIn) -> None:
    lk.set_scenarios({"+3247000001": "server_error"})
    error = run(lambda: dial_error(lk, "+3247000001"))
    assert not isinstance(error, SipCallError)
    assert (error.code, error.status) == ("internal", 500)
    assert lk.dials == []
    assert [r.http_status for r in lk.requests_for("CreateSIPParticipant")] == [500]


def test_twirp_scenario_has_no_sip_code(lk: LiveKitStandIn) -> None:
    lk.set_scenarios({"+3247000001": "twirp:resource_exhausted"})
    error = run(lambda: dial_error(lk, "+3247000001"))
    assert not isinstance(error, SipCallError)
    assert (error.code, error.status) == ("resource_exhausted", 429)
    assert lk.dials == []


@pytest.mark.parametrize("scenario", ["answer", "voicemail", "slow"])
def test_answering_scenarios_put_an_active_sip_participant_in_the_room(
    lk: LiveKitStandIn, scenario: str
) -> None:
    lk.set_scenarios({"+3247000001": scenario})
    started = time.monotonic()
    info = run(lambda: dial(lk, "+3247000001"))
    elapsed = time.monotonic() - started
    assert info.participant_identity == "phone_user"
    assert info.room_name == "room-1"
    assert info.sip_call_id.startswith("SCL_")
    [member] = run(lambda: participants(lk, "room-1"))
    assert member.kind == proto_models.ParticipantInfo.SIP
    assert member.attributes["sip.callStatus"] == "active"
    assert member.attributes["sip.callID"] == info.sip_call_id
    [record] = lk.dials
    assert (record.result, record.scenario) == ("answered", scenario)
    assert record.active
    if scenario == "slow":
        assert elapsed >= 0.2


def test_timeout_reaches_the_trunk_and_the_participant_stays(lk: LiveKitStandIn) -> None:
    lk.set_scenarios({"+3247000001": "timeout"})
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        # ringing_timeout 1 s: the client's request timeout is 1 + 2 s.
        run(lambda: dial(lk, "+3247000001", ringing=1))
    assert 2.5 < time.monotonic() - started < 10
    [member] = run(lambda: participants(lk, "room-1"))
    assert member.identity == "phone_user"
    [record] = lk.dials
    assert record.result == "answered"


def test_scenario_lists_are_consumed_one_per_dial(lk: LiveKitStandIn) -> None:
    lk.set_scenarios({"+3247000001": ["busy", "no_answer", "answer"]})
    assert run(lambda: dial_error(lk, "+3247000001", room="a")).code == "resource_exhausted"
    error = run(lambda: dial_error(lk, "+3247000001", room="b"))
    assert isinstance(error, SipCallError) and error.sip_status_code == 480
    run(lambda: dial(lk, "+3247000001", room="c"))
    run(lambda: dial(lk, "+3247000001", room="d"))  # the last entry repeats
    assert [d.scenario for d in lk.dials] == ["busy", "no_answer", "answer", "answer"]
    # Other numbers get the default.
    run(lambda: dial(lk, "+3247000099", room="e"))
    assert lk.dials[-1].scenario == "answer"


def test_scenario_book_rejects_unknown_names() -> None:
    with pytest.raises(ValueError, match="unknown scenario"):
        ScenarioBook({"+3247000001": "explode"})
    with pytest.raises(ValueError):
        ScenarioBook({"+3247000001": []})
    book = ScenarioBook.from_obj({"+1": "busy", "+2": ["sip:408", "answer"]})
    assert [book.next_for("+2"), book.next_for("+2"), book.next_for("+3")] == [
        "sip:408",
        "answer",
        "answer",
    ]


def test_scenarios_load_from_a_json_file(tmp_path: Path) -> None:
    path = tmp_path / "scenarios.json"
    path.write_text(json.dumps({"default": "busy", "numbers": {"+1": ["decline", "answer"]}}))
    book = ScenarioBook.from_file(path)
    assert [book.next_for("+1"), book.next_for("+1"), book.next_for("+9")] == [
        "decline",
        "answer",
        "busy",
    ]


def test_without_wait_until_answered_the_response_comes_back_at_once(lk: LiveKitStandIn) -> None:
    lk.set_scenarios({"+3247000001": "no_answer"})
    request = sip_request("+3247000001")
    request.wait_until_answered = False

    async def go() -> None:
        api = client(lk)
        try:
            await api.sip.create_sip_participant(request)
            assert lk.active_calls()  # still ringing
            await asyncio.sleep(0.5)
        finally:
            await api.aclose()

    run(go)
    [record] = lk.dials
    assert (record.result, record.sip_status_code) == ("failed", 480)


# -- recording -------------------------------------------------------------------------------


def test_dials_and_requests_are_recorded(lk: LiveKitStandIn) -> None:
    async def go() -> None:
        api = client(lk)
        try:
            await api.room.create_room(
                proto_room.CreateRoomRequest(name="room-1", empty_timeout=30, metadata='{"a":1}')
            )
            await api.agent_dispatch.create_dispatch(
                proto_dispatch.CreateAgentDispatchRequest(
                    agent_name="screening-agent", room="room-1", metadata='{"job":1}'
                )
            )
            request = sip_request("+3247000001", ringing=7)
            request.max_call_duration.seconds = 600
            await api.sip.create_sip_participant(request)
        finally:
            await api.aclose()

    run(go)
    [record] = lk.dials
    assert record.phone_number == "+3247000001"
    assert (record.trunk_id, record.from_number) == ("ST_trunk", "+3225550000")
    assert (record.room_name, record.participant_identity) == ("room-1", "phone_user")
    assert (record.ringing_timeout_s, record.max_call_duration_s) == (7.0, 600.0)
    assert record.wait_until_answered and not record.krisp_enabled
    assert record.answered_at is not None and record.answered_at >= record.monotonic
    methods = [(r.service, r.method, r.http_status) for r in lk.requests]
    assert methods == [
        ("livekit.RoomService", "CreateRoom", 200),
        ("livekit.AgentDispatchService", "CreateDispatch", 200),
        ("livekit.SIP", "CreateSIPParticipant", 200),
    ]
    sip_req = lk.requests_for("CreateSIPParticipant")[0]
    assert record.request_id == sip_req.request_id and len(record.request_id) == 36
    assert "+3247000001" not in " ".join(r.summary for r in lk.requests)
    [room] = lk.rooms
    assert (room.metadata, room.empty_timeout, room.created_implicitly) == ('{"a":1}', 30, False)
    [dispatch] = lk.dispatches
    assert (dispatch.agent_name, dispatch.metadata) == ("screening-agent", '{"job":1}')


def test_dial_count_and_dials_from_read_only_the_new_records(lk: LiveKitStandIn) -> None:
    run(lambda: dial(lk, "+3247000001", room="room-1"))
    mark = lk.dial_count
    run(lambda: dial(lk, "+3247000002", room="room-2"))
    assert (mark, lk.dial_count) == (1, 2)
    assert [d.phone_number for d in lk.dials_from(mark)] == ["+3247000002"]
    assert lk.dials_from(lk.dial_count) == []


def test_requests_are_stamped_when_they_arrive_not_when_a_reader_lets_go(
    lk: LiveKitStandIn,
) -> None:
    """A bench copying the records holds the stand-in's lock; a request arriving meanwhile
    keeps its arrival time (a late stamp bunched INVITEs in bench/pacing.py)."""
    held = threading.Event()
    released_at: list[float] = []

    def reader() -> None:
        with lk._lock:
            held.set()
            time.sleep(0.3)
            released_at.append(time.monotonic())

    thread = threading.Thread(target=reader)
    thread.start()
    held.wait(2)
    sent_at = time.monotonic()
    run(lambda: dial(lk, "+3247000001"))
    thread.join()
    [record] = lk.dials
    [request] = lk.requests
    assert sent_at <= request.monotonic < released_at[0] - 0.2
    assert (record.monotonic, record.wall_time) == (request.monotonic, request.wall_time)


def test_max_concurrent_counts_ringing_and_talking_calls(lk: LiveKitStandIn) -> None:
    lk.set_scenarios({"+3247000001": "no_answer", "+3247000002": "no_answer"})

    async def go() -> None:
        await dial(lk, "+3247000003", room="talk")  # answered: stays active
        results = await asyncio.gather(
            dial(lk, "+3247000001", room="a"),
            dial(lk, "+3247000002", room="b"),
            return_exceptions=True,
        )
        assert all(isinstance(r, SipCallError) for r in results)

    run(go)
    assert lk.max_concurrent == 3
    assert [d.room_name for d in lk.active_calls()] == ["talk"]
    assert lk.stats()["active"] == 1
    timeline = [count for _, count in lk.concurrency_timeline()]
    assert max(timeline) == 3 and timeline[-1] == 1


def test_remove_participant_and_delete_room_end_calls(lk: LiveKitStandIn) -> None:
    async def go() -> None:
        await dial(lk, "+3247000001", room="a")
        await dial(lk, "+3247000002", room="b")
        api = client(lk)
        try:
            await api.room.remove_participant(
                proto_room.RoomParticipantIdentity(room="a", identity="phone_user")
            )
            await api.room.delete_room(proto_room.DeleteRoomRequest(room="b"))
            for call in (
                lambda: api.room.delete_room(proto_room.DeleteRoomRequest(room="b")),
                lambda: api.room.remove_participant(
                    proto_room.RoomParticipantIdentity(room="a", identity="phone_user")
                ),
            ):
                with pytest.raises(ServerError) as caught:
                    await call()
                assert caught.value.code == "not_found"
        finally:
            await api.aclose()

    run(go)
    assert [(d.room_name, d.end_reason) for d in lk.dials] == [
        ("a", "removed"),
        ("b", "room_deleted"),
    ]
    assert lk.active_calls() == []


def test_hangup_after_ends_answered_calls_by_itself() -> None:
    ended: list[DialRecord] = []
    with LiveKitStandIn(
        api_secret=SECRET, hangup_after_s={"voicemail": 0.2}, on_call_end=ended.append
    ) as lk:
        lk.set_scenarios({"+3247000001": "voicemail"})
        run(lambda: dial(lk, "+3247000001", room="vm"))
        run(lambda: dial(lk, "+3247000002", room="human"))
        deadline = time.monotonic() + 5
        while lk.dials[0].active and time.monotonic() < deadline:
            time.sleep(0.05)
        dials = lk.dials
        assert (dials[0].active, dials[0].end_reason) == (False, "hangup_after")
        assert dials[1].active  # answer: no hold time configured
        assert lk.participants("vm") == []
    assert [d.room_name for d in ended] == ["vm"]


def test_on_answer_hook_gets_room_and_dispatch_metadata_and_can_hang_up() -> None:
    answered: list[AnsweredCall] = []
    lk_box: list[LiveKitStandIn] = []

    async def on_answer(call: AnsweredCall) -> None:
        answered.append(call)
        await asyncio.sleep(0.05)  # the "conversation"
        lk_box[0].hang_up(call.room_name)

    with LiveKitStandIn(api_secret=SECRET, on_answer=on_answer) as lk:
        lk_box.append(lk)
        lk.set_scenarios({"+3247000001": "voicemail"})

        async def go() -> None:
            api = client(lk)
            try:
                await api.room.create_room(
                    proto_room.CreateRoomRequest(name="room-1", metadata='{"room":1}')
                )
                await api.agent_dispatch.create_dispatch(
                    proto_dispatch.CreateAgentDispatchRequest(
                        agent_name="agent", room="room-1", metadata='{"job":1}'
                    )
                )
                await api.sip.create_sip_participant(sip_request("+3247000001"))
            finally:
                await api.aclose()

        run(go)
        deadline = time.monotonic() + 5
        while lk.active_calls() and time.monotonic() < deadline:
            time.sleep(0.02)
        [record] = lk.dials
        assert record.end_reason == "callee_hung_up"
    [call] = answered
    assert (call.room_name, call.room_metadata, call.dispatch_metadata) == (
        "room-1",
        '{"room":1}',
        '{"job":1}',
    )
    assert (call.phone_number, call.scenario, call.participant_identity) == (
        "+3247000001",
        "voicemail",
        "phone_user",
    )


def test_injected_failures(lk: LiveKitStandIn) -> None:
    lk.inject_failure("CreateRoom", "unavailable")
    lk.inject_failure("CreateDispatch", "internal", after_apply=True)

    async def go() -> None:
        api = client(lk)
        try:
            with pytest.raises(ServerError) as caught:
                await api.room.create_room(proto_room.CreateRoomRequest(name="r"))
            assert (caught.value.code, caught.value.status) == ("unavailable", 503)
            await api.room.create_room(proto_room.CreateRoomRequest(name="r"))
            with pytest.raises(ServerError):
                await api.agent_dispatch.create_dispatch(
                    proto_dispatch.CreateAgentDispatchRequest(agent_name="a", room="r")
                )
        finally:
            await api.aclose()

    run(go)
    assert len(lk.rooms) == 1
    assert len(lk.dispatches) == 1  # applied, then failed


# -- introspection over HTTP and the standalone process --------------------------------------


def test_introspection_endpoints(lk: LiveKitStandIn) -> None:
    snapshot = post_json(
        f"{lk.url}/_standin/scenarios", {"numbers": {"+3247000001": ["busy", "answer"]}}
    )
    assert snapshot["numbers"]["+3247000001"] == ["busy", "answer"]
    run(lambda: dial_error(lk, "+3247000001", room="a"))
    run(lambda: dial(lk, "+3247000001", room="b"))
    dials = get_json(f"{lk.url}/_standin/dials")
    assert [(d["scenario"], d["result"], d["active"]) for d in dials] == [
        ("busy", "failed", False),
        ("answer", "answered", True),
    ]
    stats = get_json(f"{lk.url}/_standin/stats")
    assert (stats["active"], stats["max_concurrent"], stats["dials"]) == (1, 1, 2)
    assert post_json(f"{lk.url}/_standin/hangup", {"room": "b"}) == {"ended": 1}
    assert get_json(f"{lk.url}/_standin/stats")["active"] == 0
    requests = get_json(f"{lk.url}/_standin/requests")
    assert [r["method"] for r in requests] == ["CreateSIPParticipant"] * 2


def test_standalone_module_serves(tmp_path: Path) -> None:
    scenarios = tmp_path / "scenarios.json"
    scenarios.write_text(json.dumps({"numbers": {"+3247000001": "busy"}}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEKIT_")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dialer.livekit_standin",
            "--port",
            "0",
            "--api-key",
            "proc-key",
            "--api-secret",
            SECRET,
            "--scenarios",
            str(scenarios),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("LIVEKIT_URL=http://127.0.0.1:"), line
        url = line.removeprefix("LIVEKIT_URL=")

        async def go() -> ServerError:
            api = LiveKitAPI(url, "proc-key", SECRET, failover=False)
            try:
                with pytest.raises(ServerError) as caught:
                    await api.sip.create_sip_participant(sip_request("+3247000001"))
                await api.sip.create_sip_participant(sip_request("+3247000002", room="r2"))
                return caught.value
            finally:
                await api.aclose()

        error = run(go)
        assert isinstance(error, SipCallError) and error.sip_status_code == 486
        dials = get_json(f"{url}/_standin/dials")
        assert [d["result"] for d in dials] == ["failed", "answered"]
        assert get_json(f"{url}/_standin/stats")["max_concurrent"] == 1
    finally:
        proc.terminate()
        code = proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
    assert code == 0
