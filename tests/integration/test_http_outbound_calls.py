"""`POST /api/calls/outbound` (seeds/002) against a running pipeline: the API under uvicorn in
this process, a Celery worker and the beat as child processes (`LocalStack`, embedded Redis),
the LiveKit stand-in (real Twirp, real `livekit-api` client in the worker).

A small simulated agent answers for the callee: it notes LiveKit's participant id of the phone
participant, holds the call a moment, hangs up and publishes a `completed` result, so the
results consumer ends the job as the voice agent would.

Time: the shared demo clock (`DIALER_CLOCK=redis`) is set to Wednesday 10:00 in Brussels, so a
Belgian number is due at once and a New York one (04:00 there) waits for its calling window.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from livekit.protocol import room as proto_room

from dialer.clock import RedisClock
from dialer.http import create_app
from dialer.livekit_standin import AnsweredCall, LiveKitStandIn
from dialer.local_stack import LocalStack, point_app_at
from dialer.models import JobState
from dialer.runtime import Runtime
from dialer.settings import Settings
from tests.support.http import serve
from tests.support.livekit import api_client, publish_completed

TRUNK = "ST_outbound_trunk"
DEFAULT_FROM = "+3225550100"
WED_10_BRUSSELS = datetime(2026, 3, 4, 10, 0, tzinfo=ZoneInfo("Europe/Brussels")).astimezone(UTC)
ANSWERS = "+32470555001"
BUSY = "+32470555002"
NEW_YORK = "+12125550123"
RINGING_TIMEOUT_S = 5
HOLD_S = 1.5


class Callee:
    """on_answer hook: note the phone participant's id, hold, hang up, publish the result."""

    def __init__(self) -> None:
        self.standin: LiveKitStandIn | None = None
        self.participant_ids: dict[str, str] = {}
        self.errors: list[BaseException] = []
        self._pool = ThreadPoolExecutor(max_workers=1)

    async def __call__(self, call: AnsweredCall) -> None:
        assert self.standin is not None
        lkapi = api_client(self.standin)
        try:
            found = await lkapi.room.list_participants(
                proto_room.ListParticipantsRequest(room=call.room_name)
            )
        finally:
            await lkapi.aclose()
        for participant in found.participants:
            if participant.identity == call.participant_identity:
                self.participant_ids[call.room_name] = participant.sid
        await asyncio.sleep(HOLD_S)
        self.standin.hang_up(call.room_name)
        self._pool.submit(self._publish, call)

    def _publish(self, call: AnsweredCall) -> None:
        try:
            publish_completed(call)
        except BaseException as exc:  # surfaced by the tests
            self.errors.append(exc)

    def close(self) -> None:
        self._pool.shutdown(wait=True)


@dataclass
class Live:
    base: str
    standin: LiveKitStandIn
    callee: Callee
    runtime: Runtime


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    tmp = tmp_path_factory.mktemp("outbound")
    callee = Callee()
    standin = LiveKitStandIn({BUSY: "busy"}, ring_seconds=0.3, on_answer=callee).start()
    callee.standin = standin
    livekit = {
        "LIVEKIT_URL": standin.url,
        "LIVEKIT_API_KEY": standin.api_key,
        "LIVEKIT_API_SECRET": standin.api_secret,
    }
    stack = LocalStack(
        tmp / "stack",
        workers=1,
        concurrency=4,
        redis_appendonly=False,
        env_overrides={
            **livekit,
            "LIVEKIT_SIP_OUTBOUND_TRUNK_ID": TRUNK,
            "LIVEKIT_SIP_FROM_NUMBER": DEFAULT_FROM,
            "DIALER_CLOCK": "redis",
            "DIALER_RINGING_TIMEOUT_S": str(RINGING_TIMEOUT_S),
            "DIALER_SPOOL_DIR": str(tmp / "spool"),
        },
    )
    try:
        stack.start()
        assert stack.redis_url
        point_app_at(stack.redis_url)  # the callee publishes through this process's app
        # The API process has the LiveKit credentials too (as under `dialer run`).
        settings = Settings(clock="redis", ringing_timeout_s=RINGING_TIMEOUT_S, **livekit)
        runtime = Runtime.for_url(stack.redis_url, settings)
        RedisClock(runtime.client, runtime.keys.clock_offset).start_at(WED_10_BRUSSELS)
        stack.wait_ready()
        app = create_app(runtime, auth=False, broker_url=stack.redis_url)
        with serve(app) as base:
            yield Live(base, standin, callee, runtime)
    finally:
        stack.stop()
        standin.stop()
        callee.close()
    assert callee.errors == []


def post(live: Live, body: dict[str, Any]) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = httpx.post(f"{live.base}/api/calls/outbound", json=body, timeout=60)
    return response, time.monotonic() - started


def dial_of(live: Live, room: str) -> Any:
    return next((d for d in live.standin.dials if d.room_name == room), None)


def test_waits_until_answered_and_returns_the_participant_with_its_caller_id_and_agent(
    live: Live,
) -> None:
    response, _ = post(
        live,
        {
            "to": ANSWERS,
            "recipientName": "Jane Doe",
            "questions": ["What is your company name?"],
            "fromNumber": "+3225559999",
            "agentName": "vip-screener",
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    room = body["roomName"]
    dial = dial_of(live, room)
    assert dial is not None, "answered before any dial?"
    participant = body["participant"]
    assert participant["state"] == "answered"
    assert participant["sipCallId"] == dial.sip_call_id != ""
    assert participant["participantId"] == live.callee.participant_ids[room]
    assert participant["participantIdentity"] == "phone_user" and participant["roomName"] == room
    assert body["state"] in ("in_call", "done")
    # fromNumber and agentName reached LiveKit: the caller id of the INVITE, the dispatch.
    assert dial.from_number == "+3225559999"
    (dispatch,) = [d for d in live.standin.dispatches if d.room == room]
    assert dispatch.agent_name == "vip-screener"
    job = live.runtime.store.get(body["callId"])
    assert job.request.sip_from_number == "+3225559999"
    assert job.request.agent_name == "vip-screener"
    assert job.request.metadata["from_number"] == "+3225559999"
    assert job.request.metadata["agent_name"] == "vip-screener"


def test_without_overrides_the_dialer_defaults_apply(live: Live) -> None:
    response, _ = post(live, {"to": "+32470555003"})
    body = response.json()
    assert body["participant"]["state"] == "answered", body
    dial = dial_of(live, body["roomName"])
    assert dial.from_number == DEFAULT_FROM
    (dispatch,) = [d for d in live.standin.dispatches if d.room == body["roomName"]]
    assert dispatch.agent_name == Settings().agent_name


def test_a_dial_that_does_not_connect_is_the_participant_state(live: Live) -> None:
    response, elapsed = post(live, {"to": BUSY})
    body = response.json()
    assert body["participant"]["state"] == "busy", body
    assert body["participant"]["sipCallId"] == "" and body["participant"]["participantId"] == ""
    assert body["state"] == JobState.RETRY_SCHEDULED.value  # busy is retried in 15 minutes
    assert elapsed < RINGING_TIMEOUT_S + 30


def test_wait_until_answered_false_returns_at_once(live: Live) -> None:
    response, elapsed = post(live, {"to": "+32470555004", "waitUntilAnswered": False})
    body = response.json()
    assert body["participant"]["state"] == "scheduled" and body["state"] == "scheduled"
    assert body["participant"]["sipCallId"] == ""
    assert dial_of(live, body["roomName"]) is None, "returned before the dial"
    assert elapsed < 1.0


def test_a_call_outside_calling_hours_returns_at_once(live: Live) -> None:
    response, elapsed = post(live, {"to": NEW_YORK})  # 04:00 in New York
    body = response.json()
    assert body["participant"]["state"] == "scheduled" and body["state"] == "scheduled"
    assert body["dialAt"] == "2026-03-04T14:00:00Z"  # 09:00 in New York
    assert elapsed < 1.0


def test_field_errors_use_the_seed_names(live: Live) -> None:
    response, _ = post(live, {"to": ANSWERS, "agentName": "", "fromNumber": "3225559999"})
    assert response.status_code == 422
    fields = {f["field"] for f in response.json()["error"]["fields"]}
    assert fields == {"fromNumber"}  # checked before the rest
    response, _ = post(live, {"to": ANSWERS, "agentName": ""})
    assert response.status_code == 422
    assert {f["field"] for f in response.json()["error"]["fields"]} == {"agentName"}


def test_the_api_keeps_answering_while_a_call_is_waited_for(live: Live) -> None:
    """The waits above ran on the API's event loop without blocking it: a health check
    answers while a call is being waited for."""
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=1) as pool:
        waiting = pool.submit(post, live, {"to": "+32470555005"})
        time.sleep(0.2)
        health = httpx.get(f"{live.base}/healthz", timeout=5)
        health_after = time.monotonic() - started
        response, elapsed = waiting.result()
    assert health.status_code == 200 and health_after < elapsed
    assert response.json()["participant"]["state"] == "answered"
