"""Data contracts: the seed's examples validate unchanged; bad input names the field."""

from __future__ import annotations

import json

import pydantic
import pytest

from dialer.messages import DialContext, build_dispatch_metadata, parse_dispatch_metadata
from dialer.models import CandidateData, ScreeningRequest, SessionInput, Status
from tests.support.seed import SEED_CANDIDATE_DATA_JSON, SEED_SESSION_INPUT_JSON, seed_request


def test_seed_session_input_validates_unchanged() -> None:
    raw = json.loads(SEED_SESSION_INPUT_JSON)
    model = SessionInput.model_validate(raw)
    assert model.model_dump(mode="json") == raw


def test_seed_session_input_plus_phone_is_a_screening_request() -> None:
    request = ScreeningRequest.model_validate(seed_request())
    assert request.phone_number == "+32470123456"
    assert request.allow_escalation is True and request.require_consent is True
    assert request.session_input().model_dump(mode="json") == json.loads(SEED_SESSION_INPUT_JSON)


def test_seed_candidate_data_validates_unchanged() -> None:
    raw = json.loads(SEED_CANDIDATE_DATA_JSON)
    model = CandidateData.model_validate(raw)
    dumped = model.model_dump(mode="json")
    for key, value in raw.items():
        assert dumped[key] == value


def test_defaults_match_the_seed() -> None:
    minimal = {
        "call_id": "x1",
        "job_title": "Baker",
        "knockout_questions": [],
        "open_questions": [],
        "phone_number": "+32470123456",
    }
    request = ScreeningRequest.model_validate(minimal)
    assert request.allow_escalation is True
    assert request.require_consent is True
    assert request.candidate_name == ""
    assert request.candidate_known is False


def test_status_values_include_the_seeds_eight_and_dial_outcomes() -> None:
    values = {s.value for s in Status}
    assert {
        "completed", "voicemail", "not_interested", "knockout_failed",
        "escalated", "unclear", "irrelevant", "incomplete",
    } <= values  # fmt: skip
    assert {
        "no_answer",
        "busy",
        "declined",
        "failed",
        "do_not_call",
        "cancelled",
        "expired",
    } <= values


@pytest.mark.parametrize(
    ("patch", "field", "fragment"),
    [
        ({"job_titel": "typo"}, "job_titel", "extra forbidden"),
        ({"knockout_questions": "q1"}, "knockout_questions", "list"),
        ({"allow_escalation": "perhaps"}, "allow_escalation", "boolean"),
        ({"timezone": "Mars/Olympus"}, "timezone", "unknown IANA time zone"),
        ({"not_before": "2026-03-04T09:00:00"}, "not_before", "UTC offset"),
        ({"max_attempts": 0}, "max_attempts", "greater than or equal"),
        ({"call_id": "has space"}, "call_id", "may contain only"),
    ],
)
def test_bad_input_names_the_field(patch: dict[str, object], field: str, fragment: str) -> None:
    body = seed_request(**patch)
    with pytest.raises(pydantic.ValidationError) as info:
        ScreeningRequest.model_validate(body)
    errors = info.value.errors()
    assert any(
        field in ".".join(map(str, e["loc"]))
        and fragment in e["msg"] + str(e["type"]).replace("_", " ")
        for e in errors
    ), errors


def test_missing_required_fields_are_named() -> None:
    body = seed_request()
    del body["job_title"], body["phone_number"]
    with pytest.raises(pydantic.ValidationError) as info:
        ScreeningRequest.model_validate(body)
    missing = {e["loc"][0] for e in info.value.errors() if e["type"] == "missing"}
    assert missing == {"job_title", "phone_number"}


def test_metadata_is_an_opaque_passthrough() -> None:
    body = seed_request(metadata={"anything": {"goes": [1, 2]}, "crm": "x"})
    assert ScreeningRequest.model_validate(body).metadata == {
        "anything": {"goes": [1, 2]},
        "crm": "x",
    }


def test_dispatch_metadata_round_trip_keeps_session_input_at_top_level() -> None:
    request = ScreeningRequest.model_validate(seed_request())
    raw = build_dispatch_metadata(
        request, DialContext(attempt=2, counted_attempt=2, max_attempts=3)
    )
    top = json.loads(raw)
    assert top["call_id"] == "abc-123" and top["knockout_questions"][0]["id"] == "q1"
    parsed, context = parse_dispatch_metadata(raw)
    assert parsed == request
    assert context is not None and context.attempt == 2
    seed_only, none = parse_dispatch_metadata(SEED_SESSION_INPUT_JSON)
    assert isinstance(seed_only, SessionInput) and none is None
