"""The embedded historian sink: batches from the pipeline into the local SQLite file.

Every call to the file runs in one dedicated thread (the store's connection lives there), so
the event loop keeps receiving while a batch is written. Compaction (moving ``recent`` into
``samples``, about once a minute) is queued after the write that made it due, so that
write's batch is acknowledged first. Retention runs every ``retention_check`` in steps of a
few tens of milliseconds, queued between writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from gateway.component import RuntimeContext, Sink
from gateway.errors import SinkRejected, SinkUnavailable
from gateway.history import HistoryReader, ThreadedHistory
from gateway.point import Point
from gateway.sinks.historian.config import HistorianConfig
from gateway.sinks.historian.store import HistorianError, HistorianStore
from gateway.units import format_duration

__all__ = ["HistorianSink", "explain_sqlite_error"]

T = TypeVar("T")


def explain_sqlite_error(path: Path, exc: sqlite3.Error) -> str:
    """What a failed write means for a plant engineer, and what to do."""
    text = str(exc)
    lowered = text.lower()
    if "full" in lowered:
        return f"the disk holding {path} is full: free some space (points are kept and written when there is room)"
    if "locked" in lowered or "busy" in lowered:
        return f"{path} is locked by another program (is a second gateway writing to the same file?)"
    if "readonly" in lowered or "read-only" in lowered or "permission" in lowered:
        return f"cannot write {path}: the file or its folder is read-only for the gateway's user"
    if "malformed" in lowered or "not a database" in lowered:
        return (
            f"{path} is damaged ({text}): stop the gateway and move the file aside; "
            "a new one is created at the next start"
        )
    if "i/o" in lowered:
        return f"disk error while writing {path} ({text}): check the disk"
    return f"cannot write {path}: {text}"


def _encodable(point: Point) -> bool:
    try:
        for text in (point.measurement, *point.tags.keys(), *point.tags.values(), *point.fields.keys()):
            text.encode()
        for value in point.fields.values():
            if type(value) is str:
                value.encode()
    except UnicodeEncodeError:
        return False
    return True


class HistorianSink(Sink):
    """Writes batches into a :class:`HistorianStore` from one dedicated thread."""

    #: Seconds between refreshes of the file size shown in the status.
    DETAIL_INTERVAL = 2.0

    def __init__(self, config: HistorianConfig, context: RuntimeContext) -> None:
        super().__init__(config.name, "historian", context)
        self.config = config
        self.path = config.file(context.data_dir)
        self._history: ThreadedHistory | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._store: HistorianStore | None = None
        self._retention_task: asyncio.Task[None] | None = None
        self._compaction: asyncio.Task[None] | None = None
        self._detail_at = 0.0
        self.status.detail["path"] = str(self.path)

    @property
    def store(self) -> HistorianStore:
        if self._store is None:
            raise HistorianError(f"the historian sink {self.name!r} is not open")
        return self._store

    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        if self._executor is None:
            raise HistorianError(f"the historian sink {self.name!r} is not open")
        call = functools.partial(fn, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    async def open(self) -> None:
        """Create the folder, the file and its tables if needed; start the retention schedule."""
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"historian-{self.name}")
        try:
            self._store = await self._run(
                HistorianStore,
                self.path,
                retention=self.config.retention,
                synchronous=self.config.synchronous,
                auto_compact=False,
            )
        except BaseException:
            self._executor.shutdown(wait=True)
            self._executor = None
            raise
        self._update_detail(force=True)
        retention = self.config.retention
        self.log.info(
            "storing into %s (%s)",
            self.path,
            f"values kept {format_duration(retention)}" if retention else "values kept forever",
        )
        if retention is not None:
            self._retention_task = asyncio.create_task(self._retention_loop(), name=f"sink:{self.name}:retention")

    async def write(self, points: Sequence[Point]) -> None:
        """Store one batch in one transaction; a failure raises SinkUnavailable (the batch is retried)."""
        store = self.store
        try:
            await self._run(store.write, points)
        except sqlite3.Error as exc:
            raise SinkUnavailable(explain_sqlite_error(self.path, exc)) from exc
        except UnicodeEncodeError:
            await self._write_encodable(points)
        self._schedule_compaction()
        self._update_detail()

    def _schedule_compaction(self) -> None:
        """Queue a compaction behind this write in the store's thread: this batch is acknowledged first."""
        if self.store.compaction_due and (self._compaction is None or self._compaction.done()):
            self._compaction = asyncio.create_task(self._compact(), name=f"sink:{self.name}:compact")

    async def _compact(self) -> None:
        try:
            await self._run(self.store.compact)
        except sqlite3.Error as exc:  # the values stay in `recent` (readable); retried after the next write
            self.log.warning("compaction failed, retrying later: %s", explain_sqlite_error(self.path, exc))

    async def _write_encodable(self, points: Sequence[Point]) -> None:
        good = [p for p in points if _encodable(p)]
        try:
            await self._run(self.store.write, good)
        except sqlite3.Error as exc:
            raise SinkUnavailable(explain_sqlite_error(self.path, exc)) from exc
        raise SinkRejected(
            f"{len(points) - len(good)} points hold text that is not valid Unicode (lone surrogates)",
            rejected=len(points) - len(good),
        )

    def _update_detail(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._detail_at < self.DETAIL_INTERVAL:
            return
        self._detail_at = now
        size = 0
        for suffix in ("", "-wal"):
            with contextlib.suppress(OSError):
                size += os.stat(f"{self.path}{suffix}").st_size
        self.status.detail["file_bytes"] = size
        if self._store is not None:
            self.status.detail["series"] = self._store.series_count

    async def apply_retention(self) -> int:
        """Delete what is older than the retention now, one short step at a time; return how many values."""
        store = self.store
        cutoff = store.retention_cutoff()
        if cutoff is None:
            return 0
        deleted = 0
        while step := await self._run(store.retention_step, cutoff):
            deleted += step
        if deleted:
            self.status.count("points_expired", deleted)
            self.log.info("retention: deleted %d values older than %s", deleted, format_duration(store.retention or 0))
        return deleted

    async def _retention_loop(self) -> None:
        while True:
            try:
                await self.apply_retention()
            except sqlite3.Error as exc:
                self.log.warning("retention failed, retrying later: %s", explain_sqlite_error(self.path, exc))
            except Exception:
                self.log.exception("retention failed, retrying later (a bug: please report it)")
            await asyncio.sleep(self.config.retention_check)

    def history(self) -> HistoryReader:
        """A read-only reader of the file, in its own thread (WAL readers never block this writer)."""
        if self._history is None:
            path = self.path

            def opener() -> HistorianStore:
                return HistorianStore(path, readonly=True)

            self._history = ThreadedHistory(opener, name=self.name)
        return self._history

    async def close(self) -> None:
        """Stop the retention schedule, close the file (checkpointing the WAL), stop the thread."""
        if self._history is not None:
            await self._history.aclose()
            self._history = None
        if self._retention_task is not None:
            self._retention_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retention_task
            self._retention_task = None
        if self._compaction is not None:
            await asyncio.gather(self._compaction, return_exceptions=True)
            self._compaction = None
        if self._executor is None:
            return
        try:
            if self._store is not None:
                await self._run(self._store.close)
        finally:
            self._store = None
            self._executor.shutdown(wait=True)
            self._executor = None
