"""Retry policy: what happens after an attempt, as a pure function of the outcome and the history.

`decide_retry` is the one place that turns "this attempt ended with X" into either a final status
or the next dial time (already moved into the calling window). The results consumer applies it;
nothing else decides retries. Backoff is computed, never slept: the caller stores `retry_at` in
the due-set (DESIGN section 4).

Outcome table (defaults in `RetryPolicy`, DESIGN section 5):

=====================================================  ========================================
outcome                                                decision
=====================================================  ========================================
completed, not_interested, knockout_failed,            final, that status
escalated, unclear, irrelevant
failed, do_not_call, cancelled, expired                final, that status
no_answer                                              retry `policy.no_answer` (+2 h, next day)
interrupted (worker died after sending the dial)       counted; its outcome is unknown, so it
                                                       stands for the job's last known retryable
                                                       outcome (busy, voicemail, ...), no_answer
                                                       when there is none: retried and ended
                                                       like that one
busy                                                   retry `policy.busy` (+15 min)
voicemail                                              retry `policy.voicemail` (next day)
incomplete (hang-up mid-screening)                     retry `policy.incomplete` (+30 min),
                                                       resuming the screening
answered without a screening result                    treated as incomplete
declined                                               retried `declined_max_retries` times
throttled / transient                                  retry after a short delay, not counted
=====================================================  ========================================

The k-th retry of a kind uses the k-th delay of its list (the last one repeats); k counts earlier
outcomes of the same kind in the job's history. When counted attempts reach `max_attempts` the
final status is the last outcome. When the next try would fall at or after `expires_at` the
decision is final too, see `expiry_status`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from dialer.models import CallingWindow, DialOutcome, RetryPolicy, Status
from dialer.windows import NoCommonOpening, next_opening

__all__ = [
    "DEFAULT_WEBHOOK_SCHEDULE",
    "RetryDecision",
    "decide_retry",
    "expiry_status",
    "leave_voicemail",
    "webhook_retry_delay",
]

# The conversation happened (or was decisively refused): nothing to retry.
_CONVERSATION_FINAL = frozenset(
    s.value
    for s in (
        Status.COMPLETED,
        Status.NOT_INTERESTED,
        Status.KNOCKOUT_FAILED,
        Status.ESCALATED,
        Status.UNCLEAR,
        Status.IRRELEVANT,
    )
)
# Final without another try: the number is wrong, the candidate opted out, the backend withdrew
# the job, or its deadline passed.
_ALWAYS_FINAL = frozenset(
    s.value for s in (Status.FAILED, Status.DO_NOT_CALL, Status.CANCELLED, Status.EXPIRED)
)
# Capacity or infrastructure trouble before the call reached anyone: not the candidate's doing,
# so it neither uses up an attempt nor ends the job.
_NOT_COUNTED = frozenset({DialOutcome.THROTTLED.value, DialOutcome.TRANSIENT.value})
# Outcomes that mean someone or something picked up, or the candidate acted on the call. A job
# that runs out of time without any of these ends `expired` ("before contact", DESIGN section 3).
_CONTACT = frozenset(
    {
        Status.VOICEMAIL.value,
        Status.INCOMPLETE.value,
        Status.DECLINED.value,
        DialOutcome.ANSWERED.value,
        *_CONVERSATION_FINAL,
    }
)
# The final status each retryable outcome ends with when tries run out.
_FINAL_STATUS_OF: dict[str, Status] = {
    Status.NO_ANSWER.value: Status.NO_ANSWER,
    DialOutcome.INTERRUPTED.value: Status.NO_ANSWER,
    Status.BUSY.value: Status.BUSY,
    Status.VOICEMAIL.value: Status.VOICEMAIL,
    Status.INCOMPLETE.value: Status.INCOMPLETE,
    DialOutcome.ANSWERED.value: Status.INCOMPLETE,
    Status.DECLINED.value: Status.DECLINED,
}
# Earlier outcomes that count as earlier retries of the same kind (which delay comes next).
_SAME_KIND: dict[str, frozenset[str]] = {
    Status.NO_ANSWER.value: frozenset({Status.NO_ANSWER.value, DialOutcome.INTERRUPTED.value}),
    DialOutcome.INTERRUPTED.value: frozenset(
        {Status.NO_ANSWER.value, DialOutcome.INTERRUPTED.value}
    ),
    Status.BUSY.value: frozenset({Status.BUSY.value}),
    Status.VOICEMAIL.value: frozenset({Status.VOICEMAIL.value}),
    Status.INCOMPLETE.value: frozenset({Status.INCOMPLETE.value, DialOutcome.ANSWERED.value}),
    DialOutcome.ANSWERED.value: frozenset({Status.INCOMPLETE.value, DialOutcome.ANSWERED.value}),
    Status.DECLINED.value: frozenset({Status.DECLINED.value}),
}
_RESUMES = frozenset({Status.INCOMPLETE.value, DialOutcome.ANSWERED.value})

DEFAULT_WEBHOOK_SCHEDULE: tuple[float, ...] = (5, 300, 1800, 7200, 18000, 36000, 36000)


@dataclass(frozen=True)
class RetryDecision:
    """What to do after one attempt.

    `retry_at` (UTC, inside the calling window) is set when not `final`; `final_status` when
    `final`. `counts_as_attempt` is False for throttled / transient outcomes. `resume` tells the
    next dial to continue the screening where the candidate hung up.
    """

    final: bool
    final_status: Status | None
    retry_at: datetime | None
    counts_as_attempt: bool
    resume: bool
    reason: str


def decide_retry(
    outcome: Status | DialOutcome,
    *,
    counted_attempts: int,
    max_attempts: int,
    outcome_history: Sequence[str],
    policy: RetryPolicy,
    now: datetime,
    window: CallingWindow,
    zones: Sequence[str],
    expires_at: datetime | None = None,
) -> RetryDecision:
    """Decide between a final status and the next dial time for the attempt that just ended.

    `counted_attempts` includes the attempt that just ended (unless it was throttled / transient);
    `outcome_history` holds the job's earlier outcomes, oldest first, without this one.
    """
    kind = outcome.value if isinstance(outcome, Status | DialOutcome) else str(outcome)
    if kind == DialOutcome.INTERRUPTED.value:
        kind = _known_outcome_before(outcome_history)
    if max_attempts < 1 or counted_attempts < 0:
        raise ValueError(f"need max_attempts >= 1 and counted_attempts >= 0, got {max_attempts}")
    if kind in _CONVERSATION_FINAL or kind in _ALWAYS_FINAL:
        return _final(Status(kind), counts=True, reason=f"{kind}: final")
    if kind in _NOT_COUNTED:
        uncounted_before = sum(1 for h in outcome_history if h in _NOT_COUNTED)
        if uncounted_before >= policy.max_uncounted_retries:
            # A trunk or number that never lets a dial through must not loop forever.
            return _final(
                Status.FAILED,
                counts=False,
                reason=f"{kind}: {uncounted_before + 1} throttled / transient dials so far "
                f"(at most {policy.max_uncounted_retries} retries); final failed",
            )
        throttled = kind == DialOutcome.THROTTLED.value
        delay = policy.throttled_delay if throttled else policy.transient_delay
        return _schedule(
            kind,
            delay,
            counts=False,
            note="not counted",
            next_attempt=counted_attempts + 1,
            max_attempts=max_attempts,
            history=outcome_history,
            now=now,
            window=window,
            zones=zones,
            expires_at=expires_at,
        )
    if kind not in _FINAL_STATUS_OF:
        raise ValueError(f"unknown attempt outcome {kind!r}")
    status = _FINAL_STATUS_OF[kind]
    if kind == Status.DECLINED.value:
        declined_before = sum(1 for h in outcome_history if h == Status.DECLINED.value)
        if declined_before >= policy.declined_max_retries:
            return _final(
                status,
                counts=True,
                reason=f"declined: already retried {declined_before} time(s) after a decline "
                f"(at most {policy.declined_max_retries}); final declined",
            )
    if counted_attempts >= max_attempts:
        return _final(
            status,
            counts=True,
            reason=f"{kind}: no attempts left ({counted_attempts} of {max_attempts}); "
            f"final {status.value}",
        )
    earlier = sum(1 for h in outcome_history if h in _SAME_KIND[kind])
    return _schedule(
        kind,
        _nth(_delays(policy, status), earlier),
        counts=True,
        note="",
        next_attempt=counted_attempts + 1,
        max_attempts=max_attempts,
        history=outcome_history,
        now=now,
        window=window,
        zones=zones,
        expires_at=expires_at,
    )


def expiry_status(outcomes: Sequence[str]) -> Status:
    """The final status of a job whose deadline (or calling window) ran out.

    `outcomes` are all its attempt outcomes so far, oldest first. Without any contact (only
    no_answer, busy, failed dials, throttled, ...) it is `expired`, DESIGN's "ran out before
    contact". After contact (voicemail, a hang-up mid-screening, a declined call) it is the last
    outcome that names a status, like running out of attempts.
    """
    if not any(o in _CONTACT for o in outcomes):
        return Status.EXPIRED
    for outcome in reversed(outcomes):
        if outcome == DialOutcome.INTERRUPTED.value:
            continue  # unknown: what came before it decides
        if outcome in _FINAL_STATUS_OF:
            return _FINAL_STATUS_OF[outcome]
        if outcome in _CONVERSATION_FINAL or outcome in _ALWAYS_FINAL:
            return Status(outcome)
    return Status.EXPIRED


def _known_outcome_before(history: Sequence[str]) -> str:
    """What an interrupted attempt is taken for: nobody knows how that call went (its worker
    died after the dial was sent), so the job's last known retryable outcome stands for it, and
    a busy line that was busy twice ends `busy`, not `no_answer`, when the third dial is the
    one interrupted. With no such outcome before it: no_answer."""
    for earlier in reversed(history):
        if earlier in _FINAL_STATUS_OF and earlier != DialOutcome.INTERRUPTED.value:
            return earlier
    return Status.NO_ANSWER.value


def leave_voicemail(policy: RetryPolicy, counted_attempt: int, max_attempts: int) -> bool:
    """Whether the agent leaves a message if attempt `counted_attempt` (1-based) hits voicemail.

    "last" (default) leaves it only when no retry follows, so the candidate hears one message, not
    one per day; "always" / "never" do what they say.
    """
    if policy.leave_voicemail == "always":
        return True
    if policy.leave_voicemail == "never":
        return False
    return counted_attempt >= max_attempts


def webhook_retry_delay(
    tries_so_far: int, schedule: Sequence[float] = DEFAULT_WEBHOOK_SCHEDULE
) -> float | None:
    """Seconds to wait before the next delivery try, or None to give up (dead-letter).

    `tries_so_far` counts the tries already made and failed (1 after the first failure), so the
    default schedule gives 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h: eight tries in all. A
    `Retry-After` from the receiver is the caller's to honour on top (take the larger).
    """
    if tries_so_far < 1:
        raise ValueError(f"tries_so_far counts failed tries and starts at 1, got {tries_so_far}")
    if tries_so_far > len(schedule):
        return None
    return float(schedule[tries_so_far - 1])


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def _schedule(
    kind: str,
    delay_s: int,
    *,
    counts: bool,
    note: str,
    next_attempt: int,
    max_attempts: int,
    history: Sequence[str],
    now: datetime,
    window: CallingWindow,
    zones: Sequence[str],
    expires_at: datetime | None,
) -> RetryDecision:
    due = now + timedelta(seconds=delay_s)
    outcomes = [*history, kind]
    try:
        retry_at = next_opening(window, zones, due)
    except NoCommonOpening:
        status = expiry_status(outcomes)
        return _final(
            status,
            counts=counts,
            reason=f"{kind}: the calling window does not open again; final {status.value}",
        )
    if expires_at is not None and retry_at >= expires_at:
        status = expiry_status(outcomes)
        return _final(
            status,
            counts=counts,
            reason=f"{kind}: the next try ({retry_at.isoformat()}) would be after expires_at "
            f"({expires_at.isoformat()}); final {status.value}",
        )
    parts = [f"{kind}: retry in {_duration(delay_s)}"]
    if note:
        parts.append(note)
    if retry_at > due:
        parts.append(f"moved into the calling window, {retry_at.isoformat()}")
    reason = ", ".join(parts) + f" (attempt {next_attempt} of {max_attempts})"
    return RetryDecision(
        final=False,
        final_status=None,
        retry_at=retry_at,
        counts_as_attempt=counts,
        resume=kind in _RESUMES,
        reason=reason,
    )


def _final(status: Status, *, counts: bool, reason: str) -> RetryDecision:
    return RetryDecision(
        final=True,
        final_status=status,
        retry_at=None,
        counts_as_attempt=counts,
        resume=False,
        reason=reason,
    )


def _delays(policy: RetryPolicy, status: Status) -> list[int]:
    by_status = {
        Status.NO_ANSWER: policy.no_answer,
        Status.BUSY: policy.busy,
        Status.VOICEMAIL: policy.voicemail,
        Status.INCOMPLETE: policy.incomplete,
        Status.DECLINED: policy.declined,
    }
    return by_status[status]


def _nth(delays: Sequence[int], k: int) -> int:
    """The k-th delay (0-based); the last one repeats."""
    return delays[min(k, len(delays) - 1)]


def _duration(seconds: int) -> str:
    """2 h, 15 min, 1 d 2 h, 30 s: for reasons people read."""
    if seconds < 60:
        return f"{seconds} s"
    units = (("d", 86400), ("h", 3600), ("min", 60), ("s", 1))
    parts: list[str] = []
    rest = seconds
    for name, size in units:
        count, rest = divmod(rest, size)
        if count:
            parts.append(f"{count} {name}")
    return " ".join(parts)
