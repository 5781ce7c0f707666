"""The historian sink: its config contract, and writing through its route (a memory queue)."""

from __future__ import annotations

import asyncio
import functools
import logging
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.component import RuntimeContext, State
from gateway.config import load_config
from gateway.errors import ConfigError, SinkRejected, SinkUnavailable
from gateway.logs import component_logger
from gateway.point import Point, now_ns
from gateway.route import MemoryQueue, Route
from gateway.sinks.historian import HistorianConfig, HistorianSink
from gateway.sinks.historian.store import HistorianStore
from tests.helpers import async_wait_until

SECOND = 1_000_000_000


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_the_contract_validates_as_written_with_defaults_for_a_local_file(tmp_path: Path) -> None:
    config = load_config(
        write_config(
            tmp_path,
            """
            sinks:
              - name: local                       # the embedded default: no server needed
                type: historian
                path: ./data/history.db
                retention: 30d
            """,
        )
    )
    sink = config.sinks[0]
    assert isinstance(sink, HistorianConfig)
    assert sink.path == Path("data/history.db")
    assert sink.retention == 30 * 86400
    assert (sink.batch_size, sink.flush_interval) == (10_000, 0.25)
    assert sink.synchronous == "normal"
    sample = load_config(Path(__file__).parents[3] / "gateway/sinks/historian/sample.yaml")
    assert sample.sinks[0].type == "historian"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("retention: 10s", "sinks[0].retention: retention must be at least 1m"),
        ("retention: forever", "sinks[0].retention: 'forever' is not a duration"),
        ("synchronous: always", "sinks[0].synchronous: Input should be 'normal' or 'full'"),
        ("pth: x.db", "sinks[0].pth: unknown key 'pth' (did you mean 'path'?)"),
    ],
)
def test_config_errors_name_the_line_and_key(tmp_path: Path, line: str, expected: str) -> None:
    path = write_config(tmp_path, f"sinks:\n  - name: local\n    type: historian\n    {line}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}:4: {expected}")


def context(name: str, tmp_path: Path) -> RuntimeContext:
    return RuntimeContext(gateway_name="test", data_dir=tmp_path, log=component_logger("sink", name))


@pytest.fixture
async def sink(tmp_path: Path) -> AsyncIterator[HistorianSink]:
    config = HistorianConfig(name="local", type="historian", path=tmp_path / "data" / "history.db")
    sink = HistorianSink(config, context("local", tmp_path))
    await sink.open()
    try:
        yield sink
    finally:
        await sink.close()


async def test_open_creates_the_folder_and_file_and_close_releases_it(sink: HistorianSink) -> None:
    assert sink.path.is_file()
    assert sink.status.detail["path"] == str(sink.path)
    await sink.write([Point("m", {"v": 1})])
    await sink.close()
    assert not Path(f"{sink.path}-wal").exists(), "closing checkpoints the WAL into the file"
    with HistorianStore(sink.path, readonly=True) as reader:
        assert [v.value for v in reader.read("m")] == [1]


async def test_batches_through_its_route_are_stored_then_acknowledged(sink: HistorianSink) -> None:
    runner = Route(sink, sink.config, MemoryQueue(sink.config.batch_size), sink_open=True)
    task = asyncio.create_task(runner.run())
    acknowledged: list[int] = []
    stored_before_ack: list[bool] = []
    t0 = now_ns() - 3600 * SECOND

    def on_stored(batch: int) -> None:
        # Acknowledged only once the batch is in the file: a reader in another connection sees it.
        with HistorianStore(sink.path, readonly=True) as reader:
            stored_before_ack.append(
                len(reader.read("energy", since_ns=t0 + batch * 1000, until_ns=t0 + batch * 1000 + 999)) == 1000
            )
        acknowledged.append(batch)

    for batch in range(25):
        points = [
            Point("energy", {"power_w": float(i)}, {"meter": f"m{i % 20}"}, time=t0 + batch * 1000 + i)
            for i in range(1000)
        ]
        await runner.put(points, functools.partial(on_stored, batch))
    await async_wait_until(lambda: len(acknowledged) == 25, timeout=60, message="every batch acknowledged")
    assert sorted(acknowledged) == list(range(25)) and all(stored_before_ack)
    counters = sink.status.counters
    assert counters["points_written"] == 25_000
    assert counters["batches_written"] < 25, "small batches are grouped into larger writes"
    assert counters["write_errors"] == 0
    sink._update_detail(force=True)
    assert sink.status.detail["series"] == 20 and sink.status.detail["file_bytes"] > 0
    await runner.drain(time.monotonic() + 10)
    await asyncio.wait_for(task, 10)  # the route closes the sink once drained
    with HistorianStore(sink.path, readonly=True) as reader:
        assert len(reader.read("energy")) == 25_000
        assert len(reader.series("energy")) == 20


async def test_a_full_disk_is_retried_until_there_is_room_and_nothing_is_lost(
    sink: HistorianSink, caplog: pytest.LogCaptureFixture
) -> None:
    await sink.write([Point("m", {"v": 0}, time=1)])
    connection = sink.store.connection
    pages = await sink._run(lambda: connection.execute("PRAGMA page_count").fetchone()[0])
    await sink._run(connection.execute, f"PRAGMA max_page_count = {pages}")  # the disk is "full"
    points = [Point("m", {"v": i, "text": "x" * 200}, {"k": str(i % 30)}, time=SECOND + i) for i in range(3000)]
    with pytest.raises(SinkUnavailable, match="is full: free some space"):
        await sink.write(points)

    runner = Route(sink, sink.config, MemoryQueue(sink.config.batch_size), sink_open=True)
    task = asyncio.create_task(runner.run())
    done = asyncio.Event()
    with caplog.at_level(logging.WARNING):
        await runner.put(points, done.set)
        await async_wait_until(lambda: sink.status.counters.get("write_errors", 0) >= 1, timeout=30)
        assert sink.status.as_dict()["state"] == "disk_full"  # /metrics and /readyz say so
        assert "is full" in (sink.status.last_error or "")
        assert not done.is_set(), "nothing is acknowledged while the disk is full"
        await sink._run(connection.execute, "PRAGMA max_page_count = 1073741823")  # space freed
        await asyncio.wait_for(done.wait(), 30)
    assert sink.status.state is State.RUNNING
    assert any("is full" in r.getMessage() for r in caplog.records)
    await runner.drain(time.monotonic() + 10)
    await asyncio.wait_for(task, 10)
    with HistorianStore(sink.path, readonly=True) as reader:
        assert len(reader.read("m", fields=["v"])) == 3001


async def test_points_with_unencodable_text_are_rejected_and_the_others_stored(sink: HistorianSink) -> None:
    bad = Point("m", {"v": "ok"}, time=5)
    bad.fields = {"v": "half a surrogate \udc80"}  # bypasses Point's own check, as a buggy decoder might
    good = [Point("m", {"v": f"value {i}"}, time=i) for i in range(3)]
    with pytest.raises(SinkRejected) as info:
        await sink.write([good[0], bad, *good[1:]])
    assert info.value.rejected == 1
    assert [v.value for v in sink.store.read("m")] == ["value 0", "value 1", "value 2"]


async def test_retention_runs_when_the_sink_opens_and_on_request(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    now = now_ns()
    with HistorianStore(path) as store:
        store.write([Point("m", {"v": i}, time=now - i * 600 * SECOND) for i in range(12)])  # the last 2 hours
    config = HistorianConfig(name="local", type="historian", path=path, retention=3600)
    sink = HistorianSink(config, context("local", tmp_path))
    await sink.open()
    try:
        # Values older than an hour go at start (6 of them: 60, 70 … 110 minutes old).
        await async_wait_until(lambda: sink.status.counters.get("points_expired") == 6, timeout=30)
        await sink.write([Point("m", {"v": 100}, time=now - 2 * 3600 * SECOND)])  # a late, already expired value
        assert await sink.apply_retention() == 1
        assert sorted(v.value for v in sink.store.read("m")) == [0, 1, 2, 3, 4, 5]
    finally:
        await sink.close()


async def test_an_unusable_path_fails_at_open_with_a_clear_message(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the folder should be")
    config = HistorianConfig(name="local", type="historian", path=blocker / "history.db")
    sink = HistorianSink(config, context("local", tmp_path))
    with pytest.raises(Exception, match=r"cannot create the historian file .*not-a-folder/history.db"):
        await sink.open()
    await sink.close()


async def test_the_sink_compacts_after_the_write_that_made_it_due(sink: HistorianSink) -> None:
    sink.store.compact_rows = 2000

    def pending() -> int:
        with HistorianStore(sink.path, readonly=True) as reader:  # not the sink's busy connection
            return int(reader.connection.execute("SELECT count(*) FROM recent").fetchone()[0])

    for batch in range(5):
        await sink.write([Point("m", {"v": i}, {"k": str(i % 3)}, time=batch * 1000 + i) for i in range(1000)])
    await async_wait_until(lambda: pending() < 2000, timeout=30, message="a compaction ran")
    assert [v.value for v in sink.store.read("m", tags={"k": "0"})] == [i for _ in range(5) for i in range(0, 1000, 3)]
    await sink.close()
    with HistorianStore(sink.path, readonly=True) as reader:
        assert reader.connection.execute("SELECT count(*) FROM recent").fetchone()[0] == 0
        assert len(reader.read("m")) == 5000
