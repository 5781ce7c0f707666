"""The KPI engine's compact hours on disk: ``<data_dir>/kpi/rollups.db``, so a restart does not read the history again.

One SQLite file, one row per machine and UTC hour: the hour's state runs and counter increases
(what the engine keeps in memory, :mod:`gateway.kpi.engine`), compressed JSON, under a key made
of what decides them (the machine's tags, state and counter fields, the timeout). A row whose key
differs from the machine's config is ignored; maps, shifts and the ideal cycle time can change
freely, as the rows hold raw state values.

It is a cache: rows are only written for hours that are over, a backlog that reaches an hour
deletes its row, and deleting the file is always safe (the hours are read from the history
again). Rows older than :data:`RETENTION_HOURS` are pruned at start. Every call runs in one worker
thread of its own; a failure (a full disk, a damaged file) is logged once and turns the cache
off, never the KPIs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Final, TypeVar

__all__ = ["RETENTION_HOURS", "RollupStore"]

#: Hours kept on disk (a little more than three months).
RETENTION_HOURS: Final = 100 * 24
T = TypeVar("T")

_SCHEMA: Final = """CREATE TABLE IF NOT EXISTS hours (
    machine TEXT NOT NULL,
    hour    INTEGER NOT NULL,
    key     TEXT NOT NULL,
    data    BLOB NOT NULL,
    PRIMARY KEY (machine, hour)
) WITHOUT ROWID"""


class RollupStore:
    """Compact hours per machine in one SQLite file (see the module docstring)."""

    def __init__(self, path: Path, log: logging.LoggerAdapter[logging.Logger], *, readonly: bool = False) -> None:
        self.path = path
        self.readonly = readonly
        self._log = log
        self._con: sqlite3.Connection | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kpi-rollups")
        self._broken = False
        self._closed = False

    def _open(self) -> sqlite3.Connection:
        if self._con is None:
            if self.readonly:
                self._con = sqlite3.connect(
                    self.path.absolute().as_uri() + "?mode=ro", uri=True, isolation_level=None, check_same_thread=False
                )
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._con = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
                self._con.execute("PRAGMA journal_mode = WAL")
                self._con.execute("PRAGMA synchronous = NORMAL")
                self._con.execute(_SCHEMA)
            self._con.execute("PRAGMA busy_timeout = 5000")
        return self._con

    async def _call(self, work: Callable[[sqlite3.Connection], T], default: T) -> T:
        if self._broken or self._closed or (self.readonly and not self.path.exists()):
            return default

        def run() -> T:
            return work(self._open())

        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, run)
        except (sqlite3.Error, OSError) as exc:
            self._broken = True
            self._log.warning(
                "the KPI cache %s cannot be used (%s): KPIs are computed from the history only until the next "
                "start (deleting the file is safe)",
                self.path,
                exc,
            )
            return default

    async def load(self, machine: str, key: str, first: int, last: int) -> dict[int, bytes]:
        """Rows of hours ``first`` … ``last`` (indexes) under ``key``: hour → data."""

        def work(con: sqlite3.Connection) -> dict[int, bytes]:
            rows = con.execute(
                "SELECT hour, data FROM hours WHERE machine = ? AND key = ? AND hour BETWEEN ? AND ?",
                (machine, key, first, last),
            )
            return {int(hour): bytes(data) for hour, data in rows}

        return await self._call(work, {})

    async def save(self, machine: str, key: str, hours: Sequence[tuple[int, bytes]]) -> None:
        if self.readonly or not hours:
            return

        def work(con: sqlite3.Connection) -> None:
            with con:
                con.execute("BEGIN")
                con.executemany(
                    "INSERT OR REPLACE INTO hours (machine, hour, key, data) VALUES (?, ?, ?, ?)",
                    [(machine, hour, key, data) for hour, data in hours],
                )

        await self._call(work, None)

    async def drop(self, machine: str, hours: Iterable[int]) -> None:
        wanted = [(machine, hour) for hour in hours]
        if self.readonly or not wanted:
            return

        def work(con: sqlite3.Connection) -> None:
            with con:
                con.execute("BEGIN")
                con.executemany("DELETE FROM hours WHERE machine = ? AND hour = ?", wanted)

        await self._call(work, None)

    async def prune(self, before: int) -> None:
        """Delete the rows of hours before ``before`` (an index)."""
        if self.readonly:
            return

        def work(con: sqlite3.Connection) -> None:
            con.execute("DELETE FROM hours WHERE hour < ?", (before,))

        await self._call(work, None)

    async def aclose(self) -> None:
        """Close the file (calls after this do nothing: the engine keeps answering from memory)."""
        if self._closed:
            return
        self._closed = True
        con = self._con

        def close() -> None:
            if con is not None:
                with contextlib.suppress(sqlite3.Error):
                    con.close()

        with contextlib.suppress(RuntimeError):
            await asyncio.get_running_loop().run_in_executor(self._executor, close)
        self._con = None
        await asyncio.to_thread(self._executor.shutdown, wait=True)
