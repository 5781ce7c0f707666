"""Registers to values: every numeric type in every byte order, bits of registers, strings.

Pure functions. Registers arrive as 16-bit integers, each sent high byte first. Writing the
bytes of a 32-bit value A B C D (A the most significant), the four orders are:

========  ===========================  =======================================
ABCD      register 0 = AB, 1 = CD      big-endian: the Modbus default
CDAB      register 0 = CD, 1 = AB      registers swapped ("word swap"), common on meters
BADC      register 0 = BA, 1 = DC      bytes swapped within each register
DCBA      register 0 = DC, 1 = BA      little-endian
========  ===========================  =======================================

For 64-bit values the same rule extends over four registers (CDAB reverses the register
order: GH EF CD AB). For 16-bit values and bits only the byte swap matters (BADC and DCBA
swap the two bytes). Strings are two characters per register, high byte first (low byte
first with BADC or DCBA), ending at the first NUL; trailing spaces are removed.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence

from connectors.modbus.config import ByteOrder, ModbusField

__all__ = ["ORDERS", "DecodeProblem", "Value", "decode", "decode_type", "encode", "ordered_bytes"]

ORDERS: tuple[ByteOrder, ...] = ("ABCD", "DCBA", "BADC", "CDAB")

_FORMATS = {
    "int16": ">h",
    "uint16": ">H",
    "int32": ">i",
    "uint32": ">I",
    "float32": ">f",
    "int64": ">q",
    "uint64": ">Q",
    "float64": ">d",
}
_INT64_MAX = 2**63 - 1

Value = bool | int | float | str


class DecodeProblem(ValueError):
    """The registers hold no usable value (e.g. a meter's NaN for "not available")."""


def ordered_bytes(registers: Sequence[int], order: ByteOrder) -> bytes:
    """The registers' bytes rearranged into big-endian (most significant first)."""
    if order in ("CDAB", "DCBA"):
        registers = registers[::-1]
    raw = b"".join(r.to_bytes(2, "big") for r in registers)
    if order in ("BADC", "DCBA"):
        raw = b"".join(raw[i + 1 : i + 2] + raw[i : i + 1] for i in range(0, len(raw), 2))
    return raw


def decode_type(kind: str, registers: Sequence[int], order: ByteOrder) -> int | float:
    """A numeric type from its registers (exactly as many as the type takes)."""
    raw = ordered_bytes(registers, order)
    value: int | float = struct.unpack(_FORMATS[kind], raw)[0]
    return value


def _string(registers: Sequence[int], order: ByteOrder) -> str:
    swap = order in ("BADC", "DCBA")
    raw = b"".join((r.to_bytes(2, "little") if swap else r.to_bytes(2, "big")) for r in registers)
    return raw.split(b"\0", 1)[0].decode("latin-1").rstrip(" ")


def _scaled(value: int | float, scale: float | None) -> float:
    """``value * scale``; for a scale of 0.1, 0.01 … as a division by 10, 100 …, which gives the
    float nearest to the decimal the device means (1234572 * 0.01 is 12345.720000000001,
    1234572 / 100 is 12345.72)."""
    if scale is None:
        return float(value)
    if scale != 0 and math.isfinite(1 / scale):  # (1 / 5e-324 is infinite: no divisor to round)
        divisor = round(1 / scale)
        if divisor > 1 and math.isclose(1 / divisor, scale, rel_tol=1e-12, abs_tol=0.0):
            return value / divisor
    return value * scale


def decode(field: ModbusField, data: Sequence[int] | Sequence[bool], order: ByteOrder) -> Value:
    """The field's value from its own registers (or bit); raises DecodeProblem for NaN/∞."""
    kind = field.kind
    if kind == "bool":
        return bool(data[0])
    registers = [int(r) for r in data]
    if kind == "bit":
        assert field.bit is not None
        word = registers[0]
        if order in ("BADC", "DCBA"):
            word = ((word & 0xFF) << 8) | (word >> 8)
        return bool((word >> field.bit) & 1)
    if kind == "string":
        return _string(registers, order)
    value = decode_type(kind, registers, order)
    if isinstance(value, float) and not math.isfinite(value):
        raise DecodeProblem(f"the device reports {value} (no valid value) in {kind} registers")
    if field.scale is not None or field.offset is not None:
        scaled = _scaled(value, field.scale) + (field.offset or 0.0)
        if not math.isfinite(scaled):
            raise DecodeProblem(f"scale and offset make the device's {value} {scaled}, which cannot be stored")
        return scaled
    if isinstance(value, int) and value > _INT64_MAX:
        return float(value)  # a uint64 beyond what the stores keep as an integer
    return value


def _from_big_endian(raw: bytes, order: ByteOrder) -> list[int]:
    """The inverse of :func:`ordered_bytes`: big-endian bytes to registers in ``order``."""
    if order in ("BADC", "DCBA"):
        raw = b"".join(raw[i + 1 : i + 2] + raw[i : i + 1] for i in range(0, len(raw), 2))
    registers = [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]
    return registers[::-1] if order in ("CDAB", "DCBA") else registers


def encode(kind: str, value: Value, order: ByteOrder = "ABCD", length: int = 0, bit: int = 0) -> list[int]:
    """Registers holding ``value`` as ``kind`` in ``order`` (simulators, tests, and later writes).

    For ``bit`` it is the register with only that bit set (or 0); for ``string``, ``length``
    registers padded with NULs.
    """
    if kind == "string":
        raw = str(value).encode("latin-1")[: 2 * length].ljust(2 * length, b"\0")
        swap = order in ("BADC", "DCBA")
        return [int.from_bytes(raw[i : i + 2], "little" if swap else "big") for i in range(0, len(raw), 2)]
    if kind == "bit":
        word = (1 << bit) if value else 0
        return _from_big_endian(word.to_bytes(2, "big"), order)
    if kind == "bool":
        return [1 if value else 0]
    fmt = _FORMATS[kind]
    number: int | float = float(value) if kind.startswith("float") else int(value)
    return _from_big_endian(struct.pack(fmt, number), order)
