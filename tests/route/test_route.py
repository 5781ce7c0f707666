"""The one route from the pipeline to a sink, run against both of its queues.

Every test runs twice (the ``harness`` fixture): with a :class:`MemoryQueue` (a sink whose own
write is durable) and with a :class:`DiskQueue` in a temporary folder (a network sink). Where
the two legitimately differ, the test says so in one expectation that depends on
``harness.durable``:

- **when a source is acknowledged**: memory, once the sink has written its points; disk, once
  they are in an fsync'ed group commit — so a disk route acknowledges while the store is
  down, a memory route does not;
- **what a stop leaves behind**: memory, nothing (points the store did not take by the
  deadline are counted as ``points_lost_on_shutdown`` and not acknowledged, or, for a sink the
  configuration removed, acknowledged anyway and counted as ``points_discarded_on_removal``);
  disk, everything the store did not confirm stays in the folder and a new route on it sends
  it (``harness.left_behind()``);
- **a stop and a failing store**: a memory route keeps trying until the deadline; a disk
  route stops at once (the points are safe on disk).

Disk-only behaviours (group commit, bounds, gauges of the files, moving a folder) are in
``tests/buffer/test_disk_queue.py``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from gateway.buffer import DiskQueue
from gateway.component import State
from gateway.errors import SinkUnauthorized, SinkUnavailable
from gateway.lineprotocol import encode
from gateway.pipeline import Backoff
from gateway.point import Point
from gateway.route import MemoryQueue, PointQueue, Route
from gateway.settings import BatchPolicy, BufferSettings
from tests.helpers import async_wait_until
from tests.route.fakes import LineSink, RecordingSink, numbers, pts


def noop() -> None:
    pass


async def settle() -> None:
    """Let every ready task run until the loop is idle (no wall-clock wait)."""
    for _ in range(50):
        await asyncio.sleep(0)


class RecordingBackoff(Backoff):
    """A fast backoff that remembers every delay it chose."""

    def __init__(self, initial: float = 0.02, cap: float = 0.1) -> None:
        super().__init__(initial=initial, cap=cap)
        self.delays: list[float] = []

    def next_delay(self) -> float:
        delay = super().next_delay()
        self.delays.append(delay)
        return delay


class Harness:
    """Builds routes on one kind of queue, runs them, and stops whatever a test left running."""

    def __init__(self, kind: str, folder: Path) -> None:
        self.kind = kind
        self.folder = folder
        self._tasks: dict[Route, asyncio.Task[None]] = {}
        self._built: list[Route] = []

    @property
    def durable(self) -> bool:
        """Points are acknowledged once on disk, and what a stop could not send stays there."""
        return self.kind == "disk"

    def build(
        self,
        sink: RecordingSink,
        *,
        batch_size: int = 100,
        flush_interval: float = 0.05,
        backoff: Backoff | None = None,
        small: bool = False,
    ) -> Route:
        """A route for ``sink``; ``small``: a queue that is full after a few hundred points."""
        queue: PointQueue
        if self.kind == "memory":
            queue = MemoryQueue(batch_size, max_pending=20 if small else None)
        else:
            settings = BufferSettings(path=self.folder)
            if small:
                settings = BufferSettings(path=self.folder, max_size=4096, overflow="block")
            queue = DiskQueue(
                self.folder / sink.name, settings, batch_size, sink.log, segment_size=1024 if small else None
            )
        route = Route(
            sink,
            BatchPolicy(batch_size=batch_size, flush_interval=flush_interval),
            queue,
            backoff=backoff or RecordingBackoff(),
        )
        self._built.append(route)
        return route

    def start(self, route: Route) -> asyncio.Task[None]:
        task = asyncio.create_task(route.run())
        self._tasks[route] = task
        return task

    async def stop(self, route: Route, seconds: float = 10.0, *, removed: bool = False) -> None:
        """Stop ``route`` with a deadline ``seconds`` away and wait until its ``run`` returned."""
        await route.drain(time.monotonic() + seconds, removed=removed)
        await asyncio.wait_for(self._tasks[route], seconds + 10)

    def held(self, route: Route) -> int:
        """Points the route holds that the store has not confirmed."""
        queue = route.queue
        if isinstance(queue, MemoryQueue):
            return queue.pending_points
        assert isinstance(queue, DiskQueue)
        return queue.store.depth_points + queue.queued_points

    async def left_behind(self, name: str = "fake") -> list[Point]:
        """What a new route for sink ``name`` sends after a stop (a memory queue keeps nothing)."""
        if not self.durable:
            return []
        sink = RecordingSink(name)
        route = self.build(sink)
        self.start(route)
        queue = route.queue
        assert isinstance(queue, DiskQueue)
        # (the queue opens its files once it runs: until then it knows nothing of what they hold)
        await async_wait_until(
            lambda: queue.store.opened and self.held(route) == 0, timeout=20, message="the folder sent"
        )
        await self.stop(route)
        return sink.stored

    async def close(self) -> None:
        for route, task in self._tasks.items():
            if not task.done():
                await route.drain(time.monotonic() + 2)
                await asyncio.wait([task], timeout=5)
            if not task.done():
                task.cancel()
                await asyncio.wait([task], timeout=5)
        for route in self._built:
            await route.queue.aclose()  # (a route that ran closed it already)


@pytest.fixture(params=["memory", "disk"])
async def harness(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    running = Harness(request.param, tmp_path / "buffer")
    yield running
    await running.close()


def ack_to(acked: list[int], number: int) -> Callable[[], None]:
    return lambda: acked.append(number)


# --- batching ---------------------------------------------------------------------------------------


async def test_full_batches_are_written_at_once_and_the_rest_waits_for_the_flush_interval(harness: Harness) -> None:
    sink = RecordingSink()
    route = harness.build(sink, batch_size=10, flush_interval=3600)
    harness.start(route)
    for i in range(25):
        await route.put(pts(i), noop)
    await async_wait_until(lambda: len(sink.batches) == 2, timeout=10)
    await settle()
    assert [len(b) for b in sink.batches] == [10, 10]
    assert route.queue.unread_points == 5  # waiting for five more points, or for the flush interval
    await harness.stop(route)
    assert [len(b) for b in sink.batches] == [10, 10, 5]  # the stop flushes the rest
    assert sink.stored == pts(0, 25)


async def test_a_partial_batch_is_written_once_its_oldest_point_waited_the_flush_interval(harness: Harness) -> None:
    sink = RecordingSink()
    route = harness.build(sink, batch_size=1000, flush_interval=0.3)
    harness.start(route)
    started = time.monotonic()
    await route.put(pts(0, 3), noop)
    await route.put(pts(3, 2), noop)
    await async_wait_until(lambda: sink.batches, timeout=10)
    assert sink.attempts[0] - started >= 0.29
    assert sink.batches == [pts(0, 5)]


async def test_a_put_larger_than_batch_size_is_written_in_chunks_and_acknowledged_once(harness: Harness) -> None:
    sink = RecordingSink()
    route = harness.build(sink, batch_size=4)
    harness.start(route)
    acked: list[int] = []
    await route.put(pts(0, 10), ack_to(acked, 0))
    await async_wait_until(lambda: len(sink.stored) == 10 and acked, timeout=10)
    await harness.stop(route)
    assert [len(b) for b in sink.batches] == [4, 4, 2]
    assert sink.stored == pts(0, 10)
    assert acked == [0]
    assert route.status.counters["points_written"] == 10
    assert route.status.counters["batches_written"] == 3


async def test_a_line_protocol_sink_gets_the_points_in_the_form_its_queue_holds(harness: Harness) -> None:
    sink = LineSink()
    route = harness.build(sink, batch_size=50)
    harness.start(route)
    await route.put(pts(0, 120), noop)
    await async_wait_until(lambda: len(sink.stored) == 120, timeout=10)
    assert sink.stored == pts(0, 120)
    # The disk queue holds line protocol and hands it over as is; the memory queue holds points.
    assert sink.via_lines == (len(sink.batches) if harness.durable else 0)


# --- acknowledgements --------------------------------------------------------------------------------


async def test_acknowledgements_keep_the_queues_promise_and_come_in_order(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    real_fdatasync = os.fdatasync

    def fdatasync(fd: int) -> None:
        real_fdatasync(fd)
        synced.append(fd)

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    sink = RecordingSink()
    sink.gate.clear()  # the store takes the first batch and does not answer yet
    route = harness.build(sink, batch_size=3, flush_interval=0.01)
    harness.start(route)
    acked: list[int] = []
    broken: list[str] = []

    def on_disk(point: Point) -> bool:
        line = encode(point).encode()
        return any(line in path.read_bytes() for path in (harness.folder / "fake").glob("seg-*.log"))

    def promise_for(i: int, syncs_at_put: int) -> Callable[[], None]:
        def done() -> None:
            if harness.durable and (len(synced) <= syncs_at_put or not on_disk(pts(i)[0])):
                broken.append(f"{i} acknowledged before its points were synced to the buffer")
            if not harness.durable and pts(i)[0] not in sink.stored:
                broken.append(f"{i} acknowledged before the sink wrote it")
            acked.append(i)

        return done

    for i in range(10):
        await route.put(pts(i), promise_for(i, len(synced)))
    await async_wait_until(lambda: sink.writing, timeout=10)
    if harness.durable:  # synced to disk: acknowledged although the store has not answered
        await async_wait_until(lambda: len(acked) == 10, timeout=10)
    else:
        await settle()
        assert acked == []  # the store has not answered yet
    sink.gate.set()
    await async_wait_until(lambda: len(sink.stored) == 10 and len(acked) == 10, timeout=10)
    assert acked == list(range(10))
    assert broken == []
    assert sink.stored == pts(0, 10)


# --- what each sink error means ----------------------------------------------------------------------


async def test_an_unavailable_store_is_retried_with_capped_backoff_until_it_recovers(harness: Harness) -> None:
    sink = RecordingSink()
    sink.failures = [SinkUnavailable("connection refused")] * 4
    backoff = RecordingBackoff(initial=0.02, cap=0.05)
    route = harness.build(sink, flush_interval=0.01, backoff=backoff)
    harness.start(route)
    acked: list[int] = []
    await route.put(pts(0, 5), ack_to(acked, 0))
    await async_wait_until(lambda: route.status.state is State.BACKOFF, timeout=10)
    assert route.status.last_error == "connection refused"
    await async_wait_until(lambda: sink.stored and acked, timeout=10)
    assert route.status.state is State.RUNNING
    assert sink.stored == pts(0, 5)
    assert acked == [0]
    assert route.status.counters["write_errors"] == 4
    assert route.status.counters["points_retried"] == 4 * 5
    # 20 ms, 40 ms, then the 50 ms cap (±20 % jitter below the cap)
    assert len(backoff.delays) == 4
    assert all(delay <= 0.05 for delay in backoff.delays)
    assert backoff.delays[2:] == [0.05, 0.05]
    gaps = [b - a for a, b in zip(sink.attempts, sink.attempts[1:], strict=False)]
    for gap, delay in zip(gaps, backoff.delays, strict=True):
        assert gap >= delay - 0.002  # each retry waited its delay (a loaded machine only adds)


async def test_retry_after_from_the_store_is_honoured(harness: Harness) -> None:
    sink = RecordingSink()
    sink.failures = [SinkUnavailable("429 too many requests", retry_after=0.4)]
    backoff = RecordingBackoff()
    route = harness.build(sink, flush_interval=0.01, backoff=backoff)
    harness.start(route)
    await route.put(pts(0), noop)
    await async_wait_until(lambda: sink.stored, timeout=10)
    assert sink.attempts[1] - sink.attempts[0] >= 0.39
    assert backoff.delays == []  # the store's delay, not the backoff's
    assert route.status.counters["write_errors"] == 1
    assert "retry_in_seconds" not in route.status.detail  # (shown while waiting, gone once written)


async def test_rejected_points_are_dropped_and_counted_and_their_neighbours_stored(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    sink = RecordingSink()
    sink.reject = {3}
    route = harness.build(sink, batch_size=5, flush_interval=0.01)
    harness.start(route)
    acked: list[int] = []
    with caplog.at_level(logging.ERROR):
        for i in range(10):
            await route.put(pts(i), ack_to(acked, i))
        await async_wait_until(lambda: len(acked) == 10 and harness.held(route) == 0, timeout=10)
    assert sink.stored == [p for p in pts(0, 10) if p.time != pts(3)[0].time]
    assert acked == list(range(10))  # the batch is done: a rejected point is not retried
    assert route.status.counters["points_rejected"] == 1
    assert route.status.counters["points_written"] == 9
    assert route.status.counters["write_errors"] == 0
    assert "field type conflict" in (route.status.last_error or "")
    assert "the store rejected 1 points" in caplog.text
    assert route.status.state is State.RUNNING


async def test_refused_credentials_set_state_unauthorized_and_keep_the_points(harness: Harness) -> None:
    sink = RecordingSink()
    sink.failures = [SinkUnauthorized("401 unauthorized: check the token")]
    route = harness.build(sink, flush_interval=0.01)
    route.UNAUTHORIZED_RETRY = 0.3
    harness.start(route)
    acked: list[int] = []
    await route.put(pts(0, 3), ack_to(acked, 0))
    await async_wait_until(lambda: route.status.state is State.UNAUTHORIZED, timeout=10)
    assert harness.held(route) == 3
    assert sink.stored == []
    assert route.status.last_error == "401 unauthorized: check the token"
    await async_wait_until(lambda: sink.stored, timeout=10)
    assert sink.attempts[1] - sink.attempts[0] >= 0.29  # the slow retry of refused credentials
    await async_wait_until(lambda: acked, timeout=10)
    assert route.status.state is State.RUNNING
    assert sink.stored == pts(0, 3)
    assert acked == [0]


async def test_an_unexpected_sink_error_is_logged_and_retried(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    sink = RecordingSink()
    sink.failures = [RuntimeError("bug in the sink")]
    route = harness.build(sink, flush_interval=0.01)
    harness.start(route)
    await route.put(pts(0, 2), noop)
    await async_wait_until(lambda: sink.stored, timeout=10)
    assert sink.stored == pts(0, 2)
    assert route.status.last_error == "RuntimeError: bug in the sink"
    logged = [r for r in caplog.records if "unexpected error while writing" in r.getMessage()]
    assert len(logged) == 1 and logged[0].exc_info is not None  # with its traceback


# --- the sink's life cycle ------------------------------------------------------------------------------


async def test_a_sink_that_fails_to_open_is_retried_with_backoff_and_nothing_is_lost(harness: Harness) -> None:
    sink = RecordingSink()
    sink.open_failures = [SinkUnavailable("connection refused")] * 2
    sink.open_gate.clear()  # then the third attempt hangs until the test lets it through
    route = harness.build(sink, flush_interval=0.01, backoff=RecordingBackoff(initial=0.05, cap=0.1))
    harness.start(route)
    acked: list[int] = []
    for i in range(5):
        await route.put(pts(i), ack_to(acked, i))
    await async_wait_until(lambda: len(sink.open_attempts) == 3, timeout=10)
    assert route.status.as_dict()["state"] == "backoff"
    assert route.status.last_error == "connection refused"
    assert harness.held(route) == 5
    if harness.durable:  # synced to disk: acknowledged while the sink cannot be opened
        await async_wait_until(lambda: len(acked) == 5, timeout=10)
    else:
        await settle()
        assert acked == []
    sink.open_gate.set()
    await async_wait_until(lambda: len(sink.stored) == 5 and len(acked) == 5, timeout=10)
    assert sink.stored == pts(0, 5)
    assert acked == list(range(5))
    assert len(sink.open_attempts) == 3
    assert sink.open_attempts[1] - sink.open_attempts[0] >= 0.8 * 0.05 - 0.002
    assert sink.events[0] == "open"  # opened before the first write
    assert route.status.state is State.RUNNING


async def test_the_sink_is_closed_when_the_route_stops(harness: Harness) -> None:
    sink = RecordingSink()
    route = harness.build(sink)
    harness.start(route)
    await route.put(pts(0, 3), noop)
    await harness.stop(route)
    assert sink.events == ["open", "write", "close"]
    assert route.status.state is State.STOPPED


# --- back-pressure -------------------------------------------------------------------------------------


async def test_a_full_queue_makes_put_wait_until_the_store_takes_points(harness: Harness) -> None:
    sink = RecordingSink()
    sink.gate.clear()
    route = harness.build(sink, batch_size=10, flush_interval=0.01, small=True)
    harness.start(route)
    progress = {"entered": 0, "returned": 0}

    async def produce() -> None:
        for start in range(0, 500, 10):
            progress["entered"] += 1
            await route.put(pts(start, 10), noop)  # (returns at once unless it waits for room)
            progress["returned"] += 1

    producer = asyncio.create_task(produce())
    await async_wait_until(lambda: progress["entered"] > progress["returned"], timeout=10, message="a put waits")
    assert progress["returned"] < 50 and not producer.done()
    if isinstance(route.queue, DiskQueue):
        assert route.queue.store.disk_bytes <= 4096
    else:
        assert isinstance(route.queue, MemoryQueue)
        assert route.queue.pending_points <= 20
    sink.gate.set()
    await asyncio.wait_for(producer, 30)
    await async_wait_until(lambda: len(sink.stored) == 500, timeout=30)
    assert sink.stored == pts(0, 500)
    assert route.status.counters.get("points_dropped", 0) == 0


# --- stopping --------------------------------------------------------------------------------------------


async def test_drain_writes_everything_pending_then_run_returns(harness: Harness) -> None:
    sink = RecordingSink()
    route = harness.build(sink, batch_size=1000, flush_interval=3600)
    task = harness.start(route)
    acked: list[int] = []
    for i in range(7):
        await route.put(pts(i), ack_to(acked, i))
    await harness.stop(route)
    assert task.done()
    assert sink.stored == pts(0, 7)
    assert acked == list(range(7))
    assert harness.held(route) == 0
    assert await harness.left_behind() == []


async def test_a_stop_cuts_a_backoff_wait_short(harness: Harness) -> None:
    sink = RecordingSink()
    sink.failures = [SinkUnavailable("down")]
    route = harness.build(sink, flush_interval=0.01, backoff=Backoff(initial=30, cap=30))
    task = harness.start(route)
    acked: list[int] = []
    await route.put(pts(0), ack_to(acked, 0))
    await async_wait_until(lambda: route.status.state is State.BACKOFF, timeout=10)
    await route.drain(time.monotonic() + 60)
    await asyncio.wait_for(task, 10)  # not after the 30 s backoff, nor at the 60 s deadline
    # A memory route tries once more at once; a disk route leaves the point on disk for the next start.
    assert sink.stored == ([] if harness.durable else pts(0))
    assert acked == [0]
    assert await harness.left_behind() == (pts(0) if harness.durable else [])


async def test_at_the_stop_deadline_what_the_store_did_not_take_is_counted_or_kept(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    sink = RecordingSink()
    sink.down = SinkUnavailable("store down")
    route = harness.build(sink, batch_size=4, flush_interval=0.01)
    task = harness.start(route)
    acked: list[int] = []
    for i in range(10):
        await route.put(pts(i), ack_to(acked, i))
    await async_wait_until(lambda: route.status.state is State.BACKOFF, timeout=10)
    if harness.durable:
        await async_wait_until(lambda: len(acked) == 10, timeout=10)  # synced before the stop
    started = time.monotonic()
    await route.drain(started + 0.5)
    await asyncio.wait_for(task, 10)
    attempts_after_stop = [t for t in sink.attempts if t >= started]
    assert len(attempts_after_stop) < 50  # retries kept their backoff, no burst until the deadline
    assert sink.stored == []
    if harness.durable:  # on disk, acknowledged, kept for the next start; no need to wait for the deadline
        assert acked == list(range(10))
        assert "points_lost_on_shutdown" not in route.status.counters
    else:  # retried until the deadline, then counted lost and not acknowledged (QoS 1/2 are redelivered)
        # (it gives up once the next retry, at most the backoff's 0.1 s cap away, would miss the deadline)
        assert time.monotonic() - started >= 0.5 - 0.1 - 0.01
        assert attempts_after_stop  # a stop cuts the backoff short: one more try at once
        assert acked == []
        assert route.status.counters["points_lost_on_shutdown"] == 10
        assert "stopping with 10 points not stored" in caplog.text
    assert await harness.left_behind() == (pts(0, 10) if harness.durable else [])


async def test_a_write_that_hangs_past_the_deadline_is_cancelled(harness: Harness) -> None:
    sink = RecordingSink()
    sink.gate.clear()  # the store never answers
    route = harness.build(sink, batch_size=10, flush_interval=0.01)
    task = harness.start(route)
    acked: list[int] = []
    await route.put(pts(0, 3), ack_to(acked, 0))
    await async_wait_until(lambda: sink.writing, timeout=10)
    await route.drain(time.monotonic() + 0.2)
    done, _ = await asyncio.wait([task], timeout=0.5)
    assert not done  # still inside the write: the runtime cancels the route's task at the deadline
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sink.stored == []
    assert route.status.state is State.STOPPED
    assert sink.events[-1] == "close"
    if harness.durable:
        assert acked == [0]  # synced before the write began
        assert route.status.counters.get("points_lost_on_shutdown", 0) == 0
    else:
        assert acked == []
        assert route.status.counters["points_lost_on_shutdown"] == 3
    assert await harness.left_behind() == (pts(0, 3) if harness.durable else [])


async def test_a_stop_while_the_sink_cannot_open_counts_or_keeps_the_points(harness: Harness) -> None:
    sink = RecordingSink()
    sink.open_down = SinkUnavailable("connection refused")
    route = harness.build(sink, flush_interval=0.01)
    task = harness.start(route)
    acked: list[int] = []
    for i in range(5):
        await route.put(pts(i), ack_to(acked, i))
    await async_wait_until(lambda: route.status.state is State.BACKOFF, timeout=10)
    if harness.durable:
        await async_wait_until(lambda: len(acked) == 5, timeout=10)
    started = time.monotonic()
    await route.drain(started + 0.5)
    await asyncio.wait_for(task, 10)
    assert len([t for t in sink.open_attempts if t >= started]) < 50  # no burst of attempts until the deadline
    assert sink.stored == []
    assert "close" not in sink.events  # never opened, never closed
    if harness.durable:
        assert acked == list(range(5))
        assert route.status.counters.get("points_lost_on_shutdown", 0) == 0
    else:
        assert acked == []
        assert route.status.counters["points_lost_on_shutdown"] == 5
    assert await harness.left_behind() == (pts(0, 5) if harness.durable else [])


async def test_a_removed_sink_acknowledges_what_memory_could_not_write_and_disk_keeps_it(
    harness: Harness,
) -> None:
    sink = RecordingSink()
    sink.down = SinkUnavailable("store down")
    route = harness.build(sink, flush_interval=0.01)
    task = harness.start(route)
    acked: list[int] = []
    for i in range(4):
        await route.put(pts(i), ack_to(acked, i))
    await async_wait_until(lambda: route.status.state is State.BACKOFF, timeout=10)
    if harness.durable:
        await async_wait_until(lambda: len(acked) == 4, timeout=10)
    await route.drain(time.monotonic() + 0.3, removed=True)
    await asyncio.wait_for(task, 10)
    assert sink.stored == []
    assert acked == list(range(4))  # nobody waits for a removed sink: every source is acknowledged once
    assert "points_lost_on_shutdown" not in route.status.counters
    if harness.durable:
        assert "points_discarded_on_removal" not in route.status.counters
    else:
        assert route.status.counters["points_discarded_on_removal"] == 4
    assert await harness.left_behind() == (pts(0, 4) if harness.durable else [])


# --- a live change of the sink's configuration ------------------------------------------------------------


async def test_reconfigure_while_points_wait_loses_nothing_and_carries_the_counters(harness: Harness) -> None:
    old = RecordingSink()
    route = harness.build(old, batch_size=5, flush_interval=3600)
    harness.start(route)
    acked: list[int] = []
    for i in range(8):
        await route.put(pts(i), ack_to(acked, i))
    await async_wait_until(lambda: len(old.stored) == 5, timeout=10)  # a full batch; three points wait
    new = RecordingSink()
    await route.reconfigure(new, BatchPolicy(batch_size=4, flush_interval=0.05))
    assert old.events[-1] == "close"
    await async_wait_until(lambda: len(new.stored) == 3, timeout=10)
    for i in range(8, 12):
        await route.put(pts(i), ack_to(acked, i))
    await async_wait_until(lambda: len(new.stored) == 7 and len(acked) == 12, timeout=10)
    await harness.stop(route)
    assert old.stored == pts(0, 5)
    assert new.stored == pts(5, 7)
    assert new.events[0] == "open" and new.events[-1] == "close"
    assert acked == list(range(12))
    assert max(len(b) for b in new.batches) <= 4  # the new batch size
    assert route.sink is new and route.status is new.status
    assert new.status.counters["points_written"] == 12  # counted on from the old sink's 5
    assert new.status.counters["batches_written"] == len(old.batches) + len(new.batches)
    assert await harness.left_behind() == []


async def test_reconfigure_while_a_write_is_retrying_sends_the_batch_to_the_new_sink(harness: Harness) -> None:
    old = RecordingSink()
    old.down = SinkUnavailable("old store down")
    route = harness.build(old, flush_interval=0.01, backoff=Backoff(initial=30, cap=30))
    harness.start(route)
    acked: list[int] = []
    for i in range(5):
        await route.put(pts(i), ack_to(acked, i))
    await async_wait_until(lambda: route.status.state is State.BACKOFF, timeout=10)
    new = RecordingSink()
    await route.reconfigure(new, BatchPolicy(batch_size=100, flush_interval=0.01))
    await async_wait_until(lambda: len(new.stored) == 5 and len(acked) == 5, timeout=10)  # not after 30 s
    await settle()
    assert new.stored == pts(0, 5)
    assert old.stored == []
    assert acked == list(range(5))  # each source once
    assert new.status.counters["write_errors"] == 1  # carried over
    assert new.status.counters["points_written"] == 5
    assert route.status.state is State.RUNNING
    await harness.stop(route)
    assert acked == list(range(5))
    assert await harness.left_behind() == []


async def test_reconfigure_waits_for_a_write_in_flight_to_finish_with_the_old_sink(harness: Harness) -> None:
    old = RecordingSink()
    old.gate.clear()  # the old store has the batch and has not answered yet
    route = harness.build(old, flush_interval=0.01)
    harness.start(route)
    acked: list[int] = []
    await route.put(pts(0, 3), ack_to(acked, 0))
    await async_wait_until(lambda: old.writing, timeout=10)
    new = RecordingSink()
    replacing = asyncio.create_task(route.reconfigure(new, BatchPolicy(batch_size=100, flush_interval=0.01)))
    await settle()
    assert not replacing.done()  # the write in flight is not abandoned
    assert old.is_open
    old.gate.set()
    await asyncio.wait_for(replacing, 10)
    assert old.stored == pts(0, 3) and old.events[-1] == "close"
    await route.put(pts(3, 2), ack_to(acked, 1))
    await async_wait_until(lambda: len(new.stored) == 2 and len(acked) == 2, timeout=10)
    assert new.stored == pts(3, 2)
    assert acked == [0, 1]
    assert new.status.counters["points_written"] == 5


async def test_reconfigure_while_the_old_sink_cannot_open_opens_the_new_one_at_once(harness: Harness) -> None:
    old = RecordingSink()
    old.open_down = SinkUnavailable("connection refused")
    route = harness.build(old, flush_interval=0.01, backoff=Backoff(initial=30, cap=30))
    harness.start(route)
    acked: list[int] = []
    await route.put(pts(0, 3), ack_to(acked, 0))
    await async_wait_until(lambda: route.status.state is State.BACKOFF, timeout=10)
    new = RecordingSink()
    await route.reconfigure(new, BatchPolicy(batch_size=100, flush_interval=0.01))
    await async_wait_until(lambda: len(new.stored) == 3 and acked, timeout=10)  # not after the 30 s backoff
    assert new.events[:2] == ["open", "write"]
    assert old.events == []  # never opened, so never closed
    assert acked == [0]
    assert route.status.state is State.RUNNING


async def test_reconfigure_while_the_old_sink_is_opening_opens_and_writes_the_new_one(harness: Harness) -> None:
    old = RecordingSink()
    old.open_gate.clear()  # the old sink's open() is on its way (a slow connection)
    route = harness.build(old, flush_interval=0.01)
    harness.start(route)
    await async_wait_until(lambda: old.open_attempts, timeout=10)
    new = RecordingSink()
    await route.reconfigure(new, BatchPolicy(batch_size=100, flush_interval=0.01))
    old.open_gate.set()  # the old open() finishes after the sink was replaced
    acked: list[int] = []
    await route.put(pts(0, 3), ack_to(acked, 0))
    await async_wait_until(lambda: len(new.stored) == 3 and acked, timeout=10)
    assert new.events[:2] == ["open", "write"]  # the new sink was opened before it was written to
    assert not old.is_open  # the old one is not left open
    await harness.stop(route)
    assert not new.is_open
    assert new.stored == pts(0, 3) and old.stored == []


# --- status ---------------------------------------------------------------------------------------------


async def test_status_shows_the_points_waiting_and_the_age_of_the_oldest(harness: Harness) -> None:
    sink = RecordingSink()
    sink.down = SinkUnavailable("store down")
    route = harness.build(sink, flush_interval=0.01)
    route.GAUGE_INTERVAL = 0.05
    harness.start(route)
    await route.put(pts(0, 100), noop)
    depth_key = "depth_points" if harness.durable else "pending_points"
    await async_wait_until(lambda: route.status.detail.get(depth_key) == 100, timeout=10)
    await async_wait_until(lambda: route.status.detail["oldest_age_seconds"] >= 0.2, timeout=10)
    assert route.status.as_dict()["state"] == "backoff"
    sink.down = None
    await async_wait_until(lambda: sink.stored, timeout=10)
    await async_wait_until(
        lambda: route.status.detail[depth_key] == 0 and route.status.detail["oldest_age_seconds"] == 0, timeout=10
    )
    assert numbers(sink.stored) == list(range(100))
