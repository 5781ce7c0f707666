"""Point: every validation rule, and equality that keeps value types."""

from __future__ import annotations

import math
from typing import Any

import pytest

from gateway.errors import GatewayError, PointError
from gateway.point import INT64_MAX, INT64_MIN, Point, now_ns


def test_a_valid_point_keeps_what_it_was_given() -> None:
    point = Point("machine", {"rpm": 1200, "temp": 21.5, "on": True, "state": "idle"}, {"line": "A"}, 17)
    assert point.measurement == "machine"
    assert dict(point.fields) == {"rpm": 1200, "temp": 21.5, "on": True, "state": "idle"}
    assert dict(point.tags) == {"line": "A"}
    assert point.time == 17


def test_time_defaults_to_now_in_nanoseconds() -> None:
    before = now_ns()
    point = Point("m", {"x": 1.0})
    after = now_ns()
    assert before <= point.time <= after
    assert point.tags == {}


def test_point_error_is_a_gateway_error_and_a_value_error() -> None:
    with pytest.raises(PointError) as info:
        Point("", {"x": 1})
    assert isinstance(info.value, GatewayError)
    assert isinstance(info.value, ValueError)


# --- names -----------------------------------------------------------------------------------

NAME_CASES = ["measurement", "tag key", "tag value", "field key"]


def _point_with(where: str, name: Any) -> Point:
    if where == "measurement":
        return Point(name, {"x": 1})
    if where == "tag key":
        return Point("m", {"x": 1}, {name: "v"})
    if where == "tag value":
        return Point("m", {"x": 1}, {"k": name})
    return Point("m", {name: 1})


@pytest.mark.parametrize("where", NAME_CASES)
def test_empty_names_are_refused(where: str) -> None:
    with pytest.raises(PointError, match="empty"):
        _point_with(where, "")


@pytest.mark.parametrize("where", NAME_CASES)
@pytest.mark.parametrize("name", ["a\nb", "a\rb", "\n", "end\r\n"])
def test_line_breaks_in_names_are_refused(where: str, name: str) -> None:
    with pytest.raises(PointError, match="line break"):
        _point_with(where, name)


@pytest.mark.parametrize("where", NAME_CASES)
@pytest.mark.parametrize("name", [1, 1.5, None, b"bytes", True])
def test_names_must_be_text(where: str, name: Any) -> None:
    with pytest.raises(PointError, match="must be text"):
        _point_with(where, name)


@pytest.mark.parametrize("where", NAME_CASES)
@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("end\\", "at the end"),
        ("\\", "at the end"),
        ("a\\\\b", "before '\\\\\\\\'"),
        ("a\\,b", "before ','"),
        ("a\\=b", "before '='"),
        ("a\\ b", "before ' '"),
    ],
)
def test_backslashes_a_parser_would_read_as_escapes_are_refused(where: str, name: str, why: str) -> None:
    with pytest.raises(PointError, match=why) as info:
        _point_with(where, name)
    assert "backslash" in str(info.value)


@pytest.mark.parametrize("where", NAME_CASES)
@pytest.mark.parametrize("name", ["C:\\data", "a\\b", "\\n", 'x\\"y', "\\tab", "ü\\ö"])
def test_a_backslash_before_an_ordinary_character_is_a_literal_and_allowed(where: str, name: str) -> None:
    _point_with(where, name)


@pytest.mark.parametrize(
    ("where", "name"),
    [
        (where, name)
        for where in NAME_CASES
        for name in ["a,b", "a=b", "a b", ' "q" ', "#hash", "Grüße 🌡", "tab\there"]
        if not (where == "measurement" and name.startswith("#"))  # refused: see the test below
    ],
)
def test_names_with_characters_that_need_escaping_are_allowed(where: str, name: str) -> None:
    _point_with(where, name)


def test_a_measurement_starting_with_hash_is_refused_as_it_reads_as_a_comment() -> None:
    with pytest.raises(PointError, match="comment"):
        Point("#temp", {"x": 1})
    Point("temp#1", {"x": 1})  # elsewhere '#' is an ordinary character


@pytest.mark.parametrize("name", ["\tm"])  # (a NUL is refused anywhere in a name: see below)
def test_a_measurement_or_field_key_starting_with_a_character_parsers_skip_is_refused(name: str) -> None:
    with pytest.raises(PointError, match="skip"):
        Point(name, {"x": 1})
    with pytest.raises(PointError, match="skip"):
        Point("m", {name: 1})
    Point("a" + name, {"x" + name: 1}, {name: name}, 1)  # elsewhere they are ordinary characters


def test_a_point_needs_at_least_one_field() -> None:
    with pytest.raises(PointError, match="no fields"):
        Point("m", {})


# --- field values ------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_nan_and_infinity_are_refused_with_a_clear_error(value: float) -> None:
    with pytest.raises(PointError, match="NaN and infinity cannot be stored") as info:
        Point("m", {"temperature": value})
    assert "'temperature'" in str(info.value)


@pytest.mark.parametrize("value", [INT64_MIN, INT64_MAX, 0, -1])
def test_integers_within_int64_are_kept(value: int) -> None:
    assert Point("m", {"n": value}).fields["n"] == value


@pytest.mark.parametrize("value", [INT64_MIN - 1, INT64_MAX + 1, 2**100])
def test_integers_outside_int64_are_refused(value: int) -> None:
    with pytest.raises(PointError, match="64-bit"):
        Point("m", {"n": value})


@pytest.mark.parametrize("value", [None, b"x", [1], {"a": 1}, 1j, object()])
def test_other_value_types_are_refused(value: Any) -> None:
    with pytest.raises(PointError, match="expected a number, a boolean or text"):
        Point("m", {"v": value})


def test_subclasses_of_the_value_types_are_refused() -> None:
    # numpy scalars and IntEnums look like numbers but would be encoded by their repr.
    import enum

    class Level(enum.IntEnum):
        HIGH = 2

    with pytest.raises(PointError):
        Point("m", {"v": Level.HIGH})


def test_string_values_may_hold_anything_encodable() -> None:
    point = Point("m", {"s": 'line 1\nline 2\r\n "quoted" \\ back'})
    assert point.fields["s"] == 'line 1\nline 2\r\n "quoted" \\ back'


@pytest.mark.parametrize("where", ["measurement", "tag key", "tag value", "field key", "field value"])
def test_text_that_cannot_be_utf8_encoded_is_refused(where: str) -> None:
    # A lone surrogate (from a badly decoded payload) would make every later write of the batch fail.
    bad = "bad\ud800"
    with pytest.raises(PointError, match="UTF-8"):
        if where == "field value":
            Point("m", {"s": bad})
        else:
            _point_with(where, bad)


# --- time --------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [1.5, "1700000000000000000", True, 10**30])
def test_time_must_be_integer_nanoseconds(value: Any) -> None:
    with pytest.raises(PointError, match="time"):
        Point("m", {"x": 1}, time=value)


def test_time_accepts_the_range_influxdb_can_store() -> None:
    # InfluxDB's valid range is int64 minus its two extremes at each end (reserved values).
    Point("m", {"x": 1}, time=-(2**63) + 2)
    Point("m", {"x": 1}, time=2**63 - 2)
    Point("m", {"x": 1}, time=-1)  # before 1970 is fine
    for outside in (-(2**63), -(2**63) + 1, 2**63 - 1):
        with pytest.raises(PointError, match="time"):
            Point("m", {"x": 1}, time=outside)


# --- equality ----------------------------------------------------------------------------------


def test_equal_points_compare_equal() -> None:
    a = Point("m", {"x": 1, "y": "s"}, {"t": "v"}, 5)
    b = Point("m", {"y": "s", "x": 1}, {"t": "v"}, 5)
    assert a == b


@pytest.mark.parametrize(("left", "right"), [(1, 1.0), (1, True), (0, False), (1.0, True), ("1", 1)])
def test_equality_keeps_value_types(left: Any, right: Any) -> None:
    assert Point("m", {"x": left}, time=1) != Point("m", {"x": right}, time=1)


@pytest.mark.parametrize(
    "other",
    [
        Point("n", {"x": 1}, {"t": "v"}, 5),
        Point("m", {"x": 2}, {"t": "v"}, 5),
        Point("m", {"x": 1}, {"t": "w"}, 5),
        Point("m", {"x": 1}, None, 5),
        Point("m", {"x": 1}, {"t": "v"}, 6),
        Point("m", {"x": 1, "z": 1}, {"t": "v"}, 5),
    ],
)
def test_points_differing_anywhere_are_not_equal(other: Point) -> None:
    assert Point("m", {"x": 1}, {"t": "v"}, 5) != other


def test_points_are_not_hashable_and_not_equal_to_other_things() -> None:
    point = Point("m", {"x": 1}, time=1)
    assert point != ("m", {"x": 1}, {}, 1)
    with pytest.raises(TypeError):
        hash(point)


def test_repr_shows_everything() -> None:
    text = repr(Point("m", {"x": 1}, {"t": "v"}, 5))
    assert text == "Point('m', fields={'x': 1}, tags={'t': 'v'}, time=5)"


@pytest.mark.parametrize(
    "make",
    [
        lambda: Point("x" * 100_000 + "\n", {"f": 1}),
        lambda: Point("m", {"k" * 100_000: math.nan}),
        lambda: Point("m", {"n": 2**100_000}),
        lambda: Point("m", {"n": 1}, time=2**100_000),
        lambda: Point("m", {"n": 1}, {"t" * 100_000: "a\\"}),
    ],
)
def test_error_messages_stay_short_for_huge_inputs(make: Any) -> None:
    with pytest.raises(PointError) as info:
        make()
    assert len(str(info.value)) < 300


@pytest.mark.parametrize("where", ["measurement", "tag key", "tag value", "field key"])
def test_a_nul_character_in_a_name_is_refused(where: str) -> None:
    bad = "line\x00A"
    kwargs: dict[str, Any] = {"measurement": "m", "fields": {"v": 1.0}, "tags": {"t": "x"}}
    if where == "measurement":
        kwargs["measurement"] = bad
    elif where == "tag key":
        kwargs["tags"] = {bad: "x"}
    elif where == "tag value":
        kwargs["tags"] = {"t": bad}
    else:
        kwargs["fields"] = {bad: 1.0}
    with pytest.raises(PointError, match="NUL character"):
        Point(**kwargs)
