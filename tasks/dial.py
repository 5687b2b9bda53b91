"""Dial task (queue "dial"): one message = one attempt of one job. Calls dialer.dialing, which
records a dial that ended without a conversation through the results consumer in this process."""

from __future__ import annotations

import logging
import time
from functools import lru_cache
from typing import Any

from celery import Task
from celery.exceptions import Reject

from dialer.dialing import AttemptInProgress, DialService
from dialer.errors import JobNotFound
from dialer.results import dead_letter
from tasks.app import app
from tasks.context import REQUEUE_PAUSE_S, requeue_when_redis_is_away, run_async, runtime

log = logging.getLogger("dialer.tasks.dial")


@lru_cache(maxsize=1)
def dial_service() -> DialService:
    # Dial outcomes are recorded here, through the results consumer, not sent to the queue.
    return runtime().dial_service()


@app.task(name="dialer.dial.place_call", bind=True)
@requeue_when_redis_is_away
def place_call(self: Task, call_id: Any, attempt: Any) -> str:
    rt = runtime()
    now = rt.clock.now()
    if not isinstance(call_id, str) or not isinstance(attempt, int) or attempt < 1:
        dead_letter(
            rt.client,
            rt.keys,
            "dial",
            {"call_id": call_id, "attempt": attempt},
            "place_call needs call_id (string) and attempt (integer >= 1)",
            now,
        )
        return "malformed"
    owner = str(self.request.id)
    try:
        report = run_async(dial_service().place_call(call_id, attempt, owner, now))
    except AttemptInProgress as exc:
        # A copy of a message whose first delivery still runs: back on the queue, after a pause.
        log.info("%s; message handed back", exc)
        time.sleep(REQUEUE_PAUSE_S)
        raise Reject(str(exc), requeue=True) from exc
    except JobNotFound:
        dead_letter(
            rt.client, rt.keys, "dial", {"call_id": call_id, "attempt": attempt}, "no such job", now
        )
        return "unknown job"
    log.info("dial %s attempt %d: %s %s", call_id, attempt, report.result, report.detail)
    return report.result
