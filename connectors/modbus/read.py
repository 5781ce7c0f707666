"""``gateway read modbus://HOST:PORT``: raw registers and every decoding, before writing the YAML.

What users of ``mbpoll`` do by hand: read a range of registers (or coils) once and show the
raw words, then each type decoded from each start address in each byte order, so the
field's ``type`` and ``byte_order`` can be recognised (a voltage of 230.4 is easy to spot
among numbers like 1.6e-38).
"""

from __future__ import annotations

import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TextIO

from connectors.modbus._client import Connection, ConnectionLost, ConnectionSettings, NoAnswer, Refused
from connectors.modbus.config import Area
from connectors.modbus.decode import ORDERS, decode_type
from gateway.errors import SourceError

__all__ = ["ReadOptions", "parse_range", "parse_url", "render_registers", "run_read_command"]

_URL = re.compile(r"^modbus://(?P<host>\[[^\]]+\]|[^:/\s]+)(?::(?P<port>\d{1,5}))?/?$")
_TYPES = ("int16", "uint16", "int32", "uint32", "float32", "int64", "uint64", "float64")
_SIZE = {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2, "int64": 4, "uint64": 4, "float64": 4}


@dataclass(frozen=True)
class ReadOptions:
    url: str
    unit: int
    area: Area
    address: int
    count: int
    rtu: bool = False
    timeout: float = 2.0
    types: tuple[str, ...] = _TYPES


def parse_url(url: str) -> tuple[str, int]:
    match = _URL.match(url.strip())
    if match is None:
        raise ValueError(f"{url!r} is not a Modbus address: write modbus://HOST or modbus://HOST:PORT")
    return match["host"].strip("[]"), int(match["port"] or 502)


def parse_range(text: str, limit: int) -> tuple[int, int]:
    """``START:COUNT`` (or ``START``: one) → (start, count), within the protocol's limits."""
    start_text, _, count_text = text.partition(":")
    try:
        start, count = int(start_text), int(count_text or 1)
    except ValueError:
        raise ValueError(f"{text!r}: write START:COUNT, e.g. 0:10 (the first ten)") from None
    if not 0 <= start <= 65535 or not 1 <= count <= limit or start + count > 65536:
        raise ValueError(f"{text!r}: START is 0–65535, COUNT 1–{limit}, and the range must end by 65535")
    return start, count


def _number(value: float | int) -> str:
    if isinstance(value, float):
        return f"{value:.7g}"
    return str(value)


def _ascii(word: int) -> str:
    chars = word.to_bytes(2, "big").decode("latin-1")
    return "".join(c if 32 <= ord(c) < 127 else "." for c in chars)


def render_registers(start: int, registers: Sequence[int], types: Sequence[str] = _TYPES) -> str:
    """The raw words, then each type decoded from each start address, one column per byte order."""
    lines = [f"{'address':>8} {'dec':>7} {'hex':>7} {'bin':>17}  ascii"]
    for offset, word in enumerate(registers):
        binary = f"{word >> 8:08b} {word & 0xFF:08b}"
        lines.append(f"{start + offset:>8} {word:>7} {word:#06x} {binary:>17}  {_ascii(word)}")
    for kind in types:
        size = _SIZE[kind]
        if size > len(registers):
            continue
        orders = ("ABCD", "BADC") if size == 1 else ORDERS
        heads = ("AB", "BA") if size == 1 else orders
        lines.append("")
        lines.append(f"{kind:<8}" + "".join(f"{head:>24}" for head in heads))
        for offset in range(len(registers) - size + 1):
            words = registers[offset : offset + size]
            cells = []
            for order in orders:
                try:
                    cells.append(_number(decode_type(kind, words, order)))
                except struct.error:  # pragma: no cover - sizes are checked above
                    cells.append("?")
            lines.append(f"{start + offset:>8}" + "".join(f"{cell:>24}" for cell in cells))
    return "\n".join(lines)


async def run_read_command(options: ReadOptions, out: TextIO) -> None:
    host, port = parse_url(options.url)
    connection = Connection(
        ConnectionSettings(host=host, port=port, framing="rtu" if options.rtu else "tcp", timeout=options.timeout),
        name="gateway-read",
    )
    try:
        await connection.open()
        data = await connection.read(options.area, options.address, options.count, options.unit)
    except (ConnectionLost, NoAnswer, Refused) as exc:
        raise SourceError(str(exc)) from None
    finally:
        connection.close()
    last = options.address + options.count - 1
    out.write(f"{options.area} {options.address}–{last} of unit {options.unit} at {host}:{port}\n\n")
    if options.area in ("coil", "discrete"):
        for offset, bit in enumerate(data):
            out.write(f"{options.address + offset:>8}  {int(bit)}\n")
        return
    out.write(render_registers(options.address, [int(r) for r in data], options.types) + "\n")
    out.write(
        "\nByte orders: ABCD big-endian (the Modbus default), CDAB registers swapped, BADC bytes swapped in "
        "each register, DCBA little-endian. In the YAML: {name: …, area: " + options.area + ", address: A, "
        "type: T, byte_order: O}\n"
    )
