"""`POST /api/calls/outbound`: the outbound-call API of seeds/002, on top of intake.

Same body fields and response shape as the seed. Differences, all documented in docs/API.md:

- The call goes through intake like any screening, so calling hours, the do-not-call list,
  pacing, concurrency and retries apply.
- `waitUntilAnswered` (default true, as in the seed): when the first dial is due now, the
  response waits (asynchronously, at most `DIALER_RINGING_TIMEOUT_S` + WAIT_MARGIN_S) until that
  dial has an outcome and returns the participant: `state` "answered" with LiveKit's
  `sipCallId` (and `participantId` when this process has the LiveKit credentials), or the
  outcome of a dial that did not connect ("busy", "no_answer", ...), or "dialing" / "scheduled"
  when the wait ran out first. With `waitUntilAnswered: false`, or a job that waits for the
  calling window, the response comes at once with `participant.state` "scheduled" (or "done"
  when intake already finished the job, e.g. a number on the do-not-call list).
- `roomName` is the room the first dial uses: `screening-<callId>-1`. A `roomName` in the
  request becomes the call id (so re-posting it is idempotent) when it is a valid call id.
- The request maps onto a ScreeningRequest: `to` -> phone_number, `recipientName` ->
  candidate_name, `questions` -> open_questions q1..qN, job_title "Outbound call",
  `fromNumber` -> sip_from_number (the caller id of this job's dials), `agentName` ->
  agent_name (the agent dispatched into its rooms), and metadata {source, questions, question,
  recipient_name, row_index, from_number, agent_name, wait_until_answered}. Not the number:
  metadata travels into results and webhooks, where numbers are masked; the response's
  `metadata.phone_number` echoes `to` as given.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from dialer.dialing import room_name
from dialer.errors import ConfigError, FieldProblem, JobNotFound, ValidationFailed
from dialer.http.auth import WRITE
from dialer.http.errors import error_responses
from dialer.http.schemas import (
    OutboundCallRequest,
    OutboundCallResponse,
    OutboundMetadata,
    SipParticipantOut,
)
from dialer.http.state import services
from dialer.intake import Submitted
from dialer.messages import PHONE_PARTICIPANT_IDENTITY
from dialer.models import DialOutcome, JobState
from dialer.runtime import Runtime
from dialer.settings import Settings

log = logging.getLogger(__name__)

router = APIRouter(tags=["outbound (seed 002)"])

# How much longer than the ringing timeout `waitUntilAnswered` waits: the beat's next tick
# (1 s), the dial queue, the pacing turn and the LiveKit requests before the INVITE.
WAIT_MARGIN_S = 30.0
POLL_S = 0.2
# A first dial due within this long counts as "due now" (intake's clock and ours differ).
DUE_NOW_SLACK = timedelta(seconds=1)
# Dial outcomes that mean the call never connected; any other recorded outcome is a
# conversation's (the callee, or a machine, answered).
_NOT_CONNECTED = frozenset(
    o.value for o in DialOutcome if o not in (DialOutcome.ANSWERED, DialOutcome.INTERRUPTED)
)

DEFAULT_JOB_TITLE = "Outbound call"
_CALL_ID_RE = re.compile(r"[A-Za-z0-9._:@-]{1,100}")
_E164_RE = re.compile(r"\+[1-9]\d{6,14}")

# ScreeningRequest field -> the seed's field name, for error messages.
_FIELD_NAMES = {
    "phone_number": "to",
    "candidate_name": "recipientName",
    "call_id": "roomName",
    "sip_from_number": "fromNumber",
    "agent_name": "agentName",
}


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
        "sip_from_number": body.fromNumber.strip() if body.fromNumber is not None else None,
        "agent_name": body.agentName,
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


@dataclass(frozen=True)
class FirstDial:
    """What became of a job's first dial, as far as the job store knows."""

    state: str  # answered | busy | no_answer | ... | dialing | scheduled
    sip_call_id: str = ""

    @property
    def settled(self) -> bool:
        return self.state not in ("dialing", "scheduled")


def first_dial(rt: Runtime, call_id: str) -> FirstDial:
    """The first dial's outcome: "answered" once the callee picked up (the dial task keeps
    LiveKit's SIP call id on the job; a result may be recorded first), else the outcome of a
    dial that did not connect, else where the job is ("dialing" or "scheduled")."""
    job = rt.store.get(call_id)
    sip_call_id = job.raw.get("sip_call_id", "")
    if sip_call_id or job.state is JobState.IN_CALL:
        return FirstDial("answered", sip_call_id)
    attempts = rt.store.attempts(call_id)
    if attempts:
        outcome = attempts[0].outcome
        return FirstDial(outcome if outcome in _NOT_CONNECTED else "answered")
    if job.state is JobState.DIALING:
        return FirstDial("dialing")
    return FirstDial("scheduled" if job.state is not JobState.DONE else job.state.value)


def _due_now(result: Submitted, now_ts: float) -> bool:
    if result.state in (JobState.DIALING, JobState.IN_CALL, JobState.RETRY_SCHEDULED):
        return True  # a re-post of a job already past its first dial's start
    if result.state is not JobState.SCHEDULED or result.dial_at is None:
        return False
    return (result.dial_at - DUE_NOW_SLACK).timestamp() <= now_ts


async def wait_for_first_dial(rt: Runtime, call_id: str, timeout_s: float) -> FirstDial:
    """Poll the job (off the event loop) until its first dial has an outcome or `timeout_s`
    passes; returns what is known then."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = await run_in_threadpool(first_dial, rt, call_id)
        if found.settled or time.monotonic() >= deadline:
            return found
        await asyncio.sleep(POLL_S)


async def livekit_participant_id(settings: Settings, room: str, identity: str) -> str:
    """LiveKit's id of the phone participant in `room`, when this process has the LiveKit
    credentials (as `dialer run` does); "" when it has not, or LiveKit does not say in 5 s."""
    try:
        url, key, secret = settings.require_livekit()
    except ConfigError:
        return ""
    from livekit.api import LiveKitAPI
    from livekit.protocol import room as proto_room

    lkapi = LiveKitAPI(url, key, secret)
    try:
        found = await asyncio.wait_for(
            lkapi.room.list_participants(proto_room.ListParticipantsRequest(room=room)), 5.0
        )
    except Exception as exc:  # best effort: the call itself is unaffected
        log.info("participant id for %s not found: %s", room, type(exc).__name__)
        return ""
    finally:
        await lkapi.aclose()
    return next((str(p.sid) for p in found.participants if p.identity == identity), "")


@router.post(
    "/api/calls/outbound",
    response_model=OutboundCallResponse,
    summary="Queue an outbound call (seeds/002 compatible)",
    description=(
        "Same body and response shape as the seed's outbound-call API. The call goes through "
        "intake (calling hours, do-not-call, pacing and retries apply). With "
        "`waitUntilAnswered` (default true) and a first dial due now, the response waits until "
        "that dial has an outcome (at most the ringing timeout + 30 s) and `participant` "
        "describes it; otherwise it comes at once. `roomName` is the room of the first dial "
        "and `callId` the screening to poll at /v1/screenings/{callId}."
    ),
    responses=error_responses(401, 403, 409, 422, 503),
    dependencies=[WRITE],
)
async def outbound_call(body: OutboundCallRequest, request: Request) -> OutboundCallResponse:
    svc = services(request)
    payload = to_screening_request(body)
    rt = svc.runtime

    def submit() -> tuple[Submitted, float]:
        now = rt.clock.now()
        return rt.intake.submit(payload, now, source="http-outbound"), now.timestamp()

    try:
        result, now_ts = await run_in_threadpool(submit)
    except ValidationFailed as exc:
        raise ValidationFailed(
            [FieldProblem(_seed_field(p.field), p.message) for p in exc.problems]
        ) from None
    room = room_name(result.call_id, 1)
    found = FirstDial("scheduled" if result.state is not JobState.DONE else result.state.value)
    participant_id = ""
    state, status = result.state, result.final_status
    if body.waitUntilAnswered and _due_now(result, now_ts):
        timeout_s = rt.settings.ringing_timeout_s + WAIT_MARGIN_S
        found = await wait_for_first_dial(rt, result.call_id, timeout_s)
        if found.state == "answered":
            participant_id = await livekit_participant_id(
                rt.settings, room, PHONE_PARTICIPANT_IDENTITY
            )
        try:
            job = await run_in_threadpool(rt.store.get, result.call_id)
            state, status = job.state, job.final_status
        except JobNotFound:  # deleted meanwhile: report what intake said
            pass
    metadata = payload["metadata"]
    return OutboundCallResponse(
        roomName=room,
        participant=SipParticipantOut(
            participantId=participant_id,
            participantIdentity=PHONE_PARTICIPANT_IDENTITY,
            roomName=room,
            sipCallId=found.sip_call_id,
            state=found.state,
        ),
        metadata=OutboundMetadata(
            questions=metadata["questions"],
            question=metadata["question"],
            phone_number=body.to,
            recipient_name=metadata["recipient_name"],
            row_index=metadata["row_index"],
        ),
        callId=result.call_id,
        state=state,
        status=status,
        dialAt=result.dial_at,
    )
