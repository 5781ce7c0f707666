"""The adapter to pymodbus: the only module of the connector that imports it.

One :class:`Connection` is one pymodbus async client: one TCP connection (Modbus TCP, or RTU
frames over TCP) or one serial port. pymodbus sends one request at a time per client and
waits for its answer (a lock in its transaction manager): that is how a Modbus line works,
and why the connector keeps devices that stop answering on a connection of their own (see
source.py). Everything pymodbus-specific — the client classes, response objects, exception
responses, its exceptions and log chatter — stays here, behind :meth:`Connection.read`,
which returns plain lists or raises one of three errors:

- :class:`NoAnswer` — the request timed out (the device is silent or absent);
- :class:`Refused` — the device answered with a Modbus exception (code and meaning);
- :class:`ConnectionLost` — the connection could not be made or was lost.

:meth:`Connection.write` (functions 5, 6, 15, 16) and :meth:`Connection.mask_write` (22) raise
the same three errors; a write's :class:`Refused` says what the exception means for a write.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.framer import FramerType

from connectors.modbus.config import Area

__all__ = [
    "EXCEPTION_NAMES",
    "WRITE_EXCEPTION_NAMES",
    "Connection",
    "ConnectionLost",
    "ConnectionSettings",
    "NoAnswer",
    "Refused",
    "quiet_pymodbus",
]

#: Modbus exception codes (Modbus Application Protocol v1.1b3, section 7) and what they mean.
EXCEPTION_NAMES: dict[int, str] = {
    1: "illegal function (the device does not support this read)",
    2: "illegal data address (the device has no such register or coil)",
    3: "illegal data value",
    4: "device failure",
    5: "acknowledge (the device is busy with a long operation)",
    6: "device busy",
    7: "negative acknowledge",
    8: "memory parity error",
    10: "gateway path unavailable (the TCP gateway has no route to this unit id)",
    11: "gateway target device failed to respond (the TCP gateway got no answer from this unit id)",
}
#: What an exception means when it answers a write.
WRITE_EXCEPTION_NAMES: dict[int, str] = {
    1: "illegal function (the device does not support this kind of write)",
    2: "illegal data address (the device has no such register or coil, or it is read-only)",
    3: "illegal data value (the device refuses this value)",
    4: "device failure (the device could not carry out the write)",
}
#: Exceptions that mean the device itself did not answer behind a gateway.
GATEWAY_CODES = frozenset({10, 11})


class ConnectionLost(Exception):
    """The connection could not be made or is gone."""


class NoAnswer(Exception):
    """No answer within the timeout."""


class Refused(Exception):
    """The device answered with a Modbus exception."""

    def __init__(self, code: int, what: str, *, writing: bool = False) -> None:
        meaning = (WRITE_EXCEPTION_NAMES if writing else EXCEPTION_NAMES).get(
            code, EXCEPTION_NAMES.get(code, "unknown exception")
        )
        super().__init__(f"Modbus exception {code}: {meaning} for {what}")
        self.code = code
        self.meaning = meaning

    @property
    def from_gateway(self) -> bool:
        """True for 10/11: a gateway says the device behind it did not answer."""
        return self.code in GATEWAY_CODES


class _QuietPymodbus(logging.Filter):
    """pymodbus logs every timeout and failed connect as an error; the connector reports the
    same once per episode, with what to check. Its lines pass only at debug level."""

    def filter(self, record: logging.LogRecord) -> bool:
        return logging.getLogger().isEnabledFor(logging.DEBUG)


def quiet_pymodbus() -> None:
    """Keep pymodbus's own log lines out unless the gateway logs at debug level."""
    logger = logging.getLogger("pymodbus.logging")
    if not any(isinstance(f, _QuietPymodbus) for f in logger.filters):
        logger.addFilter(_QuietPymodbus())


@dataclass(frozen=True)
class ConnectionSettings:
    """Where to connect and how; ``serial_port`` set means a serial line instead of TCP."""

    host: str = ""
    port: int = 502
    framing: str = "tcp"  # "tcp" (MBAP) or "rtu"
    timeout: float = 1.0
    serial_port: str | None = None
    baudrate: int = 9600
    parity: str = "E"
    stopbits: int = 1
    bytesize: int = 8

    @property
    def where(self) -> str:
        return self.serial_port or f"{self.host}:{self.port}"


class Connection:
    """One connection; one request at a time, each within ``settings.timeout``."""

    def __init__(self, settings: ConnectionSettings, name: str = "modbus") -> None:
        self.settings = settings
        quiet_pymodbus()
        self._unusable: str | None = None  # why this connection can never open (told at open())
        client: Any = None
        if settings.serial_port is not None:
            try:
                client = AsyncModbusSerialClient(
                    settings.serial_port,
                    framer=FramerType.RTU,
                    baudrate=settings.baudrate,
                    parity=settings.parity,
                    stopbits=settings.stopbits,
                    bytesize=settings.bytesize,
                    timeout=settings.timeout,
                    retries=0,
                    reconnect_delay=0,
                    name=name,
                )
            except RuntimeError:  # pymodbus needs pyserial for serial ports
                self._unusable = f"reading the serial port {settings.serial_port} needs pyserial: pip install pyserial"
        else:
            client = AsyncModbusTcpClient(
                settings.host,
                port=settings.port,
                framer=FramerType.RTU if settings.framing == "rtu" else FramerType.SOCKET,
                timeout=settings.timeout,
                # The connector retries and reconnects itself, with backoff and per device:
                # pymodbus's own retries would make one silent device cost 4 timeouts, and its
                # background reconnect would race the connector's.
                retries=0,
                reconnect_delay=0,
                name=name,
            )
        if client is not None:
            # Two requests in a row without an answer (none answered in between) make pymodbus
            # drop the connection: a link that died without a reset is noticed at the second
            # timeout, and the next request connects afresh.
            client.set_max_no_responses(0)
        self._client = client

    @property
    def connected(self) -> bool:
        return self._client is not None and bool(self._client.connected)

    async def open(self) -> None:
        """Connect, or raise ConnectionLost saying what to check."""
        if self._unusable is not None:
            raise ConnectionLost(self._unusable)
        if self.connected:
            return
        try:
            ok = await self._client.connect()
        except (OSError, ModbusException) as exc:
            raise ConnectionLost(self._cannot_connect(str(exc))) from None
        if not ok:
            raise ConnectionLost(self._cannot_connect("refused or no answer"))

    def _cannot_connect(self, why: str) -> str:
        s = self.settings
        if s.serial_port is not None:
            return f"cannot open the serial port {s.serial_port}: {why} (is the device path right, and free?)"
        return (
            f"cannot connect to {s.host}:{s.port} within {s.timeout:g}s: {why} (is the device on, the address "
            "right, and Modbus TCP enabled on that port?)"
        )

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    async def read(self, area: Area, address: int, count: int, unit: int) -> list[int] | list[bool]:
        """Read ``count`` registers or bits of ``area`` from ``address`` of unit id ``unit``."""
        if not self.connected:  # dropped after silent requests, or not opened yet: connect afresh
            await self.open()
        client = self._client
        what = f"{area} {address}" + (f"–{address + count - 1}" if count > 1 else "") + f" of unit {unit}"
        try:
            if area == "holding":
                response = await client.read_holding_registers(address, count=count, device_id=unit)
            elif area == "input":
                response = await client.read_input_registers(address, count=count, device_id=unit)
            elif area == "coil":
                response = await client.read_coils(address, count=count, device_id=unit)
            else:
                response = await client.read_discrete_inputs(address, count=count, device_id=unit)
        except ConnectionException as exc:
            raise ConnectionLost(f"connection to {self.settings.where} lost: {exc}") from None
        except ModbusIOException:
            if not self.connected:
                raise ConnectionLost(f"connection to {self.settings.where} lost (no answer, closed)") from None
            raise NoAnswer(f"no answer within {self.settings.timeout:g}s to a read of {what}") from None
        except (OSError, ModbusException) as exc:
            raise ConnectionLost(f"connection to {self.settings.where} failed: {exc}") from None
        if response.isError():
            raise Refused(int(getattr(response, "exception_code", 0)), what)
        if area in ("coil", "discrete"):
            return [bool(b) for b in response.bits[:count]]
        registers = [int(r) for r in response.registers]
        if len(registers) != count:
            raise Refused(3, f"{what} (answered {len(registers)} registers)")
        return registers

    async def write(self, area: Area, address: int, values: list[int] | list[bool], unit: int, function: int) -> None:
        """Write registers (function 6: one, 16: several) or coils (5: one, 15: several) of unit id ``unit``."""
        if not self.connected:
            await self.open()
        client = self._client
        count = len(values)
        what = f"a write of {area} {address}" + (f"–{address + count - 1}" if count > 1 else "") + f" of unit {unit}"
        if function == 5:
            call = client.write_coil(address, bool(values[0]), device_id=unit)
        elif function == 15:
            call = client.write_coils(address, [bool(v) for v in values], device_id=unit)
        elif function == 6:
            call = client.write_register(address, int(values[0]), device_id=unit)
        else:
            call = client.write_registers(address, [int(v) for v in values], device_id=unit)
        await self._request(call, what)

    async def mask_write(self, address: int, and_mask: int, or_mask: int, unit: int) -> None:
        """Function 22: the register becomes (current AND and_mask) OR (or_mask AND NOT and_mask), in the device."""
        if not self.connected:
            await self.open()
        what = f"a mask write of holding {address} of unit {unit}"
        await self._request(
            self._client.mask_write_register(address=address, and_mask=and_mask, or_mask=or_mask, device_id=unit), what
        )

    async def _request(self, call: Any, what: str) -> None:
        try:
            response = await call
        except ConnectionException as exc:
            raise ConnectionLost(f"connection to {self.settings.where} lost: {exc}") from None
        except ModbusIOException:
            if not self.connected:
                raise ConnectionLost(f"connection to {self.settings.where} lost (no answer, closed)") from None
            raise NoAnswer(f"no answer within {self.settings.timeout:g}s to {what}") from None
        except (OSError, ModbusException) as exc:
            raise ConnectionLost(f"connection to {self.settings.where} failed: {exc}") from None
        if response.isError():
            raise Refused(int(getattr(response, "exception_code", 0)), what, writing=True)
