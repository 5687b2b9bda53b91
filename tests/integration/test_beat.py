"""Beat side of the due-set: one action per tick, claims are leases, stale entries dropped."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import redis

from dialer.keys import Keys
from dialer.scheduler import BeatLock, move_due_jobs
from tests.support.runtime import make_runtime
from tests.support.seed import seed_request

NOW = datetime(2026, 3, 4, 9, 0, tzinfo=UTC)  # 10:00 in Brussels, a Wednesday


def test_only_one_execution_per_tick_acts(r: redis.Redis) -> None:
    lock = BeatLock(r, Keys().beat_lock)
    assert lock.acquire("move_due_jobs", 1000.2)
    assert not lock.acquire("move_due_jobs", 1000.7), "a second beat in the same tick"
    assert lock.acquire("move_due_webhooks", 1000.7), "ticks are per task"
    assert lock.acquire("move_due_jobs", 1001.0), "the next tick acts again"


def test_due_jobs_are_sent_with_their_next_attempt_and_leased(r: redis.Redis) -> None:
    t = make_runtime(r, NOW)
    for n in range(3):
        t.runtime.intake.submit(seed_request(f"j-{n}", f"+3247012345{n}"), NOW)
    sent: list[tuple[str, int]] = []
    moved = move_due_jobs(r, t.runtime.keys, NOW, lambda c, a: sent.append((c, a)),
                          dial_queue_length=lambda: 0)  # fmt: skip
    assert moved.sent == 3 and sorted(sent) == [("j-0", 1), ("j-1", 1), ("j-2", 1)]
    # Claimed, not deleted: nothing is due right now, but all come back after the lease.
    again = move_due_jobs(r, t.runtime.keys, NOW, lambda c, a: sent.append((c, a)),
                          dial_queue_length=lambda: 0)  # fmt: skip
    assert again.sent == 0
    six_minutes_later = NOW + timedelta(minutes=6)
    later = move_due_jobs(
        r, t.runtime.keys, six_minutes_later, lambda c, a: sent.append((c, a)),
        dial_queue_length=lambda: 0,
    )  # fmt: skip
    assert later.sent == 3


def test_backpressure_keeps_the_backlog_in_the_due_set(r: redis.Redis) -> None:
    t = make_runtime(r, NOW)
    for n in range(5):
        t.runtime.intake.submit(seed_request(f"j-{n}", f"+3247012345{n}"), NOW)
    sent: list[tuple[str, int]] = []
    moved = move_due_jobs(r, t.runtime.keys, NOW, lambda c, a: sent.append((c, a)),
                          dial_queue_length=lambda: 198, max_queued=200)  # fmt: skip
    assert moved.sent == 2
    assert t.runtime.due_jobs.due_count(NOW) == 3


def test_entries_of_finished_jobs_are_dropped(r: redis.Redis) -> None:
    t = make_runtime(r, NOW)
    t.runtime.intake.submit(seed_request("j-1"), NOW)
    r.hset(t.runtime.keys.job("j-1"), "state", "done")
    moved = move_due_jobs(r, t.runtime.keys, NOW, lambda c, a: None, dial_queue_length=lambda: 0)
    assert (moved.sent, moved.skipped) == (0, 1)
    assert t.runtime.due_jobs.size() == 0
