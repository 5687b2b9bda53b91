"""A task for worker processes in tests: its first `failures` runs lose Redis (the error a real
outage raises), later runs record their task id. Imported by a worker started with `-I` this
module."""

from __future__ import annotations

import redis
from celery import Task

from tasks.app import app
from tasks.context import requeue_when_redis_is_away, runtime

FLAKY_TASK = "tests.flaky_once"


@app.task(name=FLAKY_TASK, bind=True)
@requeue_when_redis_is_away
def flaky_once(self: Task, key: str, failures: int = 1) -> str:
    client = runtime().client
    if client.incr(f"{key}:runs") <= failures:
        raise redis.exceptions.ConnectionError("Error 111 connecting to Redis (simulated outage)")
    client.rpush(f"{key}:ids", str(self.request.id))
    return "done"
