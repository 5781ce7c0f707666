"""Request planning: the fields of a device grouped into the fewest reads the protocol allows.

Pure functions, planned once per device (and again only when a device refuses a request):
fields of the same area are sorted by address and merged into one read while the next field
starts at most ``max_gap`` registers (16 times as many coils: the same bytes) after the current
read ends and the read stays within
the protocol's limit — 125 registers (function codes 3 and 4) or 2000 coils / discrete
inputs (1 and 2). A gap is read and discarded: one request of 30 registers costs less than
two of 10 on every link, and far less on a serial line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from connectors.modbus.config import AREAS, Area, ModbusField

__all__ = ["MAX_BITS", "MAX_REGISTERS", "Request", "plan", "split"]

#: The protocol's limits per read (Modbus Application Protocol v1.1b3, 6.1–6.4).
MAX_REGISTERS = 125
MAX_BITS = 2000


@dataclass(frozen=True)
class Request:
    """One read: ``count`` registers (or bits) of ``area`` from ``address``, and the fields in it."""

    area: Area
    address: int
    count: int
    fields: tuple[ModbusField, ...]

    @property
    def end(self) -> int:
        return self.address + self.count

    def describe(self) -> str:
        return f"{self.area} {self.address}–{self.end - 1}" if self.count > 1 else f"{self.area} {self.address}"


def plan(
    fields: Sequence[ModbusField],
    *,
    max_gap: int = 10,
    max_registers: int = MAX_REGISTERS,
    max_bits: int = MAX_BITS,
) -> list[Request]:
    """The fewest requests that read every field (ordered by area, then address)."""
    requests: list[Request] = []
    for area in AREAS:
        bits = area in ("coil", "discrete")
        limit = max_bits if bits else max_registers
        # A register of gap costs two bytes on the wire; so do 16 coils: the same budget in bits.
        gap = max_gap * 16 if bits and max_gap >= 0 else max_gap
        group = sorted((f for f in fields if f.area == area), key=lambda f: (f.address, f.size))
        start = end = 0
        members: list[ModbusField] = []
        for item in group:
            item_end = item.address + item.size
            if members and item.address - end <= gap and max(end, item_end) - start <= limit:
                end = max(end, item_end)
                members.append(item)
                continue
            if members:
                requests.append(Request(area, start, end - start, tuple(members)))
            start, end, members = item.address, item_end, [item]
        if members:
            requests.append(Request(area, start, end - start, tuple(members)))
    return requests


def split(request: Request) -> list[Request]:
    """The request as one read per field (fields on the same registers stay together): after a
    device refused the whole read, each field's own read shows which one it refuses."""
    return plan(request.fields, max_gap=-1, max_registers=request.count, max_bits=request.count)
