"""What the demo scenario must produce, per persona, derived from the retry policy defaults.

Every candidate in `examples/candidates.csv` has a persona (`examples/personas.json`, default
`cooperative`). A persona decides two things: how the stand-in answers each dial
(`dialer.demo.PERSONA_DIAL`: busy, no answer, voicemail, invalid number, decline, or answer) and,
once a call is answered, what the candidate says to the real screening flow
(`agent.personas.Persona`). From that and the default `RetryPolicy` (DESIGN section 5) follows
the sequence of attempt outcomes and the final status:

- A conversation that reaches a decision ends the job at once: completed, not_interested,
  knockout_failed, escalated, unclear, irrelevant (`dialer.policy._CONVERSATION_FINAL`).
- A number the carrier rejects (404) is `failed` at once.
- busy / no_answer / voicemail / incomplete are retried until `max_attempts` (default 3) dials
  were counted; the final status is the last outcome.
- declined is retried `declined_max_retries` (default 1) times: two dials, final declined.
- `*_then_answer` personas fail the first dial that way and then answer (and cooperate).

Retry delays (`RetryPolicy` defaults), each moved into the candidate's calling window:
busy +15 min; no_answer +2 h, then +24 h; voicemail +24 h ("next day"); incomplete +30 min;
declined +24 h. The k-th retry after an outcome of a kind uses the k-th delay of that kind (the
last one repeats): `retry_delay_s`.
"""

from __future__ import annotations

from dialer.models import RetryPolicy

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
        return [_THEN_COMPLETE[persona], "completed"]
    raise KeyError(f"no expectation for persona {persona!r}: add it to tests/e2e/expected.py")


def expected_status(persona: str, **kwargs: object) -> str:
    """The final status: the last outcome (retries ran out, or the decisive one)."""
    return expected_outcomes(persona, **kwargs)[-1]  # type: ignore[arg-type]


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


# The delays spelled out, as the README promises them (checked against RetryPolicy in a test).
DOCUMENTED_DELAYS_S = {
    "busy": [15 * 60],
    "no_answer": [2 * 3600, 24 * 3600],
    "voicemail": [24 * 3600],
    "incomplete": [30 * 60],
    "declined": [24 * 3600],
}

# The bundled scenario's totals (50 candidates).
EXPECTED_TOTALS = {
    "busy": 1,
    "completed": 37,
    "declined": 1,
    "escalated": 1,
    "failed": 1,
    "incomplete": 1,
    "irrelevant": 1,
    "knockout_failed": 1,
    "no_answer": 1,
    "not_interested": 3,
    "unclear": 1,
    "voicemail": 1,
}
