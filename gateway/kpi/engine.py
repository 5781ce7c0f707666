"""The KPI engine: machine states, parts and OEE over any range, from the history and the live values.

**Exact, from raw values.** The engine reads a machine's state and counter samples through the
:class:`~gateway.history.HistoryReader` ability of whatever sink offers one, and computes with
the definitions of :mod:`gateway.kpi.compute` — the same numbers for the API, ``gateway kpi`` and
the stored ``kpi`` points.

**Compact rollups, per hour.** Reading a week of 1 Hz samples (1.2 million values for a state
and a counter) takes seconds, so the engine keeps each UTC hour of each machine in compact form:
the state's runs (:class:`~gateway.kpi.timeline.Run`: one per change of value or gap longer than
the timeout) and the counters' increases (:class:`~gateway.kpi.timeline.CounterPiece`). These
give exact results for any range, however its ends fall. An hour is read once; a range is then
put together from its hours in milliseconds (docs/PERFORMANCE.md, "KPI engine"). The cache
holds :data:`CACHE_HOURS` hours per machine, least recently used first out.

**Live.** While the engine runs in the gateway it follows every batch the connectors emit (an
observer of :class:`~gateway.latest.LatestValues`): samples of the current hours are added as
they come (kept raw as well until :data:`SETTLE_NS` after the hour's end, so a sample arriving
out of order still lands exactly), so the current shift's KPIs never re-read the history. A
sample for an hour already compacted (a backlog after an outage: a broker's queue, a disk
buffer) drops that hour from the cache; it is read again from the history once the sinks had
:data:`RELOAD_DELAY` seconds to store the backlog.

**Across restarts** the compact hours are kept in ``<data_dir>/kpi/rollups.db``
(:mod:`gateway.kpi.rollups`, a cache: an hour is written once it is over, and dropped when a
backlog reaches it), so a restarted gateway answers for last week without reading it again.

**Without a history** (no historian sink) the engine knows what it observed since it started
(and what its rollups file kept), and says so in every answer's warnings.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import zlib
from array import array
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import orjson

from gateway.errors import GatewayError
from gateway.history import HistoryReader
from gateway.kpi.calendar import HOUR_NS, NS, Calendar, Window
from gateway.kpi.compute import CATEGORIES, Kpi, measure
from gateway.kpi.config import MachineConfig, state_key
from gateway.kpi.rollups import RollupStore
from gateway.kpi.timeline import (
    CounterKind,
    CounterLine,
    CounterPiece,
    Interval,
    Run,
    append_run,
    counter_piece,
    intervals,
    numeric,
    runs_of,
)
from gateway.latest import LatestValues
from gateway.logs import component_logger
from gateway.point import FieldValue, Point

__all__ = ["Bucket", "KpiEngine", "KpiUnavailable", "MachineNotFound"]

log = component_logger("kpi", "engine")

#: Hours kept compact in memory per machine (35 days), least recently used first out.
CACHE_HOURS: Final = 24 * 35
#: How long after an hour's end its samples are kept raw (late arrivals still land exactly).
SETTLE_NS: Final = 120 * NS
#: Seconds the sinks get to store a backlog before an hour it touched is read again.
RELOAD_DELAY: Final = 10.0
#: Hours read from the history in one call (so a long read never holds the history's thread long).
READ_HOURS: Final = 6
#: How far back the last counter value before a range is looked for (a counter idle over a holiday).
BASELINE_LOOKBACK_NS: Final = 31 * 86400 * NS
#: How far back "in this state since" is looked for.
SINCE_LOOKBACK_NS: Final = 7 * 86400 * NS
#: Most rows one ``by=`` request may give.
MAX_ROWS: Final = 10_000

Bucket = Literal["shift", "hour", "day"]
Role = Literal["state", "parts", "scrap"]


class KpiUnavailable(GatewayError):
    """The history the KPIs come from cannot be read now."""


class MachineNotFound(GatewayError, LookupError):
    """No machine of that name is configured."""


# --- one hour of one machine ------------------------------------------------------------------------


@dataclass(eq=False, slots=True)
class _Hour:
    """One UTC hour of one machine, compact; raw samples too while the hour is open."""

    runs: list[Run] = field(default_factory=list)
    pieces: dict[str, CounterPiece] = field(default_factory=dict)
    #: role → time → value, while the hour is followed live (None once compacted)
    raw: dict[str, dict[int, FieldValue]] | None = None
    #: False: runs and pieces must be rebuilt from raw (a sample came out of order)
    fresh: bool = True
    #: the history was read into it (a live hour that began before the engine started is not yet)
    loaded: bool = True

    @property
    def not_numeric(self) -> int:
        return sum(piece.not_numeric for piece in self.pieces.values())


# --- one machine -----------------------------------------------------------------------------------------


class _Machine:
    def __init__(self, config: MachineConfig) -> None:
        self.config = config
        self.name = config.name
        self.tags = dict(config.tags)
        self.timeout = round(config.state.timeout * NS)
        self.categories = config.state.categories
        self.calendar: Calendar = config.calendar
        self.ideal_ns = round(config.ideal_cycle_time * NS) if config.ideal_cycle_time is not None else None
        self.kinds: dict[str, CounterKind] = {role: spec.kind for role, spec in config.counters().items()}
        #: role → (measurement, field)
        self.fields: dict[str, tuple[str, str]] = {"state": (config.state.measurement, config.state.field)}
        self.fields.update({role: (spec.measurement, spec.field) for role, spec in config.counters().items()})
        self.hours: OrderedDict[int, _Hour] = OrderedDict()
        #: hour → monotonic time until which the history may still miss a backlog's samples
        self.dirty: dict[int, float] = {}
        #: hours whose stored kpi points a backlog made wrong (the kpi component writes them again)
        self.revised: set[int] = set()
        #: the first hour followed live (None: not followed)
        self.live_from: int | None = None
        self.lock = asyncio.Lock()
        self.late_samples = 0
        self.late_ignored = 0
        #: hours to write to the rollups file, and rows to delete from it (a backlog reached them)
        self.unsaved: set[int] = set()
        self.to_drop: set[int] = set()
        #: what decides the compact hours: rows of the rollups file made under another key are ignored
        self.key = hashlib.sha256(
            orjson.dumps(
                {"tags": self.tags, "fields": self.fields, "kinds": self.kinds, "timeout": self.timeout},
                option=orjson.OPT_SORT_KEYS,
            )
        ).hexdigest()[:16]

    def matches(self, tags: Mapping[str, str]) -> bool:
        return all(tags.get(key) == value for key, value in self.tags.items())

    def category(self, value: FieldValue | None) -> str:
        if value is None:
            return "no_data"
        return self.categories.get(state_key(value), "unknown")

    def build(self, samples: Mapping[str, Mapping[int, FieldValue]], *, ordered: bool = False) -> _Hour:
        """An hour's compact form from its samples (``ordered``: each role's samples in time order)."""
        hour = _Hour(runs=runs_of(samples.get("state", {}).items(), self.timeout, ordered=ordered))
        for role, kind in self.kinds.items():
            hour.pieces[role] = counter_piece(samples.get(role, {}).items(), kind, ordered=ordered)
        return hour

    def freshen(self, hour: _Hour) -> _Hour:
        if not hour.fresh and hour.raw is not None:
            rebuilt = self.build(hour.raw)
            hour.runs, hour.pieces, hour.fresh = rebuilt.runs, rebuilt.pieces, True
        return hour

    def add(self, role: str, time_ns: int, value: FieldValue, reloadable: bool) -> None:
        """A sample observed live."""
        index = time_ns // HOUR_NS
        hour = self.hours.get(index)
        if self.live_from is None or index < self.live_from or (hour is not None and hour.raw is None):
            self._late(index, reloadable)
            return
        if hour is None:
            hour = self.hours[index] = _Hour(raw={}, loaded=index > self.live_from)
            self.build_empty(hour)
        assert hour.raw is not None
        hour.raw.setdefault(role, {})[time_ns] = value
        if not hour.fresh:
            return
        if role == "state":
            hour.fresh = append_run(hour.runs, time_ns, value, self.timeout)
            return
        number = numeric(value)
        piece = hour.pieces[role]
        if number is None:
            piece.not_numeric += 1
        else:
            hour.fresh = piece.add(time_ns, number)

    def build_empty(self, hour: _Hour) -> None:
        for role, kind in self.kinds.items():
            hour.pieces[role] = CounterPiece(kind)

    def _late(self, index: int, reloadable: bool) -> None:
        self.late_samples += 1
        if not reloadable:
            self.late_ignored += 1  # no history to read the hour again from: kept as it was
            return
        hour = self.hours.get(index)
        if hour is not None and hour.raw is not None:
            return  # (cannot happen: an open hour takes any sample)
        self.hours.pop(index, None)
        self.dirty[index] = time.monotonic() + RELOAD_DELAY
        self.revised.add(index)
        self.unsaved.discard(index)
        self.to_drop.add(index)

    def settle(self, now_ns: int, history: bool) -> None:
        """Compact the hours that ended more than SETTLE_NS ago (their raw samples are dropped)."""
        for index, hour in list(self.hours.items()):
            if hour.raw is not None and (hour.loaded or not history) and (index + 1) * HOUR_NS + SETTLE_NS <= now_ns:
                self.freshen(hour)
                hour.raw = None
                self.unsaved.add(index)

    def store(self, index: int, hour: _Hour) -> None:
        self.hours[index] = hour
        self.hours.move_to_end(index)
        while len(self.hours) > CACHE_HOURS:
            for old, data in self.hours.items():
                if data.raw is None:
                    del self.hours[old]
                    break
            else:
                break


class _Index:
    """Which machines may want a point: by measurement, then by the value of one tag they all name.

    Ten machines on one measurement cost one dict lookup per point, not ten tag comparisons (every
    emitted batch passes here)."""

    _NONE: Final[list[tuple[_Machine, list[tuple[str, str]]]]] = []

    def __init__(self, machines: Iterable[_Machine]) -> None:
        watchers: dict[str, list[tuple[_Machine, list[tuple[str, str]]]]] = {}
        for machine in machines:
            by_measurement: dict[str, list[tuple[str, str]]] = {}
            for role, (measurement, name) in machine.fields.items():
                by_measurement.setdefault(measurement, []).append((role, name))
            for measurement, roles in by_measurement.items():
                watchers.setdefault(measurement, []).append((machine, roles))
        #: measurement → (tag key, tag value → watchers, watchers without that tag)
        self._by: dict[str, tuple[str | None, dict[str, list[Any]], list[Any]]] = {}
        for measurement, found in watchers.items():
            keys = [set(machine.tags) for machine, _ in found]
            common = set.intersection(*keys) if keys else set()
            key = min(common) if common else None
            by_value: dict[str, list[Any]] = {}
            rest: list[Any] = []
            for entry in found:
                if key is None:
                    rest.append(entry)
                else:
                    by_value.setdefault(entry[0].tags[key], []).append(entry)
            self._by[measurement] = (key, by_value, rest)

    def find(self, point: Point) -> list[tuple[_Machine, list[tuple[str, str]]]]:
        entry = self._by.get(point.measurement)
        if entry is None:
            return self._NONE
        key, by_value, rest = entry
        if key is None:
            return rest
        value = point.tags.get(key)
        return by_value.get(value, self._NONE) if value is not None else self._NONE


def encode(hour: _Hour) -> bytes:
    """An hour's compact form for the rollups file."""
    pieces = {
        role: [p.kind, p.first, p.last, p.times.tolist(), p.amounts.tolist(), p.not_numeric]
        for role, p in hour.pieces.items()
    }
    return zlib.compress(orjson.dumps({"r": [[r.first, r.last, r.value] for r in hour.runs], "p": pieces}), 6)


def decode(data: bytes) -> _Hour:
    body = orjson.loads(zlib.decompress(data))
    hour = _Hour(runs=[Run(first, last, value) for first, last, value in body["r"]])
    for role, (kind, first, last, times, amounts, not_numeric) in body["p"].items():
        hour.pieces[role] = CounterPiece(
            kind,
            None if first is None else (first[0], first[1]),
            None if last is None else (last[0], last[1]),
            array("q", times),
            array("d", amounts),
            not_numeric,
        )
    return hour


# --- results ---------------------------------------------------------------------------------------------


def _ms(ns: int) -> int:
    return ns // 1_000_000


@dataclass
class _Timeline:
    """What a range needs of a machine: its runs and counter lines (built once, used per bucket)."""

    machine: _Machine
    start: int
    end: int  # min(asked end, now)
    runs: list[Run]
    counters: dict[str, CounterLine]
    not_numeric: int
    warnings: list[str]

    def spans(self, start: int, end: int) -> tuple[list[Interval], list[tuple[int, int, str]]]:
        found = intervals(self.runs, self.machine.timeout, start, end)
        return found, [(i.start, i.end, self.machine.category(i.value)) for i in found]

    def measure(self, start: int, end: int, windows: Sequence[Window], shift: str | None = None) -> Kpi:
        _, spans = self.spans(start, end)
        return measure(
            start,
            end,
            spans,
            windows,
            parts=self.counters.get("parts"),
            scrap=self.counters.get("scrap"),
            ideal_ns=self.machine.ideal_ns,
            shift=shift,
        )


class KpiEngine:
    """KPIs of the configured machines (see the module docstring).

    ``history`` gives the reader in force (it changes when a reload replaces a sink); ``now``
    the time in ns (tests fix it).
    """

    def __init__(
        self,
        machines: Sequence[MachineConfig],
        history: Callable[[], HistoryReader | None],
        *,
        now: Callable[[], int] = time.time_ns,
        rollups: RollupStore | None = None,
    ) -> None:
        self.machines = {m.name: _Machine(m) for m in machines}
        #: the compact hours on disk (None: kept in memory only)
        self.rollups = rollups
        self._history = history
        self._now = now
        self._index = _Index(self.machines.values())
        self._latest: LatestValues | None = None
        self._overview: tuple[float, list[dict[str, Any]]] | None = None
        self.observe_errors = 0
        self.started_at = now()

    # --- following the live values ---------------------------------------------------------------------

    def attach(self, latest: LatestValues) -> None:
        """Follow every batch recorded in ``latest`` from now on."""
        now = self._now()
        for machine in self.machines.values():
            machine.live_from = now // HOUR_NS
        self.started_at = now
        self._latest = latest
        latest.add_observer(self.observe)

    def detach(self) -> None:
        if self._latest is not None:
            self._latest.remove_observer(self.observe)
            self._latest = None

    def observe(self, points: Sequence[Point]) -> None:
        """One emitted batch (called by :class:`~gateway.latest.LatestValues` for every batch).

        It runs inside every connector's ``emit``: a bug here is logged and counted, never raised,
        so it can never stop the collection of data."""
        try:
            self._observe(points)
        except Exception:
            self.observe_errors += 1
            if self.observe_errors == 1:
                log.exception("following the live values failed (a bug: please report it); the KPIs may lag")

    def _observe(self, points: Sequence[Point]) -> None:
        find = self._index.find
        reloadable: bool | None = None
        for point in points:
            watchers = find(point)
            if not watchers:
                continue
            fields = point.fields
            for machine, roles in watchers:
                if not machine.matches(point.tags):
                    continue
                for role, name in roles:
                    value = fields.get(name)
                    if value is not None:
                        if reloadable is None:
                            reloadable = self._history() is not None
                        machine.add(role, point.time, value, reloadable)

    def settle(self) -> None:
        """Compact the hours that are over (called every minute by the kpi component)."""
        now, history = self._now(), self._history() is not None
        for machine in self.machines.values():
            machine.settle(now, history)

    def take_revised(self) -> dict[str, list[int]]:
        """Hours (start ns) whose kpi points a backlog made wrong, once they can be read again."""
        found: dict[str, list[int]] = {}
        clock = time.monotonic()
        for machine in self.machines.values():
            ready = sorted(h for h in machine.revised if machine.dirty.get(h, 0.0) <= clock)
            if ready:
                machine.revised.difference_update(ready)
                found[machine.name] = [h * HOUR_NS for h in ready]
        return found

    def stats(self) -> dict[str, int]:
        return {
            "machines": len(self.machines),
            "cached_hours": sum(len(m.hours) for m in self.machines.values()),
            "late_samples": sum(m.late_samples for m in self.machines.values()),
            "observe_errors": self.observe_errors,
        }

    # --- the hours of a range ----------------------------------------------------------------------------

    def machine(self, name: str) -> _Machine:
        machine = self.machines.get(name)
        if machine is None:
            known = ", ".join(sorted(self.machines)) or "none is configured"
            raise MachineNotFound(f"no machine is named {name!r} (machines: {known})")
        return machine

    def day_start(self, name: str, now_ns: int) -> int:
        """The machine's local midnight at or before ``now_ns`` (the API's default start)."""
        return self.machine(name).calendar.day_start(now_ns)

    async def _hours(self, machine: _Machine, first: int, last: int) -> list[_Hour]:
        """Hours ``first`` … ``last`` (indexes) of a machine, read from the history where not cached."""
        now_index = self._now() // HOUR_NS
        last = min(last, now_index)
        if last < first:
            return []
        async with machine.lock:
            missing = [i for i in range(first, last + 1) if (h := machine.hours.get(i)) is None or not h.loaded]
            scratch: dict[int, _Hour] = {}
            history = self._history()
            if missing and self.rollups is not None:
                missing = await self._from_rollups(machine, missing)
            if missing and history is not None:
                for span in _spans(missing, READ_HOURS):
                    samples = await self._read(history, machine, span[0], span[-1])
                    clock = time.monotonic()
                    for index in span:
                        found = samples.get(index, {})
                        current = machine.hours.get(index)
                        if current is not None and current.raw is not None:
                            for role, values in found.items():  # a live hour: add what was stored before
                                current.raw.setdefault(role, {}).update(
                                    {t: v for t, v in values.items() if t not in current.raw.get(role, {})}
                                )
                            current.fresh = False
                            current.loaded = True
                            continue
                        hour = machine.build(found, ordered=True)  # (the history gives them oldest first)
                        if machine.live_from is not None and index >= machine.live_from:
                            # An hour followed live: it stays open (raw) for the samples still to come.
                            hour.raw = {role: dict(values) for role, values in found.items()}
                            machine.store(index, hour)
                            continue
                        if machine.dirty.get(index, 0.0) > clock:
                            scratch[index] = hour  # a backlog may not be stored yet: use, do not keep
                        else:
                            machine.dirty.pop(index, None)
                            machine.store(index, hour)
                            if (index + 1) * HOUR_NS + SETTLE_NS <= self._now():
                                machine.unsaved.add(index)
            result = []
            for index in range(first, last + 1):
                known = machine.hours.get(index) or scratch.get(index)
                if known is None:
                    known = _Hour()
                    machine.build_empty(known)
                else:
                    if index in machine.hours:
                        machine.hours.move_to_end(index)
                    machine.freshen(known)
                result.append(known)
            return result

    async def _from_rollups(self, machine: _Machine, missing: list[int]) -> list[int]:
        """Take what the rollups file has of ``missing`` hours; return those still missing."""
        assert self.rollups is not None
        wanted = [i for i in missing if i not in machine.hours and i not in machine.dirty]
        if not wanted:
            return missing
        rows = await self.rollups.load(machine.name, machine.key, wanted[0], wanted[-1])
        still = []
        for index in missing:
            data = rows.get(index)
            if data is None or index in machine.hours or index in machine.dirty:
                still.append(index)
                continue
            machine.store(index, decode(data))
        return still

    async def flush(self) -> None:
        """Write the hours that are over to the rollups file, delete those a backlog reached."""
        if self.rollups is None:
            return
        for machine in self.machines.values():
            drop, machine.to_drop = machine.to_drop, set()
            await self.rollups.drop(machine.name, sorted(drop))
            unsaved, machine.unsaved = machine.unsaved, set()
            rows = [
                (index, encode(machine.freshen(hour)))
                for index in sorted(unsaved)
                if (hour := machine.hours.get(index)) is not None and hour.raw is None and index not in machine.dirty
            ]
            await self.rollups.save(machine.name, machine.key, rows)

    async def _read(
        self, history: HistoryReader, machine: _Machine, first: int, last: int
    ) -> dict[int, dict[str, dict[int, FieldValue]]]:
        """Raw samples of hours ``first`` … ``last``: hour → role → time → value."""
        wanted: dict[str, dict[str, list[str]]] = {}  # measurement → field → roles
        for role, (measurement, name) in machine.fields.items():
            wanted.setdefault(measurement, {}).setdefault(name, []).append(role)
        result: dict[int, dict[str, dict[int, FieldValue]]] = {}
        for measurement, names in wanted.items():
            try:
                rows = await history.read(
                    measurement,
                    fields=list(names),
                    tags=machine.tags,
                    since_ns=first * HOUR_NS,
                    until_ns=(last + 1) * HOUR_NS - 1,
                )
            except GatewayError as exc:
                raise KpiUnavailable(f"the history ({history.name}) cannot be read now: {exc}") from None
            for row in rows:
                hour = result.setdefault(row.time // HOUR_NS, {})
                for role in names.get(row.field, ()):
                    hour.setdefault(role, {})[row.time] = row.value
        return result

    async def _baseline(self, machine: _Machine, role: str, index: int) -> float | None:
        """The counter's last value before hour ``index`` (None: not found)."""
        for back in range(index - 1, index - 49, -1):  # hours in memory first
            hour = machine.hours.get(back)
            if hour is not None:
                piece = machine.freshen(hour).pieces.get(role)
                if piece is not None and piece.last is not None:
                    return piece.last[1]
        previous = await self._hours(machine, index - 1, index - 1)
        if previous and (piece := previous[0].pieces.get(role)) is not None and piece.last is not None:
            return piece.last[1]
        return await self._last_stored(machine, role, index * HOUR_NS)

    async def _last_stored(self, machine: _Machine, role: str, before: int) -> float | None:
        """The last stored value of a counter before ``before``, through the history's buckets (cheap)."""
        history = self._history()
        if history is None:
            return None
        measurement, name = machine.fields[role]
        try:
            series = [
                s
                for s in await history.series()
                if s.measurement == measurement and s.field == name and machine.matches(s.tags) and s.id
            ]
            best: tuple[int, float] | None = None
            for row in series:
                buckets = await history.range(row.id, before - BASELINE_LOOKBACK_NS, before - 1, 1)
                for bucket in buckets:
                    value = numeric(bucket.last) if bucket.last is not None else None
                    if value is not None and (best is None or bucket.time >= best[0]):
                        best = (bucket.time, value)
        except GatewayError as exc:
            raise KpiUnavailable(f"the history ({history.name}) cannot be read now: {exc}") from None
        return None if best is None else best[1]

    async def _timeline(self, machine: _Machine, start: int, end: int) -> _Timeline:
        end = max(start, min(end, self._now()))
        first = (start - machine.timeout) // HOUR_NS
        last = (end - 1) // HOUR_NS
        hours = await self._hours(machine, first, last) if end > start else []
        runs = [run for hour in hours for run in hour.runs]
        counters: dict[str, CounterLine] = {}
        for role in machine.kinds:
            pieces = [hour.pieces[role] for hour in hours]
            baseline = await self._baseline(machine, role, first) if machine.kinds[role] == "total" else None
            counters[role] = CounterLine.of_pieces(pieces, baseline)
        warnings = []
        if self._history() is None:
            warnings.append(
                "no sink keeps a history (add a historian sink): only what arrived since the gateway started "
                f"({machine.calendar.iso(self.started_at)}) is known"
            )
        not_numeric = sum(hour.not_numeric for hour in hours)
        if not_numeric:
            warnings.append(f"{not_numeric} counter values in this range were not numbers and were left out")
        return _Timeline(machine, start, end, runs, counters, not_numeric, warnings)

    # --- what the API, the CLI and the kpi points ask ----------------------------------------------------

    async def kpi(self, name: str, start: int, end: int, by: Bucket | None = None) -> dict[str, Any]:
        """The KPIs of one machine over [start, end) (``end`` capped at now); with ``by``, one row per bucket."""
        machine = self.machine(name)
        timeline = await self._timeline(machine, start, end)
        total = timeline.measure(timeline.start, timeline.end, machine.calendar.planned(timeline.start, timeline.end))
        result = self._kpi_dict(machine, total, timeline.warnings)
        if by is not None:
            buckets = list(self.buckets(machine, by, timeline.start, timeline.end))
            if len(buckets) > MAX_ROWS:
                raise ValueError(f"by={by} gives {len(buckets)} rows (at most {MAX_ROWS}): use a longer bucket")
            rows = []
            for window in buckets:
                planned = [window] if by == "shift" else machine.calendar.planned(window.start, window.end)
                kpi = timeline.measure(window.start, window.end, planned, window.name if by == "shift" else None)
                row = self._kpi_dict(machine, kpi, [])
                if by != "shift":
                    row["bucket"] = window.name
                rows.append(row)
            result["by"] = by
            result["rows"] = rows
        return result

    def buckets(self, machine: _Machine, by: Bucket, start: int, end: int) -> Iterable[Window]:
        calendar = machine.calendar
        if by == "shift":
            if not calendar.shifts:
                raise ValueError(f"machine {machine.name!r} has no shifts configured: use by=hour or by=day")
            return [w for w in (o.clip(start, end) for o in calendar.occurrences(start, end)) if w is not None]
        if by == "hour":
            if end - start > MAX_ROWS * HOUR_NS:
                raise ValueError(f"by=hour over more than {MAX_ROWS} hours: use by=day")
            return calendar.hours(start, end)
        return calendar.days(start, end)

    async def measure(self, name: str, ranges: Sequence[tuple[int, int]]) -> list[Kpi]:
        """The sums of several ranges of one machine (the kpi component's points), from one read of their span.

        Each range is planned as the machine's calendar says; its end is capped at now.
        """
        machine = self.machine(name)
        if not ranges:
            return []
        timeline = await self._timeline(machine, min(r[0] for r in ranges), max(r[1] for r in ranges))
        result = []
        for start, end in ranges:
            end = max(start, min(end, timeline.end))
            result.append(timeline.measure(start, end, machine.calendar.planned(start, end)))
        return result

    async def preload(self, name: str, start: int, end: int) -> None:
        """Read the hours of [start, end) into the cache, newest first, one hour per read (a warm-up that
        lets the history's other readers in between)."""
        machine = self.machine(name)
        for index in range((end - 1) // HOUR_NS, start // HOUR_NS - 1, -1):
            await self._hours(machine, index, index)
            await asyncio.sleep(0)

    async def states(self, name: str, start: int, end: int) -> dict[str, Any]:
        """The state intervals of one machine over [start, end), gaps as no_data, and the shifts there."""
        machine = self.machine(name)
        timeline = await self._timeline(machine, start, end)
        found, _ = timeline.spans(timeline.start, timeline.end)
        calendar = machine.calendar
        return {
            "machine": machine.name,
            **self._range(calendar, timeline.start, timeline.end),
            "intervals": [
                {
                    **self._range(calendar, i.start, i.end),
                    "value": i.value,
                    "category": machine.category(i.value),
                }
                for i in found
            ],
            "shifts": [
                {"name": w.name, **self._range(calendar, w.start, w.end)}
                for w in calendar.occurrences(timeline.start, timeline.end)
            ],
            "warnings": timeline.warnings,
        }

    async def overview(self, max_age: float = 1.0) -> list[dict[str, Any]]:
        """Every machine now: its state, category and since when, today's and the current shift's KPIs.

        Kept ``max_age`` seconds (every live stream asks for it).
        """
        cached = self._overview
        if cached is not None and time.monotonic() - cached[0] < max_age:
            return cached[1]
        result = [await self._machine_now(machine) for machine in self.machines.values()]
        self._overview = (time.monotonic(), result)
        return result

    async def _machine_now(self, machine: _Machine) -> dict[str, Any]:
        now = self._now()
        calendar = machine.calendar
        day = calendar.day_start(now)
        timeline = today_timeline = await self._timeline(machine, day, now)
        today = timeline.measure(day, now, calendar.planned(day, now))
        shift = calendar.shift_at(now)
        current: dict[str, Any] | None = None
        if shift is not None:
            lo = max(shift.start, day)
            if shift.start < day:  # a night shift that began yesterday
                timeline = await self._timeline(machine, shift.start, now)
                lo = shift.start
            kpi = timeline.measure(lo, now, [Window(lo, now, shift.name)], shift.name)
            current = {
                "name": shift.name,
                **self._range(calendar, shift.start, shift.end),
                "kpi": self._kpi_dict(machine, kpi, []),
            }
        value, category, since, last_sample = await self._state_now(machine, now, today_timeline)
        return {
            "name": machine.name,
            "tags": dict(machine.tags),
            "timezone": machine.config.timezone,
            "ideal_cycle_time_s": machine.config.ideal_cycle_time,
            "value": value,
            "category": category,
            "since": calendar.iso(since) if since is not None else None,
            "since_ms": _ms(since) if since is not None else None,
            "last_sample_ms": _ms(last_sample) if last_sample is not None else None,
            "today": self._kpi_dict(machine, today, timeline.warnings),
            "shift": current,
        }

    async def _state_now(
        self, machine: _Machine, now: int, today: _Timeline
    ) -> tuple[FieldValue | None, str, int | None, int | None]:
        """The state now, its category, since when (merged across samples and days), its last sample."""
        back = today.start
        lowest = now - SINCE_LOOKBACK_NS
        timeline = today
        while True:
            found, _ = timeline.spans(back, now)
            last_sample = timeline.runs[-1].last if timeline.runs else None
            if not found:
                return None, "no_data", None, last_sample
            current = found[-1]
            if current.start > back or back <= lowest:
                return current.value, machine.category(current.value), current.start, last_sample
            back = max(lowest, back - 86400 * NS)  # the same state since before this day: look further back
            timeline = await self._timeline(machine, back, now)

    # --- shaping ------------------------------------------------------------------------------------------

    @staticmethod
    def _range(calendar: Calendar, start: int, end: int) -> dict[str, Any]:
        return {"from": calendar.iso(start), "to": calendar.iso(end), "from_ms": _ms(start), "to_ms": _ms(end)}

    def _kpi_dict(self, machine: _Machine, kpi: Kpi, warnings: Sequence[str]) -> dict[str, Any]:
        result: dict[str, Any] = {"machine": machine.name, **self._range(machine.calendar, kpi.start, kpi.end)}
        if kpi.shift is not None:
            result["shift"] = kpi.shift
        result.update(kpi.as_dict())
        if machine.calendar.shifts:
            good_planned = (
                None if kpi.parts_planned is None else max(kpi.parts_planned - (kpi.scrap_planned or 0.0), 0.0)
            )
            result["in_shifts"] = {
                "shift_seconds": _number(kpi.window_ns / NS),
                "seconds": {c: _number(round(kpi.planned_ns_by[c] / NS, 3)) for c in CATEGORIES},
                "parts": None if kpi.parts_planned is None else _number(kpi.parts_planned),
                "scrap": None if kpi.scrap_planned is None else _number(kpi.scrap_planned),
                "good": None if good_planned is None else _number(good_planned),
            }
        result["warnings"] = [*warnings, *kpi.warnings]
        return result


def _number(value: float) -> float | int:
    value = round(value, 3)
    return int(value) if float(value).is_integer() else value


def _spans(indexes: Sequence[int], longest: int) -> list[list[int]]:
    """Consecutive runs of indexes, each at most ``longest`` long."""
    spans: list[list[int]] = []
    for index in indexes:
        if spans and spans[-1][-1] == index - 1 and len(spans[-1]) < longest:
            spans[-1].append(index)
        else:
            spans.append([index])
    return spans
