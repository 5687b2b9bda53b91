"""The HTTP API (FastAPI): `create_app(runtime) -> FastAPI`; OpenAPI at /openapi.json, docs at
/docs. Serve it with `dialer api` (uvicorn) or `dialer run` (API + worker + beat).

Routes (docs/API.md has curl examples):

    POST /v1/screenings                  submit one ScreeningRequest        screenings:write
    POST /v1/screenings/batch            JSON list or CSV, per-row errors   screenings:write
    GET  /v1/screenings                  page, pageSize, status, campaign   screenings:read
    GET  /v1/screenings/{call_id}        state, attempts, result, transcript screenings:read
    POST /v1/screenings/{call_id}/cancel                                    screenings:write
    POST /api/calls/outbound             seeds/002 compatible               screenings:write
    /v1/campaigns ...                    create, policy, pause, resume, progress
    /v1/webhooks ...                     endpoints, test, dead letters, replay      admin
    /v1/dnc ...                          do-not-call list                           admin
    GET  /healthz, GET /metrics          no key

Handlers that touch Redis are plain `def` functions (FastAPI runs them in its thread pool), so
the sync Redis client never blocks the event loop.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from pydantic.json_schema import models_json_schema

from dialer.apikeys import ApiKeyStore, auth_disabled
from dialer.campaigns import CampaignStore
from dialer.client import Dialer
from dialer.http import errors
from dialer.http.routes import campaigns, dnc, ops, outbound, screenings
from dialer.http.routes import webhooks as webhook_routes
from dialer.http.schemas import BatchEnvelope
from dialer.http.state import Services
from dialer.metrics import registry_for
from dialer.models import ScreeningRequest
from dialer.runtime import Runtime
from dialer.webhooks import WebhookService

API_VERSION = "1.0.0"

DESCRIPTION = """\
Queue phone pre-screenings, follow them, and manage campaigns, webhooks and the do-not-call
list.

**Auth**: every `/v1` and `/api` route needs an API key, sent as `Authorization: Bearer dk_…`
or `X-API-Key: dk_…`. Create one with `dialer apikeys create --scope screenings:write`.
Scopes: `screenings:read`, `screenings:write` (implies read), `admin` (webhooks, do-not-call;
implies all). For local development `DIALER_API_AUTH=off` admits loopback clients without a key.

**Errors**: `{"error": {"code", "message", "fields": [{"field", "message"}]}}`; 401 no / bad
key, 403 missing scope, 404 unknown id, 409 conflict, 422 invalid input (each field named),
503 Redis unreachable.
"""


def create_app(
    runtime: Runtime | None = None,
    *,
    webhooks: WebhookService | None = None,
    auth: bool | None = None,
    broker_url: str | None = None,
) -> FastAPI:
    """The API over `runtime` (default: `Runtime.from_settings()`, i.e. REDIS_URL or an embedded
    Redis). `auth=False` is `DIALER_API_AUTH=off` (loopback clients only); `broker_url`
    defaults to the Celery broker of this process (REDIS_URL)."""
    rt = runtime or Runtime.from_settings()
    service = webhooks or WebhookService.from_settings(rt.client, rt.keys, rt.settings)
    auth_on = (not auth_disabled()) if auth is None else auth

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        if webhooks is None:  # ours: close its HTTP client
            service.close()

    app = FastAPI(
        lifespan=lifespan,
        title="Screening dialer API",
        version=API_VERSION,
        description=DESCRIPTION,
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.services = Services(
        runtime=rt,
        dialer=Dialer(rt),
        campaigns=CampaignStore(rt.client, rt.keys),
        apikeys=ApiKeyStore(rt.client, rt.keys),
        webhooks=service,
        registry=registry_for(rt, service),
        auth_off=not auth_on,
        broker_url=broker_url or _default_broker(rt),
    )
    errors.install(app)
    for module in (screenings, outbound, campaigns, webhook_routes, dnc, ops):
        app.include_router(module.router)
    _document_raw_bodies(app)
    return app


def _default_broker(rt: Runtime) -> str | None:
    return (
        os.environ.get("CELERY_BROKER_URL") or rt.settings.redis_url or os.environ.get("REDIS_URL")
    )


def _document_raw_bodies(app: FastAPI) -> None:
    """Routes that read their JSON body themselves (so intake validates it and records every
    rejection) reference `ScreeningRequest` / `BatchEnvelope` in OpenAPI; add those schemas."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = original()
        _, defs = models_json_schema(
            [(ScreeningRequest, "validation"), (BatchEnvelope, "validation")],
            ref_template="#/components/schemas/{model}",
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for name, body in defs.get("$defs", {}).items():
            components.setdefault(name, body)
        # FastAPI documents its own 422 shape; ours is the standard error body.
        error_ref = {"$ref": "#/components/schemas/ErrorBody"}
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                invalid = operation.get("responses", {}).get("422")
                if invalid is not None and "HTTPValidationError" in str(invalid):
                    invalid["content"] = {"application/json": {"schema": error_ref}}
                    invalid["description"] = "Invalid input; `fields` names each problem"
        components.pop("HTTPValidationError", None)
        components.pop("ValidationError", None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
