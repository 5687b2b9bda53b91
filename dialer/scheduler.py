"""The scheduler side of the due-set: which jobs are due, and the single-beat lock.

Beat calls `move_due_jobs` every second. It claims due call_ids (the claim is a lease, see
`dialer.dueset`), looks up the attempt each will dial, and hands them to `send`. Backpressure:
it never lets the dial queue grow past `max_queued`, so a large backlog stays in the due-set
(cheap, ordered, inspectable) rather than in the broker.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import redis

from dialer.dueset import DueSet
from dialer.keys import Keys

# A claimed job that was never dialed becomes due again after this long.
CLAIM_LEASE_S = 300.0


@dataclass(frozen=True)
class Moved:
    sent: int
    skipped: int


class BeatLock:
    """One action per tick, however many beats or worker processes run the tick's task.

    Every tick of a beat task (`name`) claims `SET <key>:<name>:<tick> NX`; the first execution
    for that tick acts and any other (a second beat started by mistake, a duplicate message)
    sees the key and does nothing. Any worker process can win, so the tick does not depend on one
    particular process being free.
    """

    def __init__(self, client: redis.Redis, key: str) -> None:
        self.r = client
        self.key = key

    def acquire(self, name: str, now: float, tick_s: float = 1.0) -> bool:
        """True for the first execution of tick `now // tick_s` of `name` (`now`: epoch s)."""
        tick = int(now // tick_s)
        expiry = max(5, int(tick_s * 5))
        return bool(self.r.set(f"{self.key}:{name}:{tick}", "1", nx=True, ex=expiry))


def move_due_jobs(
    client: redis.Redis,
    keys: Keys,
    now: datetime,
    send: Callable[[str, int], None],
    *,
    dial_queue_length: Callable[[], int],
    max_queued: int = 200,
    batch: int = 500,
) -> Moved:
    room = max_queued - dial_queue_length()
    if room <= 0:
        return Moved(0, 0)
    due = DueSet(client, keys.due).claim(now, limit=min(room, batch), lease_s=CLAIM_LEASE_S)
    if not due:
        return Moved(0, 0)
    pipe = client.pipeline(transaction=False)
    for call_id in due:
        pipe.hmget(keys.job(call_id), "state", "attempt")
    rows = pipe.execute()
    sent = skipped = 0
    for call_id, (state, attempt) in zip(due, rows, strict=True):
        if state not in ("scheduled", "retry_scheduled"):
            # Finished or dialing already: the entry is stale. Drop it.
            client.zrem(keys.due, call_id)
            skipped += 1
            continue
        send(call_id, int(attempt or 0) + 1)
        sent += 1
    return Moved(sent, skipped)
