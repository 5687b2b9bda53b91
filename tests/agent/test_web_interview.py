"""Web interviews (seeds/001_*): the `interview-metadata` data message mapped onto the request,
the handler the worker feeds with data packets, and a full text-mode interview from it."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from agent import templates
from agent.plan import ScreeningPlan
from agent.simulate import run_text_screening_detailed
from agent.web_interview import (
    TOPIC,
    WebInterviewError,
    WebInterviewHandler,
    parse_message,
    to_plan,
)
from dialer.models import SessionInput, Status
from tests.agent.requests import dispatch_metadata
from tests.agent.scripted_llm import ScriptedLLM, call

# The message of seeds/001_*, exactly as the frontend publishes it.
SEED_MESSAGE: dict[str, Any] = {
    "interviewId": "c6aec8f5-592b-4b90-b7fd-a6a6404b31f9",
    "candidateId": "59faa4e3-4814-41ef-b830-a58c7ba7ae25",
    "applicationId": "1e526d64-f4e5-4353-a69f-9642959e8236",
    "jobPostId": "306bfccd-5030-46bb-b468-e5027a073b4a",
    "jobTitle": "Senior Backend Developer - Fintech",
    "companyName": "MENA Bank",
    "participantName": "Candidate",
    "instructions": "Welcome to your interview...",
    "maxDuration": 1800,
    "status": "READY_TO_JOIN",
}


def encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()


def test_seed_message_maps_onto_the_request() -> None:
    plan = to_plan(parse_message(encode(SEED_MESSAGE)))
    req = plan.request
    assert req.call_id == SEED_MESSAGE["interviewId"]
    assert req.job_title == "Senior Backend Developer - Fintech"
    assert req.candidate_name == ""  # "Candidate" is a placeholder, not a name
    assert req.require_consent and req.allow_escalation
    assert req.knockout_questions == []
    [question] = req.open_questions  # nothing to ask in the message: one default question
    assert (
        question.text
        == templates.render(
            "en", "default_open_question", job_title="Senior Backend Developer - Fintech"
        )[0]
    )
    assert plan.channel == "web"
    assert plan.max_call_duration_s == 1800
    assert plan.language == "en"
    assert plan.recruiter_number is None and plan.participant_identity is None
    assert "The employer is MENA Bank." in plan.instructions
    assert "Welcome to your interview..." in plan.instructions
    assert plan.metadata == {
        "source": "web_interview",
        "interviewId": SEED_MESSAGE["interviewId"],
        "candidateId": SEED_MESSAGE["candidateId"],
        "applicationId": SEED_MESSAGE["applicationId"],
        "jobPostId": SEED_MESSAGE["jobPostId"],
        "companyName": "MENA Bank",
    }
    assert not plan.flow_config().can_transfer


def test_extension_fields_and_unknown_fields_are_kept() -> None:
    message = SEED_MESSAGE | {
        "participantName": "Sara Haddad",
        "language": "fr",
        "knockoutQuestions": ["Avez-vous un permis de travail ?"],
        "openQuestions": [{"id": "why", "text": "Pourquoi ce poste ?", "internal_id": "crm_9"}],
        "requireConsent": False,
        "timeslots": ["lundi 10h"],
        "roomCode": "306BFCCD_3750",
    }
    plan = to_plan(parse_message(encode(message)))
    req = plan.request
    assert req.candidate_name == "Sara Haddad"
    assert plan.language == "fr"
    assert [(q.id, q.text) for q in req.knockout_questions] == [
        ("q1", "Avez-vous un permis de travail ?")
    ]
    assert [(q.id, q.internal_id) for q in req.open_questions] == [("why", "crm_9")]
    assert req.require_consent is False
    assert plan.timeslots == ("lundi 10h",)
    assert plan.metadata["extra_fields"] == {"roomCode": "306BFCCD_3750"}


def test_questions_from_the_room_metadata_are_used() -> None:
    base = ScreeningPlan.from_metadata(dispatch_metadata("nl"))
    message = {k: v for k, v in SEED_MESSAGE.items() if k != "jobTitle"}
    plan = to_plan(parse_message(encode(message)), base)
    assert plan.request.job_title == "Bakkerij Medewerker"
    assert [q.id for q in plan.request.knockout_questions] == ["q1", "q2"]
    assert [q.id for q in plan.request.open_questions] == ["oq1"]
    assert plan.request.candidate_name == "Mark Verbeke"  # placeholder name: the base one
    assert plan.language == "nl"
    assert plan.timeslots == base.timeslots
    assert plan.metadata["crm_candidate"] == "C-77"
    assert isinstance(plan.request, SessionInput)


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "JSON object"),
        (encode({"jobTitle": "x"}), "interviewId"),
        (encode(SEED_MESSAGE | {"maxDuration": -5}), "maxDuration"),
        (encode(SEED_MESSAGE | {"interviewId": "bad id with spaces"}), "call_id"),
        (encode(SEED_MESSAGE | {"status": "CANCELLED"}), "status"),
        (encode({k: v for k, v in SEED_MESSAGE.items() if k != "jobTitle"}), "jobTitle"),
    ],
)
def test_invalid_messages_name_the_field(payload: bytes, problem: str) -> None:
    with pytest.raises(WebInterviewError, match=problem):
        to_plan(parse_message(payload))


def test_handler_takes_the_first_valid_message_on_the_topic() -> None:
    handler = WebInterviewHandler()
    started: list[ScreeningPlan] = []
    handler.subscribe(started.append)

    assert not handler.on_data(encode(SEED_MESSAGE), "chat")  # other topic
    assert not handler.on_data(b"{oops", TOPIC)  # invalid: recorded, still waiting
    assert handler.plan is None and len(handler.errors) == 1 and started == []

    assert handler.on_data(encode(SEED_MESSAGE), TOPIC)
    assert handler.plan is not None and started == [handler.plan]

    later = SEED_MESSAGE | {"jobTitle": "Something else"}
    assert not handler.on_data(encode(later), TOPIC)  # an interview does not move
    assert handler.plan.request.job_title == "Senior Backend Developer - Fintech"

    late_subscriber: list[ScreeningPlan] = []
    handler.subscribe(late_subscriber.append)
    assert late_subscriber == [handler.plan]


def test_a_web_interview_runs_to_completion_in_text_mode() -> None:
    handler = WebInterviewHandler()
    assert handler.on_data(encode(SEED_MESSAGE), TOPIC)
    assert handler.plan is not None
    scripted = ScriptedLLM(
        [
            call("record_consent", consent_given=True),
            call(
                "record_open_answer",
                question_id="oq1",
                answer_summary="Eight years of Python backends for payment systems.",
            ),
            call("record_scheduling_preference", preference="weekday mornings"),
        ]
    )
    run = asyncio.run(
        run_text_screening_detailed(
            "",
            scripted,
            [
                "Yes, fine.",
                "I have eight years of Python backend work for payment systems.",
                "Weekday mornings work best.",
            ],
            plan=handler.plan,
        )
    )
    data = run.result
    assert data.status is Status.COMPLETED
    assert data.call_id == SEED_MESSAGE["interviewId"]
    assert data.phone_number == ""
    assert data.consent_given
    assert [a.answer_summary for a in data.open_answers] == [
        "Eight years of Python backends for payment systems."
    ]
    assert data.scheduling_preference == "weekday mornings"
    assert data.metadata["source"] == "web_interview"
    # The employer's instructions reach the model.
    assert all("Welcome to your interview..." in r.instructions for r in scripted.requests)
    assert len(scripted.requests) == 3
