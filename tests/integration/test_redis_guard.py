"""The suite's guard against flushing a Redis database that holds someone's data
(`tests/support/redis_guard`, used by the session fixture in tests/conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from dialer.embedded_redis import EmbeddedRedis
from tests.support.redis_guard import FLUSH_OK_ENV, UnsafeTestDatabase, check_flushable

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    srv = EmbeddedRedis(tmp_path / "redis", appendonly=False).start()
    yield srv
    srv.stop()


def test_an_empty_database_may_be_flushed(server: EmbeddedRedis) -> None:
    check_flushable(server.url, {})


def test_a_database_with_keys_is_refused_unless_allowed(server: EmbeddedRedis) -> None:
    client = redis.Redis.from_url(server.url)
    client.set("someone:else", "precious")
    with pytest.raises(UnsafeTestDatabase) as refused:
        check_flushable(server.url, {})
    message = str(refused.value)
    assert "holds 1 keys" in message and FLUSH_OK_ENV in message and "unset it" in message
    check_flushable(server.url, {FLUSH_OK_ENV: "1"})
    assert client.get("someone:else") == b"precious"
    client.close()


def test_the_session_stops_before_touching_a_database_with_keys(
    server: EmbeddedRedis, tmp_path: Path
) -> None:
    """A whole pytest run pointed at a database with data ends with the message, and the data
    is still there."""
    client = redis.Redis.from_url(server.url)
    client.set("someone:else", "precious")
    env = {k: v for k, v in os.environ.items() if k != FLUSH_OK_ENV}
    env["REDIS_URL"] = server.url
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/integration/test_limiter.py::test_scripts_reload_after_script_flush"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == pytest.ExitCode.USAGE_ERROR, done.stdout + done.stderr
    assert FLUSH_OK_ENV in done.stdout + done.stderr
    assert client.get("someone:else") == b"precious"
    client.close()
