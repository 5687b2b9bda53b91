"""Screening requests used by the agent tests: the seed's Dutch bakery job and its English twin,
and dispatch metadata exactly as the dial task builds it."""

from __future__ import annotations

from typing import Any

from dialer.messages import DialContext, ResumeState, build_dispatch_metadata
from dialer.models import ScreeningRequest

NL_PHONE = "+32470123789"
EN_PHONE = "+447400123456"

REQUESTS: dict[str, dict[str, Any]] = {
    # seeds/000_*: the example SessionInput (+ phone, timeslots, metadata). No `language`: the
    # Belgian number makes the call Dutch.
    "nl": {
        "call_id": "abc-123",
        "candidate_name": "Mark Verbeke",
        "candidate_known": False,
        "candidate_record": {"known_answers": {"work_permit": "ja"}},
        "job_title": "Bakkerij Medewerker",
        "office_location": "Antwerpen Centrum",
        "office_address": "Mechelsesteenweg nummer 27",
        "knockout_questions": [
            {
                "id": "q1",
                "text": "Mag je wettelijk werken in Belgie?",
                "internal_id": "crm_field_1",
                "data_key": "work_permit",
                "context": "",
            },
            {
                "id": "q2",
                "text": "Heb je ervaring?",
                "internal_id": "crm_field_2",
                "data_key": "experience",
                "context": "",
            },
        ],
        "open_questions": [
            {
                "id": "oq1",
                "text": "Waarom wil je hier werken?",
                "internal_id": "crm_field_3",
                "description": "Motivatie",
            }
        ],
        "allow_escalation": True,
        "require_consent": True,
        "phone_number": NL_PHONE,
        "timeslots": ["dinsdag 4 maart om 10 uur", "woensdag 5 maart om 14 uur"],
        "metadata": {"crm_candidate": "C-77"},
    },
    "en": {
        "call_id": "uk-42",
        "candidate_name": "Jane Doe",
        "candidate_record": {"known_answers": {"work_permit": "yes"}},
        "job_title": "Bakery Assistant",
        "office_location": "London Bridge",
        "office_address": "12 Tooley Street",
        "knockout_questions": [
            {
                "id": "q1",
                "text": "Are you legally allowed to work in the UK?",
                "internal_id": "crm_field_1",
                "data_key": "work_permit",
            },
            {
                "id": "q2",
                "text": "Do you have experience in a bakery?",
                "internal_id": "crm_field_2",
                "data_key": "experience",
            },
        ],
        "open_questions": [
            {
                "id": "oq1",
                "text": "Why would you like to work here?",
                "internal_id": "crm_field_3",
                "description": "Motivation",
            }
        ],
        "phone_number": EN_PHONE,
        "language": "en",
        "timeslots": ["Tuesday 4 March at 10 am", "Wednesday 5 March at 2 pm"],
    },
}


def request(lang: str, **overrides: Any) -> ScreeningRequest:
    body = {**REQUESTS[lang], **overrides}
    return ScreeningRequest.model_validate(body)


def dispatch_metadata(
    lang: str,
    *,
    attempt: int = 1,
    leave_voicemail: bool = True,
    recruiter_number: str | None = None,
    resume: ResumeState | None = None,
    max_call_duration_s: int = 900,
    **overrides: Any,
) -> str:
    context = DialContext(
        attempt=attempt,
        counted_attempt=attempt,
        max_attempts=3,
        leave_voicemail=leave_voicemail,
        recruiter_number=recruiter_number,
        resume=resume,
        max_call_duration_s=max_call_duration_s,
    )
    return build_dispatch_metadata(request(lang, **overrides), context)
