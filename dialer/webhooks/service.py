"""Webhook fan-out: events in, one signed delivery per matching endpoint out, retried through the
due-set, dead-lettered when the schedule runs out, replayable.

Life of a delivery (one Redis hash, `Keys.webhook_delivery(id)`):

    emit ──► pending ──► deliver ──► delivered                 (2xx)
                │            ├─────► failed ──► deliver ...   (retry at next_try_at, due-set)
                │            └─────► dead  ──► replay ──► pending
                └─ safety net: also in the due-set at created + lease, so a lost Celery message
                   is picked up by the beat (`pop_due`) instead of being lost.

Hash fields: endpoint_id, message_id (`msg_…`, the `webhook-id` of every try), event_type,
payload (the exact JSON text that is signed and sent), tries, status
(pending|failed|delivered|dead), last_status_code, last_error, next_try_at, created_at (epoch s),
and when they apply delivered_at, dead_at, dead_reason, replayed_at.

Redis round trips per try: one Lua call to claim the delivery (status, due time, a short
per-delivery lock, the endpoint's JSON), the HTTP POST, one MULTI pipeline to record the result
(hash, due-set, dead list, counters, unlock). Emitting is one HGETALL of the endpoints plus one Lua
call that creates every delivery of the event.

Keys this module derives from `Keys.prefix` (besides the ones in `dialer.keys`):

    {prefix}:webhooks:stats          hash: counters emitted, delivered, failed (tries), retried,
                                     dead, gone, replayed (for /metrics)
    {prefix}:webhooks:lock:{id}      string with TTL: the worker trying delivery {id} right now
                                     (a redelivered Celery message or the beat cannot send twice
                                     in parallel). Its TTL (4 x timeout + 30 s) outlives any
                                     try, so the result pipeline deletes it without comparing
                                     the token: a compare-and-delete script inside the pipeline
                                     would cost an extra round trip (redis-py sends SCRIPT
                                     EXISTS before a pipeline that holds a script).

Idempotency: `emit(..., event_id=...)` derives the message id and the delivery ids from the event
id, so re-emitting an event (a redelivered results message) creates nothing new while the first
deliveries exist. Delivered records expire after `retention_s` (3 days by default); pending,
failed and dead ones stay until delivered or replayed.

Timestamps: `now` (injected) drives scheduling, so tests can run a 10 h retry at once; the
`webhook-timestamp` header is the wall-clock time of the try (`wall_clock`), because receivers
check it against their own clock.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

import httpx
import redis

from dialer.dueset import DueSet
from dialer.errors import WebhookError
from dialer.keys import Keys
from dialer.policy import webhook_retry_delay
from dialer.settings import Settings
from dialer.webhooks.delivery import Verdict, classify, make_client, post_once
from dialer.webhooks.endpoints import (
    Endpoint,
    EndpointNotFound,
    EndpointStore,
    WebhookConfig,
    load_config_file,
    parse_endpoint,
)
from dialer.webhooks.signing import signed_headers
from dialer.webhooks.urlguard import UrlGuard

log = logging.getLogger("dialer.webhooks")

DELIVERY_ID_RE = re.compile(r"dlv_[0-9a-f]{24}")
DEFAULT_RETENTION_S = 3 * 86400.0


def is_delivery_id(value: object) -> bool:
    return isinstance(value, str) and DELIVERY_ID_RE.fullmatch(value) is not None


class DeliveryNotFound(WebhookError):
    """No delivery with that id (never created, or delivered and expired)."""


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    FAILED = "failed"
    DELIVERED = "delivered"
    DEAD = "dead"


@dataclass(frozen=True)
class Delivery:
    id: str
    endpoint_id: str
    message_id: str
    event_type: str
    payload: str
    tries: int
    status: DeliveryStatus
    last_status_code: int | None
    last_error: str | None
    next_try_at: datetime | None
    created_at: datetime
    delivered_at: datetime | None = None
    dead_at: datetime | None = None
    dead_reason: str | None = None

    @classmethod
    def from_hash(cls, delivery_id: str, h: Mapping[str, str]) -> Delivery:
        return cls(
            id=delivery_id,
            endpoint_id=h["endpoint_id"],
            message_id=h["message_id"],
            event_type=h["event_type"],
            payload=h["payload"],
            tries=int(h.get("tries") or 0),
            status=DeliveryStatus(h["status"]),
            last_status_code=int(h["last_status_code"]) if h.get("last_status_code") else None,
            last_error=h.get("last_error") or None,
            next_try_at=_dt(h.get("next_try_at")),
            created_at=_dt(h["created_at"]) or datetime.fromtimestamp(0, UTC),
            delivered_at=_dt(h.get("delivered_at")),
            dead_at=_dt(h.get("dead_at")),
            dead_reason=h.get("dead_reason") or None,
        )

    def body(self) -> dict[str, Any]:
        """The payload parsed: {"type", "timestamp", "data"}."""
        parsed: dict[str, Any] = json.loads(self.payload)
        return parsed


@dataclass(frozen=True)
class DeliveryOutcome:
    """What one `deliver` call did."""

    delivery_id: str
    result: Literal["delivered", "retry_scheduled", "dead", "skipped"]
    tries: int = 0
    status_code: int | None = None
    error: str | None = None
    next_try_at: datetime | None = None
    reason: str | None = None
    endpoint_disabled: bool = False


@dataclass(frozen=True)
class WebhookStats:
    emitted: int
    delivered: int
    failed: int
    retried: int
    dead: int
    gone: int
    replayed: int
    due: int
    dead_letters: int


def _dt(value: str | None) -> datetime | None:
    return datetime.fromtimestamp(float(value), UTC) if value else None


def _ts(when: datetime) -> str:
    return repr(when.timestamp())


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def message_id_for(event_id: str | None) -> str:
    """`msg_…`: derived from the event id when there is one (re-emits map to the same message)."""
    if event_id is None:
        return "msg_" + secrets.token_hex(12)
    return "msg_" + hashlib.sha256(event_id.encode()).hexdigest()[:24]


def delivery_id_for(message_id: str, endpoint_id: str) -> str:
    return "dlv_" + hashlib.sha256(f"{message_id}|{endpoint_id}".encode()).hexdigest()[:24]


# KEYS: due-set, stats, delivery hashes...  ARGV: now, due score, message id, event type, payload,
# then delivery id / endpoint id pairs in KEYS order.
_CREATE = """
local created = {}
for i = 3, #KEYS do
  local n = (i - 3) * 2
  local id, ep = ARGV[6 + n], ARGV[7 + n]
  if redis.call('EXISTS', KEYS[i]) == 0 then
    redis.call('HSET', KEYS[i], 'endpoint_id', ep, 'message_id', ARGV[3], 'event_type', ARGV[4],
      'payload', ARGV[5], 'tries', '0', 'status', 'pending', 'last_status_code', '',
      'last_error', '', 'next_try_at', ARGV[1], 'created_at', ARGV[1])
    redis.call('ZADD', KEYS[1], ARGV[2], id)
    created[#created + 1] = id
  end
end
if #created > 0 then redis.call('HINCRBY', KEYS[2], 'emitted', #created) end
return created
"""

# KEYS: delivery, endpoints hash, lock.  ARGV: now, lock ttl ms, lock token.
_BEGIN = """
local f = redis.call('HMGET', KEYS[1], 'status', 'next_try_at', 'endpoint_id', 'message_id',
  'payload', 'tries')
if not f[1] then return {'missing'} end
if f[1] ~= 'pending' and f[1] ~= 'failed' then return {'not_pending', f[1]} end
if f[2] and f[2] ~= '' and tonumber(f[2]) > tonumber(ARGV[1]) then return {'not_due', f[2]} end
if not redis.call('SET', KEYS[3], ARGV[3], 'NX', 'PX', ARGV[2]) then return {'locked'} end
local ep = redis.call('HGET', KEYS[2], f[3]) or ''
return {'ok', f[3], f[4], f[5], f[6], ep}
"""

# KEYS: delivery, dead list, due-set, stats.  ARGV: delivery id, now.
_REPLAY = """
if redis.call('HGET', KEYS[1], 'status') ~= 'dead' then return 0 end
redis.call('HSET', KEYS[1], 'status', 'pending', 'tries', '0', 'next_try_at', ARGV[2],
  'replayed_at', ARGV[2], 'dead_at', '', 'last_error', '')
redis.call('HINCRBY', KEYS[1], 'replays', 1)
redis.call('LREM', KEYS[2], 0, ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
redis.call('HINCRBY', KEYS[4], 'replayed', 1)
return 1
"""


class WebhookService:
    """The public face of webhook delivery (see the module docstring)."""

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        *,
        allow_private: bool = False,
        allow_networks: str | Sequence[str] = (),
        timeout_s: float = 15.0,
        retry_schedule: Sequence[float] | None = None,
        guard: UrlGuard | None = None,
        http: httpx.Client | None = None,
        lease_s: float = 120.0,
        retention_s: float = DEFAULT_RETENTION_S,
        wall_clock: Callable[[], float] = time.time,
        config: WebhookConfig | None = None,
    ) -> None:
        if not client.connection_pool.connection_kwargs.get("decode_responses"):
            raise ValueError("WebhookService needs a Redis client with decode_responses=True")
        self.r = client
        self.keys = keys
        self.timeout_s = timeout_s
        self.retry_schedule = tuple(retry_schedule) if retry_schedule is not None else None
        self.guard = guard or UrlGuard(allow_private=allow_private, allow_networks=allow_networks)
        self.endpoints = EndpointStore(client, keys, self.guard)
        self._own_http = http is None
        self.http = http or make_client(self.guard, timeout_s)
        self.lease_s = lease_s
        self.lock_ms = int((4 * timeout_s + 30) * 1000)
        self.retention_s = retention_s
        self.wall_clock = wall_clock
        self.config = config
        self.due = DueSet(client, keys.due_webhooks)
        self.stats_key = f"{keys.prefix}:webhooks:stats"
        self._create = client.register_script(_CREATE)
        self._begin = client.register_script(_BEGIN)
        self._replay = client.register_script(_REPLAY)

    @classmethod
    def from_settings(
        cls, client: redis.Redis, keys: Keys, settings: Settings, **overrides: Any
    ) -> WebhookService:
        """URL guard exceptions, timeout and (from `DIALER_WEBHOOK_CONFIG`, TOML) the retry
        schedule. Endpoints in the config file are not stored until `sync_config` is called."""
        config = load_config_file(settings.webhook_config) if settings.webhook_config else None
        options: dict[str, Any] = {
            "allow_private": settings.webhook_allow_private,
            "allow_networks": settings.webhook_allow_networks,
            "timeout_s": settings.webhook_timeout_s,
            "config": config,
        }
        if config is not None and config.retry_schedule is not None:
            options["retry_schedule"] = config.retry_schedule
        options.update(overrides)
        return cls(client, keys, **options)

    def sync_config(self, now: datetime | None = None) -> list[Endpoint]:
        """Store the config file's endpoints (upsert by id); nothing when there is no file."""
        return self.endpoints.sync(self.config, now) if self.config is not None else []

    def close(self) -> None:
        if self._own_http:
            self.http.close()

    def _lock_key(self, delivery_id: str) -> str:
        return f"{self.keys.prefix}:webhooks:lock:{delivery_id}"

    # -- emit ------------------------------------------------------------------------------------

    def emit(
        self, event_type: str, data: dict[str, Any], now: datetime, *, event_id: str | None = None
    ) -> list[str]:
        """Create one delivery per enabled endpoint whose filter matches; return the ids that
        are new (send them with `deliver`, e.g. via the Celery task). `data` must be JSON-ready
        (`model_dump(mode="json")`). Idempotent by `event_id`."""
        raw: dict[Any, Any] = self.r.hgetall(self.keys.webhook_endpoints)
        targets = sorted(
            (
                ep
                for ep in (parse_endpoint(str(v)) for v in raw.values())
                if ep.enabled and ep.wants(event_type)
            ),
            key=lambda e: e.id,
        )
        if not targets:
            return []
        message_id = message_id_for(event_id)
        payload = json.dumps(  # serialised once: the same bytes for every endpoint and try
            {"type": event_type, "timestamp": _iso(now), "data": data},
            separators=(",", ":"),
            ensure_ascii=False,
        )
        ids = [delivery_id_for(message_id, ep.id) for ep in targets]
        pairs = [
            x for delivery_id, ep in zip(ids, targets, strict=True) for x in (delivery_id, ep.id)
        ]
        created = self._create(
            keys=[
                self.keys.due_webhooks,
                self.stats_key,
                *(self.keys.webhook_delivery(i) for i in ids),
            ],
            args=[
                _ts(now),
                repr(now.timestamp() + self.lease_s),
                message_id,
                event_type,
                payload,
                *pairs,
            ],
        )
        return [str(c) for c in created]

    # -- deliver ---------------------------------------------------------------------------------

    def deliver(self, delivery_id: str, now: datetime) -> DeliveryOutcome:
        """One try. On a retryable failure the next try goes into the due-set at
        now + max(schedule delay, Retry-After); when the schedule is exhausted, or the endpoint
        is gone / disabled / removed, the delivery goes to the dead-letter list."""
        token = secrets.token_hex(8)  # the lock's value: tells two holders apart when debugging
        lock = self._lock_key(delivery_id)
        claimed = self._begin(
            keys=[self.keys.webhook_delivery(delivery_id), self.keys.webhook_endpoints, lock],
            args=[_ts(now), self.lock_ms, token],
        )
        if claimed[0] != "ok":
            reason = str(claimed[0]) + (f" ({claimed[1]})" if len(claimed) > 1 else "")
            return DeliveryOutcome(delivery_id, "skipped", reason=reason)
        _, endpoint_id, message_id, payload, tries_s, endpoint_raw = (str(x) for x in claimed)
        tries_before = int(tries_s or 0)
        endpoint = parse_endpoint(endpoint_raw) if endpoint_raw else None
        if endpoint is None or not endpoint.enabled:
            why = (
                "endpoint removed"
                if endpoint is None
                else f"endpoint disabled: {endpoint.disabled_reason or 'no reason given'}"
            )
            self._finish_dead(delivery_id, now, tries_before, None, why, why, tried=False)
            return DeliveryOutcome(delivery_id, "dead", tries=tries_before, reason=why)

        tries = tries_before + 1
        stamp = datetime.fromtimestamp(self.wall_clock(), UTC)
        headers = signed_headers(endpoint.secret_value(), message_id, stamp, payload)
        result = post_once(
            self.http, endpoint.url, payload.encode(), headers, timeout_s=self.timeout_s
        )
        # Retry-After as an HTTP date is the receiver's wall clock: compare it with ours (`stamp`),
        # then schedule relative to `now` (they differ only under a test / demo clock).
        verdict = classify(result, stamp)
        code = result.status_code

        if verdict.verdict is Verdict.DELIVERED:
            pipe = self.r.pipeline(transaction=True)
            key = self.keys.webhook_delivery(delivery_id)
            pipe.hset(
                key,
                mapping={
                    "status": DeliveryStatus.DELIVERED.value,
                    "tries": tries,
                    "last_status_code": "" if code is None else code,
                    "last_error": "",
                    "delivered_at": _ts(now),
                    "next_try_at": "",
                },
            )
            pipe.expire(key, int(self.retention_s))
            pipe.zrem(self.keys.due_webhooks, delivery_id)
            pipe.hincrby(self.stats_key, "delivered", 1)
            pipe.delete(lock)
            pipe.execute()
            log.debug("webhook %s delivered to %s (try %d)", delivery_id, endpoint_id, tries)
            return DeliveryOutcome(delivery_id, "delivered", tries=tries, status_code=code)

        if verdict.verdict is Verdict.GONE:
            reason = f"endpoint gone ({verdict.reason})"
            with contextlib.suppress(EndpointNotFound):  # removed meanwhile: nothing to disable
                self.endpoints.disable(endpoint_id, f"{verdict.reason} at {_iso(now)}")
            self._finish_dead(delivery_id, now, tries, code, verdict.reason, reason, gone=True)
            log.warning("webhook endpoint %s answered 410: disabled", endpoint_id)
            return DeliveryOutcome(
                delivery_id,
                "dead",
                tries=tries,
                status_code=code,
                error=verdict.reason,
                reason=reason,
                endpoint_disabled=True,
            )

        delay = (
            webhook_retry_delay(tries)
            if self.retry_schedule is None
            else webhook_retry_delay(tries, self.retry_schedule)
        )
        if delay is None:
            reason = f"retries exhausted after {tries} tries; last: {verdict.reason}"
            self._finish_dead(delivery_id, now, tries, code, verdict.reason, reason)
            log.warning("webhook %s to %s dead-lettered: %s", delivery_id, endpoint_id, reason)
            return DeliveryOutcome(
                delivery_id,
                "dead",
                tries=tries,
                status_code=code,
                error=verdict.reason,
                reason=reason,
            )
        wait = max(delay, verdict.retry_after_s or 0.0)
        next_at = now + timedelta(seconds=wait)
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(
            self.keys.webhook_delivery(delivery_id),
            mapping={
                "status": DeliveryStatus.FAILED.value,
                "tries": tries,
                "last_status_code": "" if code is None else code,
                "last_error": verdict.reason,
                "next_try_at": _ts(next_at),
            },
        )
        pipe.zadd(self.keys.due_webhooks, {delivery_id: next_at.timestamp()})
        pipe.hincrby(self.stats_key, "failed", 1)
        pipe.hincrby(self.stats_key, "retried", 1)
        pipe.delete(lock)
        pipe.execute()
        log.info(
            "webhook %s to %s failed (try %d: %s); next try in %.0f s",
            delivery_id,
            endpoint_id,
            tries,
            verdict.reason,
            wait,
        )
        return DeliveryOutcome(
            delivery_id,
            "retry_scheduled",
            tries=tries,
            status_code=code,
            error=verdict.reason,
            next_try_at=next_at,
        )

    def _finish_dead(
        self,
        delivery_id: str,
        now: datetime,
        tries: int,
        code: int | None,
        error: str,
        reason: str,
        *,
        tried: bool = True,
        gone: bool = False,
    ) -> None:
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(
            self.keys.webhook_delivery(delivery_id),
            mapping={
                "status": DeliveryStatus.DEAD.value,
                "tries": tries,
                "last_status_code": "" if code is None else code,
                "last_error": error,
                "next_try_at": "",
                "dead_at": _ts(now),
                "dead_reason": reason,
            },
        )
        pipe.zrem(self.keys.due_webhooks, delivery_id)
        pipe.lrem(self.keys.webhook_dead, 0, delivery_id)
        pipe.rpush(self.keys.webhook_dead, delivery_id)
        if tried:
            pipe.hincrby(self.stats_key, "failed", 1)
        if gone:
            pipe.hincrby(self.stats_key, "gone", 1)
        pipe.hincrby(self.stats_key, "dead", 1)
        pipe.delete(self._lock_key(delivery_id))
        pipe.execute()

    # -- the due-set -----------------------------------------------------------------------------

    def pop_due(self, now: datetime, limit: int = 500) -> list[str]:
        """Take up to `limit` deliveries due at `now` (oldest first). Atomic: concurrent callers
        get disjoint ids. A taken id is leased for `lease_s` (re-scored, not deleted): if its
        task is lost it becomes due again; `deliver` removes or re-schedules it."""
        return self.due.claim(now, limit=limit, lease_s=self.lease_s)

    # -- reading ---------------------------------------------------------------------------------

    def get(self, delivery_id: str) -> Delivery:
        h: dict[str, str] = self.r.hgetall(self.keys.webhook_delivery(delivery_id))  # type: ignore[assignment]
        if not h:
            raise DeliveryNotFound(f"no webhook delivery {delivery_id!r}")
        return Delivery.from_hash(delivery_id, h)

    def dead_letters(
        self,
        *,
        endpoint_id: str | None = None,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> list[Delivery]:
        """Dead deliveries in the order they died, by endpoint and/or `dead_at >= since`."""
        ids = [str(i) for i in self.r.lrange(self.keys.webhook_dead, 0, -1)]
        if not ids:
            return []
        pipe = self.r.pipeline(transaction=False)
        for delivery_id in ids:
            pipe.hgetall(self.keys.webhook_delivery(delivery_id))
        found: list[Delivery] = []
        for delivery_id, h in zip(ids, pipe.execute(), strict=True):
            if not h or h.get("status") != DeliveryStatus.DEAD.value:
                continue
            d = Delivery.from_hash(delivery_id, h)
            if endpoint_id is not None and d.endpoint_id != endpoint_id:
                continue
            if since is not None and (d.dead_at is None or d.dead_at < since):
                continue
            found.append(d)
            if limit is not None and len(found) >= limit:
                break
        return found

    # -- replay ----------------------------------------------------------------------------------

    def replay(
        self,
        delivery_id: str | None = None,
        *,
        endpoint_id: str | None = None,
        since: datetime | None = None,
        now: datetime,
    ) -> list[str]:
        """Put dead deliveries back in the due-set (due at `now`, a fresh retry schedule, the same
        message id). Choose one delivery, or dead letters by endpoint and/or `dead_at >= since`.
        Returns the replayed ids (send them now, or the beat will within a second).

        A delivery whose endpoint is disabled or removed is not replayed (enable it first):
        for a single id that is a WebhookError, in bulk it is skipped and stays dead."""
        if delivery_id is None and endpoint_id is None and since is None:
            raise ValueError("replay needs a delivery id, an endpoint id or a since time")
        if delivery_id is not None:
            delivery = self.get(delivery_id)
            if delivery.status is not DeliveryStatus.DEAD:
                return []
            candidates = [delivery]
        else:
            candidates = self.dead_letters(endpoint_id=endpoint_id, since=since)
        endpoints = {e.id: e for e in self.endpoints.list()}
        replayed: list[str] = []
        for d in candidates:
            endpoint = endpoints.get(d.endpoint_id)
            if endpoint is None or not endpoint.enabled:
                if delivery_id is not None:
                    state = "removed" if endpoint is None else "disabled"
                    raise WebhookError(
                        f"endpoint {d.endpoint_id} of delivery {d.id} is {state}; "
                        "enable it (or add it back) before replaying"
                    )
                continue
            done = self._replay(
                keys=[
                    self.keys.webhook_delivery(d.id),
                    self.keys.webhook_dead,
                    self.keys.due_webhooks,
                    self.stats_key,
                ],
                args=[d.id, _ts(now)],
            )
            if done:
                replayed.append(d.id)
        return replayed

    # -- metrics ---------------------------------------------------------------------------------

    def stats(self) -> WebhookStats:
        pipe = self.r.pipeline(transaction=False)
        pipe.hgetall(self.stats_key)
        pipe.zcard(self.keys.due_webhooks)
        pipe.llen(self.keys.webhook_dead)
        counters, due, dead = pipe.execute()

        def n(name: str) -> int:
            return int(counters.get(name, 0))

        return WebhookStats(
            emitted=n("emitted"),
            delivered=n("delivered"),
            failed=n("failed"),
            retried=n("retried"),
            dead=n("dead"),
            gone=n("gone"),
            replayed=n("replayed"),
            due=int(due),
            dead_letters=int(dead),
        )
