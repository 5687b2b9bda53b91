"""Issue 6, item 4: the demo scenario again, under faults, must end exactly like the clean run.

- A Celery worker SIGKILLed (its whole process group: main process and pool children) at
  random moments of the active phase, three seeds, two kills each. After each kill a
  replacement worker is started once the visibility timeout has passed: the dead worker's
  messages stay unacknowledged in Redis and kombu's Redis transport hands them out again only
  when they are older than `visibility_timeout` (DIALER_VISIBILITY_TIMEOUT_S, short here) and a
  consumer sweeps for them; a starting worker sweeps at once, a running one only every
  `unacked_restore_interval` x `unacked_restore_throttle` (10 x 10 s by default).
  Each kill waits (up to BUSY_WAIT_S) for a moment when calls are dialing or in progress, and
  each seed must have killed a worker with calls in flight at least once.
  Such a kill can land in the instant between kombu's BRPOP taking a message off its queue and
  recording it as unacknowledged: that message is gone (kombu's Redis transport is not atomic
  there). Nothing of the run may be lost to it: a dial or webhook message's work comes back
  from its due-set lease; a call's result is sent again by the agent's publisher (here the demo
  process), which keeps a copy until the results consumer's receipt exists
  (DIALER_RESULT_CONFIRM_S, short here); a dial's own outcome never takes the queue (the dial
  task records it through the consumer). A dial whose worker died after its SIP request is
  never dialed again: the redelivered message finds the call in its room, or leaves the attempt
  to its result (the simulated agent's, which arrives as any other) or, when the call produced
  none, to the reaper once the slot's lease (ringing + maximum call duration + 120 s; the
  maximum call duration is 60 s here) runs out: that attempt is `interrupted`.
- The embedded Redis stopped mid-run (a clean shutdown, AOF on) and started again on the same
  port from the same data directory; workers, beat and this process reconnect.
- The embedded Redis SIGKILLed mid-run (a crash: no shutdown) and started again the same way.
  The demo's Redis runs with `appendfsync always` (every write is on disk before Redis answers
  it), so a crash loses nothing any process was told had been written, and the same tally is
  the honest expectation. (With `everysec`, the production default discussed in
  docs/OPERATIONS.md, up to about a second of acknowledged writes can be lost, and jobs then
  redo steps or, for a job created in that second, vanish.)

Asserted each time: every job done, the final tally (status per call_id) equal to the clean
run's, no (call_id, attempt) dialed twice, no dial outside its calling window, every result
receipted (nothing left in the agent's spool, nothing given up), every final result delivered to
each endpoint under exactly one webhook-id (a delivery repeated after a crash carries the same
webhook-id, so receivers de-duplicate: the receiver counts such repeats as duplicates and they
are reported, not failed), nothing dead-lettered. Interrupted attempts are reported; never more
of them than calls were in flight when the faults struck.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dialer.demo import DemoRun, Tick
from tests.e2e.conftest import (
    check_attempt_events,
    check_dials_inside_calling_windows,
    check_finished,
    check_no_attempt_dialed_twice,
    check_webhooks,
    describe,
    report,
    scenario,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

# Longer than any task of the demo takes (a dial returns once the call is answered or has
# failed: well under a second here), so only a dead worker's messages are handed out again.
VISIBILITY_TIMEOUT_S = 8
# A worker killed while it posts a webhook leaves that delivery's lock behind; the lock expires
# after 4 x the webhook timeout + 30 s of real time (the demo clock cannot hurry it), and the
# delivery waits until then. The receiver is on loopback and answers at once: 2 s is plenty,
# and keeps such a wait to 38 s instead of 90 s.
# Messages a lost connection could not hand back wait for a worker's periodic sweep: every 2 s
# here (100 s by default), so they return soon after they are VISIBILITY_TIMEOUT_S old.
# How long a due kill waits for calls to be in flight before it happens anyway.
BUSY_WAIT_S = 10.0
# A dial whose worker died between its SIP request and a call is recorded `interrupted` by the
# reaper after the slot lease (5 + 60 + 120 s) and its next 30 s tick; then the retry runs.
FAULT_RUN_TIMEOUT_S = 330.0
# A result without the consumer's receipt after this long is sent again (the queue lost it).
RESULT_CONFIRM_S = 5
FAULT_ENV = {
    "DIALER_VISIBILITY_TIMEOUT_S": str(VISIBILITY_TIMEOUT_S),
    "DIALER_UNACKED_SWEEP_S": "2",
    "DIALER_WEBHOOK_TIMEOUT_S": "2",
    "DIALER_MAX_CALL_DURATION_S": "60",
    "DIALER_RESULT_CONFIRM_S": str(RESULT_CONFIRM_S),
}


@dataclass
class WorkerKiller:
    """`on_tick` hook: SIGKILL the live worker at seeded random moments, then start a
    replacement once its unacknowledged messages are old enough to be handed out again."""

    seed: int
    kills: int = 2
    log: list[str] = field(default_factory=list)
    killed_busy: int = 0  # kills that hit while jobs were dialing or in a call
    in_flight_at_kills: int = 0  # jobs dialing or in a call at the kills, summed
    _rng: random.Random = field(init=False)
    _next_kill: float | None = None
    _waited_since: float | None = None
    _replace_at: float | None = None
    _done: int = 0

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def __call__(self, tick: Tick) -> None:
        now = time.monotonic()
        stack = tick.parts.stack
        if self._next_kill is None and self._replace_at is None and self._done == 0:
            # First kill: somewhere in the first part of the active phase (all jobs queued).
            self._next_kill = now + self._rng.uniform(0.5, 12.0)
        if self._replace_at is not None and now >= self._replace_at:
            stack.add_worker()
            self._replace_at = None
            self.log.append(f"{tick.elapsed_s:6.1f}s replacement worker started")
            if self._done < self.kills:
                # Next kill: any moment from the replacement's start-up to well into its work.
                self._next_kill = now + self._rng.uniform(0.5, 10.0)
        if self._next_kill is not None and now >= self._next_kill:
            done = tick.counts.get("done", 0)
            if done >= tick.total:
                self._next_kill = None
                self.log.append(f"{tick.elapsed_s:6.1f}s all done before kill {self._done + 1}")
                self._done = self.kills
                return
            busy = tick.counts.get("dialing", 0) + tick.counts.get("in_call", 0)
            if not busy and now < self._next_kill + BUSY_WAIT_S:
                return  # wait for calls in flight: those are the interesting moments
            self._next_kill = None
            victim = stack.kill_worker()
            self._done += 1
            self.killed_busy += busy > 0
            self.in_flight_at_kills += busy
            self.log.append(
                f"{tick.elapsed_s:6.1f}s SIGKILL {victim.name} at demo {tick.now:%a %H:%M:%S}, "
                f"{done}/{tick.total} done, dialing/in call {busy}, "
                f"states {dict(sorted(tick.counts.items()))}"
            )
            self._replace_at = now + VISIBILITY_TIMEOUT_S + 0.5


@dataclass
class RedisRestarter:
    """`on_tick` hook: at the first moment after a seeded random delay when calls are in
    flight, stop Redis (cleanly, or with SIGKILL when `crash`), keep it down a little (the
    agent's results spool to disk, the workers lose their connections), start it again."""

    seed: int
    crash: bool = False
    down_s: float = 2.5
    log: list[str] = field(default_factory=list)
    appendfsync: str = ""  # the server's setting, read just before it went down
    in_flight: int = 0  # jobs dialing or in a call when it went down
    _at: float | None = None
    restarted: bool = False

    def __call__(self, tick: Tick) -> None:
        now = time.monotonic()
        if self._at is None:
            self._at = now + random.Random(self.seed).uniform(1.0, 10.0)
        if self.restarted or now < self._at:
            return
        if tick.counts.get("dialing", 0) + tick.counts.get("in_call", 0) == 0:
            return  # wait for calls in flight: results then have to survive the outage
        self.restarted = True
        self.in_flight = tick.counts.get("dialing", 0) + tick.counts.get("in_call", 0)
        counts = dict(sorted(tick.counts.items()))
        stack = tick.parts.stack
        self.appendfsync = str(tick.parts.runtime.client.config_get("appendfsync")["appendfsync"])
        if self.crash:
            stack.crash_redis()
        else:
            stack.stop_redis()
        how = "SIGKILLed" if self.crash else "stopped"
        self.log.append(f"{tick.elapsed_s:6.1f}s Redis {how} at demo {tick.now:%H:%M:%S}, {counts}")
        time.sleep(self.down_s)
        stack.start_redis()
        self.log.append(
            f"{tick.elapsed_s + self.down_s:6.1f}s Redis started again (same port, AOF)"
        )


def fault_run(data_dir: Path, hook: Callable[[Tick], None]) -> DemoRun:
    return scenario(data_dir, extra_env=FAULT_ENV, timeout_s=FAULT_RUN_TIMEOUT_S, on_tick=hook)


def check_same_as_clean(run: DemoRun, clean: DemoRun, *, in_flight: int) -> None:
    check_finished(run)
    check_webhooks(run)
    differ = [
        f"{describe(run, c)}; clean: {describe(clean, c)}"
        for c in clean.jobs
        if run.tally.get(c) != clean.tally[c]
    ]
    assert not differ, "final tally differs from the clean run:\n" + "\n".join(differ)
    interrupted = sum(o == "interrupted" for j in run.jobs.values() for o in j.outcomes)
    assert interrupted <= in_flight, f"{interrupted} attempts interrupted, {in_flight} in flight"
    check_no_attempt_dialed_twice(run)
    check_dials_inside_calling_windows(run)
    check_attempt_events(run)


def _demo_log(run: DemoRun) -> list[str]:
    return run.log_path.read_text(errors="replace").splitlines() if run.log_path.exists() else []


def notes(run: DemoRun) -> list[str]:
    """What to print about a fault run before asserting on it."""
    lines = [f"not done: {describe(run, c)}" for c, j in run.jobs.items() if j.state != "done"]
    lines += [
        f"interrupted attempt: {describe(run, c)}"
        for c, j in run.jobs.items()
        if "interrupted" in j.outcomes
    ]
    lines += [f"dead letter: {d[:300]}" for d in run.dead_letters]
    lines.append(
        f"duplicate deliveries (same webhook-id): {sum(r.duplicate for r in run.deliveries)}"
    )
    lines.append(f"broker at the end: {run.broker}")
    lines += [f"left in the agent's spool: {name}" for name in run.spool_left]
    resent = [line for line in _demo_log(run) if "sent again" in line]
    lines += [f"demo.log: {line[:300]}" for line in resent]
    lines += [f"restarted after a crash: {line}" for line in run.restarts]
    stuck = [c for c, j in run.jobs.items() if j.state != "done"]
    if stuck and run.log_path.exists():  # what this process (stand-in, agents) said about them
        said = run.log_path.read_text(errors="replace").splitlines()
        about = [line for line in said if any(c in line for c in stuck)]
        lines += [f"demo.log: {line[:400]}" for line in about[-80:]]
        lines += [f"demo.log: {line[:400]}" for line in said if "ERROR" in line][:20]
    return lines


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_worker_killed_at_random_moments(seed: int, clean_run: DemoRun, tmp_path: Path) -> None:
    killer = WorkerKiller(seed)
    run = fault_run(tmp_path / f"kill-{seed}", killer)
    report(run, f"worker SIGKILL, seed {seed}", [*killer.log, *notes(run)])
    assert any("SIGKILL" in line for line in killer.log), "no kill while work was left"
    assert killer.killed_busy >= 1, "no kill hit a worker while calls were in flight"
    check_same_as_clean(run, clean_run, in_flight=killer.in_flight_at_kills)


def test_redis_restarted_mid_run(clean_run: DemoRun, tmp_path: Path) -> None:
    restarter = RedisRestarter(seed=7)
    run = fault_run(tmp_path / "redis-restart", restarter)
    report(run, "Redis restart", [*restarter.log, *notes(run)])
    assert restarter.restarted
    check_same_as_clean(run, clean_run, in_flight=restarter.in_flight)


def test_redis_crashed_mid_run(clean_run: DemoRun, tmp_path: Path) -> None:
    """SIGKILL instead of a shutdown; the AOF (fsync always) is all Redis comes back with."""
    crasher = RedisRestarter(seed=11, crash=True)
    run = fault_run(tmp_path / "redis-crash", crasher)
    report(run, "Redis crash", [*crasher.log, *notes(run)])
    assert crasher.restarted and crasher.appendfsync == "always"
    check_same_as_clean(run, clean_run, in_flight=crasher.in_flight)
