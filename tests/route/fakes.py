"""Fake sinks for the route's tests: they record what they were given and fail as scripted."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path

from gateway.component import RuntimeContext, Sink
from gateway.errors import SinkRejected
from gateway.lineprotocol import parse
from gateway.logs import component_logger
from gateway.point import Point

T0 = 1_700_000_000_000_000_000


def pts(start: int, count: int = 1) -> list[Point]:
    """``count`` distinct points numbered from ``start`` (field ``v`` and the time say which)."""
    return [Point("m", {"v": float(i)}, {"s": "a"}, T0 + i) for i in range(start, start + count)]


def numbers(points: Sequence[Point]) -> list[int]:
    return [p.time - T0 for p in points]


class RecordingSink(Sink):
    """Stores batches in memory, in the order it took them.

    Scripted trouble: ``failures`` are raised by the next writes, one each, in order;
    ``down`` (while set) is raised by every write; ``reject`` holds point numbers the store
    refuses (the rest of their batch is stored, then :class:`SinkRejected` says how many were
    not); a cleared ``gate`` makes writes hang until it is set. ``open_failures``,
    ``open_down`` and ``open_gate`` do the same for :meth:`open`.
    """

    def __init__(self, name: str = "fake") -> None:
        super().__init__(name, "fake", RuntimeContext("gw", Path("."), component_logger("sink", name)))
        self.batches: list[list[Point]] = []
        self.attempts: list[float] = []  # monotonic time of every write attempt
        self.failures: list[Exception] = []
        self.down: Exception | None = None
        self.reject: set[int] = set()
        self.gate = asyncio.Event()
        self.gate.set()
        self.writing = 0  # writes waiting at the gate
        self.open_failures: list[Exception] = []
        self.open_down: Exception | None = None
        self.open_gate = asyncio.Event()
        self.open_gate.set()
        self.open_attempts: list[float] = []
        self.events: list[str] = []  # "open", "close", "write": the sink's life in order
        self.via_lines = 0  # writes that came through write_lines

    @property
    def stored(self) -> list[Point]:
        return [p for batch in self.batches for p in batch]

    @property
    def is_open(self) -> bool:
        return self.events.count("open") > self.events.count("close")

    async def open(self) -> None:
        self.open_attempts.append(time.monotonic())
        if self.open_failures:
            raise self.open_failures.pop(0)
        if self.open_down is not None:
            raise self.open_down
        await self.open_gate.wait()
        self.events.append("open")

    async def close(self) -> None:
        self.events.append("close")

    async def write(self, points: Sequence[Point]) -> None:
        await self._store(list(points))

    async def _store(self, points: list[Point]) -> None:
        self.attempts.append(time.monotonic())
        if self.failures:
            raise self.failures.pop(0)
        if self.down is not None:
            raise self.down
        self.writing += 1
        try:
            await self.gate.wait()
        finally:
            self.writing -= 1
        good = [p for p in points if p.time - T0 not in self.reject]
        self.batches.append(good)
        self.events.append("write")
        if len(good) < len(points):
            raise SinkRejected("field type conflict", rejected=len(points) - len(good))


class LineSink(RecordingSink):
    """A sink that takes line protocol as it is (:attr:`Sink.takes_line_protocol`)."""

    takes_line_protocol = True

    async def write_lines(self, body: bytes, count: int) -> None:
        points = parse(body.decode())
        assert len(points) == count, "the count given with the lines must be theirs"
        self.via_lines += 1
        await self._store(list(points))
