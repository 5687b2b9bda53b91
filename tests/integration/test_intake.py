"""Intake on real Redis: validation, normalisation, idempotency, scheduling into the window."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
import redis

from dialer import events
from dialer.client import Dialer
from dialer.errors import JobConflict, ValidationFailed
from dialer.models import JobState, Status
from tests.support.runtime import make_runtime
from tests.support.seed import seed_request

BRUSSELS = ZoneInfo("Europe/Brussels")
# Wednesday 2026-03-04 10:00 in Brussels: inside the default window.
WED_10 = datetime(2026, 3, 4, 10, 0, tzinfo=BRUSSELS).astimezone(UTC)


def test_seed_request_is_scheduled_now_inside_the_window(r: redis.Redis) -> None:
    t = make_runtime(r, WED_10)
    result = t.runtime.intake.submit(seed_request(), WED_10)
    assert result.created and result.state is JobState.SCHEDULED
    assert result.dial_at == WED_10
    job = t.store.get("abc-123")
    assert job.phone_e164 == "+32470123456"
    assert job.zones == ("Europe/Brussels",)
    assert r.zscore(t.runtime.keys.due, "abc-123") == WED_10.timestamp()


def test_national_number_with_region_is_normalised(r: redis.Redis) -> None:
    t = make_runtime(r, WED_10)
    t.runtime.intake.submit(seed_request(phone="0470 12 34 56", region="BE"), WED_10)
    assert t.store.get("abc-123").phone_e164 == "+32470123456"


def test_out_of_window_submission_waits_for_the_next_opening(r: redis.Redis) -> None:
    saturday_15 = datetime(2026, 3, 7, 15, 0, tzinfo=BRUSSELS).astimezone(UTC)
    t = make_runtime(r, saturday_15)
    result = t.runtime.intake.submit(seed_request(), saturday_15)
    assert result.dial_at == datetime(2026, 3, 9, 9, 0, tzinfo=BRUSSELS).astimezone(UTC)


def test_not_before_is_moved_into_the_window(r: redis.Redis) -> None:
    t = make_runtime(r, WED_10)
    late = datetime(2026, 3, 4, 21, 30, tzinfo=BRUSSELS)
    result = t.runtime.intake.submit(seed_request(not_before=late.isoformat()), WED_10)
    assert result.dial_at == datetime(2026, 3, 5, 9, 0, tzinfo=BRUSSELS).astimezone(UTC)


def test_resubmitting_the_same_payload_is_idempotent(r: redis.Redis) -> None:
    t = make_runtime(r, WED_10)
    first = t.runtime.intake.submit(seed_request(), WED_10)
    again = t.runtime.intake.submit(seed_request(), WED_10)
    assert first.created and not again.created and again.call_id == first.call_id
    assert r.zcard(t.runtime.keys.jobs_index) == 1


def test_same_call_id_with_a_different_payload_is_a_conflict(r: redis.Redis) -> None:
    t = make_runtime(r, WED_10)
    t.runtime.intake.submit(seed_request(), WED_10)
    with pytest.raises(JobConflict, match="different payload"):
        t.runtime.intake.submit(seed_request(candidate_name="Someone Else"), WED_10)
    rejected = [json.loads(x) for x in r.lrange(t.runtime.keys.rejected, 0, -1)]
    assert rejected[-1]["errors"][0]["field"] == "call_id"


@pytest.mark.parametrize(
    ("patch", "field", "fragment"),
    [
        ({"phone_number": "not a number"}, "phone_number", ""),
        ({"phone_number": "0470 12 34 56"}, "phone_number", "region"),
        ({"phone_number": "+3247"}, "phone_number", ""),
        ({"phone_number": "+999123456789"}, "phone_number", ""),
        ({"job_titel": "typo"}, "job_titel", "unknown field"),
        ({"knockout_questions": [{"id": "q1"}]}, "knockout_questions.0.text", "required"),
    ],
)
def test_invalid_requests_are_rejected_with_the_field_and_kept(
    r: redis.Redis, patch: dict[str, object], field: str, fragment: str
) -> None:
    t = make_runtime(r, WED_10)
    with pytest.raises(ValidationFailed) as info:
        t.runtime.intake.submit(seed_request(**patch), WED_10)
    problems = {p.field: p.message for p in info.value.problems}
    assert field in problems, problems
    assert fragment.lower() in problems[field].lower()
    assert not t.store.exists("abc-123"), "an invalid request must never become a job"
    kept = json.loads(r.lrange(t.runtime.keys.rejected, -1, -1)[0])
    assert kept["errors"][0]["field"] == field
    assert kept["payload"]["call_id"] == "abc-123"


def test_number_on_the_do_not_call_list_is_final_at_intake(r: redis.Redis) -> None:
    t = make_runtime(r, WED_10)
    t.runtime.dnc.add(["+32 470 12 34 56"])
    result = t.runtime.intake.submit(seed_request(), WED_10)
    assert result.final_status is Status.DO_NOT_CALL
    assert t.store.get("abc-123").state is JobState.DONE
    assert r.zscore(t.runtime.keys.due, "abc-123") is None
    completed = t.sink.of_type(events.COMPLETED)
    assert completed[0]["status"] == "do_not_call"
    assert (
        completed[0]["phone_number"].startswith("+32")
        and "470123" not in completed[0]["phone_number"]
    )


def test_expiry_before_any_window_is_final_expired(r: redis.Redis) -> None:
    friday_21 = datetime(2026, 3, 6, 21, 0, tzinfo=BRUSSELS).astimezone(UTC)
    t = make_runtime(r, friday_21)
    expires = datetime(2026, 3, 7, 9, 0, tzinfo=BRUSSELS)  # Saturday opens at 10:00
    result = t.runtime.intake.submit(seed_request(expires_at=expires.isoformat()), friday_21)
    assert result.final_status is Status.EXPIRED


def test_python_api_submit_status_cancel(r: redis.Redis) -> None:
    t = make_runtime(r, WED_10)
    api = Dialer(t.runtime)
    call_id = api.submit(seed_request())
    status = api.status(call_id)
    assert status.state is JobState.SCHEDULED and status.phone_number == "+32******456"
    cancelled = api.cancel(call_id)
    assert cancelled.state is JobState.DONE and cancelled.final_status is Status.CANCELLED
    assert t.sink.of_type(events.COMPLETED)[-1]["status"] == "cancelled"


def test_submit_many_reports_bad_rows_and_keeps_going(r: redis.Redis) -> None:
    t = make_runtime(r, WED_10)
    api = Dialer(t.runtime)
    report = api.submit_many(
        [
            seed_request("a-1", "+32470000001"),
            seed_request("a-2", "bogus"),
            seed_request("a-3", "+31612345678"),
            seed_request("a-1", "+32470000001"),
        ]
    )
    assert report.accepted == ["a-1", "a-3"]
    assert report.duplicates == ["a-1"]
    assert [(e.index, e.problems[0].field) for e in report.errors] == [(1, "phone_number")]


def test_a_number_spanning_zones_without_common_hours_asks_for_a_timezone(r: redis.Redis) -> None:
    july = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
    t = make_runtime(r, july)
    with pytest.raises(ValidationFailed) as info:
        t.runtime.intake.submit(seed_request(phone="+18002345678"), july)
    assert info.value.problems[0].field == "timezone"
    ok = t.runtime.intake.submit(
        seed_request(phone="+18002345678", timezone="America/Chicago"), july
    )
    assert ok.created
