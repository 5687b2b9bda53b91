"""Web interviews: the frontend publishes the interview metadata as a data message on topic
`interview-metadata` right after joining the room (`seeds/001_*`). Pure Python: no LiveKit
imports, so the mapping and the handler are tested without a room; the worker forwards
`data_received` packets to `WebInterviewHandler.on_data`, from before it joins the room (a
message sent while the agent connects is held until the room metadata is read), and each
participant's metadata and attributes to `on_participant`: the same JSON is accepted as the
participant's metadata, or as its attribute `interview-metadata`, for frontends that set it in
the token instead of sending a message.

Mapping of the camelCase fields onto the screening request:

| data message      | request / plan                                                       |
|-------------------|----------------------------------------------------------------------|
| interviewId       | `call_id` (required)                                                 |
| jobTitle          | `job_title` (required unless the room metadata already has a request) |
| participantName   | `candidate_name` (a placeholder such as "Candidate" means no name)   |
| companyName       | told to the LLM; kept in the result's `metadata`                     |
| instructions      | the employer's interview guidelines, added to the LLM instructions   |
| maxDuration       | maximum interview length in seconds, enforced like a phone call's    |
| status            | READY_TO_JOIN / IN_PROGRESS / INVITED start it; COMPLETED, CANCELLED, |
|                   | EXPIRED, DRAFT are refused                                           |
| candidateId, applicationId, jobPostId | kept in the result's `metadata`                  |

Extensions (optional, for backends that want the full screening on the web too):
`knockoutQuestions` / `openQuestions` (objects with the SessionInput question fields, or plain
strings), `questions` (strings, asked as open questions, as in `seeds/002_*`), `language`,
`requireConsent`, `allowEscalation`, `timeslots`, `officeLocation`, `officeAddress`.
Questions missing from the message come from the room / dispatch metadata when there is a
request there; with none at all, one open question about relevant experience is asked.
Unknown fields are kept under `metadata.extra_fields` (never silently dropped).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent import templates
from agent.languages import choose_language
from agent.plan import ScreeningPlan
from dialer.models import KnockoutQuestion, OpenQuestion, SessionInput

log = logging.getLogger("agent.web_interview")

TOPIC = "interview-metadata"
STARTABLE_STATUSES = frozenset({"READY_TO_JOIN", "IN_PROGRESS", "INVITED"})
PLACEHOLDER_NAMES = frozenset({"", "candidate", "kandidaat", "candidat", "kandidat", "guest"})


class WebInterviewError(ValueError):
    """The data message cannot start an interview; the message names the field."""


class WebInterviewMetadata(BaseModel):
    """The data message of `seeds/001_*` (camelCase, as the frontend sends it)."""

    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)

    interview_id: str = Field(alias="interviewId", min_length=1, max_length=128)
    candidate_id: str | None = Field(default=None, alias="candidateId")
    application_id: str | None = Field(default=None, alias="applicationId")
    job_post_id: str | None = Field(default=None, alias="jobPostId")
    job_title: str | None = Field(default=None, alias="jobTitle")
    company_name: str | None = Field(default=None, alias="companyName")
    participant_name: str | None = Field(default=None, alias="participantName")
    instructions: str | None = None
    max_duration: float | None = Field(default=None, alias="maxDuration", gt=0)
    status: str | None = None
    # Extensions.
    language: str | None = None
    knockout_questions: list[KnockoutQuestion | str] | None = Field(
        default=None, alias="knockoutQuestions"
    )
    open_questions: list[OpenQuestion | str] | None = Field(default=None, alias="openQuestions")
    questions: list[str] | None = None
    require_consent: bool | None = Field(default=None, alias="requireConsent")
    allow_escalation: bool | None = Field(default=None, alias="allowEscalation")
    timeslots: list[str] | None = None
    office_location: str | None = Field(default=None, alias="officeLocation")
    office_address: str | None = Field(default=None, alias="officeAddress")


def parse_message(payload: bytes | str) -> WebInterviewMetadata:
    """Decode and validate a data message; WebInterviewError names what is wrong."""
    try:
        body = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise WebInterviewError(f"interview metadata is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise WebInterviewError("interview metadata must be a JSON object")
    try:
        return WebInterviewMetadata.model_validate(body)
    except ValidationError as exc:
        raise WebInterviewError(_describe(exc)) from None


def to_plan(meta: WebInterviewMetadata, base: ScreeningPlan | None = None) -> ScreeningPlan:
    """The screening plan for a web interview; `base` is a plan from room metadata, if any."""
    status = (meta.status or "").strip().upper()
    if status and status not in STARTABLE_STATUSES:
        raise WebInterviewError(f"status: an interview in status {status} cannot be started")
    base_request = base.request if base is not None else None
    job_title = (meta.job_title or "").strip() or (base_request.job_title if base_request else "")
    if not job_title:
        raise WebInterviewError("jobTitle: required (no request in the room metadata either)")

    language = choose_language(meta.language, base.language if base else None)
    knockout = _knockout(meta, base_request)
    open_questions = _open(meta, base_request, language, job_title)
    name = (meta.participant_name or "").strip()
    if name.lower() in PLACEHOLDER_NAMES:
        name = base_request.candidate_name if base_request else ""

    fields: dict[str, Any] = {
        "call_id": meta.interview_id,
        "candidate_name": name,
        "job_title": job_title,
        "knockout_questions": knockout,
        "open_questions": open_questions,
    }
    if base_request is not None:
        fields |= {
            "candidate_known": base_request.candidate_known,
            "candidate_record": base_request.candidate_record,
            "office_location": base_request.office_location,
            "office_address": base_request.office_address,
            "allow_escalation": base_request.allow_escalation,
            "require_consent": base_request.require_consent,
        }
    for key, value in (
        ("require_consent", meta.require_consent),
        ("allow_escalation", meta.allow_escalation),
        ("office_location", meta.office_location),
        ("office_address", meta.office_address),
    ):
        if value is not None:
            fields[key] = value
    try:
        request = SessionInput.model_validate(fields)
    except ValidationError as exc:
        raise WebInterviewError(_describe(exc)) from None

    metadata: dict[str, Any] = {
        "source": "web_interview",
        "interviewId": meta.interview_id,
        **{
            key: value
            for key, value in (
                ("candidateId", meta.candidate_id),
                ("applicationId", meta.application_id),
                ("jobPostId", meta.job_post_id),
                ("companyName", meta.company_name),
            )
            if value
        },
    }
    if meta.model_extra:
        metadata["extra_fields"] = dict(meta.model_extra)

    guidelines = []
    if meta.company_name:
        guidelines.append(f"The employer is {meta.company_name}.")
    if meta.instructions:
        guidelines.append(meta.instructions.strip())
    timeslots = tuple(meta.timeslots) if meta.timeslots is not None else ()
    if not timeslots and base is not None:
        timeslots = base.timeslots

    plan = base or ScreeningPlan(request=request, language=language)
    return replace(
        plan,
        request=request,
        language=language,
        timeslots=timeslots,
        max_call_duration_s=meta.max_duration or plan.max_call_duration_s,
        participant_identity=None,
        recruiter_number=None,
        instructions="\n".join(guidelines),
        metadata={**(base.metadata if base else {}), **metadata},
        channel="web",
    )


class WebInterviewHandler:
    """Collects the first valid `interview-metadata` message of a room.

    `on_data` is what the worker calls for every data packet; it ignores other topics, keeps
    the first valid message (later ones are logged and ignored: an interview does not change
    underway), and records invalid ones in `errors` (the frontend may send a corrected one).
    Created with `hold=True`, it keeps messages until `release(base)` gives it the plan from
    the room / dispatch metadata (the worker listens before it has read that metadata).
    """

    def __init__(self, base: ScreeningPlan | None = None, *, hold: bool = False) -> None:
        self.base = base
        self.plan: ScreeningPlan | None = None
        self.errors: list[str] = []
        self._waiters: list[Callable[[ScreeningPlan], None]] = []
        self._held: list[bytes | str] | None = [] if hold else None

    def release(self, base: ScreeningPlan | None) -> bool:
        """Set the base plan and handle the messages held so far; True if one started it."""
        self.base = base
        held, self._held = self._held or [], None
        return any([self.on_data(payload, TOPIC) for payload in held])

    def on_participant(self, metadata: str, attributes: Mapping[str, str]) -> bool:
        """A participant's attribute `interview-metadata`, or its metadata when that is an
        interview-metadata object (it has `interviewId`); other metadata is not ours and is
        ignored. Returns True when this started the interview."""
        if attributes.get(TOPIC):
            return self.on_data(attributes[TOPIC], TOPIC)
        if metadata.strip() and _has_interview_id(metadata):
            return self.on_data(metadata, TOPIC)
        return False

    def on_data(self, payload: bytes | str, topic: str | None) -> bool:
        """Returns True when this packet started the interview. (The sender's identity is not
        logged: frontends put phone numbers in identities, as in seeds/001_*.)"""
        if topic != TOPIC:
            return False
        if self._held is not None:
            self._held.append(payload)
            return False
        if self.plan is not None:
            log.info("ignoring a further interview-metadata message")
            return False
        try:
            plan = to_plan(parse_message(payload), self.base)
        except WebInterviewError as exc:
            self.errors.append(str(exc))
            log.warning("invalid interview-metadata message: %s", exc)
            return False
        self.plan = plan
        for notify in self._waiters:
            notify(plan)
        self._waiters.clear()
        return True

    def subscribe(self, notify: Callable[[ScreeningPlan], None]) -> None:
        """`notify(plan)` once the interview can start (at once if it already can)."""
        if self.plan is not None:
            notify(self.plan)
        else:
            self._waiters.append(notify)


def _knockout(
    meta: WebInterviewMetadata, base: SessionInput | None
) -> list[dict[str, Any] | KnockoutQuestion]:
    if meta.knockout_questions is None:
        return list(base.knockout_questions) if base else []
    return [
        {"id": f"q{i}", "text": q} if isinstance(q, str) else q
        for i, q in enumerate(meta.knockout_questions, start=1)
    ]


def _open(
    meta: WebInterviewMetadata, base: SessionInput | None, language: str, job_title: str
) -> list[dict[str, Any] | OpenQuestion]:
    if meta.open_questions is not None:
        return [
            {"id": f"oq{i}", "text": q} if isinstance(q, str) else q
            for i, q in enumerate(meta.open_questions, start=1)
        ]
    if meta.questions:
        return [{"id": f"oq{i}", "text": q} for i, q in enumerate(meta.questions, start=1)]
    if base is not None and (base.open_questions or base.knockout_questions):
        return list(base.open_questions)
    if meta.knockout_questions:
        return []
    text, _ = templates.render(language, "default_open_question", job_title=job_title)
    return [{"id": "oq1", "text": text, "description": "Relevant experience"}]


def _has_interview_id(raw: str) -> bool:
    try:
        body = json.loads(raw)
    except ValueError:
        return False
    return isinstance(body, dict) and "interviewId" in body


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "message"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)
