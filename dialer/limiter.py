"""Per-trunk dial gates in Redis: calls-per-second pacing, concurrency slots, circuit breaker.

Each operation is one Lua script (`dialer/lua/*.lua`), so it is a single atomic step however many
worker processes and machines share the Redis, and every script reads Redis `TIME`, so worker
clocks (skewed, or moved by a test clock) never decide who may dial. The math lives in
`dialer.pacing`; the scripts mirror it in integer microseconds.

Scripts are registered once per object (`dialer.scripts`): redis-py's `Script` runs EVALSHA
and, on NOSCRIPT (Redis restarted or `SCRIPT FLUSH`), loads the script and retries, so a
restarted Redis needs nothing from us (tests/integration/test_limiter.py checks both cases).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import redis

from dialer.keys import Keys
from dialer.pacing import emission_interval_us
from dialer.scripts import ScriptCall, reply_text
from dialer.scripts import register as _register

_US = 1_000_000
LIMITS_LIBRARY = ("_limits",)


def _us(seconds: float) -> int:
    """Seconds as whole microseconds, the unit every script works in."""
    return round(seconds * _US)


class RedisPacer:
    """Calls-per-second limit for one trunk, shared by every process on the Redis (GCRA).

    `burst=1` (the default) spaces calls at least 1 / rate apart, so no window of one second
    ever holds more than ceil(rate) calls: a trunk's CPS limit is usually enforced per second,
    and a burst would be rejected by the carrier rather than absorbed.

    `headroom` paces that share under the limit: whatever lies between taking the turn and the
    INVITE leaving (one HTTP request) varies by milliseconds, and with the pacer saturated a
    later INVITE that travels faster than an earlier one would otherwise put `rate + 1` calls
    in one second at the trunk. A headroom h absorbs up to about h seconds of such difference.

    `backoff()` scales the rate down after the trunk throttled a call; the scale recovers
    towards full rate with `recovery_half_life_s`. All processes see the same multiplier.
    """

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        trunk: str,
        calls_per_second: float,
        burst: int = 1,
        *,
        backoff_floor: float = 0.1,
        recovery_half_life_s: float = 30.0,
        backoff_cooldown_s: float = 1.0,
        headroom: float = 0.0,
        reserve_ahead_s: float = 1.0,
        max_late_s: float | None = 0.005,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if calls_per_second <= 0:
            raise ValueError("calls_per_second must be positive")
        if burst < 1:
            raise ValueError("burst must be at least 1")
        if not 0 < backoff_floor <= 1:
            raise ValueError("backoff_floor must be in (0, 1]")
        self.key = keys.pacing(trunk)
        self.calls_per_second = calls_per_second
        self.burst = burst
        self.backoff_floor = backoff_floor
        self.recovery_half_life_s = recovery_half_life_s
        self.backoff_cooldown_s = backoff_cooldown_s
        self.last_admitted_at: float | None = None
        """Redis server time (epoch s) at which this object's last call was admitted."""
        if not 0 <= headroom < 1:
            raise ValueError("headroom must be in [0, 1)")
        self._emission_us = emission_interval_us(calls_per_second * (1 - headroom))
        self.reserve_ahead_s = reserve_ahead_s
        self.max_late_s = max_late_s
        self.late_turns = 0
        """Turns this object let go unused because it woke more than `max_late_s` after them."""
        self._turn_due = 0.0  # monotonic time of the turn last taken
        self._sleep = sleep
        self._monotonic = monotonic
        self._acquire = _register(client, "pacer_acquire", LIMITS_LIBRARY)
        self._backoff = _register(client, "pacer_backoff")
        self._multiplier = _register(client, "pacer_multiplier")

    def _take(self, ahead_s: float) -> tuple[float, bool]:
        """(seconds, taken): the caller's turn comes in `seconds` (taken), or the next turn is
        due in `seconds` and lies further ahead than `ahead_s` (not taken)."""
        wait_us, now_us, taken = self._acquire(keys=[self.key], args=self.take_args(ahead_s))
        return self.took(wait_us, now_us, taken)

    def take_args(self, ahead_s: float) -> list[int]:
        """The arguments of a turn request (pacer_take in dialer/lua/_limits.lua)."""
        return [self._emission_us, self.burst, _us(self.recovery_half_life_s), _us(ahead_s)]

    def took(self, wait_us: Any, now_us: Any, taken: Any) -> tuple[float, bool]:
        """Book a turn request's reply: (seconds, taken) as `_take` returns it."""
        if int(taken):
            self.last_admitted_at = (int(now_us) + int(wait_us)) / _US
        return int(wait_us) / _US, bool(int(taken))

    def try_acquire(self) -> float:
        """0.0 when a call may go now (its turn is taken), else seconds until one may."""
        wait, taken = self._take(0.0)
        return 0.0 if taken else wait

    def acquire(
        self,
        deadline_s: float,
        *,
        take: Callable[[float], tuple[float, bool]] | None = None,
    ) -> bool:
        """Wait for a turn; False as soon as it is clear none comes within `deadline_s`.

        A turn due within `reserve_ahead_s` is taken at once and slept for, so waiters line up
        at exact intervals (no turn lost to polling, none two at once); one further ahead is
        asked for again once it is within reach. The limit holds however many processes wait.
        `take(ahead_s)` asks for a turn (default: `_take`); `InviteGate` passes one that also
        takes the call's slot with the turn.
        """
        take = take or self._take
        give_up_at = self._monotonic() + deadline_s
        while True:
            ahead = min(self.reserve_ahead_s, max(0.0, give_up_at - self._monotonic()))
            wait, taken = take(ahead)
            if taken:
                due = self._monotonic() + wait
                self._turn_due = due
                if wait > 0:
                    self._sleep(wait)
                if not self.turn_is_late():
                    return True
                # Woken too late (a busy CPU): sending now would put this call closer than
                # 1 / rate to the ones after it. Let the turn go unused and take another.
                continue
            if self._monotonic() + wait > give_up_at:
                return False
            self._sleep(max(wait - ahead, 0.001))

    def turn_is_late(self) -> bool:
        """Whether it is now more than `max_late_s` past the turn `acquire` last returned (or
        is sleeping for); counts it in `late_turns` when so. A caller with more work to do
        between the turn and the INVITE asks again right before sending."""
        if self.max_late_s is None or self._monotonic() - self._turn_due <= self.max_late_s:
            return False
        self.late_turns += 1
        return True

    def backoff(self, factor: float = 0.5) -> float:
        """Scale the rate by `factor` after a throttled dial; returns the multiplier in force.

        Throttles within `backoff_cooldown_s` of the last back-off count as the same episode
        (every call already in flight reports it) and do not compound.
        """
        if not 0 < factor <= 1:
            raise ValueError("factor must be in (0, 1]")
        return float(
            self._backoff(
                keys=[self.key],
                args=[
                    repr(factor),
                    repr(self.backoff_floor),
                    _us(self.recovery_half_life_s),
                    _us(self.backoff_cooldown_s),
                ],
            )
        )

    def multiplier(self) -> float:
        """The back-off multiplier in force now: 1.0 at full rate."""
        return float(self._multiplier(keys=[self.key], args=[_us(self.recovery_half_life_s)]))

    def current_rate(self) -> float:
        """Calls per second allowed now, after any back-off."""
        return self.calls_per_second * self.multiplier()


class ConcurrencySlots:
    """At most `limit` calls in progress (ringing + talking) on one trunk.

    A slot is a lease: member `"{call_id}:{attempt}"` in a sorted set scored by its expiry
    (Redis server time). The caller picks the lease (ringing timeout + max call duration +
    margin), so a worker that dies mid-call frees its slot when the lease runs out; an expired
    lease stops counting at once and `reap_expired()` hands it to the beat, which reports the
    attempt as interrupted.
    """

    def __init__(self, client: redis.Redis, keys: Keys, trunk: str, limit: int) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.client = client
        self.key = keys.slots(trunk)
        self.limit = limit
        self._acquire = _register(client, "slots_acquire", LIMITS_LIBRARY)
        self._extend = _register(client, "slots_extend")
        self._in_use = _register(client, "slots_in_use")
        self._reap = _register(client, "slots_reap")

    def acquire(
        self, member: str, lease_s: float, *, job_key: str | None = None, stage: str = ""
    ) -> bool:
        """Take a slot, or confirm (and extend) one this member already holds. With `job_key`,
        the job's `dial_stage` becomes `stage` in the same step once the slot is held."""
        keys = [self.key] if job_key is None else [self.key, job_key]
        return bool(self._acquire(keys=keys, args=[member, _us(lease_s), self.limit, stage]))

    def release(self, member: str) -> bool:
        """Free the member's slot. False when it held none (already released or reaped)."""
        return bool(self.client.zrem(self.key, member))

    def extend(self, member: str, lease_s: float) -> bool:
        """Push a live lease to `lease_s` from now. False when the member holds no live slot."""
        return bool(self._extend(keys=[self.key], args=[member, _us(lease_s)]))

    def in_use(self) -> int:
        """Live leases now."""
        return int(self._in_use(keys=[self.key]))

    def reap_expired(self) -> list[str]:
        """Remove and return the members whose lease ran out; each is returned once only."""
        return [reply_text(member) for member in self._reap(keys=[self.key])]


InviteTurn = Literal["held", "no_turn", "no_slot"]


class _NoSlot(Exception):
    """The turn came with no free slot (InviteGate)."""


class InviteGate:
    """A pacing turn, then a concurrency slot, right before the request that sends an INVITE.

    When the turn is due at once both are one script (`dialer/lua/invite_turn.lua`), which also
    records the job's dial stage; a turn reserved ahead (see `RedisPacer.acquire`) is slept for
    and the slot taken after it. Taking the slot with a reserved turn would save that round
    trip too, but every waiter would then hold a slot idle for up to the 1 s reservation: with
    a tight concurrency cap that starved the calls that were ringing (measured: 6.7 of 20
    calls/s in `bench/pacing.py`). A turn whose slot is refused is lost. Lateness is checked
    again once the slot is held, right before the INVITE: a call more than `max_late_s` past its
    turn lets it go and takes the next, keeping its slot.
    """

    def __init__(self, pacer: RedisPacer, slots: ConcurrencySlots) -> None:
        self.pacer = pacer
        self.slots = slots
        self._script = _register(slots.client, "invite_turn", LIMITS_LIBRARY)

    def take(
        self, member: str, lease_s: float, deadline_s: float, *, job_key: str, stage: str
    ) -> InviteTurn:
        held = False

        def turn_and_slot(ahead_s: float) -> tuple[float, bool]:
            nonlocal held
            if held:  # late for an earlier turn: the slot is ours, ask for a turn only
                return self.pacer._take(ahead_s)
            wait_us, now_us, taken, slot = self._script(
                keys=[self.pacer.key, self.slots.key, job_key],
                args=[
                    *self.pacer.take_args(ahead_s),
                    member,
                    _us(lease_s),
                    self.slots.limit,
                    stage,
                ],
            )
            if int(slot) == 0:
                raise _NoSlot
            held = int(slot) == 1
            return self.pacer.took(wait_us, now_us, taken)

        give_up_at = self.pacer._monotonic() + deadline_s
        while True:
            left = give_up_at - self.pacer._monotonic()
            try:
                if not self.pacer.acquire(left, take=turn_and_slot):
                    return "no_turn"
            except _NoSlot:
                return "no_slot"
            if not held:
                if not self.slots.acquire(member, lease_s, job_key=job_key, stage=stage):
                    return "no_slot"
                held = True
            if not self.pacer.turn_is_late():
                return "held"
            # The slot's round trip made this call late for its turn: let the turn go, keep
            # the slot, take the next turn.


BreakerState = Literal["closed", "open", "half_open"]


@dataclass(frozen=True)
class BreakerStatus:
    state: BreakerState
    paused_for: float
    samples: int
    throttled: int


class CircuitBreaker:
    """Pauses a trunk when too many recent dials were throttled.

    Keeps the last `window` outcomes; with at least half a window of samples and a throttled
    share >= `threshold` it opens for `pause_s`. Outcomes reported while open belong to calls
    placed before the pause and are ignored. After the pause it is half-open: dialing resumes
    and the next outcome decides (throttled: open again; otherwise closed with a fresh window).
    Pacing backs off in the meantime, so the probe traffic is already slower.
    """

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        trunk: str,
        window: int = 20,
        threshold: float = 0.5,
        pause_s: float = 60.0,
        *,
        memory_s: float = 3600.0,
    ) -> None:
        if window < 2:
            raise ValueError("window must be at least 2")
        if not 0 < threshold <= 1:
            raise ValueError("threshold must be in (0, 1]")
        if pause_s <= 0:
            raise ValueError("pause_s must be positive")
        self.client = client
        self.key = keys.breaker(trunk)
        self.window = window
        self.threshold = threshold
        self.pause_s = pause_s
        self.memory_s = memory_s
        """History older than this (without any new outcome) is forgotten, so yesterday's
        throttles cannot tip today's breaker."""
        self._record = _register(client, "breaker_record")
        self._pause = _register(client, "breaker_pause")
        self._status = _register(client, "breaker_status")

    def record(self, outcome_throttled: bool) -> float:
        """Record one dial outcome; returns the pause now in force (0.0 when closed)."""
        call = self.record_call(outcome_throttled)
        return int(self._record(keys=list(call.keys), args=list(call.args))) / _US

    def record_call(self, outcome_throttled: bool) -> ScriptCall:
        """`record`, to run inside a pipeline (its reply: the pause in force, in us)."""
        return ScriptCall(
            self._record,
            [self.key],
            [
                "1" if outcome_throttled else "0",
                self.window,
                repr(self.threshold),
                _us(self.pause_s),
                _us(self.memory_s),
            ],
        )

    def paused_for(self) -> float:
        """Seconds until dialing may resume on this trunk; 0.0 when it may dial now."""
        return self.status().paused_for

    def status(self) -> BreakerStatus:
        remaining_us, tripped, outcomes = self._status(keys=[self.key])
        paused = int(remaining_us) / _US
        history = reply_text(outcomes)
        if paused > 0:
            state: BreakerState = "open"
        elif reply_text(tripped) == "1":
            state = "half_open"
        else:
            state = "closed"
        return BreakerStatus(state, paused, len(history), history.count("1"))

    def pause(self, seconds: float) -> None:
        """Operator pause for `seconds` from now (replaces any pause in force)."""
        if seconds <= 0:
            raise ValueError("seconds must be positive; use resume() to lift a pause")
        self._pause(keys=[self.key], args=[_us(seconds), _us(self.memory_s)])

    def resume(self) -> None:
        """Operator resume: closed now, with a fresh outcome history."""
        self.client.hdel(self.key, "paused_until", "tripped", "outcomes")
