"""Wiring: build the store, intake, consumer and dial service for one process from Settings.

Tasks, the CLI, the HTTP API and tests all get their collaborators here, so there is one place
that says which concrete Redis key map, clock and event sinks a process uses.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

import redis

from dialer.clock import Clock, RedisClock, SystemClock
from dialer.dnc import DoNotCallList
from dialer.dueset import DueSet
from dialer.events import EventSink, FanOut, RedisEventLog
from dialer.intake import Intake
from dialer.keys import Keys
from dialer.messages import ResultMessage
from dialer.models import CallingWindow, RetryPolicy
from dialer.redis_conn import connect, ensure_redis_url
from dialer.results import ResultsConsumer
from dialer.settings import Settings, load_settings
from dialer.store import JobStore
from dialer.webhooks import WebhookService

if TYPE_CHECKING:
    from dialer.dialing import DialService


class BeatWebhookSink:
    """Events -> webhook deliveries due immediately; the beat's `move_due_webhooks` sends them.

    For processes that are not Celery workers (the HTTP API, the CLI, a backend using `Dialer`):
    a job finished there (do-not-call at intake, cancelled, expired) still reaches the CRM.
    Idempotent by event id, like every sink.
    """

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @cached_property
    def service(self) -> WebhookService:
        rt = self.runtime
        return WebhookService.from_settings(rt.client, rt.keys, rt.settings, lease_s=0.0)

    def emit(self, event_type: str, data: dict[str, Any], *, event_id: str, now: datetime) -> None:
        self.service.emit(event_type, data, now, event_id=event_id)


@dataclass
class Runtime:
    settings: Settings
    client: redis.Redis
    keys: Keys = field(default_factory=Keys)
    extra_sinks: list[EventSink] = field(default_factory=list)

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> Runtime:
        settings = settings or load_settings()
        url = ensure_redis_url(settings)
        return cls(settings=settings, client=connect(url), keys=Keys(settings.key_prefix))

    @classmethod
    def for_url(cls, url: str, settings: Settings | None = None) -> Runtime:
        settings = settings or load_settings()
        return cls(settings=settings, client=connect(url), keys=Keys(settings.key_prefix))

    @cached_property
    def clock(self) -> Clock:
        if self.settings.clock == "redis":
            return RedisClock(self.client, self.keys.clock_offset)
        return SystemClock()

    @cached_property
    def store(self) -> JobStore:
        return JobStore(self.client, self.keys)

    @cached_property
    def dnc(self) -> DoNotCallList:
        return DoNotCallList(self.client, self.keys)

    @cached_property
    def due_jobs(self) -> DueSet:
        return DueSet(self.client, self.keys.due)

    # Where events become webhook deliveries. Workers set a sink that also sends the delivery
    # tasks at once (tasks.webhooks); elsewhere (API, CLI, Python API) `BeatWebhookSink` makes
    # them due now and the beat sends them within a second.
    webhook_sink: EventSink | None = None

    @cached_property
    def sink(self) -> EventSink:
        webhooks = self.webhook_sink or BeatWebhookSink(self)
        return FanOut([RedisEventLog(self.client, self.keys.events), webhooks, *self.extra_sinks])

    def campaign_policy(
        self, campaign_id: str | None
    ) -> tuple[CallingWindow | None, RetryPolicy | None]:
        """A campaign's calling window and retry policy, when the campaign sets them."""
        if not campaign_id:
            return None, None
        raw = self.client.hget(self.keys.campaign(campaign_id), "policy")
        if not raw:
            return None, None
        policy = json.loads(str(raw))
        window = policy.get("calling_window")
        retry = policy.get("retry_policy")
        return (
            CallingWindow.model_validate(window) if window else None,
            RetryPolicy.model_validate(retry) if retry else None,
        )

    @cached_property
    def consumer(self) -> ResultsConsumer:
        from dialer.limiter import ConcurrencySlots

        slots = ConcurrencySlots(
            self.client,
            self.keys,
            self.settings.sip_trunk_id or "default",
            self.settings.max_concurrent_calls,
        )

        def release(member: str) -> None:
            slots.release(member)
            # A campaign with its own concurrency limit holds a second slot for the call.
            call_id = member.rpartition(":")[0]
            raw = self.client.hget(self.keys.job(call_id), "campaign_id")
            campaign = raw.decode() if isinstance(raw, bytes) else raw
            if campaign:
                ConcurrencySlots(self.client, self.keys, f"campaign:{campaign}", 1).release(member)

        def add_to_dnc(e164: str) -> None:
            self.dnc.add([e164])

        return ResultsConsumer(
            self.store,
            self.keys,
            self.sink,
            release_slot=release,
            add_to_dnc=add_to_dnc,
            campaign_policy=self.campaign_policy,
        )

    @cached_property
    def intake(self) -> Intake:
        return Intake(
            self.client,
            self.keys,
            self.store,
            self.consumer,
            is_dnc=self.dnc.contains,
            default_max_attempts=self.settings.default_max_attempts,
        )

    def dial_service(
        self, on_outcome: Callable[[ResultMessage], None] | None = None
    ) -> DialService:
        """The dial path. Dial outcomes are recorded in this process through `consumer`;
        `on_outcome` is told of each once it is recorded."""
        from dialer.dialing import DialService
        from dialer.livekit_dialer import LiveKitDialer

        url, key, secret = self.settings.require_livekit()
        dialer = LiveKitDialer(
            url,
            key,
            secret,
            trunk_id=self.settings.trunk_id(),
            from_number=self.settings.sip_from_number,
            agent_name=self.settings.agent_name,
        )
        return DialService(
            self.client,
            self.keys,
            self.store,
            self.consumer,
            dialer,
            self.settings,
            clock=self.clock.now,
            on_outcome=on_outcome,
        )
