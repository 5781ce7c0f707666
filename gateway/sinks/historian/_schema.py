"""The historian file's schema, how it is opened, and the SQL shared by writes and retention.

Schema version 1::

    series     (id, measurement, tags, field, family, kind, last_time, last_value, rolled_until)
               tags is canonical JSON (keys sorted); one row per measurement + tags + field +
               family, where family is 'number' (int and float), 'bool' or 'str': a field that
               changes from a number to text gets a second series instead of losing values.
               rolled_until: the per-minute rollups are complete for the minutes before it.
    samples    (series_id, time, value)    WITHOUT ROWID, PRIMARY KEY (series_id, time):
               a re-delivered point overwrites itself, so at-least-once delivery gives
               exactly-once data. ``value`` has no declared type, so SQLite keeps an int an
               INTEGER and a float a REAL; booleans are 0/1, given back as bool by the family.
    recent     (seq, series_id, time, value)   the write path: batches are appended here in
               arrival order (a few dense pages per commit, however many series), and moved
               into samples, sorted by series, every minute or 100,000 values ("compaction").
               Readers merge it over samples; a later row overrides an earlier one.
    rollup_1m  (series_id, minute, vmin, vmax, vsum, n, last_time)   WITHOUT ROWID:
               min, max, sum, count and last time per series and minute (minute = time // 60 s),
               always recomputed from the samples, never incremented, so a re-delivered
               point cannot skew them.
    meta       (key, value)                free-form settings and notes
"""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path
from typing import Final

from gateway.errors import GatewayError

__all__ = [
    "APPLICATION_ID",
    "INT64_MAX",
    "INT64_MIN",
    "MINUTE_NS",
    "MINUTE_OF_TIME",
    "SCHEMA_VERSION",
    "HistorianDamaged",
    "HistorianDiskFull",
    "HistorianError",
    "explain",
    "open_readonly",
    "open_writer",
    "rollup_minutes_sql",
]

MINUTE_NS: Final = 60_000_000_000
INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
SCHEMA_VERSION: Final = 1
#: Marks a file as a historian file (PRAGMA application_id): "GWH1".
APPLICATION_ID: Final = 0x47574831

_TABLES: Final = (
    """CREATE TABLE IF NOT EXISTS series (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        measurement  TEXT NOT NULL,
        tags         TEXT NOT NULL,
        field        TEXT NOT NULL,
        family       TEXT NOT NULL,
        kind         TEXT NOT NULL,
        last_time    INTEGER,
        last_value,
        rolled_until INTEGER,
        UNIQUE (measurement, tags, field, family)
    )""",
    """CREATE TABLE IF NOT EXISTS samples (
        series_id INTEGER NOT NULL,
        time      INTEGER NOT NULL,
        value     NOT NULL,
        PRIMARY KEY (series_id, time)
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS recent (
        seq       INTEGER PRIMARY KEY,
        series_id INTEGER NOT NULL,
        time      INTEGER NOT NULL,
        value     NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS rollup_1m (
        series_id INTEGER NOT NULL,
        minute    INTEGER NOT NULL,
        vmin,
        vmax,
        vsum      REAL NOT NULL,
        n         INTEGER NOT NULL,
        last_time INTEGER NOT NULL,
        PRIMARY KEY (series_id, minute)
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    )""",
)

#: Floor division of a time by a minute, also for times before 1970 (SQLite's / truncates).
MINUTE_OF_TIME: Final = f"(CASE WHEN time >= 0 THEN time / {MINUTE_NS} ELSE -((-(time + 1)) / {MINUTE_NS}) - 1 END)"


def rollup_minutes_sql(text: bool) -> str:
    """SQL that (re)computes the rollup rows of one series between two times (?1 id, ?2 first, ?3 last ns)."""
    minmax = "NULL, NULL" if text else "min(value), max(value)"
    return (
        "INSERT OR REPLACE INTO rollup_1m (series_id, minute, vmin, vmax, vsum, n, last_time) "
        f"SELECT series_id, {MINUTE_OF_TIME} AS m, {minmax}, total(value), count(*), max(time) "
        "FROM samples WHERE series_id = ?1 AND time >= ?2 AND time <= ?3 GROUP BY m"
    )


class HistorianError(GatewayError):
    """The historian file cannot be opened or used (missing, not a historian file, too new…)."""


class HistorianDiskFull(HistorianError):
    """The disk holding the historian file has no room left (SQLITE_FULL, ENOSPC)."""


class HistorianDamaged(HistorianError):
    """The historian file is damaged (truncated, garbled: SQLITE_CORRUPT, SQLITE_NOTADB).

    ``detail`` is SQLite's own words. The gateway moves such a file aside and starts a new one;
    a reader (``gateway query``, the web page) says so in one line.
    """

    def __init__(self, path: Path, detail: str) -> None:
        self.path = path
        self.detail = detail
        super().__init__(
            f"{path} is damaged, or is not a historian file ({detail}): the gateway moves it aside, keeping it, and "
            "starts a new file when it opens it (docs/RELIABILITY.md says how to recover what it holds)"
        )


#: SQLite's own file header (the first 16 bytes of every database file).
_SQLITE_MAGIC: Final = b"SQLite format 3\x00"


def _header_problem(path: Path) -> str | None:
    """What is wrong with the file's header, if anything (a file cut short, garbled bytes)."""
    try:
        with open(path, "rb") as file:
            header = file.read(100)
    except OSError:
        return None
    if not header:
        return None  # an empty file: SQLite makes it a new database
    if len(header) < 100:
        return f"the file is only {len(header)} bytes long: cut short"
    if not header.startswith(_SQLITE_MAGIC):
        return "file is not a database"
    return None


def explain(path: Path, exc: sqlite3.Error | OSError, doing: str = "cannot use the historian file") -> HistorianError:
    """``exc`` as the HistorianError a plant engineer can act on (damaged, full disk, or the rest)."""
    if isinstance(exc, OSError):
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return HistorianDiskFull(f"the disk holding {path} is full ({exc.strerror}): free some space")
        return HistorianError(f"{doing} {path}: {exc.strerror or exc}")
    name = getattr(exc, "sqlite_errorname", "") or ""
    text = str(exc)
    if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")) or "malformed" in text or "not a database" in text:
        return HistorianDamaged(path, text)
    if name.startswith("SQLITE_FULL") or "disk is full" in text:
        return HistorianDiskFull(
            f"the disk holding {path} is full: free some space (points are kept and written when there is room)"
        )
    lowered = text.lower()
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in lowered:
        return HistorianError(f"{path} is locked by another program (is a second gateway writing to the same file?)")
    if name.startswith(("SQLITE_READONLY", "SQLITE_PERM")) or "readonly" in lowered or "read-only" in lowered:
        return HistorianError(f"cannot write {path}: the file or its folder is read-only for the gateway's user")
    if name.startswith("SQLITE_IOERR") or "i/o" in lowered:
        return HistorianError(f"disk error with {path} ({text}): check the disk")
    return HistorianError(f"{doing} {path}: {text}")


def _check_file(con: sqlite3.Connection, path: Path) -> None:
    try:
        app_id = con.execute("PRAGMA application_id").fetchone()[0]
        version = con.execute("PRAGMA user_version").fetchone()[0]
    except sqlite3.Error as exc:
        raise explain(path, exc, "cannot read") from None
    if app_id != APPLICATION_ID:
        problem = _header_problem(path)
        if problem is not None:
            raise HistorianDamaged(path, problem)
        raise HistorianError(f"{path} is not a historian file (it is some other SQLite database)")
    if version > SCHEMA_VERSION:
        raise HistorianError(
            f"{path} was written by a newer gateway (file format {version}; this one reads up to "
            f"{SCHEMA_VERSION}): update the gateway"
        )


def open_readonly(path: Path) -> sqlite3.Connection:
    """Open an existing historian file for reading only (works while another process writes)."""
    if not path.is_file():
        raise HistorianError(f"there is no historian file at {path} (nothing was stored there yet)")
    try:
        con = sqlite3.connect(
            path.absolute().as_uri() + "?mode=ro", uri=True, isolation_level=None, check_same_thread=False
        )
    except sqlite3.Error as exc:
        raise explain(path, exc, "cannot open the historian file") from None
    try:
        con.execute("PRAGMA busy_timeout = 5000")
        con.execute("PRAGMA query_only = 1")
        _check_file(con, path)
    except BaseException:
        con.close()
        raise
    return con


def open_writer(path: Path, *, synchronous: str, cache_mib: int) -> sqlite3.Connection:
    """Open (creating it and its folder if needed) a historian file for writing, in WAL mode."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    except (OSError, sqlite3.Error) as exc:
        raise explain(path, exc, "cannot create the historian file") from None
    try:
        con.execute("PRAGMA busy_timeout = 5000")
        fresh = con.execute("SELECT count(*) FROM sqlite_schema").fetchone()[0] == 0
        if fresh:
            # Before the first table: pages freed by retention go back to the disk.
            con.execute("PRAGMA auto_vacuum = INCREMENTAL")
        else:
            _check_file(con, path)
        if con.execute("PRAGMA journal_mode = WAL").fetchone()[0].lower() != "wal":
            raise HistorianError(f"cannot switch {path} to WAL mode (is it on a network drive?)")
        con.execute(f"PRAGMA synchronous = {'FULL' if synchronous == 'full' else 'NORMAL'}")
        con.execute(f"PRAGMA cache_size = {-1024 * cache_mib}")
        con.execute("PRAGMA temp_store = MEMORY")
        # Checkpoint every ~16 MiB of WAL (not 4 MiB): pages rewritten by consecutive batches
        # reach the main file once; the WAL file is truncated back to 64 MiB at most.
        con.execute("PRAGMA wal_autocheckpoint = 4000")
        con.execute("PRAGMA journal_size_limit = 67108864")
        con.execute("BEGIN IMMEDIATE")
        for statement in _TABLES:
            con.execute(statement)
        if fresh:
            con.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        con.execute("COMMIT")
    except sqlite3.Error as exc:
        con.close()
        raise explain(path, exc, "cannot open the historian file") from None
    except BaseException:
        con.close()
        raise
    return con
