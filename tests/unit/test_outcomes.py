"""Every row of the outcome table in `dialer.outcomes` (DESIGN section 5)."""

from __future__ import annotations

import pytest

from dialer.errors import (
    CallNotConnected,
    PermanentDialError,
    ThrottledError,
    TransientDialError,
)
from dialer.models import DialOutcome
from dialer.outcomes import Classified, classify_sip, mentions_limit, to_error

B, N, D, F, T, X = (
    DialOutcome.BUSY,
    DialOutcome.NO_ANSWER,
    DialOutcome.DECLINED,
    DialOutcome.FAILED,
    DialOutcome.THROTTLED,
    DialOutcome.TRANSIENT,
)

# (sip code, twirp code as LiveKit maps it, message, expected)
SIP_ROWS = [
    (486, "resource_exhausted", "sip status 486: Busy Here", B),
    (600, "resource_exhausted", "sip status 600: Busy Everywhere", B),
    (480, "resource_exhausted", "sip status 480: Temporarily Unavailable", N),
    (408, "deadline_exceeded", "sip status 408: Request Timeout", N),
    (487, "aborted", "sip status 487: Request Terminated", N),
    (603, "permission_denied", "sip status 603: Decline", D),
    (606, "invalid_argument", "sip status 606: Not Acceptable", D),
    (607, "permission_denied", "sip status 607: Unwanted", D),
    (608, "permission_denied", "sip status 608: Rejected", D),
    (699, "invalid_argument", "sip status 699", D),
    (404, "not_found", "sip status 404: Not Found", F),
    (484, "invalid_argument", "sip status 484: Address Incomplete", F),
    (400, "invalid_argument", "sip status 400: Bad Request", F),
    (410, "not_found", "sip status 410: Gone", F),
    (604, "not_found", "sip status 604: Does Not Exist Anywhere", F),
    (485, "invalid_argument", "sip status 485: Ambiguous", F),
    (416, "invalid_argument", "sip status 416: Unsupported URI Scheme", F),
    (301, "not_found", "sip status 301: Moved Permanently", F),
    (403, "permission_denied", "sip status 403: Forbidden (channel limit reached)", T),
    (403, "permission_denied", "sip status 403: CPS exceeded", T),
    (503, "failed_precondition", "sip status 503: Service Unavailable (CPS limit)", T),
    (503, "failed_precondition", "Service Unavailable: too many concurrent calls", T),
    (429, "invalid_argument", "sip status 429: rate limit", T),
    (500, "failed_precondition", "sip status 500: trunk capacity exhausted", T),
    (401, "permission_denied", "sip status 401: Unauthorized", T),
    (402, "permission_denied", "sip status 402: Payment Required", T),
    (407, "unauthenticated", "sip status 407: Proxy Authentication Required", T),
    (482, "failed_precondition", "sip status 482: Loop Detected", T),
    (483, "failed_precondition", "sip status 483: Too Many Hops", T),
    (403, "permission_denied", "sip status 403: Forbidden", F),
    (481, "not_found", "sip status 481: Call/Transaction Does Not Exist", X),
    (491, "aborted", "sip status 491: Request Pending", X),
    (500, "failed_precondition", "sip status 500: Server Internal Error", X),
    (502, "failed_precondition", "sip status 502: Bad Gateway", X),
    (503, "failed_precondition", "sip status 503: Service Unavailable", X),
    (504, "deadline_exceeded", "sip status 504: Server Time-out", X),
    (405, "invalid_argument", "sip status 405: Method Not Allowed", F),
    (488, "invalid_argument", "sip status 488: Not Acceptable Here", F),
    (183, "unknown", "sip status 183", X),
    (200, "unknown", "sip status 200", X),
]

# (twirp code, http status, message, expected) with no SIP code
TWIRP_ROWS = [
    ("deadline_exceeded", 408, "ringing timeout", N),
    ("unavailable", 503, "call not answered", N),
    ("resource_exhausted", 429, "too many SIP calls for project", T),
    ("unauthenticated", 401, "invalid token", T),
    ("permission_denied", 403, "no sip call grant", T),
    ("not_found", 404, "trunk not found", T),
    ("failed_precondition", 412, "SIP not enabled", T),
    ("bad_route", 404, "no handler", T),
    ("unimplemented", 501, "not implemented", T),
    ("invalid_argument", 400, "sip_call_to is invalid", F),
    ("malformed", 400, "could not decode", F),
    ("out_of_range", 400, "bad duration", F),
    ("already_exists", 409, "participant exists", X),
    ("unavailable", 503, "service unavailable", X),
    ("internal", 500, "internal error", X),
    ("unknown", 500, "", X),
    ("unknown", 502, "<html>bad gateway</html>", X),
    ("dataloss", 500, "", X),
    ("canceled", 408, "", X),
    ("aborted", 409, "", X),
    ("deadline_exceeded", 408, "context deadline exceeded", X),
    ("unknown", 429, "slow down", T),
    ("unknown", 401, "proxy auth", T),
    (None, None, "Cannot connect to host 127.0.0.1:1", X),
    (None, None, "", X),
]


@pytest.mark.parametrize(("sip", "twirp", "message", "expected"), SIP_ROWS)
def test_sip_code_rows(sip: int, twirp: str, message: str, expected: DialOutcome) -> None:
    result = classify_sip(sip, twirp, message)
    assert result.outcome is expected, result.reason
    assert result.sip_status_code == sip
    assert result.twirp_code == twirp
    assert f"SIP {sip}" in result.reason


@pytest.mark.parametrize(("twirp", "http", "message", "expected"), TWIRP_ROWS)
def test_no_sip_code_rows(
    twirp: str | None, http: int | None, message: str, expected: DialOutcome
) -> None:
    result = classify_sip(None, twirp, message, http_status=http)
    assert result.outcome is expected, result.reason
    assert result.sip_status_code is None


def test_sip_code_wins_over_twirp_code() -> None:
    # LiveKit maps 486 to resource_exhausted; without the SIP code that alone means THROTTLED.
    assert classify_sip(486, "resource_exhausted", "").outcome is B
    assert classify_sip(None, "resource_exhausted", "").outcome is T


def test_zero_sip_code_counts_as_absent() -> None:
    result = classify_sip(0, "internal", "boom")
    assert result.outcome is X
    assert result.sip_status_code is None


def test_twirp_code_is_normalised() -> None:
    assert classify_sip(None, " Resource_Exhausted ", "").twirp_code == "resource_exhausted"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("channel limit reached", True),
        ("CPS exceeded", True),
        ("calls per second", True),
        ("Rate-Limit", True),
        ("max concurrency", True),
        ("too many calls", True),
        ("Service Unavailable", False),
        ("Forbidden", False),
        ("caps lock", False),
    ],
)
def test_limit_hint(text: str, expected: bool) -> None:
    assert mentions_limit(text) is expected


@pytest.mark.parametrize(
    ("outcome", "error_type"),
    [
        (B, CallNotConnected),
        (N, CallNotConnected),
        (D, CallNotConnected),
        (F, PermanentDialError),
        (T, ThrottledError),
        (X, TransientDialError),
    ],
)
def test_to_error(outcome: DialOutcome, error_type: type[Exception]) -> None:
    error = to_error(Classified(outcome, 486, "why", "resource_exhausted"))
    assert type(error) is error_type
    assert error.sip_status_code == 486
    assert error.twirp_code == "resource_exhausted"
    assert str(error) == "why"
    if isinstance(error, CallNotConnected):
        assert error.outcome == outcome.value


def test_classified_is_frozen() -> None:
    result = classify_sip(486, None, "")
    with pytest.raises(AttributeError):
        result.outcome = DialOutcome.FAILED  # type: ignore[misc]
