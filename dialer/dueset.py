"""The due-set: a Redis sorted set of things to do later, scored by when (epoch seconds).

Long delays (calling windows, retries hours away, webhook retries) live here instead of in
Celery ETA/countdown, which Redis redelivers after the visibility timeout. A beat task claims
due members and sends the work.

Claiming does not delete: it pushes the member's score `lease_s` into the future in the same
Lua call. The worker that acts on the member removes or re-scores it; if the message is lost or
the beat dies after claiming, the member simply becomes due again when the lease runs out.
"""

from __future__ import annotations

from datetime import UTC, datetime

import redis

_CLAIM = """
local members = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, m in ipairs(members) do
  redis.call('ZADD', KEYS[1], ARGV[3], m)
end
return members
"""


class DueSet:
    def __init__(self, client: redis.Redis, key: str) -> None:
        self.r = client
        self.key = key
        self._claim = client.register_script(_CLAIM)

    def add(self, member: str, when: datetime) -> None:
        self.r.zadd(self.key, {member: when.timestamp()})

    def remove(self, member: str) -> None:
        self.r.zrem(self.key, member)

    def claim(self, now: datetime, *, limit: int, lease_s: float) -> list[str]:
        """Members due at `now` (oldest first), re-scored to `now + lease_s` atomically."""
        if limit <= 0:
            return []
        members = self._claim(
            keys=[self.key], args=[now.timestamp(), limit, now.timestamp() + lease_s]
        )
        return [m.decode() if isinstance(m, bytes) else str(m) for m in members]

    def when(self, member: str) -> datetime | None:
        score = self.r.zscore(self.key, member)
        return datetime.fromtimestamp(float(score), UTC) if score is not None else None

    def next_due(self) -> datetime | None:
        first = self.r.zrange(self.key, 0, 0, withscores=True)
        if not first:
            return None
        return datetime.fromtimestamp(float(first[0][1]), UTC)

    def size(self) -> int:
        return int(self.r.zcard(self.key))

    def due_count(self, now: datetime) -> int:
        return int(self.r.zcount(self.key, "-inf", now.timestamp()))
