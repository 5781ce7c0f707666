"""Request planning and decoding (pure functions, no server)."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.modbus.config import ModbusField
from connectors.modbus.decode import ORDERS, decode, encode, ordered_bytes
from connectors.modbus.plan import plan, split


def _f(name: str, area: str, address: int, **options: object) -> ModbusField:
    return ModbusField.model_validate({"name": name, "area": area, "address": address, **options})


def test_near_fields_merge_far_ones_do_not() -> None:
    fields = [
        _f("a", "holding", 0, type="float32"),
        _f("b", "holding", 12),  # 10 unused registers after a: still one read
        _f("c", "holding", 24),  # 11 unused after b: a new read
        _f("d", "input", 0),
        _f("e", "coil", 0),
        _f("f", "coil", 161),  # 160 coils of gap = 16 x 10: still one read
    ]
    requests = plan(fields, max_gap=10)
    assert [(r.area, r.address, r.count, [f.name for f in r.fields]) for r in requests] == [
        ("coil", 0, 162, ["e", "f"]),
        ("holding", 0, 13, ["a", "b"]),
        ("holding", 24, 1, ["c"]),
        ("input", 0, 1, ["d"]),
    ]


def test_reads_stay_within_the_protocols_limits() -> None:
    registers = [_f(f"r{i}", "holding", i * 2, type="float32") for i in range(200)]  # 400 registers, no gaps
    requests = plan(registers)
    assert [r.count for r in requests] == [124, 124, 124, 28]  # never a float split across two reads
    assert all(r.count <= 125 for r in requests)
    coils = [_f(f"c{i}", "coil", i) for i in range(5000)]
    assert [r.count for r in plan(coils)] == [2000, 2000, 1000]
    assert [r.count for r in plan(registers, max_registers=50)][:2] == [50, 50]


def test_bits_of_one_register_share_a_read_and_split_keeps_them_together() -> None:
    fields = [_f("word", "holding", 10), _f("b3", "holding", 10, bit=3), _f("b4", "holding", 10, bit=4)]
    fields.append(_f("next", "holding", 11, type="uint32"))
    (request,) = plan(fields)
    assert (request.address, request.count) == (10, 3)
    parts = split(request)
    assert [(r.address, r.count, [f.name for f in r.fields]) for r in parts] == [
        (10, 1, ["word", "b3", "b4"]),
        (11, 2, ["next"]),
    ]


def test_the_four_byte_orders_of_a_32_bit_value() -> None:
    registers = {"ABCD": [0x1122, 0x3344], "CDAB": [0x3344, 0x1122], "BADC": [0x2211, 0x4433], "DCBA": [0x4433, 0x2211]}
    for order, words in registers.items():
        assert ordered_bytes(words, order) == bytes.fromhex("11223344"), order  # type: ignore[arg-type]
        assert encode("uint32", 0x11223344, order) == words  # type: ignore[arg-type]
    assert ordered_bytes([0x1122, 0x3344, 0x5566, 0x7788], "CDAB") == bytes.fromhex("7788556633441122")


_VALUES = {
    "int16": st.integers(-(2**15), 2**15 - 1),
    "uint16": st.integers(0, 2**16 - 1),
    "int32": st.integers(-(2**31), 2**31 - 1),
    "uint32": st.integers(0, 2**32 - 1),
    "int64": st.integers(-(2**63), 2**63 - 1),
    "uint64": st.integers(0, 2**63 - 1),
    "float32": st.floats(width=32, allow_nan=False, allow_infinity=False),
    "float64": st.floats(allow_nan=False, allow_infinity=False),
}


@pytest.mark.parametrize("kind", sorted(_VALUES))
@given(data=st.data())
def test_every_type_round_trips_in_every_order(kind: str, data: st.DataObject) -> None:
    value = data.draw(_VALUES[kind])
    order = data.draw(st.sampled_from(ORDERS))
    field = _f("v", "holding", 0, type=kind, byte_order=order)
    assert decode(field, encode(kind, value, order), order) == value


def test_scale_offset_strings_bits_and_big_uint64() -> None:
    assert decode(_f("e", "holding", 0, type="uint32", scale=0.01), [0, 12345], "ABCD") == 123.45
    # 1234572 * 0.01 would be 12345.720000000001: the decimal the meter means is kept
    assert decode(_f("e", "holding", 0, type="uint32", scale=0.01), encode("uint32", 1234572), "ABCD") == 12345.72
    assert decode(_f("e", "holding", 0, type="uint16", scale=2.5), [4], "ABCD") == 10.0
    assert decode(_f("t", "input", 0, type="int16", scale=0.1, offset=-40), [650], "ABCD") == pytest.approx(25.0)
    text = encode("string", "AB-12", "ABCD", length=4)
    assert text == [0x4142, 0x2D31, 0x3200, 0]
    assert decode(_f("s", "holding", 0, type="string", length=4), text, "ABCD") == "AB-12"
    assert decode(_f("s", "holding", 0, type="string", length=4), encode("string", "AB-12", "BADC", length=4), "BADC")
    assert decode(_f("b", "holding", 0, bit=15), [0x8000], "ABCD") is True
    assert decode(_f("b", "holding", 0, bit=15), [0x8000], "BADC") is False  # the bytes are swapped first
    big = decode(_f("u", "holding", 0, type="uint64"), encode("uint64", 2**64 - 1), "ABCD")
    assert isinstance(big, float) and big == float(2**64 - 1)


def test_a_nan_is_a_problem_not_a_value() -> None:
    nan = list(struct.unpack(">HH", struct.pack(">f", math.nan)))
    with pytest.raises(ValueError, match="no valid value"):
        decode(_f("v", "input", 0, type="float32"), nan, "ABCD")
