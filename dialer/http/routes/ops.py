"""`/healthz` (Redis and broker reachable) and `/metrics` (Prometheus). No API key: point the
load balancer and Prometheus at them; keep them on the internal network."""

from __future__ import annotations

import os
import time

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from dialer.http.schemas import Check, Health
from dialer.http.state import services
from dialer.metrics import scrape

router = APIRouter(tags=["operations"])


def _check_redis(request: Request) -> Check:
    started = time.perf_counter()
    try:
        services(request).runtime.client.ping()
    except Exception as exc:  # any failure means "not reachable"; say which
        return Check(ok=False, latency_ms=_ms(started), error=f"{type(exc).__name__}: {exc}"[:200])
    return Check(ok=True, latency_ms=_ms(started))


def _check_broker(url: str | None) -> Check:
    started = time.perf_counter()
    if not url:
        return Check(ok=False, latency_ms=0.0, error="no broker URL configured (set REDIS_URL)")
    from kombu.connection import Connection

    options: dict[str, object] = {"socket_timeout": 2}
    master = os.environ.get("REDIS_SENTINEL_MASTER")
    if url.startswith("sentinel://") and master:  # as celeryconfig configures Celery
        options["master_name"] = master
    try:
        with Connection(  # type: ignore[no-untyped-call]
            url, connect_timeout=2, transport_options=options
        ) as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=2)
    except Exception as exc:  # kombu raises library-specific errors; any means "not reachable"
        return Check(ok=False, latency_ms=_ms(started), error=f"{type(exc).__name__}"[:200])
    return Check(ok=True, latency_ms=_ms(started))


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


@router.get(
    "/healthz",
    response_model=Health,
    summary="Health: Redis and the Celery broker are reachable",
    responses={503: {"model": Health, "description": "Something is unreachable"}},
)
def healthz(request: Request) -> JSONResponse:
    checks = {
        "redis": _check_redis(request),
        "broker": _check_broker(services(request).broker_url),
    }
    ok = all(c.ok for c in checks.values())
    body = Health(status="ok" if ok else "unavailable", checks=checks)
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if ok else 503)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
def metrics(request: Request) -> Response:
    return Response(scrape(services(request).registry), media_type=CONTENT_TYPE_LATEST)
