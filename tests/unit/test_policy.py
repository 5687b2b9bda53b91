"""Retry policy: every outcome row, attempts running out, the calling window, expiry, webhooks."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dialer.models import WEEKDAYS, CallingWindow, DialOutcome, RetryPolicy, Status, TimeRange
from dialer.policy import (
    DEFAULT_WEBHOOK_SCHEDULE,
    RetryDecision,
    decide_retry,
    expiry_status,
    leave_voicemail,
    webhook_retry_delay,
)
from dialer.windows import is_open

BRUSSELS = ZoneInfo("Europe/Brussels")
ZONES = ("Europe/Brussels",)
DEFAULT_WINDOW = CallingWindow()
DEFAULT_POLICY = RetryPolicy()


def _bxl(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=BRUSSELS)


WEDNESDAY_10 = _bxl(2026, 3, 4, 10, 0)


def decide(
    outcome: Status | DialOutcome,
    *,
    counted: int = 1,
    max_attempts: int = 3,
    history: Sequence[str] = (),
    now: datetime = WEDNESDAY_10,
    policy: RetryPolicy = DEFAULT_POLICY,
    window: CallingWindow = DEFAULT_WINDOW,
    zones: Sequence[str] = ZONES,
    expires_at: datetime | None = None,
) -> RetryDecision:
    return decide_retry(
        outcome,
        counted_attempts=counted,
        max_attempts=max_attempts,
        outcome_history=list(history),
        policy=policy,
        now=now,
        window=window,
        zones=zones,
        expires_at=expires_at,
    )


def _assert_final(decision: RetryDecision, status: Status) -> None:
    assert decision.final
    assert decision.final_status is status
    assert decision.retry_at is None
    assert decision.resume is False


def _assert_retry(decision: RetryDecision, at: datetime) -> None:
    assert not decision.final
    assert decision.final_status is None
    assert decision.retry_at == at
    assert decision.retry_at is not None and decision.retry_at.tzinfo is not None


# ---------------------------------------------------------------------------------------------
# Final outcomes
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "status",
    [
        Status.COMPLETED,
        Status.NOT_INTERESTED,
        Status.KNOCKOUT_FAILED,
        Status.ESCALATED,
        Status.UNCLEAR,
        Status.IRRELEVANT,
        Status.FAILED,
        Status.DO_NOT_CALL,
        Status.CANCELLED,
        Status.EXPIRED,
    ],
)
def test_final_statuses_end_the_job(status: Status) -> None:
    decision = decide(status, counted=1)
    _assert_final(decision, status)
    assert decision.counts_as_attempt
    assert status.value in decision.reason


def test_failed_dial_outcome_is_final_failed() -> None:
    _assert_final(decide(DialOutcome.FAILED), Status.FAILED)


def test_final_statuses_do_not_depend_on_remaining_attempts() -> None:
    _assert_final(decide(Status.COMPLETED, counted=1, max_attempts=10), Status.COMPLETED)


# ---------------------------------------------------------------------------------------------
# Retried outcomes
# ---------------------------------------------------------------------------------------------


def test_busy_retries_in_15_minutes() -> None:
    decision = decide(DialOutcome.BUSY, counted=1)
    _assert_retry(decision, _bxl(2026, 3, 4, 10, 15))
    assert decision.counts_as_attempt and not decision.resume
    assert decision.reason == "busy: retry in 15 min (attempt 2 of 3)"


def test_busy_at_19_50_moves_to_the_next_morning() -> None:
    decision = decide(Status.BUSY, counted=1, now=_bxl(2026, 3, 4, 19, 50))
    _assert_retry(decision, _bxl(2026, 3, 5, 9, 0))
    assert "moved into the calling window" in decision.reason


def test_busy_on_friday_evening_moves_to_saturday_morning() -> None:
    decision = decide(DialOutcome.BUSY, now=_bxl(2026, 3, 6, 19, 55))
    _assert_retry(decision, _bxl(2026, 3, 7, 10, 0))


def test_no_answer_retries_after_2_hours_then_next_day() -> None:
    first = decide(DialOutcome.NO_ANSWER, counted=1, history=[])
    _assert_retry(first, _bxl(2026, 3, 4, 12, 0))
    assert "retry in 2 h" in first.reason
    second = decide(
        DialOutcome.NO_ANSWER, counted=2, history=["no_answer"], now=_bxl(2026, 3, 4, 12, 1)
    )
    _assert_retry(second, _bxl(2026, 3, 5, 12, 1))
    assert "retry in 1 d (attempt 3 of 3)" in second.reason
    third = decide(DialOutcome.NO_ANSWER, counted=3, history=["no_answer", "no_answer"])
    _assert_final(third, Status.NO_ANSWER)
    assert "no attempts left (3 of 3)" in third.reason


def test_last_delay_repeats() -> None:
    history = ["no_answer"] * 5
    decision = decide(DialOutcome.NO_ANSWER, counted=6, max_attempts=10, history=history)
    _assert_retry(decision, _bxl(2026, 3, 5, 10, 0))


def test_delay_index_counts_only_the_same_kind() -> None:
    # A busy in between does not advance the no_answer schedule.
    decision = decide(DialOutcome.NO_ANSWER, counted=2, history=["busy"])
    _assert_retry(decision, _bxl(2026, 3, 4, 12, 0))


def test_voicemail_retries_next_day_and_uses_its_own_schedule() -> None:
    _assert_retry(decide(Status.VOICEMAIL, counted=1), _bxl(2026, 3, 5, 10, 0))
    policy = RetryPolicy(voicemail=[3600, 4 * 3600])
    _assert_retry(decide(Status.VOICEMAIL, policy=policy), _bxl(2026, 3, 4, 11, 0))
    second = decide(Status.VOICEMAIL, counted=2, history=["voicemail"], policy=policy)
    _assert_retry(second, _bxl(2026, 3, 4, 14, 0))
    third = decide(
        Status.VOICEMAIL, counted=3, max_attempts=4, history=["voicemail"] * 2, policy=policy
    )
    _assert_retry(third, _bxl(2026, 3, 4, 14, 0))
    _assert_final(decide(Status.VOICEMAIL, counted=3, history=["voicemail"] * 2), Status.VOICEMAIL)


def test_incomplete_retries_in_30_minutes_and_resumes() -> None:
    decision = decide(Status.INCOMPLETE, counted=1)
    _assert_retry(decision, _bxl(2026, 3, 4, 10, 30))
    assert decision.resume and decision.counts_as_attempt
    _assert_final(decide(Status.INCOMPLETE, counted=3), Status.INCOMPLETE)


def test_answered_without_a_result_is_treated_as_incomplete() -> None:
    decision = decide(DialOutcome.ANSWERED, counted=1)
    _assert_retry(decision, _bxl(2026, 3, 4, 10, 30))
    assert decision.resume
    _assert_final(decide(DialOutcome.ANSWERED, counted=3), Status.INCOMPLETE)


def test_declined_is_retried_once_then_final() -> None:
    first = decide(DialOutcome.DECLINED, counted=1)
    _assert_retry(first, _bxl(2026, 3, 5, 10, 0))
    second = decide(Status.DECLINED, counted=2, history=["declined"])
    _assert_final(second, Status.DECLINED)
    assert "already retried 1 time(s)" in second.reason


def test_declined_retries_are_configurable() -> None:
    _assert_final(
        decide(DialOutcome.DECLINED, policy=RetryPolicy(declined_max_retries=0)), Status.DECLINED
    )
    policy = RetryPolicy(declined_max_retries=2, declined=[600])
    decision = decide(DialOutcome.DECLINED, counted=2, history=["declined"], policy=policy)
    _assert_retry(decision, _bxl(2026, 3, 4, 10, 10))


def test_throttled_is_not_counted_and_never_final_for_lack_of_attempts() -> None:
    decision = decide(DialOutcome.THROTTLED, counted=2)
    _assert_retry(decision, WEDNESDAY_10 + timedelta(seconds=30))
    assert not decision.counts_as_attempt
    assert decision.reason == "throttled: retry in 30 s, not counted (attempt 3 of 3)"
    still = decide(DialOutcome.THROTTLED, counted=3, history=["no_answer"] * 3)
    assert not still.final


def test_transient_is_not_counted() -> None:
    decision = decide(DialOutcome.TRANSIENT, counted=0, policy=RetryPolicy(transient_delay=90))
    _assert_retry(decision, WEDNESDAY_10 + timedelta(seconds=90))
    assert not decision.counts_as_attempt


def test_throttled_retry_is_moved_into_the_window_too() -> None:
    decision = decide(DialOutcome.THROTTLED, counted=0, now=_bxl(2026, 3, 4, 19, 59, 45))
    _assert_retry(decision, _bxl(2026, 3, 5, 9, 0))


def test_interrupted_counts_and_without_history_is_retried_like_no_answer() -> None:
    decision = decide(DialOutcome.INTERRUPTED, counted=1)
    _assert_retry(decision, _bxl(2026, 3, 4, 12, 0))
    assert decision.counts_as_attempt
    after_no_answer = decide(DialOutcome.INTERRUPTED, counted=2, history=["no_answer"])
    _assert_retry(after_no_answer, _bxl(2026, 3, 5, 10, 0))
    _assert_final(decide(DialOutcome.INTERRUPTED, counted=3), Status.NO_ANSWER)


def test_an_interrupted_attempt_stands_for_the_last_known_outcome() -> None:
    """Its outcome is unknown: a line busy twice stays busy, a mailbox stays a mailbox."""
    _assert_final(decide(DialOutcome.INTERRUPTED, counted=3, history=["busy", "busy"]), Status.BUSY)
    _assert_final(
        decide(DialOutcome.INTERRUPTED, counted=3, history=["voicemail", "interrupted"]),
        Status.VOICEMAIL,
    )
    retry = decide(DialOutcome.INTERRUPTED, counted=2, history=["busy"])
    _assert_retry(retry, WEDNESDAY_10 + timedelta(minutes=15))  # busy's delay, not +2 h


@pytest.mark.parametrize(
    ("outcome", "status"),
    [
        (DialOutcome.NO_ANSWER, Status.NO_ANSWER),
        (DialOutcome.BUSY, Status.BUSY),
        (Status.VOICEMAIL, Status.VOICEMAIL),
        (Status.INCOMPLETE, Status.INCOMPLETE),
        (DialOutcome.DECLINED, Status.DECLINED),
        (DialOutcome.INTERRUPTED, Status.NO_ANSWER),
    ],
)
def test_attempts_exhausted_ends_with_the_last_outcome(
    outcome: Status | DialOutcome, status: Status
) -> None:
    decision = decide(outcome, counted=3, max_attempts=3, history=["busy", "no_answer"])
    _assert_final(decision, status)
    assert decision.counts_as_attempt


def test_retry_is_open_in_every_zone() -> None:
    zones = ("Europe/Brussels", "America/New_York")
    decision = decide(DialOutcome.BUSY, zones=zones, now=_bxl(2026, 3, 4, 10, 0))
    # 09:00 in New York is 15:00 in Brussels.
    _assert_retry(decision, _bxl(2026, 3, 4, 15, 0))


def test_window_that_never_opens_in_all_zones_ends_the_job() -> None:
    mornings = CallingWindow(
        **{d: [TimeRange(start="09:00", end="10:00")] for d in WEEKDAYS[:5]}, sat=[], sun=[]
    )
    decision = decide(DialOutcome.BUSY, window=mornings, zones=("Europe/Brussels", "Asia/Tokyo"))
    _assert_final(decision, Status.EXPIRED)


def test_unknown_outcome_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown attempt outcome"):
        decide("ringing", counted=1)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Expiry
# ---------------------------------------------------------------------------------------------


def test_retry_after_expiry_without_contact_ends_expired() -> None:
    decision = decide(
        DialOutcome.BUSY, history=["no_answer"], counted=2, expires_at=_bxl(2026, 3, 4, 10, 10)
    )
    _assert_final(decision, Status.EXPIRED)
    assert "expires_at" in decision.reason


def test_retry_after_expiry_after_contact_ends_with_the_last_outcome() -> None:
    decision = decide(
        DialOutcome.BUSY, history=["voicemail"], counted=2, expires_at=_bxl(2026, 3, 4, 10, 10)
    )
    _assert_final(decision, Status.BUSY)
    incomplete = decide(Status.INCOMPLETE, expires_at=_bxl(2026, 3, 4, 10, 10))
    _assert_final(incomplete, Status.INCOMPLETE)


def test_retry_exactly_at_expiry_is_too_late() -> None:
    _assert_final(decide(DialOutcome.BUSY, expires_at=_bxl(2026, 3, 4, 10, 15)), Status.EXPIRED)
    _assert_retry(
        decide(DialOutcome.BUSY, expires_at=_bxl(2026, 3, 4, 10, 16)), _bxl(2026, 3, 4, 10, 15)
    )


def test_window_move_past_expiry_ends_the_job() -> None:
    # Busy on Friday 19:55: next opening Saturday 10:00, but the job expires Saturday 09:00.
    decision = decide(
        DialOutcome.BUSY, now=_bxl(2026, 3, 6, 19, 55), expires_at=_bxl(2026, 3, 7, 9, 0)
    )
    _assert_final(decision, Status.EXPIRED)


def test_throttled_past_expiry_is_final_but_not_counted() -> None:
    decision = decide(
        DialOutcome.THROTTLED,
        counted=1,
        history=["voicemail"],
        expires_at=WEDNESDAY_10 + timedelta(seconds=10),
    )
    _assert_final(decision, Status.VOICEMAIL)
    assert not decision.counts_as_attempt


@pytest.mark.parametrize(
    ("outcomes", "status"),
    [
        ([], Status.EXPIRED),
        (["no_answer", "busy", "throttled"], Status.EXPIRED),
        (["interrupted", "transient"], Status.EXPIRED),
        (["voicemail", "interrupted"], Status.VOICEMAIL),
        (["voicemail", "no_answer"], Status.NO_ANSWER),
        (["no_answer", "voicemail", "throttled"], Status.VOICEMAIL),
        (["declined"], Status.DECLINED),
        (["incomplete", "busy"], Status.BUSY),
    ],
)
def test_expiry_status(outcomes: list[str], status: Status) -> None:
    assert expiry_status(outcomes) is status


# ---------------------------------------------------------------------------------------------
# A whole job, as the results consumer drives it
# ---------------------------------------------------------------------------------------------

_ANY_OUTCOME = st.sampled_from(
    [
        DialOutcome.BUSY,
        DialOutcome.NO_ANSWER,
        DialOutcome.DECLINED,
        DialOutcome.THROTTLED,
        DialOutcome.TRANSIENT,
        DialOutcome.INTERRUPTED,
        Status.VOICEMAIL,
        Status.INCOMPLETE,
        Status.COMPLETED,
        DialOutcome.FAILED,
    ]
)


@settings(max_examples=200, deadline=None)
@given(
    outcomes=st.lists(_ANY_OUTCOME, min_size=1, max_size=40),
    max_attempts=st.integers(1, 5),
    start=st.datetimes(
        min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 1), timezones=st.just(UTC)
    ),
    zones=st.sampled_from(
        [("Europe/Brussels",), ("America/New_York",), ("Europe/London", "America/New_York")]
    ),
    expires_in_days=st.one_of(st.none(), st.integers(1, 10)),
)
def test_a_job_never_exceeds_its_attempts_and_every_retry_is_in_the_window(
    outcomes: list[Status | DialOutcome],
    max_attempts: int,
    start: datetime,
    zones: tuple[str, ...],
    expires_in_days: int | None,
) -> None:
    expires_at = start + timedelta(days=expires_in_days) if expires_in_days else None
    now, counted = start, 0
    history: list[str] = []
    for outcome in outcomes:
        counts = outcome not in (DialOutcome.THROTTLED, DialOutcome.TRANSIENT)
        counted += 1 if counts else 0
        decision = decide(
            outcome,
            counted=counted,
            max_attempts=max_attempts,
            history=history,
            now=now,
            zones=zones,
            expires_at=expires_at,
        )
        assert decision.counts_as_attempt == counts
        assert counted <= max_attempts
        history.append(outcome.value)
        if decision.final:
            assert decision.final_status is not None
            return
        assert decision.retry_at is not None
        assert decision.retry_at > now
        assert is_open(DEFAULT_WINDOW, zones, decision.retry_at)
        assert expires_at is None or decision.retry_at < expires_at
        now = decision.retry_at


# ---------------------------------------------------------------------------------------------
# Voicemail message and webhook backoff
# ---------------------------------------------------------------------------------------------


def test_voicemail_message_only_on_the_last_attempt_by_default() -> None:
    assert [leave_voicemail(DEFAULT_POLICY, n, 3) for n in (1, 2, 3)] == [False, False, True]
    assert leave_voicemail(DEFAULT_POLICY, 1, 1)


def test_voicemail_message_always_or_never() -> None:
    always = RetryPolicy(leave_voicemail="always")
    never = RetryPolicy(leave_voicemail="never")
    assert all(leave_voicemail(always, n, 3) for n in (1, 2, 3))
    assert not any(leave_voicemail(never, n, 3) for n in (1, 2, 3))


def test_webhook_retry_schedule_then_give_up() -> None:
    delays = [webhook_retry_delay(n) for n in range(1, 9)]
    assert delays == [5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0, None]
    assert tuple(d for d in delays if d is not None) == DEFAULT_WEBHOOK_SCHEDULE
    assert webhook_retry_delay(100) is None


def test_webhook_retry_custom_schedule() -> None:
    assert webhook_retry_delay(1, (1, 2)) == 1.0
    assert webhook_retry_delay(2, (1, 2)) == 2.0
    assert webhook_retry_delay(3, (1, 2)) is None
    assert webhook_retry_delay(1, ()) is None


def test_webhook_retry_needs_a_failed_try() -> None:
    with pytest.raises(ValueError, match="starts at 1"):
        webhook_retry_delay(0)


def test_uncounted_retries_are_capped() -> None:
    from dialer.models import CallingWindow, DialOutcome, RetryPolicy, Status
    from dialer.policy import decide_retry

    policy = RetryPolicy(max_uncounted_retries=2)
    now = datetime(2026, 3, 4, 9, 0, tzinfo=UTC)
    common = dict(
        counted_attempts=0,
        max_attempts=3,
        policy=policy,
        now=now,
        window=CallingWindow(),
        zones=("Europe/Brussels",),
    )
    assert not decide_retry(DialOutcome.TRANSIENT, outcome_history=["throttled"], **common).final
    last = decide_retry(DialOutcome.THROTTLED, outcome_history=["throttled", "transient"], **common)
    assert last.final and last.final_status is Status.FAILED and not last.counts_as_attempt
