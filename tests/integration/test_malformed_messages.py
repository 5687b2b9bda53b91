"""A real worker process fed malformed messages: each lands in the dead-letter list (or the
rejected list) with its reason, the worker keeps running, and a good message after them works."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from dialer.keys import Keys
from dialer.local_stack import LocalStack
from tasks.app import app, use_broker
from tests.support.seed import seed_request

KEYS = Keys()


@pytest.fixture()
def worker(redis_url: str, r: redis.Redis, tmp_path: Path) -> Iterator[LocalStack]:
    stack = LocalStack(tmp_path, redis_url=redis_url, workers=1, concurrency=1, beat=False)
    with stack:
        stack.wait_ready()
        use_broker(redis_url)
        yield stack


def _dead(r: redis.Redis) -> list[dict[str, str]]:
    return [json.loads(x) for x in r.lrange(KEYS.dead_letters, 0, -1)]


def _wait(predicate: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError("timed out waiting for the worker")


def test_malformed_messages_are_kept_with_a_reason_and_the_worker_goes_on(
    worker: LocalStack, r: redis.Redis
) -> None:
    app.send_task("dialer.results.record", kwargs={"message": {"call_id": 5}}, queue="results")
    app.send_task("dialer.results.record", kwargs={"msg": "wrong name"}, queue="results")
    app.send_task("dialer.dial.place_call", args=["x", "not-a-number"], queue="dial")
    app.send_task("dialer.no_such_task", args=[1], queue="results")
    app.send_task("dialer.intake.submit", args=[{"call_id": "bad", "phone_number": "nope"}],
                  queue="intake")  # fmt: skip
    r.lpush("results", b"\x00 this is not a Celery message")

    _wait(lambda: len(_dead(r)) >= 5)
    reasons = " | ".join(d["reason"] for d in _dead(r))
    assert "malformed result" in reasons and "call_id" in reasons
    assert "unexpected arguments: msg" in reasons
    assert "place_call needs call_id (string) and attempt (integer >= 1)" in reasons
    assert "unknown task name 'dialer.no_such_task'" in reasons
    assert "undecodable" in reasons or "invalid message" in reasons

    _wait(lambda: r.llen(KEYS.rejected) >= 1)
    rejected = json.loads(r.lindex(KEYS.rejected, 0))  # type: ignore[arg-type]
    assert {e["field"] for e in rejected["errors"]} >= {"job_title", "knockout_questions"}

    # The worker is alive and still does its job.
    assert worker.workers_alive()
    app.send_task("dialer.intake.submit", args=[seed_request("good-1")], queue="intake")
    _wait(lambda: r.exists(KEYS.job("good-1")))
    assert r.hget(KEYS.job("good-1"), "state") in ("scheduled", "done")
