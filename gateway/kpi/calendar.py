"""Local time for KPIs: shift occurrences, local days and hours, in a machine's time zone.

Shifts are written in wall-clock time (``from: "22:00"``, ``to: "06:00"``) on days of the week;
an occurrence is turned into UTC with :mod:`zoneinfo`, so a night shift on the night the clocks
change lasts 7 or 9 real hours, and every figure counts real elapsed seconds.

Wall-clock times that do not exist (02:30 on the night clocks go forward) are read with the
offset before the change, i.e. as the moment the clock shows 03:30; times that occur twice
(02:30 on the night clocks go back) are the first occurrence. Local midnight and whole hours
are taken the same way.

Everything here is pure: times are integer nanoseconds since the Unix epoch (UTC).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

__all__ = ["DAYS", "Calendar", "Shift", "Window", "parse_clock"]

NS = 1_000_000_000
MINUTE_NS = 60 * NS
HOUR_NS = 3600 * NS
#: Day names as written in a config, Monday first (``datetime.weekday()`` order).
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def parse_clock(text: str) -> int:
    """``"06:00"`` → minutes after midnight (``"24:00"`` is 1440, the next midnight)."""
    hours, sep, minutes = text.strip().partition(":")
    if not sep or not hours.isdigit() or not minutes.isdigit() or len(minutes) != 2 or len(hours) > 2:
        raise ValueError(f"{text!r} is not a time of day: write HH:MM, e.g. 06:00 or 22:30")
    value = int(hours) * 60 + int(minutes)
    if int(minutes) > 59 or value > 1440:
        raise ValueError(f"{text!r} is not a time of day: hours 00–24, minutes 00–59 (24:00 is midnight)")
    return value


@dataclass(frozen=True)
class Shift:
    """One shift as configured: a name, the days it starts on, wall-clock start and end."""

    name: str
    days: frozenset[int]  # 0 = Monday
    start: int  # minutes after local midnight
    end: int  # minutes after local midnight; ≤ start: on the next day (24 h when equal)

    @property
    def minutes(self) -> int:
        """Its length in wall-clock minutes (real time differs on the nights clocks change)."""
        return self.end - self.start if self.end > self.start else self.end + 1440 - self.start

    def week_spans(self) -> list[tuple[int, int]]:
        """Its occurrences in a week, as minutes since Monday 00:00 (may run past Sunday)."""
        return [(day * 1440 + self.start, day * 1440 + self.start + self.minutes) for day in sorted(self.days)]

    def describe(self, day: int) -> str:
        return f"{DAYS[day]} {_clock(self.start)}–{_clock(self.end)}"


def _clock(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


@dataclass(frozen=True)
class Window:
    """A span of time [start, end) in UTC ns, with a name (a shift's, or None)."""

    start: int
    end: int
    name: str | None = None

    def clip(self, start: int, end: int) -> Window | None:
        lo, hi = max(self.start, start), min(self.end, end)
        return Window(lo, hi, self.name) if lo < hi else None


def to_ns(moment: datetime) -> int:
    """An aware datetime → Unix ns (exact: no float on the way)."""
    delta = moment - _EPOCH
    return (delta.days * 86400 + delta.seconds) * NS + delta.microseconds * 1000


def from_ns(ns: int, tz: ZoneInfo) -> datetime:
    """Unix ns → an aware datetime in ``tz`` (microsecond precision)."""
    return (_EPOCH + timedelta(microseconds=ns // 1000)).astimezone(tz)


class Calendar:
    """A machine's time zone and shift plan: planned windows, shift occurrences, local buckets."""

    def __init__(self, tz: ZoneInfo, shifts: Sequence[Shift] = ()) -> None:
        self.tz = tz
        self.shifts = tuple(shifts)

    def _local(self, day: date, minutes: int) -> int:
        """Wall-clock ``minutes`` after midnight of ``day`` (1440: the next midnight) → UTC ns."""
        day = day + timedelta(days=minutes // 1440)
        minutes %= 1440
        moment = datetime(day.year, day.month, day.day, minutes // 60, minutes % 60, tzinfo=self.tz)
        return to_ns(moment)

    def local_date(self, ns: int) -> date:
        return from_ns(ns, self.tz).date()

    def day_start(self, ns: int) -> int:
        """Local midnight at or before ``ns``."""
        return self._local(self.local_date(ns), 0)

    def occurrences(self, start: int, end: int) -> list[Window]:
        """Every shift occurrence that overlaps [start, end), whole (not clipped), in time order."""
        if not self.shifts or end <= start:
            return []
        found = []
        first = self.local_date(start) - timedelta(days=1)  # a night shift that began the day before
        last = self.local_date(end)
        day = first
        while day <= last:
            weekday = day.weekday()
            for shift in self.shifts:
                if weekday in shift.days:
                    lo = self._local(day, shift.start)
                    hi = self._local(day, shift.start + shift.minutes)
                    if lo < end and hi > start:
                        found.append(Window(lo, hi, shift.name))
            day += timedelta(days=1)
        found.sort(key=lambda w: w.start)
        return found

    def planned(self, start: int, end: int) -> list[Window]:
        """The planned windows within [start, end): the shifts there, or the whole range without shifts."""
        if end <= start:
            return []
        if not self.shifts:
            return [Window(start, end, None)]
        return [w for w in (o.clip(start, end) for o in self.occurrences(start, end)) if w is not None]

    def shift_at(self, ns: int) -> Window | None:
        """The shift occurrence that holds ``ns`` (whole), if any."""
        for window in self.occurrences(ns, ns + 1):
            if window.start <= ns < window.end:
                return window
        return None

    def days(self, start: int, end: int) -> Iterator[Window]:
        """Local calendar days overlapping [start, end), clipped, named YYYY-MM-DD."""
        day = self.local_date(start)
        while True:
            lo, hi = self._local(day, 0), self._local(day, 1440)
            if lo >= end:
                return
            window = Window(lo, hi, day.isoformat()).clip(start, end)
            if window is not None:
                yield window
            day += timedelta(days=1)

    def hours(self, start: int, end: int) -> Iterator[Window]:
        """Local clock hours overlapping [start, end), clipped, named by their local start (with offset).

        On the night clocks go back the repeated hour is two buckets; on the night they go
        forward the missing hour is none. (Every time zone's offset is a multiple of 15
        minutes, so the local hours start on UTC quarter hours.)
        """
        quarter = 15 * MINUTE_NS
        bounds = []
        t = (start // quarter) * quarter - HOUR_NS
        while t <= end + HOUR_NS:
            local = from_ns(t, self.tz)
            if local.minute == 0 and local.second == 0:
                bounds.append(t)
            t += quarter
        for lo, hi in itertools.pairwise(bounds):
            if hi <= start or lo >= end:
                continue
            window = Window(lo, hi, from_ns(lo, self.tz).isoformat(timespec="minutes")).clip(start, end)
            if window is not None:
                yield window

    def iso(self, ns: int) -> str:
        """``ns`` as local ISO 8601 with its offset, to the millisecond when not whole seconds."""
        moment = from_ns(ns, self.tz)
        return moment.isoformat(timespec="milliseconds" if ns % NS else "seconds")


def week_overlaps(shifts: Sequence[Shift]) -> list[tuple[int, int, int]]:
    """Pairs of shifts that overlap in the weekly plan: (index, earlier index, day of the overlap)."""
    week = 7 * 1440
    spans: list[tuple[int, int, int, int]] = []  # (start, end, shift index, day)
    for index, shift in enumerate(shifts):
        for day in sorted(shift.days):
            lo = day * 1440 + shift.start
            spans.append((lo, lo + shift.minutes, index, day))
    found: list[tuple[int, int, int]] = []
    seen: set[tuple[int, int]] = set()
    for a_lo, a_hi, a, day in spans:
        for b_lo, b_hi, b, _ in spans:
            if b >= a:
                continue
            for offset in (-week, 0, week):  # a Sunday night shift runs into Monday morning
                if a_lo < b_hi + offset and b_lo + offset < a_hi and (a, b) not in seen:
                    seen.add((a, b))
                    found.append((a, b, day))
    return found
