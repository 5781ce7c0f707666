"""SinkRunner and fan_out with a fake sink: batching, ordered acks after the write, retries,
rejected points, unauthorized stores, back-pressure and the shutdown deadline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from gateway.component import RuntimeContext, Sink, State
from gateway.errors import SinkRejected, SinkUnauthorized, SinkUnavailable
from gateway.logs import component_logger
from gateway.pipeline import Backoff, SinkRunner, fan_out
from gateway.point import Point
from gateway.settings import BatchPolicy
from tests.helpers import async_wait_until

FAST = Backoff(initial=0.02, cap=0.1)


class FakeSink(Sink):
    """Stores batches in memory; scripted failures are raised on the next writes, in order."""

    def __init__(self, name: str = "fake") -> None:
        super().__init__(name, "fake", RuntimeContext("gw", Path("."), component_logger("sink", name)))
        self.batches: list[list[Point]] = []
        self.failures: list[Exception] = []
        self.attempts: list[float] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.reject: set[int] = set()  # point times the store refuses (the others of the batch are stored)

    @property
    def stored(self) -> list[Point]:
        return [p for batch in self.batches for p in batch]

    async def write(self, points: Sequence[Point]) -> None:
        self.attempts.append(time.monotonic())
        if self.failures:
            raise self.failures.pop(0)
        await self.gate.wait()
        good = [p for p in points if p.time not in self.reject]
        self.batches.append(good)
        if len(good) < len(points):
            raise SinkRejected("field type conflict", rejected=len(points) - len(good))


def pts(start: int, count: int = 1) -> list[Point]:
    return [Point("m", {"v": float(i)}, {"s": "a"}, i) for i in range(start, start + count)]


async def settle() -> None:
    """Let every ready task run until the loop is idle (no wall-clock wait)."""
    for _ in range(50):
        await asyncio.sleep(0)


class Running:
    """A runner with its task, drained and awaited at the end."""

    def __init__(self, sink: FakeSink, batch_size: int = 100, flush_interval: float = 0.05, **kwargs: object) -> None:
        self.sink = sink
        self.runner = SinkRunner(
            sink, BatchPolicy(batch_size=batch_size, flush_interval=flush_interval), backoff=FAST, **kwargs
        )  # type: ignore[arg-type]
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> SinkRunner:
        self.task = asyncio.create_task(self.runner.run())
        return self.runner

    async def __aexit__(self, *exc: object) -> None:
        await self.runner.drain(time.monotonic() + 5)
        assert self.task is not None
        await asyncio.wait_for(self.task, 10)


# --- batching --------------------------------------------------------------------------------------


async def test_batches_are_written_when_batch_size_points_are_waiting() -> None:
    sink = FakeSink()
    async with Running(sink, batch_size=10, flush_interval=60) as runner:
        for i in range(25):
            await runner.put(pts(i), lambda: None)
        await async_wait_until(lambda: len(sink.batches) == 2, timeout=10)
        await settle()
        assert [len(b) for b in sink.batches] == [10, 10]
        assert runner.pending_points == 5  # waiting for more, or for the flush interval
    assert [len(b) for b in sink.batches] == [10, 10, 5]  # the stop flushes the rest
    assert sink.stored == pts(0, 25)


async def test_a_partial_batch_is_written_after_the_flush_interval() -> None:
    sink = FakeSink()
    async with Running(sink, batch_size=1000, flush_interval=0.3) as runner:
        started = time.monotonic()
        await runner.put(pts(0, 3), lambda: None)
        await runner.put(pts(3, 2), lambda: None)
        await async_wait_until(lambda: sink.batches, timeout=10)
        assert sink.attempts[0] - started >= 0.29
        assert sink.batches == [pts(0, 5)]


async def test_a_batch_larger_than_batch_size_is_written_in_chunks() -> None:
    sink = FakeSink()
    async with Running(sink, batch_size=4) as runner:
        await runner.put(pts(0, 10), lambda: None)
        await async_wait_until(lambda: len(sink.stored) == 10, timeout=10)
    assert [len(b) for b in sink.batches] == [4, 4, 2]
    assert runner.status.counters["points_written"] == 10
    assert runner.status.counters["batches_written"] == 3


# --- acknowledgements ------------------------------------------------------------------------------


async def test_acks_come_only_after_the_write_and_in_order() -> None:
    sink = FakeSink()
    sink.gate.clear()
    acked: list[int] = []

    def ack(i: int) -> None:
        assert pts(i)[0] in sink.stored, "acknowledged before it was stored"
        acked.append(i)

    async with Running(sink, batch_size=3, flush_interval=0.01) as runner:
        for i in range(10):
            await runner.put(pts(i), lambda i=i: ack(i))
        await async_wait_until(lambda: sink.attempts, timeout=10)
        await settle()
        assert acked == []  # the store has not answered yet
        sink.gate.set()
        await async_wait_until(lambda: len(acked) == 10, timeout=10)
    assert acked == list(range(10))


async def test_fan_out_acks_once_every_sink_has_stored() -> None:
    fast, slow = FakeSink("fast"), FakeSink("slow")
    slow.gate.clear()
    acked: list[int] = []
    async with Running(fast, flush_interval=0.01) as a, Running(slow, flush_interval=0.01) as b:
        emit = fan_out([a, b])
        for i in range(5):
            await emit(pts(i), lambda i=i: acked.append(i))  # type: ignore[misc]
        await async_wait_until(lambda: len(fast.stored) == 5, timeout=10)
        await settle()
        assert acked == []
        slow.gate.set()
        await async_wait_until(lambda: len(acked) == 5, timeout=10)
    assert acked == [0, 1, 2, 3, 4]
    assert fast.stored == slow.stored == pts(0, 5)


async def test_fan_out_to_one_sink_and_without_callback() -> None:
    sink = FakeSink()
    acked: list[bool] = []
    async with Running(sink, flush_interval=0.01) as runner:
        emit = fan_out([runner])
        await emit(pts(0), lambda: acked.append(True))  # type: ignore[misc]
        await emit(pts(1))  # type: ignore[misc]
        await async_wait_until(lambda: len(sink.stored) == 2 and acked, timeout=10)
    assert acked == [True]


# --- store errors ----------------------------------------------------------------------------------


async def test_an_unavailable_store_is_retried_with_backoff_until_it_recovers() -> None:
    sink = FakeSink()
    sink.failures = [SinkUnavailable("connection refused")] * 3
    acked: list[int] = []
    async with Running(sink, flush_interval=0.01) as runner:
        await runner.put(pts(0, 5), lambda: acked.append(1))
        await async_wait_until(lambda: runner.status.state is State.BACKOFF, timeout=10)
        assert runner.status.last_error == "connection refused"
        await async_wait_until(lambda: acked, timeout=10)
        assert runner.status.state is State.RUNNING
    assert sink.stored == pts(0, 5)
    assert runner.status.counters["write_errors"] == 3
    gaps = [b - a for a, b in zip(sink.attempts, sink.attempts[1:], strict=False)]
    assert len(gaps) == 3
    for attempt, gap in enumerate(gaps):  # 20 ms, 40 ms, 80 ms (±20 % jitter; a loaded machine only adds)
        assert gap >= 0.8 * 0.02 * 2**attempt - 0.002


async def test_retry_after_from_the_store_is_honoured() -> None:
    sink = FakeSink()
    sink.failures = [SinkUnavailable("429 too many requests", retry_after=0.4)]
    async with Running(sink, flush_interval=0.01) as runner:
        await runner.put(pts(0), lambda: None)
        await async_wait_until(lambda: runner.status.detail.get("retry_in_seconds") == 0.4, timeout=10)
        await async_wait_until(lambda: sink.stored, timeout=10)
    assert sink.attempts[1] - sink.attempts[0] >= 0.39


async def test_rejected_points_are_dropped_and_counted_and_their_neighbours_stored() -> None:
    sink = FakeSink()
    sink.reject = {3}
    acked: list[int] = []
    async with Running(sink, batch_size=5, flush_interval=0.01) as runner:
        for i in range(10):
            await runner.put(pts(i), lambda i=i: acked.append(i))
        await async_wait_until(lambda: len(acked) == 10, timeout=10)
    assert sink.stored == [p for p in pts(0, 10) if p.time != 3]
    assert runner.status.counters["points_rejected"] == 1
    assert runner.status.counters["points_written"] == 9
    assert "field type conflict" in (runner.status.last_error or "")
    assert runner.status.state is not State.BACKOFF


async def test_refused_credentials_set_state_unauthorized_and_keep_the_points() -> None:
    sink = FakeSink()
    sink.failures = [SinkUnauthorized("401 unauthorized: check the token")]
    acked: list[int] = []
    async with Running(sink, flush_interval=0.01) as runner:
        runner.UNAUTHORIZED_RETRY = 0.2
        await runner.put(pts(0, 3), lambda: acked.append(1))
        await async_wait_until(lambda: runner.status.state is State.UNAUTHORIZED, timeout=10)
        assert acked == [] and runner.pending_points == 3
        await async_wait_until(lambda: acked, timeout=10)
        assert runner.status.state is State.RUNNING
    assert sink.stored == pts(0, 3)


async def test_an_unexpected_sink_error_is_logged_and_retried(caplog: pytest.LogCaptureFixture) -> None:
    sink = FakeSink()
    sink.failures = [RuntimeError("bug in the sink")]
    async with Running(sink, flush_interval=0.01) as runner:
        await runner.put(pts(0), lambda: None)
        await async_wait_until(lambda: sink.stored, timeout=10)
    assert "bug in the sink" in (runner.status.last_error or "")
    assert any("unexpected error while writing" in r.getMessage() for r in caplog.records)


# --- back-pressure ---------------------------------------------------------------------------------


async def test_put_waits_when_the_runner_is_full() -> None:
    sink = FakeSink()
    sink.gate.clear()
    async with Running(sink, batch_size=5, flush_interval=0.01, max_pending=10) as runner:
        await runner.put(pts(0, 10), lambda: None)
        blocked = asyncio.create_task(runner.put(pts(10), lambda: None))
        await settle()
        assert not blocked.done(), "put must wait while max_pending points are queued"
        sink.gate.set()
        await asyncio.wait_for(blocked, 10)
        await async_wait_until(lambda: len(sink.stored) == 11, timeout=10)


# --- stopping ----------------------------------------------------------------------------------------


async def test_drain_writes_everything_pending_then_run_returns() -> None:
    sink = FakeSink()
    runner = SinkRunner(sink, BatchPolicy(batch_size=1000, flush_interval=3600), backoff=FAST)
    task = asyncio.create_task(runner.run())
    acked: list[int] = []
    for i in range(7):
        await runner.put(pts(i), lambda i=i: acked.append(i))
    await runner.drain(time.monotonic() + 5)
    await asyncio.wait_for(task, 10)
    assert sink.stored == pts(0, 7)
    assert acked == list(range(7))


async def test_a_stop_retries_at_once_instead_of_sleeping_out_the_backoff() -> None:
    sink = FakeSink()
    sink.failures = [SinkUnavailable("down")]
    runner = SinkRunner(sink, BatchPolicy(batch_size=10, flush_interval=0.01), backoff=Backoff(initial=30, cap=30))
    task = asyncio.create_task(runner.run())
    await runner.put(pts(0), lambda: None)
    await async_wait_until(lambda: runner.status.state is State.BACKOFF, timeout=10)
    started = time.monotonic()
    await runner.drain(time.monotonic() + 60)
    await asyncio.wait_for(task, 10)
    assert time.monotonic() - started < 10
    assert sink.stored == pts(0)


async def test_the_shutdown_deadline_counts_unstored_points_as_lost(caplog: pytest.LogCaptureFixture) -> None:
    sink = FakeSink()
    sink.failures = [SinkUnavailable("store down")] * 1000
    runner = SinkRunner(sink, BatchPolicy(batch_size=4, flush_interval=0.01), backoff=FAST)
    task = asyncio.create_task(runner.run())
    acked: list[int] = []
    for i in range(10):
        await runner.put(pts(i), lambda i=i: acked.append(i))
    await async_wait_until(lambda: runner.status.state is State.BACKOFF, timeout=10)
    started = time.monotonic()
    await runner.drain(time.monotonic() + 0.5)
    await asyncio.wait_for(task, 10)
    assert 0.3 < time.monotonic() - started < 5
    assert acked == []
    assert sink.stored == []
    assert runner.status.counters["points_lost_on_shutdown"] == 10
    assert any(
        "10 points not stored" in r.getMessage() or "points not stored" in r.getMessage() for r in caplog.records
    )
    attempts_at_deadline = len(sink.attempts)
    assert attempts_at_deadline < 200  # no write attempts piled up after the deadline


async def test_a_write_that_hangs_past_the_deadline_is_cancelled_and_counted() -> None:
    sink = FakeSink()
    sink.gate.clear()  # the store never answers
    runner = SinkRunner(sink, BatchPolicy(batch_size=10, flush_interval=0.01), backoff=FAST)
    task = asyncio.create_task(runner.run())
    await runner.put(pts(0, 3), lambda: pytest.fail("acknowledged without a write"))
    await async_wait_until(lambda: sink.attempts, timeout=10)
    await runner.drain(time.monotonic() + 0.2)
    done, _ = await asyncio.wait([task], timeout=0.5)
    assert not done  # still inside the write; the runtime cancels it at the deadline
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert runner.status.counters["points_lost_on_shutdown"] == 3


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
