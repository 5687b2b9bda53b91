"""Send one signed test event to a webhook endpoint, now, and report what happened.

Used by `POST /v1/webhooks/{id}/test` and `dialer webhooks test`. The event is signed with the
endpoint's secret exactly like a real delivery (Standard Webhooks headers), goes through the same
URL guard and client, and is not stored or retried: it answers "does my receiver verify and
accept what this system sends?".

    {"type": "webhook.test", "timestamp": "...Z", "data": {"endpoint_id": "ep_…", "message": …}}
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from dialer.webhooks import WebhookService, classify, post_once, signed_headers

TEST_EVENT = "webhook.test"


@dataclass(frozen=True)
class TestDelivery:
    __test__ = False  # not a pytest class

    endpoint_id: str
    delivered: bool
    verdict: Literal["delivered", "retry", "gone"]
    status_code: int | None
    reason: str
    elapsed_s: float


def send_test_event(service: WebhookService, endpoint_id: str) -> TestDelivery:
    endpoint = service.endpoints.get(endpoint_id)  # EndpointNotFound
    stamp = datetime.now(UTC)
    payload = json.dumps(
        {
            "type": TEST_EVENT,
            "timestamp": stamp.isoformat().replace("+00:00", "Z"),
            "data": {
                "endpoint_id": endpoint.id,
                "message": "test delivery from the screening dialer; verify the signature",
            },
        },
        separators=(",", ":"),
    )
    message_id = "msg_test_" + secrets.token_hex(8)
    headers = signed_headers(endpoint.secret_value(), message_id, stamp, payload)
    result = post_once(
        service.http, endpoint.url, payload.encode(), headers, timeout_s=service.timeout_s
    )
    verdict = classify(result, stamp)
    return TestDelivery(
        endpoint_id=endpoint.id,
        delivered=verdict.verdict.value == "delivered",
        verdict=verdict.verdict.value,
        status_code=result.status_code,
        reason=verdict.reason,
        elapsed_s=result.elapsed_s,
    )
