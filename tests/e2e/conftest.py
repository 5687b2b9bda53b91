"""End-to-end runs of the demo scenario (issue 6, items 3 and 4) and the checks they share.

Real processes throughout: an embedded redis-server with AOF, Celery worker and beat child
processes running the production tasks, the LiveKit stand-in (Twirp over HTTP, the real
`livekit-api` client), the real screening flow in text mode answering as each candidate's
persona, and a webhook receiver on loopback that verifies every Standard Webhooks signature.
No mocks. Each run gets its own Redis and data directory, so these tests do not use the
session Redis of `tests/conftest.py` and ignore `REDIS_URL`.

Time: the demo clock is real time plus an offset kept in Redis, moved only by `dialer.demo.drive`
(hours of retries in seconds). The stand-in records each dial's real wall time; the run's
`ClockTrace` records every offset change with the real time it took effect, so a dial's demo time
is `wall_time + offset in effect then`. That is what the dialing worker's clock read at that
moment (every process reads the same offset from Redis), and it is sound because `drive` never
moves the clock while anything is in flight (a job dialing or in a call, a queued message, or a
message a worker holds unacknowledged), so no dial happens near a jump; a dial that did would
be reported as ambiguous. The job's attempt records are no substitute: an answered call's `at`
is stamped by the agent (see `test_clock_trace_agrees_with_the_dial_task_clock`).
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from dialer.demo import DemoRun, run_scenario
from dialer.livekit_standin import DialRecord
from dialer.windows import is_open, next_opening
from tests.e2e.expected import expected_outcomes, expected_status

RUN_TIMEOUT_S = 180.0
ENDPOINTS = ("/crm", "/ats")
COMPLETED = "screening.completed"
ATTEMPT = "screening.attempt"
RETRY = "screening.retry_scheduled"


@pytest.fixture(scope="session")
def clean_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoRun]:
    """The demo scenario without faults, run once per session (the fault runs compare to it)."""
    yield scenario(tmp_path_factory.mktemp("e2e") / "clean")


def scenario(data_dir: Path, *, timeout_s: float = RUN_TIMEOUT_S, **kwargs: Any) -> DemoRun:
    saved = os.environ.pop("REDIS_URL", None)  # always a fresh embedded Redis of its own
    try:
        return run_scenario(data_dir, timeout_s=timeout_s, **kwargs)
    finally:
        if saved is not None:
            os.environ["REDIS_URL"] = saved


# -- reading a run -------------------------------------------------------------------------------


def attempt_of(dial: DialRecord) -> tuple[str, int]:
    """(call_id, attempt) from the room name `screening-{call_id}-{attempt}`."""
    stem, _, attempt = dial.room_name.removeprefix("screening-").rpartition("-")
    return stem, int(attempt)


def dial_times(run: DemoRun) -> dict[tuple[str, int], datetime]:
    """Demo time of each dial (one per attempt, see `check_no_attempt_dialed_twice`)."""
    times: dict[tuple[str, int], datetime] = {}
    for dial in run.dials:
        when = run.clock.demo_time(dial.wall_time)
        assert when is not None, f"dial {dial.room_name} happened while the clock jumped"
        times[attempt_of(dial)] = when
    return times


def events(run: DemoRun, path: str, event_type: str | None = None) -> list[dict[str, Any]]:
    """Accepted deliveries at `path` (first of each webhook-id), as {id, type, data, ...}."""
    found = []
    for r in run.deliveries:
        if r.path != path or not r.accepted or r.duplicate:
            continue
        body = r.json()
        if event_type is None or body["type"] == event_type:
            found.append({"webhook_id": r.webhook_id, **body})
    return found


def describe(run: DemoRun, call_id: str) -> str:
    job = run.jobs[call_id]
    text = f"{call_id} ({job.persona}): {job.outcomes} -> {job.final_status or job.state}"
    if job.state != "done":
        text += f" [attempt {job.attempt}, stage {job.dial_stage!r}: {job.detail}]"
    return text


# -- checks shared by the clean and the fault runs -----------------------------------------------


def check_finished(run: DemoRun) -> None:
    """Every job done, nothing refused, nothing dead-lettered, every result receipted by the
    results consumer (no copy left in the agent's spool, none given up)."""
    assert run.problems == []
    assert run.total == 50 and len(run.jobs) == 50
    not_done = [describe(run, c) for c, j in run.jobs.items() if j.state != "done"]
    assert run.finished and not not_done, f"not finished in time: {not_done}"
    assert run.dead_letters == [], "messages were dead-lettered"
    assert run.webhook_dead == 0, "webhook deliveries were dead-lettered"
    assert run.spool_left == [], "results not receipted by the results consumer"


def check_expected_statuses(run: DemoRun) -> None:
    wrong = [
        f"{describe(run, c)}, expected {expected_outcomes(j.persona)}"
        for c, j in run.jobs.items()
        if j.final_status != expected_status(j.persona, max_attempts=j.max_attempts)
    ]
    assert not wrong, "\n".join(wrong)


def check_webhooks(run: DemoRun) -> int:
    """Every final result reaches each endpoint exactly once, signed; returns the number of
    duplicate deliveries (a retry of an id that had arrived), which receivers drop by id."""
    rejected = [(r.path, r.webhook_id, r.status, r.error) for r in run.deliveries if not r.accepted]
    assert rejected == [], f"deliveries refused by the receiver: {rejected}"
    verifier = Webhook(run.secret)
    for r in run.deliveries:  # the receiver verified already; check again, independently
        assert verifier.verify(r.body, r.headers) == r.json()
    for path in ENDPOINTS:
        ids_per_call: dict[str, set[str]] = defaultdict(set)
        for r in run.deliveries:
            body = r.json()
            if r.path == path and body["type"] == COMPLETED:
                assert r.webhook_id is not None
                ids_per_call[body["data"]["call_id"]].add(r.webhook_id)
        assert set(ids_per_call) == set(run.jobs), f"{path}: final results missing"
        twice = {c: ids for c, ids in ids_per_call.items() if len(ids) != 1}
        assert not twice, f"{path}: one final result under several webhook-ids: {twice}"
        for event in events(run, path, COMPLETED):
            data = event["data"]
            job = run.jobs[data["call_id"]]
            assert data["status"] == job.final_status, describe(run, job.call_id)
            assert [a["outcome"] for a in data["attempts"]] == job.outcomes
    crm_types = {e["type"] for e in events(run, "/crm")}
    assert crm_types == {COMPLETED}, "the CRM endpoint subscribed to screening.completed only"
    return sum(1 for r in run.deliveries if r.duplicate)


def check_attempt_events(run: DemoRun) -> None:
    """The ATS endpoint (all events) got one screening.attempt per attempt and one
    screening.retry_scheduled per retry, each under its own webhook-id."""
    attempts: dict[str, dict[int, str]] = defaultdict(dict)
    retries: Counter[str] = Counter()
    for event in events(run, "/ats", ATTEMPT):
        data = event["data"]
        assert data["attempt"] not in attempts[data["call_id"]]
        attempts[data["call_id"]][data["attempt"]] = data["outcome"]
    for event in events(run, "/ats", RETRY):
        retries[event["data"]["call_id"]] += 1
    for call_id, job in run.jobs.items():
        got = [attempts[call_id][n] for n in sorted(attempts[call_id])]
        assert got == job.outcomes, describe(run, call_id)
        assert sorted(attempts[call_id]) == [a.attempt for a in job.attempts]
        assert retries[call_id] == len(job.attempts) - 1, describe(run, call_id)


def check_no_attempt_dialed_twice(run: DemoRun) -> Counter[tuple[str, int]]:
    per_attempt = Counter(attempt_of(d) for d in run.dials)
    twice = {k: n for k, n in per_attempt.items() if n > 1}
    assert not twice, f"dialed more than once in one attempt: {twice}"
    for dial in run.dials:
        call_id, attempt = attempt_of(dial)
        job = run.jobs[call_id]
        assert dial.phone_number == job.phone_e164
        assert attempt in {a.attempt for a in job.attempts}, f"{dial.room_name}: no attempt record"
    return per_attempt


def check_dials_inside_calling_windows(run: DemoRun) -> None:
    outside = []
    for (call_id, attempt), when in dial_times(run).items():
        job = run.jobs[call_id]
        if not is_open(job.window, job.zones, when):
            outside.append(f"{call_id} attempt {attempt} at {when:%a %H:%M} UTC in {job.zones}")
    assert not outside, "dialed outside the calling window: " + "; ".join(outside)


def check_retry_gaps(run: DemoRun, slack: timedelta, delay_for: Any) -> list[str]:
    """Each retry's dial lies between next_opening(dial + delay) and that plus `slack` (the call,
    the results consumer and the beat's next tick take real seconds, which are demo seconds).
    Returns a line per retry for the report."""
    times = dial_times(run)
    retry_at = {
        (e["data"]["call_id"], e["data"]["attempt"]): datetime.fromisoformat(e["data"]["retry_at"])
        for e in events(run, "/ats", RETRY)
    }
    lines = []
    for call_id, job in run.jobs.items():
        outcomes = job.outcomes
        for k in range(len(outcomes) - 1):
            here, then = times[(call_id, k + 1)], times[(call_id, k + 2)]
            delay = timedelta(seconds=delay_for(outcomes, k, job.policy))
            lower = next_opening(job.window, job.zones, here + delay)
            upper = next_opening(job.window, job.zones, here + delay + slack) + slack
            scheduled = retry_at[(call_id, k + 1)]
            assert lower <= scheduled <= upper, (describe(run, call_id), k, scheduled)
            assert scheduled <= then <= scheduled + slack, (describe(run, call_id), k, then)
            moved = " (moved into the window)" if lower > here + delay else ""
            lines.append(
                f"{call_id} {outcomes[k]:>10} {here:%a %H:%M} +{delay} -> {then:%a %H:%M}{moved}"
            )
    return lines


def report(run: DemoRun, title: str, extra: list[str] | None = None) -> None:
    """A few lines in the test log (-rA / -s) about what the run did."""
    lines = [
        f"{title}: {run.elapsed_s:.1f} s, {len(run.dials)} dials, "
        f"{run.webhooks_received} webhook deliveries, "
        f"{sum(1 for r in run.deliveries if r.duplicate)} duplicate deliveries",
        json.dumps(dict(sorted(run.by_status.items()))),
        *(extra or []),
    ]
    print("\n".join(lines))
