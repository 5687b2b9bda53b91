"""The beat's reaper (`tasks.beat.reap_task`, the production task run in this process on the
session's Redis): a call slot whose lease ran out without a result has its attempt recorded
`interrupted` through the results consumer directly (no message on the results queue that a
dying worker could lose), and a result that arrived first is never overridden."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis

from dialer.limiter import ConcurrencySlots
from dialer.messages import RESULTS_QUEUE, ResultMessage
from dialer.models import CandidateData, JobState, Status
from dialer.runtime import Runtime
from dialer.store import Change
from tests.support.seed import seed_request

LEASE_S = 0.2


@pytest.fixture()
def rt(redis_url: str, r: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    """The task modules' own runtime, built for the session's Redis (and dropped after)."""
    from tasks import beat, context
    from tasks.app import use_broker

    monkeypatch.setenv("REDIS_URL", redis_url)
    use_broker(redis_url)
    context._build_runtime.cache_clear()
    beat.beat_lock.cache_clear()
    yield context.runtime()
    context._build_runtime.cache_clear()
    beat.beat_lock.cache_clear()


def _reap() -> int:
    from tasks.beat import reap_task

    reaped: int = reap_task()
    return reaped


def _slots(rt: Runtime) -> ConcurrencySlots:
    trunk = rt.settings.sip_trunk_id or "default"
    return ConcurrencySlots(rt.client, rt.keys, trunk, rt.settings.max_concurrent_calls)


def _call_with_expired_lease(rt: Runtime, call_id: str, state: JobState, stage: str) -> None:
    rt.intake.submit(seed_request(call_id), rt.clock.now())
    rt.store.transition(
        call_id,
        JobState.DIALING,
        now=rt.clock.now(),
        change=Change(fields={"attempt": "1", "dial_stage": stage}),
    )
    if state is JobState.IN_CALL:
        rt.store.transition(call_id, JobState.IN_CALL, now=rt.clock.now())
    assert _slots(rt).acquire(f"{call_id}:1", LEASE_S)
    time.sleep(LEASE_S + 0.1)


@pytest.mark.parametrize(
    ("state", "stage"),
    [
        (JobState.IN_CALL, "answered"),  # the agent never reported
        (JobState.DIALING, "sip_requested"),  # its dial's worker died; recovery left it
    ],
)
def test_an_expired_lease_is_recorded_interrupted_without_the_results_queue(
    rt: Runtime, r: redis.Redis, state: JobState, stage: str
) -> None:
    _call_with_expired_lease(rt, "lapsed-1", state, stage)
    assert _reap() == 1
    job = rt.store.get("lapsed-1")
    assert job.state is JobState.RETRY_SCHEDULED and job.dial_stage == "recorded"
    [attempt] = rt.store.attempts("lapsed-1")
    assert attempt.outcome == "interrupted"
    assert attempt.detail == "no result before the call's lease ran out"
    assert r.llen(RESULTS_QUEUE) == 0, "recorded by the reaper itself"
    assert not r.exists(rt.keys.result_receipt("lapsed-1", 1))
    assert _slots(rt).reap_expired() == [], "the reaper took the expired lease"


def test_a_result_that_arrived_first_is_not_overridden(rt: Runtime, r: redis.Redis) -> None:
    _call_with_expired_lease(rt, "talked-1", JobState.IN_CALL, "answered")
    data = CandidateData(call_id="talked-1", status=Status.COMPLETED, attempt=1)
    rt.consumer.consume(ResultMessage.from_agent(data, rt.clock.now()), rt.clock.now())
    assert _reap() == 0
    assert _slots(rt).reap_expired() == [], "the reaper ran and took the lease"
    assert [a.outcome for a in rt.store.attempts("talked-1")] == ["completed"]
    assert rt.store.get("talked-1").final_status is Status.COMPLETED
