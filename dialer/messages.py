"""Messages that cross process boundaries: dial task -> agent (dispatch metadata) and agent /
dial task -> results consumer (results queue). Both are JSON; both are versioned by their shape.

Results queue: Celery task name `RESULTS_TASK` on queue `RESULTS_QUEUE`, called with one keyword
argument `message` holding a `ResultMessage` as a JSON object. Any producer (the agent, the dial
task, a non-Python service) can `send_task` it.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from dialer.models import (
    CandidateData,
    DialOutcome,
    KnockoutAnswer,
    OpenAnswer,
    ScreeningRequest,
    SessionInput,
)

RESULTS_TASK = "dialer.results.record"
RESULTS_QUEUE = "results"
DISPATCH_CONTEXT_KEY = "dialer"
# The SIP participant's identity in the room (as in the seed's dispatch example).
PHONE_PARTICIPANT_IDENTITY = "phone_user"


class _Msg(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ResumeState(_Msg):
    """What earlier attempts already collected, so a retry after `incomplete` does not ask again."""

    consent_given: bool = False
    knockout_answers: list[KnockoutAnswer] = Field(default_factory=list)
    open_answers: list[OpenAnswer] = Field(default_factory=list)
    chosen_timeslot: str | None = None
    scheduling_preference: str | None = None


class DialContext(_Msg):
    """Per-attempt facts the dialer adds to the dispatch metadata under the key `dialer`."""

    attempt: int = Field(ge=1)
    counted_attempt: int = Field(ge=1)
    max_attempts: int = Field(ge=1)
    leave_voicemail: bool = True
    language: str | None = None
    participant_identity: str = PHONE_PARTICIPANT_IDENTITY
    max_call_duration_s: int = 900
    recruiter_number: str | None = None
    resume: ResumeState | None = None


def build_dispatch_metadata(request: ScreeningRequest, context: DialContext) -> str:
    """Dispatch metadata: the SessionInput fields at the top level (as the seed agent expects),
    the rest of the request alongside, and the per-attempt context under `dialer`."""
    body: dict[str, Any] = request.model_dump(mode="json", exclude_none=True)
    body[DISPATCH_CONTEXT_KEY] = context.model_dump(mode="json", exclude_none=True)
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


def parse_dispatch_metadata(raw: str) -> tuple[SessionInput, DialContext | None]:
    """Inverse of `build_dispatch_metadata`; plain SessionInput JSON (no phone) is accepted too.

    Raises pydantic.ValidationError on malformed metadata (the caller reports it).
    """
    body = json.loads(raw) if raw else {}
    if not isinstance(body, dict):
        raise ValueError("dispatch metadata must be a JSON object")
    ctx_raw = body.pop(DISPATCH_CONTEXT_KEY, None)
    context = DialContext.model_validate(ctx_raw) if ctx_raw is not None else None
    request: SessionInput
    if "phone_number" in body:
        request = ScreeningRequest.model_validate(body)
    else:
        request = SessionInput.model_validate(body)
    return request, context


class ResultMessage(_Msg):
    """One attempt's outcome, on the results queue.

    kind "agent_result": the call was answered and the agent produced `result`.
    kind "dial_outcome": the dial ended without a conversation (`outcome`, `sip_status_code`).
    """

    kind: Literal["agent_result", "dial_outcome"]
    call_id: str
    attempt: int = Field(ge=1)
    at: datetime
    outcome: str  # a Status value for agent results, a DialOutcome value for dial outcomes
    sip_status_code: int | None = None
    detail: str = ""
    duration_s: float = 0.0
    result: CandidateData | None = None

    @classmethod
    def from_agent(cls, data: CandidateData, at: datetime) -> ResultMessage:
        duration = 0.0
        if data.started_at and data.ended_at:
            duration = max(0.0, (data.ended_at - data.started_at).total_seconds())
        return cls(
            kind="agent_result",
            call_id=data.call_id,
            attempt=data.attempt,
            at=at,
            outcome=data.status.value,
            duration_s=duration,
            result=data,
        )

    @classmethod
    def from_dial(
        cls,
        call_id: str,
        attempt: int,
        outcome: DialOutcome,
        at: datetime,
        *,
        sip_status_code: int | None = None,
        detail: str = "",
    ) -> ResultMessage:
        return cls(
            kind="dial_outcome",
            call_id=call_id,
            attempt=attempt,
            at=at,
            outcome=outcome.value,
            sip_status_code=sip_status_code,
            detail=detail,
        )
