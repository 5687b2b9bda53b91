"""The test suite empties the Redis database it runs on before and after every test. When
`REDIS_URL` names a database that already holds keys (a developer's, a shared one), refuse
unless the run says flushing it is fine."""

from __future__ import annotations

from collections.abc import Mapping

import redis

from dialer.redis_conn import masked_url

FLUSH_OK_ENV = "DIALER_TEST_FLUSH_OK"


class UnsafeTestDatabase(Exception):
    """REDIS_URL points at a database with data in it, and flushing it was not allowed."""


def check_flushable(url: str, environ: Mapping[str, str]) -> None:
    """Raise `UnsafeTestDatabase` unless the database at `url` is empty or `environ` has
    DIALER_TEST_FLUSH_OK=1."""
    if environ.get(FLUSH_OK_ENV) == "1":
        return
    client = redis.Redis.from_url(url, socket_connect_timeout=5)
    try:
        keys = int(client.dbsize())
    finally:
        client.close()
    if keys:
        raise UnsafeTestDatabase(
            f"REDIS_URL={masked_url(url)} holds {keys} keys, and the tests empty that database "
            f"(FLUSHDB) before and after each test. Point REDIS_URL at an empty database "
            f"(e.g. another db number: .../15), unset it to let the tests start an embedded "
            f"Redis, or set {FLUSH_OK_ENV}=1 if its contents may be deleted."
        )
