"""Issue 6, item 3: the demo scenario end to end, without faults.

One run of the bundled scenario (50 candidates, every persona) is shared by the tests here and
compared against by the fault runs (`clean_run`, session scope). One more test runs the README's
`dialer demo` through its console script, as a user would.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest

from agent.personas import PERSONAS
from dialer.demo import EXAMPLES, DemoRun, load_personas
from dialer.demo_expected import DEMO_TIME_LIMIT_S
from dialer.models import RetryPolicy
from tests.e2e.conftest import (
    check_attempt_events,
    check_dials_inside_calling_windows,
    check_expected_statuses,
    check_finished,
    check_no_attempt_dialed_twice,
    check_retry_gaps,
    check_webhooks,
    dial_times,
    events,
    report,
)
from tests.e2e.expected import (
    DEFAULT_MAX_ATTEMPTS,
    DOCUMENTED_DELAYS_S,
    EXPECTED_TOTALS,
    KNOWN_PERSONAS,
    expected_outcomes,
    expected_status,
    retry_delay_s,
)
from tests.support.masking import leaks

pytestmark = pytest.mark.slow

# Real seconds between a dial and its retry's due time beyond the policy's delay (the call
# itself, the results consumer, the beat's next tick), which pass 1:1 on the demo clock.
RETRY_SLACK = timedelta(minutes=2)


def test_the_expectations_follow_the_policy_defaults() -> None:
    policy = RetryPolicy()
    for kind, delays in DOCUMENTED_DELAYS_S.items():
        assert getattr(policy, kind) == delays, kind
    assert policy.declined_max_retries == 1
    default, personas = load_personas(EXAMPLES / "personas.json")
    rows = (EXAMPLES / "candidates.csv").read_text(encoding="utf-8").splitlines()[1:]
    numbers = [row.split(",")[2] for row in rows if row]
    tally = Counter(expected_status(personas.get(n, default)) for n in numbers)
    assert dict(tally) == EXPECTED_TOTALS
    assert KNOWN_PERSONAS == PERSONAS, "every persona the simulated agent plays has a rule"


def test_the_whole_demo_finishes_in_under_two_minutes(clean_run: DemoRun) -> None:
    """README: the whole demo (Redis, worker and beat start-up included) takes under 2 min."""
    check_finished(clean_run)
    assert clean_run.elapsed_s < DEMO_TIME_LIMIT_S, f"took {clean_run.elapsed_s:.1f} s"
    assert clean_run.unexpected() == []  # what `dialer demo` checks before exiting 0


def test_every_candidate_reaches_its_expected_final_status(clean_run: DemoRun) -> None:
    check_finished(clean_run)
    assert clean_run.restarts == [], "a worker or the beat crashed during the clean run"
    assert {j.max_attempts for j in clean_run.jobs.values()} == {DEFAULT_MAX_ATTEMPTS}
    check_expected_statuses(clean_run)
    assert clean_run.by_status == EXPECTED_TOTALS
    report(clean_run, "clean run")


def test_every_persona_goes_through_its_expected_attempts(clean_run: DemoRun) -> None:
    wrong = [
        (j.call_id, j.persona, j.outcomes)
        for j in clean_run.jobs.values()
        if j.outcomes != expected_outcomes(j.persona, max_attempts=j.max_attempts)
    ]
    assert not wrong
    retried = {j.persona for j in clean_run.jobs.values() if len(j.attempts) > 1}
    assert retried == {
        "busy",
        "busy_then_answer",
        "no_answer",
        "no_answer_then_answer",
        "voicemail",
        "voicemail_then_answer",
        "hangup_halfway",
        "hangup_then_complete",
        "decline",
    }


def test_retries_wait_what_the_policy_says_moved_into_the_window(clean_run: DemoRun) -> None:
    lines = check_retry_gaps(clean_run, RETRY_SLACK, retry_delay_s)
    assert len(lines) == sum(len(j.attempts) - 1 for j in clean_run.jobs.values())
    # The scenario exercises each kind of delay, and the window moving a retry.
    text = "\n".join(lines)
    for kind in ("busy", "no_answer", "voicemail", "incomplete", "declined"):
        assert f" {kind} " in text, kind
    report(clean_run, "retries", lines)


def test_every_final_result_is_delivered_once_per_endpoint_signed(clean_run: DemoRun) -> None:
    duplicates = check_webhooks(clean_run)
    # Without faults nothing should have needed a second try.
    assert duplicates == 0


def test_the_ats_endpoint_gets_every_attempt_and_retry(clean_run: DemoRun) -> None:
    check_attempt_events(clean_run)


def test_the_webhook_folder_holds_one_payload_file_per_delivery_per_endpoint(
    clean_run: DemoRun,
) -> None:
    """What the summary points at: `webhooks/crm/` one file per final result, `webhooks/ats/`
    one per event of any kind, each the signed payload as received."""
    folders = {p.name for p in clean_run.webhook_dir.iterdir() if p.is_dir()}
    assert folders == {"crm", "ats"}
    for path in ("/crm", "/ats"):
        folder = clean_run.webhook_dir / path.strip("/")
        files = {f.stem: json.loads(f.read_text(encoding="utf-8")) for f in folder.glob("*.json")}
        accepted = events(clean_run, path)
        assert set(files) == {e["webhook_id"] for e in accepted}, path
        for event in accepted:
            body = {k: v for k, v in event.items() if k != "webhook_id"}
            assert files[event["webhook_id"]] == body
    crm = [json.loads(f.read_text()) for f in (clean_run.webhook_dir / "crm").glob("*.json")]
    assert sorted(d["data"]["call_id"] for d in crm) == sorted(clean_run.jobs)
    assert {d["type"] for d in crm} == {"screening.completed"}
    ats = [json.loads(f.read_text()) for f in (clean_run.webhook_dir / "ats").glob("*.json")]
    completed = [d["data"]["call_id"] for d in ats if d["type"] == "screening.completed"]
    assert sorted(completed) == sorted(clean_run.jobs)
    assert len(ats) == 50 + sum(2 * len(j.attempts) - 1 for j in clean_run.jobs.values())


def test_no_log_of_the_run_holds_a_candidate_number_in_clear(clean_run: DemoRun) -> None:
    """Every log the run wrote (this process's demo.log: the simulated agents' results; the
    worker's: dials, results, webhook deliveries; the beat's) masks all 50 numbers."""
    folder = clean_run.data_dir / "logs"
    logs = {p.name: p.read_text(errors="replace") for p in folder.glob("*.log")}
    assert {"demo.log", "beat.log"} <= set(logs) and any(n.startswith("worker-") for n in logs)
    text = "\n".join(logs.values())
    assert re.search(r"agent\.publishing .*result of demo-\d+ attempt 1 sent", text)
    assert re.search(r"Task dialer\.webhooks\.deliver\[[^]]+\] succeeded .*'delivered'", text)
    assert re.search(r"dialer\.tasks\.dial: dial demo-\d+ attempt 1: answered", text)
    numbers = [j.phone_e164 for j in clean_run.jobs.values()]
    assert len(set(numbers)) == 50
    assert leaks(logs, numbers) == []


def test_no_attempt_is_dialed_twice(clean_run: DemoRun) -> None:
    per_attempt = check_no_attempt_dialed_twice(clean_run)
    # Each attempt of the clean run is exactly one dial that reached the trunk.
    recorded = {(c, a.attempt) for c, j in clean_run.jobs.items() for a in j.attempts}
    assert set(per_attempt) == recorded


def test_every_dial_falls_inside_the_calling_window(clean_run: DemoRun) -> None:
    check_dials_inside_calling_windows(clean_run)
    # The scenario starts before the windows open: the first dials wait for them.
    first = min(dial_times(clean_run).values())
    assert first.hour >= 7


def test_clock_trace_agrees_with_the_dial_task_clock(clean_run: DemoRun) -> None:
    """A dial that failed (busy, no answer, declined, invalid) is recorded with the dialing
    task's own demo-clock `now`, taken just before the dial: the trace's conversion of the
    stand-in's wall time must land right after it."""
    times = dial_times(clean_run)
    compared = 0
    for call_id, job in clean_run.jobs.items():
        for attempt in job.attempts:
            if attempt.sip_status_code is None:
                continue  # answered: `at` is stamped by the agent's clock
            gap = (times[(call_id, attempt.attempt)] - attempt.at).total_seconds()
            assert -1.0 <= gap <= 30.0, (call_id, attempt)
            compared += 1
    assert compared >= 10


def test_dialer_demo_command(tmp_path: Path) -> None:
    """README command one, minus the install: the console script runs the demo to the end and
    prints the summary, in an 80-column terminal."""
    started = time.monotonic()
    done = _dialer_demo(tmp_path, "--data-dir", str(tmp_path / "demo"))
    wall_s = time.monotonic() - started
    out = done.stdout
    assert done.returncode == 0, out[-3000:] + done.stderr[-3000:]
    assert "queued 50 candidates" in out
    assert re.search(r"\d+ dials, \d+ signed webhook deliveries received", out), out[-2000:]
    finished = re.search(r"finished in (\d+\.\d) s", out)
    assert finished, out[-2000:]
    assert float(finished.group(1)) < DEMO_TIME_LIMIT_S
    assert wall_s < DEMO_TIME_LIMIT_S, f"the command took {wall_s:.1f} s"
    for status, count in EXPECTED_TOTALS.items():
        assert re.search(rf"\b{status}\s+{count}\b", out), status
    table = out[out.index("final status per candidate") :]
    assert max(len(line) for line in table.splitlines()) <= 80
    assert "Traceback" not in out + done.stderr


def _dialer_demo(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`dialer demo ARGS` through the console script, with the default timeout, on an
    embedded Redis, in an 80-column terminal."""
    script = Path(sys.executable).with_name("dialer")
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL" and not k.startswith("DIALER_")}
    env.update(COLUMNS="80", LINES="40", NO_COLOR="1")
    return subprocess.run(
        [str(script), "demo", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=DEMO_TIME_LIMIT_S + 60,
    )


def test_dialer_demo_exits_1_when_a_candidate_ends_otherwise_than_its_persona(
    tmp_path: Path,
) -> None:
    """Two candidates share a number whose persona asks not to be called again. The first call
    puts the number on the do-not-call list, so the second candidate (dialed later) ends
    `do_not_call`, not the persona's `not_interested`: the demo says so and exits 1."""
    shutil.copy(EXAMPLES / "job.json", tmp_path / "job.json")
    (tmp_path / "personas.json").write_text(
        json.dumps({"default": "cooperative", "personas": {"+32470100100": "do_not_call"}})
    )
    (tmp_path / "candidates.csv").write_text(
        "call_id,candidate_name,phone_number,language,not_before\n"
        "dnc-first,Mark Verbeke,+32470100100,nl,\n"
        "dnc-again,Mark Verbeke,+32470100100,nl,2026-03-02T12:00:00+00:00\n"
    )
    done = _dialer_demo(
        tmp_path, "--candidates", str(tmp_path / "candidates.csv"),
        "--data-dir", str(tmp_path / "demo"),
    )  # fmt: skip
    out = done.stdout
    assert done.returncode == 1, out[-3000:] + done.stderr[-3000:]
    assert re.search(r"finished in \d+\.\d s", out), "it did finish: the statuses differ"
    assert "1 candidate(s) did not end as their persona does" in out
    wrapped = r"\s+".join(["dnc-again", r"\(do_not_call\):", "do_not_call", "after", "-,",
                            "expected", "not_interested"])  # fmt: skip
    assert re.search(wrapped, out), out[-1500:]
    assert "dnc-first" not in out[out.index("did not end") :]
    assert "Traceback" not in out + done.stderr
