"""The embedded historian's storage: one SQLite file in WAL mode, no server.

::

    store = HistorianStore("data/history.db")            # creates the file and its folder
    store.write(points)                                   # one transaction per call
    store.read("energy", tags={"line": "A"}, since_ns=t0) # StoredValue list, oldest first
    store.series("energy")                                # SeriesInfo with last value and time
    store.range(series_id, from_ns, to_ns, points=1000)   # ≤ 1000 Buckets (min/max/mean/count/last)
    store.apply_retention()                               # deletes what is older than retention

The schema is described in :mod:`gateway.sinks.historian._schema`: values keep their exact
type (an int stays an int, a float a float, a bool a bool), a re-delivered point (same
series and time) overwrites itself, and per-minute rollups make long range queries fast.

**Durability.** Every :meth:`HistorianStore.write` is one transaction. With the default
``synchronous="normal"`` in WAL mode, a committed write survives a crash or ``kill -9`` of
the process (it is in the WAL file, handed to the operating system before the commit
returns); after a power loss or an OS crash the file is intact, but the writes since the
last checkpoint that reached the disk may be missing. ``synchronous="full"`` fsyncs the WAL
at every commit, so a committed write also survives a power loss, at a cost in write rate.

**Rollups.** Each series has a watermark, ``rolled_until`` (a minute): the rollups are
complete before it. A write moves the watermark to the minute of the series' newest point,
recomputing from the samples the minutes it passes; a point older than the watermark (late
or re-delivered) has its minute recomputed in the same transaction. Appending writes thus
touch each series' rollups about once a minute, and range queries read raw samples only
after the watermark.

**Readers.** ``HistorianStore(path, readonly=True)`` reads while another process writes: WAL
readers never block the writer and are never blocked by it. One process writes a given file.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import Any, Final, Literal, Self

from gateway.point import Point
from gateway.point import now_ns as _now_ns
from gateway.sinks.historian._range import RANGE_LIMIT_NS, plan_buckets, query_buckets
from gateway.sinks.historian._schema import (
    MINUTE_NS,
    HistorianError,
    open_readonly,
    open_writer,
    rollup_minutes_sql,
)

__all__ = [
    "MINUTE_NS",
    "Bucket",
    "HistorianError",
    "HistorianStore",
    "Kind",
    "SeriesInfo",
    "StoredValue",
    "Value",
    "canonical_tags",
]

Value = float | int | bool | str
Kind = Literal["float", "int", "bool", "str"]
Family = Literal["number", "bool", "str"]

#: Values deleted per retention transaction (one step takes tens of milliseconds).
RETENTION_CHUNK: Final = 50_000

_FAMILY: Final[dict[type, Family]] = {float: "number", int: "number", bool: "bool", str: "str"}
_KIND: Final[dict[type, Kind]] = {float: "float", int: "int", bool: "bool", str: "str"}
_INSERT_SAMPLE: Final = (
    "INSERT INTO samples (series_id, time, value) VALUES (?, ?, ?) "
    "ON CONFLICT (series_id, time) DO UPDATE SET value = excluded.value"
)
_ROLLUP_NUMBER: Final = rollup_minutes_sql(text=False)
_ROLLUP_TEXT: Final = rollup_minutes_sql(text=True)


@dataclass(frozen=True, slots=True)
class StoredValue:
    """One stored value of one field. ``tags`` is shared by the values of a series: do not modify it."""

    time: int
    measurement: str
    tags: dict[str, str]
    field: str
    value: Value


@dataclass(frozen=True, slots=True)
class SeriesInfo:
    """One series: a measurement's field under one set of tags.

    ``kind`` is the type of its values ('float' once any float was stored in a number series;
    a field that switches between numbers, booleans and text has one series per family).
    ``count`` is filled only on request (``series(counts=True)``).
    """

    id: int
    measurement: str
    tags: dict[str, str]
    field: str
    kind: Kind
    last_time: int | None
    last_value: Value | None
    count: int | None = None


@dataclass(frozen=True, slots=True)
class Bucket:
    """The samples of one series in one time bucket.

    ``time`` is the bucket's first nanosecond and ``end`` its last, both clipped to the range
    asked for. ``min``, ``max`` and ``mean`` are None for text series (booleans count as 0 and
    1, so ``mean`` is the fraction of samples that were true); ``last`` is the bucket's last
    value, with its type.
    """

    time: int
    end: int
    min: float | None
    max: float | None
    mean: float | None
    count: int
    last: Value | None


@dataclass(slots=True, eq=False)
class _Series:
    id: int
    measurement: str
    tags: dict[str, str]
    field: str
    family: Family
    kind: Kind
    last_time: int | None
    rolled_until: int | None

    @property
    def key(self) -> tuple[str, str, str, Family]:
        return (self.measurement, canonical_tags(self.tags), self.field, self.family)


def canonical_tags(tags: Mapping[str, str]) -> str:
    """Tags as stored in the file: JSON with sorted keys, compact, UTF-8."""
    return json.dumps(dict(sorted(tags.items())), ensure_ascii=False, separators=(",", ":"))


def _decode(family: str, value: Any) -> Value:
    return bool(value) if family == "bool" else value


class HistorianStore:
    """One historian file: write batches of points; read values, series and downsampled ranges.

    A synchronous API. Each public method holds a lock, so one store may be shared by threads
    (the sink gives it one dedicated thread). ``readonly=True`` opens an existing file for
    reading only, which works while another process writes to it. ``retention`` is in seconds
    (None: keep everything).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        readonly: bool = False,
        *,
        retention: float | None = None,
        synchronous: Literal["normal", "full"] = "normal",
        cache_mib: int = 64,
    ) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self.retention = retention
        self._lock = threading.RLock()
        self._series: dict[tuple[str, str, str, Family], _Series] = {}
        self._by_id: dict[int, _Series] = {}
        self._tag_keys: dict[tuple[tuple[str, str], ...], str] = {}
        self._max_id = 0
        if readonly:
            self._con = open_readonly(self.path)
        else:
            self._con = open_writer(self.path, synchronous=synchronous, cache_mib=cache_mib)
        try:
            with self._snapshot():
                self._load_series()
        except BaseException:
            self._con.close()
            raise

    def close(self) -> None:
        """Close the file (the last writer to close checkpoints the WAL into the main file)."""
        with self._lock:
            self._con.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def connection(self) -> sqlite3.Connection:
        """The underlying SQLite connection (for diagnostics and tests)."""
        return self._con

    @property
    def series_count(self) -> int:
        """Series known to this store object (a reader learns new ones on its next read)."""
        return len(self._by_id)

    def _load_series(self) -> None:
        """Learn the series added since the last call (ids only grow: AUTOINCREMENT)."""
        rows = self._con.execute(
            "SELECT id, measurement, tags, field, family, kind, last_time, rolled_until "
            "FROM series WHERE id > ? ORDER BY id",
            (self._max_id,),
        ).fetchall()
        for sid, measurement, tags, field, family, kind, last_time, rolled_until in rows:
            series = _Series(sid, measurement, json.loads(tags), field, family, kind, last_time, rolled_until)
            self._series[(measurement, tags, field, family)] = series
            self._by_id[sid] = series
            self._max_id = sid

    def _snapshot(self) -> _ReadTransaction:
        return _ReadTransaction(self._con)

    def _check_writable(self) -> None:
        if self.readonly:
            raise HistorianError(f"{self.path} was opened read-only")

    # --- writing ------------------------------------------------------------------------

    def write(self, points: Sequence[Point]) -> None:
        """Store a batch of points in one transaction (a point already stored is overwritten)."""
        self._check_writable()
        if not points:
            return
        with self._lock:
            con = self._con
            con.execute("BEGIN IMMEDIATE")
            created: list[_Series] = []
            try:
                groups = self._group(points, created)
                con.executemany(_INSERT_SAMPLE, _sample_rows(groups))
                updates = self._roll_forward(groups)
                con.execute("COMMIT")
            except BaseException:
                if con.in_transaction:
                    con.execute("ROLLBACK")
                for series in created:
                    self._forget(series)
                raise
            for series, last_time, kind, rolled_until in updates:
                series.last_time = last_time
                series.kind = kind
                series.rolled_until = rolled_until

    def _tags_key(self, tags: Mapping[str, str]) -> str:
        items = tuple(tags.items())
        key = self._tag_keys.get(items)
        if key is None:
            if len(self._tag_keys) >= 100_000:
                self._tag_keys.clear()
            key = self._tag_keys[items] = canonical_tags(tags)
        return key

    def _new_series(self, key: tuple[str, str, str, Family], tags: Mapping[str, str], value: Value) -> _Series:
        self._con.execute(
            "INSERT INTO series (measurement, tags, field, family, kind) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (*key, _KIND[type(value)]),
        )
        sid, kind, last_time, rolled_until = self._con.execute(
            "SELECT id, kind, last_time, rolled_until FROM series "
            "WHERE measurement = ? AND tags = ? AND field = ? AND family = ?",
            key,
        ).fetchone()
        series = _Series(sid, key[0], dict(tags), key[2], key[3], kind, last_time, rolled_until)
        self._series[key] = series
        self._by_id[sid] = series
        self._max_id = max(self._max_id, sid)
        return series

    def _forget(self, series: _Series) -> None:
        self._series.pop(series.key, None)
        self._by_id.pop(series.id, None)

    def _group(self, points: Sequence[Point], created: list[_Series]) -> dict[_Series, list[tuple[int, Value]]]:
        """Values by series, each in time order (a stable sort: of two equal times, the later one wins)."""
        cache = self._series
        groups: dict[_Series, list[tuple[int, Value]]] = {}
        for point in points:
            time = point.time
            measurement = point.measurement
            tags_key = self._tags_key(point.tags)
            for field, value in point.fields.items():
                key = (measurement, tags_key, field, _FAMILY[type(value)])
                series = cache.get(key)
                if series is None:
                    series = self._new_series(key, point.tags, value)
                    created.append(series)
                values = groups.get(series)
                if values is None:
                    groups[series] = [(time, value)]
                else:
                    values.append((time, value))
        for values in groups.values():
            if len(values) > 1 and any(values[i][0] > values[i + 1][0] for i in range(len(values) - 1)):
                values.sort(key=itemgetter(0))
        return groups

    def _roll_forward(
        self, groups: dict[_Series, list[tuple[int, Value]]]
    ) -> list[tuple[_Series, int | None, Kind, int]]:
        """Keep rollups and series rows current; return the in-memory updates to apply after commit."""
        con = self._con
        series_rows: list[tuple[int | None, Any, str, int, int]] = []
        updates: list[tuple[_Series, int | None, Kind, int]] = []
        for series, values in groups.items():
            sql = _ROLLUP_TEXT if series.family == "str" else _ROLLUP_NUMBER
            first_minute = values[0][0] // MINUTE_NS
            newest_time, newest_value = values[-1]
            newest_minute = newest_time // MINUTE_NS
            rolled = series.rolled_until if series.rolled_until is not None else first_minute
            # Late or re-delivered points: their minutes are already rolled up, recompute them.
            if first_minute < rolled:
                late = sorted({t // MINUTE_NS for t, _ in values if t < rolled * MINUTE_NS})
                for minute in late:
                    con.execute(sql, (series.id, *_minute_bounds(minute, minute)))
            # Minutes the watermark passes are complete (for in-order data): roll them up.
            if newest_minute > rolled:
                con.execute(sql, (series.id, *_minute_bounds(rolled, newest_minute - 1)))
            new_rolled = max(rolled, newest_minute)
            kind = series.kind
            if kind == "int" and any(type(v) is float for _, v in values):
                kind = "float"
            last_time = series.last_time
            if last_time is None or newest_time >= last_time:
                series_rows.append((newest_time, newest_value, kind, new_rolled, series.id))
                last_time = newest_time
            else:
                con.execute("UPDATE series SET kind = ?, rolled_until = ? WHERE id = ?", (kind, new_rolled, series.id))
            updates.append((series, last_time, kind, new_rolled))
        con.executemany(
            "UPDATE series SET last_time = ?, last_value = ?, kind = ?, rolled_until = ? WHERE id = ?", series_rows
        )
        return updates

    # --- reading ------------------------------------------------------------------------

    def _matching(self, measurement: str | None, fields: Sequence[str], tags: Mapping[str, str]) -> list[_Series]:
        self._load_series()
        wanted_fields = set(fields)
        wanted_tags = tags.items()
        return [
            s
            for s in self._by_id.values()
            if (measurement is None or s.measurement == measurement)
            and (not wanted_fields or s.field in wanted_fields)
            and wanted_tags <= s.tags.items()
        ]

    def read(
        self,
        measurement: str | None = None,
        *,
        fields: Sequence[str] = (),
        tags: Mapping[str, str] = {},
        since_ns: int | None = None,
        until_ns: int | None = None,
        limit: int = 0,
    ) -> list[StoredValue]:
        """Stored values, oldest first, with ``since_ns`` ≤ time ≤ ``until_ns`` (both optional).

        ``tags`` selects the series that have at least these tags, ``fields`` (empty: all)
        the fields; ``limit`` > 0 keeps the first ``limit`` values.
        """
        with self._lock, self._snapshot():
            matching = {s.id: s for s in self._matching(measurement, fields, tags)}
            if not matching:
                return []
            sql = (
                "SELECT series_id, time, value FROM samples "
                "WHERE series_id IN (SELECT value FROM json_each(?)) AND time >= ? AND time <= ? "
                "ORDER BY time, series_id"
            )
            params: list[Any] = [
                json.dumps(sorted(matching)),
                -(2**63) if since_ns is None else since_ns,
                2**63 - 1 if until_ns is None else until_ns,
            ]
            if limit > 0:
                sql += " LIMIT ?"
                params.append(limit)
            result = []
            for sid, time, value in self._con.execute(sql, params):
                s = matching[sid]
                result.append(StoredValue(time, s.measurement, s.tags, s.field, _decode(s.family, value)))
            return result

    def series(self, measurement: str | None = None, *, counts: bool = False) -> list[SeriesInfo]:
        """Every series (of one measurement), by measurement, tags and field, with its last value.

        ``counts=True`` also counts each series' values (reads its rollups and recent samples).
        """
        with self._lock, self._snapshot():
            self._load_series()
            sql = "SELECT id, measurement, tags, field, family, kind, last_time, last_value, rolled_until FROM series"
            params: tuple[Any, ...] = ()
            if measurement is not None:
                sql += " WHERE measurement = ?"
                params = (measurement,)
            rows = self._con.execute(sql + " ORDER BY measurement, tags, field, family", params).fetchall()
            result = []
            for sid, meas, tags, field, family, kind, last_time, last_value, rolled_until in rows:
                count = self._count(sid, rolled_until) if counts else None
                last = None if last_value is None else _decode(family, last_value)
                result.append(SeriesInfo(sid, meas, json.loads(tags), field, kind, last_time, last, count))
            return result

    def _count(self, sid: int, rolled_until: int | None) -> int:
        if rolled_until is None:
            return 0
        rolled = self._con.execute(
            "SELECT total(n) FROM rollup_1m WHERE series_id = ? AND minute < ?", (sid, rolled_until)
        ).fetchone()[0]
        recent = self._con.execute(
            "SELECT count(*) FROM samples WHERE series_id = ? AND time >= ?",
            (sid, max(rolled_until * MINUTE_NS, -(2**63))),
        ).fetchone()[0]
        return int(rolled) + int(recent)

    def range(
        self,
        series_id: int,
        from_ns: int,
        to_ns: int,
        points: int = 1000,
        *,
        rollups: bool | None = None,
    ) -> list[Bucket]:
        """One series between ``from_ns`` and ``to_ns`` (both included) in at most ``points`` buckets.

        Buckets are aligned on multiples of their width since the epoch, so they stay put
        when the window slides; empty buckets are left out. When the width is a minute or
        more, whole minutes come from the per-minute rollups and only the partial minutes at
        the edges (and those not rolled up yet) from raw samples. ``rollups=False`` forces raw
        samples; ``True`` forces a width in whole minutes. Times are clipped to 1823–2116.
        """
        if points < 1:
            raise ValueError("points must be at least 1")
        from_ns = max(from_ns, -RANGE_LIMIT_NS)
        to_ns = min(to_ns, RANGE_LIMIT_NS)
        if to_ns < from_ns:
            return []
        with self._lock, self._snapshot():
            row = self._con.execute("SELECT family, rolled_until FROM series WHERE id = ?", (series_id,)).fetchone()
            if row is None:
                raise HistorianError(f"there is no series with id {series_id} in {self.path}")
            family, rolled_until = row
            plan = plan_buckets(from_ns, to_ns, points, rollups)
            partials, lasts = query_buckets(self._con, series_id, family == "str", plan, rolled_until)
        numeric = family != "str"
        result = []
        for part in partials:
            start = part.start(plan)
            last = lasts.get(part.last_time)
            result.append(
                Bucket(
                    time=max(start, from_ns),
                    end=min(start + plan.width - 1, to_ns),
                    min=part.vmin if numeric else None,
                    max=part.vmax if numeric else None,
                    mean=part.vsum / part.count if numeric and part.count else None,
                    count=part.count,
                    last=None if last is None else _decode(family, last),
                )
            )
        return result

    # --- retention ----------------------------------------------------------------------

    def retention_cutoff(self, now_ns: int | None = None) -> int | None:
        """The oldest time the retention keeps (None: keep everything)."""
        if self.retention is None:
            return None
        return (now_ns if now_ns is not None else _now_ns()) - int(self.retention * 1e9)

    def apply_retention(self, now_ns: int | None = None) -> int:
        """Delete the values older than the retention, in chunks; return how many were deleted."""
        cutoff = self.retention_cutoff(now_ns)
        if cutoff is None:
            return 0
        deleted = 0
        while step := self.retention_step(cutoff):
            deleted += step
        return deleted

    def retention_step(self, cutoff_ns: int, max_rows: int = RETENTION_CHUNK) -> int:
        """Delete up to ``max_rows`` values older than ``cutoff_ns`` in one transaction; return how many.

        A series left with no value is removed. Call until it returns 0 (the sink does, with
        writes in between).
        """
        self._check_writable()
        with self._lock:
            con = self._con
            con.execute("BEGIN IMMEDIATE")
            emptied: list[_Series] = []
            deleted = 0
            try:
                self._load_series()
                for series in list(self._by_id.values()):
                    if deleted >= max_rows:
                        break
                    deleted += self._trim(series, cutoff_ns, max_rows - deleted, emptied)
                con.execute("COMMIT")
            except BaseException:
                if con.in_transaction:
                    con.execute("ROLLBACK")
                raise
            for series in emptied:
                self._forget(series)
            if deleted:
                con.execute("PRAGMA incremental_vacuum")
            return deleted

    def _trim(self, series: _Series, cutoff_ns: int, budget: int, emptied: list[_Series]) -> int:
        con = self._con
        sid = series.id
        oldest = con.execute("SELECT min(time) FROM samples WHERE series_id = ?", (sid,)).fetchone()[0]
        if oldest is None or oldest >= cutoff_ns:
            return 0
        row = con.execute(
            "SELECT time FROM samples WHERE series_id = ? AND time < ? ORDER BY time LIMIT 1 OFFSET ?",
            (sid, cutoff_ns, budget - 1),
        ).fetchone()
        bound = row[0] if row is not None else cutoff_ns - 1
        count = con.execute("DELETE FROM samples WHERE series_id = ? AND time <= ?", (sid, bound)).rowcount
        cut_minute = bound // MINUTE_NS
        con.execute("DELETE FROM rollup_1m WHERE series_id = ? AND minute <= ?", (sid, cut_minute))
        if con.execute("SELECT 1 FROM samples WHERE series_id = ? LIMIT 1", (sid,)).fetchone() is None:
            con.execute("DELETE FROM rollup_1m WHERE series_id = ?", (sid,))
            con.execute("DELETE FROM series WHERE id = ?", (sid,))
            emptied.append(series)
        elif series.rolled_until is not None and cut_minute < series.rolled_until:
            # The minute the bound cuts through keeps its later samples: roll them up again.
            sql = _ROLLUP_TEXT if series.family == "str" else _ROLLUP_NUMBER
            con.execute(sql, (sid, *_minute_bounds(cut_minute, cut_minute)))
        return count


def _minute_bounds(first: int, last: int) -> tuple[int, int]:
    """First nanosecond of minute ``first`` and last nanosecond of minute ``last``, within 64 bits."""
    return max(first * MINUTE_NS, -(2**63)), min((last + 1) * MINUTE_NS - 1, 2**63 - 1)


class _ReadTransaction:
    """Several SELECTs that see one consistent state of the file (a no-op inside a transaction)."""

    def __init__(self, con: sqlite3.Connection) -> None:
        self._con = con
        self._owner = False

    def __enter__(self) -> None:
        if not self._con.in_transaction:
            self._con.execute("BEGIN")
            self._owner = True

    def __exit__(self, *exc: object) -> None:
        if self._owner and self._con.in_transaction:
            self._con.execute("COMMIT")


def _sample_rows(groups: dict[_Series, list[tuple[int, Value]]]) -> Iterator[tuple[int, int, Value]]:
    for series, values in groups.items():
        sid = series.id
        for time, value in values:
            yield sid, time, value
