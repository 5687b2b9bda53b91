"""`/v1/webhooks`: endpoints (add, list, get, remove, enable, disable, test), dead letters and
replay. Admin scope: endpoints hold signing secrets."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from dialer.errors import FieldProblem, ValidationFailed
from dialer.http.auth import ADMIN
from dialer.http.errors import error_responses
from dialer.http.schemas import (
    DeliveryOut,
    PauseRequest,
    ReplayRequest,
    ReplayResult,
    WebhookCreate,
    WebhookCreated,
    WebhookOut,
    WebhookTestResult,
)
from dialer.http.state import services
from dialer.http.webhook_test import send_test_event
from dialer.webhooks import Delivery, Endpoint

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"], dependencies=[ADMIN])


def endpoint_out(endpoint: Endpoint) -> WebhookOut:
    return WebhookOut.model_validate(endpoint.public())


def delivery_out(d: Delivery) -> DeliveryOut:
    return DeliveryOut(
        id=d.id,
        endpoint_id=d.endpoint_id,
        message_id=d.message_id,
        event_type=d.event_type,
        tries=d.tries,
        status=d.status.value,
        last_status_code=d.last_status_code,
        last_error=d.last_error,
        created_at=d.created_at,
        dead_at=d.dead_at,
        dead_reason=d.dead_reason,
    )


@router.post(
    "",
    status_code=201,
    response_model=WebhookCreated,
    summary="Add a webhook endpoint",
    description=(
        "Events: `screening.completed`, `screening.attempt`, `screening.retry_scheduled` or "
        '`["*"]`. Deliveries are signed per Standard Webhooks with the endpoint\'s secret, '
        "returned once here (generated when not given). The URL must resolve to public "
        "addresses, or to networks listed in DIALER_WEBHOOK_ALLOW_NETWORKS."
    ),
    responses=error_responses(401, 403, 409, 422, 503),
)
def add_endpoint(body: WebhookCreate, request: Request) -> WebhookCreated:
    svc = services(request)
    endpoint = svc.webhooks.endpoints.add(
        body.url,
        events=body.events,
        secret=body.secret,
        description=body.description,
        endpoint_id=body.id,
        now=svc.runtime.clock.now(),
    )
    return WebhookCreated(endpoint=endpoint_out(endpoint), secret=endpoint.secret_value())


@router.get(
    "",
    response_model=list[WebhookOut],
    summary="List webhook endpoints",
    responses=error_responses(401, 403, 503),
)
def list_endpoints(request: Request) -> list[WebhookOut]:
    return [endpoint_out(e) for e in services(request).webhooks.endpoints.list()]


@router.get(
    "/dead",
    response_model=list[DeliveryOut],
    summary="Dead-lettered deliveries",
    description="Deliveries that ran out of retries (or whose endpoint went away), oldest first.",
    responses=error_responses(401, 403, 422, 503),
)
def dead_letters(
    request: Request,
    endpoint_id: Annotated[str | None, Query(max_length=67)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[DeliveryOut]:
    found = services(request).webhooks.dead_letters(endpoint_id=endpoint_id, limit=limit)
    return [delivery_out(d) for d in found]


@router.post(
    "/replay",
    response_model=ReplayResult,
    summary="Replay dead deliveries",
    description=(
        "One delivery (`delivery_id`), or the dead letters of an endpoint and/or since a time. "
        "They are sent again within about a second, with the same `webhook-id`."
    ),
    responses=error_responses(401, 403, 404, 409, 422, 503),
)
def replay(body: ReplayRequest, request: Request) -> ReplayResult:
    if body.delivery_id is None and body.endpoint_id is None and body.since is None:
        raise ValidationFailed(
            [FieldProblem("(body)", "give delivery_id, endpoint_id and/or since")]
        )
    if body.since is not None and body.since.tzinfo is None:
        raise ValidationFailed([FieldProblem("since", "must include a UTC offset")])
    svc = services(request)
    replayed = svc.webhooks.replay(
        body.delivery_id,
        endpoint_id=body.endpoint_id,
        since=body.since,
        now=svc.runtime.clock.now(),
    )
    return ReplayResult(replayed=replayed)


@router.get(
    "/{endpoint_id}",
    response_model=WebhookOut,
    summary="Retrieve a webhook endpoint",
    responses=error_responses(401, 403, 404, 503),
)
def get_endpoint(endpoint_id: str, request: Request) -> WebhookOut:
    return endpoint_out(services(request).webhooks.endpoints.get(endpoint_id))


@router.delete(
    "/{endpoint_id}",
    status_code=204,
    summary="Remove a webhook endpoint",
    description="Its pending deliveries are dead-lettered at their next try.",
    responses=error_responses(401, 403, 404, 503),
)
def remove_endpoint(endpoint_id: str, request: Request) -> None:
    svc = services(request)
    svc.webhooks.endpoints.get(endpoint_id)  # 404 when unknown
    svc.webhooks.endpoints.remove(endpoint_id)


@router.post(
    "/{endpoint_id}/enable",
    response_model=WebhookOut,
    summary="Enable a webhook endpoint",
    responses=error_responses(401, 403, 404, 409, 503),
)
def enable(endpoint_id: str, request: Request) -> WebhookOut:
    return endpoint_out(services(request).webhooks.endpoints.enable(endpoint_id))


@router.post(
    "/{endpoint_id}/disable",
    response_model=WebhookOut,
    summary="Disable a webhook endpoint",
    responses=error_responses(401, 403, 404, 409, 422, 503),
)
def disable(endpoint_id: str, request: Request, body: PauseRequest | None = None) -> WebhookOut:
    reason = (body.reason if body is not None else "") or "disabled by operator"
    return endpoint_out(services(request).webhooks.endpoints.disable(endpoint_id, reason))


@router.post(
    "/{endpoint_id}/test",
    response_model=WebhookTestResult,
    summary="Send a signed test event now",
    description=(
        "Posts one `webhook.test` event signed with the endpoint's secret and reports the "
        "receiver's answer. Nothing is stored or retried."
    ),
    responses=error_responses(401, 403, 404, 503),
)
def test_endpoint(endpoint_id: str, request: Request) -> WebhookTestResult:
    result = send_test_event(services(request).webhooks, endpoint_id)
    return WebhookTestResult(
        endpoint_id=result.endpoint_id,
        delivered=result.delivered,
        verdict=result.verdict,
        status_code=result.status_code,
        reason=result.reason,
        elapsed_ms=round(result.elapsed_s * 1000, 1),
    )
