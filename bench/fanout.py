"""Webhook fan-out: results pushed onto the results queue, consumed, and delivered (signed) to
three webhook endpoints on loopback.

The endpoints subscribe ONLY to `screening.completed`: one result makes exactly three deliveries
(one per endpoint), and every figure below counts those completed-event deliveries only. The
`screening.attempt` event of each result is still emitted (event log) but delivered nowhere, so
an endpoint subscribed to every event (`*`, the default) would get twice the deliveries per
result; this bench does not measure that.

What runs: embedded Redis, Celery worker processes and one beat (the production command line),
and in this process three `dialer.webhooks.receiver.WebhookReceiver`s (real HTTP servers that
verify every Standard Webhooks signature). Loopback, and only loopback, is allowed as a target
with DIALER_WEBHOOK_ALLOW_NETWORKS=127.0.0.0/8,::1/128.

Jobs are set up first (not timed): submitted through the real intake with `not_before` a day
ahead (so nothing dials them), then moved to `dialing` on attempt 1 as the dial task would
(`tests/support/runtime.py` `start_dialing`), so the results consumer accepts their results. A
result is a ResultMessage (kind agent_result, status completed) sent with
`send_task("dialer.results.record", kwargs={"message": ...}, queue="results")`, the path the
agent's results take; the consumer records it, emits the events, and one
`dialer.webhooks.deliver` task per endpoint posts it.

- saturation: `--burst` results pushed at once; deliveries per second = all deliveries over
  the time from the first push to the last receipt (consuming the results counts, as it does in
  production). The rate between the 10th and 90th percentile receipt is printed too.
- latency: results pushed at a steady `--rate` per second for `--seconds`; for every delivery,
  receipt time (the receiver's clock, after verifying the signature) minus the time its result
  was pushed (same clock: same process); p50 and p99 over all deliveries.

    python bench/fanout.py [--runs 3] [--burst 1000] [--rate 50] [--seconds 20]

Last line: `fanout deliveries_per_s=X p50_ms=Y p99_ms=Z` (medians of the runs).
Targets: >= 300 deliveries/s on a 2-core machine; p99 < 250 ms at 50 results/s.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import (
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
    percentile,
    print_profile,
    profile_env,
    redis_command_counts,
    submit_jobs,
    wait_until,
    whatif_env,
    whatif_summary,
)

ENDPOINT_PATHS = ("/crm", "/ats", "/hris")
COMPLETED = "screening.completed"


def prepare_jobs(bench: Bench, prefix: str, count: int) -> list[str]:
    """Jobs in `dialing` on attempt 1, ready for a result (intake + the dial task's transition)."""
    from dialer.models import JobState
    from dialer.store import Change

    tomorrow = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    ids = submit_jobs(bench.runtime, prefix, count, not_before=tomorrow)
    store = bench.runtime.store
    now = datetime.now(UTC)
    for call_id in ids:
        store.transition(
            call_id,
            JobState.DIALING,
            now=now,
            allowed_from=(JobState.SCHEDULED,),
            expect_attempt=0,
            change=Change(fields={"attempt": "1", "dial_stage": "answered"}),
        )
    return ids


def result_message(call_id: str) -> dict[str, Any]:
    from dialer.messages import ResultMessage
    from dialer.models import CandidateData, Status

    now = datetime.now(UTC)
    data = CandidateData(
        call_id=call_id,
        status=Status.COMPLETED,
        attempt=1,
        consent_given=True,
        passed_knockout=True,
        started_at=now,
        ended_at=now,
    )
    return ResultMessage.from_agent(data, now).model_dump(mode="json")


class Pusher:
    """Sends results on the results queue through one producer; records each push time."""

    def __init__(self) -> None:
        from dialer.messages import RESULTS_QUEUE, RESULTS_TASK
        from tasks.app import app

        self.app = app
        self.task = RESULTS_TASK
        self.queue = RESULTS_QUEUE
        self.pushed_at: dict[str, float] = {}

    def push_all(self, ids: list[str]) -> None:
        bodies = [(call_id, result_message(call_id)) for call_id in ids]
        with self.app.producer_or_acquire() as producer:
            for call_id, body in bodies:
                self.pushed_at[call_id] = time.time()
                self.app.send_task(
                    self.task, kwargs={"message": body}, queue=self.queue, producer=producer
                )

    def push_steady(self, ids: list[str], rate: float) -> None:
        bodies = [(call_id, result_message(call_id)) for call_id in ids]
        interval = 1.0 / rate
        start = time.monotonic()
        with self.app.producer_or_acquire() as producer:
            for n, (call_id, body) in enumerate(bodies):
                delay = start + n * interval - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                self.pushed_at[call_id] = time.time()
                self.app.send_task(
                    self.task, kwargs={"message": body}, queue=self.queue, producer=producer
                )


def receipts(receivers: list[Any], prefix: str) -> list[tuple[str, float]]:
    """(call_id, receipt time) of every accepted completed-event delivery for this phase."""
    found = []
    for receiver in receivers:
        for record in receiver.accepted():
            body = json.loads(record.body)
            call_id = str(body.get("data", {}).get("call_id", ""))
            if body.get("type") == COMPLETED and call_id.startswith(prefix):
                found.append((call_id, record.received_at))
    return found


def wait_receipts(receivers: list[Any], prefix: str, expected: int, timeout: float) -> bool:
    return wait_until(lambda: len(receipts(receivers, prefix)) >= expected, timeout, interval=0.25)


def saturation(bench: Bench, receivers: list[Any], run: int, burst: int) -> tuple[float, str]:
    prefix = f"sat{run}-"
    ids = prepare_jobs(bench, prefix.rstrip("-"), burst)
    expected = burst * len(receivers)
    cpu0, cmd0 = cpu_snapshot(bench), redis_command_counts(bench.client)
    pusher = Pusher()
    pusher.push_all(ids)
    if not wait_receipts(receivers, prefix, expected, timeout=expected / 50 + 60):
        got = len(receipts(receivers, prefix))
        raise SystemExit(f"saturation: {got} of {expected} deliveries arrived")
    cpu1, cmd1 = cpu_snapshot(bench), redis_command_counts(bench.client)
    times = sorted(t for _, t in receipts(receivers, prefix))
    # The figure: every delivery over the time from the first push to the last receipt, so the
    # results consumer's work counts as well as the deliveries'.
    rate = expected / (times[-1] - min(pusher.pushed_at.values()))
    lo, hi = times[int(0.1 * len(times))], times[int(0.9 * len(times)) - 1]
    middle = (int(0.9 * len(times)) - int(0.1 * len(times)) - 1) / (hi - lo)
    cost = (
        f"{(sum(cmd1.values()) - sum(cmd0.values())) / expected:.1f} Redis commands per "
        f"delivery; {cpu_delta(cpu0, cpu1, expected)}\n"
        f"#          commands per delivery: {command_mix(cmd0, cmd1, expected)}\n"
        f"#          receipts 10th-90th percentile: {middle:.1f} deliveries/s; first receipt "
        f"{(times[0] - min(pusher.pushed_at.values())) * 1000:.0f} ms after the first push"
    )
    return rate, cost


def steady(
    bench: Bench, receivers: list[Any], run: int, rate: float, seconds: float
) -> tuple[float, float, float]:
    prefix = f"lat{run}-"
    count = int(rate * seconds)
    ids = prepare_jobs(bench, prefix.rstrip("-"), count)
    expected = count * len(receivers)
    pusher = Pusher()
    pusher.push_steady(ids, rate)
    if not wait_receipts(receivers, prefix, expected, timeout=60):
        got = len(receipts(receivers, prefix))
        raise SystemExit(f"steady: {got} of {expected} deliveries arrived")
    latencies = [(t - pusher.pushed_at[c]) * 1000 for c, t in receipts(receivers, prefix)]
    return percentile(latencies, 50), percentile(latencies, 99), max(latencies)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--burst", type=int, default=1000, help="results pushed at once")
    parser.add_argument("--rate", type=float, default=50.0, help="steady results per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="steady phase length")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=4, help="pool processes per worker")
    parser.add_argument("--profile", type=Path, default=None, help="cProfile the pool processes")
    parser.add_argument("--keep-logs", action="store_true")
    add_whatif_flags(parser)
    args = parser.parse_args(argv)

    from dialer.webhooks import LOOPBACK_NETWORKS, WebhookService, generate_secret
    from dialer.webhooks.receiver import WebhookReceiver

    receivers = [WebhookReceiver(generate_secret()).start() for _ in ENDPOINT_PATHS]
    env = {
        "DIALER_WEBHOOK_ALLOW_NETWORKS": LOOPBACK_NETWORKS,
        **whatif_env(args),
        **profile_env(args.profile),
    }
    banner(
        "webhook fan-out bench",
        [
            f"machine: {machine()}",
            f"{args.workers} worker processes x {args.concurrency} pool processes + beat; "
            f"{len(receivers)} verifying receivers on loopback (endpoints subscribe only to "
            "screening.completed: one delivery per endpoint per result)",
            f"{args.runs} runs: burst of {args.burst} results (saturation), then "
            f"{args.rate:g} results/s for {args.seconds:g} s (latency push -> receipt)",
            f"what-if fixes: {whatif_summary(args)}",
        ],
    )
    sat_rates: list[float] = []
    p50s: list[float] = []
    p99s: list[float] = []
    try:
        with (
            bench_redis() as redis_url,
            bench_stack(
                redis_url,
                workers=args.workers,
                concurrency=args.concurrency,
                env=env,
                keep=args.keep_logs,
                queues=args.queues,
            ) as bench,
        ):
            service = WebhookService(
                bench.client, bench.runtime.keys, allow_networks=LOOPBACK_NETWORKS
            )
            for path, receiver in zip(ENDPOINT_PATHS, receivers, strict=True):
                secret = receiver._state.secrets["*"]
                service.endpoints.add(
                    receiver.url(path), events=[COMPLETED], secret=secret,
                    description=f"bench receiver {path}",
                )  # fmt: skip
            service.close()
            # Warm-up: every pool process builds its runtime, webhook client and connections.
            saturation(bench, receivers, -1, 100)
            for run in range(args.runs):
                time.sleep(1.0)
                rate, cost = saturation(bench, receivers, run, args.burst)
                time.sleep(1.0)
                p50, p99, worst = steady(bench, receivers, run, args.rate, args.seconds)
                sat_rates.append(rate)
                p50s.append(p50)
                p99s.append(p99)
                print(
                    f"run {run + 1}: deliveries_per_s={rate:.1f} p50_ms={p50:.1f} "
                    f"p99_ms={p99:.1f} max_ms={worst:.1f}",
                    flush=True,
                )
                print(f"#   saturation: {cost}", flush=True)
                for receiver in receivers:
                    receiver.clear()
    finally:
        for receiver in receivers:
            receiver.stop()
    if args.profile:
        print_profile(args.profile)
    rate, p50, p99 = median(sat_rates), median(p50s), median(p99s)
    print(
        f"# targets: >= 300 deliveries/s {'met' if rate >= 300 else 'MISSED'}; p99 < 250 ms at "
        f"{args.rate:g} results/s {'met' if p99 < 250 else 'MISSED'} (medians of {args.runs})"
    )
    print(f"fanout deliveries_per_s={rate:.1f} p50_ms={p50:.1f} p99_ms={p99:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
