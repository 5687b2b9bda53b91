"""Calling windows: local hours, DST-correct, open in every zone of the candidate.

The property tests use `is_open` (a direct `astimezone` reading) as the oracle for
`next_opening` / `open_until` / `open_intervals` (interval arithmetic). Every window boundary in
the generated windows is a quarter hour, and every UTC offset and transition of the zones under
test is quarter-hour aligned (checked below), so the open set changes only on quarter hours in
UTC: checking `at` plus every quarter hour in between is an exact check, not a sample.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import phonenumbers
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from phonenumbers import timezone as phone_timezone

from dialer.models import WEEKDAYS, CallingWindow, TimeRange
from dialer.windows import (
    SEARCH_DAYS,
    NoCommonOpening,
    UnknownTimezone,
    can_start_call,
    candidate_zones,
    is_open,
    next_opening,
    open_intervals,
    open_until,
    remaining_open_seconds,
)

ZONES = (
    "Europe/Brussels",
    "Europe/London",
    "America/New_York",
    "America/Los_Angeles",
    "America/Sao_Paulo",
    "Australia/Sydney",
    "Australia/Lord_Howe",  # 30-minute DST
    "Asia/Kolkata",
    "Asia/Kathmandu",  # +05:45
    "Pacific/Chatham",  # +12:45 / +13:45
    "Africa/Casablanca",  # Ramadan offset changes
    "America/St_Johns",  # -03:30 with DST
)
BRUSSELS = ZoneInfo("Europe/Brussels")
DEFAULT = CallingWindow()
QUARTER = timedelta(minutes=15)


def _transitions(zone: str, start: datetime, end: datetime) -> list[datetime]:
    """UTC instants where the zone's offset changes (hourly scan + minute refinement)."""
    tz = ZoneInfo(zone)
    found: list[datetime] = []
    t = start
    previous = t.astimezone(tz).utcoffset()
    while t < end:
        nxt = t + timedelta(hours=1)
        offset = nxt.astimezone(tz).utcoffset()
        if offset != previous:
            m = t
            while m.astimezone(tz).utcoffset() == previous:
                m += timedelta(minutes=1)
            found.append(m)
            previous = offset
        t = nxt
    return found


TRANSITIONS = sorted(
    {
        moment
        for zone in ZONES
        for moment in _transitions(
            zone, datetime(2026, 1, 1, tzinfo=UTC), datetime(2028, 1, 1, tzinfo=UTC)
        )
    }
)


# ---------------------------------------------------------------------------------------------
# Strategies
# ---------------------------------------------------------------------------------------------

# Quarter-hour boundaries, weighted towards the hours where DST changes happen (00:00-04:00).
_BOUNDARY = st.one_of(
    st.integers(0, 96).map(lambda q: q * 15),
    st.integers(0, 16).map(lambda q: q * 15),
)


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


@st.composite
def day_ranges(draw: st.DrawFn) -> list[TimeRange]:
    cuts = sorted(set(draw(st.lists(_BOUNDARY, min_size=0, max_size=4))))
    if len(cuts) % 2:
        cuts = cuts[:-1]
    return [
        TimeRange(start=_hhmm(a), end=_hhmm(b)) for a, b in zip(cuts[::2], cuts[1::2], strict=True)
    ]


@st.composite
def windows(draw: st.DrawFn) -> CallingWindow:
    if draw(st.booleans()):
        return DEFAULT
    days = {day: draw(day_ranges()) for day in WEEKDAYS}
    assume(any(days.values()))
    return CallingWindow(**days)


_UNIFORM = st.datetimes(
    min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
)
_NEAR_TRANSITION = st.builds(
    lambda moment, shift: moment + timedelta(seconds=shift),
    st.sampled_from(TRANSITIONS),
    st.integers(-3 * 86400, 3 * 86400),
)
instants = st.one_of(
    _UNIFORM, _NEAR_TRANSITION, _NEAR_TRANSITION.map(lambda d: d.replace(second=0))
)
zone_sets = st.lists(st.sampled_from(ZONES), min_size=1, max_size=3, unique=True)

PROPERTY = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.filter_too_much]
)


def _quarters(after: datetime, before: datetime) -> Iterator[datetime]:
    """Every UTC quarter hour strictly after `after` and strictly before `before`."""
    t = after.astimezone(UTC).replace(second=0, microsecond=0)
    t -= timedelta(minutes=t.minute % 15)
    t += QUARTER
    while t < before:
        yield t
        t += QUARTER


# ---------------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------------


def test_zone_transitions_are_quarter_hour_aligned() -> None:
    """The premise of the exact checks below."""
    assert TRANSITIONS, "expected DST transitions in 2026-2027"
    for moment in TRANSITIONS:
        assert moment.minute % 15 == 0 and moment.second == 0
    for zone in ZONES:
        for moment in (datetime(2026, 1, 15, tzinfo=UTC), datetime(2026, 7, 15, tzinfo=UTC)):
            offset = moment.astimezone(ZoneInfo(zone)).utcoffset()
            assert offset is not None and offset.total_seconds() % 900 == 0


@PROPERTY
@given(window=windows(), zones=zone_sets, at=instants)
def test_next_opening_is_the_first_open_instant(
    window: CallingWindow, zones: list[str], at: datetime
) -> None:
    try:
        opening = next_opening(window, zones, at)
    except NoCommonOpening:
        assert len(zones) > 1, "one zone with a valid window always opens within a week"
        assert not is_open(window, zones, at)
        assert not any(
            is_open(window, zones, t) for t in _quarters(at, at + timedelta(days=SEARCH_DAYS))
        )
        return
    assert opening.tzinfo is UTC
    assert opening >= at
    assert is_open(window, zones, opening)
    assert all(is_open(window, [z], opening) for z in zones)
    if is_open(window, zones, at):
        assert opening == at
    else:
        assert not any(is_open(window, zones, t) for t in _quarters(at, opening))


@PROPERTY
@given(
    window=windows(),
    zones=zone_sets,
    at=instants,
    fraction=st.floats(min_value=0, max_value=1, exclude_max=True),
)
def test_open_until_is_the_first_close(
    window: CallingWindow, zones: list[str], at: datetime, fraction: float
) -> None:
    try:
        opening = next_opening(window, zones, at)
    except NoCommonOpening:
        assume(False)
    close = open_until(window, zones, opening)
    assert close > opening
    assert all(is_open(window, zones, t) for t in _quarters(opening, close))
    if close < opening + timedelta(days=7):
        assert not is_open(window, zones, close)
    # Anywhere inside the same opening, the close is the same instant.
    inside = opening + (close - opening) * fraction
    assume(inside < close)
    assert open_until(window, zones, inside) == close
    remaining = remaining_open_seconds(window, zones, inside)
    assert remaining == (close - inside).total_seconds()
    assert can_start_call(window, zones, inside, remaining)
    assert not can_start_call(window, zones, inside, remaining + 1)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(window=windows(), zones=zone_sets, at=instants, days=st.integers(1, 4))
def test_open_intervals_match_is_open_exactly(
    window: CallingWindow, zones: list[str], at: datetime, days: int
) -> None:
    hi = at + timedelta(days=days)
    intervals = open_intervals(window, zones, at, hi)
    for a, b in pairwise(intervals):
        assert a.end < b.start, "intervals are disjoint and not touching"
    for interval in intervals:
        assert at <= interval.start < interval.end <= hi
        assert is_open(window, zones, interval.start)
        if interval.end < hi:
            assert not is_open(window, zones, interval.end)
    for t in [at, *_quarters(at, hi)]:
        assert is_open(window, zones, t) == any(i.start <= t < i.end for i in intervals)


# ---------------------------------------------------------------------------------------------
# Examples
# ---------------------------------------------------------------------------------------------


def _only(**days: list[TimeRange]) -> CallingWindow:
    """A window open only on the days given (CallingWindow defaults the others to open)."""
    return CallingWindow(**{d: days.get(d, []) for d in WEEKDAYS})


def _bxl(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=BRUSSELS)


def test_friday_evening_moves_to_saturday_morning() -> None:
    friday = _bxl(2026, 3, 6, 20, 30)
    assert friday.weekday() == 4
    assert next_opening(DEFAULT, ["Europe/Brussels"], friday) == _bxl(2026, 3, 7, 10, 0)


def test_saturday_afternoon_moves_to_monday_morning() -> None:
    assert next_opening(DEFAULT, ["Europe/Brussels"], _bxl(2026, 3, 7, 15, 0)) == _bxl(
        2026, 3, 9, 9, 0
    )


def test_open_instant_is_returned_unchanged_in_utc() -> None:
    at = _bxl(2026, 3, 4, 11, 15, 30)
    opening = next_opening(DEFAULT, ["Europe/Brussels"], at)
    assert opening == at and opening.tzinfo is UTC


def test_window_edges_are_half_open() -> None:
    zones = ["Europe/Brussels"]
    assert is_open(DEFAULT, zones, _bxl(2026, 3, 4, 9, 0))
    assert not is_open(DEFAULT, zones, _bxl(2026, 3, 4, 8, 59, 59))
    assert is_open(DEFAULT, zones, _bxl(2026, 3, 4, 19, 59, 59))
    assert not is_open(DEFAULT, zones, _bxl(2026, 3, 4, 20, 0))
    assert open_until(DEFAULT, zones, _bxl(2026, 3, 4, 12, 0)) == _bxl(2026, 3, 4, 20, 0)


def test_summer_and_winter_use_local_time() -> None:
    zones = ["Europe/Brussels"]
    # 09:00 local is 08:00 UTC in winter, 07:00 UTC in summer.
    assert next_opening(DEFAULT, zones, datetime(2026, 1, 7, 6, 0, tzinfo=UTC)) == datetime(
        2026, 1, 7, 8, 0, tzinfo=UTC
    )
    assert next_opening(DEFAULT, zones, datetime(2026, 7, 8, 6, 0, tzinfo=UTC)) == datetime(
        2026, 7, 8, 7, 0, tzinfo=UTC
    )


def test_spring_forward_window_starting_in_the_skipped_hour_opens_at_the_jump() -> None:
    # 2026-03-29 (Sunday) Brussels: 02:00 CET jumps to 03:00 CEST at 01:00 UTC.
    window = _only(sun=[TimeRange(start="02:30", end="05:00")])
    opening = next_opening(window, ["Europe/Brussels"], _bxl(2026, 3, 29, 0, 0))
    assert opening == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
    assert opening.astimezone(BRUSSELS).hour == 3
    assert open_until(window, ["Europe/Brussels"], opening) == _bxl(2026, 3, 29, 5, 0)
    # A microsecond-precise `at` just before the jump still opens exactly at the jump.
    at = datetime(2026, 3, 29, 0, 59, 59, 500000, tzinfo=UTC)
    assert next_opening(window, ["Europe/Brussels"], at) == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)


def test_spring_forward_window_ending_in_the_skipped_hour_closes_at_the_jump() -> None:
    window = _only(sun=[TimeRange(start="01:00", end="02:30")])
    at = _bxl(2026, 3, 29, 1, 30)
    assert open_until(window, ["Europe/Brussels"], at) == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)


def test_window_inside_the_skipped_hour_does_not_open_that_day() -> None:
    window = _only(sun=[TimeRange(start="02:15", end="02:45")])
    opening = next_opening(window, ["Europe/Brussels"], _bxl(2026, 3, 29, 0, 0))
    assert opening == _bxl(2026, 4, 5, 2, 15)


def test_fall_back_repeated_hour_is_open_both_times() -> None:
    # 2026-10-25 (Sunday) Brussels: 03:00 CEST falls back to 02:00 CET at 01:00 UTC.
    window = _only(sun=[TimeRange(start="02:00", end="02:30")])
    zones = ["Europe/Brussels"]
    first = next_opening(window, zones, _bxl(2026, 10, 25, 0, 0))
    assert first == datetime(2026, 10, 25, 0, 0, tzinfo=UTC)  # 02:00 CEST
    assert open_until(window, zones, first) == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    second = next_opening(window, zones, datetime(2026, 10, 25, 0, 45, tzinfo=UTC))
    assert second == datetime(2026, 10, 25, 1, 0, tzinfo=UTC)  # 02:00 CET, the repeat
    assert open_until(window, zones, second) == datetime(2026, 10, 25, 1, 30, tzinfo=UTC)


def test_lord_howe_half_hour_dst_jump() -> None:
    # 2026-10-04 (Sunday) Lord Howe: 02:00 +10:30 jumps to 02:30 +11:00 at 15:30 UTC on the 3rd.
    window = _only(sun=[TimeRange(start="02:00", end="03:00")])
    zone = ZoneInfo("Australia/Lord_Howe")
    at = datetime(2026, 10, 4, 1, 0, tzinfo=zone)
    opening = next_opening(window, ["Australia/Lord_Howe"], at)
    assert opening == datetime(2026, 10, 3, 15, 30, tzinfo=UTC)
    assert opening.astimezone(zone).strftime("%H:%M") == "02:30"


def test_midnight_spanning_opening_is_one_interval() -> None:
    window = _only(
        fri=[TimeRange(start="20:00", end="24:00")], sat=[TimeRange(start="00:00", end="02:00")]
    )
    close = open_until(window, ["Europe/Brussels"], _bxl(2026, 3, 6, 21, 0))
    assert close == _bxl(2026, 3, 7, 2, 0)


def test_per_job_window_override() -> None:
    evenings = _only(
        mon=[TimeRange(start="18:00", end="21:00")], sun=[TimeRange(start="11:00", end="12:00")]
    )
    zones = ["Europe/Brussels"]
    assert next_opening(evenings, zones, _bxl(2026, 3, 4, 10, 0)) == _bxl(2026, 3, 8, 11, 0)
    assert next_opening(evenings, zones, _bxl(2026, 3, 8, 12, 0)) == _bxl(2026, 3, 9, 18, 0)
    assert next_opening(DEFAULT, zones, _bxl(2026, 3, 4, 10, 0)) == _bxl(2026, 3, 4, 10, 0)


def test_can_start_call_leaves_room_before_closing() -> None:
    zones = ["Europe/Brussels"]
    assert can_start_call(DEFAULT, zones, _bxl(2026, 3, 4, 19, 40), 15 * 60)
    assert not can_start_call(DEFAULT, zones, _bxl(2026, 3, 4, 19, 50), 15 * 60)
    assert not can_start_call(DEFAULT, zones, _bxl(2026, 3, 4, 21, 0), 0)
    assert remaining_open_seconds(DEFAULT, zones, _bxl(2026, 3, 4, 19, 50)) == 600
    assert remaining_open_seconds(DEFAULT, zones, _bxl(2026, 3, 4, 21, 0)) == 0


def test_open_until_refuses_a_closed_instant() -> None:
    with pytest.raises(ValueError, match="closed"):
        open_until(DEFAULT, ["Europe/Brussels"], _bxl(2026, 3, 4, 21, 0))


def test_window_open_around_the_clock_never_closes() -> None:
    always = CallingWindow(**{d: [TimeRange(start="00:00", end="24:00")] for d in WEEKDAYS})
    at = _bxl(2026, 3, 28, 12, 0)  # across the spring-forward night
    assert open_until(always, ["Europe/Brussels"], at) >= at + timedelta(days=7)


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        next_opening(DEFAULT, ["Europe/Brussels"], datetime(2026, 3, 4, 12, 0))
    with pytest.raises(ValueError, match="aware"):
        is_open(DEFAULT, ["Europe/Brussels"], datetime(2026, 3, 4, 12, 0))


# ---------------------------------------------------------------------------------------------
# Several zones
# ---------------------------------------------------------------------------------------------


def _zones_of(number: str) -> tuple[str, ...]:
    parsed = phonenumbers.parse(number)
    return tuple(z for z in phone_timezone.time_zones_for_number(parsed) if z != "Etc/Unknown")


@pytest.mark.parametrize(
    "number",
    [
        "+18005551234",  # US toll-free: every NANP zone from Adak to Guam
        "+79161234567",  # Russian mobile: Kaliningrad-ish to Kamchatka
        "+61412345678",  # Australian mobile: Perth to Lord Howe
    ],
)
def test_number_with_many_zones_opens_only_when_open_in_all(number: str) -> None:
    zones = candidate_zones(None, _zones_of(number))
    assert len(zones) > 3
    at = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)
    opening = next_opening(DEFAULT, zones, at)
    for zone in zones:
        assert is_open(DEFAULT, [zone], opening), zone
    close = open_until(DEFAULT, zones, opening)
    assert close - opening <= timedelta(hours=11)
    assert not any(is_open(DEFAULT, zones, t) for t in _quarters(at, opening))


def test_disjoint_zones_raise_a_clear_error() -> None:
    mornings = _only(**{d: [TimeRange(start="09:00", end="10:00")] for d in WEEKDAYS[:5]})
    with pytest.raises(NoCommonOpening, match="set timezone"):
        next_opening(mornings, ["Europe/Brussels", "Asia/Tokyo"], _bxl(2026, 3, 4, 12, 0))


def test_candidate_zones_prefers_the_explicit_timezone() -> None:
    assert candidate_zones("America/Chicago", ("America/New_York",)) == ("America/Chicago",)
    assert candidate_zones(None, ("Europe/Brussels",)) == ("Europe/Brussels",)
    assert candidate_zones(None, ("Etc/Unknown", "Europe/Paris", "Europe/Paris")) == (
        "Europe/Paris",
    )


def test_candidate_zones_without_any_zone_says_set_timezone() -> None:
    with pytest.raises(UnknownTimezone, match="set timezone") as info:
        candidate_zones(None, ("Etc/Unknown",))
    assert isinstance(info.value, ValueError)  # intake maps ValueError to a field error
    with pytest.raises(UnknownTimezone, match="unknown IANA time zone"):
        candidate_zones("Mars/Olympus_Mons", ())
