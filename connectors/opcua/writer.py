"""Writes to OPC UA nodes declared writable (``write:`` on a ``node:`` entry).

For each write: the node is resolved on the session in force (``nsu=`` looked up in the
server's namespace table, a browse path translated), its DataType read once per session and
turned into the built-in type the value is sent as (an enumeration is an Int32, a Byte is a
Byte: the server refuses a Variant of another type with BadTypeMismatch), the value converted
back through ``scale`` and ``offset`` (``raw = (value - offset) / scale``, rounded for integer
types), then: read the old value, write, read the value back and compare it with what was sent.

A refusal keeps the server's own status code, with what it means to a plant engineer
(:data:`REFUSALS`): BadUserAccessDenied, BadNotWritable, BadOutOfRange, BadTypeMismatch …
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from connectors.opcua._client import Connection, status_words
from connectors.opcua.config import NodeSpec, OpcUaConfig
from connectors.opcua.nodes import is_node_id, parse_browse_path, parse_node_id
from gateway.errors import SourceError
from gateway.writes import (
    DEFAULT_TIMEOUT,
    Value,
    ValueType,
    WritableField,
    WriteOutcome,
    WriteResult,
    describe,
    infer_type,
)

__all__ = ["REFUSALS", "OpcUaWriter"]

#: Integer built-in types and the range each holds.
INTEGER_RANGES: dict[str, tuple[int, int]] = {
    "SByte": (-(2**7), 2**7 - 1),
    "Byte": (0, 2**8 - 1),
    "Int16": (-(2**15), 2**15 - 1),
    "UInt16": (0, 2**16 - 1),
    "Int32": (-(2**31), 2**31 - 1),
    "UInt32": (0, 2**32 - 1),
    "Int64": (-(2**63), 2**63 - 1),
    "UInt64": (0, 2**64 - 1),
}
_FLOATS = {
    "Float": (-3.4028234663852886e38, 3.4028234663852886e38),
    "Double": (-1.7976931348623157e308, 1.7976931348623157e308),
}
_TEXTS = {"String", "LocalizedText"}

#: What the server's refusals mean, in words (the code's name is always given with it).
REFUSALS: dict[str, str] = {
    "BadUserAccessDenied": "the machine does not let the gateway's user write this node",
    "BadNotWritable": "the node is read-only on the machine",
    "BadOutOfRange": "the machine refused the value as outside its own range",
    "BadTypeMismatch": "the machine expects another data type for this node",
    "BadNodeIdUnknown": "the node does not exist on the machine",
    "BadWriteNotSupported": "the machine does not support this kind of write",
    "BadNotSupported": "the machine does not support writing this node",
    "BadSessionIdInvalid": "the session was lost during the write",
    "BadTooManyOperations": "the machine refused the request as too large",
    "BadLocked": "the node is locked on the machine (another client or the panel holds it)",
    "BadInvalidState": "the machine is in a state that does not allow this write",
}


@dataclass
class _Resolved:
    """A writable node on the session in force."""

    node: Any
    variant: str  # the built-in type it is written as
    array: bool


class OpcUaWriter:
    """The writing ability of one OPC UA connector (:meth:`OpcUaSource.writer`)."""

    def __init__(
        self,
        config: OpcUaConfig,
        connection: Callable[[], Connection | None],
        units: Callable[[str, str], str | None],
    ) -> None:
        self.config = config
        self._connection = connection
        self._units = units
        self._specs: dict[str, NodeSpec] = {
            item.field: item
            for item in config.nodes
            if isinstance(item, NodeSpec) and item.write is not None and item.field is not None
        }
        self._resolved: dict[str, _Resolved] = {}
        self._session: Connection | None = None  # the session the resolved nodes belong to

    @property
    def empty(self) -> bool:
        return not self._specs

    # --- what may be written ---------------------------------------------------------------------

    def _scale(self, spec: NodeSpec) -> tuple[float | None, float | None]:
        scale = spec.scale if spec.scale is not None else self.config.scale
        offset = spec.offset if spec.offset is not None else self.config.offset
        return scale, offset

    def writable_fields(self) -> Sequence[WritableField]:
        fields = []
        for name, spec in self._specs.items():
            assert spec.write is not None
            resolved = self._resolved.get(name) if self._session is self._connection() else None
            scale, offset = self._scale(spec)
            kind: ValueType = infer_type(spec.write)
            value_range: tuple[float, float] | None = None
            machine_type = ""
            if resolved is not None:
                machine_type = resolved.variant
                kind, value_range = _api_type(resolved.variant, scale, offset, kind)
            fields.append(
                WritableField(
                    connector=self.config.name,
                    field=name,
                    measurement=self.config.measurement,
                    tags=dict(self.config.tags),
                    type=kind,
                    limits=spec.write,
                    target=spec.node,
                    unit=self._units(self.config.measurement, name),
                    range=value_range,
                    timeout=spec.write.timeout or self.config.reconnect.request_timeout or DEFAULT_TIMEOUT,
                    machine_type=machine_type,
                )
            )
        return fields

    async def prepare(self, conn: Connection) -> None:
        """Resolve every writable node on a new session (its type for /api/writable); a node that
        cannot be resolved now is resolved again at its first write, which then says why."""
        self._resolved, self._session = {}, conn
        for name in self._specs:
            try:
                await self._resolve(conn, name)
            except SourceError:
                continue

    async def _resolve(self, conn: Connection, name: str) -> _Resolved:
        if self._session is not conn:
            self._resolved, self._session = {}, conn
        found = self._resolved.get(name)
        if found is not None:
            return found
        spec = self._specs[name]
        node = (
            conn.node_id(parse_node_id(spec.node))
            if is_node_id(spec.node)
            else await conn.translate(parse_browse_path(spec.node))
        )
        info = (await conn.variable_info([node]))[0]
        if isinstance(info, str):
            raise SourceError(f"{spec.node}: {info}")
        variant = await conn.variant_type(info.data_type)
        found = self._resolved[name] = _Resolved(node, variant, info.value_rank >= 0)
        return found

    # --- a write ---------------------------------------------------------------------------------

    async def write(self, field: WritableField, value: Value) -> WriteOutcome:
        conn = self._connection()
        endpoint = self.config.endpoint
        if conn is None or not conn.connected:
            return WriteOutcome(
                WriteResult.ERROR,
                f"not connected to {endpoint} now: nothing was written (try again once connected)",
                sent=False,
            )
        spec = self._specs[field.field]
        try:
            resolved = await self._resolve(conn, field.field)
        except SourceError as exc:
            return WriteOutcome(WriteResult.ERROR, f"{exc}: nothing was written", sent=False)
        except TimeoutError:
            return WriteOutcome(WriteResult.TIMEOUT, f"no answer from {endpoint}: nothing was written", sent=False)
        scale, offset = self._scale(spec)
        try:
            raw = _to_raw(resolved.variant, resolved.array, value, scale, offset)
        except _NotWritable as exc:
            return WriteOutcome(WriteResult.REFUSED_TYPE, f"{exc}: nothing was written", sent=False)
        node = resolved.node
        try:
            before = (await conn.read_samples([node], [0]))[0]
        except TimeoutError:
            return WriteOutcome(
                WriteResult.TIMEOUT,
                f"no answer from {endpoint} to reading the old value: nothing was written",
                sent=False,
            )
        old = _user_value(before.value, scale, offset) if before.status == 0 else None
        try:
            code = await conn.write_value(node, resolved.variant, raw)
        except TimeoutError:
            return WriteOutcome(
                WriteResult.TIMEOUT,
                f"no answer from {endpoint} to the write within the request timeout: whether it took the value is "
                "unknown; check the value on the machine",
                old=old,
            )
        if code != 0:
            name, doc = status_words(code)
            meaning = REFUSALS.get(name, doc.rstrip(".").lower() or "the machine refused the write")
            return WriteOutcome(
                WriteResult.REFUSED_BY_MACHINE,
                f"refused by the machine: {meaning} ({name}); nothing was changed",
                old=old,
                code=name,
            )
        try:
            after = (await conn.read_samples([node], [0]))[0]
        except TimeoutError:
            return WriteOutcome(
                WriteResult.TIMEOUT,
                f"the machine took the write, but did not answer the read-back from {endpoint}: check the value",
                old=old,
            )
        if after.status != 0:
            return WriteOutcome(
                WriteResult.REFUSED_BY_MACHINE,
                f"the machine took the write but its value now reads as {after.status_name}: check it on the machine",
                old=old,
                code=after.status_name,
            )
        read_back = _user_value(after.value, scale, offset)
        if not _same_raw(resolved.variant, raw, after.value):
            return WriteOutcome(
                WriteResult.REFUSED_BY_MACHINE,
                f"the machine took the write but holds {describe(read_back)}, not {describe(value)}: its own logic "
                "changed the value (a limit or an interlock on the machine)",
                old=old,
                read_back=read_back,
                code="read-back differs",
            )
        note = ""
        if isinstance(read_back, float) and isinstance(value, int | float) and read_back != value:
            note = f" (stored as {describe(read_back)}: the node's resolution)"
        return WriteOutcome(WriteResult.WRITTEN, f"written and read back{note}", old=old, read_back=read_back)


class _NotWritable(Exception):
    """The node's type cannot carry this value (said in the message)."""


def _api_type(
    variant: str, scale: float | None, offset: float | None, fallback: ValueType
) -> tuple[ValueType, tuple[float, float] | None]:
    """What the API offers for a node of this built-in type, and the range it holds in stored units."""
    if variant == "Boolean":
        return "boolean", None
    if variant in _TEXTS:
        return "string", None
    bounds: tuple[float, float] | None = None
    if variant in INTEGER_RANGES:
        bounds = INTEGER_RANGES[variant]
    elif variant in _FLOATS:
        bounds = _FLOATS[variant]
    else:
        return fallback, None
    low, high = (_user_value(bound, scale, offset) for bound in bounds)
    if not isinstance(low, int | float) or not isinstance(high, int | float):
        return fallback, None
    low, high = min(low, high), max(low, high)
    if variant in INTEGER_RANGES and scale is None and offset is None:
        return "integer", (low, high)
    return "number", (low, high)


def _to_raw(variant: str, array: bool, value: Value, scale: float | None, offset: float | None) -> Any:
    """The value as the node takes it: through scale and offset in reverse, in the node's built-in type."""
    if array:
        raise _NotWritable("the node holds an array: the gateway writes single values only")
    if variant == "Boolean":
        if not isinstance(value, bool):
            raise _NotWritable(f"the node is a Boolean: {describe(value)} is not true or false")
        return value
    if variant in _TEXTS:
        if not isinstance(value, str):
            raise _NotWritable(f"the node holds text ({variant}): {describe(value)} is not text")
        return value
    if variant not in INTEGER_RANGES and variant not in _FLOATS:
        raise _NotWritable(f"the node's data type is {variant}: the gateway writes numbers, true/false and text only")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _NotWritable(f"the node is a {variant}: {describe(value)} is not a number")
    number: float | int = value
    if scale is not None or offset is not None:
        number = (number - (offset or 0.0)) / (scale if scale is not None else 1.0)
    if variant in INTEGER_RANGES:
        if isinstance(number, float):
            if not math.isfinite(number):
                raise _NotWritable(f"{describe(value)} cannot be written to a {variant}")
            number = round(number)
        low, high = INTEGER_RANGES[variant]
        if not low <= number <= high:
            raise _NotWritable(f"{describe(value)} does not fit the node's {variant} ({low} to {high})")
        return int(number)
    return float(number)


def _user_value(raw: Any, scale: float | None, offset: float | None) -> Value | None:
    """A value the node holds, as stored (``raw * scale + offset`` for numbers)."""
    if raw is None:
        return None
    if isinstance(raw, bool | str):
        return raw
    if isinstance(raw, int | float):
        if scale is None and offset is None:
            return raw
        return raw * (scale if scale is not None else 1.0) + (offset or 0.0)
    return describe(raw)


def _same_raw(variant: str, sent: Any, read: Any) -> bool:
    """The value read back is the one sent (a Float compared at its 32-bit precision)."""
    if variant == "Float" and isinstance(read, int | float) and isinstance(sent, int | float):
        as_float32 = struct.unpack(">f", struct.pack(">f", float(sent)))[0]
        return bool(read in (as_float32, sent))
    if isinstance(sent, bool) or isinstance(read, bool):
        return isinstance(sent, bool) and isinstance(read, bool) and sent == read
    return bool(sent == read)
