"""The pieces of gateway/pipeline.py: a connector's fan-out to its routes, and the backoff.

The route itself (batching, retries, acknowledgements, stop) is tested in tests/route/.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from gateway.component import OnStored
from gateway.pipeline import Backoff, Fanout
from gateway.point import Point


def pts(start: int, count: int = 1) -> list[Point]:
    return [Point("m", {"v": float(i)}, {"s": "a"}, i) for i in range(start, start + count)]


class HeldRoute:
    """A route's way in that records every put and calls ``done`` only when the test says so."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.puts: list[tuple[list[Point], OnStored]] = []
        self.stored = 0  # how many of the puts were acknowledged so far
        self.gate = asyncio.Event()  # cleared: put waits (a full queue)
        self.gate.set()

    async def put(self, points: Sequence[Point], done: OnStored) -> None:
        await self.gate.wait()
        self.puts.append((list(points), done))

    @property
    def received(self) -> list[Point]:
        return [p for points, _ in self.puts for p in points]

    def store_all(self) -> None:
        """The store has everything put so far: call each ``done`` once."""
        for _, done in self.puts[self.stored :]:
            done()
        self.stored = len(self.puts)


async def test_a_batch_is_acknowledged_once_every_route_has_it() -> None:
    fast, slow = HeldRoute("fast"), HeldRoute("slow")
    emit = Fanout([fast, slow])
    acked: list[int] = []
    for i in range(3):
        await emit(pts(i), lambda i=i: acked.append(i))  # type: ignore[misc]
    assert fast.received == slow.received == pts(0, 3)
    fast.store_all()
    assert acked == []  # the slow route has not stored them yet
    slow.store_all()
    assert acked == [0, 1, 2]  # each batch once, in order


async def test_a_batch_on_its_way_keeps_the_routes_it_started_with() -> None:
    a, b, c = HeldRoute("a"), HeldRoute("b"), HeldRoute("c")
    emit = Fanout([a, b])
    acked: list[int] = []
    a.gate.clear()  # a's queue is full: the emit waits inside a.put
    sending = asyncio.create_task(emit(pts(0), lambda: acked.append(0)))
    await asyncio.sleep(0)
    assert not sending.done()
    emit.routes = (c,)  # a reload re-points the connector while its batch is on its way
    a.gate.set()
    await asyncio.wait_for(sending, 10)
    assert a.received == b.received == pts(0)  # the routes the batch started with
    assert c.received == []
    await emit(pts(1), lambda: acked.append(1))  # the next batch goes to the new routes only
    assert c.received == pts(1) and a.received == pts(0) and b.received == pts(0)
    a.store_all()
    c.store_all()
    assert acked == [1]  # batch 0 still waits for b
    b.store_all()
    assert acked == [1, 0]


async def test_without_routes_a_batch_is_acknowledged_at_once() -> None:
    emit = Fanout([])
    acked: list[int] = []
    await emit(pts(0), lambda: acked.append(0))
    await emit(pts(1))  # without a callback: nothing to call, nothing fails
    assert acked == [0]


async def test_one_route_gets_the_batch_and_acknowledges_it() -> None:
    route = HeldRoute("only")
    emit = Fanout([route])
    acked: list[int] = []
    await emit(pts(0), lambda: acked.append(0))
    await emit(pts(1))  # without a callback: the route still gets a done it may call
    assert route.received == pts(0, 2)
    assert acked == []
    route.store_all()
    assert acked == [0]


# --- backoff -------------------------------------------------------------------------------------------


def test_backoff_doubles_with_jitter_and_never_exceeds_its_cap() -> None:
    backoff = Backoff(initial=1.0, cap=60.0)
    delays = [backoff.next_delay() for _ in range(12)]
    for attempt, delay in enumerate(delays[:5]):
        assert 0.8 * 2**attempt <= delay <= 1.2 * 2**attempt
    assert all(delay <= 60.0 for delay in delays)
    assert delays[-1] >= 48.0
    backoff.reset()
    assert backoff.next_delay() <= 1.2


def test_backoff_survives_very_many_attempts() -> None:
    backoff = Backoff(initial=1.0, cap=5.0, attempt=10_000)
    assert backoff.next_delay() == 5.0
