"""The one data model: a Point is a measurement, its tags, its fields and a time in nanoseconds.

A Point checks itself when it is created, so that everything downstream (the line-protocol
encoder, the historian, InfluxDB) can trust it: a value that cannot be stored faithfully is
refused here with a :class:`~gateway.errors.PointError` that says why.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping
from typing import Final

from gateway.errors import PointError

FieldValue = float | int | bool | str

INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
#: The times InfluxDB accepts: int64 less two reserved values at the bottom and one at the top
#: (1677-09-21T00:12:43.145224194Z to 2262-04-11T23:47:16.854775806Z).
TIME_MIN: Final = INT64_MIN + 2
TIME_MAX: Final = INT64_MAX - 1

__all__ = ["FieldValue", "Point", "check_names", "check_tags", "now_ns"]


def now_ns() -> int:
    """The current UTC time in nanoseconds since the Unix epoch."""
    return time.time_ns()


def _check_name(kind: str, name: object) -> None:
    """Names (measurement, tag keys and values, field keys) must survive line protocol."""
    if type(name) is not str:
        raise PointError(f"{kind} must be text, got {type(name).__name__} {name!r:.60}")
    if not name:
        raise PointError(f"{kind} is empty")
    if "\n" in name or "\r" in name:
        raise PointError(f"{kind} {name!r:.60} contains a line break, which line protocol cannot carry")
    if "\x00" in name:
        raise PointError(f"{kind} {name!r:.60} contains a NUL character, which time-series stores refuse")
    if "\\" in name:
        _check_backslashes(kind, name)
    if not name.isascii():
        _check_utf8(kind, name)


def _check_utf8(kind: str, text: str) -> None:
    # A lone surrogate (from a badly decoded payload) cannot be written as UTF-8: refused here,
    # it would otherwise fail the encoding of the whole batch it lands in.
    try:
        text.encode()
    except UnicodeEncodeError:
        raise PointError(f"{kind} {text!r:.60} is not valid text (it cannot be encoded as UTF-8)") from None


def _check_backslashes(kind: str, name: str) -> None:
    # A backslash is a literal character in names, except where a line-protocol parser would
    # read it as an escape: at the end, or before a backslash, comma, equals sign or space.
    # InfluxDB 1.x and 2.x disagree on those, so they are refused rather than guessed.
    for i, char in enumerate(name):
        if char != "\\":
            continue
        following = name[i + 1] if i + 1 < len(name) else ""
        if following in ("", "\\", ",", "=", " "):
            raise PointError(
                f"{kind} {name!r:.60} has a backslash "
                + ("at the end" if not following else f"before {following!r}")
                + ", which line protocol cannot carry unambiguously"
            )


def _short(number: int) -> str:
    # str() of a huge int is slow and refused past 4,300 digits.
    return str(number) if number.bit_length() < 128 else f"a {number.bit_length()}-bit number"


def _check_field(key: str, value: object) -> None:
    # type() is, not isinstance(): a bool is an int, and this runs for every field of every
    # point. mypy does not narrow ``value`` on it, hence the ignores below.
    kind = type(value)
    if kind is float:
        if not math.isfinite(value):  # type: ignore[arg-type]
            raise PointError(f"field {key!r:.60} is {value!r}: NaN and infinity cannot be stored")
    elif kind is int:
        if not INT64_MIN <= value <= INT64_MAX:  # type: ignore[operator]
            raise PointError(f"field {key!r:.60} = {_short(value)} does not fit in a 64-bit integer")  # type: ignore[arg-type]
    elif kind is str:
        if not value.isascii():  # type: ignore[attr-defined]
            _check_utf8(f"field {key!r:.60} value", value)  # type: ignore[arg-type]
    elif kind is not bool:
        raise PointError(
            f"field {key!r:.60} has a value of type {kind.__name__} ({value!r:.40}); "
            "expected a number, a boolean or text"
        )


def check_names(measurement: str, tags: Mapping[str, str] | None, fields: Iterable[str]) -> None:
    """PointError unless the measurement, the tags (keys and values) and the field keys can all
    be written as line protocol; ``fields`` may be a mapping (its keys are checked)."""
    _check_name("measurement", measurement)
    if measurement[0] in "#\t":
        why = "'#', which line protocol reads as a comment"
        if measurement[0] != "#":
            why = "a tab, which line protocol parsers skip"
        raise PointError(f"measurement {measurement!r:.60} starts with {why}")
    if tags:
        check_tags(tags)
    empty = True
    for key in fields:
        empty = False
        _check_name("field key", key)
        if key[0] == "\t":
            raise PointError(f"field key {key!r:.60} starts with a tab, which line protocol parsers skip")
    if empty:
        raise PointError(f"point {measurement!r:.60} has no fields")


def check_tags(tags: Mapping[str, str]) -> None:
    """PointError unless every tag key and value can be written as line protocol."""
    for key, tag_value in tags.items():
        _check_name("tag key", key)
        _check_name(f"tag {key!r:.60} value", tag_value)


def _checked_time(time: object) -> int:
    if type(time) is not int:
        raise PointError(f"time must be integer nanoseconds, got {type(time).__name__} {time!r:.40}")
    if not TIME_MIN <= time <= TIME_MAX:
        raise PointError(
            f"time {_short(time)} ns is outside the range a time-series store can hold (years 1677 to 2262)"
        )
    return time


class Point:
    """One sample: ``measurement``, ``tags`` (text → text), ``fields`` and ``time`` (ns, UTC).

    Points are treated as immutable once created; the constructor validates everything.
    """

    __slots__ = ("fields", "measurement", "tags", "time")

    measurement: str
    tags: Mapping[str, str]
    fields: Mapping[str, FieldValue]
    time: int

    def __init__(
        self,
        measurement: str,
        fields: Mapping[str, FieldValue],
        tags: Mapping[str, str] | None = None,
        time: int | None = None,
    ) -> None:
        check_names(measurement, tags, fields)
        for key, value in fields.items():
            _check_field(key, value)
        self.measurement = measurement
        self.tags = tags if tags is not None else {}
        self.fields = fields
        self.time = now_ns() if time is None else _checked_time(time)

    @classmethod
    def with_checked_names(
        cls, measurement: str, fields: Mapping[str, FieldValue], tags: Mapping[str, str], time: int
    ) -> Point:
        """A point whose measurement, tag and field names already passed :func:`check_names`:
        only the values and the time are checked. A decoder checks the names of its configuration
        (and of each topic's tags) once instead of for every message: they were a third of the
        cost of a point."""
        if not fields:
            raise PointError(f"point {measurement!r:.60} has no fields")
        for key, value in fields.items():
            _check_field(key, value)
        point = cls.__new__(cls)
        point.measurement = measurement
        point.tags = tags
        point.fields = fields
        point.time = _checked_time(time)
        return point

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Point):
            return NotImplemented
        return (
            self.measurement == other.measurement
            and self.time == other.time
            and dict(self.tags) == dict(other.tags)
            and _typed(self.fields) == _typed(other.fields)
        )

    # Unhashable, as Python makes any class that defines __eq__ alone; written out for readers
    # (mypy expects a method here, hence the ignore).
    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Point({self.measurement!r}, fields={dict(self.fields)!r}, tags={dict(self.tags)!r}, time={self.time})"


def _typed(fields: Mapping[str, FieldValue]) -> dict[str, tuple[type, FieldValue]]:
    # 1 == 1.0 == True in Python; a stored value must also keep its type.
    return {key: (type(value), value) for key, value in fields.items()}
