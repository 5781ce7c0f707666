"""Writes to S7 addresses declared writable (``write:`` on a field): data blocks, merkers, outputs.

A value is written as the field is read, in reverse: ``raw = (value - offset) / scale`` (rounded
for integer types), encoded big-endian in the field's type (:func:`connectors.s7.decode.encode`;
a STRING[n] with its two header bytes), and sent in one write request. A ``bool`` is written
with the S7 bit transport: the PLC sets that one bit, the others of its byte (which the PLC's
program may be changing meanwhile) are never read and written back.

Each write reads the bytes before (the old value) and after it (the read-back) and compares the
bytes read back with those sent. The PLC's refusals keep their S7 code, in words: an item error
(0x0a: the data block does not exist, 0x05: beyond its end, 0x03: access not allowed) or an
error of the whole request (PUT/GET not permitted).
"""

from __future__ import annotations

from collections.abc import Sequence

from connectors.s7._client import Connection, ConnectionLost, ItemError, ItemRefused, ReadItem, Refused, item_error_text
from connectors.s7.address import Variable
from connectors.s7.config import S7Config, S7Field
from connectors.s7.decode import NUMERIC_FORMATS, DecodeProblem, decode, encode
from gateway.writes import Value, ValueType, WritableField, WriteOutcome, WriteResult, describe

__all__ = ["S7Writer"]

#: Bytes of a one-item write request besides the data (header 10, parameters 14, data header 4).
WRITE_OVERHEAD = 28

#: Range of each integer type.
INTEGER_RANGES: dict[str, tuple[int, int]] = {
    "byte": (0, 2**8 - 1),
    "usint": (0, 2**8 - 1),
    "sint": (-(2**7), 2**7 - 1),
    "word": (0, 2**16 - 1),
    "uint": (0, 2**16 - 1),
    "int": (-(2**15), 2**15 - 1),
    "dword": (0, 2**32 - 1),
    "udint": (0, 2**32 - 1),
    "dint": (-(2**31), 2**31 - 1),
    "lword": (0, 2**64 - 1),
    "ulint": (0, 2**64 - 1),
    "lint": (-(2**63), 2**63 - 1),
}
FLOAT_RANGES: dict[str, tuple[float, float]] = {
    "real": (-3.4028234663852886e38, 3.4028234663852886e38),
    "lreal": (-1.7976931348623157e308, 1.7976931348623157e308),
}


def _api_type(item: S7Field, variable: Variable) -> tuple[ValueType, tuple[float, float] | None]:
    kind = variable.type
    if kind == "bool":
        return "boolean", None
    if kind in ("char", "string"):
        return "string", None
    low, high = INTEGER_RANGES.get(kind) or FLOAT_RANGES[kind]
    if item.scale is None and item.offset is None:
        return ("integer" if kind in INTEGER_RANGES else "number"), (low, high)
    scale, offset = item.scale if item.scale is not None else 1.0, item.offset or 0.0
    ends = (low * scale + offset, high * scale + offset)
    return "number", (min(ends), max(ends))


class S7Writer:
    """The writing ability of one S7 connector (:meth:`S7Source.writer`)."""

    def __init__(self, config: S7Config, connection: Connection) -> None:
        self.config = config
        self.connection = connection
        self._targets: dict[str, tuple[S7Field, Variable]] = {}
        self._fields: list[WritableField] = []
        for item in config.fields:
            if item.write is None:
                continue
            variable = item.variable
            self._targets[item.name] = (item, variable)
            kind, value_range = _api_type(item, variable)
            self._fields.append(
                WritableField(
                    connector=config.name,
                    field=item.name,
                    measurement=config.measurement,
                    tags=dict(config.tags),
                    type=kind,
                    limits=item.write,
                    target=variable.describe(),
                    unit=item.unit,
                    range=value_range,
                    max_length=_max_length(variable),
                    timeout=item.write.timeout or 3 * config.timeout + 1.0,
                    machine_type=variable.type.upper(),
                )
            )

    @property
    def empty(self) -> bool:
        return not self._fields

    def writable_fields(self) -> Sequence[WritableField]:
        return self._fields

    async def _read(self, variable: Variable) -> bytes | ItemError:
        return (await self.connection.read([ReadItem(variable.area, variable.db, variable.start, variable.size)]))[0]

    async def write(self, field: WritableField, value: Value) -> WriteOutcome:
        item, variable = self._targets[field.field]
        where = variable.describe()
        try:
            data = _encode(item, variable, value)
        except (ValueError, TypeError, OverflowError) as exc:
            return WriteOutcome(WriteResult.REFUSED_LIMITS, f"{exc}: nothing was written", sent=False)
        pdu = self.connection.pdu_size
        if pdu and variable.size + WRITE_OVERHEAD > pdu:
            # Written in one request so that the PLC never holds half of a new value; split, a
            # cut connection would leave a mix of old and new bytes.
            return WriteOutcome(
                WriteResult.ERROR,
                f"{where} takes {variable.size} bytes, more than one write request holds at this PLC's PDU size "
                f"of {pdu} bytes ({pdu - WRITE_OVERHEAD} at most): nothing was written; write a shorter variable",
                code="larger than the PDU",
                sent=False,
            )
        try:
            before = await self._read(variable)
        except Refused as exc:
            return WriteOutcome(
                WriteResult.REFUSED_BY_MACHINE, f"{exc}; nothing was written", code=f"S7 {exc.code:#06x}", sent=False
            )
        except ConnectionLost as exc:
            return WriteOutcome(_lost(exc), f"{exc}: nothing was written", sent=False)
        if isinstance(before, ItemError):
            text = item_error_text(before, variable.area, variable.db, variable.start, variable.size)
            return WriteOutcome(
                WriteResult.REFUSED_BY_MACHINE,
                f"refused by the PLC at the read of the old value: {text}; nothing was written",
                code=f"S7 item error {before.code:#04x}",
                sent=False,
            )
        if variable.type == "string" and before[0] != variable.length:
            # The first byte is the length the PLC declares for this STRING: writing the configured
            # length would overwrite what follows it in the block, or leave a header the PLC rejects.
            return WriteOutcome(
                WriteResult.ERROR,
                f"the PLC declares {where} as STRING[{before[0]}], the config says length {variable.length}: "
                f"nothing was written (it would overwrite what follows it); set length: {before[0]}",
                code="string length differs",
                sent=False,
            )
        old = _decoded(item, variable, before)
        try:
            if variable.type == "bool":
                await self.connection.write(variable.area, variable.db, variable.start, data, bit=variable.bit or 0)
            else:
                await self.connection.write(variable.area, variable.db, variable.start, data)
        except ItemRefused as exc:
            text = item_error_text(exc.error, variable.area, variable.db, variable.start, variable.size)
            return WriteOutcome(
                WriteResult.REFUSED_BY_MACHINE,
                f"refused by the PLC: {text.replace('reading', 'writing')}; nothing was changed",
                old=old,
                code=f"S7 item error {exc.error.code:#04x}",
            )
        except Refused as exc:
            return WriteOutcome(
                WriteResult.REFUSED_BY_MACHINE, f"refused by the PLC: {exc}", old=old, code=f"S7 {exc.code:#06x}"
            )
        except ConnectionLost as exc:
            return WriteOutcome(
                _lost(exc), f"{exc} during the write ({where}): whether the PLC took the value is unknown", old=old
            )
        try:
            after = await self._read(variable)
        except (Refused, ConnectionLost) as exc:
            return WriteOutcome(
                WriteResult.ERROR, f"the PLC took the write but its read-back failed ({exc}): check the value", old=old
            )
        if isinstance(after, ItemError):
            return WriteOutcome(
                WriteResult.ERROR,
                f"the PLC took the write but refused its read-back ({after.meaning}): check the value",
                old=old,
            )
        read_back = _decoded(item, variable, after)
        if not _same(variable, data, after):
            return WriteOutcome(
                WriteResult.REFUSED_BY_MACHINE,
                f"the PLC took the write but holds {describe(read_back)}, not {describe(value)}: its program changed "
                "the value (a limit or an interlock in the PLC)",
                old=old,
                read_back=read_back,
                code="read-back differs",
            )
        note = ""
        if isinstance(read_back, int | float) and not isinstance(read_back, bool) and read_back != value:
            note = f" (stored as {describe(read_back)}: the address's resolution)"
        return WriteOutcome(WriteResult.WRITTEN, f"written and read back{note}", old=old, read_back=read_back)


def _max_length(variable: Variable) -> int | None:
    if variable.type == "string":
        return variable.length
    return 1 if variable.type == "char" else None


def _lost(exc: ConnectionLost) -> WriteResult:
    return WriteResult.TIMEOUT if "did not answer" in str(exc) else WriteResult.ERROR


def _encode(item: S7Field, variable: Variable, value: Value) -> bytes:
    """The bytes of ``value`` as the field is read (a bool: one byte, 1 or 0, for the bit transport)."""
    kind = variable.type
    if kind == "bool":
        return bytes([1 if value else 0])
    if kind in ("char", "string"):
        text = str(value)
        text.encode("latin-1")  # UnicodeEncodeError (a ValueError) for what an S7 string cannot hold
        return encode(kind, text, variable.length or 0)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{describe(value)} is not a number")
    raw: float | int = value
    if item.scale is not None or item.offset is not None:
        raw = (raw - (item.offset or 0.0)) / (item.scale if item.scale is not None else 1.0)
    if kind in INTEGER_RANGES:
        raw = round(raw)
        low, high = INTEGER_RANGES[kind]
        if not low <= raw <= high:
            raise ValueError(f"{describe(value)} does not fit the PLC's {kind.upper()}")
    assert kind in NUMERIC_FORMATS
    return encode(kind, raw)


def _decoded(item: S7Field, variable: Variable, data: bytes) -> Value | None:
    try:
        return decode(variable, data, item.scale, item.offset)
    except DecodeProblem:
        return None


def _same(variable: Variable, sent: bytes, read: bytes) -> bool:
    if variable.type == "bool":
        return bool((read[0] >> (variable.bit or 0)) & 1) == bool(sent[0])
    return bytes(read) == bytes(sent)
