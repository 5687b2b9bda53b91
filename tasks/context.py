"""Per-process collaborators for tasks: one Runtime, one event loop, one publisher.

Built lazily on first use in each worker process (after fork), from the environment.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Coroutine
from functools import lru_cache
from typing import Any, TypeVar

import kombu.exceptions
import redis
from celery import current_task
from celery.exceptions import Reject

from dialer.messages import RESULTS_QUEUE, RESULTS_TASK, ResultMessage
from dialer.runtime import Runtime
from dialer.settings import load_settings
from tasks.app import app

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

log = logging.getLogger("dialer.tasks")

# Redis (job store and broker) unreachable: a restart, a failover, a network blip.
REDIS_UNREACHABLE: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    kombu.exceptions.OperationalError,
)
# Pause before handing a message back, so a Redis that stays away is not polled in a hot loop.
REQUEUE_PAUSE_S = 1.0
# How long a task that lost Redis waits for it to answer again before handing its message back.
REDIS_BACK_WAIT_S = 30.0


def requeue_when_redis_is_away(fn: F) -> F:
    """A task that cannot reach Redis sends its message again instead of failing it.

    With `task_acks_late`, a task that raises has its message acknowledged (and dead-lettering
    it needs Redis too), so a dial that lost Redis half-way left its job in `dialing` with no
    message to move it on. Instead the task waits for Redis to answer again (up to
    REDIS_BACK_WAIT_S) and retries: the same task id (a dial's attempt lock knows its owner) in a
    new message, sent through a fresh connection, so it runs within a second of Redis coming
    back. The original message's acknowledgement may fail on the dropped connection; it then
    comes back after `visibility_timeout` and finds its work done (the tasks are idempotent).
    Redis still away after the wait: `Reject(requeue=True)` hands the message back, or leaves
    it unacknowledged for redelivery after `visibility_timeout`."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except REDIS_UNREACHABLE as exc:
            if redis_answers_again(REDIS_BACK_WAIT_S):
                try:
                    retry = current_task.retry(exc=exc, countdown=0, throw=False)
                except Exception:  # never lose the message over a failed retry
                    # Celery could not send it (Redis gone again: Reject), or the task has used
                    # its retries (the original error is raised): hand the message back below.
                    pass
                else:
                    log.warning("Redis was unreachable (%s); task sent again", type(exc).__name__)
                    raise retry from exc
            log.warning("Redis unreachable (%s); message handed back", type(exc).__name__)
            time.sleep(REQUEUE_PAUSE_S)
            raise Reject(exc, requeue=True) from exc

    return wrapper  # type: ignore[return-value]


def redis_answers_again(within_s: float) -> bool:
    """Ping this process's Redis until it answers (True) or `within_s` has passed (False)."""
    give_up_at = time.monotonic() + within_s
    pause = 0.2
    while True:
        try:
            runtime().client.ping()
            return True
        except REDIS_UNREACHABLE:
            if time.monotonic() + pause > give_up_at:
                return False
            time.sleep(pause)
            pause = min(pause * 2, 2.0)


_runtime_lock = threading.Lock()


def runtime() -> Runtime:
    """This process's Runtime (built once, also when pool threads ask at the same time)."""
    with _runtime_lock:
        return _build_runtime()


@lru_cache(maxsize=1)
def _build_runtime() -> Runtime:
    settings = load_settings()
    url = settings.redis_url or os.environ.get("REDIS_URL") or app.conf.broker_url
    rt = Runtime.for_url(url, settings)
    from tasks.webhooks import webhook_sink

    rt.webhook_sink = webhook_sink(rt)
    return rt


_loops = threading.local()


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on this thread's long-lived loop (keeps HTTP sessions alive). One loop
    per thread, so a worker with a thread pool (`-P threads`) runs dials side by side."""
    loop: asyncio.AbstractEventLoop | None = getattr(_loops, "loop", None)
    if loop is None or loop.is_closed():
        loop = _loops.loop = asyncio.new_event_loop()
    return loop.run_until_complete(coro)


def publish_result(msg: ResultMessage) -> None:
    """Put an attempt's result on the results queue, as the agent does (without its copy on
    disk and the receipt check: for tests and benches that play the agent). The pipeline's
    own dial outcomes do not come this way; they are recorded in-process."""
    app.send_task(
        RESULTS_TASK, kwargs={"message": msg.model_dump(mode="json")}, queue=RESULTS_QUEUE
    )
