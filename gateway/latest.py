"""The latest value of every series: a core service, kept up to date by the runtime.

The runtime records every batch a connector emits here (:meth:`LatestValues.update`, one
small entry per series — measurement + tags — in O(points) dict operations) before the batch
goes on to the sinks, and seeds it from a sink's history after a restart. Whoever needs "the
value now" reads it here and never queries a store for it: the web page's overview, its live
updates (Server-Sent Events) and series list, and the KPI engine.

Quality (OPC UA): a Bad sample arrives as ``<field>_status`` (the status name) with the tag
``quality=bad``, an Uncertain one as the value plus ``<field>_status`` with ``quality=uncertain``
(see ``connectors/opcua/values.py``). Here the ``quality`` tag is not part of a series' identity:
such a status marks ``<field>`` of the same series as bad / uncertain (the last value stays, marked,
so the page can show it struck out with the status name), and a newer good value clears the mark.
No ``<field>_status`` entry is kept, so none can linger after the sensor recovers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from gateway.component import OnStored
from gateway.history import HistoryReader
from gateway.point import FieldValue, Point

__all__ = ["FieldLatest", "LatestValues", "Quality", "SeriesKey", "SeriesLatest", "seed_from_history", "series_key"]

SeriesKey = tuple[str, frozenset[tuple[str, str]]]

EmitFn = Callable[[Sequence[Point], OnStored | None], Awaitable[None]]
Quality = Literal["good", "uncertain", "bad"]

_QUALITY_TAG = "quality"
_QUALITIES: dict[str, Quality] = {"good": "good", "uncertain": "uncertain", "bad": "bad"}
_STATUS_SUFFIX = "_status"
#: series remembered by their tags object (LatestValues._entry); cleared when full
_BY_TAGS_LIMIT = 20_000


def _split_quality(tags: Mapping[str, str]) -> tuple[Mapping[str, str], Quality]:
    """The tags without ``quality`` (when it is good/uncertain/bad) and that quality."""
    quality = _QUALITIES.get(tags.get(_QUALITY_TAG, ""))
    if quality is None:
        return tags, "good"
    return {k: v for k, v in tags.items() if k != _QUALITY_TAG}, quality


def series_key(measurement: str, tags: Mapping[str, str]) -> SeriesKey:
    return (measurement, frozenset(_split_quality(tags)[0].items()))


@dataclass(slots=True)
class FieldLatest:
    """The newest value of one field, and whether the source says it can be trusted now."""

    #: None when the source never sent a usable value (only a Bad status)
    value: FieldValue | None
    #: point time of ``value`` in ns
    time: int
    quality: Quality = "good"
    #: the status name (e.g. ``BadSensorFailure``) while the quality is not good
    status: str | None = None
    #: point time of the status in ns (a good value older than this does not clear it)
    status_time: int = 0

    def set_value(self, value: FieldValue, time_ns: int, quality: Quality, status: str | None) -> None:
        self.value, self.time = value, time_ns
        if quality != "good":
            self.quality, self.status, self.status_time = quality, status, time_ns
        elif time_ns >= self.status_time:
            self.quality, self.status = "good", None

    def mark(self, quality: Quality, status: str, time_ns: int) -> None:
        self.quality, self.status, self.status_time = quality, status, time_ns

    def as_dict(self) -> dict[str, Any]:
        return {"value": self.value, "time": self.time // 1_000_000, "quality": self.quality, "status": self.status}


@dataclass
class SeriesLatest:
    """The newest value of each field of one series (measurement + tags)."""

    measurement: str
    tags: dict[str, str]
    source: str | None = None
    #: field → its newest value, time and quality
    fields: dict[str, FieldLatest] = field(default_factory=dict)
    #: wall-clock seconds when the gateway last received a point of this series
    seen: float = 0.0
    version: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "measurement": self.measurement,
            "tags": dict(self.tags),
            "source": self.source,
            "seen": self.seen,
            "fields": {name: f.as_dict() for name, f in self.fields.items()},
        }

    def put(self, name: str, value: FieldValue, time_ns: int, quality: Quality, status: str | None) -> None:
        """A value (with its quality), unless a newer one is already here."""
        old = self.fields.get(name)
        if old is None:
            self.fields[name] = FieldLatest(value, time_ns, quality, status, time_ns if quality != "good" else 0)
        elif old.time <= time_ns or old.value is None:  # an older value still beats none (restart seed)
            old.set_value(value, time_ns, quality, status)

    def put_status(self, name: str, quality: Quality, status: str, time_ns: int) -> None:
        """A Bad/Uncertain status without a value: marks the field's last value, if not newer."""
        old = self.fields.get(name)
        if old is None:
            self.fields[name] = FieldLatest(None, time_ns, quality, status, time_ns)
        elif old.time <= time_ns and old.status_time <= time_ns:
            old.mark(quality, status, time_ns)

    def put_point(self, fields: Mapping[str, FieldValue], time_ns: int, quality: Quality) -> None:
        if quality == "good":
            for name, value in fields.items():
                self.put(name, value, time_ns, "good", None)
            return
        statuses = {
            name[: -len(_STATUS_SUFFIX)]: value
            for name, value in fields.items()
            if name.endswith(_STATUS_SUFFIX) and len(name) > len(_STATUS_SUFFIX) and isinstance(value, str)
        }
        for name, value in fields.items():
            if name.endswith(_STATUS_SUFFIX) and name[: -len(_STATUS_SUFFIX)] in statuses:
                continue
            self.put(name, value, time_ns, quality, statuses.get(name))
        for name, status in statuses.items():
            if name not in fields:
                self.put_status(name, quality, status, time_ns)


class LatestValues:
    """Newest value per series and field; wakes up waiters (the SSE streams) on every change."""

    def __init__(self) -> None:
        self._series: dict[SeriesKey, SeriesLatest] = {}
        #: id(tags) → (tags, measurement, series, quality): see _entry
        self._by_tags: dict[int, tuple[Mapping[str, str], str, SeriesLatest, Quality]] = {}
        self.version = 0
        self.points_seen = 0
        #: points emitted per connector name
        self.emitted: dict[str, int] = {}
        self._changed = asyncio.Event()
        #: called with every batch recorded (the KPI engine follows its machines' samples this way)
        self._observers: list[Callable[[Sequence[Point]], None]] = []

    def __len__(self) -> int:
        return len(self._series)

    def update(self, points: Sequence[Point], source: str | None = None) -> None:
        """Record a batch (called for every batch a connector emits)."""
        if not points:
            return
        self.version += 1
        version = self.version
        now = time.time()
        by_tags = self._by_tags
        for point in points:
            tags = point.tags
            known = by_tags.get(id(tags))
            if known is not None and known[0] is tags and known[1] == point.measurement:
                entry, quality = known[2], known[3]
            else:
                entry, quality = self._entry(point.measurement, tags, source)
            entry.put_point(point.fields, point.time, quality)
            entry.seen = now
            entry.version = version
        self.points_seen += len(points)
        if source is not None:
            self.emitted[source] = self.emitted.get(source, 0) + len(points)
        for observer in self._observers:
            observer(points)
        self._changed.set()

    def _entry(self, measurement: str, tags: Mapping[str, str], source: str | None) -> tuple[SeriesLatest, Quality]:
        """The series of a point and its quality; remembered by the tags' identity, since a
        connector hands the same tags object to every point of a series (a decoder caches them per
        topic), which saves building the series key for every point."""
        plain, quality = _split_quality(tags)
        key = (measurement, frozenset(plain.items()))
        entry = self._series.get(key)
        if entry is None:
            entry = self._series[key] = SeriesLatest(measurement, dict(plain), source)
        if len(self._by_tags) >= _BY_TAGS_LIMIT:
            self._by_tags.clear()
        self._by_tags[id(tags)] = (tags, measurement, entry, quality)  # (holding tags keeps the id theirs)
        return entry, quality

    def add_observer(self, observer: Callable[[Sequence[Point]], None]) -> None:
        """Call ``observer`` with every batch recorded from now on (it must be quick: it runs in ``emit``)."""
        self._observers.append(observer)

    def remove_observer(self, observer: Callable[[Sequence[Point]], None]) -> None:
        if observer in self._observers:
            self._observers.remove(observer)

    def seed(self, measurement: str, tags: dict[str, str], name: str, value: FieldValue, time_ns: int) -> None:
        """Fill in a value known from a store (after a restart), unless a newer one is already here."""
        base, quality = _split_quality(tags)
        key = series_key(measurement, base)
        entry = self._series.get(key)
        if entry is None:
            entry = self._series[key] = SeriesLatest(measurement, dict(base))
        old = entry.fields.get(name)
        if old is None or old.time < time_ns or old.value is None or (quality != "good" and old.status_time < time_ns):
            entry.put_point({name: value}, time_ns, quality)
        entry.seen = max(entry.seen, time_ns / 1e9)

    def get(self, measurement: str, tags: dict[str, str]) -> SeriesLatest | None:
        return self._series.get(series_key(measurement, tags))

    def all(self) -> list[SeriesLatest]:
        return list(self._series.values())

    def changed_since(self, version: int) -> list[SeriesLatest]:
        return [entry for entry in self._series.values() if entry.version > version]

    async def wait_changed(self, version: int, timeout: float) -> bool:
        """Wait until something newer than ``version`` arrives; False after ``timeout``."""
        if self.version > version:
            return True
        self._changed.clear()
        try:
            await asyncio.wait_for(self._changed.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def wake(self) -> None:
        """Wake every waiter (at shutdown, so live streams end at once)."""
        self._changed.set()

    def tap(self, emit: Callable[..., Any], source: str | None = None) -> EmitFn:
        """``emit`` that records each batch here before handing it on unchanged."""
        update = self.update

        async def tapped(points: Sequence[Point], on_stored: OnStored | None = None) -> None:
            update(points, source)
            await emit(points, on_stored)

        return tapped

    def sources(self) -> Iterable[str]:
        return {entry.source for entry in self._series.values() if entry.source}


async def seed_from_history(latest: LatestValues, reader: HistoryReader) -> int:
    """Fill ``latest`` with each stored series' last value (after a restart, until live ones arrive).

    Returns how many values were seeded; a store that cannot be read yet seeds nothing.
    """
    try:
        rows = await reader.series()
    except Exception:  # noqa: BLE001 - the history may not exist yet on a first start
        return 0
    seeded = 0
    for row in rows:
        if row.last_value is not None and row.last_time is not None:
            latest.seed(row.measurement, dict(row.tags), row.field, row.last_value, row.last_time)
            seeded += 1
    return seeded
