"""The Redis broker transport, hardened against two ways kombu's own Redis channel stops a worker:

- A queue item that is not a Celery message (a raw LPUSH by a misbehaving producer, a truncated
  write) is dead-lettered; kombu lets the JSON error escape and the worker stops.
- Losing the broker connection while holding unacknowledged messages: Celery's consumer tears
  the transport down (`Connection.collect`) and reconnects with a new one, but the old channel
  is still asked to hand back, acknowledge or reject the messages it delivered (when it closes,
  and when a task that ran through the outage finishes). kombu then builds a Redis client from
  a transport with no connection details left and raises AttributeError, which nothing catches
  ("Unrecoverable error ... 'hostname'"): the worker exits and nothing is consumed until
  something restarts it (seen as a job stuck `in_call` whose result sat unacknowledged after a
  Redis restart). `SafeChannel` raises it as the connection error it is; kombu logs "Couldn't
  ack / reject" and the messages stay in Redis's unacked hash, where any worker's periodic
  sweep hands them out again once they are `visibility_timeout` old, exactly as when Redis is
  unreachable at that moment.

It is also cheaper: kombu builds a new redis-py client for every publish and every ack (on the
channel's one connection pool); building one copies redis-py's table of reply callbacks, which
cost a worker more CPU per task than the acknowledgement itself. `SafeChannel` keeps one client
per connection pool (redis-py clients are thread-safe and hold no connection of their own).
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


class SafeChannel(kombu_redis.Channel):
    _sync_client: tuple[Any, Any] | None = None  # (connection pool, client on it)

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:
            return super()._create_client(asynchronous=True)  # type: ignore[no-untyped-call]
        pool = self.pool  # a new pool after a disconnect (or an error once torn down)
        if self._sync_client is None or self._sync_client[0] is not pool:
            self._sync_client = (pool, super()._create_client())  # type: ignore[no-untyped-call]
        return self._sync_client[1]

    def _connparams(self, asynchronous: bool = False) -> Any:
        if self.connection.client is None:  # the transport was torn down under this channel
            raise redis.exceptions.ConnectionError(
                "broker connection already closed; unacknowledged messages of this channel "
                "return after visibility_timeout"
            )
        return super()._connparams(asynchronous=asynchronous)  # type: ignore[no-untyped-call]

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
