"""Bytes to values and back: S7 types, big-endian, as the PLC keeps them.

Pure functions. S7 stores every number most significant byte first (no word swapping to
guess, unlike Modbus). A ``bool`` is one bit of a byte (bit 0 the least significant, as in
``DBX10.0``). A ``char`` is one byte of text. An S7 ``STRING[n]`` is ``n + 2`` bytes: the
maximum length ``n``, the actual length, then the characters (Latin-1, as STEP 7 stores them);
only the actual length is text, the rest is whatever was there before.
"""

from __future__ import annotations

import math
import struct

from connectors.s7.address import TYPES, Variable, type_size

__all__ = ["NUMERIC_FORMATS", "DecodeProblem", "Value", "decode", "decode_type", "encode", "string_header"]

#: struct formats of the numeric types (big-endian).
NUMERIC_FORMATS: dict[str, str] = {
    "byte": ">B",
    "usint": ">B",
    "sint": ">b",
    "word": ">H",
    "uint": ">H",
    "int": ">h",
    "dword": ">I",
    "udint": ">I",
    "dint": ">i",
    "real": ">f",
    "lword": ">Q",
    "ulint": ">Q",
    "lint": ">q",
    "lreal": ">d",
}
_INT64_MAX = 2**63 - 1

Value = bool | int | float | str


class DecodeProblem(ValueError):
    """The bytes hold no usable value (a NaN real, a string longer than its declaration)."""


def string_header(data: bytes) -> tuple[int, int]:
    """(maximum, actual) length from an S7 STRING's two header bytes."""
    return data[0], data[1]


def _string(data: bytes, length: int) -> str:
    maximum, actual = string_header(data)
    if maximum and actual > maximum:
        raise DecodeProblem(
            f"no S7 STRING here: its header says {actual} characters in a STRING[{maximum}] (check the address)"
        )
    if actual > length:
        raise DecodeProblem(
            f"the PLC's string is {actual} characters long but the field reads {length} (length: {length}); the "
            f"PLC declares it STRING[{maximum}]: set length: {maximum}"
        )
    return data[2 : 2 + actual].decode("latin-1")


def decode_type(type_: str, data: bytes, length: int = 0, bit: int = 0) -> Value:
    """The raw value of ``type_`` in ``data`` (exactly its bytes), without scale or checks for NaN."""
    if type_ == "bool":
        return bool((data[0] >> bit) & 1)
    if type_ == "char":
        return data[:1].decode("latin-1")
    if type_ == "string":
        return _string(data, length)
    value: int | float = struct.unpack(NUMERIC_FORMATS[type_], data)[0]
    return value


def decode(variable: Variable, data: bytes, scale: float | None = None, offset: float | None = None) -> Value:
    """The value of ``variable`` from its own bytes; ``value * scale + offset`` for numbers.

    Raises :class:`DecodeProblem` for a NaN or infinite real (a PLC's "no value") and a
    string that does not fit its declaration.
    """
    value = decode_type(variable.type, data, variable.length or 0, variable.bit or 0)
    if isinstance(value, float) and not math.isfinite(value):
        raise DecodeProblem(f"the PLC holds {value} (no valid value) in this {variable.type}")
    if isinstance(value, bool | str):
        return value
    if scale is not None or offset is not None:
        scaled = value * (scale if scale is not None else 1.0) + (offset or 0.0)
        if not math.isfinite(scaled):
            raise DecodeProblem(f"scale and offset make the PLC's {value} {scaled}, which cannot be stored")
        return scaled
    if isinstance(value, int) and value > _INT64_MAX:
        return float(value)  # an ulint/lword beyond what the stores keep as an integer
    return value


def encode(type_: str, value: Value, length: int = 0, bit: int = 0, current: int = 0) -> bytes:
    """The bytes of ``value`` as ``type_`` (the simulator, the tests, and later writes).

    A ``bool`` is the byte ``current`` with ``bit`` set or cleared; a ``string`` is a
    ``STRING[length]`` with its header, padded with NULs.
    """
    if type_ not in TYPES:
        raise ValueError(f"unknown S7 type {type_!r}")
    if type_ == "bool":
        byte = (current | (1 << bit)) if value else (current & ~(1 << bit))
        return bytes([byte & 0xFF])
    if type_ == "char":
        return str(value).encode("latin-1")[:1].ljust(1, b"\0")
    if type_ == "string":
        text = str(value).encode("latin-1")[:length]
        return bytes([length, len(text)]) + text.ljust(length, b"\0")
    fmt = NUMERIC_FORMATS[type_]
    number: int | float = float(value) if type_ in ("real", "lreal") else int(value)
    data = struct.pack(fmt, number)
    assert len(data) == type_size(type_)
    return data
