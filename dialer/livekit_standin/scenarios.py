"""Per-number call scenarios for the LiveKit stand-in: what the "phone network" does when a number
is dialed.

A scenario book maps an E.164 number to a scenario name, or to a list of names consumed one per
CreateSIPParticipant request for that number (`["busy", "answer"]`: the first dial is busy, the
second is answered; once the list is used up its last entry repeats). Numbers not in the book get
the default scenario (`answer`).

Names:

    answer        the callee answers at once
    voicemail     answers (a machine picks up): the same on the wire, recorded as voicemail so a
                  simulated persona can behave like one
    busy          SIP 486 Busy Here
    no_answer     rings out, then SIP 480 (after the ringing period, scaled by `ring_seconds`)
    decline       SIP 603 Decline
    invalid       SIP 404 Not Found
    throttled     SIP 503 Service Unavailable, the message names the trunk channel / CPS limit
    server_error  HTTP 500 Twirp `internal`, no SIP code: the call never reached the trunk
    slow          answers after `slow_seconds`
    timeout       the call reaches the trunk and is answered (the participant is in the room) but
                  the HTTP response hangs past the client's timeout
    hang          the HTTP request hangs and nothing reaches the trunk (the dial is lost)
    sip:<code>    the carrier answers with that SIP code, e.g. `sip:600`, `sip:408`
    twirp:<code>  LiveKit fails with that Twirp code and no SIP code, e.g.
                  `twirp:resource_exhausted`; nothing reaches the trunk

The number a participant is transferred to (TransferSIPParticipant's `transfer_to`) is looked up
the same way: a failing scenario refuses the transfer with that SIP answer and the participant
stays in the call; `hang`, `server_error` and `twirp:<code>` fail as they do for a dial.

Failures carry exactly what LiveKit sends: the Twirp code LiveKit derives from the SIP code
(`livekit/protocol` sip.go: 486 -> resource_exhausted, 603 -> permission_denied, ...) and meta
`sip_status_code` (a string) and `sip_status`, which `livekit-api` turns into `SipCallError`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_SCENARIO = "answer"

ANSWERING = frozenset({"answer", "voicemail", "slow", "timeout"})
NAMED = frozenset(
    {
        "answer",
        "voicemail",
        "busy",
        "no_answer",
        "decline",
        "invalid",
        "throttled",
        "server_error",
        "slow",
        "timeout",
        "hang",
    }
)

SIP_REASONS: dict[int, str] = {
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    410: "Gone",
    480: "Temporarily Unavailable",
    484: "Address Incomplete",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    500: "Server Internal Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Server Time-out",
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
    607: "Unwanted",
    608: "Rejected",
}

# The Twirp code LiveKit derives from a SIP status (livekit/protocol, livekit/sip.go).
_SIP_TO_TWIRP: dict[int, str] = {
    400: "invalid_argument",
    401: "permission_denied",
    402: "permission_denied",
    403: "permission_denied",
    404: "not_found",
    407: "unauthenticated",
    408: "deadline_exceeded",
    410: "not_found",
    480: "resource_exhausted",
    484: "invalid_argument",
    486: "resource_exhausted",
    487: "aborted",
    500: "failed_precondition",
    502: "failed_precondition",
    503: "failed_precondition",
    504: "deadline_exceeded",
    600: "resource_exhausted",
    603: "permission_denied",
    604: "not_found",
    606: "invalid_argument",
    607: "permission_denied",
    608: "permission_denied",
}


@dataclass(frozen=True)
class SipReply:
    """A carrier's final non-2xx answer as LiveKit reports it."""

    sip_status_code: int
    sip_status: str
    twirp_code: str
    message: str

    def meta(self) -> dict[str, str]:
        """Twirp error meta exactly as LiveKit sends it (`SIPStatus.TwirpErrorMeta`)."""
        return {"sip_status_code": str(self.sip_status_code), "sip_status": self.sip_status}


def twirp_code_for_sip(code: int) -> str:
    """LiveKit's mapping, including its fallback for codes missing from the table."""
    if code in _SIP_TO_TWIRP:
        return _SIP_TO_TWIRP[code]
    return "failed_precondition" if 500 <= code < 600 else "invalid_argument"


def sip_reply(code: int, note: str = "") -> SipReply:
    reason = SIP_REASONS.get(code, f"SIP {code}")
    message = f"sip status {code}: {reason}" + (f" ({note})" if note else "")
    return SipReply(code, reason, twirp_code_for_sip(code), message)


_NAMED_FAILURES: dict[str, SipReply] = {
    "busy": sip_reply(486),
    "decline": sip_reply(603),
    "invalid": sip_reply(404),
    "throttled": sip_reply(503, "trunk channel limit reached / CPS limit exceeded"),
    "no_answer": sip_reply(480),
}


def sip_failure(scenario: str) -> SipReply | None:
    """The SIP answer a scenario ends with, or None when it answers / never reaches the trunk."""
    if scenario in _NAMED_FAILURES:
        return _NAMED_FAILURES[scenario]
    if scenario.startswith("sip:"):
        return sip_reply(int(scenario.removeprefix("sip:")))
    return None


def reaches_trunk(scenario: str) -> bool:
    """False for scenarios where LiveKit fails before any INVITE is sent."""
    return scenario not in ("server_error", "hang") and not scenario.startswith("twirp:")


def validate(scenario: str) -> str:
    """The scenario name, or ValueError naming the valid choices."""
    name = scenario.strip()
    if name in NAMED:
        return name
    if name.startswith("sip:") and name[4:].isdigit() and 300 <= int(name[4:]) < 700:
        return name
    if name.startswith("twirp:") and name[6:].replace("_", "").isalpha():
        return name
    choices = ", ".join(sorted(NAMED))
    raise ValueError(
        f"unknown scenario {scenario!r}: use one of {choices}, sip:<code>, twirp:<code>"
    )


ScenarioSpec = str | Sequence[str]


class ScenarioBook:
    """Thread-safe number -> scenario plan; lists are consumed one entry per dial request."""

    def __init__(
        self,
        numbers: Mapping[str, ScenarioSpec] | None = None,
        default: str = DEFAULT_SCENARIO,
    ) -> None:
        self._lock = threading.Lock()
        self._default = validate(default)
        self._plans: dict[str, list[str]] = {}
        self._used: dict[str, int] = {}
        self.update(numbers or {})

    @property
    def default(self) -> str:
        return self._default

    def update(
        self,
        numbers: Mapping[str, ScenarioSpec],
        *,
        default: str | None = None,
        replace: bool = False,
    ) -> None:
        """Add or replace plans. A number given again starts its list from the beginning."""
        plans = {number: _plan(spec) for number, spec in numbers.items()}
        new_default = validate(default) if default is not None else None
        with self._lock:
            if replace:
                self._plans.clear()
                self._used.clear()
            for number, plan in plans.items():
                self._plans[number] = plan
                self._used[number] = 0
            if new_default is not None:
                self._default = new_default

    def next_for(self, number: str) -> str:
        """The scenario for the next dial of `number` (consumes one list entry)."""
        with self._lock:
            plan = self._plans.get(number)
            if not plan:
                return self._default
            used = self._used.get(number, 0)
            self._used[number] = used + 1
            return plan[min(used, len(plan) - 1)]

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "default": self._default,
                "numbers": {n: list(p) for n, p in self._plans.items()},
                "used": dict(self._used),
            }

    @classmethod
    def from_obj(cls, obj: Mapping[str, Any]) -> ScenarioBook:
        """From `{"default": ..., "numbers": {...}}` or a flat `{number: scenario}` mapping."""
        numbers, default = parse_obj(obj)
        return cls(numbers, default or DEFAULT_SCENARIO)

    @classmethod
    def from_file(cls, path: str | Path) -> ScenarioBook:
        return cls.from_obj(load_json(path))


def load_json(path: str | Path) -> dict[str, Any]:
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the scenario file must hold a JSON object")
    return data


def parse_obj(obj: Mapping[str, Any]) -> tuple[dict[str, ScenarioSpec], str | None]:
    """Split a scenario document into (numbers, default). Other keys are left to the caller."""
    if "numbers" in obj or "default" in obj:
        raw_numbers = obj.get("numbers") or {}
        default = obj.get("default")
    else:
        raw_numbers, default = obj, None
    if not isinstance(raw_numbers, Mapping):
        raise ValueError("'numbers' must map phone numbers to a scenario or a list of scenarios")
    if default is not None and not isinstance(default, str):
        raise ValueError("'default' must be a scenario name")
    numbers: dict[str, ScenarioSpec] = {}
    for number, spec in raw_numbers.items():
        if not isinstance(spec, str | list):
            raise ValueError(f"scenario for {number!r} must be a name or a list of names")
        numbers[str(number)] = spec
    return numbers, default


def _plan(spec: ScenarioSpec) -> list[str]:
    names = [spec] if isinstance(spec, str) else list(spec)
    if not names:
        raise ValueError("a scenario list must not be empty")
    return [validate(name) for name in names]
