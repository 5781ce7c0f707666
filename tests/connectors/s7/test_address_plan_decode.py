"""S7 addresses, values and request planning: pure functions, checked against python-snap7's own
tag parser and byte helpers where they overlap, and against the S7comm limits."""

# ruff: noqa: E501 - the expected error messages are compared whole, one case per line

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from snap7 import util as snap7_util
from snap7.tags import PLC4XTag
from snap7.type import Area as Snap7Area

from connectors.s7._client import ItemError, split_items
from connectors.s7.address import AddressError, Variable, parse
from connectors.s7.decode import DecodeProblem, decode, encode
from connectors.s7.plan import MAX_ITEMS, Plan, max_item_bytes, max_items, plan
from tests.helpers import examples

# --- addresses ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "type_", "length", "expected"),
    [
        ("DB1.DBD0", "real", None, Variable("DB", 1, 0, "real")),
        ("DB1.DBD4", "dint", None, Variable("DB", 1, 4, "dint")),
        ("DB1.DBW8", "int", None, Variable("DB", 1, 8, "int")),
        ("DB1.DBX10.0", None, None, Variable("DB", 1, 10, "bool", bit=0)),
        ("DB2.DBB0", "string", 20, Variable("DB", 2, 0, "string", length=20)),
        ("M10.1", None, None, Variable("M", 0, 10, "bool", bit=1)),
        ("MW20", "word", None, Variable("M", 0, 20, "word")),
        ("DB1.DBB16", "lreal", None, Variable("DB", 1, 16, "lreal")),
        ("DB1.DBD0", None, None, Variable("DB", 1, 0, "dword")),
        ("MB3", None, None, Variable("M", 0, 3, "byte")),
        ("%IW64", "int", None, Variable("I", 0, 64, "int")),
        ("EW64", "int", None, Variable("I", 0, 64, "int")),  # German: Eingang
        ("E0.7", None, None, Variable("I", 0, 0, "bool", bit=7)),
        ("AB4", "char", None, Variable("Q", 0, 4, "char")),  # German: Ausgang
        ("Q0.1", None, None, Variable("Q", 0, 0, "bool", bit=1)),
        ("QD8", "udint", None, Variable("Q", 0, 8, "udint")),
        ("db1.dbd0", "real", None, Variable("DB", 1, 0, "real")),
        # the PLC4X form
        ("DB1.DBD0:REAL", None, None, Variable("DB", 1, 0, "real")),
        ("DB1:16:LREAL", None, None, Variable("DB", 1, 16, "lreal")),
        ("DB1:10.3:BOOL", None, None, Variable("DB", 1, 10, "bool", bit=3)),
        ("DB2:0:STRING[20]", None, None, Variable("DB", 2, 0, "string", length=20)),
        ("DB2.DBB0:STRING(20)", None, None, Variable("DB", 2, 0, "string", length=20)),
        ("%M10.1:BOOL", None, None, Variable("M", 0, 10, "bool", bit=1)),
        ("MW20:WORD", None, None, Variable("M", 0, 20, "word")),
        ("DB1.DBD0:REAL", "real", None, Variable("DB", 1, 0, "real")),
    ],
)
def test_addresses_in_step7_and_plc4x_notation(
    address: str, type_: str | None, length: int | None, expected: Variable
) -> None:
    assert parse(address, type_, length) == expected


@pytest.mark.parametrize(
    "address",
    ["DB1.DBD0:REAL", "DB1:16:LREAL", "DB1.DBX10.3:BOOL", "DB2:0:STRING[20]", "M10.1:BOOL", "MW20:WORD", "I0.0:BOOL",
     "Q4.7:BOOL", "DB3.DBW8:INT", "DB3.DBB2:USINT", "DB1:100:DINT"],
)
def test_the_plc4x_form_means_what_python_snap7s_tag_parser_reads(address: str) -> None:
    tag = PLC4XTag.parse(address)
    variable = parse(address)
    areas = {"DB": Snap7Area.DB, "M": Snap7Area.MK, "I": Snap7Area.PE, "Q": Snap7Area.PA}
    assert (areas[variable.area], variable.start, variable.size) == (tag.area, tag.byte_offset, tag.size)
    assert variable.db == (tag.db_number if variable.area == "DB" else 0)
    assert (variable.bit or 0) == tag.bit


@pytest.mark.parametrize(
    ("address", "type_", "length", "message"),
    [
        ("DB1.DBW8", "real", None, "'DB1.DBW8' is a word (2 bytes) but real takes 4 bytes: write DB1.DBD8 for a real"),
        ("DB1.DBD8", "int", None, "'DB1.DBD8' is a double word (4 bytes) but int takes 2 bytes: write DB1.DBW8 for a int"),
        ("DB1.DBD16", "lreal", None, "'DB1.DBD16': a lreal is addressed by its first byte: write DB1.DBB16"),
        ("DB2.DBW0", "string", 20, "'DB2.DBW0': a string is addressed by its first byte: write DB2.DBB0"),
        ("DB1.DBW8", "bool", None, "'DB1.DBW8' is a word (2 bytes): a bool is one bit, e.g. DB1.DBX8.0"),
        ("MB10", "bool", None, "'MB10' is a byte: a bool is one bit, e.g. M10.0"),
        (
            "DB1.DBX10.0",
            "int",
            None,
            "'DB1.DBX10.0' is a single bit, so its type is bool; a int is addressed as a whole: DB1.DBW10",
        ),
        ("DB1.DBX0.8", None, None, "'DB1.DBX0.8': a bit is 0–7 (bit 8 of byte 0 does not exist)"),
        ("DB0.DBW0", None, None, "'DB0.DBW0': data block numbers are 1–65535"),
        ("M10", None, None, "'M10': give the width — M10.0 for a bit, MB10 for a byte, MW10 for a word, MD10 for a double word"),
        ("DB2.DBB0", "string", None, "'DB2.DBB0': type string needs 'length' — the n of STRING[n] in the PLC (without it STRING is STRING[254])"),
        ("DB2.DBB0", "string", 255, "'DB2.DBB0': an S7 STRING holds 1–254 characters (length: 255)"),
        ("DB1.DBW0", "int", 4, "'DB1.DBW0': 'length' is only for type string (this field is int)"),
        ("DB1.DBD0:REAL", "dint", None, "'DB1.DBD0:REAL' says real but the field says type: dint; keep one of the two"),
        ("DB1.DBD0:REAL[4]", None, None, "'DB1.DBD0:REAL[4]': arrays are not read as one field; give each element its own field and address"),
        ("DB1.DBD0:TIME", None, None, "'DB1.DBD0:TIME': unknown type 'TIME'; the types are bool, byte, char, sint, usint, word, int, uint, dword, dint, udint, real, lword, lint, ulint, lreal, string"),
        ("DB1:16", None, None, "'DB1:16': the PLC4X form ends with the type, e.g. DB1:16:REAL"),
        ("DB1.DBB65534", "lreal", None, "'DB1.DBB65534': lreal at byte 65534 takes 8 bytes, up to byte 65541: beyond the last byte the connector reads (65535)"),
        ("PIW256", None, None, "'PIW256': peripheral addresses (PIW, PQW …) are not read through S7 communication; read the process image instead (IW, QW …)"),
        ("T5", None, None, "'T5': timers and counters are not supported; copy the value into a data block or merker word"),
        ("DB1", None, None, "'DB1': a data block address names a byte too, e.g. DB1.DBD0, DB1.DBW8, DB1.DBX10.0 or DB1.DBB0"),
        ("speed", None, None, "'speed' is not an S7 address: write it in STEP 7 notation (DB1.DBD0, DB1.DBX10.0, M10.1, MW20, IW64, QB4) or the PLC4X form (DB1.DBD0:REAL, DB1:16:LREAL)"),
    ],
)  # fmt: skip
def test_a_wrong_address_or_a_type_that_does_not_fit_says_what_to_write(
    address: str, type_: str | None, length: int | None, message: str
) -> None:
    with pytest.raises(AddressError) as caught:
        parse(address, type_, length)
    assert str(caught.value) == message


# --- values ------------------------------------------------------------------------------

VALUES: list[tuple[str, int | float | str]] = [
    ("byte", 0xA5),
    ("usint", 255),
    ("sint", -128),
    ("char", "Z"),
    ("word", 0xBEEF),
    ("uint", 65535),
    ("int", -12345),
    ("dword", 0xDEADBEEF),
    ("udint", 4_000_000_123),
    ("dint", -2_000_000_123),
    ("real", -1234.5),
    ("lword", 2**62 + 7),
    ("ulint", 2**63 + 9),
    ("lint", -(2**62) - 12345),
    ("lreal", 2.718281828459045),
]


@pytest.mark.parametrize(("type_", "value"), VALUES)
def test_every_type_round_trips_and_matches_python_snap7s_helpers(type_: str, value: int | float | str) -> None:
    variable = Variable("DB", 1, 0, type_)
    data = encode(type_, value)
    assert len(data) == variable.size
    expected = float(value) if type_ in ("ulint", "lword") and isinstance(value, int) and value >= 2**63 else value
    assert decode(variable, data) == expected
    getters = {
        "byte": snap7_util.get_byte,
        "usint": snap7_util.get_usint,
        "sint": snap7_util.get_sint,
        "word": snap7_util.get_word,
        "uint": snap7_util.get_uint,
        "int": snap7_util.get_int,
        "dword": snap7_util.get_dword,
        "udint": snap7_util.get_udint,
        "dint": snap7_util.get_dint,
        "real": snap7_util.get_real,
        "lreal": snap7_util.get_lreal,
        "lint": snap7_util.get_lint,
        "ulint": snap7_util.get_ulint,
        "lword": snap7_util.get_lword,
        "char": snap7_util.get_char,
    }
    assert getters[type_](bytearray(data), 0) == value


def test_bits_strings_scale_and_no_value() -> None:
    data = encode("bool", True, bit=3, current=0b0000_0001)
    assert data == bytes([0b0000_1001])
    assert decode(Variable("M", 0, 10, "bool", bit=3), data) is True
    assert decode(Variable("M", 0, 10, "bool", bit=1), data) is False
    text = encode("string", "Müsli 500g", length=20)
    assert len(text) == 22 and text[:2] == bytes([20, 10])
    assert snap7_util.get_string(bytearray(text), 0) == "Müsli 500g"  # the library reads our encoding alike
    assert decode(Variable("DB", 2, 0, "string", length=20), text) == "Müsli 500g"
    assert decode(Variable("DB", 1, 8, "int"), encode("int", 215), scale=0.1) == pytest.approx(21.5)
    assert decode(Variable("DB", 1, 8, "int"), encode("int", 215), scale=0.1, offset=-20) == pytest.approx(1.5)
    with pytest.raises(DecodeProblem, match="no valid value"):
        decode(Variable("DB", 1, 0, "real"), struct.pack(">f", math.nan))
    # A STRING[30] in the PLC read with length: 20 holding 25 characters cannot be read whole.
    longer = bytes([30, 25]) + b"x" * 20
    with pytest.raises(DecodeProblem, match="set length: 30"):
        decode(Variable("DB", 2, 0, "string", length=20), longer)
    with pytest.raises(DecodeProblem, match="no S7 STRING here"):
        decode(Variable("DB", 2, 0, "string", length=20), bytes([10, 50]) + b"x" * 20)


# --- the answer's items ------------------------------------------------------------------


def test_split_items_reads_each_items_data_or_error_with_the_fill_bytes() -> None:
    data = (
        bytes([0xFF, 0x04, 0x00, 3 * 8]) + b"abc" + b"\0"  # 3 bytes, padded
        + bytes([0x0A, 0x00, 0x00, 0x00])  # a DB that does not exist
        + bytes([0xFF, 0x09, 0x00, 2]) + b"de"  # octet string: the length in bytes
        + bytes([0xFF, 0x04, 0x00, 1 * 8]) + b"f"  # the last item: no fill byte
    )  # fmt: skip
    assert split_items(data, [3, 4, 2, 1]) == [b"abc", ItemError(0x0A), b"de", b"f"]
    with pytest.raises(ValueError, match="instead of the 4"):
        split_items(bytes([0xFF, 0x04, 0x00, 16]) + b"ab", [4])
    with pytest.raises(ValueError, match="ends before item 2"):
        split_items(bytes([0xFF, 0x04, 0x00, 8]) + b"a", [1, 1])


# --- planning ----------------------------------------------------------------------------


def _check(planned: Plan, variables: list[Variable]) -> None:
    """Every request within the PDU and the item limit; every variable's bytes read exactly once."""
    limit = max_items(planned.pdu)
    for request in planned.requests:
        assert len(request.items) <= limit <= MAX_ITEMS
        assert request.request_bytes() <= planned.pdu
        assert request.answer_bytes() <= planned.pdu
    covered: dict[int, int] = {}
    for request in planned.requests:
        for item in request.items:
            for offset in range(item.offset, item.offset + item.size):
                key = item.span * 100_000 + offset
                covered[key] = covered.get(key, 0) + 1
    assert set(covered.values()) == {1}
    for index, variable in enumerate(variables):
        (span,) = [s for s in planned.spans if index in s.members]
        assert (span.area, span.db) == (variable.area, variable.db)
        assert span.start <= variable.start and variable.end <= span.start + span.size


def test_limits_at_each_pdu_size() -> None:
    assert (max_items(240), max_items(480), max_items(960)) == (19, 20, 20)
    assert (max_item_bytes(240), max_item_bytes(480), max_item_bytes(960)) == (222, 462, 942)


def test_scattered_variables_fill_requests_up_to_the_item_limit() -> None:
    # 60 REALs, each in its own DB: nothing merges; 60 items at 20 per request = 3 requests
    # (at PDU 240: 19 per request = 4 requests).
    variables = [Variable("DB", db, 0, "real") for db in range(1, 61)]
    for pdu, expected in ((480, 3), (960, 3), (240, 4)):
        planned = plan(variables, pdu)
        _check(planned, variables)
        assert len(planned.requests) == expected


def test_close_variables_merge_into_one_item_and_large_blocks_fill_the_answer() -> None:
    # 500 REALs back to back in DB1 = 2000 bytes: merged, then cut at what one item carries.
    variables = [Variable("DB", 1, 4 * i, "real") for i in range(500)]
    planned = plan(variables, 480)
    _check(planned, variables)
    assert len(planned.requests) == math.ceil(2000 / max_item_bytes(480))  # 5: the fewest the answers allow
    planned = plan(variables, 240)
    _check(planned, variables)
    assert len(planned.requests) == math.ceil(2000 / 222)
    # A gap of more than max_gap bytes starts a new item; within it, the gap is read.
    spread = [Variable("DB", 1, 0, "real"), Variable("DB", 1, 10, "real"), Variable("DB", 1, 40, "real")]
    planned = plan(spread, 480, max_gap=16)
    assert [(s.start, s.size) for s in planned.spans] == [(0, 14), (40, 4)]
    assert len(planned.requests) == 1


def test_bits_share_their_byte_and_every_area_is_its_own_item() -> None:
    variables = [
        Variable("DB", 1, 10, "bool", bit=0),
        Variable("DB", 1, 10, "bool", bit=1),
        Variable("DB", 1, 8, "word"),
        Variable("M", 0, 10, "bool", bit=1),
        Variable("M", 0, 20, "word"),
        Variable("I", 0, 0, "bool", bit=0),
        Variable("Q", 0, 0, "bool", bit=1),
    ]
    planned = plan(variables, 240)
    _check(planned, variables)
    assert [(s.area, s.start, s.size) for s in planned.spans] == [
        ("DB", 8, 3),
        ("M", 10, 12),
        ("I", 0, 1),
        ("Q", 0, 1),
    ]
    assert len(planned.requests) == 1


def test_a_string_longer_than_one_item_is_read_in_pieces() -> None:
    variables = [Variable("DB", 2, 0, "string", length=254), Variable("DB", 3, 0, "real")]
    planned = plan(variables, 240)
    _check(planned, variables)
    pieces = [i for r in planned.requests for i in r.items if i.span == 0]
    assert sorted((p.offset, p.size) for p in pieces) == [(0, 128), (128, 128)]


def test_alone_fields_are_items_of_their_own() -> None:
    variables = [Variable("DB", 1, 2 * i, "int") for i in range(4)]
    assert len(plan(variables, 480).spans) == 1
    planned = plan(variables, 480, alone={3})
    assert [s.members for s in planned.spans] == [(0, 1, 2), (3,)]


@settings(max_examples=examples(200, 1000), deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["DB", "M", "I", "Q"]),
            st.integers(1, 4),
            st.integers(0, 600),
            st.sampled_from(["bool", "byte", "int", "real", "lreal", "string"]),
        ),
        min_size=1,
        max_size=120,
    ),
    st.sampled_from([240, 480, 960]),
    st.integers(0, 40),
)
def test_any_layout_is_planned_within_the_limits_and_reads_everything(
    specs: list[tuple[str, int, int, str]], pdu: int, gap: int
) -> None:
    variables = [
        Variable(
            area,  # type: ignore[arg-type]  # sampled from the four areas
            db if area == "DB" else 0,
            start,
            kind,
            bit=0 if kind == "bool" else None,
            length=200 if kind == "string" else None,
        )
        for area, db, start, kind in specs
    ]
    planned = plan(variables, pdu, max_gap=gap)
    _check(planned, variables)
    # No plan needs fewer requests than the answers' bytes or the item limit allow.
    items = [i for r in planned.requests for i in r.items]
    lower = max(
        math.ceil(sum(i.answer_cost for i in items) / (pdu - 14)),
        math.ceil(len(items) / max_items(pdu)),
    )
    assert lower <= len(planned.requests) <= lower + 1 + lower // 4
