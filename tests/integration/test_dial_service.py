"""The dial path end to end in one process: gates, attempt lock, pacing, slots, and the real
livekit-api client against the LiveKit stand-in. Celery is not involved here (see
test_dial_pipeline_processes.py for worker processes); `place_call` is what the task runs."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import redis

from dialer import events
from dialer.dialing import AttemptInProgress, DialService, outcome_fields, room_name
from dialer.embedded_redis import EmbeddedRedis
from dialer.livekit_dialer import LiveKitDialer
from dialer.livekit_standin import LiveKitStandIn
from dialer.messages import ResultMessage, parse_dispatch_metadata
from dialer.models import CandidateData, DialOutcome, JobState, Status
from dialer.results import ResultsConsumer
from dialer.store import Change
from tests.support.runtime import TestRuntime, make_runtime
from tests.support.seed import seed_request

BRUSSELS = ZoneInfo("Europe/Brussels")
WED_10 = datetime(2026, 3, 4, 10, 0, tzinfo=BRUSSELS).astimezone(UTC)
TRUNK = "ST_test"
NUMBER = "+32470123456"


@pytest.fixture()
def standin() -> Iterator[LiveKitStandIn]:
    with LiveKitStandIn(ring_seconds=0.1, slow_seconds=0.3, hang_seconds=30) as lk:
        yield lk


class Harness:
    def __init__(self, r: redis.Redis, lk: LiveKitStandIn, **settings: object) -> None:
        self.lk = lk
        self.t: TestRuntime = make_runtime(
            r,
            WED_10,
            livekit_url=lk.url,
            livekit_api_key=lk.api_key,
            livekit_api_secret=lk.api_secret,
            sip_trunk_id=TRUNK,
            sip_from_number="+3225550000",
            calls_per_second=50,
            **settings,
        )
        self.recorded: list[ResultMessage] = []  # dial outcomes, once the consumer has them
        self.loop = asyncio.new_event_loop()  # one loop, like a worker process: one HTTP session
        rt = self.t.runtime
        self.dialer = LiveKitDialer(
            lk.url,
            lk.api_key,
            lk.api_secret,
            trunk_id=TRUNK,
            from_number="+3225550000",
            agent_name=rt.settings.agent_name,
            backoff_base_s=0.01,
        )
        self.service = DialService(
            rt.client,
            rt.keys,
            rt.store,
            rt.consumer,
            self.dialer,
            rt.settings,
            clock=self.t.clock.now,
            on_outcome=self.recorded.append,
        )

    def submit(self, call_id: str = "abc-123", phone: str = NUMBER, **extra: object) -> str:
        return self.t.runtime.intake.submit(
            seed_request(call_id, phone, **extra), self.t.clock.now()
        ).call_id

    def place(self, call_id: str, attempt: int, owner: str) -> str:
        report = self.run(self.service.place_call(call_id, attempt, owner, self.t.clock.now()))
        return report.result

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def close(self) -> None:
        self.run(self.dialer.aclose())
        self.loop.close()

    def outcomes(self, call_id: str) -> list[str]:
        """The attempt outcomes the job holds."""
        return [a.outcome for a in self.t.store.attempts(call_id)]

    def dials_to(self, number: str = NUMBER) -> int:
        return sum(1 for d in self.lk.dials if d.phone_number == number)


@pytest.fixture()
def h(r: redis.Redis, standin: LiveKitStandIn) -> Iterator[Harness]:
    harness = Harness(r, standin)
    yield harness
    harness.close()


def test_answered_dial_creates_room_dispatch_and_sip_participant(h: Harness) -> None:
    call_id = h.submit()
    assert h.place(call_id, 1, "task-1") == "answered"
    job = h.t.store.get(call_id)
    assert job.state is JobState.IN_CALL and job.attempt == 1
    (dial,) = h.lk.dials
    assert dial.phone_number == NUMBER and dial.trunk_id == TRUNK
    assert dial.from_number == "+3225550000" and dial.wait_until_answered
    assert dial.room_name == room_name(call_id, 1) and dial.participant_identity == "phone_user"
    assert dial.ringing_timeout_s == h.t.runtime.settings.ringing_timeout_s
    assert dial.max_call_duration_s == h.t.runtime.settings.max_call_duration_s
    (dispatch,) = h.lk.dispatches
    assert dispatch.agent_name == h.t.runtime.settings.agent_name
    request, context = parse_dispatch_metadata(dispatch.metadata)
    assert request.call_id == call_id and request.knockout_questions[0].id == "q1"
    assert context is not None and context.attempt == 1 and context.max_attempts == 3
    assert not context.leave_voicemail, "default policy leaves the message on the last attempt"
    room = next(r for r in h.lk.rooms if r.name == dial.room_name)
    assert json.loads(room.metadata)["call_id"] == call_id
    assert h.service.slots.in_use() == 1, "the slot stays held until the result arrives"


def test_a_job_can_name_its_own_caller_id_and_agent(h: Harness) -> None:
    """seeds/002 `fromNumber` / `agentName`: per-job overrides of the dialer's defaults."""
    call_id = h.submit(sip_from_number="+3225559999", agent_name="vip-screener")
    assert h.place(call_id, 1, "task-1") == "answered"
    (dial,) = h.lk.dials
    assert dial.from_number == "+3225559999"
    (dispatch,) = h.lk.dispatches
    assert dispatch.agent_name == "vip-screener"
    job = h.t.store.get(call_id)
    assert job.raw["sip_call_id"] == dial.sip_call_id != ""
    request, _ = parse_dispatch_metadata(dispatch.metadata)
    assert request.call_id == call_id, "the overrides do not leak into the agent's SessionInput"


def test_a_result_that_arrives_before_the_dial_returns_is_not_overwritten(h: Harness) -> None:
    """A very short call: the agent's result is recorded while CreateSIPParticipant is still
    answering. The dial task then leaves the job as the consumer left it."""
    call_id = h.submit()

    def result_first(call: Any) -> None:  # runs before the stand-in answers the SIP request
        msg = ResultMessage.from_dial(call_id, 1, DialOutcome.NO_ANSWER, h.t.clock.now())
        h.t.runtime.consumer.consume(msg, h.t.clock.now())

    h.lk.on_answer = result_first
    assert h.place(call_id, 1, "task-1") == "answered"
    job = h.t.store.get(call_id)
    assert job.state is JobState.RETRY_SCHEDULED and job.dial_stage == "recorded"
    assert h.dials_to() == 1


def test_the_pacing_turn_is_taken_after_the_dispatch_right_before_the_invite(
    h: Harness, r: redis.Redis
) -> None:
    call_id = h.submit()
    turns: list[int] = []
    take = h.service.invite_gate.take

    def counting_turn(*args: Any, **kwargs: Any) -> Any:
        # How many requests LiveKit had seen when the turn was taken.
        turns.append(len(h.lk.requests))
        return take(*args, **kwargs)

    h.service.invite_gate.take = counting_turn  # type: ignore[method-assign]
    assert h.place(call_id, 1, "task-1") == "answered"
    methods = [q.method for q in h.lk.requests]
    assert methods[:3] == ["CreateRoom", "CreateDispatch", "CreateSIPParticipant"]
    assert turns == [2], "one turn, taken after CreateRoom and CreateDispatch, before the INVITE"


def test_no_pacing_turn_in_time_hands_the_job_back_and_removes_the_room(
    h: Harness, r: redis.Redis
) -> None:
    call_id = h.submit()
    # Another process holds the trunk's turns for the next minute (longer than PACING_WAIT_S).
    server_us = int(r.time()[0]) * 1_000_000
    r.hset(h.service.pacer.key, "tat", str(server_us + 60_000_000))
    assert h.place(call_id, 1, "task-1") == "rescheduled"
    assert h.dials_to() == 0, "no INVITE without a turn"
    job = h.t.store.get(call_id)
    assert job.state is JobState.SCHEDULED and job.attempt == 0
    assert "no calls-per-second turn" in job.detail
    assert h.service.slots.in_use() == 0
    (room,) = h.lk.rooms
    assert room.deleted_at is not None, "the room made for the call is removed"
    assert not r.exists(h.t.runtime.keys.dial_lock(call_id, 1)), "the attempt can be dialed later"


def test_the_same_message_delivered_twice_dials_once(h: Harness) -> None:
    call_id = h.submit()
    assert h.place(call_id, 1, "task-1") == "answered"
    assert h.place(call_id, 1, "task-1") == "stale"
    assert h.dials_to() == 1


def test_the_same_message_redelivered_while_its_first_delivery_still_dials_waits(
    h: Harness,
) -> None:
    """kombu hands a worker's unacknowledged messages back when its broker connection drops and
    Redis still answers, while the tasks run on: the copy must not take itself for a recovery
    after a crash (it would remove the room and dial again)."""
    h.lk.set_scenarios({NUMBER: "slow"})  # answered after 0.3 s: the first delivery is mid-dial
    call_id = h.submit()

    async def first_then_copy() -> tuple[str, BaseException | str]:
        first = asyncio.ensure_future(h.service.place_call(call_id, 1, "task-1", h.t.clock.now()))
        while h.t.store.get(call_id).dial_stage in ("", "locked"):
            await asyncio.sleep(0.005)
        try:
            copy: BaseException | str = (
                await h.service.place_call(call_id, 1, "task-1", h.t.clock.now())
            ).result
        except AttemptInProgress as exc:
            copy = exc
        return (await first).result, copy

    first, copy = h.run(first_then_copy())
    assert first == "answered"
    assert isinstance(copy, AttemptInProgress), copy
    assert h.dials_to() == 1
    (room,) = h.lk.rooms
    assert room.deleted_at is None, "the live call's room was left alone"
    # Once the first delivery is done, the copy (handed back to the queue) finds nothing to do.
    assert h.place(call_id, 1, "task-1") == "stale"
    assert h.dials_to() == 1


def test_a_delivery_whose_process_died_is_recovered_once_its_liveness_expires(
    h: Harness, r: redis.Redis
) -> None:
    call_id = h.submit()
    _crash_after_sip_request(h, call_id, "task-1")
    # The dead process's liveness key is still there (it had not expired yet) ...
    live_key = h.t.runtime.keys.dial_live(call_id, 1)
    r.set(live_key, "dead-process", px=300)
    with pytest.raises(AttemptInProgress):
        h.place(call_id, 1, "task-1")
    # ... and once it expires, the redelivery recovers as usual.
    time.sleep(0.35)
    assert h.place(call_id, 1, "task-1") == "deferred"
    assert h.dials_to() == 0
    assert not r.exists(live_key), "released after the recovery"


def test_two_workers_racing_for_one_attempt_dial_once(h: Harness) -> None:
    call_id = h.submit()

    async def race() -> list[str]:
        reports = await asyncio.gather(
            *(h.service.place_call(call_id, 1, f"task-{n}", h.t.clock.now()) for n in range(4))
        )
        return sorted(r.result for r in reports)

    results = h.run(race())
    assert results.count("answered") == 1, results
    assert h.dials_to() == 1


def test_busy_is_recorded_in_the_dial_task_and_frees_the_slot(h: Harness, r: redis.Redis) -> None:
    h.lk.set_scenarios({NUMBER: "busy"})
    call_id = h.submit()
    assert h.place(call_id, 1, "task-1") == "not_connected"
    (msg,) = h.recorded
    assert (msg.kind, msg.outcome, msg.sip_status_code) == ("dial_outcome", "busy", 486)
    (attempt,) = h.t.store.attempts(call_id)
    assert (attempt.outcome, attempt.sip_status_code) == ("busy", 486)
    assert h.service.slots.in_use() == 0
    assert r.llen("results") == 0, "recorded in this process: no message on the results queue"
    job = h.t.store.get(call_id)
    assert job.state is JobState.RETRY_SCHEDULED and job.dial_stage == "recorded"
    assert job.raw["dial_outcome"] == "busy" and job.raw["dial_outcome_attempt"] == "1"
    assert job.next_at == WED_10 + timedelta(minutes=15)
    assert [e["outcome"] for e in h.t.sink.of_type(events.ATTEMPT)] == ["busy"]
    assert not r.exists(h.t.runtime.keys.result_receipt(call_id, 1)), "no publisher waits"
    # The retry is attempt 2: a new lock, a new room, a second dial.
    h.lk.set_scenarios({NUMBER: "answer"})
    h.t.clock.set(job.next_at)
    assert h.place(call_id, 2, "task-2") == "answered"
    assert [d.room_name for d in h.lk.dials] == [room_name(call_id, 1), room_name(call_id, 2)]


@pytest.mark.parametrize(
    ("scenario", "outcome", "sip"),
    [
        ("no_answer", "no_answer", 480),
        ("decline", "declined", 603),
        ("invalid", "failed", 404),
        ("throttled", "throttled", 503),
    ],
)
def test_sip_failures_become_attempt_outcomes(
    h: Harness, scenario: str, outcome: str, sip: int
) -> None:
    h.lk.set_scenarios({NUMBER: scenario})
    call_id = h.submit()
    assert h.place(call_id, 1, "task-1") == "not_connected"
    (msg,) = h.recorded
    assert (msg.outcome, msg.sip_status_code) == (outcome, sip)
    (attempt,) = h.t.store.attempts(call_id)
    assert (attempt.outcome, attempt.sip_status_code) == (outcome, sip)
    job = h.t.store.get(call_id)
    assert job.dial_stage == "recorded"
    assert (job.raw["dial_outcome"], job.raw["dial_sip_status_code"]) == (outcome, str(sip))


def test_throttling_backs_off_pacing_and_opens_the_breaker(
    r: redis.Redis, standin: LiveKitStandIn, request: pytest.FixtureRequest
) -> None:
    h = Harness(r, standin, breaker_window=4, breaker_threshold=0.5, breaker_pause_s=120)
    request.addfinalizer(h.close)
    standin.set_scenarios({}, default="throttled")
    ids = [h.submit(f"t-{n}", f"+3247012340{n}") for n in range(4)]
    for call_id in ids:
        h.place(call_id, 1, f"task-{call_id}")
    assert h.service.pacer.multiplier() < 1.0
    assert h.service.breaker.paused_for() > 0
    # Dialed until the breaker opened (half a window of throttles), the rest put back.
    assert [m.outcome for m in h.recorded] == ["throttled"] * 2
    # While paused, a due job is put back without dialing.
    fresh = h.submit("t-9", "+32470123499")
    dials_before = len(standin.dials)
    assert h.place(fresh, 1, "task-9") == "rescheduled"
    assert len(standin.dials) == dials_before


def test_outside_the_window_the_job_is_rescheduled_not_dialed(h: Harness) -> None:
    call_id = h.submit()
    h.t.clock.set(datetime(2026, 3, 4, 22, 0, tzinfo=BRUSSELS).astimezone(UTC))
    assert h.place(call_id, 1, "task-1") == "rescheduled"
    assert h.dials_to() == 0
    job = h.t.store.get(call_id)
    assert job.state is JobState.SCHEDULED
    assert job.next_at == datetime(2026, 3, 5, 9, 0, tzinfo=BRUSSELS).astimezone(UTC)


def test_do_not_call_is_checked_again_right_before_dialing(h: Harness) -> None:
    call_id = h.submit()
    h.t.runtime.dnc.add([NUMBER])
    assert h.place(call_id, 1, "task-1") == "finished"
    assert h.dials_to() == 0
    assert h.t.store.get(call_id).final_status is Status.DO_NOT_CALL


def test_a_cancelled_job_is_not_dialed(h: Harness) -> None:
    call_id = h.submit()
    h.t.runtime.store.request_cancel(call_id)
    assert h.place(call_id, 1, "task-1") == "finished"
    assert h.dials_to() == 0
    assert h.t.store.get(call_id).final_status is Status.CANCELLED
    assert h.t.sink.of_type(events.COMPLETED)[0]["status"] == "cancelled"


def test_no_free_slot_hands_the_job_back(
    r: redis.Redis, standin: LiveKitStandIn, request: pytest.FixtureRequest
) -> None:
    h = Harness(r, standin, max_concurrent_calls=1)
    request.addfinalizer(h.close)
    first, second = h.submit("s-1", "+32470123401"), h.submit("s-2", "+32470123402")
    assert h.place(first, 1, "task-1") == "answered"
    assert h.place(second, 1, "task-2") == "rescheduled"
    job = h.t.store.get(second)
    assert job.state is JobState.SCHEDULED and job.attempt == 0
    assert h.dials_to("+32470123402") == 0
    # When the first call's result arrives its slot is free and the second can go.
    h.t.runtime.consumer.consume(
        ResultMessage.from_dial(first, 1, DialOutcome.NO_ANSWER, h.t.clock.now()),
        h.t.clock.now(),
    )
    assert h.place(second, 1, "task-3") == "answered"


def _crash_after_sip_request(h: Harness, call_id: str, owner: str) -> None:
    """Leave the job as a worker killed right after sending CreateSIPParticipant would."""
    rt = h.t.runtime
    rt.client.set(rt.keys.dial_lock(call_id, 1), owner)
    rt.store.transition(
        call_id,
        JobState.DIALING,
        now=h.t.clock.now(),
        change=Change(fields={"attempt": "1", "dial_stage": "sip_requested", "dial_owner": owner}),
    )


def test_redelivery_after_a_crash_finds_the_live_call_and_does_not_redial(h: Harness) -> None:
    call_id = h.submit()
    # The killed worker's dial did reach LiveKit: the participant is in the room.
    h.run(h.dialer.dial(h.service._plan(h.t.store.get(call_id), 1)))
    _crash_after_sip_request(h, call_id, "task-1")
    assert h.place(call_id, 1, "task-1") == "in_call"
    assert h.dials_to() == 1
    assert h.t.store.get(call_id).state is JobState.IN_CALL


def test_redelivery_after_a_crash_without_a_call_leaves_the_attempt_to_its_result(
    h: Harness,
) -> None:
    """The call is not in its room: it never rang, failed, or was answered and has ended. In
    the last case the agent's result is on its way (possibly queued behind this very message),
    so nothing is recorded now: the real result wins when it comes (else the slot's lease runs
    out and the reaper records `interrupted`, tests/integration/test_reaper.py)."""
    call_id = h.submit()
    _crash_after_sip_request(h, call_id, "task-1")
    assert h.place(call_id, 1, "task-1") == "deferred"
    assert h.dials_to() == 0, "an attempt whose dial may have been sent is never dialed again"
    assert h.recorded == [] and h.outcomes(call_id) == []
    job = h.t.store.get(call_id)
    assert job.state is JobState.DIALING and job.dial_stage == "sip_requested"
    # Delivered again (the visibility timeout once more): still nothing dialed or decided.
    assert h.place(call_id, 1, "task-1") == "deferred"
    # The conversation's result arrives through the results queue and is recorded as it is.
    data = CandidateData(call_id=call_id, status=Status.COMPLETED, attempt=1)
    consumed = h.t.runtime.consumer.consume(
        ResultMessage.from_agent(data, h.t.clock.now()), h.t.clock.now()
    )
    assert consumed.result == "final"
    assert h.outcomes(call_id) == ["completed"]
    assert h.t.store.get(call_id).final_status is Status.COMPLETED
    assert h.place(call_id, 1, "task-1") == "stale"
    assert h.dials_to() == 0


def _crash_after_recording_the_outcome(h: Harness, call_id: str, owner: str) -> ResultMessage:
    """A busy dial whose worker was killed after `_not_connected` kept the outcome in the job
    (`dial_stage = "finished"`) and before the consumer recorded it."""
    _crash_after_sip_request(h, call_id, owner)
    h.service.slots.acquire(f"{call_id}:1", h.service.slot_lease_s)
    msg = ResultMessage.from_dial(
        call_id, 1, DialOutcome.BUSY, h.t.clock.now(), sip_status_code=486, detail="busy"
    )
    h.t.store.set_fields(call_id, {"dial_stage": "finished", **outcome_fields(msg)})
    return msg


def test_an_outcome_kept_by_a_worker_that_died_before_recording_it_is_recorded_on_redelivery(
    h: Harness,
) -> None:
    call_id = h.submit()
    kept = _crash_after_recording_the_outcome(h, call_id, "task-1")
    assert h.t.store.get(call_id).state is JobState.DIALING
    assert h.place(call_id, 1, "task-1") == "not_connected"
    assert h.recorded == [kept]
    (attempt,) = h.t.store.attempts(call_id)
    assert (attempt.outcome, attempt.sip_status_code, attempt.at) == ("busy", 486, kept.at)
    job = h.t.store.get(call_id)
    assert job.state is JobState.RETRY_SCHEDULED and job.dial_stage == "recorded"
    assert h.service.slots.in_use() == 0, "the consumer released the slot"
    assert [e["outcome"] for e in h.t.sink.of_type(events.ATTEMPT)] == ["busy"]
    assert len(h.t.sink.of_type(events.RETRY_SCHEDULED)) == 1
    assert h.dials_to() == 0, "the attempt is not dialed again"
    # Yet another delivery changes nothing.
    assert h.place(call_id, 1, "task-1") == "duplicate"
    assert h.outcomes(call_id) == ["busy"]


def test_a_redelivery_after_the_outcome_was_recorded_sends_the_events_that_were_lost(
    h: Harness,
) -> None:
    """The worker died after the consumer's transition, before its events went out: the job
    has moved on, and the redelivered message emits them (under their fixed ids)."""
    call_id = h.submit()
    kept = _crash_after_recording_the_outcome(h, call_id, "task-1")
    lost_events = events.RecordingSink()
    rt = h.t.runtime
    died_mid_way = ResultsConsumer(
        rt.store, rt.keys, lost_events, release_slot=lambda _: None, add_to_dnc=lambda _: None
    )
    assert died_mid_way.consume(kept, h.t.clock.now(), receipt=False).result == "retry_scheduled"
    assert h.t.sink.events == []
    assert h.place(call_id, 1, "task-1") == "duplicate"
    assert [e["outcome"] for e in h.t.sink.of_type(events.ATTEMPT)] == ["busy"]
    assert len(h.t.sink.of_type(events.RETRY_SCHEDULED)) == 1
    assert h.service.slots.in_use() == 0
    assert h.outcomes(call_id) == ["busy"]


def test_a_final_dial_outcome_is_final_once_and_its_redelivery_repeats_the_completion(
    h: Harness,
) -> None:
    h.lk.set_scenarios({NUMBER: "invalid"})
    call_id = h.submit()
    assert h.place(call_id, 1, "task-1") == "not_connected"
    job = h.t.store.get(call_id)
    assert job.state is JobState.DONE and job.final_status is Status.FAILED
    (completed,) = h.t.sink.of_type(events.COMPLETED)
    assert h.place(call_id, 1, "task-1") == "duplicate"
    assert h.t.sink.of_type(events.COMPLETED) == [completed], "same event id, emitted once"
    assert h.outcomes(call_id) == ["failed"]


def test_an_unexpected_error_before_the_dial_puts_the_job_back(h: Harness) -> None:
    call_id = h.submit()

    def broken_take(*_: object, **__: object) -> bool:
        raise ConnectionError("redis went away")

    h.service.invite_gate.take = broken_take  # type: ignore[method-assign]
    with pytest.raises(ConnectionError):
        h.place(call_id, 1, "task-1")
    job = h.t.store.get(call_id)
    assert job.state is JobState.SCHEDULED and job.attempt == 0
    assert h.t.runtime.due_jobs.when(call_id) is not None
    assert h.dials_to() == 0


def test_a_paused_campaign_is_not_dialed_until_resumed(h: Harness) -> None:
    from dialer.campaigns import CampaignStore

    campaigns = CampaignStore(h.t.runtime.client, h.t.runtime.keys)
    campaigns.create("spring", now=h.t.clock.now())
    call_id = h.submit(campaign_id="spring")
    campaigns.pause("spring", now=h.t.clock.now())
    assert h.place(call_id, 1, "task-1") == "rescheduled"
    assert h.dials_to() == 0
    assert h.t.store.get(call_id).detail == "campaign paused"
    campaigns.resume("spring", now=h.t.clock.now())
    assert h.place(call_id, 1, "task-2") == "answered"


def test_a_campaign_concurrency_limit_applies_on_top_of_the_trunk(h: Harness) -> None:
    from dialer.campaigns import CampaignStore

    CampaignStore(h.t.runtime.client, h.t.runtime.keys).create(
        "small", policy={"max_concurrent_calls": 1}, now=h.t.clock.now()
    )
    first = h.submit("c-1", "+32470123401", campaign_id="small")
    second = h.submit("c-2", "+32470123402", campaign_id="small")
    other = h.submit("c-3", "+32470123403")
    assert h.place(first, 1, "t1") == "answered"
    assert h.place(second, 1, "t2") == "rescheduled"
    assert h.t.store.get(second).detail == "campaign call slots busy"
    assert h.place(other, 1, "t3") == "answered", "other campaigns are not limited"
    h.t.runtime.consumer.consume(
        ResultMessage.from_dial(first, 1, DialOutcome.NO_ANSWER, h.t.clock.now()), h.t.clock.now()
    )
    assert h.place(second, 1, "t4") == "answered"


def test_dials_are_counted_for_metrics(h: Harness) -> None:
    h.lk.set_scenarios({"+32470123402": "busy"})
    h.place(h.submit("m-1", "+32470123401"), 1, "t1")
    h.place(h.submit("m-2", "+32470123402"), 1, "t2")
    from dialer.metrics import MetricsRecorder

    recorder = MetricsRecorder(h.t.runtime.client, h.t.runtime.keys)
    counts = h.t.runtime.client.hgetall(recorder.dials_key)
    assert counts["answered"] == "1" and counts["busy"] == "1"


def test_a_dial_outcome_waits_out_a_redis_blip_at_the_moment_the_dial_ends(
    tmp_path: Path, standin: LiveKitStandIn, request: pytest.FixtureRequest
) -> None:
    """Redis goes away while the phone rings and comes back 1 s after the dial failed: the
    outcome (known only to this process until written) is kept and recorded, not turned into
    `interrupted` by a task handed back for Redis."""
    server = EmbeddedRedis(tmp_path / "redis", appendonly=True, appendfsync="always").start()
    request.addfinalizer(server.stop)
    client = redis.Redis.from_url(server.url, decode_responses=True)
    request.addfinalizer(client.close)
    h = Harness(client, standin)
    request.addfinalizer(h.close)
    standin.ring_seconds = 0.5
    standin.set_scenarios({NUMBER: "no_answer"})
    call_id = h.submit()

    def outage() -> None:
        deadline = time.monotonic() + 10
        while not standin.dials and time.monotonic() < deadline:
            time.sleep(0.01)
        server.stop()  # while it rings: the dial ends (480) with Redis away
        time.sleep(1.5)
        server.start()

    blip = threading.Thread(target=outage)
    blip.start()
    try:
        assert h.place(call_id, 1, "task-1") == "not_connected"
    finally:
        blip.join()
    assert [(m.outcome, m.sip_status_code) for m in h.recorded] == [("no_answer", 480)]
    assert h.outcomes(call_id) == ["no_answer"]
    assert h.t.store.get(call_id).state is JobState.RETRY_SCHEDULED
    assert h.service.slots.in_use() == 0


def test_a_retry_counts_from_the_end_of_the_dial_not_the_start_of_the_task(h: Harness) -> None:
    """The phone rang out for a minute (of the test clock): the next try is 2 h after that, as
    when the results task recorded the outcome on its own clock."""
    h.lk.ring_seconds = 0.5
    h.lk.set_scenarios({NUMBER: "no_answer"})
    call_id = h.submit()

    def a_minute_of_ringing() -> None:
        deadline = time.monotonic() + 10
        while not h.lk.dials and time.monotonic() < deadline:
            time.sleep(0.01)
        h.t.clock.set(WED_10 + timedelta(minutes=1))

    ringing = threading.Thread(target=a_minute_of_ringing)
    ringing.start()
    try:
        assert h.place(call_id, 1, "task-1") == "not_connected"
    finally:
        ringing.join()
    (attempt,) = h.t.store.attempts(call_id)
    assert attempt.at == WED_10, "the attempt is stamped when its dial began"
    assert h.t.store.get(call_id).next_at == WED_10 + timedelta(minutes=1, hours=2)
