"""The project's exception tree. Adapters translate library errors into these; nothing above the
adapters catches a library's own exception type.

    DialerError
    ├── ConfigError                  a setting is missing or wrong (says which env var to set)
    ├── ValidationFailed             a request or row is invalid (carries field errors)
    ├── JobConflict                  call_id already submitted with a different payload
    ├── JobNotFound                  no job with that call_id
    ├── InvalidTransition            a state change the job's current state does not allow
    ├── DialError                    one dial attempt did not reach a conversation
    │   ├── PermanentDialError       the number can never be reached as dialed (final `failed`)
    │   ├── CallNotConnected         busy / no answer / declined: retry per policy
    │   ├── ThrottledError           trunk channel or CPS limit: re-queue, attempt not counted
    │   └── TransientDialError       API / network failure before the call reached the trunk
    └── WebhookError
        ├── UnsafeWebhookURL         the URL resolves to a private / loopback / link-local host
        └── DeliveryFailed           one delivery try failed (status, retry-after)

Retryable errors are classified in one place: `dialer.outcomes`.
"""

from __future__ import annotations

from dataclasses import dataclass


class DialerError(Exception):
    """Base of every error this project raises on purpose."""


class ConfigError(DialerError):
    """A setting is missing or invalid. The message names the env var and what to do."""


@dataclass(frozen=True)
class FieldProblem:
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class ValidationFailed(DialerError):
    """A request was rejected. `problems` names each field and the reason."""

    def __init__(self, problems: list[FieldProblem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


class JobConflict(DialerError):
    """The call_id exists with a different payload: submit the change under a new call_id."""


class JobNotFound(DialerError):
    """No job with that call_id."""


class InvalidTransition(DialerError):
    """The job is not in a state that allows this step (stale or duplicate task)."""


class DialError(DialerError):
    """One dial attempt did not reach a conversation."""

    def __init__(
        self, message: str, *, sip_status_code: int | None = None, twirp_code: str | None = None
    ) -> None:
        self.sip_status_code = sip_status_code
        self.twirp_code = twirp_code
        super().__init__(message)


class PermanentDialError(DialError):
    """The number cannot be reached as dialed (404, 484, 400, 410, 604): final `failed`."""


class CallNotConnected(DialError):
    """Busy, no answer or declined. `outcome` says which."""

    def __init__(
        self,
        message: str,
        *,
        outcome: str,
        sip_status_code: int | None = None,
        twirp_code: str | None = None,
    ) -> None:
        self.outcome = outcome
        super().__init__(message, sip_status_code=sip_status_code, twirp_code=twirp_code)


class ThrottledError(DialError):
    """The trunk refused for capacity (channel or CPS limit). Re-queue; pacing backs off."""


class TransientDialError(DialError):
    """The API or network failed before the call reached the trunk. Safe to retry."""


class WebhookError(DialerError):
    """Base of webhook problems."""


class UnsafeWebhookURL(WebhookError):
    """The URL's host resolves to an address that outbound webhooks may not reach."""


class DeliveryFailed(WebhookError):
    """One delivery try failed."""

    def __init__(
        self, message: str, *, status_code: int | None = None, retry_after: float | None = None
    ) -> None:
        self.status_code = status_code
        self.retry_after = retry_after
        super().__init__(message)
