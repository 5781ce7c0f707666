"""Reading the embedded historian for the API: the series list and downsampled ranges.

The historian sink writes; this opens its own read-only store on the same file
(``HistorianStore(path, readonly=True)``) and runs every query in one worker thread, so a long
range query never blocks the event loop and the store is only ever used from one thread.
Results are converted to small plain records here, so the API does not depend on the store's
own classes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from gateway.errors import GatewayError
from gateway.logs import component_logger
from gateway.point import FieldValue

__all__ = ["BucketRow", "History", "SeriesRow", "SeriesStore", "history_for_config"]

T = TypeVar("T")

log = component_logger("http", "history")


class SeriesStore(Protocol):
    """What the API needs from the historian's store."""

    def series(self, measurement: str | None = None) -> Sequence[Any]: ...

    def range(self, series_id: Any, from_ns: int, to_ns: int, points: int = 1000) -> Sequence[Any]: ...


@dataclass(frozen=True)
class SeriesRow:
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


class History:
    """Async, thread-confined access to a historian store (opened on first use)."""

    SERIES_CACHE_SECONDS = 2.0

    def __init__(self, opener: Callable[[], SeriesStore], name: str = "historian") -> None:
        self.name = name
        self._opener = opener
        self._store: SeriesStore | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="http-history")
        self._series_cache: tuple[float, list[SeriesRow]] | None = None
        self._series_lock = asyncio.Lock()

    async def _call(self, fn: Callable[[SeriesStore], T]) -> T:
        def run() -> T:
            if self._store is None:
                self._store = self._opener()
            return fn(self._store)

        return await asyncio.get_running_loop().run_in_executor(self._executor, run)

    async def series(self) -> list[SeriesRow]:
        """Every series in the store (cached for a couple of seconds: the page asks often)."""
        async with self._series_lock:
            cached = self._series_cache
            if cached is not None and time.monotonic() - cached[0] < self.SERIES_CACHE_SECONDS:
                return cached[1]
            try:
                rows = await self._call(lambda store: [SeriesRow.of(info) for info in store.series()])
            except GatewayError as exc:  # e.g. no file yet: nothing was stored so far
                log.debug("no series to show from %s: %s", self.name, exc)
                return []  # not cached: the first series may land any moment
            self._series_cache = (time.monotonic(), rows) if rows else None
            return rows

    async def range(self, series_id: str, from_ns: int, to_ns: int, points: int) -> list[BucketRow]:
        key: Any = int(series_id) if series_id.isdigit() else series_id
        return await self._call(
            lambda store: [BucketRow.of(b) for b in store.range(key, from_ns, to_ns, points=points)]
        )

    def close(self) -> None:
        store = self._store

        def close_store() -> None:
            if store is not None and hasattr(store, "close"):
                with contextlib.suppress(Exception):
                    store.close()

        with contextlib.suppress(RuntimeError):
            self._executor.submit(close_store)
        self._executor.shutdown(wait=True, cancel_futures=True)


def history_for_config(sinks: Sequence[Any]) -> History | None:
    """A :class:`History` on the first ``type: historian`` sink of the config, if there is one."""
    for sink in sinks:
        if getattr(sink, "type", None) == "historian" and getattr(sink, "path", None) is not None:
            path = Path(sink.path)

            def opener(path: Path = path) -> SeriesStore:
                from gateway.sinks.historian.store import HistorianStore

                store: SeriesStore = HistorianStore(path, readonly=True)
                return store

            return History(opener, name=str(sink.name))
    return None
