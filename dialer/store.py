"""The job store: one Redis hash per `call_id`, with atomic, checked state transitions.

Every transition is one Lua script (`dialer/lua/job_transition.lua`) that reads the job, checks
that it is still in an allowed state (and on the expected attempt), then writes the new state, the
state index sets and the due-set entry together: atomic, and one round trip. A stale or
redelivered task that finds the job past its step gets `InvalidTransition` and does nothing.

State machine (DESIGN section 4):

    queued -> scheduled -> dialing -> in_call -> done
                  ^           |          |
                  |           v          v
                  +---- retry_scheduled -+
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis

from dialer import scripts
from dialer.errors import InvalidTransition, JobConflict, JobNotFound
from dialer.keys import Keys
from dialer.models import AttemptRecord, CandidateData, JobState, ScreeningRequest, Status

ALLOWED: dict[JobState, frozenset[JobState]] = {
    JobState.QUEUED: frozenset({JobState.SCHEDULED, JobState.DONE}),
    JobState.SCHEDULED: frozenset({JobState.SCHEDULED, JobState.DIALING, JobState.DONE}),
    JobState.RETRY_SCHEDULED: frozenset(
        {JobState.RETRY_SCHEDULED, JobState.DIALING, JobState.DONE}
    ),
    JobState.DIALING: frozenset(
        {
            JobState.IN_CALL,
            JobState.RETRY_SCHEDULED,
            JobState.SCHEDULED,  # dial put back (no free slot / window closed) before dialing
            JobState.DONE,
        }
    ),
    JobState.IN_CALL: frozenset({JobState.RETRY_SCHEDULED, JobState.DONE}),
    JobState.DONE: frozenset(),
}


def payload_fingerprint(payload: Mapping[str, Any]) -> str:
    """Stable hash of a submitted payload, to tell a re-submission from a conflicting one."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _redis_mapping(fields: Mapping[str, str]) -> Any:
    """redis-py types `hset(mapping=...)` with an invariant key union; plain str keys are fine."""
    return dict(fields)


def _ts(when: datetime) -> str:
    return when.astimezone(UTC).isoformat()


@dataclass(frozen=True)
class Job:
    """A read-only view of the job hash."""

    call_id: str
    state: JobState
    request: ScreeningRequest
    fingerprint: str
    phone_e164: str
    zones: tuple[str, ...]
    created_at: datetime
    updated_at: datetime
    attempt: int  # dial number of the latest (or current) dial; 0 before the first
    counted_attempts: int  # dials that count against max_attempts
    max_attempts: int
    next_at: datetime | None
    dial_stage: str
    dial_owner: str
    final_status: Status | None
    outcome_history: tuple[str, ...]
    last_result: CandidateData | None
    final_result: CandidateData | None
    cancel_requested: bool
    campaign_id: str | None
    detail: str
    raw: Mapping[str, str] = field(repr=False, default_factory=dict)

    @classmethod
    def from_hash(cls, data: Mapping[str, str]) -> Job:
        def _dt(name: str) -> datetime | None:
            value = data.get(name)
            return datetime.fromisoformat(value) if value else None

        def _cd(name: str) -> CandidateData | None:
            value = data.get(name)
            return CandidateData.model_validate_json(value) if value else None

        final = data.get("final_status")
        created = _dt("created_at")
        assert created is not None
        return cls(
            call_id=data["call_id"],
            state=JobState(data["state"]),
            request=ScreeningRequest.model_validate_json(data["request"]),
            fingerprint=data.get("fingerprint", ""),
            phone_e164=data["phone_e164"],
            zones=tuple(json.loads(data.get("zones", "[]"))),
            created_at=created,
            updated_at=_dt("updated_at") or created,
            attempt=int(data.get("attempt", "0")),
            counted_attempts=int(data.get("counted_attempts", "0")),
            max_attempts=int(data.get("max_attempts", "3")),
            next_at=_dt("next_at"),
            dial_stage=data.get("dial_stage", ""),
            dial_owner=data.get("dial_owner", ""),
            final_status=Status(final) if final else None,
            outcome_history=tuple(json.loads(data.get("outcome_history", "[]"))),
            last_result=_cd("last_result"),
            final_result=_cd("final_result"),
            cancel_requested=data.get("cancel_requested") == "1",
            campaign_id=data.get("campaign_id") or None,
            detail=data.get("detail", ""),
            raw=dict(data),
        )

    @property
    def next_attempt(self) -> int:
        return self.attempt + 1


@dataclass
class Change:
    """What a transition writes, besides the new state."""

    fields: dict[str, str] = field(default_factory=dict)
    due_at: datetime | None = None  # add/replace the due-set entry
    clear_due: bool = False
    attempt_record: AttemptRecord | None = None


JOB_LIBRARY = ("_job",)


class JobStore:
    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.r = client
        self.keys = keys
        self._transition = scripts.register(client, "job_transition", JOB_LIBRARY)

    # -- reads ---------------------------------------------------------------------------------

    def get(self, call_id: str) -> Job:
        data: dict[str, str] = self.r.hgetall(self.keys.job(call_id))  # type: ignore[assignment]
        if not data:
            raise JobNotFound(f"no job with call_id {call_id!r}")
        return Job.from_hash(data)

    def exists(self, call_id: str) -> bool:
        return bool(self.r.exists(self.keys.job(call_id)))

    def attempts(self, call_id: str) -> list[AttemptRecord]:
        raw: list[str] = self.r.lrange(self.keys.attempts(call_id), 0, -1)  # type: ignore[assignment]
        return [AttemptRecord.model_validate_json(item) for item in raw]

    def count_by_state(self) -> dict[str, int]:
        pipe = self.r.pipeline(transaction=False)
        for state in JobState:
            pipe.scard(self.state_index(state.value))
        counts = pipe.execute()
        return {state.value: int(n) for state, n in zip(JobState, counts, strict=True)}

    def count_by_status(self) -> dict[str, int]:
        pipe = self.r.pipeline(transaction=False)
        for status in Status:
            pipe.scard(self.status_index(status.value))
        counts = pipe.execute()
        return {s.value: int(n) for s, n in zip(Status, counts, strict=True) if int(n)}

    def state_index(self, state: str) -> str:
        return f"{self.keys.prefix}:state:{state}"

    def status_index(self, status: str) -> str:
        return f"{self.keys.prefix}:status:{status}"

    def list_ids(
        self, *, campaign_id: str | None = None, offset: int = 0, limit: int = 20
    ) -> list[str]:
        key = self.keys.campaign_jobs(campaign_id) if campaign_id else self.keys.jobs_index
        ids: list[str] = self.r.zrange(key, offset, offset + limit - 1)  # type: ignore[assignment]
        return ids

    # -- create --------------------------------------------------------------------------------

    def create(
        self,
        request: ScreeningRequest,
        *,
        fingerprint: str,
        phone_e164: str,
        zones: Iterable[str],
        max_attempts: int,
        now: datetime,
    ) -> tuple[Job, bool]:
        """Create the job in state `queued`. Returns (job, created).

        Re-submitting the same payload returns the existing job (created=False); a different
        payload under the same call_id raises JobConflict.
        """
        key = self.keys.job(request.call_id)
        mapping = {
            "call_id": request.call_id,
            "state": JobState.QUEUED.value,
            "request": request.model_dump_json(),
            "fingerprint": fingerprint,
            "phone_e164": phone_e164,
            "zones": json.dumps(list(zones)),
            "created_at": _ts(now),
            "updated_at": _ts(now),
            "attempt": "0",
            "counted_attempts": "0",
            "max_attempts": str(max_attempts),
            "campaign_id": request.campaign_id or "",
            "outcome_history": "[]",
        }
        with self.r.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(key)  # type: ignore[no-untyped-call]
                    existing: dict[str, str] = pipe.hgetall(key)  # type: ignore[assignment]
                    if existing:
                        pipe.unwatch()
                        job = Job.from_hash(existing)
                        if job.fingerprint != fingerprint:
                            raise JobConflict(
                                f"call_id {request.call_id!r} was already submitted with a "
                                "different payload; submit the changed request under a new call_id"
                            )
                        return job, False
                    pipe.multi()
                    pipe.hset(key, mapping=_redis_mapping(mapping))
                    pipe.sadd(self.state_index(JobState.QUEUED.value), request.call_id)
                    pipe.zadd(self.keys.jobs_index, {request.call_id: now.timestamp()})
                    if request.campaign_id:
                        pipe.zadd(
                            self.keys.campaign_jobs(request.campaign_id),
                            {request.call_id: now.timestamp()},
                        )
                        pipe.sadd(self.keys.campaigns, request.campaign_id)
                    pipe.execute()
                    break
                except redis.WatchError:
                    continue
        return self.get(request.call_id), True

    # -- transitions ---------------------------------------------------------------------------

    def transition(
        self,
        call_id: str,
        to: JobState,
        *,
        now: datetime,
        allowed_from: Iterable[JobState] | None = None,
        expect_attempt: int | None = None,
        change: Change | None = None,
    ) -> None:
        """Move the job to `to` if it is in an allowed state (and on `expect_attempt`).

        Raises JobNotFound, or InvalidTransition when the job is elsewhere (nothing written)."""
        call = self.transition_call(
            call_id,
            to,
            now=now,
            allowed_from=allowed_from,
            expect_attempt=expect_attempt,
            change=change,
        )
        reply = call.script(keys=list(call.keys), args=list(call.args), client=self.r)
        self.check_transition(call_id, to, expect_attempt, reply)

    def transition_call(
        self,
        call_id: str,
        to: JobState,
        *,
        now: datetime,
        allowed_from: Iterable[JobState] | None = None,
        expect_attempt: int | None = None,
        change: Change | None = None,
    ) -> scripts.ScriptCall:
        """`transition` as a script call, to send in a pipeline with other steps; pass its
        reply to `check_transition`."""
        change = change or Change()
        sources = [
            state.value
            for state in (allowed_from if allowed_from is not None else JobState)
            if to in ALLOWED[state]
        ]
        fields: list[str] = ["updated_at", _ts(now)]
        for name, value in change.fields.items():
            fields += [name, value]
        due_score = next_at = ""
        if change.due_at is not None:
            due_score, next_at = repr(change.due_at.timestamp()), _ts(change.due_at)
        return scripts.ScriptCall(
            self._transition,
            [self.keys.job(call_id), self.keys.due, self.keys.attempts(call_id)],
            [
                call_id,
                to.value,
                " ".join(sources),
                "" if expect_attempt is None else str(expect_attempt),
                self.keys.prefix,
                due_score,
                next_at,
                "1" if change.clear_due else "",
                change.attempt_record.model_dump_json() if change.attempt_record else "",
                change.fields.get("final_status", ""),
                *fields,
            ],
        )

    @staticmethod
    def check_transition(
        call_id: str, to: JobState, expect_attempt: int | None, reply: Any
    ) -> None:
        """Raise what a refused `transition_call` means (see job_transition.lua's replies)."""
        verdict = [scripts.reply_text(part) for part in reply]
        if verdict[0] == "ok":
            return
        if verdict[0] == "missing":
            raise JobNotFound(f"no job with call_id {call_id!r}")
        state, attempt, why = verdict[1], verdict[2], verdict[3]
        if why == "attempt":
            raise InvalidTransition(f"{call_id}: on attempt {attempt}, not {expect_attempt}")
        raise InvalidTransition(f"{call_id}: cannot go from {state} to {to.value}")

    def set_fields(self, call_id: str, fields: Mapping[str, str]) -> None:
        """Annotate the job without changing its state (dial stage, detail)."""
        self.r.hset(self.keys.job(call_id), mapping=_redis_mapping(fields))

    def request_cancel(self, call_id: str) -> None:
        self.r.hset(self.keys.job(call_id), "cancel_requested", "1")
