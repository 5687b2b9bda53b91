"""Data contracts: what a backend submits and what the system returns.

`SessionInput` and `CandidateData` keep the field names, defaults and value sets of the
prescreening agent's integration brief (`shared/seeds/000_*`) exactly; everything this project
adds is an extension with a default, so the seed's own JSON validates unchanged.

Messages are immutable once validated (`frozen=True`): a request or a result is a fact, not a
working copy. Unknown fields are rejected (`extra="forbid"`) so a typo in an integration is an
error naming the field, not a silently ignored setting; only `metadata` is an opaque passthrough.
"""

from __future__ import annotations

import re
from datetime import datetime, time
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SCHEMA_VERSION = "1.0"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------------------------------------
# Value sets
# ---------------------------------------------------------------------------------------------


class Status(StrEnum):
    """Final (or per-attempt) status of a screening; see the README status table."""

    # The seed's eight: the conversation took place (or reached a voicemail box).
    COMPLETED = "completed"
    VOICEMAIL = "voicemail"
    NOT_INTERESTED = "not_interested"
    KNOCKOUT_FAILED = "knockout_failed"
    ESCALATED = "escalated"
    UNCLEAR = "unclear"
    IRRELEVANT = "irrelevant"
    INCOMPLETE = "incomplete"
    # Dial outcomes that can end a screening without a conversation.
    NO_ANSWER = "no_answer"
    BUSY = "busy"
    DECLINED = "declined"
    FAILED = "failed"
    DO_NOT_CALL = "do_not_call"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


SEED_STATUSES: frozenset[Status] = frozenset(
    {
        Status.COMPLETED,
        Status.VOICEMAIL,
        Status.NOT_INTERESTED,
        Status.KNOCKOUT_FAILED,
        Status.ESCALATED,
        Status.UNCLEAR,
        Status.IRRELEVANT,
        Status.INCOMPLETE,
    }
)


class DialOutcome(StrEnum):
    """What one dial attempt produced before (or instead of) a conversation."""

    ANSWERED = "answered"  # the agent took over; its CandidateData carries the status
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    DECLINED = "declined"
    FAILED = "failed"  # invalid number or permanent carrier rejection: final
    THROTTLED = "throttled"  # trunk channel / CPS limit: re-queued, attempt not counted
    TRANSIENT = "transient"  # API / network trouble before the call reached the trunk
    # The dialing worker died after the dial was sent and nothing tells how the call went (the
    # reaper reports it when the call's slot lease ran out); never redialed for that attempt,
    # retried and ended like the job's last known outcome (dialer.policy).
    INTERRUPTED = "interrupted"


KnockoutResult = Literal["pass", "fail", "unclear", "irrelevant", "recruiter_requested"]
TurnRole = Literal["agent", "candidate"]


class JobState(StrEnum):
    """Life cycle of a job (DESIGN section 4)."""

    QUEUED = "queued"
    SCHEDULED = "scheduled"
    DIALING = "dialing"
    IN_CALL = "in_call"
    RETRY_SCHEDULED = "retry_scheduled"
    DONE = "done"


# ---------------------------------------------------------------------------------------------
# Input
# ---------------------------------------------------------------------------------------------


class KnockoutQuestion(_Strict):
    id: str = Field(min_length=1)
    text: str = Field(min_length=1)
    internal_id: str = ""
    data_key: str = ""
    context: str = ""


class OpenQuestion(_Strict):
    id: str = Field(min_length=1)
    text: str = Field(min_length=1)
    internal_id: str = ""
    description: str = ""


class CandidateRecord(_Strict):
    known_answers: dict[str, str] = Field(default_factory=dict)
    existing_booking_date: str | None = None


_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$|^24:00$")


class TimeRange(_Strict):
    """A local-time interval `[start, end)` within one day, as "HH:MM" strings."""

    start: str
    end: str

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        if not _HHMM.match(value):
            raise ValueError(f"must be a 24-hour time 'HH:MM', got {value!r}")
        return value

    @model_validator(mode="after")
    def _ordered(self) -> TimeRange:
        if self.start_minutes >= self.end_minutes:
            raise ValueError(f"start {self.start} must be before end {self.end}")
        return self

    @property
    def start_minutes(self) -> int:
        return _minutes(self.start)

    @property
    def end_minutes(self) -> int:
        return _minutes(self.end)

    def start_time(self) -> time:
        return time(self.start_minutes // 60, self.start_minutes % 60)


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class CallingWindow(_Strict):
    """Weekly local calling hours. Days left empty are closed.

    Default (DESIGN section 5): Mon-Fri 09:00-20:00, Sat 10:00-14:00, Sun closed.
    """

    mon: list[TimeRange] = Field(default_factory=lambda: [TimeRange(start="09:00", end="20:00")])
    tue: list[TimeRange] = Field(default_factory=lambda: [TimeRange(start="09:00", end="20:00")])
    wed: list[TimeRange] = Field(default_factory=lambda: [TimeRange(start="09:00", end="20:00")])
    thu: list[TimeRange] = Field(default_factory=lambda: [TimeRange(start="09:00", end="20:00")])
    fri: list[TimeRange] = Field(default_factory=lambda: [TimeRange(start="09:00", end="20:00")])
    sat: list[TimeRange] = Field(default_factory=lambda: [TimeRange(start="10:00", end="14:00")])
    sun: list[TimeRange] = Field(default_factory=list)

    def ranges_for(self, weekday: int) -> list[TimeRange]:
        """Ranges for `datetime.weekday()` (0 = Monday), sorted by start."""
        ranges: list[TimeRange] = getattr(self, WEEKDAYS[weekday])
        return sorted(ranges, key=lambda r: r.start_minutes)

    @model_validator(mode="after")
    def _not_always_closed(self) -> CallingWindow:
        if not any(getattr(self, day) for day in WEEKDAYS):
            raise ValueError("calling window is closed every day: open at least one day")
        return self


class RetryPolicy(_Strict):
    """When to call again after an attempt that did not finish the screening.

    Delays are in seconds, one per retry (the last one repeats). Every retry time is then moved
    into the candidate's calling window. Defaults follow DESIGN section 5.
    """

    no_answer: list[int] = Field(default_factory=lambda: [2 * 3600, 24 * 3600])
    busy: list[int] = Field(default_factory=lambda: [15 * 60])
    voicemail: list[int] = Field(default_factory=lambda: [24 * 3600])
    incomplete: list[int] = Field(default_factory=lambda: [30 * 60])
    declined: list[int] = Field(default_factory=lambda: [24 * 3600])
    declined_max_retries: int = Field(default=1, ge=0)
    throttled_delay: int = Field(default=30, ge=1)
    transient_delay: int = Field(default=60, ge=1)
    # Throttled / transient dials are not counted as attempts, but they are not endless either.
    max_uncounted_retries: int = Field(default=30, ge=0)
    # Leave the voicemail message only on the last attempt ("last"), on every attempt ("always")
    # or never ("never").
    leave_voicemail: Literal["last", "always", "never"] = "last"

    @field_validator("no_answer", "busy", "voicemail", "incomplete", "declined")
    @classmethod
    def _positive(cls, value: list[int]) -> list[int]:
        if not value or any(v <= 0 for v in value):
            raise ValueError("must be a non-empty list of positive delays in seconds")
        return value


class SessionInput(_Strict):
    """The seed's SessionInput: what the screening agent needs to run a conversation."""

    call_id: str = Field(min_length=1, max_length=128)
    candidate_name: str = ""
    candidate_known: bool = False
    candidate_record: CandidateRecord = Field(default_factory=CandidateRecord)
    job_title: str = Field(min_length=1)
    office_location: str = ""
    office_address: str = ""
    knockout_questions: list[KnockoutQuestion]
    open_questions: list[OpenQuestion]
    allow_escalation: bool = True
    require_consent: bool = True

    @field_validator("call_id")
    @classmethod
    def _call_id_chars(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9._:@-]+", value):
            raise ValueError(
                "may contain only letters, digits and . _ : @ - (it names a LiveKit room)"
            )
        return value

    @model_validator(mode="after")
    def _unique_question_ids(self) -> SessionInput:
        ids = [q.id for q in self.knockout_questions] + [q.id for q in self.open_questions]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"question ids must be unique, repeated: {', '.join(duplicates)}")
        return self


class ScreeningRequest(SessionInput):
    """A phone screening job: the seed's SessionInput plus how and when to call.

    `phone_number` is E.164 ("+32470123456") or national with `region` ("0470 12 34 56" with
    region "BE"); intake normalises it to E.164.
    """

    phone_number: str = Field(min_length=3, max_length=32)
    region: str | None = Field(default=None, min_length=2, max_length=2)
    timezone: str | None = None
    language: str | None = Field(default=None, min_length=2, max_length=8)
    campaign_id: str | None = Field(default=None, max_length=128)
    not_before: datetime | None = None
    expires_at: datetime | None = None
    calling_window: CallingWindow | None = None
    max_attempts: int | None = Field(default=None, ge=1, le=10)
    retry_policy: RetryPolicy | None = None
    timeslots: list[str] = Field(default_factory=list)
    # Per-job overrides of LIVEKIT_SIP_FROM_NUMBER / LIVEKIT_AGENT_NAME (seeds/002 `fromNumber`,
    # `agentName`); the trunk still decides which caller ids it may present.
    sip_from_number: str | None = Field(default=None, pattern=r"^\+[1-9]\d{6,14}$")
    agent_name: str | None = Field(default=None, min_length=1, max_length=128)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("not_before", "expires_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("must include a UTC offset, e.g. 2026-03-04T09:00:00+01:00")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is None:
            return value
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {value!r}, e.g. 'Europe/Brussels'") from None
        return value

    @field_validator("region")
    @classmethod
    def _upper_region(cls, value: str | None) -> str | None:
        return value.upper() if value else value

    def session_input(self) -> SessionInput:
        """The seed-shaped part, as the agent's dispatch metadata carries it."""
        return SessionInput.model_validate(self.model_dump(include=set(SessionInput.model_fields)))


# ---------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------


class KnockoutAnswer(_Strict):
    question_id: str
    internal_id: str = ""
    question_text: str = ""
    result: KnockoutResult
    raw_answer: str = ""
    candidate_note: str = ""


class OpenAnswer(_Strict):
    question_id: str
    internal_id: str = ""
    question_text: str = ""
    answer_summary: str = ""
    candidate_note: str = ""


class AttemptRecord(_Strict):
    """One dial: when, what came of it, and the SIP status code when the carrier gave one."""

    attempt: int = Field(ge=1)
    at: datetime
    outcome: str
    sip_status_code: int | None = None
    duration_s: float = 0.0
    detail: str = ""


class TranscriptTurn(_Strict):
    """One spoken turn (as the interviews API of `seeds/003_*` records them)."""

    turn_number: int = Field(ge=1)
    role: TurnRole
    text: str = ""
    started_at: datetime | None = None
    ended_at: datetime | None = None


class CandidateData(_Strict):
    """The seed's CandidateData plus this project's extensions (all defaulted)."""

    call_id: str
    status: Status
    consent_given: bool = False
    voicemail_detected: bool = False
    passed_knockout: bool = False
    interested_in_alternatives: bool = False
    knockout_answers: list[KnockoutAnswer] = Field(default_factory=list)
    open_answers: list[OpenAnswer] = Field(default_factory=list)
    chosen_timeslot: str | None = None
    scheduling_preference: str | None = None
    # Extensions (DESIGN section 3).
    schema_version: str = SCHEMA_VERSION
    attempt: int = Field(default=1, ge=1)
    attempts: list[AttemptRecord] = Field(default_factory=list)
    language: str | None = None
    transcript: list[TranscriptTurn] = Field(default_factory=list)
    started_at: datetime | None = None
    ended_at: datetime | None = None
    phone_number: str = ""  # masked, e.g. "+32*****789"
    escalation_reason: str | None = None
    do_not_call_requested: bool = False
    metadata: dict[str, Any] = Field(default_factory=dict)


class RejectedRow(_Strict):
    """A request that intake refused, kept so nothing is silently dropped."""

    source: str  # "api", "csv:path:row", "celery", ...
    errors: list[FieldError]
    payload: dict[str, Any] | str
    at: datetime


class FieldError(_Strict):
    field: str
    message: str


RejectedRow.model_rebuild()
