"""Calls-per-second pacing math: GCRA and the throttle back-off multiplier. Pure, no I/O.

GCRA (the generic cell rate algorithm, a leaky bucket that stores one number) keeps a
*theoretical arrival time* (TAT): the moment the next call would be due if calls arrived exactly
at the configured rate. A call at `now` is admitted when `now >= TAT - tolerance`; admitting it
moves the TAT one emission interval (1 / rate) past `max(TAT, now)`. Only one number per trunk is
stored, so the Redis side is a single read-modify-write in one Lua script (`dialer/lua/`), which
mirrors `gcra()` line by line in integer microseconds.

Bound (proved in `gcra()`'s docstring, checked by tests/unit/test_pacing.py): with emission
interval T and burst b, any *half-open* interval of length L holds at most
`ceil(L / T) + b - 1` admissions, and any closed interval at most `floor(L / T) + b`. With the
default b = 1 and T = 1 / rate, no window `[t, t + 1 s)` ever holds more than `ceil(rate)` calls.

The back-off multiplier scales the rate down when the trunk answers "throttled" and recovers
towards 1 exponentially, so a trunk that refused calls a minute ago is not hammered at full speed
again the moment one call gets through.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class GcraDecision:
    """The outcome of one GCRA check.

    `new_tat` is what to store: the advanced TAT when allowed, the unchanged one when not (a
    refused call does not consume capacity). `retry_after` is 0 when allowed, else the exact
    number of seconds after which the same call would be allowed if nobody else took the turn.
    """

    allowed: bool
    new_tat: float
    retry_after: float


def gcra(tat: float, now: float, emission_interval: float, burst: int) -> GcraDecision:
    """Admit or refuse one call at `now` given the stored TAT (use `now` or less when none).

    Why the bound in the module docstring holds: every admission moves the TAT forward by at least
    T past the previous one, and an admission at t needs `t >= TAT - (b - 1) * T`. So after the
    first admission t_1 of any run, the n-th one satisfies `t_n >= t_1 + (n - 1) * T - (b - 1) * T`,
    i.e. `t_n - t_1 >= (n - b) * T`. In a half-open window of length L, `t_n - t_1 < L`, hence
    `n < L / T + b`.
    """
    if emission_interval <= 0:
        raise ValueError("emission_interval must be positive")
    if burst < 1:
        raise ValueError("burst must be at least 1")
    tolerance = emission_interval * (burst - 1)
    allow_at = tat - tolerance
    if now < allow_at:
        return GcraDecision(allowed=False, new_tat=tat, retry_after=allow_at - now)
    return GcraDecision(allowed=True, new_tat=max(tat, now) + emission_interval, retry_after=0.0)


def emission_interval(calls_per_second: float, multiplier: float = 1.0) -> float:
    """Seconds between calls at `calls_per_second` scaled down by a back-off `multiplier`."""
    if calls_per_second <= 0:
        raise ValueError("calls_per_second must be positive")
    if not 0 < multiplier <= 1:
        raise ValueError("multiplier must be in (0, 1]")
    return 1.0 / (calls_per_second * multiplier)


def emission_interval_us(calls_per_second: float) -> int:
    """The emission interval in whole microseconds, rounded *up* so rounding never adds rate.

    The Redis script works in integer microseconds (Redis `TIME` resolution), where float
    rounding cannot let two admissions land a hair closer than T.
    """
    return math.ceil(1_000_000 / calls_per_second - 1e-9)


def recovered_multiplier(multiplier: float, elapsed_s: float, half_life_s: float) -> float:
    """The back-off multiplier `elapsed_s` after it was set: the gap to 1 halves every half-life.

    Exponential recovery: quick at first (a short hiccup is forgotten soon), cautious near full
    rate (the last few percent come back slowly, where the trunk's real limit usually sits).
    """
    if elapsed_s <= 0:
        return multiplier
    if half_life_s <= 0:
        return 1.0
    recovered = 1.0 - (1.0 - multiplier) * math.pow(0.5, elapsed_s / half_life_s)
    return min(1.0, max(multiplier, recovered))  # float rounding must not move it backwards


def backed_off_multiplier(current: float, factor: float, floor: float) -> float:
    """The multiplier after one throttle: `current * factor`, never below `floor`.

    The floor keeps a trunk that throttles every call from being paced to a standstill: the
    circuit breaker, not pacing, is what stops dialing altogether.
    """
    if not 0 < factor <= 1:
        raise ValueError("factor must be in (0, 1]")
    return max(floor, current * factor)


def most_in_window(stamps: Iterable[float], length: float = 1.0) -> int:
    """The most stamps in any half-open window [t, t + length): what a trunk that enforces
    "N calls per second" in sliding windows would count (the maximum is reached at a stamp)."""
    ordered = sorted(stamps)
    return max(
        (bisect.bisect_left(ordered, t + length) - i for i, t in enumerate(ordered)), default=0
    )
