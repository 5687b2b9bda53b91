"""Calling hours in the candidate's local time, DST-correct.

A `CallingWindow` says, per weekday, which local wall-clock intervals `[start, end)` are open. An
instant is open in a zone when its wall-clock reading there falls in one of that weekday's
intervals; with several zones (a number that maps to several, DESIGN section 5) it must be open in
all of them. Consequences at DST changes, all by that one definition:

- spring forward: a window starting inside the skipped hour (02:30 on a day when 02:00 jumps to
  03:00) opens at the jump, because 03:00 is the first wall-clock reading at or after 02:30;
- fall back: the repeated hour is open (or closed) both times it is on the clock.

`next_opening` works on intervals, not on steps: per zone it splits the horizon into stretches of
constant UTC offset (transitions found by bisection), maps each day's ranges into UTC inside each
stretch, and intersects the zones' interval lists. That costs a few dozen `utcoffset` calls per
zone and runs for every scheduled job.

All functions take the instant; none reads a clock.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dialer.errors import DialerError
from dialer.models import CallingWindow

__all__ = [
    "NoCommonOpening",
    "UnknownTimezone",
    "can_start_call",
    "candidate_zones",
    "is_open",
    "next_opening",
    "open_intervals",
    "open_until",
    "remaining_open_seconds",
]

# How far ahead next_opening looks before giving up (a valid weekly window opens within 7 days in
# one zone; only zones whose windows never overlap can exhaust this).
SEARCH_DAYS = 14
# First, cheaper pass: enough for a weekend plus a public-holiday-free Monday morning.
_FIRST_PASS = timedelta(days=3)
# open_until looks this far; a window open around the clock never closes and returns `at` + this.
_CLOSE_HORIZON = timedelta(days=8)
# Zone offsets are sampled at this step; two transitions within one step do not occur in tzdata.
_SAMPLE = timedelta(hours=6)
_UNKNOWN_ZONE = "Etc/Unknown"


class UnknownTimezone(DialerError, ValueError):
    """No usable time zone for the candidate: set `timezone` (an IANA name)."""


class NoCommonOpening(DialerError, ValueError):
    """The window is never open in all of the candidate's zones at once within the search span."""


@dataclass(frozen=True)
class Interval:
    """A UTC instant interval `[start, end)` (aware datetimes)."""

    start: datetime
    end: datetime


# ---------------------------------------------------------------------------------------------
# Zones
# ---------------------------------------------------------------------------------------------


def candidate_zones(request_timezone: str | None, number_zones: Sequence[str]) -> tuple[str, ...]:
    """The zones whose calling hours apply: the request's `timezone` if given, else the number's.

    Several number zones (a +1 800 number, a Russian or Australian mobile) are all kept: the
    window must then be open in every one of them, which is the cautious reading of "nobody is
    called at 23:00". A backend that knows better sets `timezone`.
    """
    if request_timezone:
        _zone(request_timezone)
        return (request_timezone,)
    zones = tuple(dict.fromkeys(z for z in number_zones if z and z != _UNKNOWN_ZONE))
    if not zones:
        raise UnknownTimezone(
            "the candidate's time zone cannot be told from the phone number: set timezone, "
            "e.g. 'Europe/Brussels'"
        )
    for name in zones:
        _zone(name)
    return zones


@lru_cache(maxsize=512)
def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise UnknownTimezone(
            f"unknown IANA time zone {name!r}: set timezone, e.g. 'Europe/Brussels' (the system "
            "needs the tz database: the 'tzdata' package or /usr/share/zoneinfo)"
        ) from None


# ---------------------------------------------------------------------------------------------
# Queries
# ---------------------------------------------------------------------------------------------


def is_open(window: CallingWindow, zones: Sequence[str], at: datetime) -> bool:
    """Whether `at` falls inside the window's local hours in every zone."""
    _require_aware(at)
    _require_zones(zones)
    return all(_open_in_zone(window, _zone(name), at) for name in zones)


def next_opening(window: CallingWindow, zones: Sequence[str], at: datetime) -> datetime:
    """`at` (as UTC) when the window is open; else the earliest later instant when it is open in
    every zone. Raises `NoCommonOpening` when there is none within `SEARCH_DAYS` days."""
    _require_aware(at)
    _require_zones(zones)
    start = at.astimezone(UTC)
    if is_open(window, zones, start):
        return start
    for span in (_FIRST_PASS, timedelta(days=SEARCH_DAYS)):
        intervals = open_intervals(window, zones, start, start + span)
        if intervals:
            return intervals[0].start
    raise NoCommonOpening(
        f"the calling window is never open in all of {', '.join(zones)} at the same time within "
        f"{SEARCH_DAYS} days of {start.isoformat()}: set timezone, or widen the calling window"
    )


def open_until(window: CallingWindow, zones: Sequence[str], at: datetime) -> datetime:
    """When the opening that contains `at` closes (the earliest close across the zones), in UTC.

    Only meaningful when `is_open(window, zones, at)`; raises ValueError otherwise. A window open
    around the clock in every zone never closes: the result is then `at` + 8 days.
    """
    _require_aware(at)
    _require_zones(zones)
    start = at.astimezone(UTC)
    intervals = open_intervals(window, zones, start, start + _CLOSE_HORIZON)
    if not intervals or intervals[0].start != start:
        raise ValueError(f"the calling window is closed at {start.isoformat()}")
    return intervals[0].end


def remaining_open_seconds(window: CallingWindow, zones: Sequence[str], at: datetime) -> float:
    """Seconds until the window closes, 0.0 when it is closed at `at`."""
    if not is_open(window, zones, at):
        return 0.0
    return (open_until(window, zones, at) - at.astimezone(UTC)).total_seconds()


def can_start_call(
    window: CallingWindow, zones: Sequence[str], at: datetime, min_remaining_s: float
) -> bool:
    """Whether a call may start now and still have `min_remaining_s` before closing time.

    A screening takes minutes; starting one at 19:59 means either talking past 20:00 or cutting
    the candidate off, so the dialer waits for the next opening instead.
    """
    if not is_open(window, zones, at):
        return False
    return remaining_open_seconds(window, zones, at) >= min_remaining_s


def open_intervals(
    window: CallingWindow, zones: Sequence[str], lo: datetime, hi: datetime
) -> list[Interval]:
    """The window's open instants within `[lo, hi)` as sorted, disjoint UTC intervals, open in
    every zone. Intervals are clipped to `[lo, hi)`."""
    _require_aware(lo)
    _require_aware(hi)
    _require_zones(zones)
    lo_utc, hi_utc = lo.astimezone(UTC), hi.astimezone(UTC)
    if lo_utc >= hi_utc:
        return []
    result: list[Interval] | None = None
    for name in dict.fromkeys(zones):
        zone_intervals = _zone_intervals(window, _zone(name), lo_utc, hi_utc)
        result = zone_intervals if result is None else _intersect(result, zone_intervals)
        if not result:
            return []
    return result or []


# ---------------------------------------------------------------------------------------------
# One zone
# ---------------------------------------------------------------------------------------------


def _open_in_zone(window: CallingWindow, zone: ZoneInfo, at: datetime) -> bool:
    local = at.astimezone(zone)
    wall = timedelta(
        hours=local.hour, minutes=local.minute, seconds=local.second, microseconds=local.microsecond
    )
    return any(
        timedelta(minutes=r.start_minutes) <= wall < timedelta(minutes=r.end_minutes)
        for r in window.ranges_for(local.weekday())
    )


def _zone_intervals(
    window: CallingWindow, zone: ZoneInfo, lo: datetime, hi: datetime
) -> list[Interval]:
    """Exact open set in one zone over `[lo, hi)`: per stretch of constant offset, the wall-clock
    ranges of each local day shifted back to UTC."""
    pieces: list[Interval] = []
    for seg_start, seg_end, offset in _offset_segments(zone, lo, hi):
        wall_lo, wall_hi = _naive(seg_start) + offset, _naive(seg_end) + offset
        for day in _days(wall_lo, wall_hi):
            midnight = datetime.combine(day, time())
            for r in window.ranges_for(day.weekday()):
                start = max(wall_lo, midnight + timedelta(minutes=r.start_minutes))
                end = min(wall_hi, midnight + timedelta(minutes=r.end_minutes))
                if start < end:
                    pieces.append(Interval(_aware(start - offset), _aware(end - offset)))
    return _merge(pieces)


def _offset_segments(
    zone: ZoneInfo, lo: datetime, hi: datetime
) -> list[tuple[datetime, datetime, timedelta]]:
    """Split `[lo, hi)` into stretches of constant UTC offset in `zone`."""
    segments: list[tuple[datetime, datetime, timedelta]] = []
    seg_start, offset = lo, _offset(zone, lo)
    probe = lo
    while probe < hi:
        step_end = min(probe + _SAMPLE, hi)
        end_offset = _offset(zone, step_end)
        if end_offset != offset:
            change = _first_change(zone, probe, step_end, offset)
            segments.append((seg_start, change, offset))
            seg_start, offset = change, _offset(zone, change)
            probe = change
            continue
        probe = step_end
    segments.append((seg_start, hi, offset))
    return [s for s in segments if s[0] < s[1]]


def _first_change(zone: ZoneInfo, before: datetime, after: datetime, offset: timedelta) -> datetime:
    """First instant in `(before, after]` whose offset differs from `offset`.

    Bisection over whole seconds: tzdata transitions fall on whole seconds, so starting from
    `before` rounded down keeps the answer exact even when `before` carries microseconds.
    """
    base = before.replace(microsecond=0)
    lo_s, hi_s = 0, math.ceil((after - base).total_seconds())
    while hi_s - lo_s > 1:
        mid = (lo_s + hi_s) // 2
        if _offset(zone, base + timedelta(seconds=mid)) == offset:
            lo_s = mid
        else:
            hi_s = mid
    return base + timedelta(seconds=hi_s)


def _offset(zone: ZoneInfo, instant: datetime) -> timedelta:
    offset = instant.astimezone(zone).utcoffset()
    assert offset is not None  # ZoneInfo always answers for an aware instant
    return offset


def _days(wall_lo: datetime, wall_hi: datetime) -> Iterable[date]:
    """Local dates touched by the wall-clock span `[wall_lo, wall_hi)`."""
    day, last = wall_lo.date(), (wall_hi - timedelta(microseconds=1)).date()
    while day <= last:
        yield day
        day += timedelta(days=1)


# ---------------------------------------------------------------------------------------------
# Interval algebra (sorted, disjoint lists)
# ---------------------------------------------------------------------------------------------


def _merge(pieces: list[Interval]) -> list[Interval]:
    """Sort and join overlapping or touching intervals (a 24:00 end meets the next day's 00:00,
    and a DST transition splits one opening into two pieces)."""
    merged: list[Interval] = []
    for piece in sorted(pieces, key=lambda i: i.start):
        if merged and piece.start <= merged[-1].end:
            if piece.end > merged[-1].end:
                merged[-1] = Interval(merged[-1].start, piece.end)
        else:
            merged.append(piece)
    return merged


def _intersect(a: list[Interval], b: list[Interval]) -> list[Interval]:
    out: list[Interval] = []
    i = j = 0
    while i < len(a) and j < len(b):
        start, end = max(a[i].start, b[j].start), min(a[i].end, b[j].end)
        if start < end:
            out.append(Interval(start, end))
        if a[i].end <= b[j].end:
            i += 1
        else:
            j += 1
    return out


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def _naive(instant: datetime) -> datetime:
    return instant.astimezone(UTC).replace(tzinfo=None)


def _aware(naive_utc: datetime) -> datetime:
    return naive_utc.replace(tzinfo=UTC)


def _require_aware(at: datetime) -> None:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"need an aware datetime (with a UTC offset), got {at.isoformat()}")


def _require_zones(zones: Sequence[str]) -> None:
    if isinstance(zones, str) or not zones:
        raise UnknownTimezone("no time zone given: set timezone, e.g. 'Europe/Brussels'")
