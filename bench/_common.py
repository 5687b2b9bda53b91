"""Shared helpers for the pipeline benchmarks (`bench/pacing.py`, `bench/throughput.py`,
`bench/fanout.py`): statistics, request builders, a simulated voice agent, and a local stack
(embedded Redis, real Celery worker and beat processes, the LiveKit stand-in in this process).

This module is also imported by the bench *workers* (`celery worker -I bench._common`), where it
registers the `bench.noop` task (the baseline of `bench/throughput.py`) and, when
`BENCH_PROFILE_DIR` is set, profiles every pool process with cProfile. Keep its top level light:
heavy imports live inside the functions that only the bench process calls.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tasks.app import app  # noqa: E402  (the worker's one Celery app)

if TYPE_CHECKING:
    import redis

    from dialer.livekit_standin import AnsweredCall, LiveKitStandIn
    from dialer.local_stack import LocalStack
    from dialer.runtime import Runtime

TRUNK_ID = "ST_bench_trunk"
FROM_NUMBER = "+3225550100"
NOOP_TASK = "bench.noop"
LIVEKIT_ONLY_TASK = "bench.livekit_only"

# ---------------------------------------------------------------------------------------------
# Worker side: the no-op baseline task and the optional profiler
# ---------------------------------------------------------------------------------------------

_noop_client: Any = None


@app.task(name=NOOP_TASK)  # type: ignore[untyped-decorator]
def noop(key: str) -> None:
    """The baseline: a task that does nothing but record when it ran (one RPUSH), so the bench
    can time the same broker, queue and worker processes the dial task uses."""
    global _noop_client
    if _noop_client is None:
        import redis as redis_lib

        _noop_client = redis_lib.Redis.from_url(os.environ.get("REDIS_URL") or app.conf.broker_url)
    _noop_client.rpush(key, repr(time.time()))


@app.task(name=LIVEKIT_ONLY_TASK)  # type: ignore[untyped-decorator]
def livekit_only(key: str, index: int) -> None:
    """The LiveKit part of a dial alone: CreateRoom -> CreateDispatch -> CreateSIPParticipant
    through the dial path's own LiveKit client (`LiveKitDialer.dial`), then one RPUSH of the
    time, with none of the job store, gates, pacing or slots. Next to `noop`, it shows how much
    of a dial's cost the three LiveKit round trips (and the stand-in serving them on the same
    cores) take by themselves."""
    from dialer.livekit_dialer import DialPlan
    from tasks.context import run_async
    from tasks.dial import dial_service

    plan = DialPlan(
        call_id=key,
        attempt=1,
        room_name=f"{key}-{index}",
        phone_e164=phone_for(index),
        room_metadata="{}",
        dispatch_metadata="{}",
        participant_identity="candidate",
        ringing_timeout_s=30,
        max_call_duration_s=600,
        empty_timeout_s=30,
    )
    run_async(dial_service().dialer.dial(plan))
    noop(key)


def _install_profiler(out_dir: str) -> None:
    """cProfile each pool process, timed in CPU time (`time.process_time`), so waiting for
    Redis or LiveKit does not count and the hot spots are where the CPU goes. The stats are
    written to `out_dir/<pid>.prof` every few seconds after a task (a SIGKILLed or SIGTERMed
    child never reaches an exit hook)."""
    import cProfile

    from celery import signals

    state: dict[str, Any] = {}

    @signals.worker_process_init.connect(weak=False)  # type: ignore[untyped-decorator]
    def _start(**_: Any) -> None:
        profiler = cProfile.Profile(time.process_time)
        state["profiler"] = profiler
        state["dumped"] = time.monotonic()
        profiler.enable()

    @signals.task_postrun.connect(weak=False)  # type: ignore[untyped-decorator]
    def _dump(**_: Any) -> None:
        profiler = state.get("profiler")
        if profiler is None or time.monotonic() - state["dumped"] < 2.0:
            return
        profiler.disable()
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        profiler.dump_stats(str(Path(out_dir) / f"{os.getpid()}.prof"))
        state["dumped"] = time.monotonic()
        profiler.enable()


if os.environ.get("BENCH_PROFILE_DIR"):
    _install_profiler(os.environ["BENCH_PROFILE_DIR"])


# What-if switches (off by default; the benches' flags turn them on), applied in the bench
# workers only, so a configuration change can be measured before it lands.

if os.environ.get("BENCH_QUEUE_ORDER"):
    # celeryconfig.broker_transport_options["queue_order_strategy"] is "priority": kombu then
    # polls the worker's queues in strict -Q order, so a dial backlog starves "results".
    app.conf.broker_transport_options = {
        **(app.conf.broker_transport_options or {}),
        "queue_order_strategy": os.environ["BENCH_QUEUE_ORDER"],
    }


# ---------------------------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of `values`."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100.0 * len(ordered)))
    return float(ordered[min(rank, len(ordered)) - 1])


def max_in_window(times: Sequence[float], window_s: float = 1.0) -> int:
    """The most events in any half-open window [t, t + window_s) (dialer.pacing's counter)."""
    from dialer.pacing import most_in_window

    return most_in_window(times, window_s)


def max_concurrent_since(timeline: Sequence[tuple[float, int]], since: float) -> int:
    """Peak of the stand-in's concurrency timeline after `since` (monotonic)."""
    before = [n for t, n in timeline if t < since]
    peak = before[-1] if before else 0
    for t, n in timeline:
        if t >= since:
            peak = max(peak, n)
    return peak


# ---------------------------------------------------------------------------------------------
# Requests
# ---------------------------------------------------------------------------------------------

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ALWAYS_OPEN: dict[str, list[dict[str, str]]] = {
    day: [{"start": "00:00", "end": "24:00"}] for day in WEEKDAYS
}


def phone_for(index: int) -> str:
    """A valid Belgian mobile number, distinct per index (+32 47x xx xx xx)."""
    return f"+3247{index % 10_000_000:07d}"


def screening_request(call_id: str, phone: str, **extra: Any) -> dict[str, Any]:
    """A small valid ScreeningRequest whose calling window is open all week."""
    body: dict[str, Any] = {
        "call_id": call_id,
        "candidate_name": "Bench Candidate",
        "job_title": "Warehouse Operator",
        "office_location": "Antwerpen",
        "knockout_questions": [
            {"id": "q1", "text": "Mag je wettelijk werken in Belgie?", "data_key": "permit"}
        ],
        "open_questions": [{"id": "oq1", "text": "Waarom wil je hier werken?"}],
        "phone_number": phone,
        "timezone": "Europe/Brussels",
        "calling_window": ALWAYS_OPEN,
    }
    body.update(extra)
    return body


def submit_jobs(runtime: Runtime, prefix: str, count: int, **extra: Any) -> list[str]:
    """Submit `count` jobs through the real intake (`Dialer.submit`); returns the call_ids."""
    from dialer.client import Dialer

    dialer = Dialer(runtime)
    ids = []
    for i in range(count):
        call_id = f"{prefix}-{i:05d}"
        dialer.submit(screening_request(call_id, phone_for(i), **extra), source="bench")
        ids.append(call_id)
    return ids


def wait_until(predicate: Any, timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


# ---------------------------------------------------------------------------------------------
# The simulated voice agent
# ---------------------------------------------------------------------------------------------


def call_of(call: AnsweredCall) -> tuple[str, int]:
    """(call_id, attempt) of an answered call, from the dispatch metadata the dialer sent."""
    body = json.loads(call.dispatch_metadata or call.room_metadata or "{}")
    return str(body["call_id"]), int(body["dialer"]["attempt"])


def _publisher_main(redis_url: str, calls: Any) -> None:
    """Child process of `SimulatedAgent`: publishes one agent_result/completed per (call_id,
    attempt) it receives, until it receives None."""
    from datetime import UTC, datetime

    from dialer.local_stack import point_app_at
    from dialer.messages import ResultMessage
    from dialer.models import CandidateData, Status
    from tasks.context import publish_result

    point_app_at(redis_url)
    while (item := calls.get()) is not None:
        call_id, attempt = item
        now = datetime.now(UTC)
        data = CandidateData(
            call_id=call_id,
            status=Status.COMPLETED,
            attempt=attempt,
            consent_given=True,
            passed_knockout=True,
            started_at=now,
            ended_at=now,
        )
        publish_result(ResultMessage.from_agent(data, now))


class SimulatedAgent:
    """Plays the voice agent's part in a bench or test (there is no agent worker): when the
    stand-in reports a call answered, hold it for `hold_s`, hang up through the stand-in, then
    publish a ResultMessage (kind agent_result, status completed) on the results queue exactly
    as the agent would, so the results consumer records the attempt and frees the slot.

    Use as the stand-in's `on_answer` hook (it runs on the stand-in's event loop). Publishing
    happens in a child process (`start(redis_url)`): in this process, where the stand-in stamps
    every request it receives, Celery's publishing held the interpreter long enough to stamp
    some INVITEs up to 18 ms late, a measuring artefact in `bench/pacing.py`.
    """

    def __init__(self, hold_s: float = 0.4, *, publish: bool = True) -> None:
        self.hold_s = hold_s
        self.publish = publish
        self.standin: LiveKitStandIn | None = None
        self.published = 0
        self.errors: list[str] = []
        self._calls: Any = None
        self._process: Any = None

    def attach(self, standin: LiveKitStandIn) -> SimulatedAgent:
        self.standin = standin
        standin.on_answer = self
        return self

    def start(self, redis_url: str) -> SimulatedAgent:
        """Start the publishing process (the broker is `redis_url`)."""
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        self._calls = context.Queue()
        self._process = context.Process(
            target=_publisher_main, args=(redis_url, self._calls), daemon=True
        )
        self._process.start()
        return self

    async def __call__(self, call: AnsweredCall) -> None:
        import asyncio

        if self.hold_s > 0:
            await asyncio.sleep(self.hold_s)
        assert self.standin is not None
        self.standin.hang_up(call.room_name)
        if not self.publish:
            return
        try:
            if self._calls is None:
                raise RuntimeError("SimulatedAgent.start(redis_url) was not called")
            self._calls.put(call_of(call))
            self.published += 1
        except Exception as exc:  # reported by the bench, never silently lost
            self.errors.append(f"{type(exc).__name__}: {exc}")

    def close(self) -> None:
        if self._process is not None:
            self._calls.put(None)
            self._process.join(timeout=30)
            if self._process.exitcode != 0:
                self.errors.append(f"publisher process ended with {self._process.exitcode}")
            self._process = None


# ---------------------------------------------------------------------------------------------
# The stack
# ---------------------------------------------------------------------------------------------


@dataclass
class Bench:
    stack: LocalStack
    runtime: Runtime
    standin: LiveKitStandIn | None
    data_dir: Path
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def client(self) -> redis.Redis:
        return self.runtime.client


def livekit_env(standin: LiveKitStandIn) -> dict[str, str]:
    return {
        "LIVEKIT_URL": standin.url,
        "LIVEKIT_API_KEY": standin.api_key,
        "LIVEKIT_API_SECRET": standin.api_secret,
        "LIVEKIT_SIP_OUTBOUND_TRUNK_ID": TRUNK_ID,
        "LIVEKIT_SIP_FROM_NUMBER": FROM_NUMBER,
    }


def _stack_class() -> type[LocalStack]:
    from dialer.local_stack import LocalStack

    class BenchStack(LocalStack):
        """LocalStack whose workers also import this module (`-I bench._common`), for the
        no-op baseline task and the optional profiler. Otherwise the same command line."""

        def worker_options(self) -> list[str]:
            level = os.environ.get("BENCH_WORKER_LOG_LEVEL", "INFO")
            pool = os.environ.get("BENCH_POOL")
            extra = ["-P", pool] if pool else []
            return ["-I", "bench._common", "-l", level, *extra]

    return BenchStack


_REDIS_PIDS: dict[str, int] = {}


@contextmanager
def bench_redis() -> Iterator[str]:
    """The Redis every run of a bench uses: embedded (AOF on, as in production) unless
    REDIS_URL is set, and then it must be an empty database (it is flushed between runs and at
    the end). One server for all runs, so this process's Celery producer keeps its broker."""
    from dialer.embedded_redis import EmbeddedRedis
    from dialer.local_stack import point_app_at

    url = os.environ.get("REDIS_URL") or None
    server = None
    tmp = Path(tempfile.mkdtemp(prefix="dialer-bench-redis-"))
    if url:
        import redis as redis_lib

        if redis_lib.Redis.from_url(url).dbsize():
            raise SystemExit(
                f"REDIS_URL {url} is not an empty database; unset it to use an embedded Redis"
            )
    else:
        server = EmbeddedRedis(tmp, appendonly=True).start()
        url = server.url
        _REDIS_PIDS[url] = server._proc.pid if server._proc is not None else 0
    point_app_at(url)
    try:
        yield url
    finally:
        if server is not None:
            server.stop()
        else:
            import redis as redis_lib

            redis_lib.Redis.from_url(url).flushdb()
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def bench_stack(
    redis_url: str,
    *,
    workers: int,
    concurrency: int,
    env: Mapping[str, str],
    standin: LiveKitStandIn | None = None,
    beat: bool = True,
    keep: bool = False,
    queues: str | None = None,
) -> Iterator[Bench]:
    """Worker and beat processes with `env` on an emptied `redis_url` (from `bench_redis`)."""
    import redis as redis_lib

    from dialer.runtime import Runtime
    from dialer.settings import Settings

    redis_lib.Redis.from_url(redis_url).flushdb()
    data_dir = Path(tempfile.mkdtemp(prefix="dialer-bench-"))
    full_env = {"DIALER_SPOOL_DIR": str(data_dir / "spool"), **env}
    if standin is not None:
        full_env = {**livekit_env(standin), **full_env}
    options: dict[str, Any] = {"queues": queues} if queues else {}
    stack = _stack_class()(
        data_dir, redis_url=redis_url, workers=workers, concurrency=concurrency,
        beat=beat, env_overrides=full_env, **options,
    )  # fmt: skip
    started = time.monotonic()
    try:
        stack.start()
        stack.wait_ready(timeout=120)
        print(f"# stack ready in {time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)
        runtime = Runtime.for_url(redis_url, Settings())
        yield Bench(
            stack=stack,
            runtime=runtime,
            standin=standin,
            data_dir=data_dir,
            extra={"redis_pid": _REDIS_PIDS.get(redis_url, 0)},
        )
    finally:
        stack.stop()
        if keep:
            print(f"# logs kept in {data_dir}/logs", file=sys.stderr)
        else:
            shutil.rmtree(data_dir, ignore_errors=True)


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _group_pids(pgid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getpgid(int(entry.name)) == pgid:
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def cpu_snapshot(bench: Bench) -> dict[str, float]:
    """CPU seconds used so far (Linux /proc), by part: worker main processes, pool processes,
    beat, Redis (embedded only) and this process (the stand-in / receivers / bench itself)."""
    parts = {"worker main": 0.0, "worker pool": 0.0, "beat": 0.0, "redis": 0.0, "bench": 0.0}
    for child in bench.stack.children:
        if not child.alive():
            continue
        if child.name == "beat":
            parts["beat"] += sum(_cpu_seconds(p) for p in _group_pids(child.proc.pid))
            continue
        for pid in _group_pids(child.proc.pid):
            part = "worker main" if pid == child.proc.pid else "worker pool"
            parts[part] += _cpu_seconds(pid)
    redis_pid = bench.extra.get("redis_pid")
    if redis_pid:
        parts["redis"] = _cpu_seconds(redis_pid)
    parts["bench"] = _cpu_seconds(os.getpid())
    return parts


def cpu_delta(before: dict[str, float], after: dict[str, float], per: int) -> str:
    """'part=ms per item' for each part, and the total."""
    items = {k: (after[k] - before[k]) * 1000 / max(per, 1) for k in after}
    text = " ".join(f"{k.replace(' ', '_')}={v:.2f}" for k, v in items.items())
    return f"{text} total={sum(items.values()):.2f} (CPU ms per item)"


def redis_command_counts(client: redis.Redis) -> dict[str, int]:
    """Calls per command Redis has executed so far (all clients), from INFO commandstats."""
    stats = client.info("commandstats")
    return {
        name.removeprefix("cmdstat_"): int(v.get("calls", 0))
        for name, v in stats.items()
        if isinstance(v, dict)
    }


def redis_commands(client: redis.Redis) -> int:
    """Commands Redis has executed so far (all clients)."""
    return sum(redis_command_counts(client).values())


def command_mix(before: dict[str, int], after: dict[str, int], per: int, top: int = 12) -> str:
    """The most frequent commands between two `redis_command_counts`, per item."""
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    ranked = sorted(((v, k) for k, v in delta.items() if v > 0), reverse=True)[:top]
    return " ".join(f"{k}={v / max(per, 1):.1f}" for v, k in ranked)


def add_whatif_flags(parser: Any) -> None:
    """The what-if switches shared by the benches (see the BENCH_* block at the top)."""
    parser.add_argument(
        "--queue-order",
        default=None,
        choices=("priority", "round_robin"),
        help="override celeryconfig's queue_order_strategy in the workers",
    )
    parser.add_argument(
        "--queues", default=None,
        help="worker -Q list (default: dialer.local_stack.ALL_QUEUES, the `dialer worker` order)",
    )  # fmt: skip


def whatif_env(args: Any) -> dict[str, str]:
    env = {}
    if args.queue_order:
        env["BENCH_QUEUE_ORDER"] = args.queue_order
    return env


def whatif_summary(args: Any) -> str:
    parts = []
    if args.queue_order:
        parts.append(f"queue_order_strategy={args.queue_order}")
    if args.queues:
        parts.append(f"-Q {args.queues}")
    return ", ".join(parts) if parts else "none (production configuration)"


def profile_env(profile_dir: Path | None) -> dict[str, str]:
    """Worker env that turns the CPU profiler on, writing into an emptied `profile_dir`."""
    if profile_dir is None:
        return {}
    profile_dir.mkdir(parents=True, exist_ok=True)
    for old in profile_dir.glob("*.prof"):
        old.unlink()
    return {"BENCH_PROFILE_DIR": str(profile_dir.resolve())}


def print_profile(profile_dir: Path, top: int = 30) -> None:
    """The pool processes' profiles (see `_install_profiler`), merged."""
    import pstats

    files = sorted(str(p) for p in profile_dir.glob("*.prof"))
    if not files:
        print("# no profiles written")
        return
    stats = pstats.Stats(files[0])
    for extra in files[1:]:
        stats.add(extra)
    print(f"# cProfile of {len(files)} pool processes (all tasks they ran), by own time:")
    stats.sort_stats("tottime").print_stats(top)
    print("# ... by cumulative time:")
    stats.sort_stats("cumulative").print_stats(top)


def machine() -> str:
    import platform

    return f"{os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"


def banner(title: str, lines: Sequence[str]) -> None:
    print(f"# {title}")
    for line in lines:
        print(f"# {line}")
    sys.stdout.flush()
