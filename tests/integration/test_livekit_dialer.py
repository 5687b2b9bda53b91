"""LiveKitDialer end-to-end against the LiveKit stand-in (real livekit-api client, no mocks):
every row of the outcome mapping, the stage callbacks, what LiveKit receives, and that an
ambiguous dial is never repeated while the call exists."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest

from dialer.errors import (
    CallNotConnected,
    DialError,
    PermanentDialError,
    ThrottledError,
    TransientDialError,
)
from dialer.livekit_dialer import DialAnswered, DialPlan, LiveKitDialer
from dialer.livekit_standin import LiveKitStandIn

T = TypeVar("T")
SECRET = "dialer-test-secret-0123456789abcdef"
NUMBER = "+32470000001"
TRUNK = "ST_outbound"
FROM = "+3225550000"
AGENT = "screening-agent"


def run(factory: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        return await factory()

    return asyncio.run(main())


@pytest.fixture()
def lk() -> Iterator[LiveKitStandIn]:
    with LiveKitStandIn(
        api_secret=SECRET, ring_seconds=0.2, slow_seconds=0.3, hang_seconds=30
    ) as standin:
        yield standin


def make_dialer(url: str, secret: str = SECRET, **overrides: Any) -> LiveKitDialer:
    options: dict[str, Any] = {
        "trunk_id": TRUNK,
        "from_number": FROM,
        "agent_name": AGENT,
        "request_timeout_s": 2.0,
        "transient_attempts": 3,
        "backoff_base_s": 0.01,
    }
    options.update(overrides)
    return LiveKitDialer(url, "devkey", secret, **options)


def plan(call_id: str = "call-1", attempt: int = 1, ringing: int = 5) -> DialPlan:
    metadata = json.dumps({"call_id": call_id, "job_title": "Picker"})
    return DialPlan(
        call_id=call_id,
        attempt=attempt,
        room_name=f"screening-{call_id}-{attempt}",
        phone_e164=NUMBER,
        room_metadata=metadata,
        dispatch_metadata=json.dumps({"call_id": call_id, "dialer": {"attempt": attempt}}),
        participant_identity="phone_user",
        ringing_timeout_s=ringing,
        max_call_duration_s=600,
        empty_timeout_s=45,
    )


def dial(lk: LiveKitStandIn, the_plan: DialPlan | None = None, **overrides: Any) -> DialAnswered:
    async def go() -> DialAnswered:
        dialer = make_dialer(lk.url, **overrides)
        try:
            return await dialer.dial(the_plan or plan())
        finally:
            await dialer.aclose()

    return run(go)


def dial_error(lk: LiveKitStandIn, the_plan: DialPlan | None = None, **kw: Any) -> DialError:
    with pytest.raises(DialError) as caught:
        dial(lk, the_plan, **kw)
    return caught.value


def sip_requests(lk: LiveKitStandIn) -> int:
    return len(lk.requests_for("CreateSIPParticipant"))


# -- answered --------------------------------------------------------------------------------


def test_answer(lk: LiveKitStandIn) -> None:
    answered = dial(lk)
    assert answered.room_name == "screening-call-1-1"
    assert answered.participant_identity == "phone_user"
    assert answered.sip_call_id == lk.dials[0].sip_call_id
    assert answered.answered_after_s >= 0
    [record] = lk.dials
    assert record.result == "answered" and record.active


def test_livekit_receives_what_the_design_asks_for(lk: LiveKitStandIn) -> None:
    the_plan = plan(ringing=7)
    dial(lk, the_plan)
    [room] = lk.rooms
    assert (room.name, room.empty_timeout, room.metadata) == (
        the_plan.room_name,
        45,
        the_plan.room_metadata,
    )
    assert not room.created_implicitly
    [dispatch] = lk.dispatches
    assert (dispatch.agent_name, dispatch.room, dispatch.metadata) == (
        AGENT,
        the_plan.room_name,
        the_plan.dispatch_metadata,
    )
    [record] = lk.dials
    assert (record.phone_number, record.trunk_id, record.from_number) == (NUMBER, TRUNK, FROM)
    assert record.participant_identity == "phone_user"
    assert (record.ringing_timeout_s, record.max_call_duration_s) == (7.0, 600.0)
    assert record.wait_until_answered is True
    assert record.krisp_enabled is False
    assert record.participant_attributes == {"dialer.call_id": "call-1", "dialer.attempt": "1"}
    assert [r.method for r in lk.requests] == [
        "CreateRoom",
        "CreateDispatch",
        "CreateSIPParticipant",
    ]


def test_without_from_number_the_trunk_default_is_used(lk: LiveKitStandIn) -> None:
    dial(lk, from_number=None)
    assert lk.dials[0].from_number == ""


def test_on_stage_is_called_before_each_request(lk: LiveKitStandIn) -> None:
    seen: list[tuple[str, list[str]]] = []

    def on_stage(stage: str) -> None:
        seen.append((stage, [r.method for r in lk.requests]))

    async def go() -> None:
        dialer = make_dialer(lk.url)
        try:
            await dialer.dial(plan(), on_stage=on_stage)
        finally:
            await dialer.aclose()

    run(go)
    assert seen == [
        ("room_created", []),
        ("dispatched", ["CreateRoom"]),
        ("sip_requested", ["CreateRoom", "CreateDispatch"]),
    ]


@pytest.mark.parametrize("scenario", ["voicemail", "slow"])
def test_voicemail_and_slow_are_answered(lk: LiveKitStandIn, scenario: str) -> None:
    lk.set_scenarios({NUMBER: scenario})
    answered = dial(lk)
    if scenario == "slow":
        assert answered.answered_after_s >= 0.3
    assert [d.scenario for d in lk.dials] == [scenario]


# -- every row of the outcome mapping --------------------------------------------------------


@pytest.mark.parametrize(
    ("scenario", "error_type", "outcome", "sip_code"),
    [
        ("busy", CallNotConnected, "busy", 486),
        ("sip:600", CallNotConnected, "busy", 600),
        ("no_answer", CallNotConnected, "no_answer", 480),
        ("sip:408", CallNotConnected, "no_answer", 408),
        ("sip:487", CallNotConnected, "no_answer", 487),
        ("decline", CallNotConnected, "declined", 603),
        ("sip:607", CallNotConnected, "declined", 607),
        ("invalid", PermanentDialError, "failed", 404),
        ("sip:484", PermanentDialError, "failed", 484),
        ("sip:400", PermanentDialError, "failed", 400),
        ("sip:410", PermanentDialError, "failed", 410),
        ("sip:604", PermanentDialError, "failed", 604),
        ("sip:403", PermanentDialError, "failed", 403),
        ("throttled", ThrottledError, "throttled", 503),
        ("sip:401", ThrottledError, "throttled", 401),
        ("sip:407", ThrottledError, "throttled", 407),
    ],
)
def test_sip_outcomes(
    lk: LiveKitStandIn, scenario: str, error_type: type[DialError], outcome: str, sip_code: int
) -> None:
    lk.set_scenarios({NUMBER: scenario})
    error = dial_error(lk)
    assert type(error) is error_type, error
    assert error.sip_status_code == sip_code
    if isinstance(error, CallNotConnected):
        assert error.outcome == outcome
    assert NUMBER not in str(error)
    assert len(lk.dials) == 1  # a carrier answer is final: never redialed
    assert sip_requests(lk) == 1


@pytest.mark.parametrize(
    ("scenario", "error_type"),
    [
        ("twirp:resource_exhausted", ThrottledError),
        ("twirp:permission_denied", ThrottledError),
        ("twirp:invalid_argument", PermanentDialError),
    ],
)
def test_twirp_outcomes_without_sip_code(
    lk: LiveKitStandIn, scenario: str, error_type: type[DialError]
) -> None:
    lk.set_scenarios({NUMBER: scenario})
    error = dial_error(lk)
    assert type(error) is error_type
    assert error.sip_status_code is None
    assert error.twirp_code == scenario.removeprefix("twirp:")
    assert sip_requests(lk) == 1


def test_server_error_is_retried_then_answered(lk: LiveKitStandIn) -> None:
    lk.set_scenarios({NUMBER: ["server_error", "answer"]})
    dial(lk)
    assert len(lk.dials) == 1
    methods = [r.method for r in lk.requests]
    assert methods == [
        "CreateRoom",
        "CreateDispatch",
        "CreateSIPParticipant",
        "ListParticipants",  # the call is not there: dialing again is safe
        "CreateSIPParticipant",
    ]


def test_server_error_every_time_is_transient_after_bounded_attempts(lk: LiveKitStandIn) -> None:
    lk.set_scenarios({NUMBER: "server_error"})
    error = dial_error(lk)
    assert type(error) is TransientDialError
    assert error.twirp_code == "internal"
    assert lk.dials == []
    assert sip_requests(lk) == 3


def test_carrier_5xx_is_transient_and_redialed_only_when_the_call_is_gone(
    lk: LiveKitStandIn,
) -> None:
    lk.set_scenarios({NUMBER: ["sip:502", "answer"]})
    dial(lk)
    assert [d.result for d in lk.dials] == ["failed", "answered"]


def test_timeout_finds_the_call_and_does_not_dial_twice(lk: LiveKitStandIn) -> None:
    lk.set_scenarios({NUMBER: "timeout"})
    started = time.monotonic()
    answered = dial(lk, plan(ringing=1))  # client timeout: max(2, 1 + 2) = 3 s
    assert time.monotonic() - started >= 2.5
    assert answered.participant_identity == "phone_user"
    assert answered.sip_call_id == lk.dials[0].sip_call_id
    assert len(lk.dials) == 1
    assert sip_requests(lk) == 1
    assert [r.method for r in lk.requests][-2:] == ["CreateSIPParticipant", "ListParticipants"]


def test_lost_request_is_redialed_after_checking_the_room(lk: LiveKitStandIn) -> None:
    lk.set_scenarios({NUMBER: ["hang", "answer"]})
    dial(lk, plan(ringing=1))
    assert len(lk.dials) == 1
    assert sip_requests(lk) == 2
    methods = [r.method for r in lk.requests]
    assert methods.index("ListParticipants") > methods.index("CreateSIPParticipant")


def test_already_in_room_counts_as_answered(lk: LiveKitStandIn) -> None:
    first = dial(lk)
    second = dial(lk)  # same room and identity: LiveKit says already_exists
    assert second.sip_call_id == first.sip_call_id
    assert len(lk.dials) == 1


# -- transient failures on the other steps ---------------------------------------------------


def test_create_room_transient_failure_is_retried(lk: LiveKitStandIn) -> None:
    lk.inject_failure("CreateRoom", "unavailable", times=2)
    dial(lk)
    assert len(lk.requests_for("CreateRoom")) == 3
    assert len(lk.dials) == 1


def test_create_room_gives_up_after_bounded_attempts(lk: LiveKitStandIn) -> None:
    lk.inject_failure("CreateRoom", "unavailable", times=5)
    error = dial_error(lk)
    assert type(error) is TransientDialError
    assert len(lk.requests_for("CreateRoom")) == 3
    assert sip_requests(lk) == 0


def test_dispatch_that_took_effect_is_not_repeated(lk: LiveKitStandIn) -> None:
    lk.inject_failure("CreateDispatch", "internal", after_apply=True)
    dial(lk)
    assert len(lk.dispatches) == 1
    assert [r.method for r in lk.requests][:4] == [
        "CreateRoom",
        "CreateDispatch",
        "ListDispatch",
        "CreateSIPParticipant",
    ]


def test_dispatch_that_failed_is_retried(lk: LiveKitStandIn) -> None:
    lk.inject_failure("CreateDispatch", "unavailable")
    dial(lk)
    assert len(lk.dispatches) == 1
    assert len(lk.requests_for("CreateDispatch")) == 2


def test_wrong_secret_is_a_configuration_problem_not_a_candidate_problem(
    lk: LiveKitStandIn,
) -> None:
    error = dial_error(lk, secret="wrong-secret-wrong-secret-0123456789")
    assert type(error) is ThrottledError
    assert error.twirp_code == "unauthenticated"
    assert len(lk.requests_for("CreateRoom")) == 1  # not retried
    assert sip_requests(lk) == 0


def test_connection_refused_never_escapes_as_a_library_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    async def go() -> None:
        dialer = make_dialer(f"http://127.0.0.1:{port}")
        try:
            with pytest.raises(TransientDialError):
                await dialer.dial(plan())
            with pytest.raises(TransientDialError):
                await dialer.call_present("room", "phone_user")
            with pytest.raises(TransientDialError):
                await dialer.hang_up("room")
        finally:
            await dialer.aclose()

    run(go)


# -- presence and hang-up --------------------------------------------------------------------


def test_call_present_and_hang_up(lk: LiveKitStandIn) -> None:
    the_plan = plan()

    async def go() -> None:
        dialer = make_dialer(lk.url)
        try:
            await dialer.dial(the_plan)
            assert await dialer.call_present(the_plan.room_name, "phone_user")
            assert not await dialer.call_present(the_plan.room_name, "someone-else")
            assert not await dialer.call_present("no-such-room", "phone_user")
            await dialer.hang_up(the_plan.room_name)
            assert not await dialer.call_present(the_plan.room_name, "phone_user")
            await dialer.hang_up(the_plan.room_name)  # already gone: fine
        finally:
            await dialer.aclose()

    run(go)
    [record] = lk.dials
    assert (record.active, record.end_reason) == (False, "removed")
    [room] = lk.rooms
    assert room.deleted_at is not None
    assert lk.participants(the_plan.room_name) == []
    methods = [r.method for r in lk.requests]
    assert methods.index("RemoveParticipant") < methods.index("DeleteRoom")


def test_hang_up_after_a_failed_dial_deletes_the_empty_room(lk: LiveKitStandIn) -> None:
    lk.set_scenarios({NUMBER: "busy"})

    async def go() -> None:
        dialer = make_dialer(lk.url)
        try:
            with pytest.raises(CallNotConnected):
                await dialer.dial(plan())
            await dialer.hang_up(plan().room_name)
        finally:
            await dialer.aclose()

    run(go)
    assert [r.deleted_at is not None for r in lk.rooms] == [True]
    assert lk.requests_for("RemoveParticipant") == []


def test_one_session_serves_many_dials(lk: LiveKitStandIn) -> None:
    async def go() -> None:
        dialer = make_dialer(lk.url)
        try:
            await dialer.dial(plan("a"))
            ((session, _),) = dialer._per_loop.values()
            await dialer.dial(plan("b"))
            assert [s for s, _ in dialer._per_loop.values()] == [session]
        finally:
            await dialer.aclose()
        assert session.closed and not dialer._per_loop

    run(go)
    assert len(lk.dials) == 2


def test_threads_each_with_their_own_loop_dial_side_by_side(lk: LiveKitStandIn) -> None:
    """A worker with a thread pool: one dialer, one event loop (and HTTP session) per thread."""
    import threading

    dialer = make_dialer(lk.url)
    sessions: list[object] = []
    errors: list[BaseException] = []

    def one_thread(n: int) -> None:
        async def go() -> None:
            await dialer.dial(plan(f"t{n}"))
            await dialer.dial(plan(f"t{n}", attempt=2))
            sessions.append(dialer._per_loop[asyncio.get_running_loop()][0])
            await dialer.aclose()

        try:
            asyncio.run(go())
        except BaseException as exc:  # reported below, with the thread's own traceback
            errors.append(exc)

    threads = [threading.Thread(target=one_thread, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert len(lk.dials) == 8 and len({id(s) for s in sessions}) == 4
