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

**Writes** append to the ``recent`` table (dense pages, whatever the number of series);
every ``compact_interval`` seconds or ``compact_rows`` values, and on close, they are moved
into ``samples`` sorted by series (see :mod:`gateway.sinks.historian._compact`). Reads merge
both, so a value is readable as soon as its write returns.

**Durability.** Every :meth:`HistorianStore.write` is one transaction. With the default
``synchronous="normal"`` in WAL mode, a committed write survives a crash or ``kill -9`` of
the process (it is in the WAL file, handed to the operating system before the commit
returns); after a power loss or an OS crash the file is intact, but the writes since the
last checkpoint that reached the disk may be missing. ``synchronous="full"`` fsyncs the WAL
at every commit, so a committed write also survives a power loss, at a cost in write rate.

**Readers.** ``HistorianStore(path, readonly=True)`` reads while another process writes: WAL
readers never block the writer and are never blocked by it. One process should write a given
file; if two do, they take turns (each write waits up to 5 s for the other's) and each
notices the other's writes (``PRAGMA data_version``) before it trusts its cached state.

**Errors.** Opening and reading raise :class:`HistorianError` with words a plant engineer can
act on (:class:`HistorianDamaged` for a truncated or garbled file, :class:`HistorianDiskFull`),
never a bare ``sqlite3`` error. Writes (``write``, ``compact``, ``retention_step``) let the
``sqlite3.Error`` through: the sink decides what it means (:func:`explain`) and what to do.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, Self

from gateway.point import Point
from gateway.point import now_ns as _now_ns
from gateway.sinks.historian._compact import SeriesState, compact, rollup
from gateway.sinks.historian._range import RANGE_LIMIT_NS, plan_buckets, query_buckets
from gateway.sinks.historian._schema import (
    MINUTE_NS,
    HistorianDamaged,
    HistorianDiskFull,
    HistorianError,
    explain,
    open_readonly,
    open_writer,
)

__all__ = [
    "MINUTE_NS",
    "Bucket",
    "HistorianDamaged",
    "HistorianDiskFull",
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
_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1


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
class _Series(SeriesState):
    measurement: str
    tags: dict[str, str]
    field: str
    family: Family
    kind: Kind

    @property
    def key(self) -> tuple[str, str, str, Family]:
        return (self.measurement, canonical_tags(self.tags), self.field, self.family)


def canonical_tags(tags: Mapping[str, str]) -> str:
    """Tags as stored in the file: JSON with sorted keys, compact, UTF-8."""
    return json.dumps(dict(sorted(tags.items())), ensure_ascii=False, separators=(",", ":"))


def _decode(family: str, value: Any) -> Value:
    return bool(value) if family == "bool" else value


def _ids(series: Iterable[int]) -> str:
    return json.dumps(sorted(series))


class HistorianStore:
    """One historian file: write batches of points; read values, series and downsampled ranges.

    A synchronous API. Each public method holds a lock, so one store may be shared by threads
    (the sink gives it one dedicated thread). ``readonly=True`` opens an existing file for
    reading only, which works while another process writes to it. ``retention`` is in seconds
    (None: keep everything). ``compact_interval`` (seconds) and ``compact_rows`` say how often
    written values move from ``recent`` into ``samples`` (see :attr:`compaction_due`).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        readonly: bool = False,
        *,
        retention: float | None = None,
        synchronous: Literal["normal", "full"] = "normal",
        cache_mib: int = 64,
        compact_interval: float = 60.0,
        compact_rows: int = 100_000,
        auto_compact: bool = True,
    ) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self.retention = retention
        self.compact_interval = compact_interval
        self.compact_rows = compact_rows
        #: Compact inside write() when due; False leaves it to the caller (the sink schedules
        #: it after the write returns, so the batch is acknowledged first).
        self.auto_compact = auto_compact
        self._lock = threading.RLock()
        self._series: dict[tuple[str, str, str, Family], _Series] = {}
        self._by_id: dict[int, _Series] = {}
        self._tag_keys: dict[tuple[tuple[str, str], ...], str] = {}
        self._max_id = 0
        self._recent_rows = 0
        self._compacted_at = time.monotonic()
        if readonly:
            self._con = open_readonly(self.path)
        else:
            self._con = open_writer(self.path, synchronous=synchronous, cache_mib=cache_mib)
        try:
            with self._reading():
                with self._snapshot():
                    self._load_series()
                    self._recent_rows = self._con.execute("SELECT count(*) FROM recent").fetchone()[0]
                self._data_version: int = self._con.execute("PRAGMA data_version").fetchone()[0]
        except BaseException:
            self._con.close()
            raise

    def close(self, *, compact: bool = True) -> None:
        """Compact what is pending (writer) and close the file; the WAL is checkpointed into it.

        ``compact=False`` only closes (a damaged file: nothing more is asked of it).
        """
        with self._lock:
            try:
                if compact and not self.readonly and self._recent_rows:
                    self.compact()
            finally:
                self._con.close()

    @contextlib.contextmanager
    def _reading(self) -> Iterator[None]:
        """SQLite's errors while reading, as HistorianErrors (damaged file, full disk …)."""
        try:
            yield
        except sqlite3.Error as exc:
            raise explain(self.path, exc, "cannot read") from None

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
            series = _Series(
                sid, family == "str", last_time, rolled_until, measurement, json.loads(tags), field, family, kind
            )
            self._series[(measurement, tags, field, family)] = series
            self._by_id[sid] = series
            self._max_id = sid

    def _sync_with_file(self) -> None:
        """Inside a write transaction: if another connection wrote the file, forget what is cached.

        One process should write a file, but if two do (two gateways on one file), each one's
        cached watermarks and last times would be stale; ``data_version`` tells.
        """
        version = self._con.execute("PRAGMA data_version").fetchone()[0]
        if version != self._data_version:
            self._data_version = version
            self._series.clear()
            self._by_id.clear()
            self._max_id = 0
            self._load_series()
            self._recent_rows = self._con.execute("SELECT count(*) FROM recent").fetchone()[0]

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
                self._sync_with_file()
                rows, floats = self._rows(points, created)
                con.executemany("INSERT INTO recent (series_id, time, value) VALUES (?, ?, ?)", rows)
                con.executemany("UPDATE series SET kind = 'float' WHERE id = ?", [(s.id,) for s in floats])
                con.execute("COMMIT")
            except BaseException:
                if con.in_transaction:
                    con.execute("ROLLBACK")
                for series in created:
                    self._forget(series)
                raise
            for series in floats:
                series.kind = "float"
            self._recent_rows += len(rows)
            if self.auto_compact and self.compaction_due:
                self.compact()

    @property
    def compaction_due(self) -> bool:
        """Whether enough was written (or enough time passed) to compact now."""
        return self._recent_rows > 0 and (
            self._recent_rows >= self.compact_rows or time.monotonic() - self._compacted_at >= self.compact_interval
        )

    def compact(self) -> int:
        """Move the values written since the last compaction into ``samples``; return how many."""
        self._check_writable()
        with self._lock:
            con = self._con
            con.execute("BEGIN IMMEDIATE")
            try:
                self._sync_with_file()
                moved, updates = compact(con, self._by_id)
                con.execute("COMMIT")
            except BaseException:
                if con.in_transaction:
                    con.execute("ROLLBACK")
                raise
            for state, (last_time, rolled_until) in updates:
                state.last_time = last_time
                state.rolled_until = rolled_until
            self._recent_rows = 0
            self._compacted_at = time.monotonic()
            return moved

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
        family = key[3]
        series = _Series(sid, family == "str", last_time, rolled_until, key[0], dict(tags), key[2], family, kind)
        self._series[key] = series
        self._by_id[sid] = series
        self._max_id = max(self._max_id, sid)
        return series

    def _forget(self, series: _Series) -> None:
        self._series.pop(series.key, None)
        self._by_id.pop(series.id, None)

    def _rows(
        self, points: Sequence[Point], created: list[_Series]
    ) -> tuple[list[tuple[int, int, Value]], set[_Series]]:
        """Rows for ``recent``, and the int series that now receive a float."""
        cache = self._series
        rows: list[tuple[int, int, Value]] = []
        floats: set[_Series] = set()
        for point in points:
            time_ns = point.time
            measurement = point.measurement
            tags_key = self._tags_key(point.tags)
            for field, value in point.fields.items():
                kind = type(value)
                key = (measurement, tags_key, field, _FAMILY[kind])
                series = cache.get(key)
                if series is None:
                    series = self._new_series(key, point.tags, value)
                    created.append(series)
                elif kind is float and series.kind == "int":
                    floats.add(series)
                rows.append((series.id, time_ns, value))
        return rows, floats

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

    def _recent(self, ids: str, since_ns: int, until_ns: int) -> dict[tuple[int, int], Any]:
        """Values not compacted yet, (series id, time) → value; of two equal keys the later wins."""
        rows = self._con.execute(
            "SELECT series_id, time, value FROM recent "
            "WHERE time >= ? AND time <= ? AND series_id IN (SELECT value FROM json_each(?)) ORDER BY seq",
            (since_ns, until_ns, ids),
        )
        return {(sid, t): v for sid, t, v in rows}

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
        since = _INT64_MIN if since_ns is None else since_ns
        until = _INT64_MAX if until_ns is None else until_ns
        with self._lock, self._reading(), self._snapshot():
            matching = {s.id: s for s in self._matching(measurement, fields, tags)}
            if not matching:
                return []
            ids = _ids(matching)
            sql = (
                "SELECT series_id, time, value FROM samples "
                "WHERE series_id IN (SELECT value FROM json_each(?)) AND time >= ? AND time <= ? "
                "ORDER BY time, series_id"
            )
            params: list[Any] = [ids, since, until]
            if limit > 0:
                sql += " LIMIT ?"
                params.append(limit)
            rows: list[tuple[int, int, Any]] = self._con.execute(sql, params).fetchall()
            recent = self._recent(ids, since, until)
        if recent:
            merged = {(sid, t): v for sid, t, v in rows}
            merged.update(recent)
            rows = sorted(((sid, t, v) for (sid, t), v in merged.items()), key=lambda r: (r[1], r[0]))
            if limit > 0:
                del rows[limit:]
        result = []
        for sid, t, value in rows:
            s = matching[sid]
            result.append(StoredValue(t, s.measurement, s.tags, s.field, _decode(s.family, value)))
        return result

    def series(self, measurement: str | None = None, *, counts: bool = False) -> list[SeriesInfo]:
        """Every series (of one measurement), by measurement, tags and field, with its last value.

        ``counts=True`` also counts each series' values (reads its rollups and recent values).
        """
        with self._lock, self._reading(), self._snapshot():
            sql = "SELECT id, measurement, tags, field, family, kind, last_time, last_value, rolled_until FROM series"
            params: tuple[Any, ...] = ()
            if measurement is not None:
                sql += " WHERE measurement = ?"
                params = (measurement,)
            rows = self._con.execute(sql + " ORDER BY measurement, tags, field, family", params).fetchall()
            newest = self._newest_recent()
            recent_only = self._recent_only_counts() if counts else {}
            result = []
            for sid, meas, tags, field, family, kind, last_time, last_value, rolled_until in rows:
                if sid in newest and (last_time is None or newest[sid][0] >= last_time):
                    last_time, last_value = newest[sid]
                count = self._count(sid, rolled_until, recent_only.get(sid, 0)) if counts else None
                last = None if last_value is None else _decode(family, last_value)
                result.append(SeriesInfo(sid, meas, json.loads(tags), field, kind, last_time, last, count))
            return result

    def _newest_recent(self) -> dict[int, tuple[int, Any]]:
        """Each series' newest value not compacted yet (of two at the same time, the later write)."""
        newest: dict[int, tuple[int, Any]] = {}
        rows = self._con.execute(
            "SELECT series_id, time, value FROM recent "
            "WHERE (series_id, time) IN (SELECT series_id, max(time) FROM recent GROUP BY series_id) ORDER BY seq"
        )
        for sid, t, value in rows:
            newest[sid] = (t, value)
        return newest

    def _recent_only_counts(self) -> dict[int, int]:
        """Per series, how many (series, time) in ``recent`` are not in ``samples`` yet."""
        rows = self._con.execute(
            "SELECT r.series_id, count(*) FROM (SELECT DISTINCT series_id, time FROM recent) r "
            "WHERE NOT EXISTS (SELECT 1 FROM samples s WHERE s.series_id = r.series_id AND s.time = r.time) "
            "GROUP BY r.series_id"
        )
        return dict(rows.fetchall())

    def _count(self, sid: int, rolled_until: int | None, recent_only: int) -> int:
        rolled = 0.0
        after = _INT64_MIN
        if rolled_until is not None:
            rolled = self._con.execute(
                "SELECT total(n) FROM rollup_1m WHERE series_id = ? AND minute < ?", (sid, rolled_until)
            ).fetchone()[0]
            after = max(rolled_until * MINUTE_NS, _INT64_MIN)
        newer = self._con.execute("SELECT count(*) FROM samples WHERE series_id = ? AND time >= ?", (sid, after))
        return int(rolled) + int(newer.fetchone()[0]) + recent_only

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
        with self._lock, self._reading(), self._snapshot():
            row = self._con.execute("SELECT family, rolled_until FROM series WHERE id = ?", (series_id,)).fetchone()
            if row is None:
                raise HistorianError(f"there is no series with id {series_id} in {self.path}")
            family, rolled_until = row
            plan = plan_buckets(from_ns, to_ns, points, rollups)
            recent = {t: v for (_, t), v in self._recent(_ids([series_id]), from_ns, to_ns).items()}
            partials, lasts = query_buckets(self._con, series_id, family == "str", plan, rolled_until, recent)
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

        Pending values are compacted first. A series left with no value is removed. Call
        until it returns 0 (the sink does, with writes in between).
        """
        self._check_writable()
        with self._lock:
            if self._recent_rows:
                self.compact()
            con = self._con
            con.execute("BEGIN IMMEDIATE")
            emptied: list[_Series] = []
            deleted = 0
            try:
                self._sync_with_file()
                if self._recent_rows:  # another writer's values: compact them in this transaction
                    con.execute("ROLLBACK")
                    return self.retention_step(cutoff_ns, max_rows)
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
        count: int = con.execute("DELETE FROM samples WHERE series_id = ? AND time <= ?", (sid, bound)).rowcount
        cut_minute = bound // MINUTE_NS
        con.execute("DELETE FROM rollup_1m WHERE series_id = ? AND minute <= ?", (sid, cut_minute))
        if con.execute("SELECT 1 FROM samples WHERE series_id = ? LIMIT 1", (sid,)).fetchone() is None:
            con.execute("DELETE FROM series WHERE id = ?", (sid,))
            emptied.append(series)
        elif series.rolled_until is not None and cut_minute < series.rolled_until:
            # The minute the bound cuts through keeps its later samples: roll them up again.
            rollup(con, series, cut_minute, cut_minute)
        return count


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
