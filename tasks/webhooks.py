"""Webhook delivery task (queue "webhooks") and the glue around it.

- `dialer.webhooks.deliver(delivery_id)`: one try of one delivery (`WebhookService.deliver`).
  Retries are not Celery retries: the service puts the next try in the due-set and the beat
  (`send_due_deliveries`) sends it when due. A malformed message is dead-lettered, never raised.
- `enqueue_deliveries(ids)`: send one task per delivery id.
- `webhook_sink(rt)`: the EventSink the results consumer's events go through: emit -> enqueue.

One WebhookService (so one pooled httpx.Client) per worker process, built on first use, i.e.
after Celery has forked the process.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from dialer import metrics
from dialer.errors import DialerError
from dialer.runtime import Runtime
from dialer.webhooks import WebhookService, is_delivery_id
from tasks.app import app
from tasks.context import requeue_when_redis_is_away, runtime

log = logging.getLogger("dialer.tasks.webhooks")

DELIVER_TASK = "dialer.webhooks.deliver"
WEBHOOKS_QUEUE = "webhooks"

_service: tuple[Runtime, WebhookService] | None = None


def service_for(rt: Runtime) -> WebhookService:
    """This process's WebhookService for `rt` (built once; the config file's endpoints are
    synced into Redis then, best effort)."""
    global _service
    if _service is None or _service[0] is not rt:
        settings = rt.settings
        try:
            svc = WebhookService.from_settings(rt.client, rt.keys, settings)
        except DialerError as exc:
            # A broken config file must not stop deliveries (or lose events): log it loudly and
            # run with the default schedule and the endpoints already stored.
            log.error("webhook config %s not read: %s", settings.webhook_config, exc)
            svc = WebhookService(
                rt.client,
                rt.keys,
                allow_private=settings.webhook_allow_private,
                allow_networks=settings.webhook_allow_networks,
                timeout_s=settings.webhook_timeout_s,
            )
        try:
            svc.sync_config(rt.clock.now())
        except DialerError as exc:  # e.g. an endpoint the URL guard refuses
            log.error("webhook endpoints from %s not stored: %s", settings.webhook_config, exc)
        _service = (rt, svc)
    return _service[1]


def enqueue_deliveries(ids: Iterable[str]) -> int:
    """Send one `dialer.webhooks.deliver` task per id (one broker connection for all)."""
    sent = 0
    with app.producer_or_acquire() as producer:
        for delivery_id in ids:
            app.send_task(DELIVER_TASK, args=[delivery_id], queue=WEBHOOKS_QUEUE, producer=producer)
            sent += 1
    return sent


def send_due_deliveries(now: datetime, limit: int = 500) -> int:
    """Beat: send the deliveries whose next try is due."""
    return enqueue_deliveries(service_for(runtime()).pop_due(now, limit))


@app.task(name=DELIVER_TASK)
@requeue_when_redis_is_away
def deliver(delivery_id: Any = None, *extra: Any, **unexpected: Any) -> str:
    rt = runtime()
    now = rt.clock.now()
    if extra or unexpected or not is_delivery_id(delivery_id):
        why = "unexpected arguments" if extra or unexpected else "not a delivery id (dlv_…)"
        _dead_letter(rt, {"delivery_id": delivery_id, "args": list(extra), **unexpected}, why, now)
        return "malformed"
    outcome = service_for(rt).deliver(delivery_id, now)
    metrics.record_webhook(outcome.result, client=rt.client, keys=rt.keys)
    return outcome.result


def _dead_letter(rt: Runtime, payload: Any, reason: str, now: datetime) -> None:
    """Same record shape as the other queues' dead letters (`Keys.dead_letters`)."""
    body = json.dumps(payload, default=repr)
    rt.client.rpush(
        rt.keys.dead_letters,
        json.dumps(
            {"source": "webhooks", "reason": reason, "payload": body, "at": now.isoformat()}
        ),
    )
    log.warning("malformed webhook task dead-lettered: %s", reason)


class WebhookSink:
    """EventSink: each event becomes deliveries, sent at once. Idempotent by `event_id`
    (the service derives the delivery ids from it)."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def emit(self, event_type: str, data: dict[str, Any], *, event_id: str, now: datetime) -> None:
        ids = service_for(self.rt).emit(event_type, data, now, event_id=event_id)
        if ids:
            enqueue_deliveries(ids)


def webhook_sink(rt: Runtime) -> WebhookSink:
    return WebhookSink(rt)
