"""The durable buffer: one test suite for its one implementation (segment files + route).

SegmentLog tests check the files directly (restart, damage, bounds, exact counts); the
BufferedRoute tests drive the asyncio route with fake sinks (retries, acknowledgements after
the durable write, back-pressure, metrics). Real stores are in tests/runtime/test_no_loss.py and tests/sinks/influxdb/test_stores.py.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.buffer import BufferedRoute, SegmentLog, resolve_buffer_settings
from gateway.buffer._segments import HEADER_SIZE, segment_name
from gateway.component import RuntimeContext, Sink, State
from gateway.errors import GatewayError, SinkRejected, SinkUnauthorized, SinkUnavailable
from gateway.lineprotocol import encode_batch, parse
from gateway.point import Point
from gateway.settings import BatchPolicy, BufferSettings
from tests.helpers import async_wait_until

T0 = 1_700_000_000_000_000_000


def lines(start: int, count: int) -> tuple[bytes, int]:
    """A record body of ``count`` distinct points numbered from ``start``."""
    return encode_batch(Point("m", {"v": i}, {"s": "a"}, T0 + i) for i in range(start, start + count)), count


def numbers(body: bytes) -> list[int]:
    return [int(p.fields["v"]) for p in parse(body.decode())]  # type: ignore[arg-type]


def open_log(path: Path, **kwargs: object) -> SegmentLog:
    log = SegmentLog(path, max_size=kwargs.pop("max_size", 1 << 30), **kwargs)  # type: ignore[arg-type]
    log.open()
    return log


def drain_all(log: SegmentLog, max_points: int = 1000) -> list[int]:
    got: list[int] = []
    while (batch := log.read(max_points)) is not None:
        got += numbers(batch.body)
        log.ack(batch)
    return got


# --- SegmentLog ----------------------------------------------------------------------------------


def test_append_read_ack_in_order_and_files_deleted(tmp_path: Path) -> None:
    log = open_log(tmp_path, segment_size=4096)
    for start in range(0, 1000, 100):
        log.append([lines(start, 50), lines(start + 50, 50)])
    assert log.depth_points == log.unread_points == 1000
    assert len(list(tmp_path.glob("seg-*.log"))) > 2
    assert drain_all(log, 120) == list(range(1000))
    assert log.depth_points == 0 and log.depth_bytes == 0
    assert len(list(tmp_path.glob("seg-*.log"))) <= 1  # only the file still being written to
    log.close()


def test_batches_never_exceed_max_points_but_hold_at_least_one_record(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    log.append([lines(0, 30), lines(30, 30), lines(60, 500)])
    sizes = []
    while (batch := log.read(100)) is not None:
        sizes.append(batch.count)
        log.ack(batch)
    assert sizes == [60, 500]
    log.close()


def test_restart_resumes_after_the_last_confirmed_batch(tmp_path: Path) -> None:
    log = open_log(tmp_path, segment_size=2048)
    for start in range(0, 600, 60):
        log.append([lines(start, 60)])
    first = log.read(120)
    assert first is not None
    log.ack(first)
    second = log.read(120)  # read, handed to the store, never confirmed: the gateway dies here
    assert second is not None
    log.close()

    again = open_log(tmp_path, segment_size=2048)
    assert again.depth_points == 480
    assert drain_all(again) == list(range(120, 600))
    again.close()
    third = open_log(tmp_path)
    assert third.depth_points == 0 and third.read(10) is None
    third.close()


def test_a_lagging_ack_file_resends_and_never_loses(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    log.append([lines(0, 10), lines(10, 10), lines(20, 10)])
    stale = (tmp_path / "ack").read_text()
    batch = log.read(10)
    assert batch is not None
    log.ack(batch)
    log.close()
    (tmp_path / "ack").write_text(stale)  # the rename did not reach the disk before a power cut
    again = open_log(tmp_path)
    assert drain_all(again) == list(range(30))  # the confirmed 10 again: duplicates, which overwrite
    again.close()


def test_an_unreadable_ack_file_resends_everything(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    log = open_log(tmp_path)
    log.append([lines(0, 10), lines(10, 10)])
    log.close()
    (tmp_path / "ack").write_bytes(b"\x00\x00garbage")
    with caplog.at_level(logging.WARNING):
        again = open_log(tmp_path)
    assert "unreadable" in caplog.text
    assert drain_all(again) == list(range(20))
    again.close()


def test_segment_numbers_never_go_back_after_everything_was_confirmed(tmp_path: Path) -> None:
    log = open_log(tmp_path, segment_size=1024)
    for start in range(0, 400, 40):
        log.append([lines(start, 40)])
    drain_all(log)
    log.close()
    again = open_log(tmp_path, segment_size=1024)
    again.append([lines(1000, 5)])
    again.close()
    # A third start must not take the new segment for one the ack file says was confirmed.
    third = open_log(tmp_path)
    assert drain_all(third) == list(range(1000, 1005))
    third.close()


def test_a_second_gateway_cannot_use_the_same_folder(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    with pytest.raises(GatewayError, match="in use by another running gateway"):
        open_log(tmp_path)
    log.close()
    open_log(tmp_path).close()


def test_a_torn_last_record_is_cut_off_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    log = open_log(tmp_path)
    log.append([lines(0, 10)])
    log.append([lines(10, 10)])
    log.close()
    segment = next(tmp_path.glob("seg-*.log"))
    size = segment.stat().st_size
    with segment.open("r+b") as file:  # the second record was half written when the power went
        file.truncate(size - 40)
    with caplog.at_level(logging.WARNING):
        again = open_log(tmp_path)
    assert "was being written when the gateway stopped" in caplog.text
    assert again.damage and again.damage[0].torn_tail
    assert not (tmp_path / "quarantine").exists()
    assert drain_all(again) == list(range(10))
    again.append([lines(100, 3)])  # and writing goes on after the cut
    assert drain_all(again) == [100, 101, 102]
    again.close()


def _flip_byte(path: Path, offset: int) -> None:
    with path.open("r+b") as file:
        file.seek(offset)
        byte = file.read(1)
        file.seek(offset)
        file.write(bytes([byte[0] ^ 0xFF]))


def test_a_damaged_record_is_quarantined_skipped_and_reported(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    log = open_log(tmp_path)
    log.append([lines(0, 10)])
    log.append([lines(10, 10)])
    log.append([lines(20, 10)])
    log.close()
    segment = next(tmp_path.glob("seg-*.log"))
    record = len(lines(0, 10)[0]) + HEADER_SIZE
    _flip_byte(segment, record + HEADER_SIZE + 5)  # inside the second record's body
    with caplog.at_level(logging.ERROR):
        again = open_log(tmp_path)  # no crash (PEERS.md item 9)
    assert "is damaged at bytes" in caplog.text
    quarantined = list((tmp_path / "quarantine").iterdir())
    assert len(quarantined) == 1 and quarantined[0].read_bytes() != segment.read_bytes()
    assert [d.start for d in again.damage] == [record]
    assert again.depth_points == 20
    assert drain_all(again) == list(range(10)) + list(range(20, 30))
    again.close()


def test_a_damaged_header_is_skipped_to_the_next_valid_record(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    for start in range(0, 50, 10):
        log.append([lines(start, 10)])
    log.close()
    segment = next(tmp_path.glob("seg-*.log"))
    third = sum(len(lines(start, 10)[0]) + HEADER_SIZE for start in (0, 10))
    _flip_byte(segment, third + 6)  # the length field of the third record
    again = open_log(tmp_path)
    assert drain_all(again) == list(range(20)) + list(range(30, 50))
    again.close()


def test_damage_found_while_running_is_skipped_and_the_counts_corrected(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    log.append([lines(0, 10)])
    log.append([lines(10, 10)])
    log.append([lines(20, 10)])
    segment = next(tmp_path.glob("seg-*.log"))
    _flip_byte(segment, len(lines(0, 10)[0]) + 2 * HEADER_SIZE + 3)
    assert drain_all(log) == list(range(10)) + list(range(20, 30))
    assert log.damage and log.damage[0].points_lost == 10
    assert log.depth_points == 0 and log.unread_points == 0
    assert (tmp_path / "quarantine").exists()
    log.close()


def test_drop_oldest_keeps_the_disk_bound_and_counts_exactly(tmp_path: Path) -> None:
    max_size = 64 * 1024
    log = open_log(tmp_path, max_size=max_size)
    dropped = 0
    for start in range(0, 20_000, 100):
        dropped += log.append([lines(start, 100)])
        assert log.disk_bytes <= max_size
    kept = drain_all(log)
    assert dropped > 0
    assert dropped + len(kept) == 20_000
    assert kept == list(range(20_000 - len(kept), 20_000))  # the newest survive, in order
    log.close()


def test_points_in_flight_when_their_file_is_dropped_are_written_not_counted_dropped(tmp_path: Path) -> None:
    log = open_log(tmp_path, max_size=16 * 1024, segment_size=4096)
    log.append([lines(0, 50)])
    inflight = log.read(50)  # handed to the store, which is slow to answer
    assert inflight is not None
    dropped = 0
    for start in range(50, 3000, 50):
        dropped += log.append([lines(start, 50)])
    log.ack(inflight)  # the store had it after all
    kept = drain_all(log)
    assert 50 + dropped + len(kept) == 3000
    assert log.depth_points == 0
    log.close()


def test_release_hands_the_batch_out_again(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    log.append([lines(0, 10), lines(10, 10)])
    batch = log.read(10)
    assert batch is not None
    assert log.release(batch) == 0
    assert log.unread_points == 20
    assert drain_all(log) == list(range(20))
    log.close()


def test_oldest_age_is_the_first_unconfirmed_record(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    assert log.oldest_ns() is None
    before = time.time_ns()
    log.append([lines(0, 5)])
    first = log.oldest_ns()
    assert first is not None and first >= before
    log.append([lines(5, 5)])
    batch = log.read(5)
    assert batch is not None
    log.ack(batch)
    second = log.oldest_ns()
    assert second is not None and second > first
    log.close()


@settings(
    max_examples=int(os.environ.get("BUFFER_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    ops=st.lists(
        st.one_of(
            st.tuples(st.just("append"), st.integers(1, 120)),
            st.tuples(st.just("read"), st.integers(1, 200)),
            st.tuples(st.just("ack"), st.just(0)),
            st.tuples(st.just("release"), st.just(0)),
            st.tuples(st.just("reopen"), st.just(0)),
        ),
        max_size=60,
    )
)
def test_every_point_is_delivered_dropped_or_still_buffered(
    tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[str, int]]
) -> None:
    """Whatever happens, each appended point ends up exactly once as delivered, dropped or buffered."""
    folder = tmp_path_factory.mktemp("buffer")
    options: dict[str, object] = {"max_size": 12 * 1024, "segment_size": 2048}
    log = open_log(folder, **options)
    appended = 0
    dropped = 0
    delivered: list[int] = []
    inflight = None
    for op, amount in ops:
        if op == "append":
            dropped += log.append([lines(appended, amount)])
            appended += amount
        elif op == "read" and inflight is None:
            inflight = log.read(amount)
        elif op == "ack" and inflight is not None:
            log.ack(inflight)
            delivered += numbers(inflight.body)
            inflight = None
        elif op == "release" and inflight is not None:
            dropped += log.release(inflight)
            inflight = None
        elif op == "reopen":
            if inflight is not None:
                dropped += log.release(inflight)
                inflight = None
            log.close()
            log = open_log(folder, **options)
        assert log.disk_bytes <= 12 * 1024 + 120 * 40
    if inflight is not None:
        dropped += log.release(inflight)
    rest = drain_all(log)
    log.close()
    # Delivery is in order, without gaps except drops; a restart may resend (never skip) a batch.
    unique = set(delivered) | set(rest)
    assert len(unique) + dropped == appended
    assert sorted(unique) == sorted(set(unique))
    assert rest == sorted(rest)


# --- BufferedRoute ---------------------------------------------------------------------------------


class FakeStore(Sink):
    """A line-protocol sink in memory; ``fail`` decides, per call, what goes wrong."""

    def __init__(self, name: str = "fake") -> None:
        context = RuntimeContext("test", Path("."), logging.LoggerAdapter(logging.getLogger(f"test.{name}"), {}))
        super().__init__(name, "fake", context)
        self.points: list[Point] = []
        self.calls = 0
        self.fail: Callable[[int], Exception | None] = lambda count: None

    async def write(self, points: Sequence[Point]) -> None:
        raise AssertionError("the route must use write_lines")

    async def write_lines(self, body: bytes, count: int) -> None:
        self.calls += 1
        error = self.fail(count)
        if error is not None:
            raise error
        batch = parse(body.decode())
        assert len(batch) == count
        self.points.extend(batch)


class PointStore(Sink):
    """A sink without write_lines: the route decodes the buffered line protocol back into points."""

    def __init__(self) -> None:
        context = RuntimeContext("test", Path("."), logging.LoggerAdapter(logging.getLogger("test.points"), {}))
        super().__init__("points", "fake", context)
        self.points: list[Point] = []

    async def write(self, points: Sequence[Point]) -> None:
        self.points.extend(points)


def make_points(start: int, count: int) -> list[Point]:
    return [
        Point("m", {"v": i, "f": i / 3, "ok": i % 2 == 0, "s": f'x "{i}"'}, {"s": "a"}, T0 + i)
        for i in range(start, start + count)
    ]


def route_for(
    sink: Sink, folder: Path, *, batch_size: int = 100, flush: float = 0.05, **buffer: object
) -> BufferedRoute:
    settings = BufferSettings(path=folder, **buffer)  # type: ignore[arg-type]
    return BufferedRoute(sink, BatchPolicy(batch_size=batch_size, flush_interval=flush), settings)


async def stop(route: BufferedRoute, task: asyncio.Task[None], seconds: float = 10.0) -> None:
    await route.drain(time.monotonic() + seconds)
    await asyncio.wait_for(task, seconds + 5)


async def test_points_reach_the_store_in_order_and_done_follows_the_durable_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    real_fdatasync = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (real_fdatasync(fd), synced.append(fd))[0])
    store = FakeStore()
    route = route_for(store, tmp_path)
    task = asyncio.create_task(route.run())
    acked: list[int] = []
    early: list[int] = []

    def done_for(start: int, syncs_at_put: int) -> Callable[[], None]:
        def done() -> None:
            acked.append(start)
            if len(synced) <= syncs_at_put:  # no sync finished since the put: acknowledged too early
                early.append(start)

        return done

    for start in range(0, 1000, 10):
        await route.put(make_points(start, 10), done_for(start, len(synced)))
    await async_wait_until(lambda: len(store.points) == 1000, timeout=20)
    assert store.points == make_points(0, 1000)
    assert acked == list(range(0, 1000, 10)) and not early  # every done, in order, each after a sync
    assert len(synced) < 100  # group commit: far fewer syncs than puts, never one per point
    assert route.status.counters["points_written"] == 1000
    assert route.status.counters["points_buffered"] == 1000
    await stop(route, task)
    assert route.status.detail["depth_points"] == 0


async def test_a_trickle_of_single_points_shares_disk_syncs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    real_fdatasync = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (real_fdatasync(fd), synced.append(fd))[0])
    store = FakeStore()
    route = route_for(store, tmp_path)
    task = asyncio.create_task(route.run())
    started = time.monotonic()
    for i in range(200):  # one point every millisecond or so, as a slow sensor network delivers them
        await route.put(make_points(i, 1), lambda: None)
        await asyncio.sleep(0.001)
    await async_wait_until(lambda: route.status.counters["points_buffered"] == 200, timeout=10)
    elapsed = time.monotonic() - started
    # At most one sync per commit interval, however slowly the loop ran (200 puts in ~0.3 s
    # share ~30 syncs on an idle machine; a starved loop stretches the time, not the ratio).
    assert len(synced) <= elapsed / route.COMMIT_INTERVAL + 3
    await stop(route, task)


async def test_a_sink_without_write_lines_gets_the_same_points_back(tmp_path: Path) -> None:
    store = PointStore()
    route = route_for(store, tmp_path)
    task = asyncio.create_task(route.run())
    await route.put(make_points(0, 250), lambda: None)
    await async_wait_until(lambda: len(store.points) == 250)
    assert store.points == make_points(0, 250)
    await stop(route, task)


async def test_batches_follow_batch_size_and_flush_interval(tmp_path: Path) -> None:
    store = FakeStore()
    sizes: list[int] = []
    store.fail = lambda count: sizes.append(count)  # type: ignore[func-returns-value]
    route = route_for(store, tmp_path, batch_size=100, flush=0.3)
    task = asyncio.create_task(route.run())
    await route.put(make_points(0, 30), lambda: None)
    started = time.monotonic()
    await async_wait_until(lambda: sizes == [30], timeout=5)
    assert time.monotonic() - started >= 0.2  # a partial batch waits for flush_interval
    await route.put(make_points(30, 450), lambda: None)
    await async_wait_until(lambda: sum(sizes) == 480, timeout=5)
    assert max(sizes) <= 100
    await stop(route, task)


async def test_an_unavailable_store_is_retried_with_backoff_and_loses_nothing(tmp_path: Path) -> None:
    store = FakeStore()
    down = True
    store.fail = lambda count: SinkUnavailable("store down", retry_after=0.05) if down else None
    route = route_for(store, tmp_path)
    task = asyncio.create_task(route.run())
    for start in range(0, 300, 30):
        await route.put(make_points(start, 30), lambda: None)
    await async_wait_until(lambda: route.status.state is State.BACKOFF, timeout=5)
    await async_wait_until(lambda: route.status.counters["points_retried"] > 0, timeout=5)
    assert route.status.detail["depth_points"] == 300 or route.store.depth_points == 300
    assert route.status.last_error == "store down"
    down = False
    await async_wait_until(lambda: len(store.points) == 300, timeout=10)
    assert store.points == make_points(0, 300)
    assert route.status.state is State.RUNNING
    await stop(route, task)


async def test_refused_credentials_show_unauthorized_and_keep_everything(tmp_path: Path) -> None:
    store = FakeStore()
    refused = True
    store.fail = lambda count: SinkUnauthorized("token refused") if refused else None
    route = route_for(store, tmp_path)
    route.UNAUTHORIZED_RETRY = 0.1
    task = asyncio.create_task(route.run())
    await route.put(make_points(0, 50), lambda: None)
    await async_wait_until(lambda: route.status.state is State.UNAUTHORIZED, timeout=5)
    refused = False
    await async_wait_until(lambda: len(store.points) == 50, timeout=5)
    assert route.status.state is State.RUNNING
    await stop(route, task)


async def test_rejected_points_are_counted_and_the_batch_confirmed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = FakeStore()
    store.fail = lambda count: (
        SinkRejected("field type conflict; first rejected line: 'm v=1'", rejected=1) if store.calls == 1 else None
    )
    route = route_for(store, tmp_path)
    task = asyncio.create_task(route.run())
    await route.put(make_points(0, 20), lambda: None)
    await route.put(make_points(20, 20), lambda: None)
    with caplog.at_level(logging.ERROR):
        await async_wait_until(lambda: route.status.counters["points_rejected"] == 1, timeout=5)
    await async_wait_until(lambda: route.store.depth_points == 0, timeout=5)
    assert "first rejected line" in caplog.text
    assert route.status.counters["points_written"] == 39
    await stop(route, task)


async def test_a_stop_with_the_store_down_is_quick_and_the_next_start_sends_everything(tmp_path: Path) -> None:
    store = FakeStore()
    store.fail = lambda count: SinkUnavailable("connection refused")
    route = route_for(store, tmp_path)
    task = asyncio.create_task(route.run())
    acked = 0

    def done() -> None:
        nonlocal acked
        acked += 1

    for start in range(0, 500, 50):
        await route.put(make_points(start, 50), done)
    started = time.monotonic()
    await stop(route, task, seconds=30)
    assert time.monotonic() - started < 5  # the points are on disk: no waiting for the store
    assert acked == 10  # every source batch was acknowledged before the stop finished

    healthy = FakeStore()
    again = route_for(healthy, tmp_path)
    assert again.status.detail["depth_points"] == 500
    task = asyncio.create_task(again.run())
    await async_wait_until(lambda: len(healthy.points) == 500, timeout=10)
    assert healthy.points == make_points(0, 500)
    await stop(again, task)


async def test_drop_oldest_counts_every_dropped_point_while_the_store_is_down(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = FakeStore()
    down = True
    store.fail = lambda count: SinkUnavailable("down", retry_after=0.05) if down else None
    route = route_for(store, tmp_path, max_size=128 * 1024)
    task = asyncio.create_task(route.run())
    with caplog.at_level(logging.WARNING):
        for start in range(0, 10_000, 100):
            await route.put(make_points(start, 100), lambda: None)
        await async_wait_until(lambda: route.queued_points == 0, timeout=10)
    assert caplog.text.count("buffer full") == 1  # logged once per episode
    assert route.store.disk_bytes <= 128 * 1024
    down = False
    await async_wait_until(lambda: route.store.depth_points == 0, timeout=20)
    dropped = route.status.counters["points_dropped"]
    assert dropped > 0
    assert len(store.points) + dropped == 10_000
    numbers_stored = [int(p.fields["v"]) for p in store.points]  # type: ignore[arg-type]
    assert numbers_stored[-100:] == list(range(9_900, 10_000))
    await stop(route, task)


async def test_block_slows_the_sources_instead_of_dropping(tmp_path: Path) -> None:
    store = FakeStore()
    down = True
    store.fail = lambda count: SinkUnavailable("down", retry_after=0.05) if down else None
    route = route_for(store, tmp_path, max_size=64 * 1024, overflow="block")
    task = asyncio.create_task(route.run())

    async def produce() -> None:
        for start in range(0, 5_000, 100):
            await route.put(make_points(start, 100), lambda: None)

    producer = asyncio.create_task(produce())
    await async_wait_until(lambda: route.status.counters.get("buffer_full_episodes", 0) == 1, timeout=10)
    assert not producer.done()
    assert route.store.disk_bytes <= 64 * 1024
    down = False
    await asyncio.wait_for(producer, 20)
    await async_wait_until(lambda: len(store.points) == 5_000, timeout=20)
    assert store.points == make_points(0, 5_000)
    assert route.status.counters["points_dropped"] == 0
    await stop(route, task)


async def test_status_shows_depth_bytes_and_oldest_age(tmp_path: Path) -> None:
    store = FakeStore()
    store.fail = lambda count: SinkUnavailable("down", retry_after=0.05)
    route = route_for(store, tmp_path)
    route.GAUGE_INTERVAL = 0.05
    task = asyncio.create_task(route.run())
    await route.put(make_points(0, 100), lambda: None)
    await async_wait_until(lambda: route.status.detail["depth_points"] == 100, timeout=5)
    await async_wait_until(lambda: route.status.detail["oldest_age_seconds"] >= 0.2, timeout=5)
    detail = route.status.detail
    assert detail["depth_bytes"] > 100 * 20
    assert detail["buffer_path"] == str(tmp_path / "fake")
    assert route.status.as_dict()["state"] == "backoff"
    await stop(route, task)


def test_a_sink_buffer_block_overrides_only_the_keys_it_names(tmp_path: Path) -> None:
    gateway = BufferSettings(path=tmp_path, max_size=1 << 30, overflow="drop_oldest")
    override = BufferSettings.model_validate({"max_size": "10MiB"})
    merged = resolve_buffer_settings(gateway, override)
    assert (merged.path, merged.max_size, merged.overflow) == (tmp_path, 10 * 2**20, "drop_oldest")
    assert resolve_buffer_settings(gateway, None) is gateway


def test_segment_names_sort_by_number() -> None:
    names = [segment_name(n) for n in (2, 10, 1, 100)]
    assert sorted(names) == [segment_name(n) for n in (1, 2, 10, 100)]
    random.shuffle(names)
