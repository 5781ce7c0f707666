"""Sparkplug B payloads ↔ values: datatypes, where each value travels, Quality, templates.

The protobuf classes come from the specification's own ``.proto`` (``sparkplug_b_pb2``,
generated); this module only knows what the specification says about the values inside them:

- **Where a value travels.** Int8, Int16, Int32, UInt8 and UInt16 in ``int_value`` (a uint32);
  Int64, UInt32, UInt64 and DateTime in ``long_value`` (a uint64); Float, Double, Boolean in
  their own fields; String, Text and UUID in ``string_value``. Signed values are two's
  complement in those unsigned fields. Implementations differ on the width of that complement
  for Int8 and Int16 (Tahu's JavaScript writes -1 as 0xFFFFFFFF, others as 0xFF), so both are
  read: an Int8 of 128–255 or at or above 2³¹ can only be a negative number.
- **What is kept.** Every scalar type becomes a number, a boolean or text (DateTime: integer
  milliseconds since the epoch; a UInt64 beyond 2⁶³-1, which no time-series store holds as an
  integer, becomes a float). Templates are flattened into one value per member, named
  ``<metric>/<member>`` (nested templates go deeper); template definitions are not data. DataSets,
  Bytes, Files, arrays and property sets have no place in a time series: :func:`values` skips them
  and says how many it skipped (``Skipped``). A metric marked ``is_null`` has no value and is
  skipped too.
- **Quality.** A ``Quality`` property (Ignition's codes: 192 good, 500 stale, 0 bad; the OPC DA
  ranges elsewhere) that is not good becomes ``uncertain`` or ``bad`` (:func:`quality_of`), which
  the connector stores as the ``quality`` tag, as the OPC UA connector does.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Iterator
from typing import Final

from google.protobuf.message import DecodeError as ProtobufDecodeError

from gateway.errors import DecodeError
from gateway.point import FieldValue
from gateway.sparkplug import sparkplug_b_pb2 as pb

__all__ = [
    "SCALAR_TYPES",
    "DataType",
    "Metric",
    "Payload",
    "Skipped",
    "convert",
    "parse",
    "quality_of",
    "unit_of",
    "values",
]

Payload = pb.Payload
Metric = pb.Payload.Metric


class DataType(enum.IntEnum):
    """The Sparkplug B datatypes (the ``DataType`` enum of the ``.proto``)."""

    Unknown = 0
    Int8 = 1
    Int16 = 2
    Int32 = 3
    Int64 = 4
    UInt8 = 5
    UInt16 = 6
    UInt32 = 7
    UInt64 = 8
    Float = 9
    Double = 10
    Boolean = 11
    String = 12
    DateTime = 13
    Text = 14
    UUID = 15
    DataSet = 16
    Bytes = 17
    File = 18
    Template = 19
    PropertySet = 20
    PropertySetList = 21
    Int8Array = 22
    Int16Array = 23
    Int32Array = 24
    Int64Array = 25
    UInt8Array = 26
    UInt16Array = 27
    UInt32Array = 28
    UInt64Array = 29
    FloatArray = 30
    DoubleArray = 31
    BooleanArray = 32
    StringArray = 33
    DateTimeArray = 34


#: The datatypes a time series stores as they are (numbers, booleans, text).
SCALAR_TYPES: Final = frozenset(range(1, 16))
_INT64_MAX: Final = 2**63 - 1


class Skipped(enum.StrEnum):
    """Why a metric gave no value (the connector counts each reason)."""

    NULL = "null"  # is_null: the edge node has no value for it
    UNSUPPORTED = "unsupported"  # DataSet, Bytes, File, arrays, property sets: no place in a time series
    INVALID = "invalid"  # a value no store can hold (NaN, infinity) or no value where one was due


def parse(data: bytes) -> pb.Payload:
    """A payload from its bytes; :class:`~gateway.errors.DecodeError` if they are not one."""
    try:
        return pb.Payload.FromString(data)
    except ProtobufDecodeError as exc:
        raise DecodeError(f"not a Sparkplug B payload (protobuf: {exc})") from None


# --- scalar values ----------------------------------------------------------------------------------


def _signed8(raw: int) -> int:
    if raw >= 0x80000000:
        return raw - 0x100000000
    return raw - 0x100 if 0x80 <= raw <= 0xFF else raw


def _signed16(raw: int) -> int:
    if raw >= 0x80000000:
        return raw - 0x100000000
    return raw - 0x10000 if 0x8000 <= raw <= 0xFFFF else raw


def _signed32(raw: int) -> int:
    return raw - 0x100000000 if raw >= 0x80000000 else raw


def _signed64(raw: int) -> int:
    return raw - 0x10000000000000000 if raw > _INT64_MAX else raw


def _unsigned64(raw: int) -> int | float:
    return float(raw) if raw > _INT64_MAX else raw


def _finite(raw: float) -> float:
    if not math.isfinite(raw):
        raise ValueError(raw)
    return raw


#: (datatype, oneof field) → how the raw value becomes a stored one; absent: the raw value as it is.
#: The datatype gives the meaning; the oneof field says how it was written (an implementation
#: that writes a UInt32 in int_value, or an Int8 in long_value, is still read right).
_CONVERT: dict[tuple[int, str], Callable[[int], FieldValue]] = {
    (DataType.Int8, "int_value"): _signed8,
    (DataType.Int16, "int_value"): _signed16,
    (DataType.Int32, "int_value"): _signed32,
    (DataType.Int8, "long_value"): _signed64,
    (DataType.Int16, "long_value"): _signed64,
    (DataType.Int32, "long_value"): _signed64,
    (DataType.Int64, "long_value"): _signed64,
    (DataType.Int64, "int_value"): _signed32,
    (DataType.UInt64, "long_value"): _unsigned64,
    (DataType.UInt32, "long_value"): _unsigned64,
    (DataType.DateTime, "long_value"): _unsigned64,
    (DataType.Boolean, "int_value"): bool,
    (DataType.Boolean, "long_value"): bool,
    (DataType.Float, "int_value"): float,
    (DataType.Double, "int_value"): float,
    (DataType.Float, "long_value"): float,
    (DataType.Double, "long_value"): float,
}
_FLOATS: Final = frozenset(("float_value", "double_value"))
_SCALAR_FIELDS: Final = frozenset(
    ("int_value", "long_value", "float_value", "double_value", "boolean_value", "string_value")
)


def convert(datatype: int, kind: str, raw: object) -> FieldValue:
    """The stored value of a scalar written in oneof field ``kind``; ValueError if none can be stored."""
    if kind in _FLOATS:
        value = raw if type(raw) is float else float(raw)  # type: ignore[arg-type]
        if not math.isfinite(value):
            raise ValueError(f"{value} cannot be stored")
        return value
    function = _CONVERT.get((datatype, kind))
    if function is not None:
        return function(raw)  # type: ignore[arg-type]
    if kind in _SCALAR_FIELDS:
        return raw  # type: ignore[return-value]
    raise ValueError(f"a {kind.replace('_', ' ')} is not a scalar value")


# --- metrics → values ---------------------------------------------------------------------------


def values(name: str, datatype: int, metric: pb.Payload.Metric) -> Iterator[tuple[str, FieldValue] | Skipped]:
    """The stored values of one metric whose name and datatype are known: ``(name, value)``
    pairs (one per template member, else one), or a :class:`Skipped` reason.

    Kept out of the connector's hot path, which handles plain scalars inline and calls this
    only for what is not one (templates, nulls, unsupported types).
    """
    if metric.is_null:
        yield Skipped.NULL
        return
    kind = metric.WhichOneof("value")
    if kind is None:
        yield Skipped.INVALID
        return
    if kind == "template_value" or datatype == DataType.Template:
        if kind != "template_value":
            yield Skipped.INVALID
            return
        template = metric.template_value
        if template.is_definition:
            return  # a definition (in NBIRTH) describes a type; its instances carry the data
        yield from _template(name, template)
        return
    if (datatype not in SCALAR_TYPES and datatype != DataType.Unknown) or kind not in _SCALAR_FIELDS:
        yield Skipped.UNSUPPORTED
        return
    try:
        yield name, convert(datatype, kind, getattr(metric, kind))
    except ValueError:
        yield Skipped.INVALID


def _template(prefix: str, template: pb.Payload.Template) -> Iterator[tuple[str, FieldValue] | Skipped]:
    for member in template.metrics:
        if not member.name:
            yield Skipped.INVALID  # a member is known by its name only (no aliases inside templates)
            continue
        yield from values(f"{prefix}/{member.name}", member.datatype, member)


# --- Quality -------------------------------------------------------------------------------------


def quality_of(metric: pb.Payload.Metric) -> str | None:
    """``"uncertain"`` or ``"bad"`` from the metric's ``Quality`` property; None when good or absent.

    Codes as Ignition publishes them: 192 (and the OPC DA good range 192–255) good, 64–191
    uncertain, 500 (stale) and 0–63 bad; any other code is taken as bad (a value of unknown
    quality is not presented as good).
    """
    properties = metric.properties
    keys = properties.keys
    if not keys:
        return None
    for key, value in zip(keys, properties.values, strict=False):
        if key.lower() != "quality":
            continue
        kind = value.WhichOneof("value")
        if kind == "int_value":
            code = _signed32(value.int_value)
        elif kind == "long_value":
            code = _signed64(value.long_value)
        elif kind == "string_value":
            text = value.string_value.lower()
            return None if text.startswith("good") else "uncertain" if text.startswith("uncertain") else "bad"
        else:
            return None
        if 192 <= code <= 255:
            return None
        return "uncertain" if 64 <= code <= 191 else "bad"
    return None


def unit_of(metric: pb.Payload.Metric) -> str:
    """The metric's unit: its ``engUnit`` property (Ignition's name for it), or empty."""
    properties = metric.properties
    for key, value in zip(properties.keys, properties.values, strict=False):
        if key.lower() in ("engunit", "engunits", "unit", "units") and value.WhichOneof("value") == "string_value":
            return value.string_value
    return ""
