"""Writes to Modbus holding registers and coils declared writable (``write:`` on a field).

A value is written as the field is read, in reverse: ``raw = (value - offset) / scale`` (rounded
for integer types), encoded in the field's type and byte order (:func:`connectors.modbus.decode.encode`),
then sent with the field's function — 6 (one register) or 16 (several), 5 (a coil) or 15, 22
(mask write) for one bit of a register, so the other bits are never touched. Each write reads the
registers before (the old value) and after it (the read-back), and compares the registers read
back with those sent: equal registers mean the device holds exactly what was asked (the value
shown is the device's, rounded to the register's resolution).

A Modbus exception is the device's refusal, in words (:data:`~connectors.modbus._client.WRITE_EXCEPTION_NAMES`):
exception 2 at the read of the old value means the address does not exist, and nothing is sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from connectors.modbus._client import Connection, ConnectionLost, NoAnswer, Refused
from connectors.modbus.config import ByteOrder, ModbusConfig, ModbusDevice, ModbusField
from connectors.modbus.decode import DecodeProblem, decode, encode
from gateway.writes import Value, ValueType, WritableField, WriteOutcome, WriteResult, describe

__all__ = ["ModbusWriter"]

#: Range of each numeric register type.
RANGES: dict[str, tuple[float, float]] = {
    "int16": (-(2**15), 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "uint64": (0, 2**64 - 1),
    "float32": (-3.4028234663852886e38, 3.4028234663852886e38),
    "float64": (-1.7976931348623157e308, 1.7976931348623157e308),
}


@dataclass(frozen=True)
class _Target:
    device: ModbusDevice
    field: ModbusField
    order: ByteOrder

    @property
    def where(self) -> str:
        area = "coil" if self.field.area == "coil" else "holding register"
        size = self.field.size
        span = (
            f"{area} {self.field.address}"
            if size == 1
            else f"{area}s {self.field.address}–{self.field.address + size - 1}"
        )
        bit = f" bit {self.field.bit}" if self.field.kind == "bit" else ""
        return f"{span}{bit} of unit {self.device.unit}"


def _api_type(item: ModbusField) -> tuple[ValueType, tuple[float, float] | None]:
    kind = item.kind
    if kind in ("bool", "bit"):
        return "boolean", None
    if kind == "string":
        return "string", None
    low, high = RANGES[kind]
    if item.scale is None and item.offset is None:
        return ("integer" if not kind.startswith("float") else "number"), (low, high)
    scale, offset = item.scale if item.scale is not None else 1.0, item.offset or 0.0
    ends = (low * scale + offset, high * scale + offset)
    return "number", (min(ends), max(ends))


class ModbusWriter:
    """The writing ability of one Modbus connector (:meth:`ModbusSource.writer`)."""

    def __init__(self, config: ModbusConfig, connection: Connection) -> None:
        self.config = config
        self.connection = connection
        self._targets: dict[str, _Target] = {}
        self._fields: list[WritableField] = []
        for device in config.devices:
            order = device.byte_order or config.byte_order
            for item in device.fields:
                if item.write is None:
                    continue
                name = item.name  # unique among the connector's writable fields (the config checks it)
                target = _Target(device, item, item.byte_order or order)
                self._targets[name] = target
                kind, value_range = _api_type(item)
                self._fields.append(
                    WritableField(
                        connector=config.name,
                        field=name,
                        measurement=device.measurement,
                        tags=dict(device.tags),
                        type=kind,
                        limits=item.write,
                        target=target.where,
                        unit=item.unit,
                        range=value_range,
                        max_length=2 * (item.length or 0) if item.kind == "string" else None,
                        timeout=item.write.timeout or 3 * config.timeout + 1.0,
                        machine_type=f"{item.kind} register" if item.area == "holding" else "coil",
                    )
                )

    @property
    def empty(self) -> bool:
        return not self._fields

    def writable_fields(self) -> Sequence[WritableField]:
        return self._fields

    async def write(self, field: WritableField, value: Value) -> WriteOutcome:
        target = self._targets[field.field]
        item, unit = target.field, target.device.unit
        try:
            registers = _encode(item, value, target.order)
        except (ValueError, TypeError, OverflowError) as exc:
            return WriteOutcome(WriteResult.REFUSED_LIMITS, f"{exc}: nothing was written", sent=False)
        connection = self.connection
        try:
            before = await connection.read(item.area, item.address, item.size, unit)
        except Refused as exc:
            if exc.from_gateway:  # the gateway in front says the device behind it is unreachable
                return WriteOutcome(
                    WriteResult.TIMEOUT,
                    f"unit {unit} does not answer behind the Modbus gateway ({exc.meaning}, {target.where}): "
                    "nothing was written",
                    code=f"Modbus exception {exc.code}",
                    sent=False,
                )
            return WriteOutcome(
                WriteResult.REFUSED_BY_MACHINE,
                f"refused by the device at the read of the old value: {exc.meaning} ({target.where}); nothing was "
                "written",
                code=f"Modbus exception {exc.code}",
                sent=False,
            )
        except NoAnswer:
            return WriteOutcome(
                WriteResult.TIMEOUT, f"unit {unit} does not answer ({target.where}): nothing was written", sent=False
            )
        except ConnectionLost as exc:
            return WriteOutcome(WriteResult.ERROR, f"{exc}: nothing was written", sent=False)
        old = _decoded(item, before, target.order)
        try:
            if item.write_code == 22:
                assert item.bit is not None
                bit = item.bit if target.order in ("ABCD", "CDAB") else (item.bit + 8) % 16
                await connection.mask_write(item.address, 0xFFFF & ~(1 << bit), (1 << bit) if value else 0, unit)
            else:
                await connection.write(item.area, item.address, registers, unit, item.write_code)
        except Refused as exc:
            if exc.code == 11:  # the gateway forwarded it and got no answer: the device may have taken it
                return WriteOutcome(
                    WriteResult.TIMEOUT,
                    f"no answer from unit {unit} behind the Modbus gateway to the write ({exc.meaning}, "
                    f"{target.where}): whether it took the value is unknown; check the value on the device",
                    old=old,
                    code=f"Modbus exception {exc.code}",
                )
            if exc.from_gateway:  # 10: the gateway had no path to the device, the request never left it
                return WriteOutcome(
                    WriteResult.TIMEOUT,
                    f"unit {unit} cannot be reached behind the Modbus gateway ({exc.meaning}, {target.where}): "
                    "nothing was changed",
                    old=old,
                    code=f"Modbus exception {exc.code}",
                )
            return WriteOutcome(
                WriteResult.REFUSED_BY_MACHINE,
                f"refused by the device: {exc.meaning} (function {item.write_code}, {target.where}); nothing was "
                "changed",
                old=old,
                code=f"Modbus exception {exc.code}",
            )
        except NoAnswer:
            return WriteOutcome(
                WriteResult.TIMEOUT,
                f"no answer from unit {unit} to the write ({target.where}): whether it took the value is unknown; "
                "check the value on the device",
                old=old,
            )
        except ConnectionLost as exc:
            return WriteOutcome(
                WriteResult.ERROR, f"{exc} during the write: whether the device took the value is unknown", old=old
            )
        try:
            after = await connection.read(item.area, item.address, item.size, unit)
        except (Refused, NoAnswer, ConnectionLost) as exc:
            return WriteOutcome(
                WriteResult.TIMEOUT if isinstance(exc, NoAnswer) else WriteResult.ERROR,
                f"the device took the write but its read-back failed ({exc}): check the value on the device",
                old=old,
            )
        read_back = _decoded(item, after, target.order)
        if not _same(item, value, registers, after, target.order):
            return WriteOutcome(
                WriteResult.REFUSED_BY_MACHINE,
                f"the device took the write but holds {describe(read_back)}, not {describe(value)}: its own logic "
                "changed the value (a limit or an interlock in the device)",
                old=old,
                read_back=read_back,
                code="read-back differs",
            )
        note = ""
        if isinstance(read_back, int | float) and not isinstance(read_back, bool) and read_back != value:
            note = f" (stored as {describe(read_back)}: the register's resolution)"
        return WriteOutcome(WriteResult.WRITTEN, f"written and read back{note}", old=old, read_back=read_back)


def _encode(item: ModbusField, value: Value, order: ByteOrder) -> list[int] | list[bool]:
    """The registers (or coil) holding ``value`` as the field is read; ValueError if it cannot."""
    kind = item.kind
    if kind == "bool":
        return [bool(value)]
    if kind == "bit":
        return [int(bool(value))]
    if kind == "string":
        return encode("string", str(value), order, length=item.length or 0)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{describe(value)} is not a number")
    raw: float | int = value
    if item.scale is not None or item.offset is not None:
        raw = (raw - (item.offset or 0.0)) / (item.scale if item.scale is not None else 1.0)
    if not kind.startswith("float"):
        raw = round(raw)
        low, high = RANGES[kind]
        if not low <= raw <= high:
            raise ValueError(f"{describe(value)} does not fit the {kind} register")
    return encode(kind, raw, order)


def _decoded(item: ModbusField, data: list[int] | list[bool], order: ByteOrder) -> Value | None:
    try:
        return decode(item, data, order)
    except DecodeProblem:
        return None


def _same(
    item: ModbusField, value: Value, sent: list[int] | list[bool], read: list[int] | list[bool], order: ByteOrder
) -> bool:
    """The device holds what was sent: the same registers; for a bit of a register, that bit (the
    others are the device's and may move meanwhile)."""
    if item.kind == "bool":
        return bool(sent[0]) == bool(read[0])
    if item.kind == "bit":
        return _decoded(item, read, order) == bool(value)
    return [int(r) for r in sent] == [int(r) for r in read]
