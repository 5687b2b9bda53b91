"""The Redis broker transport, hardened: a queue item that is not a Celery message (a raw
LPUSH by a misbehaving producer, a truncated write) is dead-lettered instead of killing the
worker. kombu's own Redis channel lets the JSON error escape and the worker stops."""

from __future__ import annotations

import json
import logging
from typing import Any

from kombu.transport import redis as kombu_redis

log = logging.getLogger("dialer.tasks.broker")


def _dead_letter(raw: str, reason: str) -> None:
    from tasks.dead_letters import record

    record("broker", {"raw": raw[:10_000]}, reason)


class SafeChannel(kombu_redis.Channel):
    def _brpop_read(self, **options: Any) -> bool:
        try:
            return bool(super()._brpop_read(**options))  # type: ignore[no-untyped-call]
        except json.JSONDecodeError as exc:
            _dead_letter(exc.doc, f"undecodable queue item: {exc.msg}")
            log.error("dead-lettered an undecodable queue item (%s)", exc.msg)
            return True

    def _get(self, queue: Any, timeout: Any = None) -> Any:
        while True:
            try:
                return super()._get(queue)  # type: ignore[no-untyped-call]
            except json.JSONDecodeError as exc:
                _dead_letter(exc.doc, f"undecodable item on queue {queue!r}: {exc.msg}")
                log.error("dead-lettered an undecodable item on %s (%s)", queue, exc.msg)


class SafeRedisTransport(kombu_redis.Transport):
    Channel = SafeChannel
