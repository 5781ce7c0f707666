"""Shifts in local time: crossing midnight, the nights the clocks change in Europe/Rome, local days and hours."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from gateway.kpi.calendar import DAYS, Calendar, Shift, parse_clock, to_ns, week_overlaps

ROME = ZoneInfo("Europe/Rome")
H = 3600 * 10**9


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    return to_ns(datetime(year, month, day, hour, minute, tzinfo=UTC))


def shift(name: str, start: str, end: str, days: tuple[str, ...] = DAYS) -> Shift:
    return Shift(name, frozenset(DAYS.index(d) for d in days), parse_clock(start), parse_clock(end))


def test_a_night_shift_on_the_night_clocks_go_forward_lasts_seven_hours() -> None:
    # 2026-03-29: at 02:00 CET the clocks go to 03:00 CEST.
    calendar = Calendar(ROME, [shift("N", "22:00", "06:00", ("sat",))])
    [night] = calendar.occurrences(utc(2026, 3, 28, 12), utc(2026, 3, 29, 12))
    assert night.name == "N"
    assert night.start == utc(2026, 3, 28, 21)  # 22:00 CET
    assert night.end == utc(2026, 3, 29, 4)  # 06:00 CEST
    assert night.end - night.start == 7 * H


def test_a_night_shift_on_the_night_clocks_go_back_lasts_nine_hours() -> None:
    # 2026-10-25: at 03:00 CEST the clocks go back to 02:00 CET.
    calendar = Calendar(ROME, [shift("N", "22:00", "06:00", ("sat",))])
    [night] = calendar.occurrences(utc(2026, 10, 24, 12), utc(2026, 10, 25, 12))
    assert night.start == utc(2026, 10, 24, 20)  # 22:00 CEST
    assert night.end == utc(2026, 10, 25, 5)  # 06:00 CET
    assert night.end - night.start == 9 * H


def test_planned_windows_are_the_shifts_within_the_range_clipped() -> None:
    calendar = Calendar(ROME, [shift("A", "06:00", "14:00", ("mon",)), shift("B", "14:00", "22:00", ("mon",))])
    # Monday 2026-03-02 (CET, +01:00): A 05:00–13:00 UTC, B 13:00–21:00 UTC; the range cuts A.
    windows = calendar.planned(utc(2026, 3, 2, 9), utc(2026, 3, 3, 9))
    assert [(w.name, w.start, w.end) for w in windows] == [
        ("A", utc(2026, 3, 2, 9), utc(2026, 3, 2, 13)),
        ("B", utc(2026, 3, 2, 13), utc(2026, 3, 2, 21)),
    ]
    assert calendar.shift_at(utc(2026, 3, 2, 12, 59)) is not None
    assert calendar.shift_at(utc(2026, 3, 2, 21)) is None
    assert Calendar(ROME).planned(5, 10)[0].start == 5  # no shifts: the whole range is planned


def test_local_days_and_hours_around_the_clock_changes() -> None:
    calendar = Calendar(ROME)
    start, end = utc(2026, 3, 28, 23), utc(2026, 3, 29, 22)  # Sunday 29 March, local midnight to midnight
    [day] = calendar.days(start, end)
    assert day.name == "2026-03-29" and day.end - day.start == 23 * H
    assert len(list(calendar.hours(start, end))) == 23
    autumn = list(calendar.hours(utc(2026, 10, 24, 22), utc(2026, 10, 25, 23)))
    assert len(autumn) == 25
    assert [h.name for h in autumn[2:4]] == ["2026-10-25T02:00+02:00", "2026-10-25T02:00+01:00"]
    india = list(Calendar(ZoneInfo("Asia/Kolkata")).hours(utc(2026, 1, 1, 0), utc(2026, 1, 1, 3)))
    assert india[1].start == utc(2026, 1, 1, 0, 30)  # local hours of a +05:30 zone start at :30 UTC


def test_overlaps_in_the_weekly_plan() -> None:
    a = shift("A", "06:00", "14:00", ("mon", "tue"))
    b = shift("B", "13:00", "22:00", ("tue",))
    night = shift("N", "22:00", "06:00", ("sun",))  # runs into Monday morning
    early = shift("E", "05:00", "07:00", ("mon",))
    assert week_overlaps([a, shift("B", "14:00", "22:00"), shift("C", "22:00", "06:00")]) == []
    assert week_overlaps([a, b]) == [(1, 0, 1)]
    assert week_overlaps([night, early]) == [(1, 0, 0)]


@pytest.mark.parametrize("text", ["6", "6:0", "25:00", "12:60", "ab:cd", "24:01"])
def test_times_of_day_are_checked(text: str) -> None:
    with pytest.raises(ValueError, match="not a time of day"):
        parse_clock(text)
    assert parse_clock("24:00") == 1440 and parse_clock("06:30") == 390
