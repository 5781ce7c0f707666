"""The embedded historian sink: batches from the pipeline into the local SQLite file.

Every call to the file runs in one dedicated thread (the store's connection lives there), so
the event loop keeps receiving while a batch is written. Compaction (moving ``recent`` into
``samples``, about once a minute) is queued after the write that made it due, so that
write's batch is acknowledged first. Retention runs every ``retention_check`` in steps of a
few tens of milliseconds, queued between writes.

What goes wrong with the file never stops collection:

- **a full disk** (SQLITE_FULL): the write fails and is retried by the route; the points wait
  in its memory queue, not acknowledged; the sink shows ``disk_full`` (one log line per
  episode) until a write succeeds again. SQLite rolls the failed transaction back, so the
  file stays whole and readable;
- **a damaged file** (truncated, garbled: ``file is not a database``, ``database disk image
  is malformed``), found when the file is opened or by any call while running: the file and
  its ``-wal``/``-shm`` are renamed to ``<name>.damaged-<UTC time>`` (kept for recovery), one
  log line says so and where, a new file is started and the call is made again on it;
- anything else (a read-only folder, a locked file): the route retries with backoff and the
  status says why.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from gateway.component import RuntimeContext, Sink, State
from gateway.errors import SinkRejected, SinkUnavailable
from gateway.history import HistoryReader, ThreadedHistory
from gateway.point import Point
from gateway.sinks.historian._schema import explain
from gateway.sinks.historian.config import HistorianConfig
from gateway.sinks.historian.store import HistorianDamaged, HistorianDiskFull, HistorianError, HistorianStore
from gateway.units import format_duration

__all__ = ["HistorianSink", "set_aside_name"]

T = TypeVar("T")


def set_aside_name(path: Path, at: float | None = None) -> Path:
    """Where a damaged historian file is moved: ``<name>.damaged-<UTC time>`` beside it (a free name)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(at))
    target = path.with_name(f"{path.name}.damaged-{stamp}")
    number = 1
    while any(Path(f"{target}{suffix}").exists() for suffix in ("", "-wal", "-shm")):
        number += 1
        target = path.with_name(f"{path.name}.damaged-{stamp}-{number}")
    return target


def _copy_recent(moved: Path, store: HistorianStore) -> int:
    """Copy the values of ``recent`` (written since the last compaction) from a damaged file set
    aside into ``store``, if that part can still be read; returns how many (0 if it cannot)."""
    try:
        con = sqlite3.connect(moved.absolute().as_uri() + "?mode=ro", uri=True)
        try:
            rows = con.execute(
                "SELECT s.measurement, s.tags, s.field, s.family, r.time, r.value "
                "FROM recent r JOIN series s ON s.id = r.series_id ORDER BY r.seq"
            ).fetchall()
        finally:
            con.close()
    except sqlite3.Error:
        return 0  # that part is damaged too: the moved file keeps it for a manual recovery
    points: list[Point] = []
    for measurement, tags, field, family, time_ns, value in rows:
        with contextlib.suppress(ValueError, TypeError):  # (PointError is a ValueError)
            points.append(
                Point(measurement, {field: bool(value) if family == "bool" else value}, json.loads(tags), time_ns)
            )
    for start in range(0, len(points), 10_000):
        store.write(points[start : start + 10_000])
    return len(points)


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
        #: damaged files set aside so far (the history reader follows to the new file)
        self._set_aside = 0
        self._history_files = 0
        self._full_since: float | None = None  # when the current full-disk episode began
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

    # --- in the store's thread ----------------------------------------------------------------------

    def _new_store(self) -> HistorianStore:
        return HistorianStore(
            self.path, retention=self.config.retention, synchronous=self.config.synchronous, auto_compact=False
        )

    def _open_store(self) -> HistorianStore:
        """Open the file (creating it); a damaged one is set aside and a new one started."""
        try:
            return self._new_store()
        except HistorianDamaged as exc:
            return self._replace_damaged(exc.detail)

    def _call(self, method: str, *args: Any) -> Any:
        """``store.<method>(*args)``; SQLite's errors explained; a file found damaged is set aside
        and the call made again on a new one (the write that found it loses nothing)."""
        store = self._store
        if store is None:  # a damaged file could not be replaced last time: try again
            store = self._store = self._open_store()
        try:
            return getattr(store, method)(*args)
        except sqlite3.Error as exc:
            problem = explain(self.path, exc, "cannot write")
            if not isinstance(problem, HistorianDamaged):
                raise problem from exc
        self._store = None
        with contextlib.suppress(sqlite3.Error):
            store.close(compact=False)
        store = self._store = self._replace_damaged(problem.detail)
        try:
            return getattr(store, method)(*args)
        except sqlite3.Error as exc:
            raise explain(self.path, exc, "cannot write") from exc

    def _replace_damaged(self, detail: str) -> HistorianStore:
        """Set the damaged file aside, start a new one, and copy into it what was written since the
        last compaction (acknowledged values, not yet in the part of the file that is damaged)
        when it can still be read."""
        moved = self._set_damaged_aside(detail)
        store = self._new_store()
        copied = _copy_recent(moved, store)
        if copied:
            self.log.info("copied %d values written since the last compaction from %s into the new file", copied, moved)
        return store

    def _set_damaged_aside(self, detail: str) -> Path:
        """Rename the damaged file with its -wal and -shm (kept for recovery); say so in one line."""
        target = set_aside_name(self.path)
        try:
            # The -wal first: left beside a new file of the same name, SQLite would replay it into that file.
            for suffix in ("-wal", "-shm", ""):
                source = Path(f"{self.path}{suffix}")
                if source.exists():
                    os.replace(source, f"{target}{suffix}")
        except OSError as exc:
            raise HistorianError(
                f"{self.path} is damaged ({detail}) and cannot be moved aside ({exc.strerror or exc}): move it "
                "away by hand; points wait, not acknowledged, until a new file can be started"
            ) from exc
        self._set_aside += 1
        message = (
            f"the historian file {self.path} is damaged ({detail}): moved it to {target} (kept for recovery, see "
            "docs/RELIABILITY.md) and started a new file; collection goes on"
        )
        self.log.error("%s", message)
        self.status.record_error(message)
        self.status.count("files_set_aside")
        return target

    # --- on the event loop ------------------------------------------------------------------------

    async def _store_call(self, method: str, *args: Any) -> Any:
        try:
            return await self._run(self._call, method, *args)
        finally:
            if self._set_aside != self._history_files:
                await self._follow_new_file()

    async def _follow_new_file(self) -> None:
        """After a damaged file was set aside: the history reader reads the new file from now on."""
        self._history_files = self._set_aside
        history, self._history = self._history, None
        if history is not None:
            await history.aclose()

    def _disk_full(self, message: str) -> None:
        self.status.record_error(message)
        self.status.set_condition(State.DISK_FULL)
        if self._full_since is not None:
            return
        self._full_since = time.monotonic()
        pending = self.status.detail.get("pending_points")
        self.log.error(
            "%s; %s points wait in memory, not acknowledged to their sources (MQTT QoS 1/2 messages stay with the "
            "broker), and what comes next waits at the sources; retrying until there is room",
            message,
            pending if isinstance(pending, int) else "the",
        )

    def _disk_ok(self) -> None:
        if self._full_since is None:
            return
        self.log.info(
            "the disk holding %s has room again after %.0fs: writing", self.path, time.monotonic() - self._full_since
        )
        self._full_since = None
        self.status.set_condition(None)

    async def open(self) -> None:
        """Create the folder, the file and its tables if needed; start the retention schedule."""
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"historian-{self.name}")
        try:
            self._store = await self._run(self._open_store)
        except BaseException as exc:
            self._executor.shutdown(wait=True)
            self._executor = None
            if isinstance(exc, HistorianDiskFull):
                self.status.set_condition(State.DISK_FULL)  # (the route logs why it cannot open)
                self._full_since = self._full_since or time.monotonic()
            raise
        await self._follow_new_file()
        self._disk_ok()
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
        try:
            await self._write(points)
        except UnicodeEncodeError:
            await self._write_encodable(points)
        self._schedule_compaction()
        self._update_detail()

    async def _write(self, points: Sequence[Point]) -> None:
        if self._executor is None:
            raise SinkUnavailable(f"the historian sink {self.name!r} is not open")
        try:
            await self._store_call("write", points)
        except HistorianDiskFull as exc:
            self._disk_full(str(exc))
            raise SinkUnavailable(str(exc)) from exc
        except HistorianError as exc:
            raise SinkUnavailable(str(exc)) from exc
        self._disk_ok()

    def _schedule_compaction(self) -> None:
        """Queue a compaction behind this write in the store's thread: this batch is acknowledged first."""
        store = self._store
        if store is not None and store.compaction_due and (self._compaction is None or self._compaction.done()):
            self._compaction = asyncio.create_task(self._compact(), name=f"sink:{self.name}:compact")

    async def _compact(self) -> None:
        try:
            await self._store_call("compact")
        except HistorianError as exc:  # the values stay in `recent` (readable); retried after the next write
            self.log.warning("compaction failed, retrying later: %s", exc)

    async def _write_encodable(self, points: Sequence[Point]) -> None:
        good = [p for p in points if _encodable(p)]
        await self._write(good)
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
        while step := await self._store_call("retention_step", cutoff):
            deleted += step
        if deleted:
            self.status.count("points_expired", deleted)
            self.log.info("retention: deleted %d values older than %s", deleted, format_duration(store.retention or 0))
        return deleted

    async def _retention_loop(self) -> None:
        while True:
            try:
                await self.apply_retention()
            except HistorianError as exc:
                self.log.warning("retention failed, retrying later: %s", exc)
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
        except sqlite3.Error as exc:
            # (on a full disk the last compaction fails: those values stay readable in the file)
            self.log.warning("closing: %s", explain(self.path, exc, "cannot close"))
        finally:
            self._store = None
            self._executor.shutdown(wait=True)
            self._executor = None
