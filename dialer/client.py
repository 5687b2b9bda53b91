"""The Python API a backend uses: submit, submit_many, status, cancel.

    from dialer import Dialer
    dialer = Dialer.from_env()              # REDIS_URL, or an embedded Redis for local use
    call_id = dialer.submit({...})          # ValidationFailed / JobConflict on bad input
    dialer.status(call_id).state            # "scheduled", ..., "done"

Submission validates synchronously (the caller sees every field problem at once) and schedules
the job; Celery workers and beat do the rest.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dialer.errors import DialerError, FieldProblem, JobConflict, ValidationFailed
from dialer.models import AttemptRecord, CandidateData, JobState, ScreeningRequest, Status
from dialer.phone import mask
from dialer.runtime import Runtime
from dialer.settings import Settings


@dataclass(frozen=True)
class JobStatus:
    call_id: str
    state: JobState
    final_status: Status | None
    attempt: int
    max_attempts: int
    next_at: datetime | None
    detail: str
    phone_number: str  # masked
    campaign_id: str | None
    attempts: list[AttemptRecord]
    result: CandidateData | None


@dataclass(frozen=True)
class RowError:
    index: int
    call_id: str | None
    problems: list[FieldProblem]


@dataclass(frozen=True)
class BatchReport:
    accepted: list[str]
    duplicates: list[str]
    errors: list[RowError]


class Dialer:
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime

    @classmethod
    def from_env(cls, settings: Settings | None = None) -> Dialer:
        return cls(Runtime.from_settings(settings))

    def submit(
        self, request: Mapping[str, Any] | ScreeningRequest, *, source: str = "python"
    ) -> str:
        """Validate, store and schedule one request; returns its call_id."""
        return self.rt.intake.submit(request, self.rt.clock.now(), source=source).call_id

    def submit_many(
        self, requests: Iterable[Mapping[str, Any] | ScreeningRequest], *, source: str = "python"
    ) -> BatchReport:
        """Submit many; a bad row is reported (and kept in the rejected list), never fatal."""
        accepted: list[str] = []
        duplicates: list[str] = []
        errors: list[RowError] = []
        for index, request in enumerate(requests):
            call_id = (
                request.call_id if isinstance(request, ScreeningRequest) else request.get("call_id")
            )
            try:
                result = self.rt.intake.submit(
                    request, self.rt.clock.now(), source=f"{source}:{index}"
                )
            except ValidationFailed as exc:
                errors.append(RowError(index, str(call_id) if call_id else None, exc.problems))
                continue
            except JobConflict as exc:
                errors.append(RowError(index, str(call_id), [FieldProblem("call_id", str(exc))]))
                continue
            (accepted if result.created else duplicates).append(result.call_id)
        return BatchReport(accepted, duplicates, errors)

    def status(self, call_id: str) -> JobStatus:
        job = self.rt.store.get(call_id)
        return JobStatus(
            call_id=job.call_id,
            state=job.state,
            final_status=job.final_status,
            attempt=job.attempt,
            max_attempts=job.max_attempts,
            next_at=job.next_at if job.state is not JobState.DONE else None,
            detail=job.detail,
            phone_number=mask(job.phone_e164),
            campaign_id=job.campaign_id,
            attempts=self.rt.store.attempts(call_id),
            result=job.final_result,
        )

    def cancel(self, call_id: str) -> JobStatus:
        """Cancel a job. Not yet dialing: final `cancelled` now. Dialing or in a call: the call
        finishes, and no retry follows (final `cancelled` unless the call itself was final)."""
        job = self.rt.store.get(call_id)
        if job.state in (JobState.QUEUED, JobState.SCHEDULED, JobState.RETRY_SCHEDULED):
            done = self.rt.consumer.finish_without_call(
                call_id,
                Status.CANCELLED,
                self.rt.clock.now(),
                detail="cancelled",
                allowed_from=(JobState.QUEUED, JobState.SCHEDULED, JobState.RETRY_SCHEDULED),
            )
            if done is None:  # it started dialing meanwhile
                self.rt.store.request_cancel(call_id)
        elif job.state is not JobState.DONE:
            self.rt.store.request_cancel(call_id)
        return self.status(call_id)


__all__ = ["BatchReport", "Dialer", "DialerError", "JobStatus", "RowError"]
