"""What only the disk queue does, driven through a :class:`Route` with fake sinks.

Group commit (acknowledged after the fsync, many puts per sync), line protocol handed over
as is or decoded for a sink without ``write_lines``, the two overflow policies with exact
counts, the gauges of the files, a disk that cannot be written, a live change of the
bounds, and :func:`adopt_buffer` moving a folder left behind. What every route does with
either queue is in tests/route/test_route.py.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from gateway.buffer import BufferInUse, DiskQueue, SegmentLog, adopt_buffer, resolve_buffer_settings
from gateway.buffer._segments import segment_name
from gateway.component import State
from gateway.errors import SinkUnavailable
from gateway.lineprotocol import encode_batch
from gateway.pipeline import Backoff
from gateway.point import Point
from gateway.route import Route
from gateway.settings import BatchPolicy, BufferSettings
from tests.fixtures.small_filesystem import SmallFilesystem
from tests.helpers import async_wait_until
from tests.route.fakes import T0, LineSink, RecordingSink, numbers, pts


def noop() -> None:
    pass


def rich(start: int, count: int) -> list[Point]:
    """Points with every field type, and text that line protocol must escape."""
    return [
        Point("m", {"v": i, "f": i / 3, "ok": i % 2 == 0, "s": f'x "{i}" \\ y'}, {"s": "a b,c=d"}, T0 + i)
        for i in range(start, start + count)
    ]


def queue_of(route: Route) -> DiskQueue:
    assert isinstance(route.queue, DiskQueue)
    return route.queue


def segments(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.glob("seg-*.log"))


class Routes:
    """Builds routes on disk queues under one folder; stops what a test left running."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._tasks: dict[Route, asyncio.Task[None]] = {}
        self._built: list[Route] = []

    def build(
        self,
        sink: RecordingSink,
        *,
        batch_size: int = 100,
        flush_interval: float = 0.05,
        segment_size: int | None = None,
        adopt: tuple[Path, ...] = (),
        **buffer: object,
    ) -> Route:
        settings = BufferSettings.model_validate({"path": self.folder, **buffer})
        queue = DiskQueue(
            self.folder / sink.name, settings, batch_size, sink.log, segment_size=segment_size, adopt=adopt
        )
        route = Route(
            sink,
            BatchPolicy(batch_size=batch_size, flush_interval=flush_interval),
            queue,
            backoff=Backoff(initial=0.02, cap=0.1),
        )
        self._built.append(route)
        return route

    def start(self, route: Route) -> asyncio.Task[None]:
        task = asyncio.create_task(route.run())
        self._tasks[route] = task
        return task

    async def stop(self, route: Route, seconds: float = 10.0) -> None:
        await route.drain(time.monotonic() + seconds)
        await asyncio.wait_for(self._tasks[route], seconds + 10)

    async def close(self) -> None:
        for route, task in self._tasks.items():
            if not task.done():
                await route.drain(time.monotonic() + 2)
                await asyncio.wait([task], timeout=5)
            if not task.done():
                task.cancel()
                await asyncio.wait([task], timeout=5)
        for route in self._built:
            await route.queue.aclose()


@pytest.fixture
async def routes(tmp_path: Path) -> AsyncIterator[Routes]:
    running = Routes(tmp_path / "buffer")
    yield running
    await running.close()


def count_syncs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    synced: list[int] = []
    real_fdatasync = os.fdatasync

    def fdatasync(fd: int) -> None:
        real_fdatasync(fd)
        synced.append(fd)

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    return synced


# --- group commit ------------------------------------------------------------------------------------


async def test_many_puts_share_one_sync_and_each_is_acknowledged_after_it(
    routes: Routes, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced = count_syncs(monkeypatch)
    sink = LineSink()
    route = routes.build(sink)
    routes.start(route)
    acked: list[int] = []
    early: list[int] = []

    def done_for(start: int, syncs_at_put: int) -> Callable[[], None]:
        def done() -> None:
            acked.append(start)
            if len(synced) <= syncs_at_put:  # no sync finished since the put: acknowledged too early
                early.append(start)

        return done

    for start in range(0, 1000, 10):
        await route.put(pts(start, 10), done_for(start, len(synced)))
    await async_wait_until(lambda: len(sink.stored) == 1000, timeout=20)
    assert sink.stored == pts(0, 1000)
    assert acked == list(range(0, 1000, 10)) and not early  # every done, in order, each after a sync
    assert len(synced) < 10  # one group commit (a segment file per sync), not one sync per put
    assert route.status.counters["points_written"] == 1000
    assert route.status.counters["points_buffered"] == 1000
    await routes.stop(route)
    assert route.status.detail["depth_points"] == 0


async def test_a_trickle_of_single_points_shares_disk_syncs(routes: Routes, monkeypatch: pytest.MonkeyPatch) -> None:
    synced = count_syncs(monkeypatch)
    sink = LineSink()
    route = routes.build(sink)
    routes.start(route)
    started = time.monotonic()
    for i in range(200):  # one point every millisecond or so, as a slow sensor network delivers them
        await route.put(pts(i), noop)
        await asyncio.sleep(0.001)
    await async_wait_until(lambda: route.status.counters["points_buffered"] == 200, timeout=10)
    elapsed = time.monotonic() - started
    # At most one sync per commit interval, however slowly the loop ran (200 puts in ~0.3 s
    # share ~30 syncs on an idle machine; a starved loop stretches the time, not the ratio).
    assert len(synced) <= elapsed / DiskQueue.COMMIT_INTERVAL + 3
    await async_wait_until(lambda: len(sink.stored) == 200, timeout=10)
    assert sink.stored == pts(0, 200)


# --- what the sink is given -----------------------------------------------------------------------------


async def test_a_sink_without_write_lines_gets_the_same_points_back(routes: Routes) -> None:
    plain, lines = RecordingSink("plain"), LineSink("lines")
    for sink in (plain, lines):
        route = routes.build(sink)
        routes.start(route)
        await route.put(rich(0, 250), noop)
        await routes.stop(route)  # (a stop sends everything first)
    assert plain.stored == rich(0, 250)  # decoded from the buffered line protocol
    assert plain.via_lines == 0
    assert lines.stored == rich(0, 250)  # handed over as line protocol
    assert lines.via_lines == len(lines.batches) > 0


# --- overflow ------------------------------------------------------------------------------------------


async def test_drop_oldest_counts_every_dropped_point_and_logs_once_per_episode(
    routes: Routes, caplog: pytest.LogCaptureFixture
) -> None:
    sink = LineSink()
    sink.down = SinkUnavailable("down", retry_after=0.05)
    route = routes.build(sink, max_size=128 * 1024)
    queue = queue_of(route)
    routes.start(route)
    with caplog.at_level(logging.INFO):
        for start in range(0, 10_000, 100):
            await route.put(pts(start, 100), noop)
        await async_wait_until(lambda: queue.queued_points == 0, timeout=10)
        assert caplog.text.count("buffer full") == 1  # logged once per episode
        assert route.status.counters["buffer_full_episodes"] == 1
        assert queue.store.disk_bytes <= 128 * 1024
        sink.down = None
        await async_wait_until(lambda: queue.store.depth_points == 0, timeout=20)
        await async_wait_until(lambda: "room again" in caplog.text, timeout=10)
    dropped = route.status.counters["points_dropped"]
    assert dropped > 0
    assert len(sink.stored) + dropped == 10_000  # every point written or counted, none twice
    assert numbers(sink.stored) == sorted(set(numbers(sink.stored)))  # in order, no duplicates
    assert numbers(sink.stored)[-100:] == list(range(9_900, 10_000))  # the newest survive
    assert f"{dropped} points were dropped while it was full" in caplog.text


async def test_block_slows_the_sources_instead_of_dropping(routes: Routes) -> None:
    sink = LineSink()
    sink.down = SinkUnavailable("down", retry_after=0.05)
    route = routes.build(sink, max_size=64 * 1024, overflow="block")
    queue = queue_of(route)
    routes.start(route)

    async def produce() -> None:
        for start in range(0, 5_000, 100):
            await route.put(pts(start, 100), noop)

    producer = asyncio.create_task(produce())
    await async_wait_until(lambda: route.status.counters.get("buffer_full_episodes", 0) == 1, timeout=10)
    assert not producer.done()
    assert queue.store.disk_bytes <= 64 * 1024
    sink.down = None
    await asyncio.wait_for(producer, 30)
    await async_wait_until(lambda: len(sink.stored) == 5_000, timeout=30)
    assert sink.stored == pts(0, 5_000)
    assert route.status.counters["points_dropped"] == 0


async def test_reconfigure_raises_the_bound_and_a_blocked_source_goes_on(routes: Routes) -> None:
    sink = LineSink()
    sink.down = SinkUnavailable("down", retry_after=0.05)
    route = routes.build(sink, max_size=32 * 1024, overflow="block")
    queue = queue_of(route)
    routes.start(route)

    async def produce() -> None:
        for start in range(0, 2_000, 100):
            await route.put(pts(start, 100), noop)

    producer = asyncio.create_task(produce())
    await async_wait_until(lambda: route.status.counters.get("buffer_full_episodes", 0) == 1, timeout=10)
    assert not producer.done()
    bigger = BufferSettings.model_validate({"path": routes.folder, "max_size": "1MiB", "overflow": "block"})
    queue.reconfigure(bigger, 100)
    await asyncio.wait_for(producer, 10)  # without the store taking anything: there is room now
    await async_wait_until(lambda: queue.store.depth_points == 2_000, timeout=10)
    assert len(sink.stored) == 0
    assert (route.status.detail["max_size"], route.status.detail["overflow"]) == (2**20, "block")
    sink.down = None
    await async_wait_until(lambda: len(sink.stored) == 2_000, timeout=20)
    assert sink.stored == pts(0, 2_000)


# --- status ----------------------------------------------------------------------------------------------


async def test_status_shows_depth_bytes_and_oldest_age(routes: Routes) -> None:
    sink = LineSink()
    sink.down = SinkUnavailable("down", retry_after=0.05)
    route = routes.build(sink)
    route.GAUGE_INTERVAL = 0.05
    routes.start(route)
    await route.put(pts(0, 100), noop)
    await async_wait_until(lambda: route.status.detail["depth_points"] == 100, timeout=10)
    await async_wait_until(lambda: route.status.detail["oldest_age_seconds"] >= 0.2, timeout=10)
    detail = route.status.detail
    assert detail["depth_bytes"] >= len(encode_batch(pts(0, 100)))
    assert detail["disk_bytes"] >= detail["depth_bytes"]
    assert detail["queued_points"] == 0
    assert detail["buffer_path"] == str(routes.folder / "fake")
    assert (detail["max_size"], detail["overflow"]) == (2**30, "drop_oldest")
    assert route.status.as_dict()["state"] == "backoff"
    sink.down = None
    await async_wait_until(lambda: route.status.detail["depth_points"] == 0, timeout=10)
    await async_wait_until(lambda: route.status.detail["oldest_age_seconds"] == 0, timeout=10)


def test_a_sink_buffer_block_overrides_only_the_keys_it_names(tmp_path: Path) -> None:
    gateway = BufferSettings(path=tmp_path, max_size=1 << 30, overflow="drop_oldest")
    override = BufferSettings.model_validate({"max_size": "10MiB"})
    merged = resolve_buffer_settings(gateway, override)
    assert (merged.path, merged.max_size, merged.overflow) == (tmp_path, 10 * 2**20, "drop_oldest")
    assert resolve_buffer_settings(gateway, None) is gateway


# --- a disk that cannot be written -------------------------------------------------------------------------


def failing_append(queue: DiskQueue, failures: list[int]) -> None:
    """Make the buffer's appends fail with ENOSPC while ``failures`` is not empty (one each)."""
    real_append = queue.store.append

    def append(records: list[tuple[bytes, int]]) -> int:
        if failures:
            failures.pop()
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_append(records)

    queue.store.append = append  # type: ignore[method-assign]


async def test_a_disk_that_cannot_be_written_keeps_the_points_unacknowledged_and_retries(
    routes: Routes,
) -> None:
    sink = LineSink()
    route = routes.build(sink)
    queue = queue_of(route)
    failures = [1, 1]
    failing_append(queue, failures)
    routes.start(route)
    acked: list[int] = []
    await route.put(pts(0, 10), lambda: acked.append(0))
    await async_wait_until(lambda: route.status.counters.get("buffer_write_errors", 0) >= 1, timeout=10)
    assert acked == []  # not durable yet: the source is not acknowledged
    assert "No space left on device" in (route.status.last_error or "")
    assert queue.queued_points == 10
    await async_wait_until(lambda: acked and len(sink.stored) == 10, timeout=20)
    assert acked == [0]
    assert route.status.counters["buffer_write_errors"] == 2
    assert sink.stored == pts(0, 10)


async def test_a_stop_while_the_disk_cannot_be_written_counts_the_points_lost(routes: Routes) -> None:
    sink = LineSink()
    route = routes.build(sink)
    queue = queue_of(route)
    queue._disk_backoff = Backoff(initial=60, cap=60)  # the next try of the disk is far away
    failing_append(queue, [1] * 1000)
    task = routes.start(route)
    acked: list[int] = []
    await route.put(pts(0, 10), lambda: acked.append(0))
    await async_wait_until(lambda: route.status.counters.get("buffer_write_errors", 0) >= 1, timeout=10)
    await route.drain(time.monotonic() + 0.5)
    await asyncio.wait_for(task, 20)  # the stop does not sit out the disk's 60 s backoff
    assert acked == []  # never durable, never acknowledged: QoS 1/2 messages are redelivered
    assert route.status.counters["points_lost_on_shutdown"] == 10
    assert sink.stored == []


def state(route: Route) -> State:
    """The state the status shows now (a function: each call reads it again)."""
    return route.status.state


def disk_full_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "is full" in r.getMessage() and r.levelno >= logging.ERROR]


async def test_a_full_disk_shows_disk_full_over_the_stores_backoff_once_per_episode(
    routes: Routes, caplog: pytest.LogCaptureFixture
) -> None:
    sink = LineSink()
    sink.down = SinkUnavailable("store down", retry_after=0.05)  # the store is down too
    route = routes.build(sink)
    queue = queue_of(route)
    queue._disk_backoff = Backoff(initial=0.02, cap=0.05)
    routes.start(route)
    await route.put(pts(0, 10), noop)
    await async_wait_until(lambda: route.status.state is State.BACKOFF, timeout=10)
    failures = [1] * 5
    failing_append(queue, failures)
    acked: list[int] = []
    with caplog.at_level(logging.INFO):
        await route.put(pts(10, 10), lambda: acked.append(10))
        await async_wait_until(lambda: route.status.state is State.DISK_FULL, timeout=10)
        # The store's retries go on meanwhile: they must not hide the full disk.
        writes = len(sink.attempts)
        await async_wait_until(lambda: len(sink.attempts) >= writes + 2 and len(failures) <= 2, timeout=10)
        assert state(route) is State.DISK_FULL or not failures
        await async_wait_until(lambda: acked == [10], timeout=10)
        assert state(route) is State.BACKOFF  # the disk has room again; the store is still down
        assert route.status.counters["buffer_write_errors"] == 5
        lines = disk_full_lines(caplog)
        assert len(lines) == 1, lines  # one line per episode, saying what waits unacknowledged
        assert "10 points" in lines[0] and "not acknowledged" in lines[0] and str(queue.directory) in lines[0]
        assert "is written again" in caplog.text
        sink.down = None
        await async_wait_until(lambda: len(sink.stored) == 20, timeout=10)
    assert state(route) is State.RUNNING
    assert sink.stored == pts(0, 20)


async def test_a_store_back_while_the_disk_is_full_shows_running_once_the_disk_has_room(routes: Routes) -> None:
    sink = LineSink()
    sink.down = SinkUnavailable("store down", retry_after=0.05)
    route = routes.build(sink, batch_size=100, flush_interval=3600)
    queue = queue_of(route)
    queue._disk_backoff = Backoff(initial=0.02, cap=0.05)
    routes.start(route)
    await route.put(pts(0, 100), noop)  # a full batch: written as soon as the store takes it
    await async_wait_until(lambda: route.status.state is State.BACKOFF, timeout=10)
    failures = [1] * 1000
    failing_append(queue, failures)
    acked: list[int] = []
    await route.put(pts(100, 10), lambda: acked.append(100))
    await async_wait_until(lambda: route.status.state is State.DISK_FULL, timeout=10)
    sink.down = None
    await async_wait_until(lambda: len(sink.stored) == 100, timeout=10)
    assert state(route) is State.DISK_FULL  # the store is back, the disk is still full
    failures.clear()
    await async_wait_until(lambda: acked == [100], timeout=10)
    # No write follows (10 points wait for the flush interval): the state still says the truth.
    assert state(route) is State.RUNNING


async def test_a_buffer_that_cannot_be_opened_at_start_makes_the_sources_wait(
    routes: Routes, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_open = SegmentLog.open
    failure: list[OSError] = [OSError(errno.EROFS, "Read-only file system")]

    def open_(store: SegmentLog) -> None:
        if failure:
            raise failure[0]
        real_open(store)

    monkeypatch.setattr(SegmentLog, "open", open_)  # refused at the queue's build and in run() alike
    sink = LineSink()
    route = routes.build(sink)
    queue = queue_of(route)
    queue._disk_backoff = Backoff(initial=0.02, cap=0.05)
    acked: list[int] = []
    with caplog.at_level(logging.INFO):
        routes.start(route)
        put = asyncio.create_task(route.put(pts(0, 10), lambda: acked.append(0)))
        await async_wait_until(lambda: route.status.state is State.BACKOFF, timeout=10)
        assert "Read-only file system" in (route.status.last_error or "")
        failure[0] = OSError(errno.ENOSPC, "No space left on device")
        await async_wait_until(lambda: route.status.state is State.DISK_FULL, timeout=10)
        assert not put.done() and acked == []  # the source waits, unacknowledged
        failure.clear()
        await asyncio.wait_for(put, 10)  # the put waited for the files, then went in
        await async_wait_until(lambda: acked == [0] and len(sink.stored) == 10, timeout=10)
    assert state(route) is State.RUNNING
    assert sink.stored == pts(0, 10)
    assert "cannot open the buffer" in caplog.text and "is written again" in caplog.text
    assert len(disk_full_lines(caplog)) == 1


def test_a_second_gateway_on_the_same_folder_is_refused_when_its_queue_is_built(tmp_path: Path) -> None:
    first = DiskQueue(tmp_path / "fake", BufferSettings(path=tmp_path), 100, RecordingSink().log)
    try:
        with pytest.raises(BufferInUse, match="in use by another running gateway"):
            DiskQueue(tmp_path / "fake", BufferSettings(path=tmp_path), 100, RecordingSink().log)
    finally:
        first.close()


async def test_on_a_real_full_disk_the_buffer_waits_unacknowledged_and_resumes_by_itself(
    small_filesystem: SmallFilesystem, caplog: pytest.LogCaptureFixture
) -> None:
    small_filesystem.mount("1m")
    folder = small_filesystem.path / "buffer"
    routes = Routes(folder)
    try:
        small_filesystem.fill()  # full before the gateway starts
        sink = LineSink()
        route = routes.build(sink)
        queue = queue_of(route)
        queue._disk_backoff = Backoff(initial=0.05, cap=0.2)
        acked: list[int] = []
        with caplog.at_level(logging.INFO):
            routes.start(route)
            await route.put(pts(0, 100), lambda: acked.append(0))
            await async_wait_until(lambda: route.status.state is State.DISK_FULL, timeout=10)
            assert "is full" in (route.status.last_error or "")
            errors = route.status.counters.get("buffer_write_errors", 0)
            await async_wait_until(lambda: route.status.counters.get("buffer_write_errors", 0) > errors + 2)
            assert acked == [] and sink.stored == []  # nothing durable, nothing acknowledged
            small_filesystem.free()
            await async_wait_until(lambda: acked == [0] and len(sink.stored) == 100, timeout=10)
            assert state(route) is State.RUNNING

            # The disk fills up again while the store is down; the store comes back while it is full
            # (the ack file cannot be rewritten then: confirmations go on, the gateway too).
            sink.down = SinkUnavailable("store down", retry_after=0.05)
            await route.put(pts(100, 200), lambda: acked.append(100))
            await async_wait_until(lambda: acked == [0, 100], timeout=10)
            small_filesystem.fill()
            await route.put(pts(300, 100), lambda: acked.append(300))
            await async_wait_until(lambda: route.status.state is State.DISK_FULL, timeout=10)
            sink.down = None
            await async_wait_until(lambda: len(sink.stored) == 300, timeout=10)
            assert acked == [0, 100]  # the last 100 still wait for room
            assert state(route) is State.DISK_FULL
            small_filesystem.free()
            await async_wait_until(lambda: acked == [0, 100, 300] and len(sink.stored) == 400, timeout=10)
            assert state(route) is State.RUNNING
        assert sink.stored == pts(0, 400)
        assert len(disk_full_lines(caplog)) == 2  # one per episode
        await routes.stop(route)
        # After the restart nothing is lost and nothing skipped; a lagging ack file resends
        # (never skips), and only records this run confirmed while the disk was full.
        again = LineSink()
        assert numbers(await _sent_by_a_new_route(routes, again)) == sorted(set(numbers(again.stored)))
    finally:
        await routes.close()


async def _sent_by_a_new_route(routes: Routes, sink: LineSink) -> list[Point]:
    route = routes.build(sink)
    routes.start(route)
    await async_wait_until(lambda: queue_of(route).store.opened and queue_of(route).store.depth_points == 0)
    await routes.stop(route)
    return sink.stored


class CountingEvent(asyncio.Event):
    def __init__(self) -> None:
        super().__init__()
        self.clears = 0

    def clear(self) -> None:
        self.clears += 1
        super().clear()


async def test_a_stop_waits_for_the_last_group_commit_without_spinning(
    routes: Routes, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink = LineSink()
    route = routes.build(sink, flush_interval=3600)
    queue = queue_of(route)
    data = CountingEvent()
    queue.data = data
    real_append = queue.store.append
    appending = threading.Event()

    def slow_append(records: list[tuple[bytes, int]]) -> int:
        appending.set()
        time.sleep(0.3)  # (in the committer's thread) a slow disk
        return real_append(records)

    monkeypatch.setattr(queue.store, "append", slow_append)
    task = routes.start(route)
    await route.put(pts(0, 5), noop)
    await async_wait_until(appending.is_set, timeout=10)
    await route.drain(time.monotonic() + 10)  # while the group commit is on its way to the disk
    before = data.clears
    await asyncio.wait_for(task, 20)
    assert sink.stored == pts(0, 5)  # sent once committed
    assert data.clears - before < 50  # the route waited for the commit, it did not poll the queue meanwhile


# --- a buffer folder left behind --------------------------------------------------------------------------


def fill(folder: Path, numbers_: range, *, per_record: int = 10, segment_size: int = 1024) -> list[str]:
    """A closed buffer folder holding ``numbers_`` unsent, one record per ``per_record`` points."""
    log = SegmentLog(folder, max_size=1 << 30, segment_size=segment_size)
    log.open()
    for start in range(numbers_.start, numbers_.stop, per_record):
        log.append([(encode_batch(pts(start, per_record)), per_record)])
    log.close()
    return segments(folder)


async def test_an_old_folder_is_moved_after_the_new_ones_own_segments_and_sent(
    routes: Routes, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    new, old = routes.folder / "fake", tmp_path / "old" / "fake"
    own = fill(new, range(0, 60))
    moved = fill(old, range(60, 150))
    assert len(own) > 1 and len(moved) > 1
    sink = RecordingSink()
    sink.open_gate.clear()  # the store is not reachable yet: the buffer opens, nothing is sent
    with caplog.at_level(logging.WARNING):
        route = routes.build(sink, adopt=(old,))
        assert segments(new) == own  # the files are taken over when the queue runs, not when it is built
        routes.start(route)
        await async_wait_until(lambda: route.status.detail["depth_points"] == 150, timeout=10)
    last_own = int(own[-1][4:-4])
    assert segments(new) == own + [segment_name(last_own + 1 + i) for i in range(len(moved))]
    assert not old.exists()  # nothing left behind
    assert f"found {len(moved)} buffer file(s)" in caplog.text
    sink.open_gate.set()
    await async_wait_until(lambda: len(sink.stored) == 150, timeout=10)
    assert numbers(sink.stored) == list(range(150))  # the new folder's own first, then the old ones


async def test_moved_segments_come_after_a_new_folder_that_was_emptied(routes: Routes, tmp_path: Path) -> None:
    new, old = routes.folder / "fake", tmp_path / "old" / "fake"
    fill(new, range(0, 60))
    log = SegmentLog(new, max_size=1 << 30)
    log.open()
    while (batch := log.read(1000)) is not None:  # everything confirmed: no segment left, the ack moved on
        log.ack(batch)
    log.close()
    fill(old, range(100, 130))  # numbered from 1 again: before the new folder's ack
    sink = RecordingSink()
    sink.open_gate.clear()
    route = routes.build(sink, adopt=(old,))
    routes.start(route)
    # not taken for segments confirmed long ago
    await async_wait_until(lambda: route.status.detail["depth_points"] == 30, timeout=10)
    sink.open_gate.set()
    await async_wait_until(lambda: len(sink.stored) == 30, timeout=10)
    assert numbers(sink.stored) == list(range(100, 130))


async def test_segments_confirmed_before_the_old_ack_are_not_moved(routes: Routes, tmp_path: Path) -> None:
    old = tmp_path / "old" / "fake"
    log = SegmentLog(old, max_size=1 << 30, segment_size=1024)
    log.open()
    for start in range(0, 90, 10):
        log.append([(encode_batch(pts(start, 10)), 10)])
    first = old / segment_name(1)
    kept = first.read_bytes()
    confirmed = 0
    while first.exists():  # the store confirms record after record until the first file is done
        batch = log.read(10)
        assert batch is not None
        log.ack(batch)
        confirmed += batch.count
    log.close()
    first.write_bytes(kept)  # a power cut lost the file's deletion, not the ack file's update
    unconfirmed = segments(old)[1:]
    assert adopt_buffer(old, routes.folder / "fake", logging.getLogger("test")) == len(unconfirmed) > 0
    assert segments(routes.folder / "fake") == [segment_name(1 + i) for i in range(len(unconfirmed))]
    route = routes.build(RecordingSink())
    sink = route.sink
    assert isinstance(sink, RecordingSink)
    routes.start(route)
    unsent = list(range(confirmed, 90))
    await async_wait_until(lambda: len(sink.stored) == len(unsent), timeout=10)
    await routes.stop(route)
    assert numbers(sink.stored) == unsent  # the confirmed points are not sent again


async def test_an_old_folder_another_gateway_holds_is_left_alone(
    routes: Routes, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    old = tmp_path / "old" / "fake"
    fill(old, range(0, 40))
    holder = SegmentLog(old, max_size=1 << 30)
    holder.open()  # another running gateway uses the old folder
    before = {path.name: path.read_bytes() for path in old.iterdir() if path.is_file()}
    with caplog.at_level(logging.WARNING):
        route = routes.build(RecordingSink(), adopt=(old,))
        routes.start(route)  # the queue opens its folder, trying to take the old one over first
        await async_wait_until(lambda: queue_of(route).store.opened, timeout=10)
        await routes.stop(route)
    assert "another running gateway uses it" in caplog.text
    assert {path.name: path.read_bytes() for path in old.iterdir() if path.is_file()} == before
    assert segments(routes.folder / "fake") == []
    assert route.status.detail["depth_points"] == 0
    holder.close()
    # Once that gateway has stopped, the next start takes the folder over and sends it.
    again = routes.build(RecordingSink(), adopt=(old,))
    sink = again.sink
    assert isinstance(sink, RecordingSink)
    routes.start(again)
    await async_wait_until(lambda: len(sink.stored) == 40, timeout=10)
    assert numbers(sink.stored) == list(range(40))
    assert not old.exists()


def test_nothing_to_move_leaves_both_folders_alone(tmp_path: Path) -> None:
    log = logging.getLogger("test")
    assert adopt_buffer(tmp_path / "missing", tmp_path / "new", log) == 0
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / segment_name(1)).write_bytes(b"")
    assert adopt_buffer(empty, tmp_path / "new", log) == 0
    assert not (tmp_path / "new").exists()
    assert (empty / segment_name(1)).exists()


async def test_a_resumed_backlog_is_sent_at_once_not_after_the_flush_interval(routes: Routes) -> None:
    fill(routes.folder / "fake", range(0, 20))
    sink = RecordingSink()
    route = routes.build(sink, flush_interval=3600)
    routes.start(route)
    await async_wait_until(lambda: len(sink.stored) == 20, timeout=10)
    assert route.status.state is State.RUNNING
    assert numbers(sink.stored) == list(range(20))
