"""The results consumer on real Redis with an injected clock: retries per outcome, finals,
idempotency by (call_id, attempt), and events."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import redis

from dialer import events
from dialer.campaigns import CampaignStore
from dialer.limiter import ConcurrencySlots
from dialer.messages import ResultMessage
from dialer.models import (
    CandidateData,
    DialOutcome,
    JobState,
    KnockoutAnswer,
    OpenAnswer,
    Status,
)
from dialer.store import Change
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


# -- stale results ---------------------------------------------------------------------------


def _slots(t: TestRuntime) -> ConcurrencySlots:
    """The slots the runtime's consumer releases (trunk "default", no trunk configured)."""
    return ConcurrencySlots(t.runtime.client, t.runtime.keys, "default", 20)


def test_a_stale_result_frees_its_slot_and_is_dead_lettered_with_the_reason(
    r: redis.Redis,
) -> None:
    """Attempt 1's result arrives after the job was handed back and is dialing attempt 2: it is
    not recorded, but its slot is freed (attempt 2's is kept) and the message is kept, with
    why, in the dead-letter list."""
    t = make_runtime(r, WED_10)
    call_id = _submit(t)
    slots = _slots(t)
    assert t.start_dialing(call_id) == 1
    assert slots.acquire(f"{call_id}:1", 600)
    t.store.transition(  # handed back without a result (as a dial that could not go out)
        call_id,
        JobState.RETRY_SCHEDULED,
        now=t.clock.now(),
        allowed_from=(JobState.DIALING,),
        expect_attempt=1,
        change=Change(due_at=t.clock.now()),
    )
    assert t.start_dialing(call_id) == 2
    assert slots.acquire(f"{call_id}:2", 600)
    assert slots.in_use() == 2

    late = CandidateData(call_id=call_id, status=Status.COMPLETED, attempt=1, consent_given=True)
    consumed = t.runtime.consumer.consume(ResultMessage.from_agent(late, WED_10), WED_10)
    assert consumed.result == "stale"
    assert consumed.reason == "stale result: job is dialing on attempt 2"
    assert slots.in_use() == 1
    assert not slots.release(f"{call_id}:1")  # already freed
    assert slots.release(f"{call_id}:2")  # the live attempt kept its slot

    [record] = [json.loads(x) for x in r.lrange(t.runtime.keys.dead_letters, 0, -1)]
    assert record["source"] == "results"
    assert record["reason"] == "stale result: job is dialing on attempt 2"
    assert json.loads(record["payload"])["result"]["status"] == "completed"
    job = t.store.get(call_id)
    assert job.state is JobState.DIALING and job.attempt == 2 and t.store.attempts(call_id) == []
    assert t.sink.events == []  # nothing emitted for a result that was not recorded


def test_a_result_for_a_job_finished_during_the_call_is_dead_lettered(r: redis.Redis) -> None:
    t = make_runtime(r, WED_10)
    call_id = _submit(t)
    attempt = t.start_dialing(call_id)
    assert _slots(t).acquire(f"{call_id}:{attempt}", 600)
    assert t.runtime.consumer.finish_without_call(
        call_id, Status.EXPIRED, WED_10, detail="expired", allowed_from=(JobState.DIALING,)
    )
    msg = ResultMessage.from_dial(call_id, attempt, DialOutcome.BUSY, WED_10, sip_status_code=486)
    consumed = t.runtime.consumer.consume(msg, WED_10)
    assert (consumed.result, consumed.reason) == ("stale", "stale result: job is done on attempt 1")
    assert _slots(t).in_use() == 0
    [record] = [json.loads(x) for x in r.lrange(t.runtime.keys.dead_letters, 0, -1)]
    assert record["reason"] == consumed.reason
    assert t.store.get(call_id).final_status is Status.EXPIRED  # the final stays as it was


# -- per-job overrides ----------------------------------------------------------------------


def test_the_job_s_retry_policy_wins_over_its_campaign_s(r: redis.Redis) -> None:
    t = make_runtime(r, WED_10)
    CampaignStore(t.runtime.client, t.runtime.keys).create(
        "quick", now=WED_10, policy={"retry_policy": {"busy": [600], "no_answer": [900]}}
    )
    mine = _submit(t, campaign_id="quick", retry_policy={"busy": [120]})
    theirs = t.runtime.intake.submit(
        seed_request("other-1", "+32470000002", campaign_id="quick"), WED_10
    ).call_id
    assert _dial_outcome(t, mine, DialOutcome.BUSY, 486) == "retry_scheduled"
    assert _dial_outcome(t, theirs, DialOutcome.BUSY, 486) == "retry_scheduled"
    assert _due(t, mine) == WED_10 + timedelta(seconds=120)  # the job's own policy
    assert _due(t, theirs) == WED_10 + timedelta(seconds=600)  # the campaign's
    # The job's policy replaces the campaign's as a whole: its no_answer is the default (2 h).
    t.clock.set(_due(t, mine))
    assert _dial_outcome(t, mine, DialOutcome.NO_ANSWER, 480) == "retry_scheduled"
    assert _due(t, mine) == t.clock.now() + timedelta(hours=2)


def test_a_retry_lands_in_the_job_s_own_calling_window(r: redis.Redis) -> None:
    """Wednesday 10:00, busy: +15 min. The job's window (Wed 09:00-10:10, Fri 13:00-14:00) is
    closed at 10:15, so the retry moves to Friday 13:00, not into the campaign's window
    (afternoons, Wed 14:00) nor the default one (Wed 10:15)."""
    t = make_runtime(r, WED_10)
    afternoons = {d: [{"start": "14:00", "end": "17:00"}] for d in ("mon", "tue", "wed", "thu")}
    CampaignStore(t.runtime.client, t.runtime.keys).create(
        "afternoons", now=WED_10, policy={"calling_window": afternoons}
    )
    own = {
        "mon": [],
        "tue": [],
        "wed": [{"start": "09:00", "end": "10:10"}],
        "thu": [],
        "fri": [{"start": "13:00", "end": "14:00"}],
        "sat": [],
        "sun": [],
    }
    call_id = _submit(t, campaign_id="afternoons", calling_window=own)
    consumed = t.runtime.consumer.consume(
        ResultMessage.from_dial(
            call_id, t.start_dialing(call_id), DialOutcome.BUSY, WED_10, sip_status_code=486
        ),
        WED_10,
    )
    assert consumed.result == "retry_scheduled" and consumed.decision is not None
    assert consumed.decision.retry_at == _local(6, 13, 0)
    assert _due(t, call_id) == _local(6, 13, 0)
    retry = t.sink.of_type(events.RETRY_SCHEDULED)[0]
    assert retry["retry_at"] == _local(6, 13, 0).isoformat()


# -- receipts: what the agent's publisher waits for before it deletes its copy ---------------


def _receipt(t: TestRuntime, call_id: str, attempt: int) -> int:
    """The receipt's remaining time to live (-2: none)."""
    return int(t.runtime.client.ttl(t.runtime.keys.result_receipt(call_id, attempt)))


def test_every_processed_result_leaves_a_receipt_whatever_the_verdict(r: redis.Redis) -> None:
    t = make_runtime(r, WED_10)
    recorded = _submit(t)
    msg = _agent_result(t, recorded, Status.COMPLETED, consent_given=True)
    assert _receipt(t, recorded, 1) == -2
    assert t.runtime.consumer.consume(msg, t.clock.now()).result == "final"
    assert 6 * 86400 < _receipt(t, recorded, 1) <= 7 * 86400
    t.runtime.client.delete(t.runtime.keys.result_receipt(recorded, 1))
    assert t.runtime.consumer.consume(msg, t.clock.now()).result == "duplicate"
    assert _receipt(t, recorded, 1) > 0

    stale = t.runtime.intake.submit(seed_request("s-1", "+32470000002"), t.clock.now()).call_id
    t.start_dialing(stale)
    t.runtime.consumer.finish_without_call(
        stale, Status.EXPIRED, WED_10, detail="expired", allowed_from=(JobState.DIALING,)
    )
    late = ResultMessage.from_dial(stale, 1, DialOutcome.BUSY, WED_10, sip_status_code=486)
    assert t.runtime.consumer.consume(late, WED_10).result == "stale"
    assert _receipt(t, stale, 1) > 0, "dead-lettered, and not to be sent again"

    web = CandidateData(
        call_id="web-9", status=Status.COMPLETED, metadata={"source": "web_interview"}
    )
    assert (
        t.runtime.consumer.consume(ResultMessage.from_agent(web, WED_10), WED_10).result == "final"
    )
    assert _receipt(t, "web-9", 1) > 0
    assert _receipt(t, recorded, 2) == -2, "per attempt"


def test_an_outcome_recorded_in_process_leaves_no_receipt(r: redis.Redis) -> None:
    """Dial outcomes and the reaper's `interrupted` are recorded where they are found: no
    publisher waits, so no key is kept for a week."""
    t = make_runtime(r, WED_10)
    call_id = _submit(t)
    attempt = t.start_dialing(call_id)
    msg = ResultMessage.from_dial(call_id, attempt, DialOutcome.BUSY, WED_10, sip_status_code=486)
    assert t.runtime.consumer.consume(msg, WED_10, receipt=False).result == "retry_scheduled"
    assert _receipt(t, call_id, attempt) == -2
    assert [a.outcome for a in t.store.attempts(call_id)] == ["busy"]
