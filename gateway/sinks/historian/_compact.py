"""Compaction: move the values appended to ``recent`` into ``samples`` and keep the rollups exact.

Runs inside the caller's write transaction. Values are moved sorted by series and time, so
each series' new values land together on its own pages: a page written per series per
compaction (about a minute), not per batch. Of two values of one series and time, the one
written later (higher ``seq``) wins, in ``samples`` as in ``recent``.

Rollups: each series has a watermark ``rolled_until`` (a minute); rollups are complete before
it. Compaction moves the watermark to the minute of the series' newest value, rolling up the
minutes it passes from the samples; a value older than the watermark (late or re-delivered)
has its minute recomputed. Rollups are always recomputed from samples, never incremented, so
duplicates cannot skew them.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from gateway.sinks.historian._schema import INT64_MAX, INT64_MIN, MINUTE_NS, MINUTE_OF_TIME, rollup_minutes_sql

__all__ = ["SeriesState", "compact", "minute_bounds"]

_ROLLUP_NUMBER: Final = rollup_minutes_sql(text=False)
_ROLLUP_TEXT: Final = rollup_minutes_sql(text=True)
_MOVE: Final = (
    "INSERT INTO samples (series_id, time, value) "
    "SELECT series_id, time, value FROM recent WHERE true ORDER BY series_id, time, seq "
    "ON CONFLICT (series_id, time) DO UPDATE SET value = excluded.value"
)


@dataclass(slots=True, eq=False)
class SeriesState:
    """What compaction needs to know about a series (the writer keeps one per series)."""

    id: int
    text: bool
    last_time: int | None
    rolled_until: int | None


def minute_bounds(first: int, last: int) -> tuple[int, int]:
    """First nanosecond of minute ``first`` and last nanosecond of minute ``last``, within 64 bits."""
    return max(first * MINUTE_NS, INT64_MIN), min((last + 1) * MINUTE_NS - 1, INT64_MAX)


def rollup(con: sqlite3.Connection, series: SeriesState, first_minute: int, last_minute: int) -> None:
    """Recompute the rollup rows of a series for whole minutes, from its samples."""
    sql = _ROLLUP_TEXT if series.text else _ROLLUP_NUMBER
    con.execute(sql, (series.id, *minute_bounds(first_minute, last_minute)))


def compact(con: sqlite3.Connection, states: Mapping[int, SeriesState]) -> tuple[int, list[tuple[SeriesState, Any]]]:
    """Move ``recent`` into ``samples``; return how many values moved and the series updates.

    The updates are (state, (last_time, rolled_until)) to apply to the cached states once the
    transaction commits.
    """
    spans = con.execute("SELECT series_id, min(time), max(time), count(*) FROM recent GROUP BY series_id").fetchall()
    if not spans:
        return 0, []
    late: dict[int, list[int]] = defaultdict(list)
    late_rows = con.execute(
        f"SELECT DISTINCT r.series_id, {MINUTE_OF_TIME} FROM recent r "
        "JOIN series s ON s.id = r.series_id WHERE s.rolled_until IS NOT NULL "
        f"AND r.time < s.rolled_until * {MINUTE_NS}"
    ).fetchall()
    for sid, minute in late_rows:
        late[sid].append(minute)
    con.execute(_MOVE)
    moved = 0
    series_rows: list[tuple[int, Any, int, int]] = []
    watermarks: list[tuple[int, int]] = []
    updates: list[tuple[SeriesState, Any]] = []
    for sid, oldest, newest, count in spans:
        moved += count
        state = states[sid]
        rolled = state.rolled_until if state.rolled_until is not None else oldest // MINUTE_NS
        for minute in late.get(sid, ()):
            rollup(con, state, minute, minute)
        newest_minute = newest // MINUTE_NS
        if newest_minute > rolled:
            rollup(con, state, rolled, newest_minute - 1)
        new_rolled = max(rolled, newest_minute)
        last_time = state.last_time
        if last_time is None or newest >= last_time:
            value = con.execute("SELECT value FROM samples WHERE series_id = ? AND time = ?", (sid, newest)).fetchone()
            series_rows.append((newest, value[0], new_rolled, sid))
            last_time = newest
        else:
            watermarks.append((new_rolled, sid))
        updates.append((state, (last_time, new_rolled)))
    con.executemany("UPDATE series SET last_time = ?, last_value = ?, rolled_until = ? WHERE id = ?", series_rows)
    con.executemany("UPDATE series SET rolled_until = ? WHERE id = ?", watermarks)
    con.execute("DELETE FROM recent")
    return moved, updates
