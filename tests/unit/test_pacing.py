"""GCRA and back-off math (dialer.pacing), checked as properties.

Times are whole numbers here (think microseconds, as in the Redis script): the bound is a
statement about exact arithmetic, and the script works in integers for the same reason.
"""

from __future__ import annotations

import bisect
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dialer.pacing import (
    GcraDecision,
    backed_off_multiplier,
    emission_interval,
    emission_interval_us,
    gcra,
    recovered_multiplier,
)

intervals = st.integers(min_value=1, max_value=10_000)
bursts = st.integers(min_value=1, max_value=6)


def admit_all(
    tat: float, arrivals: list[float], interval: float, burst: int
) -> tuple[list[float], float]:
    """Run arrivals (sorted) through GCRA; return the admitted times and the final TAT."""
    admitted: list[float] = []
    for now in arrivals:
        decision = gcra(tat, now, interval, burst)
        tat = decision.new_tat
        if decision.allowed:
            admitted.append(now)
    return admitted, tat


def most_in_half_open(admitted: list[float], length: float) -> int:
    """Largest count of admissions in any window [a, a + length) (some best window starts at an
    admission)."""
    return max(
        (bisect.bisect_left(admitted, t + length) - i for i, t in enumerate(admitted)), default=0
    )


def most_in_closed(admitted: list[float], length: float) -> int:
    return max(
        (bisect.bisect_right(admitted, t + length) - i for i, t in enumerate(admitted)), default=0
    )


@st.composite
def traffic(draw: st.DrawFn) -> tuple[int, int, int, list[int]]:
    interval = draw(intervals)
    burst = draw(bursts)
    start_tat = draw(st.integers(min_value=-5 * interval, max_value=5 * interval))
    gaps = draw(st.lists(st.integers(min_value=0, max_value=3 * interval), max_size=200))
    arrivals: list[int] = []
    now = 0
    for gap in gaps:
        now += gap
        arrivals.append(now)
    return interval, burst, start_tat, arrivals


@settings(max_examples=300, deadline=None)
@given(traffic(), st.integers(min_value=1, max_value=40))
def test_no_interval_admits_more_than_rate_times_length_plus_burst(
    case: tuple[int, int, int, list[int]], periods: int
) -> None:
    interval, burst, start_tat, arrivals = case
    admitted, _ = admit_all(start_tat, [float(a) for a in arrivals], interval, burst)
    for length in (interval * periods, interval * periods - 1, interval * periods + interval // 2):
        if length <= 0:
            continue
        # The brief's bound: rate * T + burst, for any interval, even a closed one.
        assert most_in_closed(admitted, length) <= length / interval + burst
        # The tight forms proved in gcra()'s docstring.
        assert most_in_closed(admitted, length) <= length // interval + burst
        assert most_in_half_open(admitted, length) <= math.ceil(length / interval) + burst - 1


@settings(max_examples=200, deadline=None)
@given(intervals, bursts, st.integers(min_value=1, max_value=30))
def test_the_bound_is_tight_when_callers_hammer(interval: int, burst: int, periods: int) -> None:
    """Greedy callers get exactly the bound: GCRA never admits less than it promises."""
    span = interval * periods
    admitted: list[float] = []
    tat = 0.0
    for now in range(span):  # at every instant, call again until refused
        while (decision := gcra(tat, now, interval, burst)).allowed:
            admitted.append(now)
            tat = decision.new_tat
    assert len(admitted) == periods + burst - 1
    assert most_in_half_open(admitted, span) == periods + burst - 1


def test_burst_one_keeps_every_one_second_window_at_the_rate() -> None:
    """The default: at 20/s, 20 calls in any [t, t + 1 s), even though [0, 1] closed holds 21."""
    interval = 50_000  # microseconds
    admitted, _ = admit_all(0.0, [float(t) for t in range(0, 3_000_001, 100)], interval, 1)
    assert most_in_half_open(admitted, 1_000_000) == 20
    assert most_in_closed(admitted, 1_000_000) == 21


@settings(max_examples=500)
@given(
    st.integers(min_value=-100_000, max_value=100_000),
    st.integers(min_value=-100_000, max_value=100_000),
    intervals,
    bursts,
)
def test_retry_after_is_exact(tat: int, now: int, interval: int, burst: int) -> None:
    decision = gcra(float(tat), float(now), interval, burst)
    if decision.allowed:
        assert decision.retry_after == 0
        assert decision.new_tat == max(tat, now) + interval
        return
    assert decision.retry_after > 0
    assert decision.new_tat == tat, "a refused call must not consume capacity"
    assert gcra(float(tat), now + decision.retry_after, interval, burst).allowed
    assert not gcra(float(tat), now + decision.retry_after - 1, interval, burst).allowed


@settings(max_examples=300, deadline=None)
@given(
    st.floats(min_value=0.05, max_value=500),
    bursts,
    st.lists(st.floats(min_value=0, max_value=0.2), min_size=1, max_size=150),
)
def test_real_valued_rates_keep_the_half_open_bound(
    rate: float, burst: int, gaps: list[float]
) -> None:
    """Same bound with float seconds, allowing for float rounding of the accumulated TAT."""
    interval = emission_interval(rate)
    arrivals = [sum(gaps[: i + 1]) for i in range(len(gaps))]
    admitted, _ = admit_all(arrivals[0], arrivals, interval, burst)
    assert most_in_half_open(admitted, 1.0 - 1e-9) <= math.ceil(rate) + burst - 1


def test_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        gcra(0, 0, 0, 1)
    with pytest.raises(ValueError):
        gcra(0, 0, 1, 0)
    with pytest.raises(ValueError):
        emission_interval(0)
    with pytest.raises(ValueError):
        emission_interval(1, multiplier=0)
    with pytest.raises(ValueError):
        backed_off_multiplier(1, 0, 0.1)
    assert gcra(0, 0, 1, 1) == GcraDecision(True, 1, 0.0)


@given(st.floats(min_value=0.01, max_value=100_000))
def test_microsecond_interval_rounds_towards_fewer_calls(rate: float) -> None:
    us = emission_interval_us(rate)
    assert 1_000_000 / us <= rate * (1 + 1e-12)
    assert us - 1_000_000 / rate < 1
    assert emission_interval_us(20) == 50_000
    assert emission_interval_us(3) == 333_334


@given(
    st.floats(min_value=0.01, max_value=1),
    st.floats(min_value=0, max_value=1_000),
    st.floats(min_value=0, max_value=1_000),
    st.floats(min_value=0.01, max_value=100),
)
def test_back_off_recovers_monotonically_towards_full_rate(
    mult: float, a: float, b: float, half_life: float
) -> None:
    early, late = sorted((a, b))
    m_early = recovered_multiplier(mult, early, half_life)
    m_late = recovered_multiplier(mult, late, half_life)
    assert mult <= m_early <= m_late <= 1
    assert recovered_multiplier(mult, half_life, half_life) == pytest.approx(1 - (1 - mult) / 2)
    assert recovered_multiplier(mult, 0, half_life) == mult
    assert recovered_multiplier(mult, 1, 0) == 1


@given(st.floats(min_value=0.01, max_value=1), st.floats(min_value=0.01, max_value=1))
def test_back_off_multiplies_down_to_a_floor(current: float, factor: float) -> None:
    after = backed_off_multiplier(current, factor, 0.1)
    assert after == max(0.1, current * factor)
    assert after <= max(current, 0.1)


def test_most_in_window_counts_half_open_sliding_windows() -> None:
    from dialer.pacing import most_in_window

    assert most_in_window([]) == 0
    assert most_in_window([0.0, 0.5, 1.0]) == 2  # 1.0 is outside [0, 1)
    assert most_in_window([0.0, 0.5, 0.999, 1.2, 1.3]) == 4  # [0.5, 1.5)
    assert most_in_window([3.0, 1.0, 2.0], length=1.5) == 2  # order does not matter
