"""One HTTP try of one webhook delivery, and what its result means.

`post_once` does the I/O (httpx, never raises for network trouble); `classify` is pure and
decides: delivered, retry (maybe with the receiver's Retry-After) or gone.

    2xx                       delivered
    410 Gone                  gone: the endpoint is disabled, the delivery dead-lettered
    429, 503                  retry; `Retry-After` (seconds or HTTP date) honoured, capped at 24 h
    3xx                       retry (redirects are never followed: a redirect could point at an
                              address the URL guard would refuse)
    other 1xx / 4xx / 5xx     retry per schedule
    timeout, connection error, refused by the URL guard at send time
                              retry per schedule

`make_client` builds the one pooled `httpx.Client` a process uses: keep-alive pool, per-phase
timeout of `timeout_s` (15 s by default), no redirects, no proxies from the environment, and the
URL guard's pinning network backend (see `urlguard`).
"""

from __future__ import annotations

import email.utils
import ssl
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

import httpcore
import httpx

from dialer.errors import UnsafeWebhookURL
from dialer.webhooks.urlguard import GuardedBackend, UrlGuard

RETRY_AFTER_CAP_S = 24 * 3600.0
USER_AGENT = "screening-dialer-webhooks/1"
_MAX_BODY = 64 * 1024  # read at most this much of a response (the rest is not kept)
_ERROR_SNIPPET = 200


class Verdict(StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"
    GONE = "gone"


@dataclass(frozen=True)
class TryResult:
    """What one HTTP try produced. `status_code` is None when no response arrived."""

    status_code: int | None
    retry_after: str | None = None
    error: str | None = None
    elapsed_s: float = 0.0


@dataclass(frozen=True)
class Classified:
    verdict: Verdict
    reason: str
    retry_after_s: float | None = None


def parse_retry_after(
    value: str | None, now: datetime, *, cap_s: float = RETRY_AFTER_CAP_S
) -> float | None:
    """Seconds to wait from a `Retry-After` value (delay-seconds or HTTP-date), clamped to
    [0, cap_s]; None when absent or unparseable."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if value.isascii() and value.isdigit():
        seconds = float(value)
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - now).total_seconds()
    return min(max(seconds, 0.0), cap_s)


def classify(
    result: TryResult, now: datetime, *, retry_after_cap_s: float = RETRY_AFTER_CAP_S
) -> Classified:
    """The meaning of one try's result. Pure."""
    code = result.status_code
    if code is None:
        return Classified(Verdict.RETRY, result.error or "no response")
    if 200 <= code < 300:
        return Classified(Verdict.DELIVERED, f"HTTP {code}")
    detail = f"HTTP {code}" + (f": {result.error}" if result.error else "")
    if code == 410:
        return Classified(Verdict.GONE, detail)
    if code in (429, 503):
        wait = parse_retry_after(result.retry_after, now, cap_s=retry_after_cap_s)
        return Classified(Verdict.RETRY, detail, wait)
    if 300 <= code < 400:
        return Classified(Verdict.RETRY, f"{detail} (redirects are not followed)")
    return Classified(Verdict.RETRY, detail)


def make_client(
    guard: UrlGuard,
    timeout_s: float,
    *,
    max_connections: int = 100,
    verify: ssl.SSLContext | str | bool = True,
) -> httpx.Client:
    """The pooled client for deliveries; build once per process (after fork) and reuse.
    `verify`: as httpx's (a CA bundle path for a private CA; SSL_CERT_FILE is honoured too)."""
    transport = httpx.HTTPTransport(trust_env=False, retries=0)
    # httpx does not expose httpcore's `network_backend`; swap in a pool that uses the guard's
    # pinning backend, with the same TLS context and limits httpx would use.
    transport._pool = httpcore.ConnectionPool(
        ssl_context=httpx.create_ssl_context(verify=verify),
        max_connections=max_connections,
        max_keepalive_connections=max_connections,
        keepalive_expiry=30.0,
        network_backend=GuardedBackend(guard),
    )
    return httpx.Client(
        transport=transport,
        timeout=httpx.Timeout(timeout_s),
        follow_redirects=False,
        trust_env=False,
        headers={"user-agent": USER_AGENT, "content-type": "application/json"},
    )


def post_once(
    client: httpx.Client, url: str, body: bytes, headers: dict[str, str], *, timeout_s: float
) -> TryResult:
    """POST once. Never raises for timeouts, network errors or the URL guard: they come back
    as a TryResult with `status_code=None` and `error` set."""
    start = time.perf_counter()
    deadline = start + timeout_s
    try:
        with client.stream("POST", url, content=body, headers=headers) as response:
            snippet = _read_some(response, deadline, keep=not response.is_success)
            error = None
            if not response.is_success:
                text = snippet.decode("utf-8", "replace").strip()
                error = " ".join(text.split())[:_ERROR_SNIPPET] or None
            return TryResult(
                status_code=response.status_code,
                retry_after=response.headers.get("retry-after"),
                error=error,
                elapsed_s=time.perf_counter() - start,
            )
    except UnsafeWebhookURL as exc:
        return _failed(f"refused by the URL guard at send time: {exc}", start)
    except httpx.TimeoutException as exc:
        return _failed(f"timeout after {timeout_s:g} s ({type(exc).__name__})", start)
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        return _failed(f"{type(exc).__name__}: {exc}"[:_ERROR_SNIPPET], start)


def _read_some(response: httpx.Response, deadline: float, *, keep: bool) -> bytes:
    """Read the body so the connection can go back to the pool, but never more than _MAX_BODY
    bytes or past the deadline (closing early then drops the connection instead)."""
    kept = bytearray()
    read = 0
    for chunk in response.iter_raw():
        read += len(chunk)
        if keep and len(kept) < _ERROR_SNIPPET * 4:
            kept.extend(chunk[: _ERROR_SNIPPET * 4 - len(kept)])
        if read > _MAX_BODY or time.perf_counter() > deadline:
            break
    return bytes(kept)


def _failed(error: str, start: float) -> TryResult:
    return TryResult(status_code=None, error=error, elapsed_s=time.perf_counter() - start)
