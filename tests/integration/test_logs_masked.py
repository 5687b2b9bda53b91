"""A full local run writes no phone number in clear into any log.

The real processes: embedded Redis, a Celery worker and beat (LocalStack), the HTTP API as a
`dialer api` process (JSON logs), the LiveKit stand-in for dialing. Screenings come in through
the API (ScreeningRequest and the seeds/002 outbound call) and through the CLI's CSV import;
the stand-in answers, rings busy, rings out, declines and refuses numbers. Then every log file is
scanned for each submitted number in every spelling (E.164, without "+", national, spaced).
"""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import redis
from typer.testing import CliRunner

from dialer.cli import app as cli_app
from dialer.demo import log_to
from dialer.keys import Keys
from dialer.livekit_standin import LiveKitStandIn
from dialer.local_stack import LocalStack
from tests.support.masking import leaks
from tests.support.seed import seed_request

ROOT = Path(__file__).resolve().parents[2]
KEYS = Keys()
SCENARIOS = {
    "+32470123411": "busy",
    "+32470123412": "no_answer",
    "+32470123413": "invalid",
    "+32470123414": "decline",
    "+32470123415": "answer",
    "+31612345678": "server_error",
}
VIA_OUTBOUND = "+32470123416"
VIA_CSV = "+32470123417"
ON_DNC = "+32470123418"
# Sent by a "backend" under a misspelt task name: Celery logs what it cannot route.
IN_A_BAD_MESSAGE = "+32470123419"
ALWAYS_OPEN = {
    day: [{"start": "00:00", "end": "24:00"}]
    for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def run_logs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Run the pipeline once; every log file's text by file name."""
    tmp_path = tmp_path_factory.mktemp("logs-masked")
    with LiveKitStandIn(SCENARIOS, ring_seconds=0.2) as standin:
        env = {
            "LIVEKIT_URL": standin.url,
            "LIVEKIT_API_KEY": standin.api_key,
            "LIVEKIT_API_SECRET": standin.api_secret,
            "LIVEKIT_SIP_OUTBOUND_TRUNK_ID": "ST_logs",
            "LIVEKIT_SIP_FROM_NUMBER": "+3225550100",
            "DIALER_RINGING_TIMEOUT_S": "5",
            "DIALER_LOG_LEVEL": "DEBUG",
        }
        with LocalStack(tmp_path / "stack", concurrency=2, env_overrides=env) as local:
            _exercise(local, standin, tmp_path)
    logs = sorted((tmp_path / "stack" / "logs").glob("*.log"))
    assert {p.name.split("-")[0] for p in logs} >= {"api.log", "beat.log", "worker"}
    return {p.name: p.read_text(encoding="utf-8", errors="replace") for p in logs}


def _exercise(local: LocalStack, standin: LiveKitStandIn, tmp_path: Path) -> None:
    assert local.redis_url
    local.wait_ready()
    port = _free_port()
    api_log = local.data_dir / "logs" / "api.log"
    env = {
        **local.env,
        "DIALER_API_AUTH": "off",
        "DIALER_LOG_JSON": "1",
        "DIALER_LOG_LEVEL": "DEBUG",
        "PYTHONUNBUFFERED": "1",
    }
    with api_log.open("wb") as out:
        api = subprocess.Popen(
            [sys.executable, "-m", "dialer.cli", "api", "--port", str(port), "-l", "DEBUG"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_for(lambda: _healthy(base), 30, api_log)
        with httpx.Client(base_url=base, timeout=10) as http:
            for i, number in enumerate(SCENARIOS):
                body = seed_request(call_id=f"log-{i}", phone=number, calling_window=ALWAYS_OPEN)
                assert http.post("/v1/screenings", json=body).status_code == 201
            outbound = http.post("/api/calls/outbound", json={"to": VIA_OUTBOUND})
            assert outbound.status_code == 200
            assert http.post("/v1/dnc", json={"numbers": [ON_DNC]}).status_code == 200
            assert http.post("/v1/dnc/lookup", json={"number": ON_DNC}).json()["listed"]
            dnc_job = seed_request(call_id="log-dnc", phone=ON_DNC, calling_window=ALWAYS_OPEN)
            assert http.post("/v1/screenings", json=dnc_job).json()["status"] == "do_not_call"
            bad = seed_request(call_id="log-bad", phone=ON_DNC[:-4])
            assert http.post("/v1/screenings", json=bad).status_code == 422
            http.get("/v1/screenings/log-0")
            http.get("/metrics")
        _csv_import(local, tmp_path)
        _misrouted_message(local.redis_url)

        client = redis.Redis.from_url(local.redis_url, decode_responses=True)

        expected = set(SCENARIOS) - {"+31612345678"}  # server_error: never reaches the trunk

        def dialed_all() -> bool:
            # Failed dials record an attempt; the answered one (no agent here) only reaches the
            # stand-in, so wait for both.
            recorded = all(
                client.llen(KEYS.attempts(f"log-{i}")) for i in range(len(SCENARIOS) - 2)
            )
            return recorded and {d.phone_number for d in standin.dials} >= expected

        _wait_for(dialed_all, 60, local.data_dir / "logs")
        assert {d.phone_number for d in standin.dials} >= expected
    finally:
        api.terminate()
        api.wait(timeout=20)


@pytest.mark.timeout(120)
def test_a_full_run_logs_no_phone_number_in_clear(run_logs: dict[str, str]) -> None:
    assert "dial log-0 attempt 1" in "".join(run_logs.values())  # the run did log its work
    assert leaks(run_logs, [*SCENARIOS, VIA_OUTBOUND, VIA_CSV, ON_DNC]) == []


@pytest.mark.timeout(120)
def test_worker_logs_mask_numbers_that_only_a_library_logs(run_logs: dict[str, str]) -> None:
    assert "sumbit" in "".join(run_logs.values())  # Celery did log the misrouted message
    assert leaks(run_logs, [IN_A_BAD_MESSAGE]) == []


def _csv_import(local: LocalStack, tmp_path: Path) -> None:
    data = tmp_path / "c.csv"
    data.write_text(f"call_id,phone_number\nlog-csv,{VIA_CSV}\nlog-csv-bad,12\n", "utf-8")
    job = tmp_path / "job.json"
    template = {k: v for k, v in seed_request().items() if k not in ("call_id", "phone_number")}
    job.write_text(json.dumps(template), "utf-8")
    result = CliRunner().invoke(
        cli_app,
        ["enqueue", str(data), "--job", str(job), "--errors", str(tmp_path / "e.csv")],
        env={"REDIS_URL": local.redis_url or "", "COLUMNS": "200"},
    )
    assert result.exit_code == 2 and "1 queued" in result.output, result.output


def _misrouted_message(redis_url: str) -> None:
    from tasks.app import app as celery_app
    from tasks.app import use_broker

    use_broker(redis_url)
    celery_app.send_task(
        "dialer.intake.sumbit",  # sic
        args=[seed_request(call_id="log-typo", phone=IN_A_BAD_MESSAGE)],
        queue="intake",
    )
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    _wait_for(lambda: client.llen(KEYS.dead_letters) > 0, 20, Path("dead letters"))


def _healthy(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _wait_for(condition: object, timeout: float, where: Path) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out; see {where}")


def test_the_demo_log_file_masks_numbers(tmp_path: Path) -> None:
    """`dialer demo` writes this process's records (simulated agents, the stand-in, libraries'
    warnings) to logs/demo.log: through the masking filter like every other handler."""
    path = tmp_path / "demo.log"
    undo = log_to(path)
    try:
        logging.getLogger("agent.personas").info("calling %s now", "+32470123499")
        logging.getLogger("some.library").warning("dial to 0470 12 34 99 failed")
        try:
            raise ValueError("number +32470123499 refused")
        except ValueError:
            logging.getLogger("dialer.demo").exception("while calling")
    finally:
        undo()
    text = path.read_text(encoding="utf-8")
    assert "calling +32******499 now" in text and "ValueError" in text
    assert leaks({"demo.log": text}, ["+32470123499"]) == []
