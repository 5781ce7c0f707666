"""Tag files: a TIA Portal DB export (XML), a CSV or a JSON file of named variables → S7 fields.

The files are read by python-snap7's own loaders (:func:`snap7.tags.load_tia_xml`,
:func:`~snap7.tags.load_csv`, :func:`~snap7.tags.load_json`); this module only turns what
they give into the connector's variables, and whatever goes wrong into one line a plant
engineer can act on (:class:`TagFileError`). The file is read when the config is loaded
(and reloaded), never while the gateway runs.
"""

from __future__ import annotations

import fnmatch
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from snap7.tags import Tag, load_csv, load_json, load_tia_xml

from connectors.s7.address import MAX_STRING, TYPES, Variable

__all__ = ["FORMATS", "TagFileError", "TagFileFormat", "TagVariable", "field_name", "format_of", "read_tag_file"]

TagFileFormat = Literal["tia", "csv", "json"]
#: File extension → format.
FORMATS: dict[str, TagFileFormat] = {".xml": "tia", ".csv": "csv", ".json": "json"}
_EXPECTED = {
    "tia": "a TIA Portal DB export (<Member Name=… Datatype=… Offset=…/> in a block with its <Number>)",
    "csv": "CSV with the columns tag, db, offset, type (and optionally bit)",
    "json": 'JSON {"name": {"db": 1, "offset": 0, "type": "REAL", "bit": 0}, …}',
}
#: S7 type names (as the loaders give them, upper case) → the connector's types (STRING[n]: below).
_TYPES = {name.upper(): name for name in TYPES if name != "string"}
_STRING = re.compile(r"^STRING\s*(?:\[\s*(?P<length>\d+)\s*\])?$")
_NOT_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


class TagFileError(ValueError):
    """A tag file that cannot be used; the message (one line) says why and names the tag."""


@dataclass(frozen=True)
class TagVariable:
    """One variable of a tag file: its name as exported, the field name it is stored under, where it is."""

    tag: str
    name: str
    variable: Variable


def format_of(path: Path, given: TagFileFormat | None) -> TagFileFormat:
    """``given``, or the format the file's extension says."""
    if given is not None:
        return given
    found = FORMATS.get(path.suffix.lower())
    if found is None:
        raise TagFileError(
            f"{path.name}: the extension does not say the format (.xml for a TIA Portal export, .csv, .json); "
            "give tags_format: tia, csv or json"
        )
    return found


def field_name(tag: str) -> str:
    """The field name a tag is stored under: its name as exported when it is a usable field name
    (``Motor.Temperature``), else every run of other characters (spaces, quotes, brackets,
    non-ASCII letters) replaced by ``_``, with a ``_`` before a leading digit."""
    name = _NOT_NAME.sub("_", tag.strip())
    return f"_{name}" if name[:1].isdigit() else name


def read_tag_file(
    path: Path,
    fmt: TagFileFormat,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] = (),
) -> list[TagVariable]:
    """The variables of the file at ``path`` (in the file's order), those whose name matches a
    pattern of ``include`` (every tag without it) and none of ``exclude``.

    Raises :class:`TagFileError`: a missing or unreadable file, one the loader cannot parse,
    a type the connector does not read, a name two tags map to.
    """
    text = _text(path)
    if fmt == "tia":
        _check_tia(text)
    try:
        tags = _LOADERS[fmt](text)
    except (KeyError, ValueError, TypeError, AttributeError, ET.ParseError) as exc:
        raise TagFileError(f"cannot read it as {_EXPECTED[fmt]}: {_reason(exc)}") from None
    if not tags:
        raise TagFileError(f"no tags in it; expected {_EXPECTED[fmt]}")
    chosen = [tag for name, tag in tags.items() if _wanted(name, include, exclude)]
    for pattern in include or ():
        if not any(fnmatch.fnmatchcase(name, pattern) for name in tags):
            raise TagFileError(f"tags_include: {pattern!r} matches no tag of the file")
    if not chosen:
        raise TagFileError("tags_include and tags_exclude leave no tag of the file")
    result: list[TagVariable] = []
    taken: dict[str, str] = {}
    for tag in chosen:
        name = field_name(tag.name)
        if not name.strip("_"):
            raise TagFileError(f"tag {tag.name!r}: its name gives no usable field name")
        if name in taken:
            raise TagFileError(
                f"tags {taken[name]!r} and {tag.name!r} are both stored as field {name!r}; leave one out with "
                "tags_exclude"
            )
        taken[name] = tag.name
        result.append(TagVariable(tag.name, name, _variable(tag)))
    return result


def _text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise TagFileError(f"no such file: {path}") from None
    except IsADirectoryError:
        raise TagFileError(f"{path} is a folder, not a tag file") from None
    except OSError as exc:
        raise TagFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8-sig")  # Excel and TIA Portal write a byte order mark
    except UnicodeDecodeError as exc:
        raise TagFileError(f"{path.name} is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    # The loaders take a path or the text itself, and take one line without a line break for a path.
    return text if "\n" in text else text + "\n"


_LOADERS: dict[str, Callable[[str], dict[str, Tag]]] = {"tia": load_tia_xml, "csv": load_csv, "json": load_json}


def _check_tia(text: str) -> None:
    """What the TIA loader would silently get wrong: a member without an offset (an optimized
    block: the loader would put it at byte 0)."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise TagFileError(f"cannot read it as {_EXPECTED['tia']}: not well-formed XML ({exc})") from None
    optimized = any(
        element.tag.rsplit("}", 1)[-1] == "MemoryLayout" and (element.text or "").strip() == "Optimized"
        for element in root.iter()
    )
    for element in root.iter():
        if element.tag.rsplit("}", 1)[-1] == "Member" and "Offset" not in element.attrib:
            raise TagFileError(
                f"tag {element.get('Name', '?')!r} has no offset in the export"
                + (" (the block is 'optimized')" if optimized else "")
                + ": only non-optimized data blocks have absolute addresses; clear 'Optimized block access' in "
                "the DB's properties, compile, download and export again"
            )


def _reason(exc: BaseException) -> str:
    if isinstance(exc, KeyError):
        return f"{exc.args[0]!r} is missing"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _wanted(name: str, include: Sequence[str] | None, exclude: Sequence[str]) -> bool:
    if include is not None and not any(fnmatch.fnmatchcase(name, p) for p in include):
        return False
    return not any(fnmatch.fnmatchcase(name, p) for p in exclude)


def _variable(tag: Tag) -> Variable:
    """The connector's variable for a loader's tag (raises TagFileError naming the tag)."""
    datatype = tag.datatype.strip()
    upper = datatype.upper()
    length: int | None = None
    kind = _TYPES.get(upper)
    string = _STRING.match(upper)
    if string is not None:
        kind = "string"
        length = int(string["length"]) if string["length"] else MAX_STRING  # String alone is STRING[254]
        if not 1 <= length <= MAX_STRING:
            raise TagFileError(f"tag {tag.name!r}: an S7 STRING holds 1–{MAX_STRING} characters ({datatype})")
    if kind is None:
        raise TagFileError(
            f"tag {tag.name!r}: type {datatype!r} is not one the connector reads (bool, byte, char, sint, usint, "
            "word, int, uint, dword, dint, udint, real, lword, lint, ulint, lreal, string[n]); leave it out with "
            "tags_exclude"
        )
    if tag.count != 1:
        raise TagFileError(f"tag {tag.name!r}: arrays are not read as one field; declare each element under fields:")
    if tag.db_number < 1:
        raise TagFileError(
            f"tag {tag.name!r}: the file gives no data block number (a TIA export holds it in <Number>, a CSV or "
            "JSON file in db)"
        )
    if not 0 <= tag.bit <= 7:
        raise TagFileError(f"tag {tag.name!r}: a bit is 0–7 (bit {tag.bit} of byte {tag.byte_offset} does not exist)")
    bit = tag.bit if kind == "bool" else None
    if kind != "bool" and tag.bit:
        raise TagFileError(f"tag {tag.name!r}: only a bool has a bit number ({datatype} at bit {tag.bit})")
    return Variable("DB", tag.db_number, tag.byte_offset, kind, bit, length)
