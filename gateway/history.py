"""Reading what a sink stored: the *history reader* ability.

A sink that can read back what it stored offers a :class:`HistoryReader` through
:meth:`gateway.component.Sink.history` (the embedded historian does). The web page's charts
and series list, the KPI engine and the latest-values seed after a restart use that reader;
none of them knows which kind of sink is behind it.

Results are small plain records (:class:`SeriesRow`, :class:`BucketRow`, :class:`ValueRow`),
so readers of the history never depend on a store's own classes.

:class:`ThreadedHistory` is the reader for a synchronous store (such as SQLite): the store is
opened on first use and every call runs in one worker thread of its own, so a long range query
never blocks the event loop and the store is only ever touched from one thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from gateway.errors import GatewayError
from gateway.point import FieldValue

__all__ = [
    "BucketRow",
    "HistoryReader",
    "SeriesRow",
    "SyncSeriesStore",
    "ThreadedHistory",
    "ValueRow",
]

T = TypeVar("T")


@dataclass(frozen=True)
class SeriesRow:
    """One stored series: a measurement's field under one set of tags, with its last value."""

    id: str
    measurement: str
    tags: Mapping[str, str]
    field: str
    kind: str | None
    last_time: int | None  # ns
    last_value: FieldValue | None

    @classmethod
    def of(cls, info: Any) -> SeriesRow:
        return cls(
            id=str(info.id),
            measurement=str(info.measurement),
            tags=dict(info.tags or {}),
            field=str(info.field),
            kind=getattr(info, "kind", None),
            last_time=getattr(info, "last_time", None),
            last_value=getattr(info, "last_value", None),
        )


@dataclass(frozen=True)
class BucketRow:
    """The samples of one series in one time bucket (min, max, mean are None for text)."""

    time: int  # ns, start of the bucket
    min: float | None
    max: float | None
    mean: float | None
    count: int
    last: FieldValue | None = None

    @classmethod
    def of(cls, bucket: Any) -> BucketRow:
        return cls(
            time=int(bucket.time),
            min=getattr(bucket, "min", None),
            max=getattr(bucket, "max", None),
            mean=getattr(bucket, "mean", None),
            count=int(getattr(bucket, "count", 1) or 0),
            last=getattr(bucket, "last", None),
        )


@dataclass(frozen=True)
class ValueRow:
    """One stored value of one field, exactly as stored (its type kept)."""

    time: int  # ns
    measurement: str
    tags: Mapping[str, str]
    field: str
    value: FieldValue

    @classmethod
    def of(cls, value: Any) -> ValueRow:
        return cls(
            time=int(value.time),
            measurement=str(value.measurement),
            tags=value.tags,
            field=str(value.field),
            value=value.value,
        )


class HistoryReader(Protocol):
    """What readers of the history may ask of a sink that offers one."""

    @property
    def name(self) -> str:
        """The sink's name (shown where the history comes from)."""
        ...

    async def series(self) -> list[SeriesRow]:
        """Every stored series with its last value."""
        ...

    async def range(self, series_id: str, from_ns: int, to_ns: int, points: int) -> list[BucketRow]:
        """One series between two times, reduced to at most ``points`` buckets."""
        ...

    async def read(
        self,
        measurement: str,
        *,
        fields: Sequence[str] = (),
        tags: Mapping[str, str] | None = None,
        since_ns: int | None = None,
        until_ns: int | None = None,
        limit: int = 0,
    ) -> list[ValueRow]:
        """Stored values, oldest first, between two times (both included)."""
        ...


class SyncSeriesStore(Protocol):
    """A synchronous store :class:`ThreadedHistory` can read (the historian's store is one)."""

    def series(self, measurement: str | None = None) -> Sequence[Any]: ...

    def range(self, series_id: Any, from_ns: int, to_ns: int, points: int = 1000) -> Sequence[Any]: ...

    def read(
        self,
        measurement: str | None = None,
        *,
        fields: Sequence[str] = (),
        tags: Mapping[str, str] = ...,
        since_ns: int | None = None,
        until_ns: int | None = None,
        limit: int = 0,
    ) -> Sequence[Any]: ...

    def close(self) -> None: ...


class ThreadedHistory:
    """A :class:`HistoryReader` over a synchronous store, confined to one worker thread."""

    #: The series list is cached this long: the page asks for it often.
    SERIES_CACHE_SECONDS = 2.0

    def __init__(self, opener: Callable[[], SyncSeriesStore], name: str) -> None:
        self._name = name
        self._opener = opener
        self._store: SyncSeriesStore | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"history-{name}")
        self._series_cache: tuple[float, list[SeriesRow]] | None = None
        self._series_lock = asyncio.Lock()
        self._closed = False

    @property
    def name(self) -> str:
        return self._name

    async def _call(self, fn: Callable[[SyncSeriesStore], T]) -> T:
        if self._closed:
            raise GatewayError(f"the history of {self._name!r} is closed (the sink was stopped or reconfigured)")

        def run() -> T:
            if self._store is None:
                self._store = self._opener()
            return fn(self._store)

        return await asyncio.get_running_loop().run_in_executor(self._executor, run)

    async def series(self) -> list[SeriesRow]:
        async with self._series_lock:
            cached = self._series_cache
            if cached is not None and time.monotonic() - cached[0] < self.SERIES_CACHE_SECONDS:
                return cached[1]
            try:
                rows = await self._call(lambda store: [SeriesRow.of(info) for info in store.series()])
            except GatewayError:  # e.g. no file yet: nothing was stored so far
                return []  # not cached: the first series may land any moment
            self._series_cache = (time.monotonic(), rows) if rows else None
            return rows

    async def range(self, series_id: str, from_ns: int, to_ns: int, points: int) -> list[BucketRow]:
        key: Any = int(series_id) if series_id.isdigit() else series_id
        return await self._call(
            lambda store: [BucketRow.of(b) for b in store.range(key, from_ns, to_ns, points=points)]
        )

    async def read(
        self,
        measurement: str,
        *,
        fields: Sequence[str] = (),
        tags: Mapping[str, str] | None = None,
        since_ns: int | None = None,
        until_ns: int | None = None,
        limit: int = 0,
    ) -> list[ValueRow]:
        wanted_tags = dict(tags or {})
        return await self._call(
            lambda store: [
                ValueRow.of(value)
                for value in store.read(
                    measurement, fields=fields, tags=wanted_tags, since_ns=since_ns, until_ns=until_ns, limit=limit
                )
            ]
        )

    async def aclose(self) -> None:
        """Close the store in its thread and stop the thread (queries in progress finish first)."""
        if self._closed:
            return
        self._closed = True
        store = self._store

        def close_store() -> None:
            if store is not None:
                with contextlib.suppress(Exception):
                    store.close()

        with contextlib.suppress(RuntimeError):
            await asyncio.get_running_loop().run_in_executor(self._executor, close_store)
        await asyncio.to_thread(self._executor.shutdown, wait=True, cancel_futures=True)
