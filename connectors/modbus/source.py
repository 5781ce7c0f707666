"""The Modbus connector: one connection, its unit ids read on schedules by the polling core.

Each device (unit id) is its own task in :class:`~connectors.polling.Poller`; its fields are
planned once into the fewest reads (:mod:`connectors.modbus.plan`). Modbus answers one request
at a time on a connection, so a unit id that does not answer would hold the shared
connection for a whole timeout at each attempt and delay every other device. The connector
avoids that:

- a device reads through the **shared** connection only once it has answered; a device that
  has not answered yet, or that stops answering (a timeout, or a gateway's exception 10/11),
  is read through a **separate** connection to the same endpoint, with backoff, until it
  answers again. A device that dies costs the others at most one timeout, once; a gateway
  sees at most two connections from the connector. (A serial port has one line: there, a
  silent device costs one timeout per retry, and its retries back off up to
  ``reconnect.max_delay``.)
- a read the device refuses as a whole (exception 1, 2 or 3: e.g. one address in the range
  does not exist) is split into one read per field, from then on, so only the field that is
  really wrong is in error; the others keep being stored.
- a lost connection (server restarted, cable pulled) is reopened with backoff by the core;
  data resumes without restarting the gateway.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from connectors.modbus._client import Connection, ConnectionLost, ConnectionSettings, NoAnswer, Refused
from connectors.modbus.config import ByteOrder, ModbusConfig, ModbusDevice
from connectors.modbus.decode import DecodeProblem, Value, decode
from connectors.modbus.plan import Request, plan, split
from connectors.modbus.writer import ModbusWriter
from connectors.polling import Device, DeviceDown, Link, LinkDown, Poller, Reconnect, ScanResult
from gateway.component import Emit, RuntimeContext, Source
from gateway.errors import PointError, SourceError
from gateway.point import Point
from gateway.writes import FieldWriter

__all__ = ["ModbusLink", "ModbusReader", "ModbusSource"]

#: Exception codes after which a merged read is split into one read per field.
_SPLIT_CODES = frozenset({1, 2, 3})


def connection_settings(config: ModbusConfig) -> ConnectionSettings:
    serial = config.serial
    if serial is not None:
        return ConnectionSettings(
            framing="rtu",
            timeout=config.timeout,
            serial_port=serial.port,
            baudrate=serial.baudrate,
            parity=serial.parity,
            stopbits=serial.stopbits,
            bytesize=serial.bytesize,
        )
    return ConnectionSettings(host=config.host or "", port=config.port, framing=config.framing, timeout=config.timeout)


class ModbusLink(Link):
    """The shared connection, and the separate one for devices that do not answer."""

    def __init__(self, config: ModbusConfig) -> None:
        settings = connection_settings(config)
        self.name = config.endpoint
        self.shared = Connection(settings, name=f"{config.name}")
        # A serial port cannot be opened twice: there the devices share the one line.
        self.separate = self.shared if settings.serial_port else Connection(settings, name=f"{config.name}-separate")
        self._on_separate: set[str] = set()  # devices read through the separate connection now

    def use(self, device: str, shared: bool) -> Connection:
        """The connection ``device`` reads through now; the separate one is closed when nobody uses it,
        so a gateway with few connection slots sees the second connection only while it is needed."""
        if self.separate is self.shared:
            return self.shared
        if shared:
            self._on_separate.discard(device)
            if not self._on_separate and self.separate.connected:
                self.separate.close()
            return self.shared
        self._on_separate.add(device)
        return self.separate

    async def open(self) -> None:
        try:
            await self.shared.open()
        except ConnectionLost as exc:
            raise SourceError(str(exc)) from None

    async def close(self) -> None:
        self.shared.close()
        if self.separate is not self.shared:
            self.separate.close()


class ModbusReader(Device):
    """One unit id: its planned reads, decoded into points."""

    def __init__(self, config: ModbusConfig, device: ModbusDevice, link: ModbusLink, source: Source) -> None:
        self.config = config
        self.device = device
        self.link = link
        self.source = source
        self.name = device.label
        self.interval = device.interval or config.interval
        self.unit = device.unit
        self.order: ByteOrder = device.byte_order or config.byte_order
        self.requests: list[Request] = plan(
            device.fields, max_gap=config.max_gap, max_registers=config.max_registers, max_bits=config.max_bits
        )
        self.on_shared = False  # moved to the shared connection once it answers
        self.tags = dict(device.tags)
        self.status_view: dict[str, Any] = {}

    def attach(self, view: dict[str, Any]) -> None:
        super().attach(view)
        view["connection"] = "separate"  # until it has answered

    def facts(self) -> dict[str, Any]:
        return {
            "unit": self.unit,
            "fields": len(self.device.fields),
            "requests_per_scan": len(self.requests),
            "requests": [r.describe() for r in self.requests],
        }

    async def scan(self) -> ScanResult:
        result = ScanResult()
        connection = self.link.use(self.name, self.on_shared)
        pending = list(self.requests)
        while pending:
            request = pending.pop(0)
            result.requests += 1
            try:
                data = await connection.read(request.area, request.address, request.count, self.unit)
            except ConnectionLost as exc:
                if connection is self.link.shared:
                    raise LinkDown(str(exc)) from None
                raise DeviceDown(f"unit {self.unit}: {exc}", result) from None
            except NoAnswer as exc:
                self._leave_shared()
                raise DeviceDown(f"unit {self.unit} does not answer: {exc}", result) from None
            except Refused as exc:
                if exc.from_gateway:
                    self._leave_shared()
                    raise DeviceDown(str(exc), result) from None
                if exc.code in _SPLIT_CODES and len(request.fields) > 1:
                    parts = self._split(request, exc)
                    pending[0:0] = parts
                    continue
                for item in request.fields:
                    result.field_errors[item.name] = str(exc)
                continue
            if connection is not self.link.shared:
                self.on_shared = True  # it answers: from the next scan on, through the shared connection
                self.status_view["connection"] = "shared"
            self._decode(request, data, time.time_ns(), result)
        return result

    def _leave_shared(self) -> None:
        if self.on_shared and self.link.separate is not self.link.shared:
            self.on_shared = False
            self.status_view["connection"] = "separate"
            self.source.log.info(
                "%s (unit %d) is read through a separate connection until it answers again, so that it cannot "
                "delay the other devices",
                self.name,
                self.unit,
            )

    def _split(self, request: Request, exc: Refused) -> list[Request]:
        parts = split(request)
        index = self.requests.index(request)
        self.requests[index : index + 1] = parts
        self.source.status.detail["requests_per_scan"] += len(parts) - 1
        self.source.log.warning(
            "%s (unit %d) refused the read of %s (%s); reading its %d fields separately from now on, so that only "
            "the wrong one is in error",
            self.name,
            self.unit,
            request.describe(),
            exc,
            len(request.fields),
        )
        return parts

    def _decode(self, request: Request, data: list[int] | list[bool], now: int, result: ScanResult) -> None:
        values: dict[str, Value] = {}
        for item in request.fields:
            start = item.address - request.address
            try:
                values[item.name] = decode(item, data[start : start + item.size], item.byte_order or self.order)
            except DecodeProblem as exc:
                result.field_errors[item.name] = str(exc)
        if not values:
            return
        try:
            result.points.append(Point(self.device.measurement, values, self.tags, now))
        except PointError:
            good: dict[str, Value] = {}
            for key, value in values.items():
                try:
                    Point(self.device.measurement, {key: value}, self.tags, now)
                except PointError as exc:
                    result.field_errors[key] = f"cannot be stored: {exc}"
                else:
                    good[key] = value
            if good:
                result.points.append(Point(self.device.measurement, good, self.tags, now))


class ModbusSource(Source):
    """``type: modbus`` — see connectors/modbus/README.md."""

    def __init__(self, config: ModbusConfig, context: RuntimeContext) -> None:
        super().__init__(config.name, "modbus", context)
        self.config = config
        self.link = ModbusLink(config)
        self.readers = [ModbusReader(config, device, self.link, self) for device in config.devices]
        self._stop = asyncio.Event()
        self.poller = Poller(
            self.status,
            self.log,
            [(self.link, self.readers)],
            reconnect=Reconnect(config.reconnect.initial_delay, config.reconnect.max_delay),
        )
        self.status.detail["endpoint"] = config.endpoint
        self.status.detail["requests_per_scan"] = sum(len(r.requests) for r in self.readers)
        for device in config.devices:
            for item in device.fields:
                if item.unit:
                    context.units[(device.measurement, item.name)] = item.unit
        # Writes go through the shared connection, one request at a time between the scans' reads.
        self._writer = ModbusWriter(config, self.link.shared)

    def writer(self) -> FieldWriter | None:
        """The holding registers and coils declared writable (``write:``)."""
        return None if self._writer.empty else self._writer

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self, emit: Emit) -> None:
        await self.poller.run(emit, self._stop)

    async def aclose(self) -> None:
        await self.link.close()
