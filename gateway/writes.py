"""Writes to machines: what may be written, within which limits, and what came of a write.

Nothing on a machine is writable unless its connector's config declares the field with
``write:`` (a :class:`WriteLimits`, the same model in every connector: an OPC UA node, a Modbus
holding register or coil, an S7 address, an MQTT command topic)::

    - {node: "nsu=urn:cnc;s=Program.Selected", field: program, write: {allowed: [O1001, O1002]}}
    - {node: "nsu=urn:cnc;s=Feed.Override", field: feed_override, write: {min: 0, max: 120}}

A connector that has such fields offers a :class:`FieldWriter` (``Source.writer()``, a named
ability like a sink's ``history()``): the fields it can write (:class:`WritableField`, with
the value type the machine takes and its own range) and ``write(field, value)``, which reads
the old value, writes, reads the value back and compares, and says what happened in a
:class:`WriteOutcome` — written, or the machine's refusal (a status code, a Modbus exception,
an S7 error) in words, or no answer.

:func:`check_value` is the check every write passes *before* anything reaches the machine:
the value's type, then ``allowed`` / ``min`` / ``max`` / ``pattern`` and the machine type's own
range (an int16 register holds -32768 to 32767). It is pure and shared by every connector; a
refusal raises :class:`~gateway.errors.WriteRefused` with a message a plant engineer reads.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from gateway.errors import WriteRefused
from gateway.units import Duration

__all__ = [
    "DEFAULT_TIMEOUT",
    "MAX_TEXT",
    "FieldWriter",
    "Value",
    "ValueType",
    "WritableField",
    "WriteLimits",
    "WriteOutcome",
    "WriteResult",
    "check_value",
    "describe",
    "infer_type",
]

#: A value as the API and the connectors carry it (what JSON gives).
Value = str | int | float | bool
#: What a field takes, as the web page offers it: a text input, a number input, a switch.
ValueType = Literal["string", "number", "integer", "boolean"]

#: Seconds a write may take (read, write, read back) when neither the field nor the connector says.
DEFAULT_TIMEOUT = 10.0
#: Longest text a write may carry (a value longer than this is refused before anything else).
MAX_TEXT = 1000


class WriteResult(enum.StrEnum):
    """What came of one write attempt (the API's ``result``, the audit's)."""

    WRITTEN = "written"  # the machine took it and the value read back is the one asked for
    REFUSED_LIMITS = "refused_limits"  # outside min/max/allowed/pattern or the machine type's range
    REFUSED_TYPE = "refused_type"  # not the type the field takes
    NOT_WRITABLE = "not_writable"  # no such connector, or the field is not declared writable
    FORBIDDEN = "forbidden"  # the caller's role may not write
    REFUSED_BY_MACHINE = "refused_by_machine"  # the machine said no (or holds another value after the write)
    TIMEOUT = "timeout"  # the machine did not answer in time
    ERROR = "error"  # anything else (not connected, the audit cannot be written, the gateway stops)


class WriteLimits(BaseModel):
    """``write:`` on a field: it may be written, within these limits (absent: it is read-only)."""

    # Its own config (not gateway.settings.StrictModel, which sits above this module): the same policy.
    model_config = ConfigDict(extra="forbid", frozen=True)

    allowed: list[str | int | float | bool] | None = Field(
        default=None,
        min_length=1,
        description="The only values that may be written (e.g. [O1001, O1002]); the web page offers them as a list.",
        examples=[["O1001", "O1002", "O1003"]],
    )
    min: float | None = Field(default=None, allow_inf_nan=False, description="Lowest value that may be written.")
    max: float | None = Field(default=None, allow_inf_nan=False, description="Highest value that may be written.")
    pattern: str | None = Field(
        default=None,
        description="A regular expression the whole text must match (e.g. ^FA-[0-9]{2}-[0-9]{4}$); for text fields.",
        examples=["^FA-[0-9]{2}-[0-9]{4}$"],
    )
    timeout: Duration | None = Field(
        default=None,
        gt=0,
        le=300,
        description="How long the write may take, read-back included, before it is reported as timed out "
        "(default: OPC UA the connector's request timeout; Modbus and S7 3 x timeout + 1s, for the read of the "
        "old value, the write and the read-back; MQTT 10s for the broker's acknowledgement).",
    )

    _regex: re.Pattern[str] | None = PrivateAttr(default=None)

    @field_validator("pattern")
    @classmethod
    def _check_pattern(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"{value!r} is not a valid regular expression: {exc}") from None
        return value

    @model_validator(mode="after")
    def _consistent(self) -> WriteLimits:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min:g}) is above max ({self.max:g})")
        numbers = [v for v in self.allowed or () if isinstance(v, int | float) and not isinstance(v, bool)]
        for number in numbers:
            if (self.min is not None and number < self.min) or (self.max is not None and number > self.max):
                raise ValueError(f"allowed value {number:g} is outside min/max: it could never be written")
        if self.pattern is not None and (self.min is not None or self.max is not None):
            raise ValueError("pattern is for text and min/max for numbers: give the ones that fit the field")
        return self

    def model_post_init(self, context: Any, /) -> None:
        # compiled once, at config time (the validator above proved it compiles)
        self._regex = re.compile(self.pattern) if self.pattern is not None else None

    @property
    def regex(self) -> re.Pattern[str] | None:
        return self._regex


def infer_type(limits: WriteLimits) -> ValueType:
    """The type a field's limits imply, where the machine does not say (an MQTT command, an OPC UA
    node before the first connection): the allowed values' type, text for a pattern, a number for
    min/max, else text."""
    allowed = limits.allowed or []
    if allowed and all(isinstance(v, bool) for v in allowed):
        return "boolean"
    if allowed and all(isinstance(v, int) and not isinstance(v, bool) for v in allowed):
        return "integer"
    if allowed and all(isinstance(v, int | float) and not isinstance(v, bool) for v in allowed):
        return "number"
    if allowed or limits.pattern is not None:
        return "string"
    if limits.min is not None or limits.max is not None:
        return "number"
    return "string"


@dataclass(frozen=True)
class WritableField:
    """One field a connector can write: where it is, what it takes, within which limits."""

    connector: str
    field: str
    measurement: str
    tags: Mapping[str, str]
    type: ValueType
    limits: WriteLimits
    #: where on the machine, for messages and the audit: a node id, "holding register 100 of unit 2", MW20, a topic
    target: str
    unit: str | None = None
    #: the machine type's own range after scale and offset (int16: -32768 to 32767), checked like a limit
    range: tuple[float, float] | None = None
    #: longest text the machine's field holds (a Modbus or S7 string)
    max_length: int | None = None
    #: seconds the whole write may take (``write.timeout``, else the connector's request timeout)
    timeout: float = DEFAULT_TIMEOUT
    #: the machine type in words, for messages ("int16 register", "Byte", "REAL")
    machine_type: str = ""

    def allowed(self) -> list[Value] | None:
        """``allowed`` in the field's own type (a YAML 1001 for a text field is the text "1001")."""
        if self.limits.allowed is None:
            return None
        return [_as_type(self.type, v) for v in self.limits.allowed]

    def as_dict(self) -> dict[str, Any]:
        """The field as ``GET /api/writable`` gives it."""
        return {
            "connector": self.connector,
            "field": self.field,
            "measurement": self.measurement,
            "tags": dict(self.tags),
            "type": self.type,
            "allowed": self.allowed(),
            "min": self.limits.min,
            "max": self.limits.max,
            "pattern": self.limits.pattern,
            "unit": self.unit,
            "target": self.target,
            # 12 significant digits: int16 * 0.1 is 3276.7, not 3276.7000000000003
            "range": [_tidy(bound) for bound in self.range] if self.range is not None else None,
            "max_length": self.max_length,
            "timeout": self.timeout,
        }


def _tidy(number: float) -> float:
    return number if isinstance(number, int) else float(f"{number:.12g}")


def _as_type(kind: ValueType, value: Value) -> Value:
    if kind == "string":
        return value if isinstance(value, str) else describe(value)
    if kind == "integer" and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


@dataclass(frozen=True)
class WriteOutcome:
    """What a connector's write came to.

    ``old``: the value read before the write; ``read_back``: the value read after it (for MQTT,
    none: the broker's acknowledgement is the confirmation). ``code``: the machine's own word for a
    refusal (``BadUserAccessDenied``, ``Modbus exception 2``, ``S7 item error 0x0a``). ``sent``:
    whether the write request left the gateway (False: the machine cannot have changed).
    """

    result: WriteResult
    message: str
    old: Value | None = None
    read_back: Value | None = None
    code: str | None = None
    sent: bool = True


class FieldWriter(Protocol):
    """The writing ability of a connector (``Source.writer()``)."""

    def writable_fields(self) -> Sequence[WritableField]:
        """Every field declared writable, as the machine takes it now (types learnt at connect)."""
        ...

    def write(self, field: WritableField, value: Value) -> Awaitable[WriteOutcome]:
        """Write ``value`` (already checked by :func:`check_value`): old value, write, read back, compare."""
        ...


def describe(value: Any) -> str:
    """A value in a message or an audit text field: text as it is, true/false, numbers as written."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value) if not value.is_integer() or abs(value) >= 1e16 else f"{value:.1f}"
    if value is None:
        return "nothing"
    return str(value)


def _quoted(value: Any) -> str:
    text = value if isinstance(value, str) else describe(value)
    if len(text) > 60:
        text = f"{text[:57]}…"
    return f"'{text}'" if isinstance(value, str) else text


def _number_text(value: float) -> str:
    return f"{value:g}" if abs(value) < 1e15 else repr(value)


_TYPE_WORDS = {"string": "text", "number": "a number", "integer": "a whole number", "boolean": "true or false"}


def check_value(spec: WritableField, value: Any) -> Value:
    """``value`` as the field takes it, or :class:`~gateway.errors.WriteRefused` saying why not.

    The type first (``refused_type``: a text for a number field, 2.5 for a whole number, a
    number for a switch), then the limits (``refused_limits``).
    """
    name = spec.field
    wanted = _TYPE_WORDS[spec.type]
    if value is None:
        raise WriteRefused(WriteResult.REFUSED_TYPE.value, f"no value given: {name} takes {wanted}")
    if isinstance(value, str) and len(value) > MAX_TEXT:
        raise WriteRefused(
            WriteResult.REFUSED_TYPE.value, f"the value is {len(value)} characters long: at most {MAX_TEXT} are taken"
        )
    typed: Value
    if spec.type == "boolean":
        if not isinstance(value, bool):
            raise WriteRefused(
                WriteResult.REFUSED_TYPE.value, f"{_quoted(value)} is not true or false: {name} is a switch"
            )
        typed = value
    elif spec.type in ("number", "integer"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise WriteRefused(
                WriteResult.REFUSED_TYPE.value, f"{_quoted(value)} is not a number: {name} takes {wanted}"
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise WriteRefused(WriteResult.REFUSED_TYPE.value, f"{value} is not a finite number: {name} takes {wanted}")
        if spec.type == "integer":
            if isinstance(value, float):
                if not value.is_integer():
                    raise WriteRefused(
                        WriteResult.REFUSED_TYPE.value,
                        f"{describe(value)} is not a whole number: {name} takes {wanted}",
                    )
                value = int(value)
            typed = int(value)
        else:
            typed = value
    else:
        if not isinstance(value, str):
            raise WriteRefused(
                WriteResult.REFUSED_TYPE.value, f"{_quoted(value)} is not text: {name} takes text (give it in quotes)"
            )
        typed = value
    _check_limits(spec, typed)
    return typed


def _check_limits(spec: WritableField, value: Value) -> None:
    name, limits = spec.field, spec.limits
    allowed = spec.allowed()
    if allowed is not None and not any(_same(value, a) for a in allowed):
        shown = ", ".join(describe(a) for a in allowed[:20]) + (" …" if len(allowed) > 20 else "")
        raise WriteRefused(
            WriteResult.REFUSED_LIMITS.value, f"{_quoted(value)} is not one of the values allowed for {name}: {shown}"
        )
    if isinstance(value, int | float) and not isinstance(value, bool):
        unit = f" {spec.unit}" if spec.unit else ""
        if limits.min is not None and value < limits.min:
            raise WriteRefused(
                WriteResult.REFUSED_LIMITS.value,
                f"{describe(value)}{unit} is below the lowest value allowed for {name} "
                f"({_number_text(limits.min)}{unit})",
            )
        if limits.max is not None and value > limits.max:
            raise WriteRefused(
                WriteResult.REFUSED_LIMITS.value,
                f"{describe(value)}{unit} is above the highest value allowed for {name} "
                f"({_number_text(limits.max)}{unit})",
            )
        if spec.range is not None and not spec.range[0] <= value <= spec.range[1]:
            low, high = spec.range
            where = f"the machine's {spec.machine_type}" if spec.machine_type else "the machine's field"
            raise WriteRefused(
                WriteResult.REFUSED_LIMITS.value,
                f"{describe(value)}{unit} does not fit {where} ({_number_text(low)} to {_number_text(high)}{unit})",
            )
    if isinstance(value, str):
        regex = limits.regex
        if regex is not None and regex.fullmatch(value) is None:
            raise WriteRefused(
                WriteResult.REFUSED_LIMITS.value,
                f"{_quoted(value)} does not have the form required for {name} (pattern {limits.pattern})",
            )
        if spec.max_length is not None and len(value) > spec.max_length:
            raise WriteRefused(
                WriteResult.REFUSED_LIMITS.value,
                f"{_quoted(value)} is {len(value)} characters long; {name} holds at most {spec.max_length}",
            )
        try:
            value.encode("latin-1") if spec.max_length is not None else None
        except UnicodeEncodeError:
            raise WriteRefused(
                WriteResult.REFUSED_LIMITS.value,
                f"{_quoted(value)} has characters the machine's text field cannot hold (only Latin-1: no emoji, "
                "no characters outside Western European alphabets)",
            ) from None


def _same(a: Value, b: Value) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return a == b
