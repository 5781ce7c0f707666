"""Any bytes a PLC answers decode to a value or one DecodeProblem; any address text parses or is one AddressError.

Property tests: every S7 type with every byte pattern (NaN reals, strings whose header lies),
with the scale and offset the config accepts, gives a value a Point can hold or the field's
own DecodeProblem (reported for that field only); an address written any way gives a
Variable or an AddressError that says what is wrong, never another exception.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.s7.address import TYPES, AddressError, Variable, parse
from connectors.s7.decode import DecodeProblem, decode, encode
from gateway.point import Point
from tests.helpers import examples

scales = st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False), st.sampled_from([5e-324, 1e308]))


@settings(max_examples=examples(300, 3000))
@given(
    type_=st.sampled_from([t for t in TYPES if t != "bool"] + ["bool"]),
    length=st.integers(1, 254),
    bit=st.integers(0, 7),
    scale=scales,
    offset=scales,
    data=st.data(),
)
def test_any_bytes_give_a_storable_value_or_a_decode_problem(
    type_: str, length: int, bit: int, scale: float | None, offset: float | None, data: st.DataObject
) -> None:
    variable = Variable(
        "DB", 1, 0, type_, bit=bit if type_ == "bool" else None, length=length if type_ == "string" else None
    )
    raw = data.draw(st.binary(min_size=variable.size, max_size=variable.size))
    numeric = type_ not in ("bool", "char", "string")
    try:
        value = decode(variable, raw, scale if numeric else None, offset if numeric else None)
    except DecodeProblem as exc:
        assert str(exc)
        return
    Point("m", {"v": value})


@settings(max_examples=examples(300, 3000))
@given(type_=st.sampled_from([t for t in TYPES if t not in ("bool", "string")]), data=st.data())
def test_every_byte_pattern_round_trips_through_encode(type_: str, data: st.DataObject) -> None:
    variable = Variable("DB", 1, 0, type_)
    raw = data.draw(st.binary(min_size=variable.size, max_size=variable.size))
    try:
        value = decode(variable, raw)
    except DecodeProblem:
        return  # a NaN or infinite real: nothing to write back
    if type_ in ("ulint", "lword") and isinstance(value, float):
        return  # past int64 it is stored as a float: not the same bytes
    assert encode(type_, value) == raw


_ADDRESS_TOKENS = [
    "DB",
    "1",
    ".",
    "DBX",
    "DBB",
    "DBW",
    "DBD",
    "M",
    "MW",
    "I",
    "IW",
    "Q",
    "E",
    "A",
    "%",
    ":",
    "REAL",
    "string",
    "[",
    "]",
    "20",
    "7",
    "8",
    "65535",
    "99999999999999999999",
    " ",
    "x",
    "-",
]


@settings(max_examples=examples(300, 3000))
@given(
    text=st.one_of(st.text(max_size=30), st.lists(st.sampled_from(_ADDRESS_TOKENS), max_size=8).map("".join)),
    type_=st.one_of(st.none(), st.sampled_from([*TYPES, "REAL", "unknown", ""])),
    length=st.one_of(st.none(), st.integers(-5, 300)),
)
def test_any_address_text_parses_or_is_one_address_error(text: str, type_: str | None, length: int | None) -> None:
    try:
        variable = parse(text, type_, length)
    except AddressError as exc:
        assert str(exc)
        return
    assert variable.size >= 1


def test_a_scale_or_offset_that_is_not_a_number_is_a_config_error() -> None:
    from pydantic import ValidationError

    from connectors.s7.config import S7Config

    for key in ("scale", "offset"):
        for bad in (float("nan"), float("inf")):
            config = {
                "name": "plc",
                "type": "s7",
                "host": "127.0.0.1",
                "fields": [{"name": "v", "address": "DB1.DBD0", "type": "real", key: bad}],
            }
            try:
                S7Config.model_validate(config)
            except ValidationError as exc:
                assert "finite" in str(exc)
            else:
                raise AssertionError(f"{key}: {bad} was accepted")


def test_a_type_given_beside_the_address_is_read_in_any_case_or_refused_by_name() -> None:
    """Found by the ci profile: parse("MW0", "REAL") raised KeyError instead of reading a real."""
    assert parse("MD0", "REAL").type == "real"
    try:
        parse("MW0", "float")
    except AddressError as exc:
        assert "unknown type 'float'" in str(exc)
    else:
        raise AssertionError("an unknown type was accepted")
