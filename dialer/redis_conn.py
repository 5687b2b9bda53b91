"""Where Redis is: `REDIS_URL`, or an embedded server this process starts and owns."""

from __future__ import annotations

import os
from urllib.parse import urlparse, urlunparse

import redis
from redis.sentinel import Sentinel

from dialer.embedded_redis import EmbeddedRedis, running_server
from dialer.errors import ConfigError
from dialer.settings import Settings

_embedded: EmbeddedRedis | None = None


def ensure_redis_url(settings: Settings) -> str:
    """Return a Redis URL: `REDIS_URL`; else the embedded server that already serves
    `DIALER_DATA_DIR` (a running `dialer run` or `dialer demo` on this machine); else a new
    embedded server this process owns (stopped when it exits).

    The URL is exported as `REDIS_URL` so child processes (workers, beat) share the server.
    """
    global _embedded
    if settings.redis_url:
        return settings.redis_url
    if _embedded is None:
        shared = running_server(settings.data_dir / "redis")
        if shared is not None:
            os.environ["REDIS_URL"] = shared
            return shared
        _embedded = EmbeddedRedis(settings.data_dir / "redis").start()
    os.environ["REDIS_URL"] = _embedded.url
    return _embedded.url


def masked_url(url: str) -> str:
    """`url` with any password replaced by `***`, for messages and logs."""
    masked = []
    for part in url.split(";"):  # sentinel URLs list several hosts
        parsed = urlparse(part.strip())
        if parsed.password:
            user = parsed.username or ""
            host = parsed.hostname or ""
            netloc = f"{user}:***@{host}" + (f":{parsed.port}" if parsed.port else "")
            part = urlunparse(parsed._replace(netloc=netloc))
        masked.append(part)
    return ";".join(masked)


def sentinel_hosts(url: str) -> tuple[list[tuple[str, int]], int]:
    """`sentinel://h1:26379;sentinel://h2:26379/0` (kombu's form) -> hosts and db number."""
    hosts: list[tuple[str, int]] = []
    db = 0
    for part in url.split(";"):
        parsed = urlparse(part.strip())
        if parsed.scheme != "sentinel" or not parsed.hostname:
            raise ConfigError(f"not a sentinel URL: {part!r}; expected sentinel://HOST:PORT")
        hosts.append((parsed.hostname, parsed.port or 26379))
        if parsed.path.strip("/"):
            db = int(parsed.path.strip("/"))
    return hosts, db


def connect(url: str) -> redis.Redis:
    """A client with short socket timeouts so an unreachable Redis fails fast, not hangs.

    `sentinel://` URLs (as Celery accepts them) resolve the current master through Sentinel;
    the master's name comes from `REDIS_SENTINEL_MASTER`.
    """
    if url.startswith("sentinel://"):
        master = os.environ.get("REDIS_SENTINEL_MASTER")
        if not master:
            raise ConfigError("set REDIS_SENTINEL_MASTER to the monitored master's name")
        hosts, db = sentinel_hosts(url)
        sentinel = Sentinel(hosts, socket_timeout=5, decode_responses=True)  # type: ignore[no-untyped-call]
        client: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]
            master, db=db, socket_timeout=10, decode_responses=True
        )
        return client
    return redis.Redis.from_url(
        url,
        decode_responses=True,
        socket_timeout=10,
        socket_connect_timeout=5,
        health_check_interval=30,
    )
