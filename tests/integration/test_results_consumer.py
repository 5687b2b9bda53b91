"""The results consumer on real Redis with an injected clock: retries per outcome, finals,
idempotency by (call_id, attempt), and events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import redis

from dialer import events
from dialer.messages import ResultMessage
from dialer.models import (
    CandidateData,
    DialOutcome,
    JobState,
    KnockoutAnswer,
    OpenAnswer,
    Status,
)
from tests.support.runtime import TestRuntime, make_runtime
from tests.support.seed import seed_request

BRUSSELS = ZoneInfo("Europe/Brussels")
WED_10 = datetime(2026, 3, 4, 10, 0, tzinfo=BRUSSELS).astimezone(UTC)


def _local(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=BRUSSELS).astimezone(UTC)


def _submit(t: TestRuntime, **extra: object) -> str:
    return t.runtime.intake.submit(seed_request(**extra), t.clock.now()).call_id


def _dial_outcome(
    t: TestRuntime, call_id: str, outcome: DialOutcome, sip: int | None = None
) -> str:
    attempt = t.start_dialing(call_id)
    msg = ResultMessage.from_dial(call_id, attempt, outcome, t.clock.now(), sip_status_code=sip)
    return t.runtime.consumer.consume(msg, t.clock.now()).result


def _agent_result(t: TestRuntime, call_id: str, status: Status, **fields: object) -> ResultMessage:
    attempt = t.start_dialing(call_id)
    data = CandidateData(call_id=call_id, status=status, attempt=attempt, **fields)  # type: ignore[arg-type]
    return ResultMessage.from_agent(data, t.clock.now())


def _due(t: TestRuntime, call_id: str) -> datetime:
    when = t.runtime.due_jobs.when(call_id)
    assert when is not None
    return when


def test_busy_retries_in_15_minutes(r: redis.Redis) -> None:
    t = make_runtime(r, WED_10)
    call_id = _submit(t)
    assert _dial_outcome(t, call_id, DialOutcome.BUSY, 486) == "retry_scheduled"
    job = t.store.get(call_id)
    assert job.state is JobState.RETRY_SCHEDULED and job.counted_attempts == 1
    assert _due(t, call_id) == WED_10 + timedelta(minutes=15)
    retry = t.sink.of_type(events.RETRY_SCHEDULED)[0]
    assert retry["next_attempt"] == 2
    attempt = t.sink.of_type(events.ATTEMPT)[0]
    assert attempt["outcome"] == "busy" and attempt["sip_status_code"] == 486


def test_no_answer_retries_after_two_hours_then_next_day(r: redis.Redis) -> None:
    t = make_runtime(r, WED_10)
    call_id = _submit(t)
    _dial_outcome(t, call_id, DialOutcome.NO_ANSWER, 480)
    assert _due(t, call_id) == WED_10 + timedelta(hours=2)
    t.clock.set(WED_10 + timedelta(hours=2))
    _dial_outcome(t, call_id, DialOutcome.NO_ANSWER, 480)
    assert _due(t, call_id) == WED_10 + timedelta(hours=2, days=1)


def test_attempts_exhausted_final_is_the_last_outcome(r: redis.Redis) -> None:
    t = make_runtime(r, WED_10)
    call_id = _submit(t, max_attempts=2)
    _dial_outcome(t, call_id, DialOutcome.BUSY, 486)
    t.clock.set(_due(t, call_id))
    assert _dial_outcome(t, call_id, DialOutcome.NO_ANSWER, 480) == "final"
    job = t.store.get(call_id)
    assert job.state is JobState.DONE and job.final_status is Status.NO_ANSWER
    final = t.sink.of_type(events.COMPLETED)[0]
    assert final["status"] == "no_answer"
    assert [a["outcome"] for a in final["attempts"]] == ["busy", "no_answer"]
    assert [a["sip_status_code"] for a in final["attempts"]] == [486, 480]


def test_a_retry_that_falls_at_night_moves_to_the_next_window(r: redis.Redis) -> None:
    t = make_runtime(r, _local(4, 19, 55))
    call_id = _submit(t)
    _dial_outcome(t, call_id, DialOutcome.BUSY, 486)  # 20:10 is closed
    assert _due(t, call_id) == _local(5, 9, 0)


def test_voicemail_retries_next_day_then_final_voicemail(r: redis.Redis) -> None:
    t = make_runtime(r, WED_10)
    call_id = _submit(t, max_attempts=2)
    msg = _agent_result(t, call_id, Status.VOICEMAIL, voicemail_detected=True)
    assert t.runtime.consumer.consume(msg, t.clock.now()).result == "retry_scheduled"
    assert _due(t, call_id) == WED_10 + timedelta(days=1)
    t.clock.set(_due(t, call_id))
    msg = _agent_result(t, call_id, Status.VOICEMAIL, voicemail_detected=True)
    assert t.runtime.consumer.consume(msg, t.clock.now()).result == "final"
    final = t.sink.of_type(events.COMPLETED)[0]
    assert final["status"] == "voicemail" and final["voicemail_detected"] is True


def test_incomplete_retries_in_30_minutes_and_keeps_answers_for_resume(r: redis.Redis) -> None:
    t = make_runtime(r, WED_10)
    call_id = _submit(t)
    answer = KnockoutAnswer(
        question_id="q2",
        internal_id="crm_field_2",
        question_text="Heb je ervaring?",
        result="pass",
        raw_answer="ja, vijf jaar",
    )
    msg = _agent_result(
        t, call_id, Status.INCOMPLETE, consent_given=True, knockout_answers=[answer]
    )
    consumed = t.runtime.consumer.consume(msg, t.clock.now())
    assert consumed.result == "retry_scheduled" and consumed.decision is not None
    assert consumed.decision.resume
    assert _due(t, call_id) == WED_10 + timedelta(minutes=30)
    job = t.store.get(call_id)
    assert job.last_result is not None and job.last_result.knockout_answers == [answer]


def test_completed_is_final_with_internal_ids_passed_through(r: redis.Redis) -> None:
    t = make_runtime(r, WED_10)
    call_id = _submit(t, metadata={"crm_id": "C-9"})
    msg = _agent_result(
        t,
        call_id,
        Status.COMPLETED,
        consent_given=True,
        passed_knockout=True,
        knockout_answers=[
            KnockoutAnswer(
                question_id="q2", internal_id="crm_field_2", result="pass", raw_answer="ja"
            )
        ],
        open_answers=[
            OpenAnswer(question_id="oq1", internal_id="crm_field_3", answer_summary="loves bread")
        ],
        chosen_timeslot="dinsdag 4 maart om 10 uur",
    )
    assert t.runtime.consumer.consume(msg, t.clock.now()).result == "final"
    final = t.sink.of_type(events.COMPLETED)[0]
    assert final["status"] == "completed"
    assert final["knockout_answers"][0]["internal_id"] == "crm_field_2"
    assert final["open_answers"][0]["internal_id"] == "crm_field_3"
    assert final["metadata"] == {"crm_id": "C-9"}
    assert final["phone_number"] == "+32******456"


def test_a_result_delivered_twice_changes_nothing_the_second_time(r: redis.Redis) -> None:
    t = make_runtime(r, WED_10)
    call_id = _submit(t)
    msg = _agent_result(t, call_id, Status.COMPLETED, consent_given=True)
    first = t.runtime.consumer.consume(msg, t.clock.now())
    second = t.runtime.consumer.consume(msg, t.clock.now())
    assert (first.result, second.result) == ("final", "duplicate")
    assert len(t.store.attempts(call_id)) == 1
    kinds = [kind for _, kind, _ in t.sink.events]
    assert kinds.count(events.COMPLETED) == 1 and kinds.count(events.ATTEMPT) == 1


def test_failed_number_is_final_and_declined_is_retried_once(r: redis.Redis) -> None:
    t = make_runtime(r, WED_10)
    a = _submit(t)
    assert _dial_outcome(t, a, DialOutcome.FAILED, 404) == "final"
    assert t.store.get(a).final_status is Status.FAILED
    b = t.runtime.intake.submit(seed_request("b-1", "+32470000002"), t.clock.now()).call_id
    assert _dial_outcome(t, b, DialOutcome.DECLINED, 603) == "retry_scheduled"
    t.clock.set(_due(t, b))
    assert _dial_outcome(t, b, DialOutcome.DECLINED, 603) == "final"
    assert t.store.get(b).final_status is Status.DECLINED


def test_throttled_is_not_counted(r: redis.Redis) -> None:
    t = make_runtime(r, WED_10)
    call_id = _submit(t, max_attempts=1)
    assert _dial_outcome(t, call_id, DialOutcome.THROTTLED, 503) == "retry_scheduled"
    assert t.store.get(call_id).counted_attempts == 0


def test_do_not_call_request_from_the_candidate_reaches_the_dnc_set(r: redis.Redis) -> None:
    t = make_runtime(r, WED_10)
    call_id = _submit(t)
    msg = _agent_result(t, call_id, Status.NOT_INTERESTED, do_not_call_requested=True)
    t.runtime.consumer.consume(msg, t.clock.now())
    assert t.runtime.dnc.contains("+32470123456")


def test_cancel_during_a_call_stops_the_retry(r: redis.Redis) -> None:
    t = make_runtime(r, WED_10)
    call_id = _submit(t)
    attempt = t.start_dialing(call_id)
    t.runtime.store.request_cancel(call_id)
    msg = ResultMessage.from_dial(
        call_id, attempt, DialOutcome.BUSY, t.clock.now(), sip_status_code=486
    )
    assert t.runtime.consumer.consume(msg, t.clock.now()).result == "final"
    assert t.store.get(call_id).final_status is Status.CANCELLED


def test_a_web_interview_result_without_a_dial_job_is_final_as_it_stands(r: redis.Redis) -> None:
    t = make_runtime(r, WED_10)
    data = CandidateData(
        call_id="web-1", status=Status.COMPLETED, metadata={"source": "web_interview"}
    )
    consumed = t.runtime.consumer.consume(ResultMessage.from_agent(data, WED_10), WED_10)
    assert consumed.result == "final"
    assert t.sink.of_type(events.COMPLETED)[0]["call_id"] == "web-1"
