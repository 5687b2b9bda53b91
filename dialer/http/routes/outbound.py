"""`POST /api/calls/outbound`: the outbound-call API of seeds/002, on top of intake.

Same body fields and response shape as the seed. Differences, all documented in docs/API.md:

- The call is queued, not placed synchronously: it goes through intake like any screening, so
  calling hours, the do-not-call list, pacing, concurrency and retries apply. The response comes
  at once; `participant.state` is "scheduled" (or the job's state when intake already finished
  it, e.g. a number on the do-not-call list) and `participant.sipCallId` is empty until the
  dial. Poll `GET /v1/screenings/{callId}` or subscribe to webhooks for the outcome.
- `roomName` is the room the first dial will use: `screening-<callId>-1`. A `roomName` in the
  request becomes the call id (so re-posting it is idempotent) when it is a valid call id.
- The request maps onto a ScreeningRequest: `to` -> phone_number, `recipientName` ->
  candidate_name, `questions` -> open_questions q1..qN, job_title "Outbound call", and
  metadata {source, questions, question, recipient_name, row_index, from_number, agent_name,
  wait_until_answered}. Not the number: metadata travels into results and webhooks, where
  numbers are masked; the response's `metadata.phone_number` echoes `to` as given.
  `fromNumber` / `agentName` are recorded in metadata; the caller id and the agent come from
  LIVEKIT_SIP_FROM_NUMBER / LIVEKIT_AGENT_NAME.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

from fastapi import APIRouter, Request

from dialer.dialing import room_name
from dialer.errors import FieldProblem, ValidationFailed
from dialer.http.auth import WRITE
from dialer.http.errors import error_responses
from dialer.http.schemas import (
    OutboundCallRequest,
    OutboundCallResponse,
    OutboundMetadata,
    SipParticipantOut,
)
from dialer.http.state import services
from dialer.messages import PHONE_PARTICIPANT_IDENTITY
from dialer.models import JobState

router = APIRouter(tags=["outbound (seed 002)"])

DEFAULT_JOB_TITLE = "Outbound call"
_CALL_ID_RE = re.compile(r"[A-Za-z0-9._:@-]{1,100}")
_E164_RE = re.compile(r"\+[1-9]\d{6,14}")

# ScreeningRequest field -> the seed's field name, for error messages.
_FIELD_NAMES = {"phone_number": "to", "candidate_name": "recipientName", "call_id": "roomName"}


def _seed_field(name: str) -> str:
    if name.startswith("open_questions."):
        parts = name.split(".")
        return f"questions.{parts[1]}" if len(parts) > 1 else "questions"
    head, _, rest = name.partition(".")
    mapped = _FIELD_NAMES.get(head, head)
    return f"{mapped}.{rest}" if rest else mapped


def to_screening_request(body: OutboundCallRequest) -> dict[str, Any]:
    problems: list[FieldProblem] = []
    if not _E164_RE.fullmatch(body.to.strip()):
        problems.append(FieldProblem("to", "must be an E.164 number, e.g. +15551230000"))
    if body.fromNumber is not None and not _E164_RE.fullmatch(body.fromNumber.strip()):
        problems.append(FieldProblem("fromNumber", "must be an E.164 number"))
    if body.roomName is not None and not _CALL_ID_RE.fullmatch(body.roomName):
        problems.append(
            FieldProblem("roomName", "may contain only letters, digits and . _ : @ - (1-100)")
        )
    for i, question in enumerate(body.questions):
        if not question.strip():
            problems.append(FieldProblem(f"questions.{i}", "must not be empty"))
    if problems:
        raise ValidationFailed(problems)
    call_id = body.roomName or f"out-{secrets.token_hex(8)}"
    questions = [q.strip() for q in body.questions]
    return {
        "call_id": call_id,
        "phone_number": body.to.strip(),
        "candidate_name": body.recipientName or "",
        "job_title": DEFAULT_JOB_TITLE,
        "knockout_questions": [],
        "open_questions": [
            {"id": f"q{i}", "text": text} for i, text in enumerate(questions, start=1)
        ],
        "metadata": {
            "source": "api/calls/outbound",
            "questions": questions,
            "question": questions[0] if questions else "",
            "recipient_name": body.recipientName,
            "row_index": body.rowIndex,
            "from_number": body.fromNumber,
            "agent_name": body.agentName,
            "wait_until_answered": body.waitUntilAnswered,
        },
    }


@router.post(
    "/api/calls/outbound",
    response_model=OutboundCallResponse,
    summary="Queue an outbound call (seeds/002 compatible)",
    description=(
        "Same body and response shape as the seed's outbound-call API. The call is queued "
        "through intake (calling hours, do-not-call, pacing and retries apply) rather than "
        "placed synchronously; `roomName` is the room of the first dial and `callId` the "
        "screening to poll at /v1/screenings/{callId}."
    ),
    responses=error_responses(401, 403, 409, 422, 503),
    dependencies=[WRITE],
)
def outbound_call(body: OutboundCallRequest, request: Request) -> OutboundCallResponse:
    svc = services(request)
    payload = to_screening_request(body)
    rt = svc.runtime
    try:
        result = rt.intake.submit(payload, rt.clock.now(), source="http-outbound")
    except ValidationFailed as exc:
        raise ValidationFailed(
            [FieldProblem(_seed_field(p.field), p.message) for p in exc.problems]
        ) from None
    room = room_name(result.call_id, 1)
    participant_state = "scheduled" if result.state is not JobState.DONE else result.state.value
    metadata = payload["metadata"]
    return OutboundCallResponse(
        roomName=room,
        participant=SipParticipantOut(
            participantId="",
            participantIdentity=PHONE_PARTICIPANT_IDENTITY,
            roomName=room,
            sipCallId="",
            state=participant_state,
        ),
        metadata=OutboundMetadata(
            questions=metadata["questions"],
            question=metadata["question"],
            phone_number=body.to,
            recipient_name=metadata["recipient_name"],
            row_index=metadata["row_index"],
        ),
        callId=result.call_id,
        state=result.state,
        status=result.final_status,
        dialAt=result.dial_at,
    )
