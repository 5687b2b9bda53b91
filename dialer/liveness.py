"""`LiveMarker`: a Redis key that says "a live process is working on this", kept alive while
its holder works and gone within `ttl_s` of that process dying.

Markers are refreshed by one keeper thread per process, not by the holder's event loop: the
dial path blocks its loop in places (waiting for a pacing turn), and a refresh that depended on
the loop would let the key lapse under a process that is very much alive. One long-lived
thread, rather than one per marker, because a dial holds a marker for a few milliseconds to a
few seconds and starting a thread per dial cost more than the dial's own Redis work; a marker
released before its first refresh is due (`ttl_s / 3`) costs the keeper nothing.

Ownership is a random token compared on refresh and release (`dialer/lua/live_*.lua`), so a
marker that lapsed and was taken over is never refreshed or deleted by its former holder.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from dataclasses import dataclass

import redis
from redis.commands.core import Script

from dialer import scripts

log = logging.getLogger("dialer.liveness")


def new_token() -> str:
    return secrets.token_hex(12)


@dataclass
class _Held:
    client: redis.Redis
    refresh: Script
    key: str
    token: str
    ttl_ms: int
    next_at: float  # monotonic time of the next refresh


class _Keeper:
    """Refreshes every marker this process holds, each every third of its ttl."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        # Also run in a forked child (Celery's pool processes): the parent's thread is not
        # there, and its lock may have been held at the fork.
        self._cond = threading.Condition()
        self._held: dict[str, _Held] = {}
        self._running = False

    def hold(self, held: _Held) -> None:
        with self._cond:
            if not self._running:
                self._running = True
                threading.Thread(target=self._run, name="live-markers", daemon=True).start()
            self._held[held.key] = held
            self._cond.notify()

    def drop(self, key: str) -> None:
        with self._cond:
            self._held.pop(key, None)

    def _run(self) -> None:
        while True:
            with self._cond:
                now = time.monotonic()
                due = [h for h in self._held.values() if h.next_at <= now]
                if not due:
                    soonest = min((h.next_at for h in self._held.values()), default=None)
                    self._cond.wait(None if soonest is None else soonest - now)
                    continue
                for h in due:
                    h.next_at = now + h.ttl_ms / 3000
            for h in due:
                self._refresh(h)

    def _refresh(self, held: _Held) -> None:
        try:
            refreshed = held.refresh(
                keys=[held.key], args=[held.token, held.ttl_ms], client=held.client
            )
        except redis.RedisError as exc:  # Redis away for a moment: try again next beat
            log.info("live marker %s not refreshed (%s)", held.key, type(exc).__name__)
            return
        if not refreshed:
            log.warning("live marker %s lapsed while held", held.key)
            self.drop(held.key)


_keeper = _Keeper()
os.register_at_fork(after_in_child=_keeper._reset)


class LiveMarker:
    def __init__(
        self, client: redis.Redis, key: str, *, ttl_s: float = 10.0, token: str | None = None
    ) -> None:
        self.client = client
        self.key = key
        self.ttl_s = ttl_s
        self.token = token or new_token()
        self._released = False
        self._refresh = scripts.register(client, "live_refresh")
        self._release = scripts.register(client, "live_release")

    @property
    def ttl_ms(self) -> int:
        return max(1, round(self.ttl_s * 1000))

    def acquire(self) -> bool:
        """Take the marker; False when another live process holds it."""
        if not self.client.set(self.key, self.token, nx=True, px=self.ttl_ms):
            return False
        self.keep()
        return True

    def keep(self) -> None:
        """Keep refreshing a marker this holder has set (here or inside a script)."""
        _keeper.hold(
            _Held(
                self.client,
                self._refresh,
                self.key,
                self.token,
                self.ttl_ms,
                time.monotonic() + self.ttl_s / 3,
            )
        )

    def stop_keeping(self) -> None:
        """Stop refreshing (the caller releases it another way, e.g. in a pipeline)."""
        _keeper.drop(self.key)

    def release_call(self) -> scripts.ScriptCall:
        """The release, to run inside a pipeline (`release()` is a no-op afterwards)."""
        self.stop_keeping()
        self._released = True
        return scripts.ScriptCall(self._release, [self.key], [self.token])

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        self.stop_keeping()
        try:
            self._release(keys=[self.key], args=[self.token], client=self.client)
        except redis.RedisError as exc:  # Redis away: the marker expires on its own
            log.info("live marker %s not released (%s)", self.key, type(exc).__name__)
