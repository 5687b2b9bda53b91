"""Clocks. Domain code takes `now` as an argument; the processes that run it get `now` from one
of these. `RedisClock` is shared by every process on the same Redis, so a test or the demo can
move time forward (hours of retries in seconds) and every worker and the beat agree.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol

import redis


class Clock(Protocol):
    def now(self) -> datetime:
        """Current time, timezone-aware UTC."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class FixedClock:
    """A clock that only moves when told to. For unit tests."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("FixedClock needs an aware datetime")
        self._now = start

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> None:
        from datetime import timedelta

        self._now = self._now + timedelta(seconds=seconds)

    def set(self, when: datetime) -> None:
        self._now = when


class RedisClock:
    """Real time plus an offset kept in Redis. `advance_to` only ever moves time forward."""

    def __init__(self, client: redis.Redis, key: str = "dialer:clock:offset") -> None:
        self._client = client
        self._key = key

    def offset(self) -> float:
        raw = self._client.get(self._key)
        return float(raw) if raw is not None else 0.0

    def now(self) -> datetime:
        return datetime.fromtimestamp(time.time() + self.offset(), UTC)

    def advance(self, seconds: float) -> None:
        self._client.incrbyfloat(self._key, seconds)

    def start_at(self, when: datetime) -> None:
        """Set the shared clock to `when` (a fresh demo or test run; may move time backwards)."""
        self._client.set(self._key, repr(when.timestamp() - time.time()))

    def advance_to(self, when: datetime) -> None:
        delta = when.timestamp() - self.now().timestamp()
        if delta > 0:
            self.advance(delta)
