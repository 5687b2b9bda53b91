"""The results consumer: one message per attempt in, the job's next step out.

For each `ResultMessage` (an agent's CandidateData or a dial outcome) it records the attempt,
releases the concurrency slot, applies the retry policy (`dialer.policy`, pure), and either
schedules the next dial in the due-set or produces the final CandidateData. Then it emits
`screening.attempt`, `screening.retry_scheduled` or `screening.completed`.

Idempotent by `(call_id, attempt)`: the state change is one checked transaction (the job must
still be dialing / in call on that attempt), so a redelivered message changes nothing; its side
effects (slot release, events with deterministic ids) are safe to run again, which is exactly
what makes a crash between the transaction and the side effects harmless.

A stale result (the job moved past that attempt without recording it, e.g. it was made final
while the call ran) still frees the attempt's concurrency slot, and goes to the dead-letter list
with the reason ("stale result: job is done on attempt 2"): nothing is dropped silently.

Receipts: a message that came through the results queue leaves `Keys.result_receipt` behind
whatever the verdict (recorded, duplicate, stale, a web interview's, or dead-lettered by the
task), written in the same round trip as the job's transition. The agent's publisher keeps a
copy of each result until that receipt exists and sends it again while it does not, because
kombu's Redis transport can lose a message (a worker killed between taking it off the queue and
recording it as unacknowledged). The receipt may precede the side effects: once the task runs,
its message is held unacknowledged by Celery and comes back if the worker dies. Dial outcomes
recorded in the dial task's own process (`DialService`, the reaper) need no receipt.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import redis

from dialer import events
from dialer.errors import InvalidTransition, JobNotFound
from dialer.keys import Keys
from dialer.messages import ResultMessage
from dialer.models import (
    AttemptRecord,
    CallingWindow,
    CandidateData,
    DialOutcome,
    JobState,
    RetryPolicy,
    ScreeningRequest,
    Status,
)
from dialer.phone import mask
from dialer.policy import RetryDecision, decide_retry
from dialer.scripts import ScriptCall, run_pipeline
from dialer.store import Change, Job, JobStore

log = logging.getLogger("dialer.results")

# `metadata.source` of results from web interviews (seeds/001_*), which have no dial job.
WEB_INTERVIEW = "web_interview"

ConsumeResult = Literal["retry_scheduled", "final", "duplicate", "stale"]

# Outcomes that are a conversation status (the agent's) rather than a dial outcome.
_STATUS_VALUES = {s.value for s in Status}

# How long a result's receipt is kept: far longer than the agent's publisher keeps an
# unconfirmed copy (DIALER_RESULT_GIVE_UP_S, a day by default).
RECEIPT_TTL_S = 7 * 86400


@dataclass(frozen=True)
class Consumed:
    call_id: str
    attempt: int
    result: ConsumeResult
    decision: RetryDecision | None = None
    final: CandidateData | None = None
    reason: str = ""  # why a stale result was dead-lettered


def parse_outcome(value: str) -> Status | DialOutcome:
    """A ResultMessage's outcome string as a Status or DialOutcome (ValueError if neither)."""
    if value in _STATUS_VALUES:
        return Status(value)
    return DialOutcome(value)


def final_result(
    job: Job,
    status: Status,
    attempts: list[AttemptRecord],
    now: datetime,
    *,
    last_result: CandidateData | None = None,
) -> CandidateData:
    """The final CandidateData: the latest conversation's data (if any) with the final status,
    every attempt, and the masked number."""
    base = last_result or job.last_result
    update: dict[str, Any] = {
        "status": status,
        "attempt": max(job.attempt, 1),
        "attempts": attempts,
        "phone_number": mask(job.phone_e164),
        "metadata": job.request.metadata,
    }
    if base is not None:
        return base.model_copy(update=update)
    return CandidateData(
        call_id=job.call_id,
        ended_at=now,
        language=job.request.language,
        **update,
    )


class ResultsConsumer:
    def __init__(
        self,
        store: JobStore,
        keys: Keys,
        sink: events.EventSink,
        *,
        release_slot: Callable[[str], None],
        add_to_dnc: Callable[[str], None],
        default_window: CallingWindow | None = None,
        default_policy: RetryPolicy | None = None,
        campaign_policy: Callable[[str | None], tuple[CallingWindow | None, RetryPolicy | None]]
        | None = None,
    ) -> None:
        self.store = store
        self.keys = keys
        self.sink = sink
        self.release_slot = release_slot
        self.add_to_dnc = add_to_dnc
        self.default_window = default_window or CallingWindow()
        self.default_policy = default_policy or RetryPolicy()
        self.campaign_policy = campaign_policy

    # -- policy lookup: job overrides campaign overrides defaults --------------------------------

    def window_for(self, job: Job) -> CallingWindow:
        return self.window_for_request(job.request)

    def window_for_request(self, request: ScreeningRequest) -> CallingWindow:
        if request.calling_window is not None:
            return request.calling_window
        if self.campaign_policy is not None:
            window, _ = self.campaign_policy(request.campaign_id)
            if window is not None:
                return window
        return self.default_window

    def policy_for(self, job: Job) -> RetryPolicy:
        if job.request.retry_policy is not None:
            return job.request.retry_policy
        if self.campaign_policy is not None:
            _, policy = self.campaign_policy(job.campaign_id)
            if policy is not None:
                return policy
        return self.default_policy

    # -- the consumer ----------------------------------------------------------------------------

    def consume(self, msg: ResultMessage, now: datetime, *, receipt: bool = True) -> Consumed:
        """Record `msg` (see the module's docstring). `receipt`: leave the receipt the agent's
        publisher waits for (messages from the results queue); a dial outcome recorded in the
        dial task's own process has no publisher waiting and passes False."""
        outcome = parse_outcome(msg.outcome)
        web = msg.result is not None and msg.result.metadata.get("source") == WEB_INTERVIEW
        if web and msg.result is not None and not self.store.exists(msg.call_id):
            # A web interview has no dial job: its one result is final as it stands.
            self.emit_completed(msg.result, msg.at)
            if receipt:
                self.write_receipt(msg.call_id, msg.attempt)
            return Consumed(msg.call_id, msg.attempt, "final", final=msg.result)
        job = self.store.get(msg.call_id)  # JobNotFound propagates: the caller dead-letters
        record = AttemptRecord(
            attempt=msg.attempt,
            at=msg.at,
            outcome=outcome.value,
            sip_status_code=msg.sip_status_code,
            duration_s=msg.duration_s,
            detail=msg.detail,
        )
        counts = outcome not in (DialOutcome.THROTTLED, DialOutcome.TRANSIENT)
        counted = job.counted_attempts + (1 if counts else 0)
        history = [*job.outcome_history, outcome.value]
        decision = decide_retry(
            outcome,
            counted_attempts=counted,
            max_attempts=job.max_attempts,
            outcome_history=list(job.outcome_history),
            policy=self.policy_for(job),
            now=now,
            window=self.window_for(job),
            zones=job.zones,
            expires_at=job.request.expires_at,
        )
        if job.cancel_requested and not decision.final:
            decision = RetryDecision(
                final=True,
                final_status=Status.CANCELLED,
                retry_at=None,
                counts_as_attempt=decision.counts_as_attempt,
                resume=False,
                reason="cancelled while the call was in progress",
            )
        agent_result = msg.result
        last_result = agent_result if agent_result is not None else job.last_result
        attempts = [*self.store.attempts(job.call_id), record]
        fields: dict[str, str] = {
            "counted_attempts": str(counted),
            "outcome_history": json.dumps(history),
            "dial_stage": "recorded",
            "detail": decision.reason,
            f"recorded:{msg.attempt}": "1",
        }
        if agent_result is not None:
            fields["last_result"] = agent_result.model_dump_json()
        final: CandidateData | None = None
        if decision.final:
            assert decision.final_status is not None
            final = final_result(job, decision.final_status, attempts, now, last_result=last_result)
            fields["final_status"] = decision.final_status.value
            fields["final_result"] = final.model_dump_json()
            change = Change(fields=fields, attempt_record=record)
            to = JobState.DONE
        else:
            assert decision.retry_at is not None
            change = Change(fields=fields, attempt_record=record, due_at=decision.retry_at)
            to = JobState.RETRY_SCHEDULED
        steps: list[ScriptCall | tuple[str, tuple[Any, ...]]] = [
            self.store.transition_call(
                msg.call_id,
                to,
                now=now,
                allowed_from=(JobState.DIALING, JobState.IN_CALL),
                expect_attempt=msg.attempt,
                change=change,
            )
        ]
        if receipt:  # in the same round trip, whatever the transition's verdict
            steps.append(self.receipt_command(msg.call_id, msg.attempt))
        replies = run_pipeline(self.store.r, steps)
        try:
            self.store.check_transition(msg.call_id, to, msg.attempt, replies[0])
        except InvalidTransition:
            current = self.store.get(msg.call_id)
            if current.raw.get(f"recorded:{msg.attempt}") == "1":
                self._side_effects(current, msg, None, current.final_result, now)
                return Consumed(msg.call_id, msg.attempt, "duplicate")
            return self._stale(current, msg, now)
        self._side_effects(job, msg, decision, final, now)
        return Consumed(
            msg.call_id,
            msg.attempt,
            "final" if decision.final else "retry_scheduled",
            decision=decision,
            final=final,
        )

    def receipt_command(self, call_id: str, attempt: int) -> tuple[str, tuple[Any, ...]]:
        """The command that leaves the receipt of `(call_id, attempt)`, for a pipeline."""
        return ("SET", (self.keys.result_receipt(call_id, attempt), "1", "EX", RECEIPT_TTL_S))

    def write_receipt(self, call_id: str, attempt: int) -> None:
        """Leave the receipt of a result message handled without a transition (a web
        interview's, one the task dead-lettered)."""
        self.store.r.set(self.keys.result_receipt(call_id, attempt), "1", ex=RECEIPT_TTL_S)

    def _stale(self, current: Job, msg: ResultMessage, now: datetime) -> Consumed:
        """The job is past this attempt and never recorded it: free the attempt's slot (it is
        its own member, so a later attempt's slot is untouched) and keep the message, with why,
        in the dead-letter list for an operator."""
        reason = f"stale result: job is {current.state.value} on attempt {current.attempt}"
        self.release_slot(f"{msg.call_id}:{msg.attempt}")
        # The store's client: the dead letters live in the same Redis as the jobs.
        dead_letter(self.store.r, self.keys, "results", msg.model_dump(mode="json"), reason, now)
        log.warning("result %s attempt %d dead-lettered: %s", msg.call_id, msg.attempt, reason)
        return Consumed(msg.call_id, msg.attempt, "stale", reason=reason)

    def _side_effects(
        self,
        job: Job,
        msg: ResultMessage,
        decision: RetryDecision | None,
        final: CandidateData | None,
        now: datetime,
    ) -> None:
        """Idempotent follow-ups; re-run in full when a duplicate message arrives.

        Events are emitted at the consumer's `now`, not at the message's `at`: the deliveries
        they create are scheduled on this clock, and `at` comes from another process (the
        agent's host, or a result spooled while Redis was away). A delivery stamped ahead of
        the webhook task's clock was skipped as not yet due and waited for the beat."""
        self.release_slot(f"{msg.call_id}:{msg.attempt}")
        if msg.result is not None and msg.result.do_not_call_requested:
            self.add_to_dnc(job.phone_e164)
        self.sink.emit(
            events.ATTEMPT,
            {
                "call_id": msg.call_id,
                "attempt": msg.attempt,
                "outcome": msg.outcome,
                "sip_status_code": msg.sip_status_code,
                "at": msg.at.isoformat(),
                "campaign_id": job.campaign_id,
            },
            event_id=events.event_id(msg.call_id, msg.attempt, events.ATTEMPT),
            now=now,
        )
        if decision is None:
            # Duplicate: the first delivery decided; re-emit what it decided.
            current = self.store.get(msg.call_id)
            if current.state is JobState.DONE and current.final_result is not None:
                final = current.final_result
            elif current.next_at is not None and current.attempt == msg.attempt:
                self._emit_retry(current, msg.attempt, current.next_at, current.detail, now)
        elif not decision.final and decision.retry_at is not None:
            self._emit_retry(job, msg.attempt, decision.retry_at, decision.reason, now)
        if final is not None:
            self.emit_completed(final, now)

    def _emit_retry(
        self, job: Job, attempt: int, when: datetime, reason: str, now: datetime
    ) -> None:
        self.sink.emit(
            events.RETRY_SCHEDULED,
            {
                "call_id": job.call_id,
                "attempt": attempt,
                "next_attempt": attempt + 1,
                "retry_at": when.isoformat(),
                "reason": reason,
                "campaign_id": job.campaign_id,
            },
            event_id=events.event_id(job.call_id, attempt, events.RETRY_SCHEDULED),
            now=now,
        )

    def emit_completed(self, final: CandidateData, now: datetime) -> None:
        self.sink.emit(
            events.COMPLETED,
            final.model_dump(mode="json"),
            event_id=events.event_id(final.call_id, final.attempt, events.COMPLETED),
            now=now,
        )

    # -- finals decided without a call (intake / dial gates / cancel) ----------------------------

    def finish_without_call(
        self,
        call_id: str,
        status: Status,
        now: datetime,
        *,
        detail: str,
        allowed_from: tuple[JobState, ...] = (
            JobState.QUEUED,
            JobState.SCHEDULED,
            JobState.RETRY_SCHEDULED,
            JobState.DIALING,
        ),
        expect_attempt: int | None = None,
    ) -> CandidateData | None:
        """Make the job final with `status` (do_not_call, failed, cancelled, expired) and emit
        `screening.completed`. Returns None if the job had already moved on."""
        try:
            job = self.store.get(call_id)
            attempts = self.store.attempts(call_id)
            final = final_result(job, status, attempts, now)
            self.store.transition(
                call_id,
                JobState.DONE,
                now=now,
                allowed_from=allowed_from,
                expect_attempt=expect_attempt,
                change=Change(
                    fields={
                        "final_status": status.value,
                        "final_result": final.model_dump_json(),
                        "detail": detail,
                    }
                ),
            )
        except (InvalidTransition, JobNotFound):
            return None
        self.emit_completed(final, now)
        return final


def dead_letter(
    client: redis.Redis, keys: Keys, source: str, payload: Any, reason: str, now: datetime
) -> None:
    """Keep a message that could not be processed, with why, for an operator to inspect."""
    try:
        body = payload if isinstance(payload, str) else json.dumps(payload, default=str)
    except (TypeError, ValueError):
        body = repr(payload)
    client.rpush(
        keys.dead_letters,
        json.dumps({"source": source, "reason": reason, "payload": body, "at": now.isoformat()}),
    )
