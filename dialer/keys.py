"""Every Redis key the system uses, in one place, under one prefix.

Readers of a Redis dump (or `redis-cli --scan`) can find what each key is for here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    prefix: str = "dialer"

    # Jobs (DESIGN section 4).
    def job(self, call_id: str) -> str:
        """Hash: the job's state, request JSON, attempt counters, result."""
        return f"{self.prefix}:job:{call_id}"

    def attempts(self, call_id: str) -> str:
        """List: one JSON AttemptRecord per dial, in order."""
        return f"{self.prefix}:job:{call_id}:attempts"

    def dial_lock(self, call_id: str, attempt: int) -> str:
        """String (SET NX): the delivery that owns dial number `attempt` of this job."""
        return f"{self.prefix}:dial:{call_id}:{attempt}"

    def dial_live(self, call_id: str, attempt: int) -> str:
        """String with a short TTL, refreshed while a delivery works on dial number `attempt`:
        a copy of the same message finding it knows the first is alive, not crashed."""
        return f"{self.prefix}:dial-live:{call_id}:{attempt}"

    @property
    def jobs_index(self) -> str:
        """Sorted set: every call_id by submission time (for listing / pagination)."""
        return f"{self.prefix}:jobs"

    def campaign_jobs(self, campaign_id: str) -> str:
        """Sorted set: call_ids of one campaign by submission time."""
        return f"{self.prefix}:campaign:{campaign_id}:jobs"

    def campaign(self, campaign_id: str) -> str:
        """Hash: campaign policy JSON and paused flag."""
        return f"{self.prefix}:campaign:{campaign_id}"

    @property
    def campaigns(self) -> str:
        """Set: every campaign id."""
        return f"{self.prefix}:campaigns"

    # Scheduling.
    @property
    def due(self) -> str:
        """Sorted set: due-set of jobs, member call_id, score = when it may be dialed (epoch s)."""
        return f"{self.prefix}:due:jobs"

    @property
    def due_webhooks(self) -> str:
        """Sorted set: webhook delivery retries, member delivery id, score = next try (epoch s)."""
        return f"{self.prefix}:due:webhooks"

    @property
    def beat_lock(self) -> str:
        """Prefix of the per-tick beat gates `<beat_lock>:<task>:<tick>` (SET NX, short TTL)."""
        return f"{self.prefix}:beat:lock"

    # Gates.
    @property
    def dnc(self) -> str:
        """Set: E.164 numbers never to call."""
        return f"{self.prefix}:dnc"

    def pacing(self, trunk: str) -> str:
        """Hash: GCRA theoretical arrival time and back-off multiplier for the trunk's CPS limit."""
        return f"{self.prefix}:pace:{trunk}"

    def slots(self, trunk: str) -> str:
        """Sorted set: concurrency slots in use, member call_id:attempt, score = lease expiry."""
        return f"{self.prefix}:slots:{trunk}"

    def breaker(self, trunk: str) -> str:
        """Hash: circuit breaker for the trunk (recent outcomes, paused_until)."""
        return f"{self.prefix}:breaker:{trunk}"

    # Results.
    def result_receipt(self, call_id: str, attempt: int) -> str:
        """String with a 7-day TTL: the results consumer has processed the result message of
        this attempt (recorded, duplicate or stale alike). The agent's publisher deletes its
        copy of the message once this exists, and sends the message again while it does not."""
        return f"{self.prefix}:results:receipt:{call_id}:{attempt}"

    # Dead letters and rejects: nothing is dropped silently.
    @property
    def rejected(self) -> str:
        """List: RejectedRow JSON for every request intake refused."""
        return f"{self.prefix}:rejected"

    @property
    def dead_letters(self) -> str:
        """List: malformed queue messages with their reason."""
        return f"{self.prefix}:dead:messages"

    # Webhooks.
    @property
    def webhook_endpoints(self) -> str:
        """Hash: endpoint id -> endpoint JSON."""
        return f"{self.prefix}:webhooks:endpoints"

    def webhook_delivery(self, delivery_id: str) -> str:
        """Hash: one delivery (endpoint, message id, payload, tries, status)."""
        return f"{self.prefix}:webhooks:delivery:{delivery_id}"

    @property
    def webhook_dead(self) -> str:
        """List: delivery ids that exhausted their retries (replayable)."""
        return f"{self.prefix}:webhooks:dead"

    @property
    def events(self) -> str:
        """Stream: every emitted event (screening.attempt / retry_scheduled / completed)."""
        return f"{self.prefix}:events"

    # Clock shared by all processes when DIALER_CLOCK=redis.
    @property
    def clock_offset(self) -> str:
        return f"{self.prefix}:clock:offset"


KEYS = Keys()
