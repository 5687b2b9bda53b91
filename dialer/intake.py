"""Intake: validate a screening request, normalise it, store the job and schedule its first dial.

Every refusal names the field and the reason and is kept in the rejected list (`Keys.rejected`)
with the payload, so nothing is silently dropped. Re-submitting an existing `call_id` with the
same payload returns the same job; a different payload is a `JobConflict`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pydantic
import redis

from dialer.errors import FieldProblem, JobConflict, ValidationFailed
from dialer.keys import Keys
from dialer.models import FieldError, JobState, RejectedRow, ScreeningRequest, Status
from dialer.phone import InvalidPhoneNumber, normalize
from dialer.results import ResultsConsumer
from dialer.store import Change, JobStore, payload_fingerprint
from dialer.windows import NoCommonOpening, candidate_zones, next_opening


@dataclass(frozen=True)
class Submitted:
    call_id: str
    created: bool  # False: the same request was already submitted
    state: JobState
    final_status: Status | None
    dial_at: datetime | None


def problems_from_pydantic(exc: pydantic.ValidationError) -> list[FieldProblem]:
    problems = []
    for err in exc.errors():
        loc = ".".join(str(part) for part in err["loc"]) or "(request)"
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = "unknown field (check the spelling; free-form data belongs in `metadata`)"
        elif err["type"] == "missing":
            message = "required field is missing"
        problems.append(FieldProblem(loc, message))
    return problems


def parse_request(payload: Mapping[str, Any] | ScreeningRequest) -> ScreeningRequest:
    """Validate a payload as a ScreeningRequest or raise ValidationFailed naming each field."""
    if isinstance(payload, ScreeningRequest):
        return payload
    if not isinstance(payload, Mapping):
        raise ValidationFailed([FieldProblem("(request)", "must be a JSON object")])
    try:
        return ScreeningRequest.model_validate(dict(payload))
    except pydantic.ValidationError as exc:
        raise ValidationFailed(problems_from_pydantic(exc)) from None


class Intake:
    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        store: JobStore,
        consumer: ResultsConsumer,
        *,
        is_dnc: Any,
        default_max_attempts: int = 3,
    ) -> None:
        self.r = client
        self.keys = keys
        self.store = store
        self.consumer = consumer
        self.is_dnc = is_dnc
        self.default_max_attempts = default_max_attempts

    def reject(
        self, source: str, payload: Any, problems: list[FieldProblem], now: datetime
    ) -> None:
        if isinstance(payload, ScreeningRequest):
            kept: dict[str, Any] | str = payload.model_dump(mode="json")
        elif isinstance(payload, Mapping):
            kept = json.loads(json.dumps(dict(payload), default=str))
        else:
            kept = str(payload)[:10_000]
        row = RejectedRow(
            source=source,
            errors=[FieldError(field=p.field, message=p.message) for p in problems],
            payload=kept,
            at=now,
        )
        self.r.rpush(self.keys.rejected, row.model_dump_json())

    def submit(
        self, payload: Mapping[str, Any] | ScreeningRequest, now: datetime, *, source: str = "api"
    ) -> Submitted:
        """Validate, store and schedule one request. Raises ValidationFailed / JobConflict."""
        try:
            request = parse_request(payload)
            number = self._normalise_phone(request)
            zones = self._zones(request, number.timezones)
            dial_at = self._first_opening(request, zones, now)
        except ValidationFailed as exc:
            self.reject(source, payload, exc.problems, now)
            raise
        normalised = request.model_copy(update={"phone_number": number.e164})
        raw = payload.model_dump(mode="json") if isinstance(payload, ScreeningRequest) else payload
        try:
            job, created = self.store.create(
                normalised,
                fingerprint=payload_fingerprint(raw),
                phone_e164=number.e164,
                zones=zones,
                max_attempts=request.max_attempts or self.default_max_attempts,
                now=now,
            )
        except JobConflict as exc:
            self.reject(source, payload, [FieldProblem("call_id", str(exc))], now)
            raise
        if not created:
            return Submitted(job.call_id, False, job.state, job.final_status, job.next_at)
        return self._schedule_first(job.call_id, normalised, dial_at, now)

    def _normalise_phone(self, request: ScreeningRequest) -> Any:
        try:
            return normalize(request.phone_number, request.region)
        except InvalidPhoneNumber as exc:
            raise ValidationFailed([FieldProblem("phone_number", str(exc))]) from None

    def _zones(self, request: ScreeningRequest, number_zones: tuple[str, ...]) -> tuple[str, ...]:
        try:
            return tuple(candidate_zones(request.timezone, number_zones))
        except ValueError as exc:
            raise ValidationFailed([FieldProblem("timezone", str(exc))]) from None

    def _first_opening(
        self, request: ScreeningRequest, zones: tuple[str, ...], now: datetime
    ) -> datetime:
        earliest = max(now, request.not_before) if request.not_before else now
        window = self.consumer.window_for_request(request)
        try:
            return next_opening(window, zones, earliest)
        except NoCommonOpening as exc:
            raise ValidationFailed(
                [
                    FieldProblem(
                        "timezone",
                        f"{exc}; the number spans time zones ({', '.join(zones[:4])}, ...) with "
                        "no common calling hours: set `timezone` to the candidate's zone",
                    )
                ]
            ) from None

    def _schedule_first(
        self, call_id: str, request: ScreeningRequest, dial_at: datetime, now: datetime
    ) -> Submitted:
        if self.is_dnc(request.phone_number):
            self.consumer.finish_without_call(
                call_id, Status.DO_NOT_CALL, now, detail="number is on the do-not-call list"
            )
            return Submitted(call_id, True, JobState.DONE, Status.DO_NOT_CALL, None)
        if request.expires_at is not None and dial_at >= request.expires_at:
            self.consumer.finish_without_call(
                call_id,
                Status.EXPIRED,
                now,
                detail="no calling window opens before expires_at "
                f"{request.expires_at:%Y-%m-%d %H:%M %z}",
            )
            return Submitted(call_id, True, JobState.DONE, Status.EXPIRED, None)
        waiting = dial_at > max(now, request.not_before or now)
        self.store.transition(
            call_id,
            JobState.SCHEDULED,
            now=now,
            allowed_from=(JobState.QUEUED,),
            change=Change(
                due_at=dial_at,
                fields={"detail": "waiting for the calling window" if waiting else "due"},
            ),
        )
        return Submitted(call_id, True, JobState.SCHEDULED, None, dial_at)
