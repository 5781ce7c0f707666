"""The S7 connector: one PLC, its fields read on a schedule by the polling core.

The PLC is one link (one ISO-on-TCP connection, one S7 session) and one device of the
:class:`~connectors.polling.Poller`. When the connection opens, the PDU size the PLC grants
is known and the fields are planned into the fewest multi-variable reads
(:mod:`connectors.s7.plan`); a reconnect to a PLC that grants another size re-plans.

- A read item the PLC refuses fails only its fields: a DB that does not exist, or an address
  beyond its end, is a counted error with the PLC's reason in the status; the other fields go
  on. An item holding several fields that the PLC refuses as "address out of range" is read
  as one item per field from then on (and at once, in the same scan), so that only the field
  that is really wrong stays in error.
- A request the PLC refuses as a whole (PUT/GET not permitted) makes the device ``down``,
  retried with backoff, with what to change in TIA Portal as its last error.
- A lost connection, or a request without an answer in time, closes the connection; the
  polling core reopens it with backoff and the data resumes without restarting the gateway.
- The fields of one request share a time stamp: the moment its answer arrived.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from connectors.polling import Device, DeviceDown, Link, LinkDown, Poller, Reconnect, ScanResult
from connectors.s7._client import (
    Connection,
    ConnectionLost,
    ConnectionSettings,
    ItemError,
    ReadItem,
    Refused,
    item_error_text,
)
from connectors.s7.address import Variable
from connectors.s7.config import CONNECTION_TYPES, S7Config, S7Field
from connectors.s7.decode import DecodeProblem, Value, decode
from connectors.s7.plan import Plan, Span, plan
from connectors.s7.writer import S7Writer
from gateway.component import Emit, RuntimeContext, Source
from gateway.errors import PointError, SourceError
from gateway.point import Point
from gateway.writes import FieldWriter

__all__ = ["S7Link", "S7Reader", "S7Source", "connection_settings"]

#: The item error after which a merged item is read as one item per field.
_OUT_OF_RANGE = 0x05


def connection_settings(config: S7Config) -> ConnectionSettings:
    return ConnectionSettings(
        host=config.host,
        port=config.port,
        rack=config.rack,
        slot=config.slot,
        connection_type=CONNECTION_TYPES[config.connection_type],
        timeout=config.timeout,
        pdu_size=config.pdu_size,
    )


class S7Link(Link):
    """The connection to the PLC."""

    def __init__(self, config: S7Config) -> None:
        self.connection = Connection(connection_settings(config))
        self.name = config.endpoint

    async def open(self) -> None:
        try:
            await self.connection.open()
        except ConnectionLost as exc:
            raise SourceError(str(exc)) from None

    async def close(self) -> None:
        await self.connection.close()


class S7Reader(Device):
    """The PLC's fields: planned reads, decoded into points."""

    def __init__(self, config: S7Config, link: S7Link, source: Source) -> None:
        self.config = config
        self.link = link
        self.source = source
        self.name = config.name
        self.interval = config.interval
        self.fields: list[S7Field] = list(config.fields)
        self.variables: list[Variable] = config.variables
        self.tags = dict(config.tags)
        self.alone: set[int] = set()  # fields read as items of their own after a refused merged item
        # Until the PLC says which PDU size it grants, the plan is for the size asked for.
        self.plan: Plan = plan(self.variables, config.pdu_size, max_gap=config.max_gap)
        self.view: dict[str, Any] | None = None  # the device's entry in the status, once the poller made it

    def facts(self) -> dict[str, Any]:
        return {
            "endpoint": self.config.endpoint,
            "rack": self.config.rack,
            "slot": self.config.slot,
            "fields": len(self.fields),
            "pdu_size": self.link.connection.pdu_size or None,
            "requests_per_scan": len(self.plan.requests),
            "items_per_scan": sum(len(r.items) for r in self.plan.requests),
            "requests": self.plan.describe(),
        }

    def _replan(self, pdu: int) -> None:
        self.plan = plan(self.variables, pdu, max_gap=self.config.max_gap, alone=self.alone)
        self.source.status.detail["requests_per_scan"] = len(self.plan.requests)
        self.source.status.detail["pdu_size"] = pdu
        if self.view is not None:
            self.view.update(self.facts())

    async def scan(self) -> ScanResult:
        pdu = self.link.connection.pdu_size
        if pdu and pdu != self.plan.pdu:
            self._replan(pdu)
            self.source.log.info(
                "%s: PDU size %d; %d fields in %d requests per scan",
                self.name,
                pdu,
                len(self.fields),
                len(self.plan.requests),
            )
        result = ScanResult()
        retry = await self._execute(self.plan, range(len(self.variables)), result)
        if retry:
            self.alone |= retry
            self._replan(self.plan.pdu)
            # The refused fields at once, each its own item, so this scan misses none that can be read.
            indexes = sorted(retry)
            subset = [self.variables[i] for i in indexes]
            await self._execute(plan(subset, self.plan.pdu, alone=range(len(subset))), indexes, result)
        return result

    async def _execute(self, planned: Plan, indexes: Sequence[int], result: ScanResult) -> set[int]:
        """Run ``planned`` (over the variables ``indexes``); → the fields to read alone from now on."""
        connection = self.link.connection
        buffers: dict[int, bytearray] = {}
        missing: dict[int, int] = {}
        failed: set[int] = set()
        retry: set[int] = set()
        for request in planned.requests:
            result.requests += 1
            items = [ReadItem(i.area, i.db, i.start, i.size) for i in request.items]
            try:
                answers = await connection.read(items)
            except ConnectionLost as exc:
                raise LinkDown(str(exc)) from None
            except Refused as exc:
                raise DeviceDown(str(exc), result) from None
            now = time.time_ns()
            values: dict[str, Value] = {}
            for item, answer in zip(request.items, answers, strict=True):
                span = planned.spans[item.span]
                if item.span in failed:
                    continue
                if isinstance(answer, ItemError):
                    failed.add(item.span)
                    members = [indexes[m] for m in span.members]
                    if answer.code == _OUT_OF_RANGE and len(members) > 1:
                        retry.update(members)
                        self._log_split(answer, span, len(members))
                        continue
                    message = item_error_text(answer, span.area, span.db, span.start, span.size)
                    for member in members:
                        result.field_errors[self.fields[member].name] = message
                    continue
                buffer = buffers.setdefault(item.span, bytearray(span.size))
                buffer[item.offset : item.offset + item.size] = answer
                missing[item.span] = missing.get(item.span, span.size) - item.size
                if missing[item.span] == 0:
                    self._decode(span.start, bytes(buffer), [indexes[m] for m in span.members], values, result)
            if values:
                self._point(values, now, result)
        return retry

    def _log_split(self, error: ItemError, span: Span, count: int) -> None:
        self.source.log.warning(
            "%s: the PLC refused %s as one item (%s); reading its %d fields one item each from now on, so that "
            "only the wrong one is in error",
            self.name,
            span.describe(),
            item_error_text(error, span.area, span.db, span.start, span.size),
            count,
        )

    def _decode(
        self, start: int, data: bytes, members: Sequence[int], values: dict[str, Value], result: ScanResult
    ) -> None:
        for member in members:
            variable = self.variables[member]
            item = self.fields[member]
            begin = variable.start - start
            try:
                values[item.name] = decode(variable, data[begin : begin + variable.size], item.scale, item.offset)
            except DecodeProblem as exc:
                result.field_errors[item.name] = str(exc)

    def _point(self, values: dict[str, Value], now: int, result: ScanResult) -> None:
        measurement = self.config.measurement
        try:
            result.points.append(Point(measurement, values, self.tags, now))
        except PointError:
            good: dict[str, Value] = {}
            for key, value in values.items():
                try:
                    Point(measurement, {key: value}, self.tags, now)
                except PointError as exc:
                    result.field_errors[key] = f"cannot be stored: {exc}"
                else:
                    good[key] = value
            if good:
                result.points.append(Point(measurement, good, self.tags, now))


class S7Source(Source):
    """``type: s7`` — see connectors/s7/README.md."""

    def __init__(self, config: S7Config, context: RuntimeContext) -> None:
        super().__init__(config.name, "s7", context)
        self.config = config
        self.link = S7Link(config)
        self.reader = S7Reader(config, self.link, self)
        self._stop = asyncio.Event()
        self.poller = Poller(
            self.status,
            self.log,
            [(self.link, [self.reader])],
            reconnect=Reconnect(config.reconnect.initial_delay, config.reconnect.max_delay),
        )
        self.reader.view = self.poller.health[self.reader.name].view
        self.status.detail["endpoint"] = config.endpoint
        self.status.detail["requests_per_scan"] = len(self.reader.plan.requests)
        for item in config.fields:
            if item.unit:
                context.units[(config.measurement, item.name)] = item.unit
        # Writes go through the PLC's one connection, one request at a time between the scans' reads.
        self._writer = S7Writer(config, self.link.connection)

    def writer(self) -> FieldWriter | None:
        """The addresses declared writable (``write:``)."""
        return None if self._writer.empty else self._writer

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self, emit: Emit) -> None:
        await self.poller.run(emit, self._stop)

    async def aclose(self) -> None:
        await self.link.close()
