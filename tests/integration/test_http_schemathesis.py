"""Schemathesis against the app's own OpenAPI document, through a real uvicorn server: no input
it generates (valid or not) may produce a 500, and every response must match the documented
status codes and schemas.

Bounded: a few examples per operation, so the whole run stays in seconds. Webhook URLs resolve
through a resolver that knows no names (no DNS, no network): generated URLs are refused by the
guard instead of reaching out.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import redis
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from dialer.apikeys import ApiKeyStore
from dialer.http import create_app
from dialer.webhooks import UrlGuard, WebhookService
from tests.support.http import serve
from tests.support.runtime import make_runtime
from tests.support.seed import seed_request

NOW = datetime(2026, 3, 4, 9, 0, tzinfo=UTC)


def _no_dns(host: str, port: int) -> list[str]:
    raise OSError(f"no resolver in this test ({host})")


@pytest.fixture(scope="module")
def live(redis_url: str) -> Iterator[tuple[str, dict[str, str]]]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushdb()
    t = make_runtime(client, NOW)
    service = WebhookService(
        client, t.runtime.keys, guard=UrlGuard(allow_private=False, resolver=_no_dns), timeout_s=1.0
    )
    _, token = ApiKeyStore(client, t.runtime.keys).create(["admin"], name="schemathesis")
    # Something to find: a screening and a campaign, so lookups do not all miss.
    t.runtime.intake.submit(seed_request(call_id="known", campaign_id="known"), NOW)
    app = create_app(t.runtime, webhooks=service, auth=True, broker_url=redis_url)
    with serve(app) as base:
        yield base, {"Authorization": f"Bearer {token}"}
    service.close()
    client.flushdb()
    client.close()


def _spec() -> dict[str, Any]:
    """The app's OpenAPI document (building the app opens no connection)."""
    unused = redis.Redis.from_url("redis://127.0.0.1:9/0", decode_responses=True)
    runtime = make_runtime(unused, NOW).runtime
    service = WebhookService(unused, runtime.keys, allow_private=False)
    try:
        return create_app(runtime, webhooks=service).openapi()
    finally:
        service.close()


CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]
# Bodies whose schema is large (ScreeningRequest, campaign policies) make the coverage phase
# enumerate hundreds of variants each; they get the fuzzing phase only, every other operation
# gets both. Loaded at import: schemathesis' lazy fixture loader does not support this pytest.
HEAVY = [
    ("POST", "/v1/screenings"),
    ("POST", "/v1/screenings/batch"),
    ("POST", "/v1/campaigns"),
    ("PUT", "/v1/campaigns/{campaign_id}/policy"),
]

_coverage = schemathesis.openapi.from_dict(_spec())
_coverage.config.phases.update(phases=["coverage"])
coverage = _coverage.exclude(
    func=lambda ctx: (ctx.operation.method.upper(), ctx.operation.path) in HEAVY
)

fuzzing = schemathesis.openapi.from_dict(_spec())
fuzzing.config.phases.update(phases=["examples", "fuzzing"])


def _call(case: Any, live: tuple[str, dict[str, str]]) -> None:
    base, headers = live
    case.call_and_validate(base_url=base, headers=headers, timeout=20, checks=CHECKS)


@coverage.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_coverage_phase_has_no_server_errors(case: Any, live: tuple[str, dict[str, str]]) -> None:
    _call(case, live)


@fuzzing.parametrize()
@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_fuzzing_has_no_server_errors(case: Any, live: tuple[str, dict[str, str]]) -> None:
    _call(case, live)
