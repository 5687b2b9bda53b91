"""Placing one dial: the gates, in order, then LiveKit.

Gates (DESIGN section 5, issue 2): cancelled -> do-not-call -> calling window still open (and
the job not expired) -> circuit breaker -> attempt lock `SET dial:{call_id}:{attempt} NX` ->
calls-per-second pacing (GCRA, shared by every worker) -> concurrency slot with a lease. Then
CreateRoom -> CreateDispatch -> CreateSIPParticipant through `LiveKitDialer`.

No double dial: the attempt lock holds the id of the Celery message that owns the attempt. A
second message for the same attempt (duplicate send, second worker) finds the lock taken by
someone else and does nothing. The *same* message delivered again (its worker was killed) finds
its own id and recovers from the stage it recorded: before the dial request it may dial; after it
it only asks LiveKit whether the call is there and never dials that attempt again.

A dial that ends without a conversation (busy, no answer, failed, ...) records its outcome in
this process, through the results consumer (`ResultsConsumer.consume`), not through the results
queue: kombu's Redis transport can lose a queued message, and a lost dial outcome left the job
`dialing` for good (its slot already released, so the reaper never saw it). The outcome is first
written into the job hash (`dial_outcome`, `dial_sip_status_code`, `dial_detail`, with
`dial_stage = "finished"`), so a delivery of the same message after the worker died records it
from there.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import redis

from dialer import metrics
from dialer.campaigns import PAUSED_RECHECK_S, CampaignStore
from dialer.errors import (
    CallNotConnected,
    DialError,
    InvalidTransition,
    JobNotFound,
    PermanentDialError,
    ThrottledError,
)
from dialer.keys import Keys
from dialer.limiter import CircuitBreaker, ConcurrencySlots, InviteGate, RedisPacer
from dialer.livekit_dialer import STAGE_ROOM, STAGE_SIP, DialAnswered, DialPlan, LiveKitDialer
from dialer.liveness import LiveMarker
from dialer.messages import (
    PHONE_PARTICIPANT_IDENTITY,
    DialContext,
    ResultMessage,
    ResumeState,
    build_dispatch_metadata,
)
from dialer.models import DialOutcome, JobState, Status
from dialer.phone import mask
from dialer.policy import expiry_status, leave_voicemail
from dialer.results import ResultsConsumer
from dialer.scripts import ScriptCall, register, reply_text, run_pipeline
from dialer.settings import Settings
from dialer.store import JOB_LIBRARY, Change, Job, JobStore
from dialer.windows import is_open, next_opening

log = logging.getLogger("dialer.dial")

DialResult = Literal[
    "answered",
    "not_connected",
    "rescheduled",
    "finished",
    "duplicate",
    "stale",
    "in_call",
    "deferred",
]

# Seconds to wait before trying again when every concurrency slot is busy.
SLOT_RETRY_S = 2.0
# How long a dial task may wait for its pacing turn before handing the job back to the due-set.
PACING_WAIT_S = 30.0
# A delivery working on an attempt refreshes its live marker every third of this; a copy of
# the message waits this long at most after the delivery's process died before recovering.
LIVE_MARKER_TTL_S = 10.0
# The attempt lock outlives any retry of the same message by far.
ATTEMPT_LOCK_TTL_S = 7 * 86400
# How long a dial that has ended waits for Redis to take its outcome (a restart, a failover).
OUTCOME_WRITE_WAIT_S = 30.0
REDIS_BLIP: tuple[type[Exception], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
)


class AttemptInProgress(Exception):
    """Another delivery of the same message is dialing this attempt right now (kombu handed the
    message back while its first delivery ran on). The task puts this copy back on the queue;
    it finds the attempt finished next time, or recovers it if the first delivery died."""

    def __init__(self, call_id: str, attempt: int) -> None:
        super().__init__(f"{call_id} attempt {attempt} is being dialed by a live delivery")
        self.call_id = call_id
        self.attempt = attempt


class NotDialedYet(Exception):
    """No pacing turn within PACING_WAIT_S, or no free call slot: raised before any INVITE is
    sent, so the job goes back to the due-set for `retry_s` seconds."""

    def __init__(self, why: str, *, retry_s: float = 1.0) -> None:
        super().__init__(why)
        self.retry_s = retry_s


@dataclass(frozen=True)
class DialReport:
    call_id: str
    attempt: int
    result: DialResult
    outcome: DialOutcome | None = None
    detail: str = ""


def room_name(call_id: str, attempt: int) -> str:
    return f"screening-{call_id}-{attempt}"


class DialService:
    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        store: JobStore,
        consumer: ResultsConsumer,
        dialer: LiveKitDialer,
        settings: Settings,
        *,
        clock: Callable[[], datetime],
        on_outcome: Callable[[ResultMessage], None] | None = None,
    ) -> None:
        """`clock` is read when an outcome is recorded (a retry counts from the dial's end,
        not from the task's start); `on_outcome` is told of every dial outcome once the
        consumer has recorded it."""
        self.r = client
        self.clock = clock
        self.keys = keys
        self.store = store
        self.consumer = consumer
        self.dialer = dialer
        self.settings = settings
        self.on_outcome = on_outcome
        trunk = settings.sip_trunk_id or "default"
        self.trunk = trunk
        self.pacer = RedisPacer(
            client, keys, trunk, settings.calls_per_second, headroom=settings.pacing_headroom
        )
        self.slots = ConcurrencySlots(client, keys, trunk, settings.max_concurrent_calls)
        self.invite_gate = InviteGate(self.pacer, self.slots)
        self.campaigns = CampaignStore(client, keys)
        self._begin = register(client, "dial_begin", JOB_LIBRARY)
        self.breaker = CircuitBreaker(
            client,
            keys,
            trunk,
            window=settings.breaker_window,
            threshold=settings.breaker_threshold,
            pause_s=settings.breaker_pause_s,
        )

    @property
    def slot_lease_s(self) -> int:
        # Ringing + the longest call + a margin: a crashed worker cannot hold a slot forever.
        return self.settings.ringing_timeout_s + self.settings.max_call_duration_s + 120

    # -- entry point -----------------------------------------------------------------------------

    async def place_call(self, call_id: str, attempt: int, owner: str, now: datetime) -> DialReport:
        job = self.store.get(call_id)
        if job.state is JobState.DONE:
            return self._record_again(job, attempt) or DialReport(
                call_id, attempt, "stale", detail="job already done"
            )
        lock_key = self.keys.dial_lock(call_id, attempt)
        recovering = False
        if job.state is JobState.DIALING and job.attempt == attempt:
            recovering = self.r.get(lock_key) == owner
            if not recovering:
                return DialReport(call_id, attempt, "duplicate", detail="another delivery dials")
            with self._live(call_id, attempt):
                # Read again under the marker: a live delivery may have just finished with it.
                job = self.store.get(call_id)
                if job.state is not JobState.DIALING or job.attempt != attempt:
                    return DialReport(call_id, attempt, "stale", detail=f"job is {job.state.value}")
                return await self._recover(job, attempt, owner, now)
        if (
            job.state not in (JobState.SCHEDULED, JobState.RETRY_SCHEDULED)
            or job.next_attempt != attempt
        ):
            return self._record_again(job, attempt) or DialReport(
                call_id, attempt, "stale", detail=f"job is {job.state.value}"
            )

        return await self._begin_and_dial(job, attempt, owner, now)

    def _record(self, msg: ResultMessage) -> str:
        """Record a dial outcome through the results consumer, in this process (no queue, so
        nothing on the way can lose it; no publisher waits for a receipt), at the clock's now,
        as the results task did: a retry's delay counts from the end of the dial."""
        consumed = self.consumer.consume(msg, self.clock(), receipt=False)
        if self.on_outcome is not None:
            self.on_outcome(msg)
        return consumed.result

    def _record_again(self, job: Job, attempt: int) -> DialReport | None:
        """A delivery for an attempt whose dial outcome the job already holds (a worker died
        after recording it, maybe before the consumer's events went out): record it again.
        The consumer is idempotent; on a duplicate it re-runs only its side effects (slot,
        events under their fixed ids). None when the job holds no outcome for `attempt`."""
        msg = recorded_outcome(job, attempt)
        if msg is None:
            return None
        verdict = self._record(msg)
        outcome = DialOutcome(msg.outcome)
        if verdict in ("retry_scheduled", "final"):
            why = "recorded the outcome a stopped worker had kept"
            return DialReport(job.call_id, attempt, "not_connected", outcome, why)
        result: DialResult = "duplicate" if verdict == "duplicate" else "stale"
        why = f"outcome {outcome.value} already recorded"
        return DialReport(job.call_id, attempt, result, outcome, why)

    @contextlib.contextmanager
    def _live(self, call_id: str, attempt: int) -> Iterator[None]:
        """Hold the attempt's live marker while working on it, or raise AttemptInProgress."""
        marker = LiveMarker(self.r, self.keys.dial_live(call_id, attempt), ttl_s=LIVE_MARKER_TTL_S)
        if not marker.acquire():
            raise AttemptInProgress(call_id, attempt)
        try:
            yield
        finally:
            marker.release()

    async def _begin_and_dial(
        self, job: Job, attempt: int, owner: str, now: datetime
    ) -> DialReport:
        """Every gate, the attempt lock, the live marker and the move to `dialing` in one
        script (`dialer/lua/dial_begin.lua`), then the dial. The gates that need the job's
        data and Python (expiry, campaign pause, calling window) are worked out first and passed
        in, so the script reports the first failing gate in the order DESIGN section 5 gives."""
        call_id = job.call_id
        marker = LiveMarker(self.r, self.keys.dial_live(call_id, attempt), ttl_s=LIVE_MARKER_TTL_S)
        stage = STAGE_ROOM
        verdict = [
            reply_text(part)
            for part in self._begin(
                keys=[
                    self.keys.job(call_id),
                    self.keys.due,
                    self.keys.attempts(call_id),
                    self.keys.dial_lock(call_id, attempt),
                    marker.key,
                    self.keys.dnc,
                    self.breaker.key,
                ],
                args=[
                    call_id,
                    attempt,
                    attempt - 1,
                    owner,
                    marker.token,
                    marker.ttl_ms,
                    ATTEMPT_LOCK_TTL_S,
                    job.phone_e164,
                    self._failed_job_gate(job, now),
                    self.keys.prefix,
                    "updated_at",
                    now.astimezone(UTC).isoformat(),
                    "attempt",
                    str(attempt),
                    "dial_stage",
                    stage,
                    "dial_owner",
                    owner,
                    "dial_started_at",
                    now.isoformat(),
                ],
            )
        ]
        match verdict[0]:
            case "ok":
                pass
            case "missing":
                raise JobNotFound(f"no job with call_id {call_id!r}")
            case "stale":
                return DialReport(call_id, attempt, "stale", detail=f"job is {verdict[1]}")
            case "duplicate":
                return DialReport(call_id, attempt, "duplicate", detail="attempt lock taken")
            case "in_progress":
                raise AttemptInProgress(call_id, attempt)
            case gate:
                return self._gate_closed(job, gate, verdict[1:], now)
        marker.keep()
        dialing = dataclasses.replace(
            job, state=JobState.DIALING, attempt=attempt, dial_stage=stage, dial_owner=owner
        )
        try:
            return await self._dial_or_hand_back(dialing, attempt, now, marker)
        finally:
            marker.release()  # a no-op when the answered path released it already

    def _failed_job_gate(self, job: Job, now: datetime) -> str:
        """The first of the gates worked out here that is closed ('' when all are open)."""
        expires = job.request.expires_at
        if expires is not None and now >= expires:
            return "expired"
        if job.campaign_id and self.campaigns.is_paused(job.campaign_id):
            return "paused"
        if not is_open(self.consumer.window_for(job), job.zones, now):
            return "window"
        return ""

    def _gate_closed(self, job: Job, gate: str, detail: list[str], now: datetime) -> DialReport:
        attempt = job.next_attempt
        if gate == "cancelled":
            self.consumer.finish_without_call(
                job.call_id, Status.CANCELLED, now, detail="cancelled"
            )
            return DialReport(job.call_id, attempt, "finished", detail="cancelled")
        if gate == "dnc":
            self.consumer.finish_without_call(
                job.call_id, Status.DO_NOT_CALL, now, detail="number is on the do-not-call list"
            )
            return DialReport(job.call_id, attempt, "finished", detail="do not call")
        if gate == "expired":
            status = expiry_status(job.outcome_history)
            self.consumer.finish_without_call(job.call_id, status, now, detail="expired")
            return DialReport(job.call_id, attempt, "finished", detail="expired")
        if gate == "paused":
            when = now + timedelta(seconds=PAUSED_RECHECK_S)
            return self._reschedule(job, when, now, "campaign paused")
        if gate == "window":
            when = next_opening(self.consumer.window_for(job), job.zones, now)
            return self._reschedule(job, when, now, "outside the calling window")
        if gate == "breaker":
            paused = int(detail[0]) / 1_000_000
            return self._reschedule(job, now + timedelta(seconds=paused), now, "trunk paused")
        raise AssertionError(f"dial_begin.lua returned an unknown verdict {gate!r}")

    async def _dial_or_hand_back(
        self, job: Job, attempt: int, now: datetime, marker: LiveMarker | None = None
    ) -> DialReport:
        """`_dial`, but an unexpected error before the dial request was sent puts the job back
        in the due-set instead of leaving it in `dialing` with nothing to move it on."""
        try:
            return await self._dial(job, attempt, now, marker)
        except Exception:
            stage = self.store.get(job.call_id).dial_stage
            if stage in ("", "locked", "room_created", "dispatched"):
                self.release_slots(job, attempt)
                if stage in ("room_created", "dispatched"):
                    await self._cleanup_room(job.call_id, attempt)
                self._hand_back(
                    job, attempt, now + timedelta(seconds=60), now, "dial failed before the call"
                )
            raise

    # -- gates -----------------------------------------------------------------------------------

    def _reschedule(self, job: Job, when: datetime, now: datetime, why: str) -> DialReport:
        try:
            self.store.transition(
                job.call_id,
                job.state,
                now=now,
                allowed_from=(JobState.SCHEDULED, JobState.RETRY_SCHEDULED),
                expect_attempt=job.attempt,
                change=Change(due_at=when, fields={"detail": why}),
            )
        except InvalidTransition as exc:
            return DialReport(job.call_id, job.next_attempt, "stale", detail=str(exc))
        return DialReport(job.call_id, job.next_attempt, "rescheduled", detail=why)

    def _hand_back(
        self, job: Job, attempt: int, when: datetime, now: datetime, why: str
    ) -> DialReport:
        """Return a job we moved to `dialing` but could not dial yet (no slot / pacing)."""
        previous = JobState.RETRY_SCHEDULED if job.outcome_history else JobState.SCHEDULED
        try:
            self.store.transition(
                job.call_id,
                previous,
                now=now,
                allowed_from=(JobState.DIALING,),
                expect_attempt=attempt,
                change=Change(
                    due_at=when,
                    fields={"attempt": str(attempt - 1), "dial_stage": "", "detail": why},
                ),
            )
        finally:
            self.r.delete(self.keys.dial_lock(job.call_id, attempt))
        return DialReport(job.call_id, attempt, "rescheduled", detail=why)

    # -- dialing ---------------------------------------------------------------------------------

    def _plan(self, job: Job, attempt: int) -> DialPlan:
        policy = self.consumer.policy_for(job)
        counted_attempt = job.counted_attempts + 1
        resume = None
        last = job.last_result
        # Only a screening cut short mid-way resumes; a voicemail attempt has nothing to resume.
        interrupted_before = Status.INCOMPLETE.value in job.outcome_history
        if last is not None and interrupted_before:
            resume = ResumeState(
                consent_given=last.consent_given,
                knockout_answers=last.knockout_answers,
                open_answers=last.open_answers,
                chosen_timeslot=last.chosen_timeslot,
                scheduling_preference=last.scheduling_preference,
            )
        context = DialContext(
            attempt=attempt,
            counted_attempt=counted_attempt,
            max_attempts=job.max_attempts,
            leave_voicemail=leave_voicemail(policy, counted_attempt, job.max_attempts),
            language=job.request.language,
            max_call_duration_s=self.settings.max_call_duration_s,
            recruiter_number=self.settings.recruiter_number,
            resume=resume,
        )
        metadata = build_dispatch_metadata(job.request, context)
        return DialPlan(
            call_id=job.call_id,
            attempt=attempt,
            room_name=room_name(job.call_id, attempt),
            phone_e164=job.phone_e164,
            room_metadata=metadata,
            dispatch_metadata=metadata,
            participant_identity=context.participant_identity,
            ringing_timeout_s=self.settings.ringing_timeout_s,
            max_call_duration_s=self.settings.max_call_duration_s,
            empty_timeout_s=self.settings.room_empty_timeout_s,
            from_number=job.request.sip_from_number,
            agent_name=job.request.agent_name,
        )

    async def _dial(
        self, job: Job, attempt: int, now: datetime, marker: LiveMarker | None = None
    ) -> DialReport:
        member = f"{job.call_id}:{attempt}"
        campaign_pacer, campaign_slots = self._campaign_limits(job.campaign_id)
        pacers = [p for p in (self.pacer, campaign_pacer) if p is not None]
        plan = self._plan(job, attempt)
        slot_held = False
        job_key = self.keys.job(job.call_id)

        def before_invite() -> None:
            # Pacing turn, then the concurrency slot, right before the request that sends the
            # INVITE: CreateRoom and CreateDispatch take a varying few milliseconds, and a turn
            # taken before them would let INVITEs bunch at the trunk; a slot taken before the
            # turn would be held while waiting for it, idle, by every waiting dial task.
            nonlocal slot_held
            if campaign_pacer is None and campaign_slots is None and not slot_held:
                # The trunk's limits only: turn, slot and stage in one script (InviteGate).
                turn = self.invite_gate.take(
                    member, self.slot_lease_s, PACING_WAIT_S, job_key=job_key, stage=STAGE_SIP
                )
                if turn == "no_turn":
                    raise NotDialedYet(f"no calls-per-second turn within {PACING_WAIT_S:.0f} s")
                if turn == "no_slot":
                    raise NotDialedYet("all call slots busy", retry_s=SLOT_RETRY_S)
                slot_held = True
                return
            for pacer in pacers:
                if not pacer.acquire(PACING_WAIT_S):
                    raise NotDialedYet(f"no calls-per-second turn within {PACING_WAIT_S:.0f} s")
            if slot_held:  # a second try after a request that never reached LiveKit
                return
            # The last slot taken also records the "sip_requested" stage, in the same step.
            trunk_stage = {} if campaign_slots is not None else {"job_key": job_key}
            if not self.slots.acquire(member, self.slot_lease_s, stage=STAGE_SIP, **trunk_stage):
                raise NotDialedYet("all call slots busy", retry_s=SLOT_RETRY_S)
            if campaign_slots is not None and not campaign_slots.acquire(
                member, self.slot_lease_s, job_key=job_key, stage=STAGE_SIP
            ):
                self.slots.release(member)
                raise NotDialedYet("campaign call slots busy", retry_s=SLOT_RETRY_S)
            slot_held = True

        log.debug("dialing %s attempt %d for %s", mask(job.phone_e164), attempt, job.call_id)
        started = time.monotonic()
        try:
            # No stage callback: "room_created" was written with the move to `dialing` and
            # "sip_requested" is written with the call's slot (before_invite), so recording how
            # far the dial got costs no round trip of its own.
            answered = await self.dialer.dial(plan, before_invite=before_invite)
        except NotDialedYet as exc:
            # Nothing was sent to the trunk: undo the room, give the job back to the due-set.
            self.release_slots(job, attempt)
            await self._cleanup_room(job.call_id, attempt)
            later = now + timedelta(seconds=exc.retry_s)
            return self._hand_back(job, attempt, later, now, str(exc))
        except DialError as exc:
            report = await self._not_connected(job, attempt, exc, now)
            if report.outcome is not None:
                self._record_metric(report.outcome.value, started)
            return report
        self._answered(job, attempt, answered, started, now, marker)
        return DialReport(job.call_id, attempt, "answered", outcome=DialOutcome.ANSWERED)

    def _answered(
        self,
        job: Job,
        attempt: int,
        answered: DialAnswered,
        started: float,
        now: datetime,
        marker: LiveMarker | None,
    ) -> None:
        """Record the answer in one round trip: the move to `in_call`, a good outcome for the
        breaker, the dial metrics and (when this delivery holds it) the live marker's release.
        A refused move is fine: the agent's result already arrived and moved the job on (its
        `dial_stage` is then `recorded`, and stays so)."""
        move = self.store.transition_call(
            job.call_id,
            JobState.IN_CALL,
            now=now,
            allowed_from=(JobState.DIALING,),
            expect_attempt=attempt,
            change=Change(
                fields={
                    "dial_stage": "answered",
                    "answered_after_s": f"{answered.answered_after_s:.3f}",
                    "sip_call_id": answered.sip_call_id,
                }
            ),
        )
        latency = time.monotonic() - started
        steps: list[ScriptCall | tuple[str, tuple[Any, ...]]] = [
            move,
            self.breaker.record_call(False),
            *metrics.MetricsRecorder(self.r, self.keys).dial_commands("answered", latency),
        ]
        if marker is not None:
            steps.append(marker.release_call())
        replies = run_pipeline(self.r, steps)
        with contextlib.suppress(InvalidTransition):
            self.store.check_transition(job.call_id, JobState.IN_CALL, attempt, replies[0])

    def _campaign_limits(
        self, campaign_id: str | None
    ) -> tuple[RedisPacer | None, ConcurrencySlots | None]:
        """A campaign's own calls-per-second and concurrency limits, on top of the trunk's."""
        if not campaign_id:
            return None, None
        policy = self.campaigns.policy(campaign_id)
        if policy is None:
            return None, None
        scope = f"campaign:{campaign_id}"
        pacer = (
            RedisPacer(
                self.r,
                self.keys,
                scope,
                policy.calls_per_second,
                headroom=self.settings.pacing_headroom,
            )
            if policy.calls_per_second
            else None
        )
        slots = (
            ConcurrencySlots(self.r, self.keys, scope, policy.max_concurrent_calls)
            if policy.max_concurrent_calls
            else None
        )
        return pacer, slots

    def release_slots(self, job: Job, attempt: int) -> None:
        member = f"{job.call_id}:{attempt}"
        self.slots.release(member)
        _, campaign_slots = self._campaign_limits(job.campaign_id)
        if campaign_slots is not None:
            campaign_slots.release(member)

    def _record_metric(self, outcome: str, started: float) -> None:
        metrics.record_dial(outcome, time.monotonic() - started, client=self.r, keys=self.keys)

    async def _not_connected(
        self, job: Job, attempt: int, exc: DialError, now: datetime
    ) -> DialReport:
        outcome = outcome_of(exc)
        throttled = isinstance(exc, ThrottledError)
        detail = exc.outcome if isinstance(exc, CallNotConnected) else str(exc)
        msg = ResultMessage.from_dial(
            job.call_id,
            attempt,
            outcome,
            now,
            sip_status_code=exc.sip_status_code,
            detail=detail[:500],
        )
        # The outcome is kept in the job before anything else: a worker that dies before the
        # consumer has recorded it leaves it for the redelivered message (`_recover`).
        await self._keep_outcome(job.call_id, {"dial_stage": "finished", **outcome_fields(msg)})
        self.breaker.record(throttled)
        if throttled:
            self.pacer.backoff()
        self._record(msg)  # the consumer releases the call's slots too
        await self._cleanup_room(job.call_id, attempt)
        return DialReport(job.call_id, attempt, "not_connected", outcome=outcome, detail=detail)

    async def _keep_outcome(self, call_id: str, fields: dict[str, str]) -> None:
        """Write a dial's outcome into its job, waiting out a Redis blip (up to
        OUTCOME_WRITE_WAIT_S): until it is written it exists only in this process, and a task
        handed back for Redis would find the attempt past its SIP request with no outcome, so
        the call's real outcome would become `interrupted`. The write is idempotent."""
        give_up_at = time.monotonic() + OUTCOME_WRITE_WAIT_S
        pause = 0.2
        while True:
            try:
                self.store.set_fields(call_id, fields)
                return
            except REDIS_BLIP as exc:
                if time.monotonic() + pause > give_up_at:
                    raise
                log.warning(
                    "Redis unreachable (%s) keeping the dial outcome of %s; trying again",
                    type(exc).__name__,
                    call_id,
                )
                await asyncio.sleep(pause)
                pause = min(pause * 2, 2.0)

    async def _cleanup_room(self, call_id: str, attempt: int) -> None:
        try:
            await self.dialer.hang_up(room_name(call_id, attempt))
        except DialError as exc:  # an empty room expires by itself (empty_timeout)
            log.warning("could not delete room for %s attempt %d: %s", call_id, attempt, exc)

    # -- recovery after the owning worker died -----------------------------------------------

    async def _recover(self, job: Job, attempt: int, owner: str, now: datetime) -> DialReport:
        stage = job.dial_stage
        if stage in ("", "locked"):
            return await self._dial_or_hand_back(job, attempt, now)
        if stage in ("room_created", "dispatched"):
            await self._cleanup_room(job.call_id, attempt)
            return await self._dial_or_hand_back(job, attempt, now)
        if stage == "sip_requested":
            try:
                present = await self.dialer.call_present(
                    room_name(job.call_id, attempt), PHONE_PARTICIPANT_IDENTITY
                )
            except DialError as exc:
                # LiveKit cannot tell us now. Leave the job as it is: if the call is live its
                # result arrives; if not, the slot lease runs out and the reaper reports it.
                return DialReport(job.call_id, attempt, "stale", detail=f"recovery deferred: {exc}")
            if present:
                with contextlib.suppress(InvalidTransition):
                    self.store.transition(
                        job.call_id,
                        JobState.IN_CALL,
                        now=now,
                        allowed_from=(JobState.DIALING,),
                        expect_attempt=attempt,
                        change=Change(fields={"dial_stage": "answered"}),
                    )
                return DialReport(
                    job.call_id, attempt, "in_call", detail="call found after restart"
                )
            # Not in the room: the call never rang, failed, or was answered and has ended. Only
            # in the last case does a result exist, and it is on its way (the agent's publisher
            # sends it until the consumer receipts it; it may sit in the results queue behind
            # this very message). Reporting `interrupted` now would make that real result a
            # duplicate, so the attempt is left as it is, never dialed again: its result is
            # recorded when it comes, and if none does, the slot's lease runs out and the
            # reaper records the attempt `interrupted` (section 7 of docs/ARCHITECTURE.md).
            return DialReport(
                job.call_id,
                attempt,
                "deferred",
                detail="call not in its room: left to its result, or to the reaper",
            )
        if stage == "finished":
            again = self._record_again(job, attempt)
            if again is not None:
                await self._cleanup_room(job.call_id, attempt)
                return again
        return DialReport(job.call_id, attempt, "stale", detail=f"already past dialing ({stage})")


def outcome_fields(msg: ResultMessage) -> dict[str, str]:
    """A dial outcome as job hash fields, so it survives the worker that found it."""
    return {
        "dial_outcome": msg.outcome,
        "dial_outcome_attempt": str(msg.attempt),
        "dial_outcome_at": msg.at.isoformat(),
        "dial_sip_status_code": "" if msg.sip_status_code is None else str(msg.sip_status_code),
        "dial_detail": msg.detail,
    }


def recorded_outcome(job: Job, attempt: int) -> ResultMessage | None:
    """The dial outcome of `attempt` that the job holds (`outcome_fields`), if any."""
    raw = job.raw
    if raw.get("dial_outcome_attempt") != str(attempt) or not raw.get("dial_outcome"):
        return None
    code = raw.get("dial_sip_status_code", "")
    return ResultMessage.from_dial(
        job.call_id,
        attempt,
        DialOutcome(raw["dial_outcome"]),
        datetime.fromisoformat(raw["dial_outcome_at"]),
        sip_status_code=int(code) if code else None,
        detail=raw.get("dial_detail", ""),
    )


def outcome_of(exc: DialError) -> DialOutcome:
    """The attempt outcome for an adapter error (the adapter classified it via dialer.outcomes)."""
    if isinstance(exc, CallNotConnected):
        return DialOutcome(exc.outcome)
    if isinstance(exc, PermanentDialError):
        return DialOutcome.FAILED
    if isinstance(exc, ThrottledError):
        return DialOutcome.THROTTLED
    return DialOutcome.TRANSIENT
