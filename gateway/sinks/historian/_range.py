"""Downsampled range queries: one series, a time range, at most N buckets of min/max/mean/count/last.

Buckets are aligned on multiples of their width since the epoch, so they stay put while a
chart's window slides. When a bucket is a minute or wider, whole minutes are read from the
per-minute rollups (for the minutes already rolled up) and only the rest from raw samples:
7 days of a 1 Hz series is ~10,000 rollup rows instead of 604,800 samples.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from gateway.sinks.historian._schema import MINUTE_NS

__all__ = ["RANGE_LIMIT_NS", "Partial", "Plan", "plan_buckets", "query_buckets"]

#: Range queries are limited to these times (years 1823 to 2116) so bucket arithmetic fits 64 bits.
RANGE_LIMIT_NS: Final = 2**62
_SQL_CHUNK: Final = 500


@dataclass(frozen=True, slots=True)
class Plan:
    from_ns: int
    to_ns: int
    origin: int  # a multiple of width at or before from_ns (from_ns itself for one raw bucket)
    width: int
    rollups: bool


@dataclass(slots=True)
class Partial:
    """One bucket being computed."""

    index: int
    vmin: Any
    vmax: Any
    vsum: float
    count: int
    last_time: int

    def start(self, plan: Plan) -> int:
        return plan.origin + self.index * plan.width


def plan_buckets(from_ns: int, to_ns: int, points: int, rollups: bool | None) -> Plan:
    """Choose the bucket width (and whether rollups can serve it) for at most ``points`` buckets."""
    span = to_ns - from_ns
    if points == 1:
        if rollups:
            origin = from_ns // MINUTE_NS * MINUTE_NS
            return Plan(from_ns, to_ns, origin, -(-(to_ns - origin + 1) // MINUTE_NS) * MINUTE_NS, True)
        return Plan(from_ns, to_ns, from_ns, span + 1, False)
    # Cells of width w cut [from, to] into at most floor((to - from) / w) + 2 buckets.
    width = span // (points - 1) + 1
    use_rollups = rollups if rollups is not None else width >= MINUTE_NS
    if use_rollups:
        width = -(-width // MINUTE_NS) * MINUTE_NS
    return Plan(from_ns, to_ns, from_ns // width * width, width, use_rollups)


def query_buckets(
    con: sqlite3.Connection,
    series_id: int,
    text: bool,
    plan: Plan,
    rolled_until: int | None,
    recent: dict[int, Any],
) -> tuple[list[Partial], dict[int, Any]]:
    """The non-empty buckets in time order, and the value at each bucket's last time.

    ``recent`` holds the series' values in the range that are not compacted yet (time →
    value); they override samples of the same time, so the buckets they fall in are
    recomputed from raw values.
    """
    acc: dict[int, Partial] = {}
    raw_args = (plan.origin, plan.width, series_id)
    minmax = "NULL, NULL" if text else "min(value), max(value)"
    raw_sql = (
        f"SELECT (time - ?1) / ?2 AS b, {minmax}, total(value), count(*), max(time) "
        "FROM samples WHERE series_id = ?3 AND time >= ?4 AND time <= ?5 GROUP BY b"
    )

    def raw(start: int, end: int) -> None:
        if start <= end:
            _merge(acc, con.execute(raw_sql, (*raw_args, start, end)))

    if plan.rollups and rolled_until is not None:
        first_minute = -(-plan.from_ns // MINUTE_NS)
        last_minute = min((plan.to_ns + 1) // MINUTE_NS, rolled_until) - 1
        if first_minute <= last_minute:
            raw(plan.from_ns, first_minute * MINUTE_NS - 1)
            _merge(
                acc,
                con.execute(
                    "SELECT (minute - ?1) / ?2 AS b, min(vmin), max(vmax), total(vsum), sum(n), max(last_time) "
                    "FROM rollup_1m WHERE series_id = ?3 AND minute >= ?4 AND minute <= ?5 GROUP BY b",
                    (plan.origin // MINUTE_NS, plan.width // MINUTE_NS, series_id, first_minute, last_minute),
                ),
            )
            raw((last_minute + 1) * MINUTE_NS, plan.to_ns)
        else:
            raw(plan.from_ns, plan.to_ns)
    else:
        raw(plan.from_ns, plan.to_ns)
    known: dict[int, Any] = {}
    if recent:
        for index in {(t - plan.origin) // plan.width for t in recent}:
            start = max(plan.origin + index * plan.width, plan.from_ns)
            end = min(plan.origin + (index + 1) * plan.width - 1, plan.to_ns)
            values = dict(
                con.execute(
                    "SELECT time, value FROM samples WHERE series_id = ? AND time >= ? AND time <= ?",
                    (series_id, start, end),
                ).fetchall()
            )
            values.update((t, v) for t, v in recent.items() if start <= t <= end)
            acc[index] = _partial(index, values, text)
            known[acc[index].last_time] = values[acc[index].last_time]
    partials = [acc[index] for index in sorted(acc)]
    missing = [p.last_time for p in partials if p.last_time not in known]
    return partials, {**_values_at(con, series_id, missing), **known}


def _partial(index: int, values: dict[int, Any], text: bool) -> Partial:
    numbers = list(values.values())
    return Partial(
        index,
        None if text else min(numbers),
        None if text else max(numbers),
        0.0 if text else float(sum(numbers)),
        len(numbers),
        max(values),
    )


def _merge(acc: dict[int, Partial], rows: Iterable[tuple[Any, ...]]) -> None:
    for index, vmin, vmax, vsum, count, last_time in rows:
        current = acc.get(index)
        if current is None:
            acc[index] = Partial(index, vmin, vmax, vsum, count, last_time)
            continue
        if vmin is not None and (current.vmin is None or vmin < current.vmin):
            current.vmin = vmin
        if vmax is not None and (current.vmax is None or vmax > current.vmax):
            current.vmax = vmax
        current.vsum += vsum
        current.count += count
        current.last_time = max(current.last_time, last_time)


def _values_at(con: sqlite3.Connection, series_id: int, times: list[int]) -> dict[int, Any]:
    found: dict[int, Any] = {}
    for start in range(0, len(times), _SQL_CHUNK):
        chunk = times[start : start + _SQL_CHUNK]
        marks = ",".join("?" * len(chunk))
        found.update(
            con.execute(
                f"SELECT time, value FROM samples WHERE series_id = ? AND time IN ({marks})", (series_id, *chunk)
            ).fetchall()
        )
    return found
