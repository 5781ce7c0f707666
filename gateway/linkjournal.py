"""The link journal: when each connector was connected, kept as lines of JSON in ``<data_dir>/link/``.

An interconnection report (``gateway report interconnection``) has to say how long a machine
was connected over a quarter and list the outages. The connectors' statuses only say what is
true *now*, so the runtime writes a line here whenever a connector's state changes (connected,
reconnecting, backoff…), when the gateway starts and when it stops::

    {"at": "2026-03-02T07:14:03.120511Z", "at_ns": 1772435643120511000, "event": "state",
     "connector": "cnc-01", "type": "opcua", "state": "reconnecting", "up": false}

Why a file of its own rather than points sent to the sinks: it is evidence about the gateway
itself, so it must not depend on a sink's retention (a historian keeping 30 days cannot back a
quarterly report), nor add a measurement to every store a plant feeds (its InfluxDB, its UNS,
its Sparkplug host) without being asked, nor change the counts of points written.

**Unclean stops.** A gateway killed or losing power writes no ``gateway_stop``. It rewrites the
small file ``alive.json`` every :data:`ALIVE_SECONDS`; at the next start, a journal whose last
line is not a ``gateway_stop`` gets a ``gateway_lost`` line at the last time the gateway was
known alive (``"estimated": true``: it died within :data:`ALIVE_SECONDS` after it), so the time
it was down is never counted as connected.

One file per UTC month (``link-2026-03.jsonl``), appended to and never rewritten; a line is a
few hundred bytes and is written only on a change. Writes go through one worker thread, in
order, so a slow disk never holds up the event loop; a journal that cannot be written is
logged once and the gateway goes on collecting (data matters more than the record of it).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "ALIVE_SECONDS",
    "LINK_FOLDER",
    "LinkEvent",
    "LinkJournal",
    "LinkRecord",
    "read_link_journal",
]

#: The journal's folder under ``gateway.data_dir``.
LINK_FOLDER = "link"
#: How often the gateway notes that it is alive (the uncertainty of an unclean stop's time).
ALIVE_SECONDS = 60.0
#: The state in which a connector is connected and collecting.
UP_STATE = "running"

LinkEvent = Literal["state", "gateway_start", "gateway_stop", "gateway_lost"]
_EVENTS: frozenset[str] = frozenset(("state", "gateway_start", "gateway_stop", "gateway_lost"))
_ALIVE_FILE = "alive.json"

log = logging.getLogger("gateway.linkjournal")


def _iso(at_ns: int) -> str:
    seconds, rest = divmod(at_ns, 1_000_000_000)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{rest // 1000:06d}Z"


@dataclass(frozen=True)
class LinkRecord:
    """One line of the journal."""

    at_ns: int
    event: LinkEvent
    connector: str | None = None
    type: str | None = None
    state: str | None = None
    #: the connector is connected (its state is ``running``); None for the gateway's own events
    up: bool | None = None
    #: the time is the last one the gateway was known alive, not the moment it stopped
    estimated: bool = False

    def as_json(self) -> dict[str, Any]:
        line: dict[str, Any] = {"at": _iso(self.at_ns), "at_ns": self.at_ns, "event": self.event}
        if self.connector is not None:
            line.update(connector=self.connector, type=self.type, state=self.state, up=self.up)
        if self.estimated:
            line["estimated"] = True
        return line

    @classmethod
    def from_json(cls, data: Any) -> LinkRecord | None:
        """A record from a parsed line; None for a line that is not one (a torn last line)."""
        if not isinstance(data, dict) or data.get("event") not in _EVENTS:
            return None
        at = data.get("at_ns")
        if not isinstance(at, int) or isinstance(at, bool):
            return None
        connector = data.get("connector")
        state = data.get("state")
        up = data.get("up")
        return cls(
            at_ns=at,
            event=data["event"],
            connector=connector if isinstance(connector, str) else None,
            type=data.get("type") if isinstance(data.get("type"), str) else None,
            state=state if isinstance(state, str) else None,
            up=up if isinstance(up, bool) else None,
            estimated=data.get("estimated") is True,
        )


def _month_file(folder: Path, at_ns: int) -> Path:
    return folder / f"link-{datetime.fromtimestamp(at_ns // 1_000_000_000, UTC):%Y-%m}.jsonl"


def _files(folder: Path) -> list[Path]:
    return sorted(folder.glob("link-*.jsonl"))


def _records(path: Path) -> Iterator[LinkRecord]:
    with path.open("rb") as file:
        for raw in file:
            try:
                record = LinkRecord.from_json(json.loads(raw))
            except ValueError:
                continue  # a line torn by a crash: the lines after it are whole
            if record is not None:
                yield record


def read_link_journal(
    folder: str | os.PathLike[str], from_ns: int | None = None, to_ns: int | None = None
) -> list[LinkRecord]:
    """The journal's records with ``from_ns`` ≤ time ≤ ``to_ns``, oldest first, read-only.

    The last gateway event and each connector's last state *before* ``from_ns`` come first
    (what was in force when the range starts), so a reader can tell the state at its start.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    start = from_ns if from_ns is not None else -(2**63)
    end = to_ns if to_ns is not None else 2**63 - 1
    before: dict[str | None, LinkRecord] = {}
    inside: list[LinkRecord] = []
    for path in _files(folder):
        for record in _records(path):
            if record.at_ns < start:
                key = record.connector if record.event == "state" else None
                if record.event != "state":
                    before = {}  # a gateway event ends every connector's state before it
                known = before.get(key)
                if known is None or known.at_ns <= record.at_ns:
                    before[key] = record
            elif record.at_ns <= end:
                inside.append(record)
    earlier = sorted(before.values(), key=lambda r: r.at_ns)
    return earlier + sorted(inside, key=lambda r: r.at_ns)


class LinkJournal:
    """Writes the journal of one gateway (its ``data_dir``): ``open``, ``state`` on every change, ``close``."""

    def __init__(self, data_dir: Path, clock: Any = time.time_ns) -> None:
        self.folder = Path(data_dir) / LINK_FOLDER
        self._clock = clock
        self._executor: ThreadPoolExecutor | None = None
        self._failed = False

    # --- what the runtime calls (from the event loop, or any thread: writes are queued) -----------

    def open(self) -> None:
        """Start the journal: a ``gateway_lost`` line if the last run did not stop cleanly, then ``gateway_start``."""
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="link-journal")
        now = self._clock()
        self._submit(self._recover, now)
        self._submit(self._append, LinkRecord(now, "gateway_start"))
        self._submit(self._write_alive, now)

    def state(self, connector: str, type_: str, state: str, at_ns: int | None = None) -> None:
        """A connector is now in ``state`` (``running`` is connected)."""
        at = self._clock() if at_ns is None else at_ns
        self._submit(self._append, LinkRecord(at, "state", connector, type_, state, state == UP_STATE))

    def alive(self) -> None:
        """Note that the gateway is alive now (bounds the time of an unclean stop)."""
        self._submit(self._write_alive, self._clock())

    def close(self) -> None:
        """``gateway_stop``, then wait until every line is written."""
        executor = self._executor
        if executor is None:
            return
        now = self._clock()
        self._submit(self._append, LinkRecord(now, "gateway_stop"))
        self._submit(self._write_alive, now)
        self._executor = None
        executor.shutdown(wait=True)

    # --- the worker thread ---------------------------------------------------------------------------

    def _submit(self, fn: Any, *args: Any) -> None:
        if self._executor is None:
            return
        with contextlib.suppress(RuntimeError):  # shut down meanwhile (a state change while stopping)
            self._executor.submit(self._guarded, fn, *args)

    def _guarded(self, fn: Any, *args: Any) -> None:
        try:
            fn(*args)
        except OSError as exc:
            if not self._failed:
                self._failed = True
                log.warning(
                    "the link journal in %s cannot be written (%s): connection times are not recorded "
                    "for the interconnection report; collection goes on",
                    self.folder,
                    exc,
                )

    def _append(self, record: LinkRecord) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        line = json.dumps(record.as_json(), separators=(",", ":")) + "\n"
        with _month_file(self.folder, record.at_ns).open("a", encoding="utf-8") as file:
            file.write(line)
            file.flush()
            os.fsync(file.fileno())  # a state change is rare: each one survives a power loss
        self._failed = False

    def _write_alive(self, at_ns: int) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / _ALIVE_FILE
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps({"at": _iso(at_ns), "at_ns": at_ns}) + "\n", encoding="utf-8")
        os.replace(temporary, path)

    def _last_alive(self) -> int | None:
        try:
            value = json.loads((self.folder / _ALIVE_FILE).read_text(encoding="utf-8")).get("at_ns")
        except (OSError, ValueError, AttributeError):
            return None
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def _recover(self, now_ns: int) -> None:
        """The last run ended without ``gateway_stop`` (killed, power lost): say when it was last alive."""
        files = _files(self.folder) if self.folder.is_dir() else []
        last: LinkRecord | None = None
        for path in reversed(files):
            for record in _records(path):
                last = record
            if last is not None:
                break
        if last is None or last.event == "gateway_stop":
            return
        alive = self._last_alive()
        at = max(last.at_ns, alive if alive is not None and alive <= now_ns else last.at_ns)
        self._append(LinkRecord(at, "gateway_lost", estimated=True))
