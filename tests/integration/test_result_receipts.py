"""A result the results queue lost on its way to a worker is sent again and recorded once: the
agent's publisher keeps a copy until the results consumer's receipt exists (issue 6, "no result
is ever lost"). A real worker process (the production task) on the session's Redis.

kombu's Redis transport takes a message off its queue (BRPOP) and records it as unacknowledged
only after that; a worker killed in between loses it. Here the loss is made exact: the message
is taken off the queue (RPOP, the end BRPOP takes from) before any worker runs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from agent.publishing import SpoolFlusher
from dialer.local_stack import LocalStack
from dialer.messages import RESULTS_QUEUE, ResultMessage
from dialer.models import CandidateData, JobState, Status
from dialer.results_queue import ResultPublisher
from dialer.runtime import Runtime
from dialer.settings import Settings
from dialer.store import Change
from tests.support.seed import seed_request

CONFIRM_S = 1.0


@pytest.fixture()
def stack(redis_url: str, r: redis.Redis, tmp_path: Path) -> Iterator[LocalStack]:
    with LocalStack(tmp_path / "stack", redis_url=redis_url, workers=0, beat=False) as stack:
        yield stack


def _publisher(redis_url: str, tmp_path: Path) -> ResultPublisher:
    return ResultPublisher(redis_url, tmp_path / "spool", confirm_after_s=CONFIRM_S)


def _in_call(rt: Runtime, call_id: str) -> None:
    """The job as the dial task leaves an answered call: attempt 1, in a call."""
    rt.intake.submit(seed_request(call_id), rt.clock.now())
    for state in (JobState.DIALING, JobState.IN_CALL):
        rt.store.transition(
            call_id,
            state,
            now=rt.clock.now(),
            change=Change(fields={"attempt": "1", "dial_stage": "answered"}),
        )


def _wait(predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _start_worker(stack: LocalStack) -> None:
    """A worker on the results queue, ready. (Not `stack.wait_ready()`: its ping goes through
    this process's `tasks.app`, whose kombu pools share the process-wide limit of 1 that the
    publisher's light Celery app sets, and blocks once publishers of an earlier test used them.)
    """
    worker = stack.start_worker(0, queues="results")
    _wait(lambda: " ready." in worker.log_path.read_text(errors="replace"), "the worker")


def _worker_log(stack: LocalStack) -> str:
    return "".join(c.log_path.read_text(errors="replace") for c in stack.children)


def test_a_result_lost_by_the_queue_is_sent_again_and_recorded_once(
    stack: LocalStack, redis_url: str, r: redis.Redis, tmp_path: Path
) -> None:
    rt = Runtime.for_url(redis_url, Settings())
    _in_call(rt, "lost-1")
    _in_call(rt, "kept-1")
    lost = CandidateData(call_id="lost-1", status=Status.COMPLETED, attempt=1, consent_given=True)
    kept = CandidateData(call_id="kept-1", status=Status.COMPLETED, attempt=1, consent_given=True)
    with _publisher(redis_url, tmp_path) as job:  # the agent's jobs, gone when their calls end
        assert job.publish(ResultMessage.from_agent(lost, rt.clock.now())) == "sent"
        assert r.rpop(RESULTS_QUEUE) is not None  # taken by a worker that died before recording
        assert job.publish(ResultMessage.from_agent(kept, rt.clock.now())) == "sent"
        assert len(job.unconfirmed()) == 2

    _start_worker(stack)
    # The agent server process's flusher.
    publisher = _publisher(redis_url, tmp_path)
    flusher = SpoolFlusher(publisher, interval_s=0.2).start()
    try:
        _wait(lambda: rt.store.get("kept-1").state is JobState.DONE, "the kept result")
        _wait(lambda: rt.store.get("lost-1").state is JobState.DONE, "the lost result, sent again")
        _wait(lambda: publisher.outstanding() == [], "the receipts to clear the copies")
    finally:
        flusher.stop()
        publisher.close()

    for call_id in ("lost-1", "kept-1"):
        job = rt.store.get(call_id)
        assert job.final_status is Status.COMPLETED
        assert [a.outcome for a in rt.store.attempts(call_id)] == ["completed"]
        assert r.exists(rt.keys.result_receipt(call_id, 1))
    log = _worker_log(stack)
    assert log.count("result lost-1 attempt 1: final") == 1
    assert log.count("result kept-1 attempt 1: final") == 1
    assert "duplicate" not in log, "the kept result was never sent twice"
    completed = [
        json.loads(fields["data"])["call_id"]
        for _, fields in r.xrange(rt.keys.events)
        if fields["type"] == "screening.completed"
    ]
    assert sorted(completed) == ["kept-1", "lost-1"]
    assert publisher.quarantined() == []
    assert r.llen(rt.keys.dead_letters) == 0


def test_a_result_for_an_unknown_job_is_dead_lettered_once_and_not_sent_again(
    stack: LocalStack, redis_url: str, r: redis.Redis, tmp_path: Path
) -> None:
    rt = Runtime.for_url(redis_url, Settings())
    _start_worker(stack)
    orphan = CandidateData(call_id="nobody-1", status=Status.COMPLETED, attempt=1)
    with _publisher(redis_url, tmp_path) as publisher:
        assert publisher.publish(ResultMessage.from_agent(orphan, rt.clock.now())) == "sent"
        _wait(lambda: r.exists(rt.keys.result_receipt("nobody-1", 1)) == 1, "the receipt")
        publisher.flush()
        assert publisher.outstanding() == []
        time.sleep(CONFIRM_S + 0.5)
        assert publisher.flush() == 0, "nothing left to send again"
    [dead] = [json.loads(x) for x in r.lrange(rt.keys.dead_letters, 0, -1)]
    assert dead["reason"] == "no job with this call_id"
