"""Stand-ins for a sink, a connector and the pipeline's ``emit``, shared by the tests.

Each replaces a real component where a test is about what surrounds it (the pipeline, the
runtime, the HTTP API, /metrics): it records what it was given and fails only as it is told
to, so a test states its scenario in a line and asserts on what was recorded. They follow
the interfaces of :mod:`gateway.component` and nothing else, so a test that passes with
them passes for every conforming sink or connector.

- :class:`RecordingSink`: a store in memory, with scripted failures, an outage switch,
  refused points, a delay per write and a gate that holds writes.
- :class:`ScriptedSource`: a connector that emits given batches, then holds, returns or fails.
- :class:`CollectingEmit`: an ``emit`` that keeps each batch and its acknowledgement.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from gateway.component import Emit, OnStored, RuntimeContext, Sink, Source, State
from gateway.errors import SinkRejected, SinkUnavailable
from gateway.logs import component_logger
from gateway.point import Point

__all__ = ["CollectingEmit", "RecordingSink", "ScriptedSource", "fake_context"]


def fake_context(name: str = "fake", kind: str = "sink", data_dir: Path = Path(".")) -> RuntimeContext:
    """The context a component gets from the runtime: gateway ``gw``, logging as ``kind=name``."""
    return RuntimeContext("gw", data_dir, component_logger(kind, name))


class RecordingSink(Sink):
    """A store in memory that records every write attempt and every batch it stored.

    What goes wrong is scripted, and checked in this order at each write:

    - ``failures``: exceptions raised by the next writes, one per write, in order;
    - ``down``: while true, every write raises :class:`SinkUnavailable` (``down_message``);
    - ``delay``: seconds each write takes before it stores;
    - ``gate``: writes wait until it is set (it is at first): clear it to hold them;
    - ``reject``: times of the points the store refuses; the rest of the batch is stored and
      :class:`SinkRejected` names how many were refused (as a store's partial write does).
    """

    def __init__(
        self,
        name: str = "fake",
        type_: str = "fake",
        *,
        context: RuntimeContext | None = None,
        failures: Iterable[Exception] = (),
        down: bool = False,
        down_message: str = "connection refused",
        delay: float = 0.0,
    ) -> None:
        super().__init__(name, type_, context or fake_context(name))
        self.batches: list[list[Point]] = []
        self.attempts: list[float] = []  # time.monotonic() of each write call
        self.failures: list[Exception] = list(failures)
        self.down = down
        self.down_message = down_message
        self.delay = delay
        self.reject: set[int] = set()
        self.gate = asyncio.Event()
        self.gate.set()

    @property
    def stored(self) -> list[Point]:
        """Every point stored so far, in order."""
        return [point for batch in self.batches for point in batch]

    async def write(self, points: Sequence[Point]) -> None:
        self.attempts.append(time.monotonic())
        if self.failures:
            raise self.failures.pop(0)
        if self.down:
            raise SinkUnavailable(self.down_message)
        if self.delay:
            await asyncio.sleep(self.delay)
        await self.gate.wait()
        good = [point for point in points if point.time not in self.reject]
        self.batches.append(good)
        if len(good) < len(points):
            raise SinkRejected("field type conflict", rejected=len(points) - len(good))


class ScriptedSource(Source):
    """A connector that emits the given batches in order, ``interval`` seconds apart.

    Once the script is emitted it raises ``error`` if one is given (a connector that fails),
    else returns at once when ``hold`` is false (a connector that stops by itself), else waits
    until asked to stop. A stop request also ends the script early. ``batches`` is consumed
    across runs: after a failure, the runtime's next ``run`` goes on with the rest, as a
    device keeps producing while its connector restarts (a generator gives an endless stream).

    Records ``emitted`` (every batch handed to ``emit``), ``acked`` (the indexes in
    ``emitted`` of the batches whose ``on_stored`` was called), ``runs`` and ``closed``.
    """

    def __init__(
        self,
        name: str = "fake",
        batches: Iterable[Sequence[Point]] = (),
        *,
        interval: float = 0.0,
        error: Exception | None = None,
        hold: bool = True,
        context: RuntimeContext | None = None,
    ) -> None:
        super().__init__(name, "fake", context or fake_context(name, "connector"))
        self.script = iter(batches)
        self.interval = interval
        self.error = error
        self.hold = hold
        self.emitted: list[Sequence[Point]] = []
        self.acked: list[int] = []
        self.runs = 0
        self.closed = False
        self.stop_requested = asyncio.Event()

    async def run(self, emit: Emit) -> None:
        self.runs += 1
        self.status.set_state(State.RUNNING)
        for batch in self.script:
            if self.stop_requested.is_set():
                break
            index = len(self.emitted)
            self.emitted.append(batch)
            await emit(batch, functools.partial(self.acked.append, index))
            if self.interval:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop_requested.wait(), self.interval)
        if self.stop_requested.is_set():
            return
        if self.error is not None:
            raise self.error
        if self.hold:
            await self.stop_requested.wait()

    def request_stop(self) -> None:
        self.stop_requested.set()

    async def aclose(self) -> None:
        self.closed = True


class CollectingEmit:
    """An ``emit`` (:class:`gateway.component.Emit`) that keeps every call: batch and ``on_stored``.

    With ``ack=True`` it acknowledges each batch at once, as a pipeline whose sinks all stored
    it would; otherwise :meth:`acknowledge` does it when the test says so.
    """

    def __init__(self, *, ack: bool = False) -> None:
        self.ack = ack
        self.calls: list[tuple[Sequence[Point], OnStored | None]] = []
        self._acknowledged = 0

    async def __call__(self, points: Sequence[Point], on_stored: OnStored | None = None) -> None:
        self.calls.append((points, on_stored))
        if self.ack:
            self.acknowledge()

    @property
    def points(self) -> list[Point]:
        """Every point emitted so far, in order."""
        return [point for points, _ in self.calls for point in points]

    def acknowledge(self) -> int:
        """Call the ``on_stored`` of every batch not acknowledged yet, in order; how many there were."""
        pending = self.calls[self._acknowledged :]
        self._acknowledged = len(self.calls)
        for _, on_stored in pending:
            if on_stored is not None:
                on_stored()
        return len(pending)
