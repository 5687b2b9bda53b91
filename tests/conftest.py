"""Shared fixtures. Redis is real: `REDIS_URL` when set, else an embedded redis-server that this
test session starts and stops. Each test gets an empty database: a `REDIS_URL` database that
holds keys at the start is refused unless DIALER_TEST_FLUSH_OK=1 (`tests/support/redis_guard`).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from dialer.embedded_redis import EmbeddedRedis
from tests.support.redis_guard import UnsafeTestDatabase, check_flushable


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    url = os.environ.get("REDIS_URL")
    if url:
        try:
            check_flushable(url, os.environ)
        except UnsafeTestDatabase as exc:
            pytest.exit(str(exc), returncode=pytest.ExitCode.USAGE_ERROR)
        yield url
        return
    with tempfile.TemporaryDirectory(prefix="dialer-test-redis-") as tmp:
        server = EmbeddedRedis(Path(tmp), appendonly=False).start()
        try:
            yield server.url
        finally:
            server.stop()


@pytest.fixture()
def r(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushdb()
    try:
        yield client
    finally:
        client.flushdb()
        client.close()
