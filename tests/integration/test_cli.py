"""The `dialer` command through Typer's runner, on real Redis (the test fixture's), plus
`dialer run` as a real process: start, /healthz, Ctrl-C, everything gone."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from typer.testing import CliRunner, Result

from dialer.apikeys import ApiKeyStore
from dialer.cli import app
from dialer.embedded_redis import EmbeddedRedis, RedisAlreadyRunning
from dialer.keys import Keys
from dialer.webhooks import LOOPBACK_NETWORKS, WebhookService, generate_secret
from dialer.webhooks.receiver import Reply, WebhookReceiver
from tests.support.seed import seed_request

ROOT = Path(__file__).resolve().parents[2]
KEYS = Keys()


@pytest.fixture()
def cli(r: redis.Redis, redis_url: str, tmp_path: Path) -> Iterator[Any]:
    runner = CliRunner()
    env = {
        "REDIS_URL": redis_url,
        "COLUMNS": "240",
        "DIALER_DATA_DIR": str(tmp_path / "data"),
        "DIALER_WEBHOOK_ALLOW_NETWORKS": LOOPBACK_NETWORKS,
    }

    def invoke(*args: str) -> Result:
        return runner.invoke(app, list(args), env=env, catch_exceptions=False)

    yield invoke


def _template() -> dict[str, Any]:
    return {k: v for k, v in seed_request().items() if k not in ("call_id", "phone_number")}


# -- help --------------------------------------------------------------------------------------

COMMANDS = [
    [],
    ["run"],
    ["api"],
    ["worker"],
    ["beat"],
    ["enqueue"],
    ["status"],
    ["results"],
    ["schemas"],
    ["demo"],
    ["dnc"],
    ["dnc", "add"],
    ["dnc", "import"],
    ["webhooks"],
    *(
        ["webhooks", c]
        for c in ("add", "load", "list", "remove", "enable", "disable", "test", "replay")
    ),
    ["webhooks", "dead"],
    ["campaigns"],
    *(["campaigns", c] for c in ("create", "list", "pause", "resume", "progress")),
    ["apikeys"],
    *(["apikeys", c] for c in ("create", "list", "revoke")),
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "dialer")
def test_every_command_has_help(command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    # Each command says what it does (its docstring's first words appear).
    lines = [line for line in result.output.splitlines() if line.strip(" │")]
    assert len(lines) > 4


def test_agent_passes_its_arguments_on() -> None:
    result = CliRunner().invoke(app, ["agent", "--help"])
    assert result.exit_code == 0
    assert "download-files" in result.output and "flush-spool" in result.output


# -- enqueue, status, results ------------------------------------------------------------------


def _write_csv(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(rows)
    return path


def test_enqueue_a_csv_with_broken_rows(cli: Any, tmp_path: Path, r: redis.Redis) -> None:
    job = tmp_path / "job.json"
    job.write_text(json.dumps(_template()), encoding="utf-8")
    data = _write_csv(
        tmp_path / "candidates.csv",
        [
            ["id", "naam", "telefoon", "timeslots"],
            ["c1", "Anna", "+32470123456", "maandag 10u|dinsdag 14u"],
            ["c2", "Bert", "12", ""],  # too short
            ["c3", "Carl", "+32470123458", "", "one cell too many"],
            ["c4", "Dora", "+32470123459", ""],
            ["c1", "Anna", "+32470123456", "maandag 10u|dinsdag 14u"],  # duplicate row
            ["c5", "", "+32470123460", "[broken json"],
        ],
    )
    report = tmp_path / "errors.csv"
    result = cli(
        "enqueue", str(data), "--job", str(job), "--errors", str(report),
        "--map", "id=call_id", "--map", "naam=candidate_name", "--map", "telefoon=phone_number",
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    # The progress bar (on stderr) ends at every row read, bad ones included.
    bar = re.compile(r"^enqueue .*━+ 6/6 \d+:\d\d:\d\d$", re.MULTILINE)
    assert bar.search(result.output), result.output
    assert "2 queued, 1 already queued" in result.output and "3 rejected" in result.output
    with report.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [(row["line"], row["field"]) for row in rows] == [
        ("3", "phone_number"),
        ("4", "(row)"),
        ("7", "(row)"),
    ]
    assert "full report" in result.output and "fix the rows" in result.output
    assert r.zcard(KEYS.jobs_index) == 2
    bad_map = cli("enqueue", str(data), "--map", "nonsense")
    assert bad_map.exit_code == 1 and "CSVCOL=field" in bad_map.output


def test_enqueue_into_a_campaign_uses_its_template(
    cli: Any, tmp_path: Path, r: redis.Redis
) -> None:
    created = cli("campaigns", "create", "bakery", "--template", json.dumps(_template()))
    assert created.exit_code == 0, created.output
    data = _write_csv(
        tmp_path / "c.csv",
        [["call_id", "phone_number"], ["k1", "+32470123456"], ["k2", "+32470123457"]],
    )
    result = cli("enqueue", str(data), "--campaign", "bakery")
    assert result.exit_code == 0, result.output
    assert r.zcard(KEYS.campaign_jobs("bakery")) == 2
    progress = cli("campaigns", "progress", "bakery")
    assert "0/2 done" in progress.output


def test_status_and_results(cli: Any, tmp_path: Path) -> None:
    data = _write_csv(
        tmp_path / "c.csv",
        [["call_id", "phone_number", "campaign_id"], ["s1", "+32470123456", "spring"]],
    )
    job = tmp_path / "job.json"
    job.write_text(json.dumps(_template()), encoding="utf-8")
    assert cli("enqueue", str(data), "--job", str(job)).exit_code == 0
    one = cli("status", "s1")
    assert one.exit_code == 0 and "scheduled" in one.output
    assert "+32******456" in one.output and "+32470123456" not in one.output
    totals = cli("status", "--campaign", "spring")
    assert totals.exit_code == 0 and "scheduled" in totals.output
    missing = cli("status", "nope")
    assert missing.exit_code == 1 and "no job 'nope'" in missing.output
    assert json.loads(cli("results", "--format", "json").output) == []
    assert cli("results", "--format", "csv").output.startswith("call_id,status")
    wrong = cli("results", "--format", "xml")
    assert wrong.exit_code == 1 and "--format csv" in wrong.output


# -- dnc ---------------------------------------------------------------------------------------


def test_dnc_add_and_import(cli: Any, tmp_path: Path, r: redis.Redis) -> None:
    added = cli("dnc", "add", "+32470123456", "0470 12 34 57", "--region", "BE")
    assert added.exit_code == 0 and "2 added" in added.output
    assert "+32470123456" not in added.output
    bad = cli("dnc", "add", "12")
    assert bad.exit_code == 1 and "error" in bad.output
    data = _write_csv(
        tmp_path / "dnc.csv", [["tel"], ["+32470123458"], ["garbage"], ["+32470123456"]]
    )
    imported = cli("dnc", "import", str(data), "--column", "tel")
    assert imported.exit_code == 0
    assert "1 added, 1 already present, 1 rejected" in imported.output
    assert "line 3" in imported.output
    assert r.scard(KEYS.dnc) == 3
    missing_column = cli("dnc", "import", str(data))
    assert missing_column.exit_code == 1 and "--column" in missing_column.output


# -- webhooks ----------------------------------------------------------------------------------


def test_webhooks_add_list_test_disable_dead_replay_remove(
    cli: Any, r: redis.Redis, tmp_path: Path
) -> None:
    secret = generate_secret()
    with WebhookReceiver(secret, out_dir=tmp_path / "rx") as rx:
        added = cli("webhooks", "add", rx.url("/crm"), "--secret", secret, "--id", "ep_crm",
                    "--event", "screening.completed", "--description", "CRM")  # fmt: skip
        assert added.exit_code == 0, added.output
        assert "ep_crm" in added.output and secret in added.output  # shown once, at creation
        listed = cli("webhooks", "list")
        assert "ep_crm" in listed.output and secret not in listed.output
        tested = cli("webhooks", "test", "ep_crm")
        assert tested.exit_code == 0 and "delivered" in tested.output
        assert len(rx.accepted("/crm")) == 1

        # A delivery the receiver answers with 410 Gone: dead, endpoint disabled.
        rx.script("/crm", Reply(410))
        service = WebhookService(r, KEYS, allow_networks=LOOPBACK_NETWORKS, timeout_s=2)
        now = datetime.now(UTC)
        (delivery_id,) = service.emit("screening.completed", {"call_id": "x"}, now)
        assert service.deliver(delivery_id, now).result == "dead"
        dead = cli("webhooks", "dead")
        assert delivery_id in dead.output and "webhooks replay" in dead.output
        refused = cli("webhooks", "replay", delivery_id)
        assert refused.exit_code == 1 and "webhooks enable" in refused.output
        assert cli("webhooks", "enable", "ep_crm").exit_code == 0
        replayed = cli("webhooks", "replay", delivery_id)
        assert replayed.exit_code == 0 and "1 replayed" in replayed.output
        service.close()

        assert cli("webhooks", "disable", "ep_crm", "--reason", "maintenance").exit_code == 0
        assert "maintenance" in cli("webhooks", "list").output
    assert cli("webhooks", "replay").exit_code == 1  # says what to give
    assert cli("webhooks", "remove", "ep_crm").exit_code == 0
    gone = cli("webhooks", "test", "ep_crm")
    assert gone.exit_code == 1 and "dialer webhooks list" in gone.output
    bad = cli("webhooks", "add", "ftp://example.com/x")
    assert bad.exit_code == 1 and "url" in bad.output


def test_webhooks_load_a_config_file(
    cli: Any, r: redis.Redis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    crm_secret, ats_secret = generate_secret(), generate_secret()
    config = tmp_path / "webhooks.toml"
    config.write_text(
        "[delivery]\nretry_schedule = [5, 60]\n\n"
        f'[[endpoints]]\nid = "ep_crm"\nurl = "http://127.0.0.1:9/crm"\nsecret = "{crm_secret}"\n'
        'events = ["screening.completed"]\n\n'
        '[[endpoints]]\nid = "ep_ats"\nurl = "http://127.0.0.1:9/ats"\n'
        'secret_env = "ATS_WEBHOOK_SECRET"\n',
        encoding="utf-8",
    )
    assert cli("webhooks", "add", "http://127.0.0.1:9/other", "--id", "ep_other").exit_code == 0
    monkeypatch.setenv("ATS_WEBHOOK_SECRET", ats_secret)
    first = cli("webhooks", "load", str(config))
    again = cli("webhooks", "load", str(config))
    assert first.exit_code == 0, first.output
    assert "2 added, 0 updated, 0 unchanged" in first.output
    assert "ep_other" in first.output and "DIALER_WEBHOOK_CONFIG=" in first.output
    assert crm_secret not in first.output and ats_secret not in first.output
    assert again.exit_code == 0 and "0 added, 0 updated, 2 unchanged" in again.output
    service = WebhookService(r, KEYS, allow_networks=LOOPBACK_NETWORKS)
    stored = {e.id: e for e in service.endpoints.list()}
    assert set(stored) == {"ep_crm", "ep_ats", "ep_other"}
    assert stored["ep_crm"].events == ("screening.completed",)
    assert stored["ep_ats"].secret_value() == ats_secret
    service.close()

    # One bad entry: every problem named, nothing stored.
    config.write_text(
        '[[endpoints]]\nid = "ep_new"\nurl = "http://127.0.0.1:9/new"\n'
        f'secret = "{crm_secret}"\n\n'
        '[[endpoints]]\nid = "ep_bad"\nurl = "http://127.0.0.1:9/bad"\nevents = ["nope"]\n',
        encoding="utf-8",
    )
    bad = cli("webhooks", "load", str(config))
    assert bad.exit_code == 1 and "nothing stored" in bad.output
    assert "endpoints[1]" in bad.output
    assert "ep_new" not in {e.id for e in WebhookService(r, KEYS).endpoints.list()}
    missing = cli("webhooks", "load", str(tmp_path / "nope.toml"))
    assert missing.exit_code == 2 and "does not exist" in missing.output


# -- campaigns ---------------------------------------------------------------------------------


def test_campaigns(cli: Any, tmp_path: Path) -> None:
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"retry_policy": {"busy": [600]}}), encoding="utf-8")
    created = cli("campaigns", "create", "spring", "--name", "Spring", "--policy", f"@{policy}",
                  "--calls-per-second", "2", "--max-concurrent-calls", "3")  # fmt: skip
    assert created.exit_code == 0 and "created" in created.output
    again = cli("campaigns", "create", "spring", "--name", "Spring", "--policy", f"@{policy}",
                "--calls-per-second", "2", "--max-concurrent-calls", "3")  # fmt: skip
    assert again.exit_code == 0 and "already exists" in again.output
    conflict = cli("campaigns", "create", "spring")
    assert conflict.exit_code == 1 and "already exists" in conflict.output
    invalid = cli("campaigns", "create", "autumn", "--policy", '{"calls_per_second": -1}')
    assert invalid.exit_code == 1 and "policy.calls_per_second" in invalid.output
    broken = cli("campaigns", "create", "autumn", "--policy", "{nope")
    assert broken.exit_code == 1 and "not valid JSON" in broken.output
    assert "spring" in cli("campaigns", "list").output
    paused = cli("campaigns", "pause", "spring", "--reason", "client asked")
    assert paused.exit_code == 0 and "paused" in paused.output
    assert "(paused)" in cli("campaigns", "progress", "spring").output
    assert cli("campaigns", "resume", "spring").exit_code == 0
    unknown = cli("campaigns", "pause", "nope")
    assert unknown.exit_code == 1 and "dialer campaigns list" in unknown.output


# -- API keys and schemas ----------------------------------------------------------------------


def test_apikeys(cli: Any, r: redis.Redis) -> None:
    created = cli("apikeys", "create", "--scope", "screenings:read", "--name", "crm")
    assert created.exit_code == 0, created.output
    token = created.output.strip().splitlines()[-1]
    store = ApiKeyStore(r, KEYS)
    key = store.verify(token)
    assert key is not None and key.scopes == ("screenings:read",) and key.name == "crm"
    assert key.id in cli("apikeys", "list").output and token not in cli("apikeys", "list").output
    assert cli("apikeys", "revoke", key.id).exit_code == 0
    assert store.verify(token) is None
    bad = cli("apikeys", "create", "--scope", "everything")
    assert bad.exit_code == 1 and "screenings:read" in bad.output
    assert cli("apikeys", "revoke", "nope").exit_code == 1


def test_schemas(cli: Any, tmp_path: Path) -> None:
    result = cli("schemas", str(tmp_path / "out"))
    assert result.exit_code == 0
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert "screening_request.schema.json" in written and "candidate_data.schema.json" in written


def test_api_refuses_a_public_interface_without_keys(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["api", "--host", "0.0.0.0"], env={"DIALER_API_AUTH": "off", "COLUMNS": "200"}
    )
    assert result.exit_code == 1
    assert "loopback" in result.output and "dialer apikeys create" in result.output


# -- where Redis is --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command", [["status"], ["webhooks", "list"], ["dnc", "add", "+32470123456"]]
)
def test_an_unreachable_redis_is_one_clear_error_with_exit_code_2(command: list[str]) -> None:
    result = CliRunner().invoke(
        app, command, env={"REDIS_URL": "redis://:hunter2@127.0.0.1:1/0", "COLUMNS": "200"}
    )
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # not a traceback
    assert "cannot reach Redis at redis://:***@127.0.0.1:1/0" in result.output
    assert "hunter2" not in result.output
    assert "fix REDIS_URL" in result.output and "unset REDIS_URL" in result.output


def test_one_shot_commands_use_the_embedded_redis_of_a_running_stack(tmp_path: Path) -> None:
    """Without REDIS_URL, a command finds the server `dialer run` started on the same data
    folder (its URL file) instead of starting a second redis-server on the same AOF."""
    data = tmp_path / "data"
    running = EmbeddedRedis(data / "redis").start()  # what `dialer run` starts there
    try:
        assert (data / "redis" / "url").read_text().strip() == running.url
        env = {"REDIS_URL": None, "DIALER_DATA_DIR": str(data), "COLUMNS": "200"}
        result = CliRunner().invoke(app, ["dnc", "add", "+32470123456"], env=env)
        assert result.exit_code == 0, result.output
        client = redis.Redis.from_url(running.url, decode_responses=True)
        assert client.scard(KEYS.dnc) == 1, "the command wrote into the running server"
        client.close()
        # Starting a second server there is refused, with what to do instead.
        with pytest.raises(RedisAlreadyRunning) as refused:
            EmbeddedRedis(data / "redis").start()
        assert running.url in str(refused.value) and "REDIS_URL" in str(refused.value)
    finally:
        running.stop()
    assert not (data / "redis" / "url").exists(), "the URL file goes with the server"


# -- dialer run --------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.timeout(90)
def test_run_starts_everything_and_ctrl_c_stops_it(tmp_path: Path) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}  # embedded Redis
    env.update({"PYTHONUNBUFFERED": "1", "COLUMNS": "200", "DIALER_API_AUTH": "off"})
    log = tmp_path / "run.out"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dialer.cli", "run", "--port", str(port),
             "--data-dir", str(tmp_path / "data"), "-c", "1"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        health: httpx.Response | None = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                if health.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        assert health is not None and health.status_code == 200, log.read_text()
        assert health.json()["checks"]["broker"]["ok"] is True
        # The API works end to end (auth off on loopback for this run).
        listed = httpx.get(f"http://127.0.0.1:{port}/v1/screenings", timeout=5)
        assert listed.status_code == 200 and listed.json()["total"] == 0
        found = re.search(r"REDIS_URL=redis://127\.0\.0\.1:(\d+)/0", log.read_text())
        assert found, log.read_text()
        redis_port = int(found.group(1))
        assert _port_open(redis_port)
        url_file = tmp_path / "data" / "redis" / "url"
        assert url_file.read_text().strip() == f"redis://127.0.0.1:{redis_port}/0"
        # A one-shot command on the same data folder, without REDIS_URL, uses this Redis ...
        shot_env = {**env, "DIALER_DATA_DIR": str(tmp_path / "data")}
        shot = subprocess.run(
            [sys.executable, "-m", "dialer.cli", "dnc", "add", "+32470123456"],
            cwd=ROOT, env=shot_env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert shot.returncode == 0, shot.stdout + shot.stderr
        assert httpx.get(f"http://127.0.0.1:{port}/v1/dnc", timeout=5).json()["size"] == 1
        # ... and a second `dialer run` there is refused instead of sharing its files.
        second = subprocess.run(
            [sys.executable, "-m", "dialer.cli", "run", "--port", str(_free_port()),
             "--data-dir", str(tmp_path / "data")],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert second.returncode == 1, second.stdout + second.stderr
        assert "already running" in second.stdout + second.stderr
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        assert proc.wait(timeout=30) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not _port_open(redis_port)  # the embedded Redis is gone with it
    assert not url_file.exists()
    assert not _port_open(port)
    text = log.read_text()
    assert "stopping workers, beat and Redis" in text
    assert (tmp_path / "data" / "logs" / "beat.log").exists()
