"""`dialer demo`: the whole pipeline on one machine, with simulated candidates.

Embedded Redis, a Celery worker and beat (child processes, the production code), the LiveKit
stand-in (real Twirp protocol, real `livekit-api` client), the real voice-agent flow in text mode
with a scripted persona per phone number, and a webhook receiver on loopback that verifies every
signature and writes each payload to a folder per endpoint. Time runs on a shared accelerated
clock: whenever nothing is in progress and nothing is due, the clock jumps to the next due job,
so retries hours apart (and candidates in other time zones) take seconds.

`dialer demo` checks its own run: every candidate must end with the status its persona
produces under the job's retry policy (`dialer.demo_expected`), and the run must finish within
its timeout (120 s by default); otherwise it exits 1 and says which candidates differ.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis
from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from dialer.clock import RedisClock
from dialer.csv_import import load_template, read_rows
from dialer.demo_expected import DEMO_TIME_LIMIT_S, UnknownPersona, expected_outcomes
from dialer.embedded_redis import AppendFsync, running_server
from dialer.errors import ConfigError, JobConflict, ValidationFailed
from dialer.keys import Keys
from dialer.livekit_standin import DialRecord, LiveKitStandIn
from dialer.local_stack import KOMBU_UNACKED_KEY, LocalStack, idle_fast_forward, point_app_at
from dialer.logs import MaskingFilter
from dialer.models import AttemptRecord, CallingWindow, CandidateData, JobState, RetryPolicy
from dialer.phone import mask
from dialer.results_queue import ResultPublisher
from dialer.runtime import Runtime
from dialer.settings import Settings
from dialer.webhooks import LOOPBACK_NETWORKS, WebhookService
from dialer.webhooks.receiver import Received, WebhookReceiver

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
# The demo starts on Monday 2 March 2026, 07:00 UTC: before the window opens in Europe, at night
# in the Americas and in the evening in Australia, so calling hours visibly matter.
DEMO_START = datetime(2026, 3, 2, 7, 0, tzinfo=UTC)
TRUNK_ID = "ST_demo_trunk"
FROM_NUMBER = "+3225550100"
QUEUES = ("intake", "dial", "results", "webhooks")
DEFAULT_TIMEOUT_S = DEMO_TIME_LIMIT_S
# The demo's webhook endpoints: receiver path -> the events it subscribes to. Each path has a
# receiver of its own, writing the payloads it accepted to `webhooks/<name>/`.
DEMO_ENDPOINTS: dict[str, list[str]] = {"/crm": ["screening.completed"], "/ats": ["*"]}

# Dial scenario at the stand-in for each persona (answering personas need no entry).
PERSONA_DIAL: dict[str, str | list[str]] = {
    "busy": "busy",
    "busy_then_answer": ["busy", "answer"],
    "no_answer": "no_answer",
    "no_answer_then_answer": ["no_answer", "answer"],
    "invalid": "invalid",
    "decline": "decline",
    "voicemail": "voicemail",
    "voicemail_then_answer": ["voicemail", "answer"],
}


class ClockTrace:
    """Every offset the shared demo clock had, with the real time it took effect.

    The demo clock is real time plus an offset in Redis (`RedisClock`); only `drive` moves it
    (`start_at` once, then `advance` while idle). Recording each change here lets a test turn a
    real wall-clock timestamp (say, the stand-in's record of a dial) into the demo time every
    process saw at that moment. A change takes effect somewhere between the real times just
    before and just after the Redis write; a timestamp inside that gap is ambiguous (`None`).
    """

    def __init__(self) -> None:
        self.points: list[tuple[float, float, float]] = []  # (real before, real after, offset)

    def record(self, before: float, after: float, offset: float) -> None:
        self.points.append((before, after, offset))

    def offset_at(self, wall: float) -> float | None:
        offset: float | None = None
        for before, after, value in self.points:
            if wall >= after:
                offset = value
            elif wall >= before:
                return None  # changed while this happened: cannot tell which side
            else:
                break
        return offset

    def demo_time(self, wall: float) -> datetime | None:
        offset = self.offset_at(wall)
        return None if offset is None else datetime.fromtimestamp(wall + offset, UTC)


@dataclass(frozen=True)
class JobView:
    """One candidate's job as it ended, with the window and policy that applied to it."""

    call_id: str
    name: str
    phone_e164: str
    zones: tuple[str, ...]
    persona: str
    state: str
    final_status: str
    attempts: list[AttemptRecord]
    window: CallingWindow
    policy: RetryPolicy
    max_attempts: int
    final_result: CandidateData | None
    language: str | None
    attempt: int = 0  # the latest (or current) dial number
    dial_stage: str = ""
    detail: str = ""

    @property
    def outcomes(self) -> list[str]:
        return [a.outcome for a in self.attempts]


@dataclass
class DemoRun:
    """Everything one run of the demo scenario produced, for the summary and for tests."""

    total: int
    problems: list[str]
    finished: bool
    elapsed_s: float
    jobs: dict[str, JobView]
    dials: list[DialRecord]
    deliveries: list[Received]
    endpoints: dict[str, str]  # receiver path -> endpoint id
    secret: str
    clock: ClockTrace
    data_dir: Path
    dead_letters: list[str] = field(default_factory=list)
    webhook_dead: int = 0
    broker: dict[str, int] = field(default_factory=dict)
    """Broker state at the end: queue lengths, unacknowledged messages, kombu's undeliverable
    queue (a message published to a queue with no binding lands there)."""
    restarts: list[str] = field(default_factory=list)
    """Workers or beat that exited on their own during the run and were restarted."""
    spool_left: list[str] = field(default_factory=list)
    """Result copies still in the agent's spool at the end (not sent, not receipted, or given
    up: `sent/`, `quarantine/`): empty when every result reached the results consumer."""

    @property
    def log_path(self) -> Path:
        """This process's log during the run (stand-in, simulated agents): warnings and errors,
        and the info lines of `agent.*` and `dialer.*`."""
        return self.data_dir / "logs" / "demo.log"

    @property
    def webhook_dir(self) -> Path:
        """One folder per endpoint (`crm`, `ats`) of `<webhook-id>.json` payload files."""
        return self.data_dir / "webhooks"

    @property
    def tally(self) -> dict[str, str]:
        """call_id -> final status (or the state it was left in)."""
        return {cid: j.final_status or j.state for cid, j in self.jobs.items()}

    @property
    def by_status(self) -> dict[str, int]:
        return dict(Counter(self.tally.values()))

    @property
    def webhooks_received(self) -> int:
        """Verified deliveries answered 2xx, one per webhook-id and endpoint."""
        return sum(1 for r in self.deliveries if r.accepted and not r.duplicate)

    def unexpected(self) -> list[str]:
        """One line per candidate whose final status is not what its persona produces under
        its job's retry policy (or that did not finish)."""
        lines = []
        for job in self.jobs.values():
            try:
                outcomes = expected_outcomes(
                    job.persona, policy=job.policy, max_attempts=job.max_attempts
                )
            except UnknownPersona as exc:
                lines.append(f"{job.call_id}: {exc.args[0]}")
                continue
            got = job.final_status or f"(still {job.state})"
            if got != outcomes[-1]:
                lines.append(
                    f"{job.call_id} ({job.persona}): {got} after {' → '.join(job.outcomes) or '-'}"
                    f", expected {outcomes[-1]} after {' → '.join(outcomes)}"
                )
        return lines


# Kept for callers of the first version: the summary's view of a run.
DemoOutcome = DemoRun


def load_personas(path: Path) -> tuple[str, dict[str, str]]:
    data = json.loads(path.read_text(encoding="utf-8"))
    return str(data.get("default", "cooperative")), dict(data.get("personas", {}))


def dial_scenarios(personas: dict[str, str]) -> dict[str, str | list[str]]:
    return {number: PERSONA_DIAL[p] for number, p in personas.items() if p in PERSONA_DIAL}


@dataclass(frozen=True)
class DemoParts:
    """What `demo_stack` yields."""

    stack: LocalStack
    standin: LiveKitStandIn
    receivers: dict[str, WebhookReceiver]  # endpoint path -> its receiver
    runtime: Runtime
    secret: str
    endpoints: dict[str, str]  # receiver path -> endpoint id
    spool_dir: Path

    def received(self) -> list[Received]:
        """Every delivery any demo receiver got, in arrival order."""
        found = [r for rx in self.receivers.values() for r in rx.received()]
        return sorted(found, key=lambda r: r.received_at)


@contextmanager
def demo_stack(
    data_dir: Path,
    personas: dict[str, str],
    default_persona: str,
    *,
    workers: int = 1,
    concurrency: int = 4,
    redis_url: str | None = None,
    redis_appendfsync: AppendFsync = "always",
    extra_env: Mapping[str, str] | None = None,
) -> Iterator[DemoParts]:
    """Stand-in + receivers in this process; Redis, worker(s) and beat as child processes.

    This process plays the backend (it enqueues) and, through the stand-in's `on_answer`, the
    voice agent. The environment variables it needs for that are set for the duration of the
    block only, so a test session that runs several stacks is not left pointing at a dead Redis.

    The embedded Redis fsyncs its append-only file before every reply
    (`redis_appendfsync="always"`), so even a crashed Redis (the fault runs SIGKILL it) loses no
    write anyone was told had happened; docs/OPERATIONS.md has the production trade-off.
    """
    from agent.personas import PersonaCallHandler

    data_dir = data_dir.resolve()  # passed to child processes that run in another folder
    handler = PersonaCallHandler(personas, default_persona)
    standin = LiveKitStandIn(
        dial_scenarios(personas), ring_seconds=0.2, hang_seconds=5.0, on_answer=handler
    )
    spool_dir = data_dir / "spool"
    env = {
        "DIALER_CLOCK": "redis",
        "DIALER_CALLS_PER_SECOND": "20",
        "DIALER_MAX_CONCURRENT_CALLS": "8",
        "DIALER_RINGING_TIMEOUT_S": "5",
        # The demo's receivers listen on loopback: allow exactly that, nothing else private.
        "DIALER_WEBHOOK_ALLOW_NETWORKS": LOOPBACK_NETWORKS,
        "DIALER_SPOOL_DIR": str(spool_dir),
        **(extra_env or {}),
    }
    saved = {k: os.environ.get(k) for k in (*_LIVEKIT_ENV, *env, "REDIS_URL")}
    stack: LocalStack | None = None
    receivers: dict[str, WebhookReceiver] = {}
    standin.start()
    try:
        secret = _secret()
        for path in DEMO_ENDPOINTS:
            out_dir = data_dir / "webhooks" / path.strip("/")
            receivers[path] = WebhookReceiver(secret, out_dir=out_dir).start()
        env.update(
            {
                "LIVEKIT_URL": standin.url,
                "LIVEKIT_API_KEY": standin.api_key,
                "LIVEKIT_API_SECRET": standin.api_secret,
                "LIVEKIT_SIP_OUTBOUND_TRUNK_ID": TRUNK_ID,
                "LIVEKIT_SIP_FROM_NUMBER": FROM_NUMBER,
            }
        )
        stack = LocalStack(
            data_dir,
            redis_url=redis_url,
            workers=workers,
            concurrency=concurrency,
            env_overrides=env,
            redis_appendfsync=redis_appendfsync,
        )
        stack.start()
        assert stack.redis_url
        os.environ.update(env)
        os.environ["REDIS_URL"] = stack.redis_url
        point_app_at(stack.redis_url)
        settings = Settings()
        runtime = Runtime.for_url(stack.redis_url, settings)
        handler.attach(stack.redis_url, spool_dir, standin)
        webhooks = WebhookService.from_settings(runtime.client, runtime.keys, settings)
        endpoints = {}
        for path, events in DEMO_ENDPOINTS.items():
            endpoint = webhooks.endpoints.add(receivers[path].url(path), events=events,
                                              secret=secret,
                                              description=f"demo receiver {path}")  # fmt: skip
            endpoints[path] = endpoint.id
        RedisClock(runtime.client, runtime.keys.clock_offset).start_at(DEMO_START)
        yield DemoParts(stack, standin, receivers, runtime, secret, endpoints, spool_dir)
    finally:
        if stack is not None:
            stack.stop()
        for receiver in receivers.values():
            receiver.stop()
        standin.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


_LIVEKIT_ENV = (
    "LIVEKIT_URL",
    "LIVEKIT_API_KEY",
    "LIVEKIT_API_SECRET",
    "LIVEKIT_SIP_OUTBOUND_TRUNK_ID",
    "LIVEKIT_SIP_FROM_NUMBER",
)


def _secret() -> str:
    from dialer.webhooks import generate_secret

    return generate_secret()


def enqueue_csv(
    runtime: Runtime, csv_path: Path, template_path: Path | None
) -> tuple[int, list[str]]:
    template = load_template(template_path)
    accepted = 0
    problems: list[str] = []
    now = runtime.clock.now()
    for row in read_rows(csv_path, template=template):
        if row.payload is None:
            problems.append(f"line {row.line}: {row.error}")
            continue
        try:
            runtime.intake.submit(row.payload, now, source=f"csv:{csv_path.name}:{row.line}")
            accepted += 1
        except ValidationFailed as exc:
            problems.append(f"line {row.line}: {exc}")
        except JobConflict as exc:
            problems.append(f"line {row.line}: {exc}")
    return accepted, problems


# How long nothing may be in flight before the clock jumps ahead (real seconds).
IDLE_BEFORE_JUMP_S = 0.3
TICK_S = 0.1
SPOOL_FLUSH_EVERY_S = 0.5


def drive(
    runtime: Runtime,
    total: int,
    *,
    timeout_s: float,
    on_tick: Callable[[dict[str, int], datetime], None] | None = None,
    trace: ClockTrace | None = None,
    spool: ResultPublisher | None = None,
) -> bool:
    """Wait for every job to finish, jumping the shared clock forward while idle.

    `trace` records each clock change; `spool` is flushed now and then: this process plays the
    voice agent, whose results wait on disk while Redis is unreachable and until the results
    consumer's receipt shows they were processed (sent again when it does not come: the queue
    lost them). The run ends only when every result was receipted. A Redis that is briefly
    away (a restart) is waited for, not fatal.
    """
    clock = RedisClock(runtime.client, runtime.keys.clock_offset)
    keys: Keys = runtime.keys
    deadline = time.monotonic() + timeout_s
    idle_since: float | None = None
    next_flush = 0.0
    if trace is not None and not trace.points:
        wall = time.time()
        trace.record(wall, wall, clock.offset())
    while time.monotonic() < deadline:
        try:
            if spool is not None and time.monotonic() >= next_flush:
                next_flush = time.monotonic() + SPOOL_FLUSH_EVERY_S
                if spool.outstanding():
                    spool.flush()
            counts = runtime.store.count_by_state()
            if on_tick is not None:
                on_tick(counts, clock.now())
            done = counts.get(JobState.DONE.value, 0) >= total
            spooled = spool is not None and bool(spool.outstanding())
            if (
                done
                and not spooled
                and not runtime.client.zcard(keys.due_webhooks)
                and not work_in_broker(runtime.client)
            ):
                return True
            jump = idle_fast_forward(
                runtime.client, keys, now=clock.now().timestamp(), queues=QUEUES
            )
            if jump > 0:
                # Let in-flight work settle for a moment before skipping time.
                idle_since = idle_since or time.monotonic()
                if time.monotonic() - idle_since > IDLE_BEFORE_JUMP_S:
                    before = time.time()
                    offset = float(runtime.client.incrbyfloat(keys.clock_offset, jump + 0.001))
                    if trace is not None:
                        trace.record(before, time.time(), offset)
                    idle_since = None
            else:
                idle_since = None
        except (redis.ConnectionError, redis.TimeoutError):
            idle_since = None  # Redis is restarting: wait for it
        time.sleep(TICK_S)
    return False


def work_in_broker(client: redis.Redis) -> bool:
    """Whether a task message is queued or held by a worker (other than the beat's ticks).

    A job counts as done when its final result is recorded, but the task that recorded it
    emits the webhook deliveries after that, and a message held by a killed worker comes back
    only after the visibility timeout: the run is over only when those are through too."""
    if any(client.llen(q) for q in QUEUES):
        return True
    for raw in client.hvals(KOMBU_UNACKED_KEY):
        try:
            routing_key = json.loads(raw)[2]  # kombu keeps [message, exchange, routing key]
        except (ValueError, IndexError, TypeError):
            return True
        if routing_key != "beat":
            return True
    return False


def collect_jobs(
    runtime: Runtime, personas: dict[str, str], default_persona: str
) -> dict[str, JobView]:
    jobs: dict[str, JobView] = {}
    for call_id in runtime.store.list_ids(limit=100_000):
        job = runtime.store.get(call_id)
        jobs[call_id] = JobView(
            call_id=call_id,
            name=job.request.candidate_name,
            phone_e164=job.phone_e164,
            zones=tuple(job.zones),
            persona=personas.get(job.phone_e164, default_persona),
            state=job.state.value,
            final_status=job.final_status.value if job.final_status else "",
            attempts=runtime.store.attempts(call_id),
            window=runtime.consumer.window_for(job),
            policy=runtime.consumer.policy_for(job),
            max_attempts=job.max_attempts,
            final_result=job.final_result,
            language=job.final_result.language if job.final_result else None,
            attempt=job.attempt,
            dial_stage=job.dial_stage,
            detail=job.detail,
        )
    return jobs


def collect(
    runtime: Runtime, personas: dict[str, str], default_persona: str
) -> list[dict[str, Any]]:
    """The summary rows (one per candidate)."""
    return [_row(j) for j in collect_jobs(runtime, personas, default_persona).values()]


def _row(job: JobView) -> dict[str, Any]:
    return {
        "call_id": job.call_id,
        "name": job.name,
        "phone": mask(job.phone_e164),
        "zone": job.zones[0] if job.zones else "",
        "persona": job.persona,
        "state": job.state,
        "status": job.final_status,
        "attempts": " → ".join(job.outcomes),
        "outcomes": job.outcomes,
        "language": job.language,
    }


@dataclass(frozen=True)
class Tick:
    """Handed to `run_scenario`'s `on_tick` about ten times a second (fault injection, progress)."""

    parts: DemoParts
    counts: dict[str, int]
    now: datetime
    elapsed_s: float
    total: int


def run_scenario(
    data_dir: Path,
    *,
    candidates: Path | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    workers: int = 1,
    concurrency: int = 4,
    redis_url: str | None = None,
    redis_appendfsync: AppendFsync = "always",
    extra_env: Mapping[str, str] | None = None,
    on_tick: Callable[[Tick], None] | None = None,
    on_queued: Callable[[int, list[str]], None] | None = None,
) -> DemoRun:
    """Run the demo scenario (the bundled candidates unless `candidates` is given) on a fresh
    stack under `data_dir` and return what happened, without printing anything."""
    csv_path = candidates or EXAMPLES / "candidates.csv"
    personas_path = csv_path.with_name("personas.json")
    template_path = csv_path.with_name("job.json")
    if not personas_path.exists():
        raise ConfigError(
            f"{personas_path} not found: the demo needs a personas file next to the CSV"
        )
    default_persona, personas = load_personas(personas_path)
    data_dir = data_dir.resolve()
    if running_server(data_dir / "redis") is not None:
        raise ConfigError(
            f"another demo (or `dialer run`) is running in {data_dir}: wait for it to end, or "
            "give this one another --data-dir"
        )
    if data_dir.exists():
        shutil.rmtree(data_dir)
    started = time.monotonic()
    trace = ClockTrace()
    with demo_stack(
        data_dir,
        personas,
        default_persona,
        workers=workers,
        concurrency=concurrency,
        redis_url=redis_url,
        redis_appendfsync=redis_appendfsync,
        extra_env=extra_env,
    ) as parts:
        stack, runtime = parts.stack, parts.runtime
        wall = time.time()
        trace.record(wall, wall, RedisClock(runtime.client, runtime.keys.clock_offset).offset())
        stack.wait_ready()
        accepted, problems = enqueue_csv(
            runtime, csv_path, template_path if template_path.exists() else None
        )
        if on_queued is not None:
            on_queued(accepted, problems)
        assert stack.redis_url
        spool = ResultPublisher(stack.redis_url, parts.spool_dir)
        stop_logging = log_to(data_dir / "logs" / "demo.log")
        try:

            def tick(counts: dict[str, int], now: datetime) -> None:
                if on_tick is not None:
                    on_tick(Tick(parts, counts, now, time.monotonic() - started, accepted))

            finished = drive(
                runtime, accepted, timeout_s=timeout_s, on_tick=tick, trace=trace, spool=spool
            )
        finally:
            spool_left = [
                str(p.relative_to(parts.spool_dir))
                for p in (*spool.outstanding(), *spool.quarantined())
            ]
            spool.close()
            stop_logging()
        jobs = collect_jobs(runtime, personas, default_persona)
        dead = [str(x) for x in runtime.client.lrange(runtime.keys.dead_letters, 0, -1)]
        webhook_dead = int(runtime.client.llen(runtime.keys.webhook_dead))
        broker = _broker_state(runtime.client)
        restarts = list(stack.restarts)
        dials = parts.standin.dials
        deliveries = parts.received()
    return DemoRun(
        total=accepted,
        problems=problems,
        finished=finished,
        elapsed_s=time.monotonic() - started,
        jobs=jobs,
        dials=dials,
        deliveries=deliveries,
        endpoints=parts.endpoints,
        secret=parts.secret,
        clock=trace,
        data_dir=data_dir,
        dead_letters=dead,
        webhook_dead=webhook_dead,
        broker=broker,
        restarts=restarts,
        spool_left=spool_left,
    )


def log_to(path: Path) -> Callable[[], None]:
    """Send this process's log records to `path` for the run: warnings and errors of everything,
    and the info lines of our own loggers (`agent.*`, `dialer.*`: each simulated call's result
    and where it went). The stand-in and the simulated agents run here; the worker and beat
    processes log under the same folder. Returns the function that undoes it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.INFO)
    handler.addFilter(_ours_or_warning)
    handler.addFilter(MaskingFilter())  # phone numbers masked, secrets removed, as everywhere
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(threadName)s] %(message)s")
    )
    raised = [logging.getLogger(n) for n in ("agent", "dialer")]
    levels = [lg.level for lg in raised]
    for lg in raised:
        if lg.getEffectiveLevel() > logging.INFO:
            lg.setLevel(logging.INFO)
    logging.getLogger().addHandler(handler)

    def undo() -> None:
        logging.getLogger().removeHandler(handler)
        handler.close()
        for lg, level in zip(raised, levels, strict=True):
            lg.setLevel(level)

    return undo


def _ours_or_warning(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING or record.name.split(".")[0] in ("agent", "dialer")


def _broker_state(client: redis.Redis) -> dict[str, int]:
    state = {f"queue {q}": int(client.llen(q)) for q in (*QUEUES, "ae.undeliver")}
    state["unacked"] = int(client.hlen(KOMBU_UNACKED_KEY))
    return state


def _progress_view(counts: dict[str, int], now: datetime, total: int, received: int) -> Group:
    table = Table(title=f"demo clock {now:%a %d %b %H:%M} UTC", expand=False)
    for state in JobState:
        table.add_column(state.value, justify="right")
    table.add_row(*(str(counts.get(s.value, 0)) for s in JobState))
    done = counts.get(JobState.DONE.value, 0)
    bar = "█" * int(30 * done / max(total, 1))
    return Group(table, f"[bold]{done}/{total}[/] done  {bar}  webhooks received: {received}")


def run_demo(
    *,
    candidates: Path | None = None,
    data_dir: Path | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    console: Console | None = None,
) -> int:
    """Run the demo and print its summary; 0 when every candidate ended as its persona should
    within `timeout_s`, 1 otherwise (the differences are listed)."""
    console = console or Console()
    csv_path = candidates or EXAMPLES / "candidates.csv"
    data_dir = data_dir or Path(".dialer") / "demo"
    redis_url = os.environ.get("REDIS_URL") or None
    console.print(f"[bold]dialer demo[/]: {csv_path} → {data_dir}")
    console.print(
        "starting "
        + ("Redis at REDIS_URL" if redis_url else "embedded Redis")
        + ", LiveKit stand-in, webhook receiver, worker and beat…"
    )
    if redis_url:
        import redis as redis_lib

        if redis_lib.Redis.from_url(redis_url).dbsize():
            raise ConfigError(
                f"REDIS_URL points at a database that is not empty: the demo needs an empty one "
                f"(e.g. {redis_url.rsplit('/', 1)[0]}/15 after FLUSHDB), or unset REDIS_URL to use "
                "an embedded Redis"
            )
    with Live(console=console, refresh_per_second=4, transient=True) as live:

        def queued(accepted: int, problems: list[str]) -> None:
            for problem in problems:
                live.console.print(f"[red]rejected[/] {problem}")
            live.console.print(f"queued {accepted} candidates")

        def tick(t: Tick) -> None:
            received = sum(1 for r in t.parts.received() if r.accepted and not r.duplicate)
            live.update(_progress_view(t.counts, t.now, t.total, received))

        run = run_scenario(
            data_dir,
            candidates=candidates,
            timeout_s=timeout_s,
            redis_url=redis_url,
            on_tick=tick,
            on_queued=queued,
        )
    print_summary(console, run)
    unexpected = run.unexpected()
    if unexpected:
        console.print(f"[red]{len(unexpected)} candidate(s) did not end as their persona does:[/]")
        for line in unexpected:
            console.print(f"  {line}")
        console.print(f"[dim]→ logs: {run.data_dir / 'logs'}[/]")
    return 0 if run.finished and not unexpected else 1


# -- the summary ---------------------------------------------------------------------------------

# Narrower than this, the per-candidate table drops the name and phone columns and abbreviates.
WIDE_SUMMARY = 120


def compact_outcomes(outcomes: list[str]) -> str:
    """`busy, busy, busy` -> `busy×3`; `no_answer, completed` -> `no_answer→completed`."""
    runs: list[list[Any]] = []
    for outcome in outcomes:
        if runs and runs[-1][0] == outcome:
            runs[-1][1] += 1
        else:
            runs.append([outcome, 1])
    return "→".join(o if n == 1 else f"{o}×{n}" for o, n in runs)


def _zone_city(zone: str) -> str:
    return zone.rsplit("/", 1)[-1].replace("_", " ")


def print_summary(console: Console, run: DemoRun) -> None:
    wide = console.width >= WIDE_SUMMARY
    rows = [_row(j) for j in run.jobs.values()]
    table = Table(
        title="final status per candidate",
        box=box.SQUARE if wide else box.SIMPLE_HEAD,
        pad_edge=wide,
        show_edge=wide,
    )
    if wide:
        for column in ("call_id", "name", "phone", "zone", "persona", "attempts", "status"):
            table.add_column(column)
    else:
        table.add_column("call_id", no_wrap=True)
        table.add_column("zone", max_width=11, overflow="ellipsis", no_wrap=True)
        table.add_column("persona", max_width=18, overflow="fold")
        table.add_column("attempts", max_width=22, overflow="fold")
        table.add_column("status", no_wrap=True)
    for row in rows:
        status = row["status"] or f"[yellow]{row['state']}[/]"
        if wide:
            table.add_row(row["call_id"], row["name"], row["phone"], row["zone"], row["persona"],
                          row["attempts"], status)  # fmt: skip
        else:
            table.add_row(row["call_id"], _zone_city(row["zone"]), row["persona"],
                          compact_outcomes(row["outcomes"]), status)  # fmt: skip
    console.print(table)
    totals = Table(title="totals", box=box.SIMPLE_HEAD)
    totals.add_column("status")
    totals.add_column("candidates", justify="right")
    for status, count in sorted(run.by_status.items()):
        totals.add_row(status, str(count))
    console.print(totals)
    console.print(
        f"{len(run.dials)} dials, {run.webhooks_received} signed webhook deliveries received → "
        f"[bold]{run.webhook_dir}[/]"
    )
    verdict = "[green]finished[/]" if run.finished else "[red]did not finish in time[/]"
    console.print(f"{verdict} in {run.elapsed_s:.1f} s")
