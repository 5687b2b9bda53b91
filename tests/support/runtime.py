"""Build a Runtime on the test Redis with a FixedClock and a recording event sink."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any

import redis

from dialer.clock import FixedClock
from dialer.events import RecordingSink
from dialer.models import JobState
from dialer.runtime import Runtime
from dialer.settings import Settings
from dialer.store import Change


@dataclass
class TestRuntime:
    __test__ = False  # a helper, not a test class

    runtime: Runtime
    clock: FixedClock
    sink: RecordingSink

    @property
    def store(self) -> Any:
        return self.runtime.store

    def start_dialing(self, call_id: str) -> int:
        """Move a scheduled job to `dialing` as the dial task would (without LiveKit)."""
        job = self.runtime.store.get(call_id)
        attempt = job.next_attempt
        self.runtime.store.transition(
            call_id,
            JobState.DIALING,
            now=self.clock.now(),
            allowed_from=(JobState.SCHEDULED, JobState.RETRY_SCHEDULED),
            change=Change(fields={"attempt": str(attempt), "dial_stage": "answered"}),
        )
        return attempt


class _ClockedRuntime(Runtime):
    fixed_clock: FixedClock

    @cached_property
    def clock(self) -> FixedClock:  # type: ignore[override]
        return self.fixed_clock


def make_runtime(client: redis.Redis, now: datetime, **settings: Any) -> TestRuntime:
    sink = RecordingSink()
    rt = _ClockedRuntime(
        settings=Settings(redis_url="redis://unused", **settings),
        client=redis.Redis(connection_pool=client.connection_pool),
        extra_sinks=[sink],
    )
    rt.fixed_clock = FixedClock(now)
    return TestRuntime(rt, rt.fixed_clock, sink)
