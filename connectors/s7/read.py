"""``gateway read s7://HOST``: raw bytes and every type that fits, before writing the YAML.

A DB's layout is in the TIA Portal project, which is rarely at hand on the shop floor. Read the
addresses once and look: each address's bytes in hex and bits, then the value in every type
of that width (a 4-byte ``DBD`` as real, dint, udint and dword), so a speed of 120.0 is easy to
spot among numbers like 1123024896. The addresses are read as the connector reads them: in
one multi-variable request (or as few as the PDU allows).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TextIO

from connectors.s7._client import (
    Connection,
    ConnectionLost,
    ConnectionSettings,
    ItemError,
    ReadItem,
    Refused,
    item_error_text,
)
from connectors.s7.address import AddressError, Variable, parse
from connectors.s7.decode import DecodeProblem, decode_type, string_header
from connectors.s7.plan import plan
from gateway.errors import SourceError

__all__ = ["ReadOptions", "parse_url", "render", "run_read_command", "variables"]

_URL = re.compile(r"^s7://(?P<host>\[[^\]]+\]|[^:/\s]+)(?::(?P<port>\d{1,5}))?/?$")
#: The types shown for each width, most used first.
_BY_SIZE: dict[int, tuple[str, ...]] = {
    1: ("byte", "usint", "sint", "char"),
    2: ("int", "word", "uint"),
    4: ("real", "dint", "udint", "dword"),
    8: ("lreal", "lint", "ulint", "lword"),
}


@dataclass(frozen=True)
class ReadOptions:
    url: str
    addresses: tuple[str, ...]
    rack: int = 0
    slot: int = 1
    timeout: float = 2.0
    pdu_size: int = 960


def parse_url(url: str) -> tuple[str, int]:
    match = _URL.match(url.strip())
    if match is None:
        raise ValueError(f"{url!r} is not an S7 address: write s7://HOST or s7://HOST:PORT")
    return match["host"].strip("[]"), int(match["port"] or 102)


def variables(addresses: Sequence[str]) -> list[Variable]:
    """The variables to read; ``DB1.DBD0``, ``DB1.DBD0:real``, ``DB2.DBB0:string[20]``."""
    found = []
    for text in addresses:
        try:
            found.append(parse(text))
        except AddressError as exc:
            raise ValueError(str(exc)) from None
    return found


def _number(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.9g}"
    return str(value)


def render(text: str, variable: Variable, data: bytes) -> str:
    """One address: its bytes, then every type of its width decoded (the one asked for marked)."""
    asked = variable.type
    hexes = " ".join(f"{b:02x}" for b in data[:32]) + (" …" if len(data) > 32 else "")
    lines = [f"{text}  {variable.describe()}, {len(data)} byte{'s' if len(data) > 1 else ''}: {hexes}"]
    if asked == "bool":
        assert variable.bit is not None
        lines.append(f"  bits 7…0  {data[0]:08b}")
        lines.append(f"  bool      {decode_type('bool', data, bit=variable.bit)}   ← bit {variable.bit}")
        return "\n".join(lines)
    if asked == "string":
        maximum, actual = string_header(data)
        try:
            shown = repr(decode_type("string", data, variable.length or 0))
        except DecodeProblem as exc:
            shown = f"? {exc}"
        header = f"the PLC's header says max {maximum}, {actual} used"
        lines.append(f"  string    {shown}   ← STRING[{variable.length}]: {header}")
        return "\n".join(lines)
    lines.append("  bits      " + " ".join(f"{b:08b}" for b in data))
    for kind in _BY_SIZE[len(data)]:
        value = decode_type(kind, data)
        extra = f"  (16#{int(value):0{2 * len(data)}X})" if kind in ("byte", "word", "dword", "lword") else ""
        mark = "   ← type" if kind == asked else ""
        lines.append(f"  {kind:<8}  {_number(value)}{extra}{mark}")
    return "\n".join(lines)


async def run_read_command(options: ReadOptions, out: TextIO) -> int:
    """Read and print; → the exit code (1 when an address could not be read)."""
    host, port = parse_url(options.url)
    wanted = variables(options.addresses)
    connection = Connection(
        ConnectionSettings(
            host=host,
            port=port,
            rack=options.rack,
            slot=options.slot,
            timeout=options.timeout,
            pdu_size=options.pdu_size,
        )
    )
    results: dict[int, bytes | str] = {}
    try:
        await connection.open()
        planned = plan(wanted, connection.pdu_size, max_gap=0)
        buffers = {index: bytearray(span.size) for index, span in enumerate(planned.spans)}
        errors: dict[int, str] = {}
        for request in planned.requests:
            answers = await connection.read([ReadItem(i.area, i.db, i.start, i.size) for i in request.items])
            for item, answer in zip(request.items, answers, strict=True):
                if isinstance(answer, ItemError):
                    errors[item.span] = item_error_text(answer, item.area, item.db, item.start, item.size)
                else:
                    buffers[item.span][item.offset : item.offset + item.size] = answer
    except (ConnectionLost, Refused) as exc:
        raise SourceError(str(exc)) from None
    finally:
        await connection.close()
    for index, span in enumerate(planned.spans):
        for member in span.members:
            variable = wanted[member]
            if index in errors:
                results[member] = errors[index]
            else:
                begin = variable.start - span.start
                results[member] = bytes(buffers[index][begin : begin + variable.size])
    out.write(
        f"s7://{host}:{port} rack {options.rack} slot {options.slot}: PDU {planned.pdu}, {len(wanted)} "
        f"address{'es' if len(wanted) > 1 else ''} in {len(planned.requests)} request"
        f"{'s' if len(planned.requests) > 1 else ''}\n"
    )
    failed = 0
    for index, (text, variable) in enumerate(zip(options.addresses, wanted, strict=True)):
        out.write("\n")
        result = results[index]
        if isinstance(result, str):
            failed += 1
            out.write(f"{text}  error: {result}\n")
        else:
            out.write(render(text, variable, result) + "\n")
    out.write(
        "\nIn the YAML: {name: …, address: DB1.DBD0, type: real} — the type must fit the width (DBW: int/word/uint, "
        "DBD: real/dint/udint/dword; 8-byte types and strings at their first byte, DBB).\n"
    )
    return 1 if failed else 0
