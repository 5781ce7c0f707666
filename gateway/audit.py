"""The audit trail of writes to machines: one JSON line per attempt, on disk before the answer.

``<data_dir>/audit/audit.jsonl`` (or ``gateway.audit.path``) gets one line per write attempt —
accepted, refused by the limits, refused by the machine, timed out — with the time, the user,
the role and the client address, the connector and the field, the old, requested and read-back
values, the result and its reason in words. Every line is flushed and ``fsync``-ed before the
API answers, so a power cut or a SIGKILL right after the answer cannot lose it. Secrets never
enter it: who asked is a user name, a role and an address, never a password or a token.

A write that reaches a machine is written twice: a ``pending`` line before the request leaves
(so a crash in the middle of a write still leaves a trace of it) and the outcome after it, with
the same ``id``. At start, a ``pending`` line without an outcome (the gateway stopped in the
middle of that write) gets one: result ``error``, "whether the machine took the value is
unknown". Refusals before anything is sent (limits, type, role) are one line.

The file is rotated by size: when the next line would take it beyond ``max_size`` it is renamed
``audit-<UTC time>.jsonl`` (a name an archiving job can rely on: it never changes again) and a
new ``audit.jsonl`` is started; beyond ``keep`` rotated files, the oldest is deleted.

Reading (``GET /api/audit``) merges the files newest first: outcomes only, a pending line being
shown once its outcome is there.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from gateway.errors import GatewayError
from gateway.point import Point
from gateway.writes import WriteResult, describe

__all__ = [
    "AUDIT_MEASUREMENT",
    "CURRENT_FILE",
    "PENDING",
    "AuditQuery",
    "AuditTrail",
    "audit_point",
    "iso_time",
    "new_id",
]

#: The measurement the audit entries are written to every sink as.
AUDIT_MEASUREMENT = "audit"
#: The file being written; rotated ones are ``audit-<time>.jsonl``.
CURRENT_FILE = "audit.jsonl"
#: ``result`` of the line written before a write leaves for the machine.
PENDING = "pending"
#: Text fields of the audit point cut to this many characters (a sink's field has limits).
POINT_TEXT = 1000

_INTERRUPTED = (
    "the gateway stopped while this write was in progress: whether the machine took the value is unknown; "
    "check the value on the machine"
)


def iso_time(ns: int) -> str:
    """Unix ns → ISO 8601 in UTC with milliseconds (``2026-03-01T08:00:00.123Z``)."""
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def new_id() -> str:
    """A write attempt's id: unique, and sorting by time of creation."""
    return f"{time.time_ns():x}-{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class AuditQuery:
    """Which entries ``GET /api/audit`` asks for (times in Unix ns, bounds included)."""

    start: int | None = None
    end: int | None = None
    connector: str | None = None
    field: str | None = None
    limit: int = 200

    def matches(self, entry: Mapping[str, Any]) -> bool:
        at = entry.get("at_ms")
        if not isinstance(at, int):
            return False
        if self.start is not None and at * 1_000_000 < self.start - 999_999:
            return False
        if self.end is not None and at * 1_000_000 > self.end:
            return False
        if self.connector is not None and entry.get("connector") != self.connector:
            return False
        return self.field is None or entry.get("field") == self.field


class AuditTrail:
    """The audit files in one folder. Thread-safe; every method does file I/O (call it off the loop)."""

    def __init__(self, folder: Path, *, max_size: int = 10 * 2**20, keep: int = 10) -> None:
        self.folder = folder
        self.max_size = max_size
        self.keep = keep
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._size = 0
        self._last_rotation = ""
        #: the file ends in a line cut short (a full disk, a power cut): the next line starts on a new one
        self._torn = False

    @property
    def path(self) -> Path:
        return self.folder / CURRENT_FILE

    # --- writing -------------------------------------------------------------------------------

    def open(self) -> list[dict[str, Any]]:
        """Open (create) the current file; → the outcomes written for writes a stop interrupted."""
        with self._lock:
            self._open()
            try:
                return self._recover()
            except OSError as exc:
                raise GatewayError(f"the audit trail {self.path} cannot be written: {exc.strerror or exc}") from None

    def _open(self) -> None:
        if self._fd is not None:
            return
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            created = not self.path.exists()
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            self._size = os.fstat(self._fd).st_size
            self._torn = self._size > 0 and _last_byte(self.path) != b"\n"
            if created:
                self._sync_folder()
        except OSError as exc:
            self._fd = None
            raise GatewayError(f"the audit trail {self.path} cannot be written: {exc.strerror or exc}") from None

    def reconfigure(self, folder: Path, max_size: int, keep: int) -> None:
        """New settings (a reload); a new folder is used from the next line on."""
        with self._lock:
            if folder != self.folder:
                self._close()
                self.folder = folder
            self.max_size, self.keep = max_size, keep

    def append(self, entry: Mapping[str, Any]) -> None:
        """Write one entry as one line and fsync it; GatewayError if that is impossible (disk full…)."""
        line = orjson.dumps(entry) + b"\n"
        with self._lock:
            self._open()
            if self._size and self._size + len(line) > self.max_size:
                self._rotate()
                self._open()
            assert self._fd is not None
            if self._torn:
                line = b"\n" + line
            try:
                written = os.write(self._fd, line)
                if written != len(line):  # a full disk: the line is cut; the next one starts on a line of its own
                    self._size += written
                    self._torn = True
                    raise OSError(28, "the line could not be written whole (is the disk full?)")
                os.fsync(self._fd)
            except OSError as exc:
                self._torn = True  # whatever reached the file, the next line starts on a new one
                raise GatewayError(f"the audit trail {self.path} cannot be written: {exc.strerror or exc}") from None
            self._torn = False
            self._size += len(line)

    def _rotate(self) -> None:
        self._close()
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        if stamp <= self._last_rotation:  # two rotations in the same microsecond: keep the names apart
            stamp = self._last_rotation + "1"
        self._last_rotation = stamp
        try:
            os.replace(self.path, self.folder / f"audit-{stamp}.jsonl")
            rotated = self._rotated()
            for old in rotated[: max(0, len(rotated) - self.keep)]:
                old.unlink()
            self._sync_folder()
        except OSError as exc:
            raise GatewayError(f"the audit trail {self.path} cannot be rotated: {exc.strerror or exc}") from None

    def _sync_folder(self) -> None:
        # The new name (created or renamed file) must survive a power cut too.
        fd = os.open(self.folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
            self._size = 0

    def close(self) -> None:
        with self._lock:
            self._close()

    def _recover(self) -> list[dict[str, Any]]:
        """Outcome lines for pending lines without one (the last two files: a write spans at most one rotation)."""
        pending: dict[str, dict[str, Any]] = {}
        for path in [*self._rotated()[-1:], self.path]:
            for entry in _entries(path):
                if entry.get("result") == PENDING:
                    pending[str(entry.get("id"))] = entry
                else:
                    pending.pop(str(entry.get("id")), None)
        recovered = []
        for entry in pending.values():
            outcome = {
                **entry,
                "result": WriteResult.ERROR.value,
                "message": _INTERRUPTED,
                "read_back": None,
                "recorded_at": iso_time(time.time_ns()),
            }
            line = (b"\n" if self._torn else b"") + orjson.dumps(outcome) + b"\n"
            assert self._fd is not None
            os.write(self._fd, line)
            os.fsync(self._fd)
            self._torn = False
            self._size += len(line)
            recovered.append(outcome)
        return recovered

    # --- reading -------------------------------------------------------------------------------

    def _rotated(self) -> list[Path]:
        return sorted(self.folder.glob("audit-*.jsonl"))

    def files(self) -> list[Path]:
        """Every audit file, oldest first."""
        current = [self.path] if self.path.exists() else []
        return [*self._rotated(), *current]

    def read(self, query: AuditQuery) -> list[dict[str, Any]]:
        """The outcomes matching ``query``, newest first, at most ``query.limit``."""
        found: list[dict[str, Any]] = []
        seen: set[str] = set()
        for path in reversed(self.files()):
            for entry in reversed(list(_entries(path))):
                key = str(entry.get("id"))
                if entry.get("result") == PENDING or key in seen:
                    continue  # in progress (its outcome comes), or an older copy
                seen.add(key)
                if query.matches(entry):
                    found.append(entry)
            if len(found) >= query.limit:
                break  # older files hold older entries (a write spans at most one rotation)
        found.sort(key=lambda e: (e.get("at_ms") or 0, str(e.get("id"))), reverse=True)
        return found[: query.limit]


def _last_byte(path: Path) -> bytes:
    with path.open("rb") as file:
        file.seek(-1, os.SEEK_END)
        return file.read(1)


def _entries(path: Path) -> Iterator[dict[str, Any]]:
    """The entries of one file; a line that is not JSON (cut by a full disk) is skipped."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return
    for line in data.splitlines():
        if not line.strip():
            continue
        try:
            entry = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(entry, dict):
            yield entry


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else describe(value)
    return text[:POINT_TEXT]


def audit_point(entry: Mapping[str, Any], at_ns: int) -> Point:
    """An audit entry as a point of the ``audit`` measurement (tags: connector, field, result).

    Values are text fields (``requested``, ``old``, ``read_back``): one field holds numbers for
    one machine and text for another, and a store keeps one type per field.
    """
    fields: dict[str, str] = {}
    for key in ("user", "role", "client", "requested", "old", "read_back", "message", "code", "id", "target"):
        text = _text(entry.get(key))
        if text is not None and text != "":
            fields[key] = text
    tags = {
        "connector": str(entry.get("connector") or "-")[:200],
        "field": str(entry.get("field") or "-")[:200],
        "result": str(entry.get("result") or "-"),
    }
    return Point(AUDIT_MEASUREMENT, fields or {"result": tags["result"]}, tags, at_ns)
