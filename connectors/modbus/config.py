"""Configuration of the Modbus connector (``type: modbus``): the model is the spec.

One connector is one connection (a Modbus TCP endpoint, a TCP-to-serial gateway, or a serial
port); its ``devices`` are the unit ids read through it, each with its own fields, interval,
measurement and tags. Every option is described with ``Field(description=...)``; errors come
out as ``file:line: key.path: message`` and name the exact field that is wrong.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from gateway.settings import ConnectorConfig, DeclaredField, StrictModel
from gateway.units import Duration
from gateway.writes import WriteLimits

__all__ = [
    "AREAS",
    "REGISTER_COUNT",
    "Area",
    "ByteOrder",
    "FieldType",
    "ModbusConfig",
    "ModbusDevice",
    "ModbusField",
    "ReconnectConfig",
    "SerialConfig",
    "register_count",
]

Area = Literal["coil", "discrete", "holding", "input"]
AREAS: tuple[Area, ...] = ("coil", "discrete", "holding", "input")
ByteOrder = Literal["ABCD", "DCBA", "BADC", "CDAB"]
FieldType = Literal[
    "bool", "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64", "bit", "string"
]

#: Registers per numeric type.
REGISTER_COUNT: dict[str, int] = {
    "int16": 1,
    "uint16": 1,
    "int32": 2,
    "uint32": 2,
    "float32": 2,
    "int64": 4,
    "uint64": 4,
    "float64": 4,
    "bit": 1,
}

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_BIT_AREAS = ("coil", "discrete")


def register_count(type_: str, length: int | None) -> int:
    """How many registers (or coils) a field of this type occupies."""
    if type_ == "bool":
        return 1
    if type_ == "string":
        return length or 0
    return REGISTER_COUNT[type_]


class ModbusField(StrictModel):
    """One value: where it is (area, address) and how its registers are decoded."""

    name: str = Field(description="Field name in the store.", examples=["voltage_l1"])
    area: Area = Field(
        description="coil (read/write bits), discrete (discrete inputs: read-only bits), holding (holding "
        "registers), input (input registers)."
    )
    address: int = Field(
        ge=0,
        le=65535,
        description="The 0-based protocol address (the register 40001 of a manual is holding address 0).",
    )
    type: FieldType | None = Field(
        default=None,
        description="How the registers are decoded: int16, uint16 (default for registers), int32, uint32, "
        "int64, uint64, float32, float64, bit (one bit of a register: give 'bit'), string (give 'length'). "
        "Coils and discrete inputs are always bool.",
    )
    bit: int | None = Field(default=None, ge=0, le=15, description="For type bit: which bit, 0 = least significant.")
    length: int | None = Field(
        default=None, ge=1, le=125, description="For type string: how many registers (two characters each)."
    )
    byte_order: ByteOrder | None = Field(
        default=None,
        description="ABCD (big-endian, the Modbus default), DCBA (little-endian), BADC (bytes swapped in each "
        "register), CDAB (registers swapped, the usual 'word swap'). Default: the device's.",
    )
    # allow_inf_nan=False: YAML reads .nan and .inf as floats; as a scale they would only give NaN.
    scale: float | None = Field(
        default=None, allow_inf_nan=False, description="Multiply the value by this (e.g. 0.01); gives a float."
    )
    offset: float | None = Field(default=None, allow_inf_nan=False, description="Add this after scale; gives a float.")
    unit: str | None = Field(default=None, description="Unit shown on the web page (e.g. kWh, °C); not stored.")
    write: WriteLimits | None = Field(
        default=None,
        description="The field may be written (POST /api/write, gateway write), within these limits: "
        "{min: 5, max: 12} (in the stored unit: scale and offset are applied in reverse), {allowed: [...]}. "
        "Holding registers (function 6 for one register, 16 for more; a bit of a register: 22, mask write) "
        "and coils (function 5) only. Absent: read-only.",
    )
    write_function: Literal[5, 6, 15, 16] | None = Field(
        default=None,
        description="The Modbus function a write uses when the device needs another than the default: 16 "
        "(write multiple registers) for a single register, 15 (write multiple coils) for a coil.",
    )

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(f"{value!r} is not a usable field name: use letters, digits, '_', '.' and '-'")
        return value

    @model_validator(mode="after")
    def _writable(self) -> ModbusField:
        if self.write is None:
            if self.write_function is not None:
                raise ValueError("write_function is for a writable field: add write: {...} or leave it out")
            return self
        if self.area not in ("coil", "holding"):
            what = "input registers" if self.area == "input" else "discrete inputs"
            raise ValueError(f"{what} are read-only in Modbus: only holding registers and coils can be written")
        if self.scale == 0:
            raise ValueError("scale 0 makes every value the same: a field with it cannot be written")
        function = self.write_function
        if function is not None:
            allowed = (5, 15) if self.area == "coil" else (6, 16) if self.size == 1 and self.kind != "bit" else (16,)
            if self.kind == "bit":
                raise ValueError(
                    "a bit of a register is written with function 22 (mask write): leave out write_function"
                )
            if function not in allowed:
                raise ValueError(
                    f"function {function} cannot write {self.area} {self.address} ({self.kind}): use "
                    + " or ".join(str(f) for f in allowed)
                )
        return self

    @property
    def write_code(self) -> int:
        """The Modbus function a write of this field uses (5, 6, 15, 16, or 22 for a bit of a register)."""
        if self.write_function is not None:
            return self.write_function
        if self.area == "coil":
            return 5
        if self.kind == "bit":
            return 22
        return 6 if self.size == 1 else 16

    @model_validator(mode="before")
    @classmethod
    def _implied_bit(cls, data: Any) -> Any:
        # ``bit: 3`` alone says what is meant; on a coil it is refused below.
        if (
            isinstance(data, dict)
            and data.get("bit") is not None
            and data.get("type") is None
            and data.get("area") not in _BIT_AREAS
        ):
            return {**data, "type": "bit"}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> ModbusField:
        bits = self.area in _BIT_AREAS
        kind = self.kind
        if bits and self.type not in (None, "bool"):
            what = "a coil" if self.area == "coil" else "a discrete input"
            raise ValueError(
                f"{what} is a single bit already: leave out 'type: {self.type}'"
                + (" and 'bit'" if self.type == "bit" else "")
                + " (or read a holding/input register)"
            )
        if bits and self.bit is not None:
            raise ValueError(f"'bit' is for a bit of a register; {self.area} {self.address} is a single bit already")
        if not bits and self.type == "bool":
            raise ValueError("type bool is for coils and discrete inputs; for one bit of a register write type: bit")
        if kind == "bit" and self.bit is None:
            raise ValueError("type bit needs 'bit: N' (0 = least significant bit of the register)")
        if kind != "bit" and self.bit is not None:
            raise ValueError(f"'bit' is only for type bit (this field is {kind})")
        if kind == "string" and self.length is None:
            raise ValueError("type string needs 'length': how many registers the text takes (two characters each)")
        if kind != "string" and self.length is not None:
            raise ValueError(f"'length' is only for type string (this field is {kind})")
        if kind in ("bool", "bit", "string") and (self.scale is not None or self.offset is not None):
            raise ValueError(f"scale and offset are for numbers; this field is {kind}")
        if bits and self.byte_order is not None:
            raise ValueError("byte_order is for registers; coils and discrete inputs are single bits")
        last = self.address + self.size - 1
        if last > 65535:
            raise ValueError(
                f"{kind} at address {self.address} takes {self.size} registers, up to {last}: beyond the last "
                "Modbus address 65535"
            )
        return self

    @property
    def kind(self) -> str:
        """The effective type: bool for coils and discrete inputs, uint16 when not given."""
        if self.area in _BIT_AREAS:
            return "bool"
        return self.type or "uint16"

    @property
    def size(self) -> int:
        """Registers (or bits) this field occupies."""
        return register_count(self.kind, self.length)


class ModbusDevice(StrictModel):
    """One unit id behind the connection (a meter, a chiller's controller, an I/O module)."""

    unit: int = Field(
        ge=0, le=255, description="Modbus unit id (slave id), 1–247 on a serial line; often 1 or 255 on TCP."
    )
    name: str | None = Field(default=None, description="Name in status, logs and metrics (default: unit-<unit>).")
    measurement: str = Field(default="modbus", description="Measurement of the stored points.")
    tags: dict[str, str] = Field(default_factory=dict, description="Tags added to every point of this device.")
    interval: Duration | None = Field(default=None, gt=0, description="Time between scans (default: the connector's).")
    byte_order: ByteOrder | None = Field(default=None, description="Default byte order of its fields.")
    fields: list[ModbusField] = Field(min_length=1, description="The values to read.")

    @property
    def label(self) -> str:
        return self.name or f"unit-{self.unit}"

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", value):
            raise ValueError(f"{value!r} is not a valid name: use letters, digits, '-', '_' and '.'")
        return value

    @model_validator(mode="wrap")
    @classmethod
    def _no_overlaps(cls, data: Any, handler: Any) -> ModbusDevice:
        device: ModbusDevice = handler(data)
        problems: list[InitErrorDetails] = []
        names: dict[str, int] = {}
        for index, item in enumerate(device.fields):
            if item.name in names:
                problems.append(
                    _problem(
                        ("fields", index, "name"),
                        f"field name {item.name!r} is already used by fields[{names[item.name]}]",
                        item.name,
                    )
                )
            names.setdefault(item.name, index)
        problems += _overlaps(device.fields)
        if problems:
            raise ValidationError.from_exception_data(cls.__name__, problems)
        return device


def _problem(loc: tuple[str | int, ...], message: str, value: Any) -> InitErrorDetails:
    return InitErrorDetails(type=PydanticCustomError("value_error", message), loc=loc, input=value)


def _span(item: ModbusField) -> str:
    unit = "coil" if item.area == "coil" else "discrete input" if item.area == "discrete" else f"{item.area} register"
    if item.size == 1:
        return f"{unit} {item.address}"
    return f"{unit}s {item.address}–{item.address + item.size - 1}"


def _overlaps(fields: list[ModbusField]) -> list[InitErrorDetails]:
    """Two fields on the same registers are a mistake (a wrong address or size), with one
    exception that is deliberate: bits of a register may be read beside the register itself
    (a status word as uint16 and its alarm bits) — but the same bit only once."""
    problems: list[InitErrorDetails] = []
    owner: dict[tuple[str, int], int] = {}
    bits: dict[tuple[str, int, int], int] = {}
    for index, item in enumerate(fields):
        if item.kind == "bit":
            assert item.bit is not None
            key = (item.area, item.address, item.bit)
            if key in bits:
                other = bits[key]
                problems.append(
                    _problem(
                        ("fields", index, "bit"),
                        f"bit {item.bit} of {_span(item)} is already read by fields[{other}] ({fields[other].name!r})",
                        item.bit,
                    )
                )
            bits.setdefault(key, index)
            continue
        clash = next(
            (owner[(item.area, a)] for a in range(item.address, item.address + item.size) if (item.area, a) in owner),
            None,
        )
        if clash is not None:
            other_field = fields[clash]
            problems.append(
                _problem(
                    ("fields", index, "address"),
                    f"{item.name!r} ({item.kind}, {_span(item)}) overlaps fields[{clash}] {other_field.name!r} "
                    f"({other_field.kind}, {_span(other_field)}): check the address and the type",
                    item.address,
                )
            )
            continue
        for address in range(item.address, item.address + item.size):
            owner[(item.area, address)] = index
    return problems


class SerialConfig(StrictModel):
    """A serial line (Modbus RTU over RS-485/RS-232), opened by pyserial."""

    port: str = Field(
        description="The serial device, e.g. /dev/ttyUSB0 or COM3 (or a pyserial URL: rfc2217://host:port).",
        examples=["/dev/ttyUSB0"],
    )
    baudrate: int = Field(default=9600, gt=0, description="Bits per second.")
    parity: Literal["N", "E", "O"] = Field(default="E", description="N (none), E (even, the Modbus default), O (odd).")
    stopbits: Literal[1, 2] = Field(default=1, description="Stop bits (Modbus: 1 with parity, 2 without).")
    bytesize: Literal[7, 8] = Field(default=8, description="Data bits.")


class ReconnectConfig(StrictModel):
    """Backoff for the connection and for devices that do not answer."""

    initial_delay: Duration = Field(default=1.0, gt=0, description="First wait before reconnecting.")
    max_delay: Duration = Field(
        default=30.0, gt=0, description="Longest wait between two attempts (connection or silent device)."
    )


class ModbusConfig(ConnectorConfig):
    """A Modbus connection (TCP, RTU over TCP, or serial RTU) and the devices read through it."""

    type: Literal["modbus"]
    host: str | None = Field(default=None, description="Host name or IP of the device or TCP gateway.")
    port: int = Field(default=502, ge=1, le=65535, description="TCP port (Modbus TCP: 502).")
    framing: Literal["tcp", "rtu"] = Field(
        default="tcp",
        description="tcp: Modbus TCP (MBAP header). rtu: RTU frames over the TCP connection (some serial "
        "gateways in 'transparent' mode), or over the serial port.",
    )
    serial: SerialConfig | None = Field(
        default=None, description="Read a serial port instead of TCP (RTU framing); leave out host."
    )
    interval: Duration = Field(default=1.0, gt=0, description="Time between two scans of each device.")
    timeout: Duration = Field(default=1.0, gt=0, le=60, description="How long one request may take.")
    byte_order: ByteOrder = Field(default="ABCD", description="Default byte order of every field.")
    max_gap: int = Field(
        default=10,
        ge=0,
        le=124,
        description="Registers between two fields that may be read and discarded to save a request (for coils and "
        "discrete inputs 16 times as many: the same bytes).",
    )
    max_registers: int = Field(
        default=125, ge=1, le=125, description="Most registers in one request (the protocol allows 125)."
    )
    max_bits: int = Field(
        default=2000, ge=1, le=2000, description="Most coils or discrete inputs in one request (the protocol: 2000)."
    )
    reconnect: ReconnectConfig = Field(default_factory=ReconnectConfig, description="Reconnect and retry backoff.")
    devices: list[ModbusDevice] = Field(min_length=1, description="The unit ids read through this connection.")

    @model_validator(mode="wrap")
    @classmethod
    def _consistent(cls, data: Any, handler: Any) -> ModbusConfig:
        config: ModbusConfig = handler(data)
        if config.serial is None and not config.host:
            raise ValueError("give 'host' (Modbus TCP) or 'serial: {port: /dev/ttyUSB0}' (Modbus RTU)")
        if config.serial is not None and config.host:
            raise ValueError("give either 'host' (TCP) or 'serial' (a serial port), not both")
        problems: list[InitErrorDetails] = []
        seen: dict[str, int] = {}
        writable: dict[str, str] = {}
        for index, device in enumerate(config.devices):
            for position, item in enumerate(device.fields):
                if item.write is not None:
                    # A write names the connector and the field: the field must say which device it is.
                    if item.name in writable:
                        problems.append(
                            _problem(
                                ("devices", index, "fields", position, "name"),
                                f"{item.name!r} is writable in {writable[item.name]} already: writes name the "
                                "connector and the field, so give writable fields of different devices different "
                                "names",
                                item.name,
                            )
                        )
                    writable.setdefault(item.name, device.label)
                limit = config.max_bits if item.area in _BIT_AREAS else config.max_registers
                if item.size > limit:
                    problems.append(
                        _problem(
                            ("devices", index, "fields", position, "length"),
                            f"{item.name!r} takes {item.size} registers but one request reads at most {limit} "
                            "(max_registers): shorten it or split it into two fields",
                            item.length,
                        )
                    )
            if device.label in seen:
                problems.append(
                    _problem(
                        ("devices", index, "name" if device.name else "unit"),
                        f"device {device.label!r} is already defined by devices[{seen[device.label]}]: give each "
                        "device its own name",
                        device.label,
                    )
                )
            seen.setdefault(device.label, index)
        if problems:
            raise ValidationError.from_exception_data(cls.__name__, problems)
        return config

    @property
    def endpoint(self) -> str:
        if self.serial is not None:
            line = self.serial
            return f"{line.port} ({line.baudrate} {line.bytesize}{line.parity}{line.stopbits})"
        return f"{self.host}:{self.port}"

    def declared_fields(self) -> Iterator[DeclaredField]:
        """Every field's kind (bits are booleans, strings text, the rest numbers), for checks of other sections."""
        for index, device in enumerate(self.devices):
            for position, item in enumerate(device.fields):
                kind = item.kind
                yield DeclaredField(
                    device.measurement,
                    item.name,
                    "bool" if kind in ("bool", "bit") else "text" if kind == "string" else "number",
                    ("devices", index, "fields", position),
                    dict(device.tags),
                )
