"""Any registers a device answers decode to a value or one DecodeProblem (property tests).

A meter may answer anything: every register value, every type, byte order, scale and offset
the config accepts gives a value a Point can hold (the field's own error otherwise, which
the source reports for that field only), and never another exception.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from connectors.modbus.config import ModbusField
from connectors.modbus.decode import ORDERS, DecodeProblem, decode
from gateway.point import Point
from tests.helpers import examples

KINDS = ["int16", "uint16", "int32", "uint32", "float32", "int64", "uint64", "float64", "string", "bit", "bool"]
numbers = st.one_of(st.none(), st.floats(), st.sampled_from([5e-324, 1e-310, 1e308, -1e308, 0.0, 0.1, 0.001]))


@settings(max_examples=examples(300, 3000))
@given(
    kind=st.sampled_from(KINDS),
    order=st.sampled_from(ORDERS),
    scale=numbers,
    offset=numbers,
    length=st.integers(1, 8),
    bit=st.integers(0, 15),
    data=st.data(),
)
def test_any_registers_give_a_storable_value_or_a_decode_problem(
    kind: str, order: Any, scale: float | None, offset: float | None, length: int, bit: int, data: st.DataObject
) -> None:
    spec: dict[str, Any] = {"name": "v", "area": "coil" if kind == "bool" else "holding", "address": 0}
    if kind == "bit":
        spec["bit"] = bit
    elif kind != "bool":
        spec["type"] = kind
    if kind == "string":
        spec["length"] = length
    if kind not in ("bool", "bit", "string"):
        spec.update(scale=scale, offset=offset)
    try:
        field = ModbusField.model_validate(spec)
    except ValidationError:
        assume(False)  # the config refuses it (e.g. a scale of NaN): never reaches the decoder
        raise
    registers = data.draw(st.lists(st.integers(0, 0xFFFF), min_size=field.size, max_size=field.size))
    try:
        value = decode(field, registers, order)
    except DecodeProblem as exc:
        assert str(exc)
        return
    Point("m", {"v": value})  # a value decode returns is one a store can hold


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_a_scale_or_offset_that_is_not_a_number_is_a_config_error(bad: float) -> None:
    for key in ("scale", "offset"):
        with pytest.raises(ValidationError, match="finite"):
            ModbusField.model_validate({"name": "v", "area": "holding", "address": 0, "type": "float32", key: bad})


def test_a_tiny_scale_and_a_scale_that_overflows_are_decode_problems_or_values() -> None:
    tiny = ModbusField.model_validate({"name": "v", "area": "holding", "address": 0, "type": "uint16", "scale": 5e-324})
    assert decode(tiny, [2], "ABCD") == 1e-323  # 1 / 5e-324 is infinite: no division, a product
    huge = ModbusField.model_validate({"name": "v", "area": "holding", "address": 0, "type": "float64", "scale": 1e308})
    with pytest.raises(DecodeProblem, match="inf, which cannot be stored"):
        decode(huge, [0x4024, 0, 0, 0], "ABCD")  # 10.0 * 1e308
