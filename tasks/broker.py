"""The Redis broker transport, hardened against two ways kombu's own Redis channel stops a worker:

- A queue item that is not a Celery message (a raw LPUSH by a misbehaving producer, a truncated
  write) is dead-lettered; kombu lets the JSON error escape and the worker stops.
- Losing the broker connection while holding unacknowledged messages: Celery's consumer tears
  the transport down (`Connection.collect`) before it closes the channel, and the channel's
  close then tries to hand those messages back through a transport that has no connection
  details left. kombu raises AttributeError, which nothing catches ("Unrecoverable error"):
  the worker exits and, until something restarts it, nothing is consumed (seen as a job stuck
  `in_call` whose result sat unacknowledged after a Redis restart). `SafeQoS` reports it as
  the connection error it is; the messages stay in Redis's unacked hash and any worker's
  periodic sweep hands them out again once they are `visibility_timeout` old, exactly as
  when Redis is unreachable at that moment.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import redis
from kombu.transport import redis as kombu_redis

log = logging.getLogger("dialer.tasks.broker")


def _dead_letter(raw: str, reason: str) -> None:
    from tasks.dead_letters import record

    record("broker", {"raw": raw[:10_000]}, reason)


class SafeQoS(kombu_redis.QoS):
    def restore_unacked(self, client: Any = None) -> Any:
        held = len(self._delivered)
        try:
            if client is None and self.channel.connection.client is None:
                raise AttributeError("transport already closed")
            return super().restore_unacked(client)  # type: ignore[no-untyped-call]
        except AttributeError as exc:
            log.warning(
                "broker connection already torn down: %d unacknowledged message(s) left for "
                "redelivery after visibility_timeout",
                held,
            )
            raise redis.exceptions.ConnectionError(
                f"cannot hand back {held} unacknowledged message(s): transport closed"
            ) from exc


class SafeChannel(kombu_redis.Channel):
    QoS = SafeQoS

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
