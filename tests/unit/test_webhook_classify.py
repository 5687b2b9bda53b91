"""What one delivery try's result means (pure): delivered, retry (with Retry-After) or gone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dialer.webhooks.delivery import (
    RETRY_AFTER_CAP_S,
    TryResult,
    Verdict,
    classify,
    parse_retry_after,
)

NOW = datetime(2025, 3, 4, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize("code", [200, 201, 202, 204, 299])
def test_2xx_is_delivered(code: int) -> None:
    assert classify(TryResult(code), NOW).verdict is Verdict.DELIVERED


def test_410_is_gone() -> None:
    result = classify(TryResult(410, error="endpoint deleted"), NOW)
    assert result.verdict is Verdict.GONE
    assert "410" in result.reason


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
def test_redirects_are_failures_not_followed(code: int) -> None:
    result = classify(TryResult(code), NOW)
    assert result.verdict is Verdict.RETRY
    assert "redirects are not followed" in result.reason


@pytest.mark.parametrize("code", [100, 400, 401, 403, 404, 408, 413, 422, 500, 502, 504])
def test_other_statuses_retry_on_schedule(code: int) -> None:
    result = classify(TryResult(code, retry_after="3600"), NOW)
    assert result.verdict is Verdict.RETRY
    assert result.retry_after_s is None  # Retry-After only counts on 429 / 503


@pytest.mark.parametrize("code", [429, 503])
def test_429_and_503_honour_retry_after_seconds(code: int) -> None:
    result = classify(TryResult(code, retry_after="120"), NOW)
    assert result.verdict is Verdict.RETRY
    assert result.retry_after_s == 120


def test_retry_after_as_http_date() -> None:
    when = format_datetime(NOW + timedelta(minutes=10), usegmt=True)
    assert classify(TryResult(503, retry_after=when), NOW).retry_after_s == 600


def test_429_without_retry_after_uses_the_schedule() -> None:
    result = classify(TryResult(429), NOW)
    assert result.verdict is Verdict.RETRY
    assert result.retry_after_s is None


@pytest.mark.parametrize(
    "error",
    ["timeout after 15 s (ReadTimeout)", "ConnectError: refused", "refused by the URL guard"],
)
def test_no_response_retries_with_the_error_as_reason(error: str) -> None:
    result = classify(TryResult(None, error=error), NOW)
    assert result.verdict is Verdict.RETRY
    assert result.reason == error


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("  ", None),
        ("0", 0.0),
        ("30", 30.0),
        (" 45 ", 45.0),
        ("soon", None),
        ("-5", None),
        ("1.5", None),
        ("²", None),  # a Unicode digit is not delay-seconds
        (str(10 * 86400), RETRY_AFTER_CAP_S),  # capped at 24 h
        (format_datetime(NOW - timedelta(hours=1), usegmt=True), 0.0),  # in the past: now
        (format_datetime(NOW + timedelta(days=3), usegmt=True), RETRY_AFTER_CAP_S),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, NOW) == expected


@given(st.integers(min_value=0, max_value=10**9))
def test_retry_after_seconds_are_always_within_the_cap(seconds: int) -> None:
    parsed = parse_retry_after(str(seconds), NOW)
    assert parsed is not None
    assert 0 <= parsed <= RETRY_AFTER_CAP_S
    assert parsed == min(seconds, RETRY_AFTER_CAP_S)


@given(st.one_of(st.none(), st.integers(min_value=100, max_value=599)), st.text(max_size=30))
def test_classify_is_total(code: int | None, retry_after: str) -> None:
    result = classify(TryResult(code, retry_after=retry_after, error="x"), NOW)
    assert result.verdict in (Verdict.DELIVERED, Verdict.RETRY, Verdict.GONE)
    if result.retry_after_s is not None:
        assert 0 <= result.retry_after_s <= RETRY_AFTER_CAP_S
