"""The seed's own examples (shared/seeds/000_*), verbatim, and small request builders."""

from __future__ import annotations

import copy
import json
from typing import Any

SEED_SESSION_INPUT_JSON = """
{
  "call_id": "abc-123",
  "candidate_name": "Mark Verbeke",
  "candidate_known": false,
  "candidate_record": {
    "known_answers": {"work_permit": "ja"},
    "existing_booking_date": "dinsdag 4 maart om 10 uur"
  },
  "job_title": "Bakkerij Medewerker",
  "office_location": "Antwerpen Centrum",
  "office_address": "Mechelsesteenweg nummer 27",
  "knockout_questions": [
    {"id": "q1", "text": "Mag je wettelijk werken in Belgie?", "internal_id": "crm_field_1", "data_key": "work_permit", "context": ""},
    {"id": "q2", "text": "Heb je ervaring?", "internal_id": "crm_field_2", "data_key": "experience", "context": ""}
  ],
  "open_questions": [
    {"id": "oq1", "text": "Waarom wil je hier werken?", "internal_id": "crm_field_3", "description": "Motivatie"}
  ],
  "allow_escalation": true,
  "require_consent": true
}
"""

SEED_CANDIDATE_DATA_JSON = """
{
  "call_id": "abc-123",
  "status": "completed",
  "consent_given": true,
  "voicemail_detected": false,
  "passed_knockout": true,
  "interested_in_alternatives": false,
  "knockout_answers": [
    {
      "question_id": "q1",
      "internal_id": "crm_field_1",
      "question_text": "Mag je wettelijk werken in Belgie?",
      "result": "pass",
      "raw_answer": "ja, ik heb een werkvergunning",
      "candidate_note": ""
    }
  ],
  "open_answers": [
    {
      "question_id": "oq1",
      "internal_id": "crm_field_3",
      "question_text": "Waarom wil je hier werken?",
      "answer_summary": "Candidate is passionate about baking...",
      "candidate_note": ""
    }
  ],
  "chosen_timeslot": "dinsdag 4 maart om 10 uur",
  "scheduling_preference": null
}
"""


def seed_request(
    call_id: str = "abc-123", phone: str = "+32470123456", **extra: Any
) -> dict[str, Any]:
    """The seed SessionInput plus a phone number (and any extra fields)."""
    body = copy.deepcopy(json.loads(SEED_SESSION_INPUT_JSON))
    body["call_id"] = call_id
    body["phone_number"] = phone
    body.update(extra)
    return body
