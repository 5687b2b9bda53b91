"""`LiveMarker`: a Redis key that says "a live process is working on this", kept alive by a
heartbeat thread and gone within `ttl_s` of that process dying.

Why a thread: the dial path blocks its event loop in places (waiting for a pacing turn), and a
refresh that depends on the loop would let the key lapse under a process that is very much
alive. Built on redis-py's `Lock` (token compare-and-set on refresh and release).
"""

from __future__ import annotations

import logging
import threading

import redis
from redis.exceptions import LockError

log = logging.getLogger("dialer.liveness")


class LiveMarker:
    def __init__(self, client: redis.Redis, key: str, *, ttl_s: float = 10.0) -> None:
        self.key = key
        self.ttl_s = ttl_s
        self._lock = client.lock(key, timeout=ttl_s, blocking=False, thread_local=False)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> bool:
        """Take the marker; False when another live process holds it."""
        if not self._lock.acquire():
            return False
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name=f"live:{self.key}", daemon=True)
        self._thread.start()
        return True

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        try:
            self._lock.release()
        except (LockError, redis.RedisError) as exc:  # lapsed, or Redis away: it expires anyway
            log.info("live marker %s not released (%s)", self.key, type(exc).__name__)

    def _beat(self) -> None:
        while not self._stop.wait(self.ttl_s / 3):
            try:
                self._lock.reacquire()
            except LockError:
                log.warning("live marker %s lapsed while held", self.key)
                return
            except redis.RedisError as exc:  # Redis away for a moment: try again next beat
                log.info("live marker %s not refreshed (%s)", self.key, type(exc).__name__)
