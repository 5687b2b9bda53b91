"""Beat tasks: drain the due-sets on a schedule (see celeryconfig.beat_schedule).

Each task takes the beat lock first, so running two beats by mistake cannot double-send.
"""

from __future__ import annotations

import time
from functools import lru_cache
from typing import Any

from dialer.messages import ResultMessage
from dialer.models import DialOutcome, JobState
from dialer.scheduler import BeatLock, Moved, move_due_jobs
from tasks.app import app
from tasks.context import runtime


@lru_cache(maxsize=1)
def beat_lock() -> BeatLock:
    rt = runtime()
    return BeatLock(rt.client, rt.keys.beat_lock)


def _acts(name: str, tick_s: float = 1.0) -> bool:
    """Whether this execution is the one that acts for the current tick (see BeatLock)."""
    return beat_lock().acquire(name, time.time(), tick_s)


def _dial_queue_length() -> int:
    return int(runtime().client.llen("dial"))


def send_dial(call_id: str, attempt: int, producer: Any = None) -> None:
    app.send_task(
        "dialer.dial.place_call", args=[call_id, attempt], queue="dial", producer=producer
    )


@app.task(name="dialer.beat.move_due_jobs")
def move_due_jobs_task() -> int:
    if not _acts("move_due_jobs"):
        return 0
    rt = runtime()
    # One producer (one broker connection) for the whole batch: acquiring one per message
    # cost more than the dial task that the message starts.
    with app.producer_or_acquire() as producer:
        moved: Moved = move_due_jobs(
            rt.client,
            rt.keys,
            rt.clock.now(),
            lambda call_id, attempt: send_dial(call_id, attempt, producer),
            dial_queue_length=_dial_queue_length,
            max_queued=rt.settings.dial_queue_max,
        )
    return moved.sent


@app.task(name="dialer.beat.move_due_webhooks")
def move_due_webhooks_task() -> int:
    if not _acts("move_due_webhooks"):
        return 0
    from tasks.webhooks import send_due_deliveries

    return send_due_deliveries(runtime().clock.now())


@app.task(name="dialer.beat.reap")
def reap_task() -> int:
    """Free slots whose lease ran out and record their attempts as interrupted, so a job whose
    agent never reported (crashed agent, a dial whose worker died after sending it) is retried
    instead of stuck in a call. Recorded here, through the results consumer, not via the queue
    (a queued message can be lost, and the reaper sees each expired slot once). A real result
    that arrives later is a duplicate: the lease (ringing + longest call + 120 s) leaves the
    agent's publisher time to send a lost result again (DIALER_RESULT_CONFIRM_S)."""
    if not _acts("reap", tick_s=30.0):
        return 0
    rt = runtime()
    from dialer.limiter import ConcurrencySlots

    slots = ConcurrencySlots(
        rt.client, rt.keys, rt.settings.sip_trunk_id or "default", rt.settings.max_concurrent_calls
    )
    reaped = 0
    now = rt.clock.now()
    for member in slots.reap_expired():
        call_id, _, attempt_s = member.rpartition(":")
        try:
            job = rt.store.get(call_id)
        except Exception:  # the job was removed: nothing to report
            continue
        if job.state in (JobState.DIALING, JobState.IN_CALL) and str(job.attempt) == attempt_s:
            rt.consumer.consume(
                ResultMessage.from_dial(
                    call_id,
                    job.attempt,
                    DialOutcome.INTERRUPTED,
                    now,
                    detail="no result before the call's lease ran out",
                ),
                now,
                receipt=False,
            )
            reaped += 1
    return reaped
