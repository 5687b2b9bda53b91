"""What each demo persona must end with, derived from the retry policy (used by `dialer demo`
to check its own run, and by the end-to-end tests).

A persona (`examples/personas.json`, default `cooperative`) decides two things: how the LiveKit
stand-in answers each dial (`dialer.demo.PERSONA_DIAL`: busy, no answer, voicemail, invalid
number, decline, or answer) and, once a call is answered, what the candidate says to the real
screening flow (`agent.personas.Persona`). From that and the job's `RetryPolicy` and
`max_attempts` (DESIGN section 5) follow the attempt outcomes and the final status:

- A conversation that reaches a decision ends the job at once: completed, not_interested,
  knockout_failed, escalated, unclear, irrelevant (`dialer.policy._CONVERSATION_FINAL`).
- A number the carrier rejects (404) is `failed` at once.
- busy / no_answer / voicemail / incomplete are retried until `max_attempts` dials were counted;
  the final status is the last outcome.
- declined is retried `declined_max_retries` times (default 1): two dials, final declined.
- `*_then_answer` personas fail the first dial that way and then answer (and cooperate).

The k-th retry after an outcome of a kind waits the k-th delay of that kind (the last one
repeats), moved into the candidate's calling window: `retry_delay_s`.
"""

from __future__ import annotations

from dialer.models import RetryPolicy

# "The whole demo finishes in under two minutes" (README): `dialer demo` gives up after this
# long by default and then exits 1; the end-to-end tests hold the bundled scenario to it.
DEMO_TIME_LIMIT_S = 120.0

DEFAULT_POLICY = RetryPolicy()
DEFAULT_MAX_ATTEMPTS = 3  # Settings.default_max_attempts; the demo CSV sets none

# Outcomes that decide the job at once (a conversation with a result, or a dead number).
_AT_ONCE = {
    "cooperative": "completed",
    "french": "completed",
    "knockout_fail": "not_interested",  # fails a knockout, not interested in other vacancies
    "knockout_fail_interested": "knockout_failed",  # fails, but wants to hear about others
    "recruiter": "escalated",
    "off_topic": "irrelevant",
    "unclear": "unclear",
    "do_not_call": "not_interested",  # and the number goes on the do-not-call list
    "declines_consent": "not_interested",
    "invalid": "failed",
}
# Personas whose every dial ends the same retryable way.
_ALWAYS = {
    "busy": "busy",
    "no_answer": "no_answer",
    "voicemail": "voicemail",
    "hangup_halfway": "incomplete",  # hangs up mid-screening on every attempt
    "decline": "declined",
}
# Personas whose first dial ends a retryable way and whose second is a completed screening.
_THEN_COMPLETE = {
    "busy_then_answer": "busy",
    "no_answer_then_answer": "no_answer",
    "voicemail_then_answer": "voicemail",
    "hangup_then_complete": "incomplete",
}

KNOWN_PERSONAS = frozenset({*_AT_ONCE, *_ALWAYS, *_THEN_COMPLETE})


class UnknownPersona(KeyError):
    """A persona name with no expectation (a typo in personas.json, or a new persona)."""


def expected_outcomes(
    persona: str,
    *,
    policy: RetryPolicy = DEFAULT_POLICY,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
) -> list[str]:
    """The attempt outcomes, oldest first, that `persona` must produce."""
    if persona in _AT_ONCE:
        return [_AT_ONCE[persona]]
    if persona in _ALWAYS:
        outcome = _ALWAYS[persona]
        dials = max_attempts
        if outcome == "declined":
            dials = min(max_attempts, 1 + policy.declined_max_retries)
        return [outcome] * dials
    if persona in _THEN_COMPLETE:
        if max_attempts < 2:
            return [_THEN_COMPLETE[persona]]
        return [_THEN_COMPLETE[persona], "completed"]
    raise UnknownPersona(
        f"no expectation for persona {persona!r} (known: {', '.join(sorted(KNOWN_PERSONAS))})"
    )


def expected_status(
    persona: str,
    *,
    policy: RetryPolicy = DEFAULT_POLICY,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
) -> str:
    """The final status: the last outcome (retries ran out, or the decisive one)."""
    return expected_outcomes(persona, policy=policy, max_attempts=max_attempts)[-1]


def retry_delay_s(outcomes: list[str], k: int, policy: RetryPolicy = DEFAULT_POLICY) -> int:
    """Seconds the policy waits after attempt `k` (0-based) of `outcomes` before the next dial,
    before moving the time into the calling window."""
    kind = outcomes[k]
    delays = {
        "busy": policy.busy,
        "no_answer": policy.no_answer,
        "voicemail": policy.voicemail,
        "incomplete": policy.incomplete,
        "declined": policy.declined,
    }[kind]
    earlier = sum(1 for o in outcomes[:k] if o == kind)
    return delays[min(earlier, len(delays) - 1)]
