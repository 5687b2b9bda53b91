"""Prometheus metrics, read from Redis at scrape time.

Celery runs many worker processes (on many machines), so per-process prometheus-client
counters would each see a fraction of the dials. Instead the tasks add to counters kept in
Redis (one HINCRBY pipeline per event), and `/metrics` reads those plus the live state (queue
depths, due-sets, jobs by state, slots in use, webhook stats) when Prometheus scrapes. Every API
process reports the same, whole-system numbers.

Recording, from the dial and webhook tasks (never raises; a Redis hiccup only loses a count):

    from dialer import metrics
    metrics.record_dial("busy", 1.8, client=r, keys=keys)       # outcome, seconds to outcome
    metrics.record_webhook("delivered", client=r, keys=keys)    # DeliveryOutcome.result

Without `client`, the process's default (`metrics.bind(client, keys)`, else one built from
REDIS_URL on first use) is used.

Redis keys (under `Keys.prefix`):

    {prefix}:metrics:dials          hash  outcome -> count
    {prefix}:metrics:dial_latency   hash  "le:<bucket>" -> count (not cumulative), sum, count
    {prefix}:metrics:webhook_tasks  hash  result -> count

Exported metrics (all `dialer_`):

    redis_up                                    1 when the scrape could read Redis
    queue_depth{queue}                          messages waiting in a Celery queue (LLEN)
    due_set_size{set}, due_set_ready{set}       due-set entries, and those due now (jobs, webhooks)
    jobs{state}                                 jobs by state
    jobs_finished{status}                       finished jobs by final status
    calls_in_progress, calls_in_progress_limit  concurrency slots in use / the trunk limit
    trunk_paused_seconds                        circuit-breaker pause left
    dials_total{outcome}                        dials by outcome (answered, busy, no_answer, ...)
    dial_latency_seconds                        histogram: dial request to answer / failure
    webhook_deliveries_total{result}            created, delivered, dead, gone, replayed
    webhook_failures_total, webhook_retries_total  failed tries, retries scheduled
    webhook_due, webhook_dead_letters           deliveries waiting for a retry / dead
    webhook_task_results_total{result}          deliver-task results (record_webhook)
    dnc_numbers, rejected_requests, dead_letters  suppression list size, refused requests,
                                                malformed queue messages
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import redis
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from dialer.keys import Keys
from dialer.models import JobState, Status

if TYPE_CHECKING:
    from dialer.runtime import Runtime
    from dialer.webhooks import WebhookService

log = logging.getLogger("dialer.metrics")

DIAL_LATENCY_BUCKETS: tuple[float, ...] = (0.5, 1, 2, 5, 10, 15, 20, 30, 45, 60, 120)
CELERY_QUEUES: tuple[str, ...] = ("intake", "dial", "results", "webhooks")
# kombu's Redis transport keeps one list per priority step: "dial", "dial\x06\x163", ...
_PRIORITY_SEP = "\x06\x16"
_PRIORITY_STEPS = (3, 6, 9)
_LABEL_RE = re.compile(r"[a-z][a-z0-9_]{0,31}")


def _keys_for(prefix: str) -> tuple[str, str, str]:
    return (
        f"{prefix}:metrics:dials",
        f"{prefix}:metrics:dial_latency",
        f"{prefix}:metrics:webhook_tasks",
    )


def _label(value: str) -> str:
    """A bounded label value: unknown shapes become "other" (no cardinality explosion)."""
    text = str(value).strip().lower()
    return text if _LABEL_RE.fullmatch(text) else "other"


def _bucket(latency_s: float) -> str:
    for bound in DIAL_LATENCY_BUCKETS:
        if latency_s <= bound:
            return f"le:{float(bound)!r}"
    return "le:+Inf"


class MetricsRecorder:
    """Adds to the Redis-backed counters. Safe from any number of processes."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.r = client
        self.dials_key, self.latency_key, self.webhooks_key = _keys_for(keys.prefix)

    def record_dial(self, outcome: str, latency_s: float) -> None:
        pipe = self.r.pipeline(transaction=False)
        for command, args in self.dial_commands(outcome, latency_s):
            pipe.execute_command(command, *args)  # type: ignore[no-untyped-call]
        pipe.execute()

    def dial_commands(self, outcome: str, latency_s: float) -> list[tuple[str, tuple[Any, ...]]]:
        """`record_dial` as commands, for a caller that sends them with its own pipeline."""
        latency = max(0.0, float(latency_s))
        return [
            ("HINCRBY", (self.dials_key, _label(outcome), 1)),
            ("HINCRBY", (self.latency_key, _bucket(latency), 1)),
            ("HINCRBYFLOAT", (self.latency_key, "sum", repr(latency))),
            ("HINCRBY", (self.latency_key, "count", 1)),
        ]

    def record_webhook(self, result: str) -> None:
        self.r.hincrby(self.webhooks_key, _label(result), 1)


_default: MetricsRecorder | None = None


def bind(client: redis.Redis, keys: Keys) -> None:
    """Set this process's default recorder (used when `record_*` get no client)."""
    global _default
    _default = MetricsRecorder(client, keys)


def _recorder(client: redis.Redis | None, keys: Keys | None) -> MetricsRecorder | None:
    global _default
    if client is not None:
        return MetricsRecorder(client, keys or Keys())
    if _default is None:
        from dialer.redis_conn import connect
        from dialer.settings import load_settings

        settings = load_settings()
        if not settings.redis_url:  # never start an embedded Redis just to count
            return None
        _default = MetricsRecorder(connect(settings.redis_url), Keys(settings.key_prefix))
    return _default


def record_dial(
    outcome: str, latency_s: float, *, client: redis.Redis | None = None, keys: Keys | None = None
) -> None:
    """Count one dial by outcome and observe its latency (seconds from the dial request to the
    answer or failure). Never raises."""
    try:
        recorder = _recorder(client, keys)
        if recorder is not None:
            recorder.record_dial(outcome, latency_s)
    except (redis.RedisError, OSError, ValueError) as exc:
        log.debug("dial metric not recorded: %s", exc)


def record_webhook(
    result: str, *, client: redis.Redis | None = None, keys: Keys | None = None
) -> None:
    """Count one webhook deliver-task result (delivered / retry_scheduled / dead / skipped).
    Never raises."""
    try:
        recorder = _recorder(client, keys)
        if recorder is not None:
            recorder.record_webhook(result)
    except (redis.RedisError, OSError, ValueError) as exc:
        log.debug("webhook metric not recorded: %s", exc)


# -- scrape ------------------------------------------------------------------------------------


class RedisStateCollector(Collector):
    """Reads the whole system's state from Redis on every scrape."""

    def __init__(
        self,
        runtime: Runtime,
        webhooks: WebhookService | None = None,
        *,
        queues: Sequence[str] = CELERY_QUEUES,
    ) -> None:
        self.rt = runtime
        self.webhooks = webhooks
        self.queues = tuple(queues)

    def collect(self) -> Iterator[Metric]:
        try:
            families = self._families()
        except (redis.RedisError, OSError) as exc:
            log.warning("metrics scrape could not read Redis: %s", exc)
            up = GaugeMetricFamily("dialer_redis_up", "1 when the scrape could read Redis")
            up.add_metric([], 0.0)
            yield up
            return
        yield from families

    def _families(self) -> list[Metric]:
        rt = self.rt
        keys = rt.keys
        now = rt.clock.now().timestamp()
        dials_key, latency_key, webhooks_key = _keys_for(keys.prefix)
        pipe = rt.client.pipeline(transaction=False)
        for queue in self.queues:
            pipe.llen(queue)
            for step in _PRIORITY_STEPS:
                pipe.llen(f"{queue}{_PRIORITY_SEP}{step}")
        pipe.zcard(keys.due)
        pipe.zcount(keys.due, "-inf", now)
        pipe.zcard(keys.due_webhooks)
        pipe.zcount(keys.due_webhooks, "-inf", now)
        for state in JobState:
            pipe.scard(rt.store.state_index(state.value))
        for status in Status:
            pipe.scard(rt.store.status_index(status.value))
        pipe.hgetall(dials_key)
        pipe.hgetall(latency_key)
        pipe.hgetall(webhooks_key)
        pipe.scard(keys.dnc)
        pipe.llen(keys.rejected)
        pipe.llen(keys.dead_letters)
        values: list[Any] = pipe.execute()

        out: list[Metric] = []
        up = GaugeMetricFamily("dialer_redis_up", "1 when the scrape could read Redis")
        up.add_metric([], 1.0)
        out.append(up)

        depth = GaugeMetricFamily(
            "dialer_queue_depth", "Messages waiting in a Celery queue", labels=["queue"]
        )
        per_queue = 1 + len(_PRIORITY_STEPS)
        for i, queue in enumerate(self.queues):
            depth.add_metric(
                [queue], float(sum(int(v) for v in values[i * per_queue : (i + 1) * per_queue]))
            )
        out.append(depth)
        values = values[len(self.queues) * per_queue :]

        due_size = GaugeMetricFamily(
            "dialer_due_set_size", "Entries in a due-set (waiting for their time)", labels=["set"]
        )
        due_ready = GaugeMetricFamily(
            "dialer_due_set_ready", "Due-set entries whose time has come", labels=["set"]
        )
        due_size.add_metric(["jobs"], float(values[0]))
        due_ready.add_metric(["jobs"], float(values[1]))
        due_size.add_metric(["webhooks"], float(values[2]))
        due_ready.add_metric(["webhooks"], float(values[3]))
        out += [due_size, due_ready]
        values = values[4:]

        jobs = GaugeMetricFamily("dialer_jobs", "Jobs by state", labels=["state"])
        for state, n in zip(JobState, values[: len(JobState)], strict=True):
            jobs.add_metric([state.value], float(n))
        values = values[len(JobState) :]
        finished = GaugeMetricFamily(
            "dialer_jobs_finished", "Finished jobs by final status", labels=["status"]
        )
        for status, n in zip(Status, values[: len(Status)], strict=True):
            finished.add_metric([status.value], float(n))
        values = values[len(Status) :]
        out += [jobs, finished]

        dials_raw, latency_raw, tasks_raw, dnc, rejected, dead = values
        dials = CounterMetricFamily("dialer_dials", "Dials by outcome", labels=["outcome"])
        for outcome, n in sorted(dials_raw.items()):
            dials.add_metric([str(outcome)], float(n))
        out.append(dials)
        out.append(_latency_histogram(latency_raw))

        task_results = CounterMetricFamily(
            "dialer_webhook_task_results", "Webhook deliver-task results", labels=["result"]
        )
        for result, n in sorted(tasks_raw.items()):
            task_results.add_metric([str(result)], float(n))
        out.append(task_results)

        for name, doc, value in (
            ("dialer_dnc_numbers", "Numbers on the do-not-call list", dnc),
            ("dialer_rejected_requests", "Requests intake refused (kept for review)", rejected),
            ("dialer_dead_letters", "Malformed queue messages set aside", dead),
        ):
            gauge = GaugeMetricFamily(name, doc)
            gauge.add_metric([], float(value))
            out.append(gauge)

        out += self._slots_and_breaker()
        out += self._webhook_stats()
        return out

    def _slots_and_breaker(self) -> list[Metric]:
        from dialer.limiter import CircuitBreaker, ConcurrencySlots

        settings = self.rt.settings
        trunk = settings.sip_trunk_id or "default"
        slots = ConcurrencySlots(self.rt.client, self.rt.keys, trunk, settings.max_concurrent_calls)
        in_progress = GaugeMetricFamily(
            "dialer_calls_in_progress", "Calls ringing or talking (concurrency slots in use)"
        )
        in_progress.add_metric([], float(slots.in_use()))
        limit = GaugeMetricFamily(
            "dialer_calls_in_progress_limit", "Concurrency limit of the trunk"
        )
        limit.add_metric([], float(settings.max_concurrent_calls))
        breaker = CircuitBreaker(
            self.rt.client,
            self.rt.keys,
            trunk,
            window=settings.breaker_window,
            threshold=settings.breaker_threshold,
            pause_s=settings.breaker_pause_s,
        )
        paused = GaugeMetricFamily(
            "dialer_trunk_paused_seconds", "Seconds until the circuit breaker lets dials through"
        )
        paused.add_metric([], breaker.paused_for())
        return [in_progress, limit, paused]

    def _webhook_stats(self) -> list[Metric]:
        from dialer.webhooks import WebhookService

        service = self.webhooks or WebhookService(self.rt.client, self.rt.keys)
        try:
            stats = service.stats()
        finally:
            if self.webhooks is None:
                service.close()
        deliveries = CounterMetricFamily(
            "dialer_webhook_deliveries", "Webhook deliveries by result", labels=["result"]
        )
        for result, n in (
            ("created", stats.emitted),
            ("delivered", stats.delivered),
            ("dead", stats.dead),
            ("gone", stats.gone),
            ("replayed", stats.replayed),
        ):
            deliveries.add_metric([result], float(n))
        failures = CounterMetricFamily("dialer_webhook_failures", "Failed webhook tries")
        failures.add_metric([], float(stats.failed))
        retries = CounterMetricFamily("dialer_webhook_retries", "Webhook retries scheduled")
        retries.add_metric([], float(stats.retried))
        due = GaugeMetricFamily("dialer_webhook_due", "Webhook deliveries waiting for a try")
        due.add_metric([], float(stats.due))
        dead = GaugeMetricFamily("dialer_webhook_dead_letters", "Dead webhook deliveries")
        dead.add_metric([], float(stats.dead_letters))
        return [deliveries, failures, retries, due, dead]


def _latency_histogram(raw: dict[str, str]) -> HistogramMetricFamily:
    cumulative = 0.0
    buckets: list[tuple[str, float]] = []
    for bound in DIAL_LATENCY_BUCKETS:
        cumulative += float(raw.get(f"le:{float(bound)!r}", 0))
        buckets.append((repr(float(bound)), cumulative))
    cumulative += float(raw.get("le:+Inf", 0))
    buckets.append(("+Inf", cumulative))
    histogram = HistogramMetricFamily(
        "dialer_dial_latency_seconds", "Seconds from the dial request to the answer or failure"
    )
    histogram.add_metric([], buckets=buckets, sum_value=float(raw.get("sum", 0.0)))
    return histogram


def registry_for(runtime: Runtime, webhooks: WebhookService | None = None) -> CollectorRegistry:
    """A registry with the Redis collector (one per app; not the global default registry)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RedisStateCollector(runtime, webhooks))
    return registry


def scrape(registry: CollectorRegistry) -> bytes:
    """The text exposition of `registry`."""
    from prometheus_client import generate_latest

    started = time.monotonic()
    body = generate_latest(registry)
    log.debug("metrics scrape took %.1f ms", (time.monotonic() - started) * 1000)
    return body
