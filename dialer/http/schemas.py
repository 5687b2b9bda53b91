"""Request and response bodies of the HTTP API (the data contracts themselves live in
`dialer.models`; these wrap them for transport)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from dialer.campaigns import CampaignPolicy
from dialer.models import AttemptRecord, CandidateData, JobState, Status, TranscriptTurn


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# -- errors --------------------------------------------------------------------------------------


class FieldErrorOut(_Out):
    field: str
    message: str


class ErrorDetail(_Out):
    code: str = Field(description="Machine-readable: validation_failed, not_found, ...")
    message: str = Field(description="What went wrong and what to do about it")
    fields: list[FieldErrorOut] = Field(default_factory=list)


class ErrorBody(_Out):
    error: ErrorDetail


# -- screenings ----------------------------------------------------------------------------------


class ScreeningSubmitted(_Out):
    call_id: str
    created: bool = Field(description="False when the same request was already submitted")
    state: JobState
    status: Status | None = Field(description="Final status when the job finished at intake")
    dial_at: datetime | None = Field(description="When the first dial may happen")


class ScreeningSummary(_Out):
    call_id: str
    state: JobState
    status: Status | None = Field(description="Final status once the job is done")
    attempt: int = Field(description="Dials placed so far")
    max_attempts: int
    campaign_id: str | None
    candidate_name: str
    job_title: str
    phone_number: str = Field(description="Masked, e.g. +32*****456")
    created_at: datetime
    updated_at: datetime
    next_at: datetime | None = Field(description="Next dial (or retry) time, while not done")
    detail: str


class ScreeningDetail(ScreeningSummary):
    cancel_requested: bool
    attempts: list[AttemptRecord]
    result: CandidateData | None = Field(description="The final CandidateData once done")
    last_result: CandidateData | None = Field(description="The latest attempt's CandidateData")
    transcript: list[TranscriptTurn] = Field(
        description="Transcript of the final (else the latest) conversation"
    )


class ScreeningPage(_Out):
    data: list[ScreeningSummary]
    page: int
    pageSize: int
    total: int


class BatchRowError(_Out):
    row: int = Field(description="1-based: list position, or CSV line number")
    call_id: str | None
    fields: list[FieldErrorOut]


class BatchCounts(_Out):
    total: int
    accepted: int
    duplicates: int
    rejected: int


class BatchResult(_Out):
    accepted: list[str]
    duplicates: list[str]
    errors: list[BatchRowError]
    counts: BatchCounts


class BatchEnvelope(_In):
    """A JSON batch with a template merged under every request (same rules as a CSV job
    template: the request's own fields win)."""

    template: dict[str, Any] = Field(default_factory=dict)
    requests: list[dict[str, Any]]


# -- campaigns -----------------------------------------------------------------------------------


class CampaignCreate(_In):
    id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:@-]+$")
    name: str = Field(default="", max_length=200)
    policy: CampaignPolicy = Field(default_factory=CampaignPolicy)
    template: dict[str, Any] = Field(
        default_factory=dict,
        description="ScreeningRequest fields merged under every batch row of this campaign",
    )
    paused: bool = False


class CampaignPolicyUpdate(_In):
    policy: CampaignPolicy
    template: dict[str, Any] | None = None


class PauseRequest(_In):
    reason: str = Field(default="", max_length=500)


# -- webhooks ------------------------------------------------------------------------------------


class WebhookCreate(_In):
    url: str = Field(min_length=1, max_length=2048)
    events: list[str] = Field(default_factory=lambda: ["*"], max_length=20)
    secret: str | None = Field(
        default=None, max_length=200, description="whsec_…; generated when left out"
    )
    description: str = Field(default="", max_length=500)
    id: str | None = Field(default=None, max_length=67, description="ep_…; generated when left out")


class WebhookOut(_Out):
    id: str
    url: str
    secret: str = Field(description="Masked: whsec_…abcd")
    events: list[str]
    enabled: bool
    description: str
    created_at: datetime
    disabled_reason: str | None


class WebhookCreated(_Out):
    endpoint: WebhookOut
    secret: str = Field(description="The signing secret, shown this once")


class WebhookTestResult(_Out):
    endpoint_id: str
    delivered: bool
    verdict: Literal["delivered", "retry", "gone"]
    status_code: int | None
    reason: str
    elapsed_ms: float


class DeliveryOut(_Out):
    id: str
    endpoint_id: str
    message_id: str
    event_type: str
    tries: int
    status: str
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    dead_at: datetime | None
    dead_reason: str | None


class ReplayRequest(_In):
    delivery_id: str | None = Field(default=None, max_length=64)
    endpoint_id: str | None = Field(default=None, max_length=67)
    since: datetime | None = None


class ReplayResult(_Out):
    replayed: list[str]


# -- do-not-call ---------------------------------------------------------------------------------


class DncNumbers(_In):
    numbers: list[str] = Field(min_length=1, max_length=1000)
    region: str | None = Field(default=None, min_length=2, max_length=2)


class DncLookup(_In):
    number: str = Field(min_length=1, max_length=64)
    region: str | None = Field(default=None, min_length=2, max_length=2)


class DncChanged(_Out):
    changed: int = Field(description="Numbers added (or removed) by this request")
    numbers: list[str] = Field(description="The numbers, masked")


class DncListed(_Out):
    number: str = Field(description="Masked")
    listed: bool


class DncSize(_Out):
    size: int


class DncImportRejected(_Out):
    line: int
    reason: str


class DncImported(_Out):
    added: int
    already_present: int
    rejected: list[DncImportRejected]


# -- /api/calls/outbound (seeds/002) ------------------------------------------------------------


class OutboundCallRequest(_In):
    """The body of seeds/002's `POST /api/calls/outbound`, same field names."""

    to: str = Field(min_length=1, max_length=32, description="E.164, e.g. +15551230000")
    fromNumber: str | None = Field(default=None, max_length=32)
    roomName: str | None = Field(default=None, max_length=100)
    questions: list[str] = Field(default_factory=list, max_length=50)
    agentName: str | None = Field(default=None, max_length=128)
    waitUntilAnswered: bool = True
    recipientName: str | None = Field(default=None, max_length=200)
    rowIndex: int | None = Field(default=None, ge=0, le=10_000_000)


class SipParticipantOut(_Out):
    """Shaped like LiveKit's SIPParticipantInfo; ids known once the call is answered."""

    participantId: str = Field(description="LiveKit's participant id once answered, else empty")
    participantIdentity: str
    roomName: str
    sipCallId: str = Field(description="LiveKit's SIP call id once answered, else empty")
    state: str = Field(
        description="answered; the outcome of a first dial that did not connect (busy, "
        "no_answer, declined, failed, throttled, transient); dialing (the wait ran out "
        "while it rang); scheduled (not dialed yet); done (finished at intake, e.g. "
        "do_not_call)"
    )


class OutboundMetadata(_Out):
    questions: list[str]
    question: str
    phone_number: str
    recipient_name: str | None
    row_index: int | None


class OutboundCallResponse(_Out):
    roomName: str
    participant: SipParticipantOut
    metadata: OutboundMetadata
    callId: str = Field(description="Extension: poll GET /v1/screenings/{callId}")
    state: JobState
    status: Status | None
    dialAt: datetime | None


# -- health --------------------------------------------------------------------------------------


class Check(_Out):
    ok: bool
    latency_ms: float
    error: str | None = None


class Health(_Out):
    status: Literal["ok", "unavailable"]
    checks: dict[str, Check]
