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

`make_client` builds the one pooled `httpx.Client` a process uses: keep-alive pool, no
redirects, no proxies from the environment, and the URL guard's pinning network backend (see
`urlguard`) wrapped in `DeadlineBackend`.

Timeout: "2xx within 15 s" is a deadline for the whole try (connect, TLS, sending, status line,
headers and body), not per phase. httpx's timeouts apply to each socket operation, so a receiver
that trickles its reply a byte at a time would never trip them. `post_once` therefore sets an
overall deadline (`timeout_s`) for the calling thread, and every socket operation of the
delivery client gets at most the time that is left; once it is spent the next operation raises
a timeout, and the try counts as failed even when a 2xx status line had already arrived.
"""

from __future__ import annotations

import contextlib
import email.utils
import ssl
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

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


# -- the overall deadline of one try ------------------------------------------------------------

_deadline = threading.local()  # `at`: time.monotonic() by which the current try must be done
_WRITE_CHUNK = 16 * 1024  # a write is one socket timeout: bound each chunk by what is left


@contextlib.contextmanager
def overall_deadline(seconds: float) -> Iterator[None]:
    """Every socket operation of a `DeadlineBackend` in this thread ends by `seconds` from now."""
    previous = getattr(_deadline, "at", None)
    _deadline.at = time.monotonic() + seconds
    try:
        yield
    finally:
        _deadline.at = previous


def _time_left(timeout: float | None, expired: type[Exception]) -> float | None:
    """The per-operation timeout capped by the thread's deadline; `expired` once it passed."""
    at: float | None = getattr(_deadline, "at", None)
    if at is None:
        return timeout
    left = at - time.monotonic()
    if left <= 0:
        # Never hand a socket a timeout of 0: that would make it non-blocking, not expired.
        raise expired("the try's overall deadline passed")
    return left if timeout is None else min(timeout, left)


class DeadlineStream(httpcore.NetworkStream):
    """A network stream whose reads and writes end by the thread's overall deadline."""

    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _time_left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        for start in range(0, len(buffer), _WRITE_CHUNK):
            chunk = buffer[start : start + _WRITE_CHUNK]
            self._stream.write(chunk, _time_left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        left = _time_left(timeout, httpcore.ConnectTimeout)
        return DeadlineStream(self._stream.start_tls(ssl_context, server_hostname, left))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class DeadlineBackend(httpcore.NetworkBackend):
    """Wraps a network backend (the guard's pinning one) so its streams honour the deadline."""

    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self.inner = inner

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        left = _time_left(timeout, httpcore.ConnectTimeout)
        stream = self.inner.connect_tcp(host, port, left, local_address, socket_options)
        return DeadlineStream(stream)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("webhooks are delivered over TCP only")

    def sleep(self, seconds: float) -> None:
        self.inner.sleep(seconds)


def make_client(
    guard: UrlGuard,
    timeout_s: float,
    *,
    max_connections: int = 100,
    verify: ssl.SSLContext | str | bool = True,
) -> httpx.Client:
    """The pooled client for deliveries; build once per process (after fork) and reuse.
    `timeout_s` bounds each socket operation; `post_once` adds the overall deadline.
    `verify`: as httpx's (a CA bundle path for a private CA; SSL_CERT_FILE is honoured too)."""
    transport = httpx.HTTPTransport(trust_env=False, retries=0)
    # httpx does not expose httpcore's `network_backend`; swap in a pool that uses the guard's
    # pinning backend, with the same TLS context and limits httpx would use.
    transport._pool = httpcore.ConnectionPool(
        ssl_context=httpx.create_ssl_context(verify=verify),
        max_connections=max_connections,
        max_keepalive_connections=max_connections,
        keepalive_expiry=30.0,
        network_backend=DeadlineBackend(GuardedBackend(guard)),
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
    """POST once, all of it (connect to last body byte) within `timeout_s`. Never raises for
    timeouts, network errors or the URL guard: they come back as a TryResult with
    `status_code=None` and `error` set."""
    start = time.perf_counter()
    try:
        with (
            overall_deadline(timeout_s),
            client.stream("POST", url, content=body, headers=headers) as response,
        ):
            snippet = _read_some(response, keep=not response.is_success)
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


def _read_some(response: httpx.Response, *, keep: bool) -> bytes:
    """Read the body so the connection can go back to the pool, but never more than _MAX_BODY
    bytes (closing early then drops the connection instead). A body still arriving at the
    deadline raises httpx.ReadTimeout: the try did not finish in time."""
    kept = bytearray()
    read = 0
    for chunk in response.iter_raw():
        read += len(chunk)
        if keep and len(kept) < _ERROR_SNIPPET * 4:
            kept.extend(chunk[: _ERROR_SNIPPET * 4 - len(kept)])
        if read > _MAX_BODY:
            break
    return bytes(kept)


def _failed(error: str, start: float) -> TryResult:
    return TryResult(status_code=None, error=error, elapsed_s=time.perf_counter() - start)
