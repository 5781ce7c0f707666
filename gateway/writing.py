"""The write desk: every write to a machine passes here — checked, sent, read back, audited.

``POST /api/write`` and ``gateway write`` reach :meth:`WriteDesk.write` (through the web app's
context: the http package never sees the runtime or a connector). For one attempt:

1. the connector is found by name and the field among those it declares writable
   (``not_writable`` otherwise: nothing is writable unless declared);
2. the value is checked against the field's type and limits (:func:`gateway.writes.check_value`:
   ``refused_type``, ``refused_limits``), before anything reaches the machine;
3. a ``pending`` line is written to the audit trail (fsynced), then the connector's
   :class:`~gateway.writes.FieldWriter` reads the old value, writes, reads back and compares,
   within the field's timeout (``timeout`` otherwise, "whether the machine took the value is
   unknown");
4. the outcome is appended to the audit trail (fsynced) *before* the answer goes out, and an
   ``audit`` point is queued for every sink (the runtime's fan-out, as for any connector's
   points: a sink that is down keeps it in its buffer).

Writes to one connector are one at a time (an old value and its read-back belong to one write).
Refusals that come from the caller (a viewer's role: ``forbidden``) are audited through
:meth:`WriteDesk.refuse`. Without an audit trail no write is sent: an attempt whose ``pending``
line cannot be written is refused (``error``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.audit import PENDING, AuditQuery, AuditTrail, audit_point, iso_time, new_id
from gateway.component import OnStored
from gateway.errors import GatewayError, PointError, WriteRefused
from gateway.point import Point
from gateway.writes import MAX_TEXT, FieldWriter, Value, WritableField, WriteOutcome, WriteResult, check_value

__all__ = ["Caller", "WriteDesk"]

#: Longest connector or field name kept from a request (an audit entry must stay readable).
MAX_NAME = 200


@dataclass(frozen=True)
class Caller:
    """Who asks: a user name (never a secret), a role, and the client's address."""

    user: str
    role: str
    client: str


EmitPoints = Callable[[Sequence[Point], OnStored | None], Awaitable[None]]


def _clean(value: Any) -> Any:
    """A requested value as the audit keeps it: JSON scalars as they are, long text cut, anything else as text."""
    if value is None or isinstance(value, bool | int | float):
        return value
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= MAX_TEXT else f"{text[:MAX_TEXT]}… ({len(text)} characters)"


class WriteDesk:
    """Checks, sends, audits. ``find(name)`` gives a connector's writer (None: no such connector or
    nothing writable there), ``writers()`` every connector's, ``connectors()`` every connector's name."""

    def __init__(
        self,
        trail: AuditTrail,
        find: Callable[[str], FieldWriter | None],
        writers: Callable[[], Sequence[tuple[str, FieldWriter]]],
        connectors: Callable[[], Sequence[str]],
        log: logging.LoggerAdapter[logging.Logger],
        gateway_name: str = "gateway",
    ) -> None:
        self.trail = trail
        self._find = find
        self._writers = writers
        self._connectors = connectors
        self.log = log
        self.gateway_name = gateway_name
        self._locks: dict[str, asyncio.Lock] = {}
        self._points: asyncio.Queue[Point | None] = asyncio.Queue()
        self._busy = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._closed = False
        #: attempts by result since the start (for the status)
        self.counts: dict[str, int] = {}

    # --- what may be written -----------------------------------------------------------------------

    def writable(self) -> list[WritableField]:
        """Every declared writable field of every connector, in config order."""
        fields: list[WritableField] = []
        for _, writer in self._writers():
            fields.extend(writer.writable_fields())
        return fields

    # --- writing -----------------------------------------------------------------------------------

    async def write(self, connector: Any, field: Any, value: Any, caller: Caller) -> dict[str, Any]:
        """One write attempt, audited whatever its outcome; → the record (the API's answer)."""
        started = time.monotonic()
        at = time.time_ns()
        record = self._record(at, caller, connector, field, value)
        if self._closed:
            return await self._finish(
                record, WriteResult.ERROR, "the gateway is stopping: nothing was written", started
            )
        writer = self._find(str(connector)) if isinstance(connector, str) else None
        spec = None
        if writer is not None:
            spec = next((f for f in writer.writable_fields() if f.field == field), None)
        if writer is None or spec is None:
            return await self._finish(record, WriteResult.NOT_WRITABLE, self._why_not(connector, field), started)
        record["target"] = spec.target
        if spec.unit:
            record["unit"] = spec.unit
        try:
            checked = check_value(spec, value)
        except WriteRefused as exc:
            return await self._finish(record, WriteResult(exc.result), str(exc), started)
        lock = self._locks.setdefault(spec.connector, asyncio.Lock())
        self._busy += 1
        self._idle.clear()
        try:
            async with lock:
                return await self._send(record, writer, spec, checked, started)
        finally:
            self._busy -= 1
            if not self._busy:
                self._idle.set()

    async def _send(
        self, record: dict[str, Any], writer: FieldWriter, spec: WritableField, value: Value, started: float
    ) -> dict[str, Any]:
        try:
            await asyncio.to_thread(self.trail.append, {**record, "result": PENDING, "message": "sending"})
        except GatewayError as exc:
            self.log.error("write to %s.%s refused: %s", spec.connector, spec.field, exc)
            record.update(result=WriteResult.ERROR.value, message=f"{exc}: no write is sent without its audit entry")
            self._count(WriteResult.ERROR)
            return self._answer(record, started)
        try:
            outcome = await asyncio.wait_for(writer.write(spec, value), spec.timeout)
        except TimeoutError:
            outcome = WriteOutcome(
                WriteResult.TIMEOUT,
                f"no answer from the machine within {spec.timeout:g} s: whether it took the value is unknown; "
                "check the value on the machine before writing again",
            )
        except GatewayError as exc:
            outcome = WriteOutcome(WriteResult.ERROR, str(exc))
        except Exception as exc:  # a bug in a connector's writer: audited as an error, logged with its traceback
            self.log.exception("writing %s.%s failed unexpectedly", spec.connector, spec.field)
            outcome = WriteOutcome(WriteResult.ERROR, f"the write failed unexpectedly ({type(exc).__name__}: {exc})")
        record.update(old=outcome.old, read_back=outcome.read_back)
        if outcome.code is not None:
            record["code"] = outcome.code
        if not outcome.sent:
            record["sent"] = False
        return await self._finish(record, outcome.result, outcome.message, started)

    async def refuse(
        self, connector: Any, field: Any, value: Any, caller: Caller, result: WriteResult, message: str
    ) -> dict[str, Any]:
        """Audit an attempt refused before the desk could look at it (the caller's role)."""
        record = self._record(time.time_ns(), caller, connector, field, value)
        return await self._finish(record, result, message, time.monotonic())

    def _record(self, at: int, caller: Caller, connector: Any, field: Any, value: Any) -> dict[str, Any]:
        return {
            "id": new_id(),
            "at": iso_time(at),
            "at_ms": at // 1_000_000,
            "gateway": self.gateway_name,
            "user": caller.user,
            "role": caller.role,
            "client": caller.client,
            "connector": _clean(connector)[:MAX_NAME] if isinstance(connector, str) else _clean(connector),
            "field": _clean(field)[:MAX_NAME] if isinstance(field, str) else _clean(field),
            "requested": _clean(value),
            "old": None,
            "read_back": None,
        }

    def _why_not(self, connector: Any, field: Any) -> str:
        if not isinstance(connector, str) or not isinstance(field, str):
            return 'give the connector and the field by name: {"connector": …, "field": …, "value": …}'
        names = [name for name, _ in self._writers()]
        if self._find(connector) is None:
            if connector in self._connectors():
                return f"nothing of {connector} is declared writable (write: in its config)"
            hint = f" (connectors with writable fields: {', '.join(names)})" if names else ""
            return f"there is no connector named {connector!r}{hint}"
        declared = [f.field for f in self.writable() if f.connector == connector]
        return (
            f"{field} of {connector} is not declared writable (only fields with write: in the config can be written; "
            f"writable here: {', '.join(declared) or 'none'})"
        )

    async def _finish(
        self, record: dict[str, Any], result: WriteResult, message: str, started: float
    ) -> dict[str, Any]:
        record["result"] = result.value
        record["message"] = message
        record["duration_ms"] = round((time.monotonic() - started) * 1000, 1)
        self._count(result)
        try:
            await asyncio.to_thread(self.trail.append, record)
        except GatewayError as exc:
            # The machine may have been written: say so loudly, the answer says it too.
            self.log.error("the audit entry of a write (%s) could not be written: %s; entry: %s", result, exc, record)
            record["message"] = f"{message} (the audit entry could not be written: {exc})"
        level = logging.INFO if result is WriteResult.WRITTEN else logging.WARNING
        self.log.log(
            level,
            "write %s.%s = %s by %s (%s, %s): %s — %s",
            record.get("connector"),
            record.get("field"),
            record.get("requested"),
            record.get("user"),
            record.get("role"),
            record.get("client"),
            result.value,
            record["message"],
        )
        self._queue_point(record)
        return self._answer(record, started)

    def _answer(self, record: dict[str, Any], started: float) -> dict[str, Any]:
        record.setdefault("duration_ms", round((time.monotonic() - started) * 1000, 1))
        return record

    def _count(self, result: WriteResult) -> None:
        self.counts[result.value] = self.counts.get(result.value, 0) + 1

    def _queue_point(self, record: dict[str, Any]) -> None:
        try:
            point = audit_point(record, int(record["at_ms"]) * 1_000_000 + _sub_ms(str(record["id"])))
        except PointError as exc:
            self.log.warning(
                "the audit entry %s is in the audit file but cannot be sent to the sinks: %s", record["id"], exc
            )
            return
        self._points.put_nowait(point)

    def recovered(self, entries: Sequence[dict[str, Any]]) -> None:
        """Outcomes the trail wrote at start for writes a stop interrupted: logged and sent to the sinks."""
        for entry in entries:
            self.log.warning(
                "write %s.%s = %s by %s at %s was interrupted by a stop of the gateway: whether the machine took "
                "the value is unknown (recorded in the audit trail)",
                entry.get("connector"),
                entry.get("field"),
                entry.get("requested"),
                entry.get("user"),
                entry.get("at"),
            )
            self._queue_point(entry)

    # --- reading -------------------------------------------------------------------------------

    async def audit(self, query: AuditQuery) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.trail.read, query)

    # --- life cycle ----------------------------------------------------------------------------

    async def run(self, emit: EmitPoints) -> None:
        """Hand the queued audit points to every sink until :meth:`close` (then the rest, and return)."""
        while True:
            point = await self._points.get()
            batch = [point] if point is not None else []
            while not self._points.empty():
                more = self._points.get_nowait()
                if more is None:
                    point = None
                else:
                    batch.append(more)
            if batch:
                await emit(batch, None)
            if point is None:
                return

    async def close(self, deadline: float) -> None:
        """Take no more writes, wait (until ``deadline``, monotonic) for those in progress, end :meth:`run`."""
        self._closed = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), max(0.0, deadline - time.monotonic()))
        self._points.put_nowait(None)


def _sub_ms(record_id: str) -> int:
    """Nanoseconds below the millisecond for an audit point, from its id: two attempts in the same
    millisecond are two points (a store keeps one point per series and time)."""
    head = record_id.split("-", 1)[0]
    try:
        return int(head, 16) % 1_000_000
    except ValueError:
        return 0
