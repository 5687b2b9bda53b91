"""Dial throughput: unpaced dials per second through the whole dial path, next to a no-op Celery
task on the same Redis, queue and worker processes in the same run.

What runs: embedded Redis, Celery worker processes and one beat (the production command line,
plus `-I bench._common` for the baseline task), and the LiveKit stand-in in this process answering
every call at once. Pacing and the concurrency cap are set out of the way
(DIALER_CALLS_PER_SECOND / DIALER_MAX_CONCURRENT_CALLS = 1e6), so the figure is the cost of the
machinery, not a limit.

- pipeline: N jobs submitted through the real intake with `not_before` a few seconds ahead, so
  they all fall due together; from there the beat moves them to the dial queue (at most 200
  queued at a time) and each dial task runs the gates (cancel, do-not-call, window, breaker,
  attempt lock, GCRA turn, slot lease, job-state transitions) and CreateRoom -> CreateDispatch ->
  CreateSIPParticipant through the real `livekit-api` client. Rate = dials per second at the
  stand-in, first to last CreateSIPParticipant. Results are not part of this figure (no
  simulated agent: the calls stay up).
- baseline: N `bench.noop` tasks (one RPUSH of the time they ran) sent to the same "dial" queue;
  rate = first to last execution.

    python bench/throughput.py [--jobs 1000] [--runs 3] [--workers 2] [--concurrency 4]
                               [--profile DIR]

Last line: `throughput pipeline_per_s=X noop_per_s=Y ratio=Z` (medians of the runs; ratio of the
medians). Target: ratio >= 0.4.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import (
    LIVEKIT_ONLY_TASK,
    NOOP_TASK,
    Bench,
    add_whatif_flags,
    banner,
    bench_redis,
    bench_stack,
    command_mix,
    cpu_delta,
    cpu_snapshot,
    machine,
    median,
    print_profile,
    profile_env,
    redis_command_counts,
    redis_commands,
    submit_jobs,
    wait_until,
    whatif_env,
    whatif_summary,
)


def noop_rate(bench: Bench, run: int, count: int) -> float:
    return _task_rate(bench, NOOP_TASK, f"bench:noop:{run}", count)


def livekit_only_rate(bench: Bench, run: int, count: int) -> float:
    return _task_rate(bench, LIVEKIT_ONLY_TASK, f"bench:livekit:{run}", count)


def _task_rate(bench: Bench, task: str, key: str, count: int) -> float:
    """Send `count` of a bench task (each records when it ran under `key`) to the "dial"
    queue; executions per second, first to last."""
    from tasks.app import app

    with app.producer_or_acquire() as producer:
        for index in range(count):
            args = [key] if task == NOOP_TASK else [key, index]
            app.send_task(task, args=args, queue="dial", producer=producer)
    if not wait_until(lambda: bench.client.llen(key) >= count, timeout=count / 20 + 60):
        raise SystemExit(f"only {bench.client.llen(key)} of {count} {task} tasks ran")
    times = sorted(float(t) for t in bench.client.lrange(key, 0, -1))
    return (len(times) - 1) / (times[-1] - times[0])


def pipeline_rate(bench: Bench, run: int, count: int) -> tuple[float, float, str]:
    """(dials per second first to last dial, seconds from due time to the last dial, the
    Redis commands and CPU per dial from the end of intake to the last dial)."""
    standin = bench.standin
    assert standin is not None
    mark = standin.dial_count
    lead_s = 2.0 + count * 0.004  # time to submit them all before the first falls due
    due = datetime.now(UTC) + timedelta(seconds=lead_s)
    submit_jobs(bench.runtime, f"tp{run}", count, not_before=due.isoformat())
    left = (due - datetime.now(UTC)).total_seconds()
    if left < 0.5:
        print(f"# warning: submitting took longer than the lead ({left:.1f} s left)")
    cpu0, cmd0 = cpu_snapshot(bench), redis_command_counts(bench.client)
    if not wait_until(lambda: standin.dial_count - mark >= count, timeout=lead_s + count / 5 + 60):
        raise SystemExit(f"only {standin.dial_count - mark} of {count} jobs were dialed")
    time.sleep(0.5)  # the last dial tasks finish their job-state writes
    cpu1, cmd1 = cpu_snapshot(bench), redis_command_counts(bench.client)
    dials = standin.dials_from(mark)
    times = sorted(d.wall_time for d in dials)
    commands = sum(cmd1.values()) - sum(cmd0.values())
    cost = (
        f"{commands / count:.1f} Redis commands per dial; {cpu_delta(cpu0, cpu1, count)}\n"
        f"#          commands per dial: {command_mix(cmd0, cmd1, count)}"
    )
    return (len(times) - 1) / (times[-1] - times[0]), times[-1] - due.timestamp(), cost


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1000, help="dials (and no-ops) per run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=4, help="pool processes per worker")
    parser.add_argument("--profile", type=Path, default=None, help="cProfile the pool processes")
    parser.add_argument("--keep-logs", action="store_true")
    add_whatif_flags(parser)
    args = parser.parse_args(argv)

    from dialer.livekit_standin import LiveKitStandIn

    standin = LiveKitStandIn(default_scenario="answer", ring_seconds=0.2, hang_seconds=5.0)
    env = {
        "DIALER_CALLS_PER_SECOND": "1000000",
        "DIALER_MAX_CONCURRENT_CALLS": "1000000",
        **whatif_env(args),
    }
    env.update(profile_env(args.profile))
    banner(
        "dial throughput bench",
        [
            f"machine: {machine()}",
            f"{args.workers} worker processes x {args.concurrency} pool processes + beat; "
            "pacing and concurrency cap at 1e6 (out of the way); stand-in answers at once",
            f"{args.runs} runs x {args.jobs} dials and {args.jobs} no-op tasks (queue 'dial')",
            f"what-if fixes: {whatif_summary(args)}",
        ],
    )
    pipeline: list[float] = []
    noop: list[float] = []
    livekit: list[float] = []
    standin.start()
    try:
        with (
            bench_redis() as redis_url,
            bench_stack(
                redis_url,
                workers=args.workers,
                concurrency=args.concurrency,
                env=env,
                standin=standin,
                keep=args.keep_logs,
                queues=args.queues,
            ) as bench,
        ):
            # Warm-up: every pool process imports, connects and builds its clients once.
            noop_rate(bench, -1, 200)
            livekit_only_rate(bench, -1, 100)
            pipeline_rate(bench, -1, 100)
            for run in range(args.runs):
                cpu0, cmd0 = cpu_snapshot(bench), redis_commands(bench.client)
                n = noop_rate(bench, run, args.jobs)
                cpu1, cmd1 = cpu_snapshot(bench), redis_commands(bench.client)
                time.sleep(1.0)
                cpu2 = cpu_snapshot(bench)
                lk = livekit_only_rate(bench, run, args.jobs)
                cpu3 = cpu_snapshot(bench)
                time.sleep(1.0)
                p, span, cost = pipeline_rate(bench, run, args.jobs)
                noop.append(n)
                livekit.append(lk)
                pipeline.append(p)
                print(
                    f"run {run + 1}: pipeline_per_s={p:.1f} (last dial {span:.1f} s after due) "
                    f"noop_per_s={n:.1f} ratio={p / n:.3f} "
                    f"livekit_only_per_s={lk:.1f} ({lk / n:.3f} of the no-op)",
                    flush=True,
                )
                print(f"#   LiveKit only: {cpu_delta(cpu2, cpu3, args.jobs)}")
                print(
                    f"#   no-op: {(cmd1 - cmd0) / args.jobs:.1f} Redis commands per task; "
                    + cpu_delta(cpu0, cpu1, args.jobs)
                )
                print(f"#   dial:  {cost}", flush=True)
                time.sleep(1.0)
    finally:
        standin.stop()
    if args.profile:
        print_profile(args.profile)
    p_med, n_med = median(pipeline), median(noop)
    ratio = p_med / n_med
    print(f"# ratio target >= 0.4: {'met' if ratio >= 0.4 else 'MISSED'} (medians of {args.runs})")
    lk_med = median(livekit)
    print(
        f"# LiveKit round trips alone (no job store, gates or beat): {lk_med:.1f}/s, "
        f"{lk_med / n_med:.2f} of the no-op; the whole dial path reaches "
        f"{p_med / lk_med:.2f} of that"
    )
    print(f"throughput pipeline_per_s={p_med:.1f} noop_per_s={n_med:.1f} ratio={ratio:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
