"""Request planning: a PLC's variables packed into the fewest S7 read requests.

Pure functions, planned once per connection (the PDU size is negotiated when it opens).
S7comm reads several variables in one request ("read var" with several items), within
limits that the planner keeps:

- **items per request**: at most 20 (the S7comm limit, as Siemens' own clients and Snap7
  keep it), and fewer when the request itself would exceed the PDU: a request is a 10-byte
  header, 2 bytes, then 12 bytes per item — 19 items at the smallest PDU, 240 bytes;
- **the answer**: a 12-byte header, 2 bytes, then per item a 4-byte header and its data,
  padded to an even length — the answer must fit the PDU too (at 240 bytes: 222 bytes of
  data for a single item).

First, variables of the same area and data block that lie close together (at most
``max_gap`` unused bytes apart) are merged into one *span*, read as one item: an item's
header costs 12 bytes of request and 4 of answer, so reading a few unused bytes is cheaper
than another item. A bit shares the byte it is in. A span never grows beyond what one item
can carry; a single variable longer than that (a long STRING at a small PDU) is read in
equal pieces. Then the items are packed into requests, largest first, each into the first request
with room for it (first-fit decreasing): the fewest requests for all practical layouts.

Fields that a PLC refused as part of a merged item (``alone``) are planned as items of their
own, so that only the field that is really wrong fails.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from connectors.s7.address import AREAS, Area, Variable

__all__ = [
    "ANSWER_HEADER",
    "ITEM_ANSWER_HEADER",
    "ITEM_REQUEST_SIZE",
    "MAX_ITEMS",
    "REQUEST_HEADER",
    "Item",
    "Plan",
    "Request",
    "Span",
    "max_item_bytes",
    "max_items",
    "plan",
]

#: The S7comm limit of items in one read request.
MAX_ITEMS = 20
#: Request: S7 header (10) + function and item count (2); then 12 bytes per item.
REQUEST_HEADER = 12
ITEM_REQUEST_SIZE = 12
#: Answer: S7 header with error class and code (12) + function and item count (2); then per
#: item a 4-byte header (return code, transport size, length) and its data, padded to even.
ANSWER_HEADER = 14
ITEM_ANSWER_HEADER = 4


def max_items(pdu: int) -> int:
    """Most items one request may carry at this PDU size."""
    return max(1, min(MAX_ITEMS, (pdu - REQUEST_HEADER) // ITEM_REQUEST_SIZE))


def max_item_bytes(pdu: int) -> int:
    """Most data bytes one item can carry (alone in its answer) at this PDU size."""
    return max(1, pdu - ANSWER_HEADER - ITEM_ANSWER_HEADER)


def _even(n: int) -> int:
    return n + (n & 1)


@dataclass(frozen=True)
class Span:
    """Bytes ``start``…``start + size - 1`` of an area, holding the variables ``members``
    (indexes into the planned sequence)."""

    area: Area
    db: int
    start: int
    size: int
    members: tuple[int, ...]

    def describe(self) -> str:
        where = f"DB{self.db}" if self.area == "DB" else self.area
        return f"{where} {self.start}–{self.start + self.size - 1}" if self.size > 1 else f"{where} {self.start}"


@dataclass(frozen=True)
class Item:
    """One item of a request: ``size`` bytes of span ``span`` from its byte ``offset``."""

    span: int
    area: Area
    db: int
    start: int
    size: int
    offset: int = 0

    @property
    def answer_cost(self) -> int:
        return ITEM_ANSWER_HEADER + _even(self.size)


@dataclass(frozen=True)
class Request:
    """One read request: its items, in address order."""

    items: tuple[Item, ...]

    def describe(self, spans: Sequence[Span]) -> str:
        return ", ".join(
            spans[i.span].describe() if i.size == spans[i.span].size else f"{spans[i.span].describe()} (part)"
            for i in self.items
        )

    def request_bytes(self) -> int:
        return REQUEST_HEADER + ITEM_REQUEST_SIZE * len(self.items)

    def answer_bytes(self) -> int:
        """The answer's size: odd items are padded except the last (the protocol's rule)."""
        data = sum(ITEM_ANSWER_HEADER + i.size for i in self.items)
        pads = sum(i.size & 1 for i in self.items[:-1])
        return ANSWER_HEADER + data + pads


@dataclass(frozen=True)
class Plan:
    """The spans of a set of variables and the requests that read them at one PDU size."""

    pdu: int
    spans: tuple[Span, ...]
    requests: tuple[Request, ...]

    def describe(self) -> list[str]:
        return [r.describe(self.spans) for r in self.requests]


def _spans(variables: Sequence[Variable], max_gap: int, limit: int, alone: Collection[int]) -> list[Span]:
    spans: list[Span] = []
    for area in AREAS:
        indexes = [i for i, v in enumerate(variables) if v.area == area]
        for db in sorted({variables[i].db for i in indexes}):
            group = sorted(
                (i for i in indexes if variables[i].db == db), key=lambda i: (variables[i].start, -variables[i].size)
            )
            start = end = 0
            members: list[int] = []
            for index in group:
                variable = variables[index]
                if index in alone:
                    spans.append(Span(area, db, variable.start, variable.size, (index,)))
                    continue
                merged_end = max(end, variable.end)
                if members and variable.start - end <= max_gap and merged_end - start <= limit:
                    end = merged_end
                    members.append(index)
                    continue
                if members:
                    spans.append(Span(area, db, start, end - start, tuple(members)))
                start, end, members = variable.start, variable.end, [index]
            if members:
                spans.append(Span(area, db, start, end - start, tuple(members)))
    spans.sort(key=lambda s: (AREAS.index(s.area), s.db, s.start))
    return spans


def plan(variables: Sequence[Variable], pdu: int, *, max_gap: int = 16, alone: Collection[int] = ()) -> Plan:
    """The requests that read every variable at this PDU size (see the module doc)."""
    limit = max_item_bytes(pdu)
    spans = _spans(variables, max_gap, limit, alone)
    items: list[Item] = []
    for index, span in enumerate(spans):
        # A span too long for one item is cut into equal pieces: two halves pack beside other
        # items where a full item and a remainder would leave one request nearly empty.
        pieces = -(-span.size // limit)
        step = _even(-(-span.size // pieces))
        for offset in range(0, span.size, step):
            size = min(step, span.size - offset)
            items.append(Item(index, span.area, span.db, span.start + offset, size, offset))
    capacity = pdu - ANSWER_HEADER
    most = max_items(pdu)
    bins: list[list[Item]] = []
    room: list[int] = []
    # First-fit decreasing: the largest items first, each into the first request with room.
    for item in sorted(items, key=lambda i: (-i.answer_cost, i.span, i.offset)):
        for position, members in enumerate(bins):
            if len(members) < most and room[position] >= item.answer_cost:
                members.append(item)
                room[position] -= item.answer_cost
                break
        else:
            bins.append([item])
            room.append(capacity - item.answer_cost)
    requests = [Request(tuple(sorted(members, key=lambda i: (i.span, i.offset)))) for members in bins]
    requests.sort(key=lambda r: (r.items[0].span, r.items[0].offset))
    return Plan(pdu, tuple(spans), tuple(requests))
