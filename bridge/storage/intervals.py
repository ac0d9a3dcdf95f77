"""Half-hour energy values of one day, from profile records or from stored energy totals.

A half-hour's value is the meter's own 30-minute profile record when one is stored. Otherwise it
is the difference of the energy total at the interval's two boundaries. The total at a boundary
is the stored reading taken exactly then, or the linear interpolation between the last reading
before and the first reading after it, when both lie within ``tolerance`` of the boundary.
Anything else is missing (None): a value is never invented across a gap, and a negative
difference (meter replaced, counter reset) is missing too.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

HALF_HOUR = timedelta(minutes=30)
HALF_HOURS_PER_DAY = 48


@dataclass(frozen=True, slots=True)
class EnergySample:
    """An energy total (kWh or kvarh) read at a moment."""

    time: datetime
    value: float


def day_bounds(day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """Start of ``day`` and of the next day in ``zone`` (aware datetimes)."""
    start = datetime.combine(day, time(0), tzinfo=zone)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone)
    return start, end


def half_hour_starts(day: date, zone: ZoneInfo) -> list[datetime]:
    """The 48 interval starts of ``day``, as instants 30 minutes apart from local midnight.

    Russian zones have no daylight-saving changes; on a transition day elsewhere the last
    intervals shift by the change (docs/storage.md).
    """
    start, _ = day_bounds(day, zone)
    return [start + i * HALF_HOUR for i in range(HALF_HOURS_PER_DAY)]


def energy_at(moment: datetime, samples: Sequence[EnergySample], tolerance: timedelta) -> float | None:
    """The energy total at ``moment`` from time-sorted ``samples``, or None if not known."""
    i = bisect.bisect_left(samples, moment, key=lambda s: s.time)
    if i < len(samples) and samples[i].time == moment:
        return samples[i].value
    if i == 0 or i == len(samples):
        return None
    before, after = samples[i - 1], samples[i]
    if moment - before.time > tolerance or after.time - moment > tolerance:
        return None
    span = (after.time - before.time).total_seconds()
    part = (moment - before.time).total_seconds() / span
    return before.value + (after.value - before.value) * part


def half_hour_values(
    starts: Sequence[datetime],
    samples: Sequence[EnergySample],
    profile: Mapping[datetime, float],
    tolerance: timedelta,
) -> list[float | None]:
    """Energy of each half-hour starting at ``starts`` (None where it is not known)."""
    boundaries = [*starts, starts[-1] + HALF_HOUR] if starts else []
    totals = [energy_at(b, samples, tolerance) for b in boundaries]
    values: list[float | None] = []
    for i, start in enumerate(starts):
        if start in profile:
            values.append(profile[start])
            continue
        first, last = totals[i], totals[i + 1]
        if first is None or last is None or last < first:
            values.append(None)
        else:
            values.append(last - first)
    return values
