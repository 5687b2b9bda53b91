"""A whole pipeline on one machine: Redis (embedded unless REDIS_URL), the LiveKit stand-in,
Celery workers and one beat as child processes. Used by `dialer run`, `dialer demo`, the
end-to-end tests and the benchmarks, so they all exercise the same production processes.

A supervisor thread restarts a worker or the beat that exits on its own (a crash), as a process
manager's restart policy would in production (`restart: unless-stopped` in docker-compose.yml);
`restarts` lists what it restarted and why to look in which log.

Fault injection for the end-to-end tests: `kill_worker()` SIGKILLs a worker's whole process
group (main process and pool children, as an OOM kill or a lost machine would), `add_worker()`
starts a replacement, and `restart_redis()` stops the embedded Redis (a clean shutdown, so the
AOF is complete) and starts it again on the same port with the same data directory, so workers,
beat and clients reconnect to the same URL and find everything as it was; `crash_redis()` then
`start_redis()` does the same with a SIGKILL instead of a shutdown.

While the stack runs, its embedded Redis's URL is in `<data_dir>/redis/url`, so one-shot
`dialer` commands with the same DIALER_DATA_DIR share that server instead of starting a second
one on the same files (`dialer.embedded_redis`).
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import redis
from kombu import pools

from dialer.embedded_redis import AppendFsync, EmbeddedRedis
from dialer.keys import Keys

# Every queue, in the order a worker that consumes them all drains them (celeryconfig's
# `queue_order_strategy: priority`): finishing calls (results: frees slots) and the beat's ticks
# come before starting new ones, so a dial backlog cannot starve the results that end calls.
ALL_QUEUES = "results,beat,intake,dial,webhooks,default"
# How often the supervisor looks for crashed children (seconds); a child that died sooner than
# MIN_UPTIME_S after its start failed to start and is not restarted, nor any past MAX_RESTARTS.
SUPERVISE_EVERY_S = 1.0
MIN_UPTIME_S = 5.0
MAX_RESTARTS = 10


@dataclass
class ChildProcess:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    role: str = "worker"  # "worker" | "beat": what the supervisor starts in its place
    deliberate_exit: bool = False  # stopped or killed on purpose: not restarted
    started_at: float = field(default_factory=time.monotonic)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process group (the Celery pool children too); SIGKILL is reaped."""
        self.deliberate_exit = True
        if self.alive():
            os.killpg(self.proc.pid, sig)
            if sig == signal.SIGKILL:
                self.proc.wait()

    def stop(self, timeout: float = 10.0) -> None:
        self.deliberate_exit = True
        if not self.alive():
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


@dataclass
class LocalStack:
    """Start with `with LocalStack(data_dir) as stack:`; children inherit `stack.env`."""

    data_dir: Path
    redis_url: str | None = None
    workers: int = 1
    concurrency: int = 4
    queues: str = ALL_QUEUES
    beat: bool = True
    env_overrides: Mapping[str, str] = field(default_factory=dict)
    redis_appendonly: bool = True
    redis_appendfsync: AppendFsync = "everysec"
    supervise: bool = True
    embedded: EmbeddedRedis | None = None
    children: list[ChildProcess] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    restarts: list[str] = field(default_factory=list)
    _worker_index: int = 0
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    _stopping: threading.Event = field(default_factory=threading.Event, repr=False)
    _supervisor: threading.Thread | None = field(default=None, repr=False)

    def start(self) -> LocalStack:
        # Absolute: the children run in the project folder, not in the caller's working folder.
        self.data_dir = Path(self.data_dir).resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not self.redis_url:
            self.embedded = EmbeddedRedis(
                self.data_dir / "redis",
                appendonly=self.redis_appendonly,
                appendfsync=self.redis_appendfsync,
            ).start()
            self.redis_url = self.embedded.url
        self.env = {
            **os.environ,
            "REDIS_URL": self.redis_url,
            "DIALER_DATA_DIR": str(self.data_dir),
            "PYTHONUNBUFFERED": "1",
            **self.env_overrides,
        }
        for _ in range(self.workers):
            self.add_worker()
        if self.beat:
            self.start_beat()
        if self.supervise:
            self._stopping.clear()
            self._supervisor = threading.Thread(
                target=self._supervise_loop, name="local-stack-supervisor", daemon=True
            )
            self._supervisor.start()
        return self

    def _supervise_loop(self) -> None:
        while not self._stopping.wait(SUPERVISE_EVERY_S):
            self.restart_crashed()

    def restart_crashed(self) -> list[ChildProcess]:
        """Start a replacement for each worker or beat that exited without being stopped or
        killed through this stack; returns the replacements."""
        started = []
        with self._lock:
            if self._stopping.is_set():
                return []
            for child in list(self.children):
                if child.alive() or child.deliberate_exit:
                    continue
                if child.started_at > time.monotonic() - MIN_UPTIME_S:
                    continue  # failed at start: a configuration error, `wait_ready` reports it
                if len(self.restarts) >= MAX_RESTARTS:
                    continue  # a crash loop: leave it dead and visible
                child.deliberate_exit = True  # replaced once
                code = child.proc.returncode
                replacement = self.start_beat() if child.role == "beat" else self.add_worker()
                self.restarts.append(
                    f"{child.name} exited (code {code}); started {replacement.name}; "
                    f"see {child.log_path}"
                )
                started.append(replacement)
        return started

    def _spawn(self, name: str, args: list[str], role: str = "worker") -> ChildProcess:
        log_path = self.data_dir / "logs" / f"{name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        handle = log_path.open("ab")
        proc = subprocess.Popen(
            args,
            env=self.env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: kill() reaches the pool children
            cwd=str(Path(__file__).resolve().parent.parent),
        )
        handle.close()
        child = ChildProcess(name, proc, log_path, role=role)
        with self._lock:
            self.children.append(child)
        return child

    def start_worker(
        self,
        index: int,
        *,
        queues: str | None = None,
        pool: str = "prefork",
        concurrency: int | None = None,
    ) -> ChildProcess:
        return self._spawn(
            f"worker-{index}-{secrets.token_hex(2)}",
            [
                sys.executable, "-m", "celery", "-A", "tasks.app", "worker",
                "-Q", queues or self.queues,
                "-P", pool,
                "-c", str(concurrency or self.concurrency),
                "-n", f"worker{index}-{secrets.token_hex(3)}@%h",
                "--without-gossip", "--without-mingle", "--without-heartbeat",
                *self.worker_options(),
            ],
        )  # fmt: skip

    def worker_options(self) -> list[str]:
        """Options after the fixed part of a worker's command line (a subclass adds `-I`)."""
        return ["-l", "INFO"]

    def add_worker(self) -> ChildProcess:
        """Start one more worker (a replacement after a kill, or scale-out) with a new index."""
        with self._lock:
            index, self._worker_index = self._worker_index, self._worker_index + 1
            return self.start_worker(index)

    def kill_worker(self, child: ChildProcess | None = None) -> ChildProcess:
        """SIGKILL a worker (the oldest live one by default) with its pool children. Messages it
        had taken stay unacknowledged in Redis; Celery's Redis transport hands them out again
        once they are older than `visibility_timeout` (DIALER_VISIBILITY_TIMEOUT_S)."""
        victim = child or next(iter(self.workers_alive()), None)
        if victim is None:
            raise RuntimeError("no live worker to kill")
        victim.kill(signal.SIGKILL)
        return victim

    def stop_redis(self) -> None:
        """Stop the embedded Redis cleanly (the AOF is written out); data dir and port kept."""
        if self.embedded is None:
            raise RuntimeError("only an embedded Redis can be stopped (REDIS_URL was given)")
        self.embedded.stop()

    def start_redis(self) -> None:
        """Start the embedded Redis again on the same port from the same data dir (AOF)."""
        if self.embedded is None:
            raise RuntimeError("only an embedded Redis can be started (REDIS_URL was given)")
        self.embedded.start()

    def crash_redis(self) -> None:
        """SIGKILL the embedded Redis, as a crash would (no shutdown, no final AOF write; with
        `redis_appendfsync="always"` every acknowledged write is on disk already)."""
        if self.embedded is None:
            raise RuntimeError("only an embedded Redis can be crashed (REDIS_URL was given)")
        self.embedded.kill()

    def restart_redis(self, down_s: float = 0.0) -> None:
        """Stop Redis, stay down `down_s` seconds, start it again on the same port."""
        self.stop_redis()
        time.sleep(down_s)
        self.start_redis()

    def start_beat(self) -> ChildProcess:
        schedule = self.data_dir / "celerybeat-schedule"
        return self._spawn(
            "beat",
            [sys.executable, "-m", "celery", "-A", "tasks.app", "beat", "-s", str(schedule),
             "-l", "INFO"],
            role="beat",
        )  # fmt: skip

    def workers_alive(self) -> list[ChildProcess]:
        with self._lock:
            return [c for c in self.children if c.role == "worker" and c.alive()]

    def client(self) -> redis.Redis:
        assert self.redis_url
        return redis.Redis.from_url(self.redis_url, decode_responses=True)

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Wait until every worker has answered a ping over the broker."""
        from tasks.app import app

        assert self.redis_url
        point_app_at(self.redis_url)
        deadline = time.monotonic() + timeout
        expected = len(self.workers_alive())
        while time.monotonic() < deadline:
            for child in self.children:
                if not child.alive() and not child.deliberate_exit:
                    raise RuntimeError(f"{child.name} exited at start; see {child.log_path}")
            replies = app.control.ping(timeout=1.0) or []
            if len(replies) >= expected:
                return
        raise RuntimeError(f"workers did not come up in {timeout:.0f} s; see {self.data_dir}/logs")

    def stop(self) -> None:
        self._stopping.set()
        if self._supervisor is not None:
            self._supervisor.join(timeout=10)
            self._supervisor = None
        with self._lock:
            for child in reversed(self.children):
                child.stop()
            self.children.clear()
        if self.embedded is not None:
            self.embedded.stop()

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def point_app_at(url: str) -> None:
    """Point this process's Celery app at `url` and drop its cached broker connection pools, so a
    process that runs several stacks one after another (a test session) never pings or sends
    through the previous stack's Redis."""
    from tasks.app import app, use_broker

    if app.conf.broker_url == url and app._pool is not None:
        return
    use_broker(url)
    # kombu keeps one connection pool per broker in a process-wide registry, and Celery takes
    # the app's pool from it: closing only the app's pool left a closed pool registered for the
    # old URL, handed back ("Acquire on closed pool") when a later stack used that URL again.
    pools.reset()  # type: ignore[no-untyped-call]
    app._pool = None
    app.amqp._producer_pool = None


# Kombu's Redis transport keeps every message a worker has taken but not yet acknowledged
# (task_acks_late) until the ack, or until it is restored after visibility_timeout; this sorted
# set holds each one's delivery time (real seconds), the hash the messages themselves.
KOMBU_UNACKED_INDEX = "unacked_index"
KOMBU_UNACKED_KEY = "unacked"
# A message taken this recently is work in progress. An older one is a dead worker's (it is
# redelivered in time, and its job shows as dialing / in a call meanwhile if that matters) or
# one whose ack was lost to a broker outage (its task had finished): neither may stop the clock
# until kombu's next sweep, which can be minutes away.
FRESH_UNACKED_S = 10.0


def idle_fast_forward(
    client: redis.Redis, keys: Keys, *, now: float, queues: tuple[str, ...]
) -> float:
    """For an accelerated run: when nothing is in progress and nothing is due, return how many
    seconds to advance the shared clock to the next due item (0 when work is in flight).

    In flight means: a job dialing or in a call, a message waiting in a queue, or a message a
    worker took in the last `FRESH_UNACKED_S` seconds and has not acknowledged yet (a dial task
    between its calling-window gate and the dial must not see the clock jump hours ahead)."""
    busy = client.scard(f"{keys.prefix}:state:dialing") or client.scard(
        f"{keys.prefix}:state:in_call"
    )
    if busy:
        return 0.0
    if any(client.llen(q) for q in queues):
        return 0.0
    if client.zcount(KOMBU_UNACKED_INDEX, time.time() - FRESH_UNACKED_S, "+inf"):
        return 0.0
    nexts = []
    for key in (keys.due, keys.due_webhooks):
        first = client.zrange(key, 0, 0, withscores=True)
        if first:
            nexts.append(float(first[0][1]))
    if not nexts:
        return 0.0
    return max(0.0, min(nexts) - now)
