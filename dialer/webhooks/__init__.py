"""CRM webhooks: endpoints, Standard Webhooks signing, delivery with retries through the due-set,
dead letters and replay, and the outbound URL guard (DESIGN section 7).

    service = WebhookService.from_settings(client, keys, settings)
    service.endpoints.add("https://crm.example.com/hooks", events=["screening.completed"])
    ids = service.emit("screening.completed", final.model_dump(mode="json"), now, event_id=eid)
    for delivery_id in ids:                      # normally: the Celery task per id
        service.deliver(delivery_id, now)
    service.pop_due(now)                         # the beat: retries that are due
    service.dead_letters(); service.replay(endpoint_id="ep_crm", now=now)
    load_webhook_config(service.endpoints, "webhooks.toml", now=now)   # `dialer webhooks load`

Errors come from `dialer.errors` (WebhookError, UnsafeWebhookURL, ValidationFailed) plus the two
not-found errors defined here (both WebhookError subclasses).
"""

from dialer.webhooks.delivery import (
    Classified,
    TryResult,
    Verdict,
    classify,
    make_client,
    parse_retry_after,
    post_once,
)
from dialer.webhooks.endpoints import (
    ALL_EVENTS,
    ConfigEntryResult,
    ConfigLoadReport,
    Endpoint,
    EndpointNotFound,
    EndpointSpec,
    EndpointStore,
    WebhookConfig,
    load_config_file,
    load_webhook_config,
    parse_config,
)
from dialer.webhooks.service import (
    Delivery,
    DeliveryNotFound,
    DeliveryOutcome,
    DeliveryStatus,
    WebhookService,
    WebhookStats,
    is_delivery_id,
)
from dialer.webhooks.signing import generate_secret, mask_secret, signed_headers, validate_secret
from dialer.webhooks.urlguard import LOOPBACK_NETWORKS, UrlGuard, address_problem, parse_networks

__all__ = [
    "ALL_EVENTS",
    "LOOPBACK_NETWORKS",
    "Classified",
    "ConfigEntryResult",
    "ConfigLoadReport",
    "Delivery",
    "DeliveryNotFound",
    "DeliveryOutcome",
    "DeliveryStatus",
    "Endpoint",
    "EndpointNotFound",
    "EndpointSpec",
    "EndpointStore",
    "TryResult",
    "UrlGuard",
    "Verdict",
    "WebhookConfig",
    "WebhookService",
    "WebhookStats",
    "address_problem",
    "classify",
    "generate_secret",
    "is_delivery_id",
    "load_config_file",
    "load_webhook_config",
    "make_client",
    "mask_secret",
    "parse_config",
    "parse_networks",
    "parse_retry_after",
    "post_once",
    "signed_headers",
    "validate_secret",
]
