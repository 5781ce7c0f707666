"""S7 addresses: STEP 7 notation (``DB1.DBD0``, ``M10.1``, ``MW20``, ``IW64``, ``QB4``) and the
PLC4X form (``DB1.DBD0:REAL``, ``DB1:16:LREAL``, ``M10.1:BOOL``) into one :class:`Variable`.

Pure functions. A STEP 7 address carries a width — ``X`` a bit (``DBX10.0``, ``M10.1``),
``B`` a byte, ``W`` a word (2 bytes), ``D`` a double word (4 bytes) — and the field's ``type``
must fit it: a ``real`` at a ``DBW`` is a mistake caught here, not a wrong number in the
store. Types wider than a double word (``lreal``, ``lint``, ``ulint``, ``lword``) and strings
are addressed by their first byte (``DB1.DBB16`` with ``type: lreal``), as STEP 7 itself
shows them. German mnemonics are accepted: ``E`` for inputs (Eingänge), ``A`` for outputs
(Ausgänge). A leading ``%`` (TIA Portal's way of writing them) is ignored.

Without a type, a bit is a ``bool`` and a byte, word or double word an unsigned number
(``byte``, ``word``, ``dword``), as STEP 7 reads them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "AREAS",
    "MAX_STRING",
    "TYPES",
    "AddressError",
    "Area",
    "Variable",
    "area_text",
    "parse",
    "type_size",
]

Area = Literal["DB", "M", "I", "Q"]
AREAS: tuple[Area, ...] = ("DB", "M", "I", "Q")

#: Fixed sizes in bytes (bool reads the one byte that holds its bit).
_SIZES: dict[str, int] = {
    "bool": 1,
    "byte": 1,
    "char": 1,
    "sint": 1,
    "usint": 1,
    "word": 2,
    "int": 2,
    "uint": 2,
    "dword": 4,
    "dint": 4,
    "udint": 4,
    "real": 4,
    "lword": 8,
    "lint": 8,
    "ulint": 8,
    "lreal": 8,
}
#: Every type a field may have, in the order the docs and the read tool list them.
TYPES: tuple[str, ...] = (*_SIZES, "string")
#: The longest S7 STRING (its two header bytes hold the maximum and the actual length).
MAX_STRING = 254
#: The last byte address the connector reads (non-optimized blocks are at most 64 KiB).
_LAST_BYTE = 65535

_WIDTH_BYTES = {"B": 1, "W": 2, "D": 4}
_WIDTH_NAME = {"X": "a bit", "B": "a byte", "W": "a word (2 bytes)", "D": "a double word (4 bytes)"}
_DEFAULT_TYPE = {"X": "bool", "B": "byte", "W": "word", "D": "dword"}
_AREA_LETTER = {"M": "M", "I": "I", "E": "I", "Q": "Q", "A": "Q"}
_AREA_TEXT = {"DB": "data block", "M": "merker (flag) memory", "I": "inputs", "Q": "outputs"}

_DB = re.compile(r"^DB(?P<db>\d+)\.DB(?P<width>[XBWD])(?P<byte>\d+)(?:\.(?P<bit>\d+))?$")
_DB_SHORT = re.compile(r"^DB(?P<db>\d+):(?P<byte>\d+)(?:\.(?P<bit>\d+))?$")
_AREA = re.compile(r"^(?P<area>[MIEQA])(?P<width>[XBWD])?(?P<byte>\d+)(?:\.(?P<bit>\d+))?$")
_STRING_TYPE = re.compile(r"^STRING\s*[\[(]\s*(?P<length>\d+)\s*[\])]$")
_ARRAY_TYPE = re.compile(r"^(?P<base>[A-Z]+)\s*\[\s*\d+\s*\]$")


class AddressError(ValueError):
    """An address that does not parse, or a type that does not fit it; the message says why."""


def type_size(type_: str, length: int | None = None) -> int:
    """Bytes a value of ``type_`` occupies (a string: its two header bytes and ``length`` characters)."""
    if type_ == "string":
        return 2 + (length or 0)
    return _SIZES[type_]


@dataclass(frozen=True)
class Variable:
    """Where a value is and what it is: ``size`` bytes of ``area`` (data block ``db``) from
    byte ``start``; ``bit`` for a bool; ``length`` the characters of a string."""

    area: Area
    db: int
    start: int
    type: str
    bit: int | None = None
    length: int | None = None

    @property
    def size(self) -> int:
        return type_size(self.type, self.length)

    @property
    def end(self) -> int:
        return self.start + self.size

    def describe(self) -> str:
        """The address in STEP 7 notation, e.g. ``DB1.DBD0``, ``M10.1``, ``DB2.DBB0`` (a string's first byte)."""
        if self.bit is not None:
            return (
                f"DB{self.db}.DBX{self.start}.{self.bit}"
                if self.area == "DB"
                else f"{self.area}{self.start}.{self.bit}"
            )
        width = {1: "B", 2: "W", 4: "D"}.get(self.size, "B")
        return f"DB{self.db}.DB{width}{self.start}" if self.area == "DB" else f"{self.area}{width}{self.start}"

    def span_text(self) -> str:
        """Its bytes in words, e.g. ``DB1 bytes 4–7``, ``M byte 10``."""
        where = f"DB{self.db}" if self.area == "DB" else self.area
        if self.size == 1:
            return f"{where} byte {self.start}"
        return f"{where} bytes {self.start}–{self.end - 1}"


def _location(text: str, shown: str) -> tuple[Area, int, int, str | None, int | None]:
    """(area, db, byte, width or None, bit) of a STEP 7 address or a PLC4X short DB form."""
    area, db, byte, width, bit = _location_parts(text, shown)
    if width in _WIDTH_BYTES and bit is not None:
        prefix = f"DB{db}.DB" if area == "DB" else area
        single = f"DB{db}.DBX{byte}.{bit}" if area == "DB" else f"{area}{byte}.{bit}"
        raise AddressError(
            f"{shown!r}: only a bit address has a bit number; write {single} for the bit or "
            f"{prefix}{width}{byte} for the {_WIDTH_NAME[width].split(' (')[0].removeprefix('a ')}"
        )
    return area, db, byte, width, bit


def _location_parts(text: str, shown: str) -> tuple[Area, int, int, str | None, int | None]:
    match = _DB.match(text)
    if match:
        return "DB", int(match["db"]), int(match["byte"]), match["width"], _int(match["bit"])
    match = _DB_SHORT.match(text)
    if match:
        return "DB", int(match["db"]), int(match["byte"]), None, _int(match["bit"])
    match = _AREA.match(text)
    if match:
        area: Area = _AREA_LETTER[match["area"]]  # type: ignore[assignment]  # the regex allows only these letters
        width = match["width"]
        bit = _int(match["bit"])
        if width is None and bit is not None:
            width = "X"
        if width is None:
            a, n = match["area"], match["byte"]
            raise AddressError(
                f"{shown!r}: give the width — {a}{n}.0 for a bit, {a}B{n} for a byte, {a}W{n} for a word, {a}D{n} "
                "for a double word"
            )
        return area, 0, int(match["byte"]), width, bit
    raise AddressError(_unknown(text, shown))


def _int(text: str | None) -> int | None:
    return int(text) if text is not None else None


def _unknown(text: str, shown: str) -> str:
    """Why ``text`` (upper case, no ``%``) is no address; ``shown`` is how the user wrote it."""
    if re.match(r"^(P[IEQA]|PE|PA)[BWD]?\d", text):
        return (
            f"{shown!r}: peripheral addresses (PIW, PQW …) are not read through S7 communication; read the process "
            "image instead (IW, QW …)"
        )
    if re.match(r"^[TCZ]\d+$", text):
        return f"{shown!r}: timers and counters are not supported; copy the value into a data block or merker word"
    if text.startswith("DB") and "." not in text and ":" not in text:
        return f"{shown!r}: a data block address names a byte too, e.g. DB1.DBD0, DB1.DBW8, DB1.DBX10.0 or DB1.DBB0"
    return (
        f"{shown!r} is not an S7 address: write it in STEP 7 notation (DB1.DBD0, DB1.DBX10.0, M10.1, MW20, IW64, "
        "QB4) or the PLC4X form (DB1.DBD0:REAL, DB1:16:LREAL)"
    )


def _suffix_type(text: str, suffix: str) -> tuple[str, int | None]:
    """A PLC4X type suffix (``REAL``, ``STRING[20]``) → (type, string length or None)."""
    upper = suffix.strip().upper()
    match = _STRING_TYPE.match(upper)
    if match:
        return "string", int(match["length"])
    if _ARRAY_TYPE.match(upper):
        raise AddressError(f"{text!r}: arrays are not read as one field; give each element its own field and address")
    lower = upper.lower()
    if lower not in TYPES:
        raise AddressError(f"{text!r}: unknown type {suffix.strip()!r}; the types are {', '.join(TYPES)}")
    return lower, None


def _split_suffix(text: str, shown: str) -> tuple[str, str | None]:
    """``DB1.DBD0:REAL`` → (``DB1.DBD0``, ``REAL``); ``DB1:16:LREAL`` → (``DB1:16``, ``LREAL``)."""
    if ":" not in text:
        return text, None
    head, _, suffix = text.rpartition(":")
    if not suffix or not head:
        raise AddressError(_unknown(text, shown))
    if suffix.replace(".", "").isdigit() and re.match(r"^DB\d+$", head):
        raise AddressError(f"{shown!r}: the PLC4X form ends with the type, e.g. {shown}:REAL")
    return head, suffix


def parse(address: str, type_: str | None = None, length: int | None = None) -> Variable:
    """The variable at ``address`` (STEP 7 or PLC4X notation), of ``type_`` (or the address's own
    type suffix, or the width's default), ``length`` characters for a string.

    Raises :class:`AddressError` naming what is wrong and what to write instead.
    """
    text = address.strip().upper().replace(" ", "")
    if text.startswith("%"):
        text = text[1:]
    shown = address.strip()
    if type_ is not None:
        type_ = type_.lower()  # REAL, as PLC4X and TIA Portal write types, is real
        if type_ not in TYPES:
            raise AddressError(f"{shown!r}: unknown type {type_!r}; the types are {', '.join(TYPES)}")
    location, suffix = _split_suffix(text, shown)
    if location.startswith("%"):
        location = location[1:]
    if suffix is not None and _DB_SHORT.match(location) is None and ":" in location:
        raise AddressError(_unknown(location, shown))
    area, db, byte, width, bit = _location(location, shown)

    suffix_type: str | None = None
    suffix_length: int | None = None
    if suffix is not None:
        suffix_type, suffix_length = _suffix_type(shown, suffix)
    if type_ is not None and suffix_type is not None and type_ != suffix_type:
        raise AddressError(f"{shown!r} says {suffix_type} but the field says type: {type_}; keep one of the two")
    if suffix_length is not None and length is not None and suffix_length != length:
        raise AddressError(
            f"{shown!r} says STRING[{suffix_length}] but the field says length: {length}; keep one of the two"
        )
    kind = type_ or suffix_type or (_DEFAULT_TYPE[width] if width else None)
    if kind is None:
        raise AddressError(f"{shown!r}: give the type (type: real, dint, …) or write it as {location}:REAL")
    length = length if length is not None else suffix_length

    if area == "DB" and not 1 <= db <= 65535:
        raise AddressError(f"{shown!r}: data block numbers are 1–65535")
    if bit is not None and not 0 <= bit <= 7:
        raise AddressError(f"{shown!r}: a bit is 0–7 (bit {bit} of byte {byte} does not exist)")
    _check_fit(shown, area, db, byte, width, bit, kind)
    if kind == "string":
        if length is None:
            raise AddressError(
                f"{shown!r}: type string needs 'length' — the n of STRING[n] in the PLC (without it STRING is "
                "STRING[254])"
            )
        if not 1 <= length <= MAX_STRING:
            raise AddressError(f"{shown!r}: an S7 STRING holds 1–{MAX_STRING} characters (length: {length})")
    elif length is not None:
        raise AddressError(f"{shown!r}: 'length' is only for type string (this field is {kind})")
    variable = Variable(area, db, byte, kind, bit if kind == "bool" else None, length)
    if variable.end - 1 > _LAST_BYTE:
        raise AddressError(
            f"{shown!r}: {kind} at byte {byte} takes {variable.size} bytes, up to byte {variable.end - 1}: beyond "
            f"the last byte the connector reads ({_LAST_BYTE})"
        )
    return variable


def _check_fit(shown: str, area: Area, db: int, byte: int, width: str | None, bit: int | None, kind: str) -> None:
    """Refuse a type that does not fit the address's width, saying what to write instead."""
    prefix = f"DB{db}.DB" if area == "DB" else area
    if kind == "bool":
        if bit is None:
            bit_prefix = f"DB{db}.DBX" if area == "DB" else area
            what = _WIDTH_NAME[width or "B"]
            raise AddressError(f"{shown!r} is {what}: a bool is one bit, e.g. {bit_prefix}{byte}.0")
        return
    if bit is not None:
        size = type_size(kind, 1)
        whole = f"{prefix}{ {2: 'W', 4: 'D'}.get(size, 'B') }{byte}"
        raise AddressError(f"{shown!r} is a single bit, so its type is bool; a {kind} is addressed as a whole: {whole}")
    if width is None:  # the PLC4X short form DB1:16:LREAL names no width
        return
    size = type_size(kind, 1)
    if kind == "string" or size == 8:
        if width != "B":
            raise AddressError(f"{shown!r}: a {kind} is addressed by its first byte: write {prefix}B{byte}")
        return
    if width not in _WIDTH_BYTES:  # X without its bit number (MX0, DB1.DBX4)
        right = {1: "B", 2: "W", 4: "D"}.get(size, "B")
        raise AddressError(
            f"{shown!r} names a bit without its number: as a bool write {shown}.0, as {kind} {prefix}{right}{byte}"
        )
    if _WIDTH_BYTES[width] != size:
        right = {1: "B", 2: "W", 4: "D"}[size]
        raise AddressError(
            f"{shown!r} is {_WIDTH_NAME[width]} but {kind} takes {size} byte{'s' if size > 1 else ''}: write "
            f"{prefix}{right}{byte} for a {kind}"
        )


def area_text(area: Area) -> str:
    """The area in words, for messages."""
    return _AREA_TEXT[area]
