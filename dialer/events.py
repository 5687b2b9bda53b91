"""Events the pipeline emits, and where they go.

Event types: `screening.attempt` (each dial / conversation attempt), `screening.retry_scheduled`,
`screening.completed` (the final CandidateData). Each event has a deterministic id
(`evt_<call_id>_<attempt>_<kind>`), so re-emitting after a crash or a redelivered message is
recognised downstream and produces no second delivery.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import redis

ATTEMPT = "screening.attempt"
RETRY_SCHEDULED = "screening.retry_scheduled"
COMPLETED = "screening.completed"
EVENT_TYPES = (ATTEMPT, RETRY_SCHEDULED, COMPLETED)


def event_id(call_id: str, attempt: int, event_type: str) -> str:
    return f"evt_{call_id}_{attempt}_{event_type.rsplit('.', 1)[-1]}"


class EventSink(Protocol):
    def emit(self, event_type: str, data: dict[str, Any], *, event_id: str, now: datetime) -> None:
        """Publish one event. Must be idempotent by `event_id`."""
        ...


@dataclass
class RecordingSink:
    """Keeps events in memory (tests, dry runs); idempotent by id like the real sinks."""

    events: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    def emit(self, event_type: str, data: dict[str, Any], *, event_id: str, now: datetime) -> None:
        if any(eid == event_id for eid, _, _ in self.events):
            return
        self.events.append((event_id, event_type, data))

    def of_type(self, event_type: str) -> list[dict[str, Any]]:
        return [data for _, kind, data in self.events if kind == event_type]


class RedisEventLog:
    """Appends events to a capped Redis stream (`Keys.events`) for `dialer status` and audits."""

    def __init__(self, client: redis.Redis, key: str, maxlen: int = 100_000) -> None:
        self.r = client
        self.key = key
        self.maxlen = maxlen

    def emit(self, event_type: str, data: dict[str, Any], *, event_id: str, now: datetime) -> None:
        # SET NX on the id keeps the log free of duplicates when an emit is repeated.
        if not self.r.set(f"{self.key}:seen:{event_id}", "1", nx=True, ex=7 * 86400):
            return
        self.r.xadd(
            self.key,
            {"id": event_id, "type": event_type, "at": now.isoformat(), "data": json.dumps(data)},
            maxlen=self.maxlen,
            approximate=True,
        )


@dataclass
class FanOut:
    sinks: list[EventSink]

    def emit(self, event_type: str, data: dict[str, Any], *, event_id: str, now: datetime) -> None:
        for sink in self.sinks:
            sink.emit(event_type, data, event_id=event_id, now=now)
