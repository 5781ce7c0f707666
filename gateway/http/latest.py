"""The latest value of every series, kept up to date by a tap on every emitted batch.

The runtime wraps each connector's ``emit`` with :meth:`LatestValues.tap`: every batch updates
one small entry per series (measurement + tags) in O(points) dict operations, before it goes
on to the sinks. The overview page, its live updates (Server-Sent Events) and the series list
read from here, so they never query a store for "what is the value now".
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.component import OnStored
from gateway.point import FieldValue, Point

__all__ = ["LatestValues", "SeriesKey", "SeriesLatest", "series_key"]

SeriesKey = tuple[str, frozenset[tuple[str, str]]]

EmitFn = Callable[[Sequence[Point], OnStored | None], Awaitable[None]]


def series_key(measurement: str, tags: dict[str, str]) -> SeriesKey:
    return (measurement, frozenset(tags.items()))


@dataclass
class SeriesLatest:
    """The newest value of each field of one series (measurement + tags)."""

    measurement: str
    tags: dict[str, str]
    source: str | None = None
    #: field → (value, point time in ns)
    fields: dict[str, tuple[FieldValue, int]] = field(default_factory=dict)
    #: wall-clock seconds when the gateway last received a point of this series
    seen: float = 0.0
    version: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "measurement": self.measurement,
            "tags": dict(self.tags),
            "source": self.source,
            "seen": self.seen,
            "fields": {name: {"value": v, "time": t // 1_000_000} for name, (v, t) in self.fields.items()},
        }


class LatestValues:
    """Newest value per series and field; wakes up waiters (the SSE streams) on every change."""

    def __init__(self) -> None:
        self._series: dict[SeriesKey, SeriesLatest] = {}
        self.version = 0
        self.points_seen = 0
        #: points emitted per connector name
        self.emitted: dict[str, int] = {}
        self._changed = asyncio.Event()

    def __len__(self) -> int:
        return len(self._series)

    def update(self, points: Sequence[Point], source: str | None = None) -> None:
        """Record a batch (called for every batch a connector emits)."""
        if not points:
            return
        self.version += 1
        version = self.version
        now = time.time()
        series = self._series
        for point in points:
            key = (point.measurement, frozenset(point.tags.items()))
            entry = series.get(key)
            if entry is None:
                entry = series[key] = SeriesLatest(point.measurement, dict(point.tags), source)
            fields = entry.fields
            ts = point.time
            for name, value in point.fields.items():
                old = fields.get(name)
                if old is None or old[1] <= ts:
                    fields[name] = (value, ts)
            entry.seen = now
            entry.version = version
        self.points_seen += len(points)
        if source is not None:
            self.emitted[source] = self.emitted.get(source, 0) + len(points)
        self._changed.set()

    def seed(self, measurement: str, tags: dict[str, str], name: str, value: FieldValue, time_ns: int) -> None:
        """Fill in a value known from a store (after a restart), unless a newer one is already here."""
        key = series_key(measurement, tags)
        entry = self._series.get(key)
        if entry is None:
            entry = self._series[key] = SeriesLatest(measurement, dict(tags))
        old = entry.fields.get(name)
        if old is None or old[1] < time_ns:
            entry.fields[name] = (value, time_ns)
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
