"""A task that lost Redis is sent again with the same id as soon as Redis answers, not after the
visibility timeout (tasks.context.requeue_when_redis_is_away). A real worker process."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis

from dialer.local_stack import LocalStack, point_app_at
from tasks.app import app
from tests.support.flaky_tasks import FLAKY_TASK


class FlakyStack(LocalStack):
    def worker_options(self) -> list[str]:
        return ["-l", "INFO", "-I", "tests.support.flaky_tasks"]


@pytest.mark.parametrize("failures", [1, 5])
def test_a_task_that_lost_redis_runs_again_under_the_same_id(
    redis_url: str, r: redis.Redis, tmp_path: Path, failures: int
) -> None:
    """5 losses in a row: more than Celery's retry limit (3); past it the message is handed
    back to the queue instead, never failed."""
    # Visibility timeout of an hour (the default): a redelivery could not explain a quick rerun.
    with FlakyStack(tmp_path, redis_url=redis_url, workers=1, concurrency=1, beat=False) as stack:
        stack.wait_ready()
        point_app_at(redis_url)
        sent = app.send_task(FLAKY_TASK, args=["flaky", failures], queue="results")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not r.llen("flaky:ids"):
            time.sleep(0.1)
        assert r.lrange("flaky:ids", 0, -1) == [sent.id], "ran again, same task id"
        assert r.get("flaky:runs") == str(failures + 1)
        log = stack.workers_alive()[0].log_path.read_text(errors="replace")
        assert "task sent again" in log
        assert ("message handed back" in log) == (failures > 3)
        time.sleep(0.5)
        assert r.llen("results") == 0 and r.hlen("unacked") == 0, "nothing left behind"
