"""Classify a failed dial into a `DialOutcome`: the one place retryable errors are classified.

Pure: no I/O and no library types. The LiveKit adapter (`dialer.livekit_dialer`) pulls the SIP
status code (`SipCallError.sip_status_code`, Twirp meta `sip_status_code`), the Twirp error code,
the HTTP status and the message out of whatever the client raised and asks `classify_sip`.

Principle. A SIP status code is the carrier's answer about *this number* and wins over the Twirp
code (LiveKit maps 486 Busy to Twirp `resource_exhausted`, 603 to `permission_denied`, so the
Twirp code alone would mislead). Outcomes that are about the trunk or the account rather than the
candidate never cost the candidate an attempt: those that do not heal by themselves
(credentials, configuration, capacity) are THROTTLED, so the circuit breaker pauses the trunk when
they spike and an operator notices, instead of every candidate of a campaign being finalised as
`failed` because of one typo in a trunk password; those that usually heal within a minute (network,
LiveKit 5xx, a carrier hiccup) are TRANSIENT.

SIP status code present (the carrier's answer):

    | SIP code                                 | outcome   | why                                |
    |------------------------------------------|-----------|------------------------------------|
    | 486 Busy Here, 600 Busy Everywhere       | BUSY      | line busy: retry per policy        |
    | 480 Temporarily Unavailable, 408 Request | NO_ANSWER | rang out / unreachable for now;    |
    | Timeout, 487 Request Terminated          |           | 487 = INVITE cancelled at ring end |
    | 603 Decline, 606, 607, 608, other 6xx    | DECLINED  | refused everywhere: retried once   |
    | (not 600 / 604)                          |           |                                    |
    | 404, 410, 484, 400, 604, 485, 416, 3xx   | FAILED    | cannot be reached as dialed: final |
    | 403, 429 or any 5xx whose message or     | THROTTLED | trunk channel / CPS limit: re-     |
    | sip_status mentions a limit (channel,    |           | queue, attempt not counted, pacing |
    | CPS, rate limit, concurrency, capacity)  |           | backs off, breaker may pause       |
    | 401, 402, 407 (trunk auth / account)     | THROTTLED | every call fails until fixed: let  |
    |                                          |           | the breaker pause the trunk        |
    | 482 Loop Detected, 483 Too Many Hops     | THROTTLED | trunk routing configuration        |
    | 403 Forbidden without a limit hint       | FAILED    | carrier forbids this destination   |
    | 481, 491 (transaction glitches)          | TRANSIENT | protocol race: retry soon          |
    | 500, 502, 503, 504, other 5xx (no hint)  | TRANSIENT | carrier / gateway hiccup           |
    | other 4xx (405, 406, 413, 415, 488, ...) | FAILED    | same request gets the same answer  |
    | 1xx / 2xx inside an error                | TRANSIENT | nonsense from upstream: try again  |

No SIP status code (LiveKit's answer about our request, or no answer at all):

    | Twirp code / condition                   | outcome   | why                                |
    |------------------------------------------|-----------|------------------------------------|
    | message says ringing timed out / no      | NO_ANSWER | the phone rang out                 |
    | answer                                   |           |                                    |
    | resource_exhausted (HTTP 429)            | THROTTLED | LiveKit concurrency / rate limit   |
    | unauthenticated, permission_denied       | THROTTLED | API key / secret / grants: config  |
    | not_found, failed_precondition,          | THROTTLED | trunk id, URL or project setup     |
    | bad_route, unimplemented                 |           | wrong: affects every call          |
    | invalid_argument, malformed,             | FAILED    | LiveKit rejected this request as   |
    | out_of_range                             |           | invalid: resending will not help   |
    | already_exists                           | TRANSIENT | an earlier try may have succeeded: |
    |                                          |           | the adapter lists participants     |
    | unavailable, internal, unknown,          | TRANSIENT | LiveKit trouble before the call    |
    | dataloss, canceled, aborted,             |           | reached the trunk: retried with    |
    | deadline_exceeded, any HTTP 5xx          |           | backoff                            |
    | unknown with HTTP 429 / other 4xx        | THROTTLED | a proxy rate-limits / rejects us   |
    | no code at all (connection refused,      | TRANSIENT | network: the adapter checks if the |
    | reset, timeout)                          |           | call exists before dialing again   |
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dialer.errors import (
    CallNotConnected,
    DialError,
    PermanentDialError,
    ThrottledError,
    TransientDialError,
)
from dialer.models import DialOutcome

_LIMIT_HINT = re.compile(
    r"\bcps\b|calls? per second|limit|channel|concurren|capacity|too many|throttl",
    re.IGNORECASE,
)
_RINGING_HINT = re.compile(
    r"ring(ing)?[ _-]?time ?out|not answered|no answer|unanswered",
    re.IGNORECASE,
)

_BUSY = frozenset({486, 600})
_NO_ANSWER = frozenset({408, 480, 487})
_FAILED = frozenset({400, 404, 410, 416, 484, 485, 604})
_TRUNK_AUTH = frozenset({401, 402, 407})
_TRUNK_ROUTING = frozenset({482, 483})
_PROTOCOL_GLITCH = frozenset({481, 491})
_LIMIT_CAPABLE = frozenset({403, 429})

_TWIRP_THROTTLED = frozenset({"resource_exhausted"})
_TWIRP_CONFIG = frozenset(
    {
        "unauthenticated",
        "permission_denied",
        "not_found",
        "failed_precondition",
        "bad_route",
        "unimplemented",
    }
)
_TWIRP_INVALID = frozenset({"invalid_argument", "malformed", "out_of_range"})


@dataclass(frozen=True)
class Classified:
    """A failed dial, classified: the outcome, the SIP code that decided it, and why."""

    outcome: DialOutcome
    sip_status_code: int | None
    reason: str
    twirp_code: str | None = None


def mentions_limit(text: str) -> bool:
    """True when a carrier / LiveKit message says a channel, CPS or rate limit was hit."""
    return bool(_LIMIT_HINT.search(text))


def classify_sip(
    sip_status_code: int | None,
    twirp_code: str | None,
    message: str,
    *,
    http_status: int | None = None,
) -> Classified:
    """Classify one failed dial (see the tables in the module docstring).

    `message` should hold everything textual the error carried (Twirp `msg` plus the
    `sip_status` reason phrase) because limit and ringing hints are read from it.
    """
    code = (twirp_code or "").strip().lower() or None
    if sip_status_code is not None and sip_status_code > 0:
        outcome, why = _by_sip_code(sip_status_code, message)
    else:
        outcome, why = _by_twirp_code(code, message, http_status)
    detail = f"{why}: {message}" if message else why
    sip = sip_status_code if sip_status_code else None
    return Classified(outcome=outcome, sip_status_code=sip, reason=detail, twirp_code=code)


def _by_sip_code(sip: int, message: str) -> tuple[DialOutcome, str]:
    label = f"SIP {sip}"
    limited = mentions_limit(message)
    if sip in _BUSY:
        return DialOutcome.BUSY, f"{label}: busy"
    if sip in _NO_ANSWER:
        return DialOutcome.NO_ANSWER, f"{label}: no answer"
    if sip in _FAILED or 300 <= sip < 400:
        return DialOutcome.FAILED, f"{label}: number cannot be reached as dialed"
    if (sip in _LIMIT_CAPABLE or 500 <= sip < 600) and limited:
        return DialOutcome.THROTTLED, f"{label}: trunk channel / CPS limit"
    if sip in _TRUNK_AUTH:
        return DialOutcome.THROTTLED, f"{label}: trunk credentials or account rejected (config)"
    if sip in _TRUNK_ROUTING:
        return DialOutcome.THROTTLED, f"{label}: trunk routing problem (config)"
    if sip == 403:
        return DialOutcome.FAILED, f"{label}: carrier forbids this destination"
    if sip in _PROTOCOL_GLITCH:
        return DialOutcome.TRANSIENT, f"{label}: SIP transaction glitch"
    if 500 <= sip < 600:
        return DialOutcome.TRANSIENT, f"{label}: carrier or gateway trouble"
    if 600 <= sip < 700:
        return DialOutcome.DECLINED, f"{label}: declined"
    if 400 <= sip < 500:
        return DialOutcome.FAILED, f"{label}: carrier rejected the call as sent"
    return DialOutcome.TRANSIENT, f"{label}: unexpected status in an error"


def _by_twirp_code(
    code: str | None, message: str, http_status: int | None
) -> tuple[DialOutcome, str]:
    label = f"twirp {code}" if code else "no response"
    if _RINGING_HINT.search(message):
        return DialOutcome.NO_ANSWER, f"{label}: ringing timed out"
    if code in _TWIRP_THROTTLED:
        return DialOutcome.THROTTLED, f"{label}: LiveKit capacity or rate limit"
    if code in _TWIRP_CONFIG:
        return DialOutcome.THROTTLED, f"{label}: LiveKit rejected the setup (check configuration)"
    if code in _TWIRP_INVALID:
        return DialOutcome.FAILED, f"{label}: LiveKit rejected the request as invalid"
    if code == "unknown" and http_status is not None and 400 <= http_status < 500:
        if http_status == 429 or mentions_limit(message):
            return DialOutcome.THROTTLED, f"{label} (HTTP {http_status}): rate limited"
        return DialOutcome.THROTTLED, f"{label} (HTTP {http_status}): rejected (configuration)"
    if code is None:
        return DialOutcome.TRANSIENT, "no response from LiveKit (network or timeout)"
    return DialOutcome.TRANSIENT, f"{label}: LiveKit trouble before the call reached the trunk"


def to_error(classified: Classified) -> DialError:
    """The project exception for a classified failure (what the adapter raises)."""
    sip, twirp, reason = classified.sip_status_code, classified.twirp_code, classified.reason
    outcome = classified.outcome
    if outcome in (DialOutcome.BUSY, DialOutcome.NO_ANSWER, DialOutcome.DECLINED):
        return CallNotConnected(
            reason, outcome=outcome.value, sip_status_code=sip, twirp_code=twirp
        )
    if outcome is DialOutcome.FAILED:
        return PermanentDialError(reason, sip_status_code=sip, twirp_code=twirp)
    if outcome is DialOutcome.THROTTLED:
        return ThrottledError(reason, sip_status_code=sip, twirp_code=twirp)
    return TransientDialError(reason, sip_status_code=sip, twirp_code=twirp)
