"""Configuration of the Siemens S7 connector (``type: s7``): the model is the spec.

One connector is one PLC: one connection (ISO-on-TCP, port 102) to the CPU at ``rack`` and
``slot``, and the ``fields`` read from it on one schedule. An address is STEP 7 notation
(``DB1.DBD0``, ``M10.1``, ``MW20``) or the PLC4X form (``DB1.DBD0:REAL``); it is parsed here,
so a wrong address or a type that does not fit it (``DB1.DBW8`` with ``type: real``) is a
``file:line: key: message`` error naming the field, before anything starts.

``tags_file:`` adds the variables of a tag file (a TIA Portal DB export, a CSV or a JSON file,
read by python-snap7's loaders, see :mod:`connectors.s7.tagfile`) to ``fields``: the file is
read when the config is validated, so the validated config holds them as fields like any
other (the reload compares them, the source reads them), and a mistake in the file is a
``tags_file`` error naming the tag.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, PrivateAttr, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from connectors.s7.address import MAX_STRING, TYPES, AddressError, Variable, parse
from connectors.s7.tagfile import TagFileError, TagFileFormat, TagVariable, format_of, read_tag_file
from gateway.settings import ConnectorConfig, DeclaredField, StrictModel
from gateway.units import Duration
from gateway.writes import WriteLimits

__all__ = ["CONNECTION_TYPES", "FieldType", "ReconnectConfig", "S7Config", "S7Field"]

FieldType = Literal[
    "bool",
    "byte",
    "char",
    "sint",
    "usint",
    "word",
    "int",
    "uint",
    "dword",
    "dint",
    "udint",
    "real",
    "lword",
    "lint",
    "ulint",
    "lreal",
    "string",
]
assert set(FieldType.__args__) == set(TYPES)  # type: ignore[attr-defined]  # one list of types, two spellings

#: S7 connection types (the high byte of the PLC's TSAP): a programming device, an operator
#: panel, or a basic S7 connection. PLCs keep separate resources for each.
CONNECTION_TYPES: dict[str, int] = {"pg": 1, "op": 2, "basic": 3}

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


def _problem(loc: tuple[str | int, ...], message: str, value: Any) -> InitErrorDetails:
    return InitErrorDetails(type=PydanticCustomError("value_error", message), loc=loc, input=value)


class S7Field(StrictModel):
    """One value: its address in the PLC, its type, and how it is stored."""

    name: str = Field(description="Field name in the store.", examples=["speed"])
    address: str = Field(
        description="STEP 7 address (DB1.DBD0, DB1.DBW8, DB1.DBX10.0, DB2.DBB0, M10.1, MW20, IW64, QB4; E/A for "
        "inputs/outputs) or the PLC4X form (DB1.DBD0:REAL, DB1:16:LREAL).",
        examples=["DB1.DBD0"],
    )
    type: FieldType | None = Field(
        default=None,
        description="bool, byte, char, sint, usint, word, int, uint, dword, dint, udint, real, lword, lint, ulint, "
        "lreal, string. It must fit the address's width (DBW: word/int/uint; DBD: dword/dint/udint/real; 8-byte "
        "types and strings at their first byte, DBB). Default: bool for a bit, byte/word/dword for the widths.",
    )
    length: int | None = Field(
        default=None, ge=1, le=MAX_STRING, description="For type string: n of STRING[n] as declared in the PLC."
    )
    # allow_inf_nan=False: YAML reads .nan and .inf as floats; as a scale they would only give NaN.
    scale: float | None = Field(
        default=None, allow_inf_nan=False, description="Multiply the value by this (e.g. 0.1); gives a float."
    )
    offset: float | None = Field(default=None, allow_inf_nan=False, description="Add this after scale; gives a float.")
    unit: str | None = Field(default=None, description="Unit shown on the web page (e.g. °C); not stored.")
    write: WriteLimits | None = Field(
        default=None,
        description="The field may be written (POST /api/write, gateway write), within these limits: {min: 0, "
        "max: 200} (in the stored unit: scale and offset are applied in reverse), {allowed: [...]}. Data blocks, "
        "merkers and outputs only (inputs are the PLC's own). Absent: read-only.",
    )

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(f"{value!r} is not a usable field name: use letters, digits, '_', '.' and '-'")
        return value

    @model_validator(mode="wrap")
    @classmethod
    def _check_address(cls, data: Any, handler: Any) -> S7Field:
        item: S7Field = handler(data)
        try:
            variable = item.variable
        except AddressError as exc:
            raise ValidationError.from_exception_data(
                cls.__name__, [_problem(("address",), str(exc), item.address)]
            ) from None
        if item.write is not None and variable.area == "I":
            raise ValidationError.from_exception_data(
                cls.__name__,
                [
                    _problem(
                        ("write",),
                        "inputs (I, E) are the PLC's own input image, read from its input cards: they cannot be "
                        "written; write a data block (DB), a merker (M) or an output (Q)",
                        item.address,
                    )
                ],
            )
        if item.write is not None and item.scale == 0:
            raise ValidationError.from_exception_data(
                cls.__name__,
                [_problem(("scale",), "scale 0 makes every value the same: a field with it cannot be written", 0)],
            )
        if variable.type in ("bool", "char", "string") and (item.scale is not None or item.offset is not None):
            raise ValidationError.from_exception_data(
                cls.__name__,
                [
                    _problem(
                        ("scale" if item.scale is not None else "offset",),
                        f"scale and offset are for numbers; this field is {variable.type}",
                        item.scale if item.scale is not None else item.offset,
                    )
                ],
            )
        return item

    @property
    def variable(self) -> Variable:
        """Where the value is and what it is (raises AddressError for a bad address)."""
        return parse(self.address, self.type, self.length)


class ReconnectConfig(StrictModel):
    """Backoff for a connection that fails or a PLC that refuses the reads."""

    initial_delay: Duration = Field(default=1.0, gt=0, description="First wait before reconnecting.")
    max_delay: Duration = Field(default=30.0, gt=0, description="Longest wait between two attempts.")


class S7Config(ConnectorConfig):
    """A Siemens S7 PLC (S7-300/400, S7-1200/1500 with PUT/GET, ET 200SP CPUs, LOGO! 8 in S7 mode)."""

    type: Literal["s7"]
    host: str = Field(description="Host name or IP address of the PLC (or of its CP).", examples=["10.0.0.30"])
    port: int = Field(default=102, ge=1, le=65535, description="ISO-on-TCP port (102).")
    rack: int = Field(default=0, ge=0, le=7, description="Rack of the CPU (0).")
    slot: int = Field(
        default=1,
        ge=0,
        le=31,
        description="Slot of the CPU: 1 for S7-1200/1500 (also 0), 2 for S7-300, the CPU's slot for S7-400.",
    )
    connection_type: Literal["pg", "op", "basic"] = Field(
        default="pg",
        description="S7 connection type: pg (programming device), op (operator panel) or basic. A PLC keeps "
        "separate connection resources for each; use op when the PG ones are taken by engineering stations.",
    )
    interval: Duration = Field(default=1.0, gt=0, description="Time between two scans (reads of every field).")
    timeout: Duration = Field(default=2.0, gt=0, le=60, description="How long connecting or one request may take.")
    pdu_size: int = Field(
        default=960,
        ge=240,
        le=960,
        description="PDU size asked for when connecting; the PLC answers with what it supports (240 for S7-300 "
        "and S7-1200, 480 for S7-400, 960 for S7-1500) and the reads are planned for that.",
    )
    max_gap: int = Field(
        default=16,
        ge=0,
        le=256,
        description="Unused bytes between two fields that are read and discarded to save an item (each item "
        "costs 12 bytes of request and 4 of answer, and a request carries at most 20).",
    )
    measurement: str = Field(default="s7", description="Measurement of the stored points.")
    tags: dict[str, str] = Field(default_factory=dict, description="Tags added to every point.")
    reconnect: ReconnectConfig = Field(default_factory=ReconnectConfig, description="Reconnect backoff.")
    fields: list[S7Field] = Field(
        default_factory=list,
        description="The values to read (with tags_file: the file's variables follow these; once validated, "
        "this list holds both).",
    )
    tags_file: Path | None = Field(
        default=None,
        description="A tag file whose variables are read as fields too: a TIA Portal DB export (.xml), a CSV "
        "(.csv: tag, db, offset, type[, bit]) or a JSON file (.json). Relative to the working directory, like "
        "every path in the config. Read when the config is loaded or reloaded.",
        examples=["plc-tags/DB1.xml"],
    )
    tags_format: TagFileFormat | None = Field(
        default=None, description="tia, csv or json when the file's extension does not say it."
    )
    tags_include: list[str] | None = Field(
        default=None,
        description="Only the tags of tags_file whose name matches one of these patterns (* any text, ? one "
        "character), e.g. ['Motor.*']. Default: every tag.",
    )
    tags_exclude: list[str] = Field(
        default_factory=list, description="Leave out the tags of tags_file whose name matches one of these patterns."
    )

    #: How many of ``fields`` were written under fields: (the rest come from tags_file).
    _explicit: int | None = PrivateAttr(default=None)

    @model_validator(mode="wrap")
    @classmethod
    def _consistent(cls, data: Any, handler: Any) -> S7Config:
        config: S7Config = handler(data)
        problems: list[InitErrorDetails] = []
        names: dict[str, int] = {}
        for index, item in enumerate(config.fields):
            if item.name in names:
                problems.append(
                    _problem(
                        ("fields", index, "name"),
                        f"field name {item.name!r} is already used by fields[{names[item.name]}]",
                        item.name,
                    )
                )
            names.setdefault(item.name, index)
        if config.tags_file is None:
            for key in ("tags_format", "tags_include", "tags_exclude"):
                if key in config.model_fields_set:
                    problems.append(_problem((key,), f"{key} is for tags_file, which is not given", None))
            if not config.fields and not problems:
                problems.append(_problem(("fields",), "give fields (the values to read), tags_file, or both", None))
        explicit = len(config.fields)
        from_file: list[TagVariable] = []
        in_file: list[InitErrorDetails] = []
        if config.tags_file is not None:
            try:
                from_file = _read_file(config)
            except TagFileError as exc:
                in_file.append(_problem(("tags_file",), str(exc), str(config.tags_file)))
            for index, item in enumerate(config.fields):
                clash = next((t for t in from_file if t.name == item.name), None)
                if clash is not None:
                    in_file.append(
                        _problem(
                            ("fields", index, "name"),
                            f"field name {item.name!r} is also tag {clash.tag!r} of tags_file: leave the tag out "
                            f"(tags_exclude: [{clash.tag!r}]) to declare it here, or give this field another name",
                            item.name,
                        )
                    )
        if in_file:
            raise ValidationError.from_exception_data(cls.__name__, problems + in_file)
        fields = [*config.fields, *(_tag_field(t) for t in from_file)]

        def where(index: int) -> tuple[tuple[str | int, ...], str]:
            if index < explicit:
                return ("fields", index, "address"), f"fields[{index}] ({fields[index].name!r})"
            return ("tags_file",), f"tag {from_file[index - explicit].tag!r} of tags_file"

        problems += _overlaps(fields, where)
        if problems:
            raise ValidationError.from_exception_data(cls.__name__, problems)
        if not from_file:
            return config
        expanded = config.model_copy(update={"fields": fields})
        expanded._explicit = explicit
        return expanded

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def variables(self) -> list[Variable]:
        return [item.variable for item in self.fields]

    def declared_fields(self) -> Iterator[DeclaredField]:
        """Every field's kind (bits are booleans, char and string text, the rest numbers), for checks of
        other sections."""
        explicit = len(self.fields) if self._explicit is None else self._explicit
        for index, item in enumerate(self.fields):
            kind = item.variable.type
            yield DeclaredField(
                self.measurement,
                item.name,
                "bool" if kind == "bool" else "text" if kind in ("char", "string") else "number",
                ("fields", index) if index < explicit else ("tags_file",),
                dict(self.tags),
            )


def _read_file(config: S7Config) -> list[TagVariable]:
    """The tag file's variables, each checked as an address of its own (a DB number or an offset
    beyond what S7 addresses: a TagFileError naming the tag)."""
    assert config.tags_file is not None
    path = config.tags_file
    found = read_tag_file(path, format_of(path, config.tags_format), config.tags_include, config.tags_exclude)
    for item in found:
        try:
            parse(item.variable.describe(), item.variable.type, item.variable.length)
        except AddressError as exc:
            raise TagFileError(f"tag {item.tag!r}: {exc}") from None
    return found


def _tag_field(item: TagVariable) -> S7Field:
    variable = item.variable
    return S7Field.model_validate(
        {"name": item.name, "address": variable.describe(), "type": variable.type, "length": variable.length}
    )


def _overlaps(
    fields: list[S7Field], where: Callable[[int], tuple[tuple[str | int, ...], str]]
) -> list[InitErrorDetails]:
    """Two values on the same bytes are a mistake (REALs at DBD0 and DBD2 instead of DBD4), with
    one deliberate exception: bits may be read beside the byte or word that holds them (a status
    word and its alarm bits) — but the same bit only once. ``where(index)`` is the key a
    problem of ``fields[index]`` is reported at and how another field names it."""
    problems: list[InitErrorDetails] = []
    owner: dict[tuple[str, int, int], int] = {}
    bits: dict[tuple[str, int, int, int], int] = {}
    for index, item in enumerate(fields):
        variable = item.variable
        loc, label = where(index)
        prefix = "" if loc[0] == "fields" else f"{label.removesuffix(' of tags_file')}: "
        if variable.bit is not None:
            key = (variable.area, variable.db, variable.start, variable.bit)
            if key in bits:
                other = bits[key]
                problems.append(
                    _problem(
                        loc,
                        f"{prefix}{variable.describe()} is already read by {where(other)[1]}",
                        item.address,
                    )
                )
            bits.setdefault(key, index)
            continue
        span = range(variable.start, variable.end)
        clash = next(
            (owner[(variable.area, variable.db, b)] for b in span if (variable.area, variable.db, b) in owner), None
        )
        if clash is not None:
            other_field = fields[clash]
            taken = other_field.variable
            problems.append(
                _problem(
                    loc,
                    f"{prefix}{item.name!r} ({variable.type}, {variable.span_text()}) overlaps "
                    f"{_overlapped(where(clash)[1], other_field.name)} ({taken.type}, {taken.span_text()}): check "
                    "the address and the type",
                    item.address,
                )
            )
            continue
        for byte in span:
            owner[(variable.area, variable.db, byte)] = index
    return problems


def _overlapped(label: str, name: str) -> str:
    """``fields[0] 'speed'`` (as the messages always said it), or ``tag 'Motor.Speed' of tags_file``."""
    return label.replace(f" ({name!r})", f" {name!r}") if label.startswith("fields[") else label
