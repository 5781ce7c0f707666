"""Test data shared by the Modbus tests against pymodbus's server and against the npm peer."""

from __future__ import annotations

from typing import Any

from connectors.modbus.decode import ORDERS
from gateway.simulators.modbus import Unit

#: (type, value) pairs that every byte order must carry exactly (floats exactly representable).
NUMBERS: list[tuple[str, int | float]] = [
    ("int16", -12345),
    ("uint16", 54321),
    ("int32", -2_000_000_123),
    ("uint32", 4_000_000_123),
    ("int64", -(2**62) - 12345),
    ("uint64", 2**62 + 98765),
    ("float32", -1234.5),
    ("float64", 2.718281828459045),
]
SIZES = {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "int64": 4, "uint64": 4, "float32": 2, "float64": 4}


def all_types(memory: Unit) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Fields of every type in every byte order, their values written to ``memory``; → (fields, expected)."""
    fields: list[dict[str, Any]] = []
    expected: dict[str, Any] = {}
    address = 0
    for order in ORDERS:
        for kind, value in NUMBERS:
            name = f"{kind}_{order.lower()}"
            memory.set("holding", address, kind, value, order)
            fields.append({"name": name, "area": "holding", "address": address, "type": kind, "byte_order": order})
            expected[name] = value
            address += SIZES[kind]
        name = f"text_{order.lower()}"
        memory.set("holding", address, "string", "Recipe-42 è", order, length=6)
        fields.append(
            {"name": name, "area": "holding", "address": address, "type": "string", "length": 6, "byte_order": order}
        )
        expected[name] = "Recipe-42 è"
        address += 6
    # input registers with scale/offset, bits of a register, coils and discrete inputs
    memory.set("input", 0, "uint32", 1234567, "CDAB")
    fields.append(
        {"name": "energy_kwh", "area": "input", "address": 0, "type": "uint32", "byte_order": "CDAB", "scale": 0.01}
    )
    expected["energy_kwh"] = 12345.67
    memory.set("input", 2, "int16", -55)
    fields.append({"name": "temp_c", "area": "input", "address": 2, "type": "int16", "scale": 0.1, "offset": 20})
    expected["temp_c"] = -55 * 0.1 + 20
    memory.set("holding", 300, "uint16", 0b1000_0000_0000_1001)
    for bit, value in ((0, True), (3, True), (4, False), (15, True)):
        fields.append({"name": f"status_bit{bit}", "area": "holding", "address": 300, "type": "bit", "bit": bit})
        expected[f"status_bit{bit}"] = value
    for address, value in ((5, True), (6, False), (40, True)):
        memory.set("coil", address, "bool", value)
        fields.append({"name": f"coil_{address}", "area": "coil", "address": address})
        expected[f"coil_{address}"] = value
    memory.set("discrete", 1, "bool", True)
    fields.append({"name": "door_open", "area": "discrete", "address": 1})
    expected["door_open"] = True
    return fields, expected
