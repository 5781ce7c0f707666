"""The historian file in trouble: a full disk (a real tmpfs, filled), a damaged file found at open
or while running, and what readers (``gateway query``, the web page's history) say about it.

What a user checks: the gateway does not stop; nothing is acknowledged that is not in a file;
the status says ``disk_full``; a damaged file is moved aside (kept, byte for byte) with one log
line naming both files, and collection goes on in a new file; a reader gets one clear line.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from gateway.component import RuntimeContext, State
from gateway.errors import GatewayError
from gateway.history import ThreadedHistory
from gateway.logs import component_logger
from gateway.pipeline import Backoff
from gateway.point import Point
from gateway.route import MemoryQueue, Route
from gateway.sinks.historian import HistorianConfig, HistorianSink
from gateway.sinks.historian.store import HistorianDamaged, HistorianStore
from tests.fixtures.small_filesystem import SmallFilesystem
from tests.helpers import async_wait_until

T0 = 1_700_000_000_000_000_000


def batch(number: int, size: int = 500) -> list[Point]:
    """``size`` points of batch ``number``: two fields each, 50 series, distinct times."""
    return [
        Point("m", {"v": float(i), "text": "x" * 40}, {"k": str(i % 50)}, T0 + number * 1_000_000 + i)
        for i in range(size)
    ]


def times(path: Path) -> set[int]:
    with HistorianStore(path, readonly=True) as reader:
        return {value.time for value in reader.read("m", fields=["v"])}


def expected(numbers: range | list[int], size: int = 500) -> set[int]:
    return {p.time for n in numbers for p in batch(n, size)}


def filled(path: Path, batches: int = 20) -> int:
    """A closed historian file holding ``batches`` batches (compacted); returns its size."""
    with HistorianStore(path) as store:
        for number in range(batches):
            store.write(batch(number))
    return path.stat().st_size


def make_sink(path: Path) -> HistorianSink:
    config = HistorianConfig(name="local", type="historian", path=path, flush_interval=0.01)
    return HistorianSink(config, RuntimeContext("test", path.parent, component_logger("sink", "local")))


class Running:
    """A historian sink behind its route (a memory queue), opened by the route with quick retries."""

    def __init__(self, path: Path) -> None:
        self.sink = make_sink(path)
        self.route = Route(
            self.sink, self.sink.config, MemoryQueue(self.sink.config.batch_size), backoff=Backoff(0.05, cap=0.2)
        )
        self.task = asyncio.create_task(self.route.run())
        self.acked: list[int] = []

    async def put(self, number: int, size: int = 500) -> None:
        await self.route.put(batch(number, size), lambda: self.acked.append(number))

    async def stop(self) -> None:
        await self.route.drain(time.monotonic() + 10)
        await asyncio.wait_for(self.task, 20)


@pytest.fixture
async def running() -> AsyncIterator[Callable[[Path], Running]]:
    started: list[Running] = []

    def start(path: Path) -> Running:
        started.append(Running(path))
        return started[-1]

    yield start
    for run in started:
        if not run.task.done():
            await run.stop()


def full_or_acked(run: Running, count: int) -> bool:
    return run.route.status.state is State.DISK_FULL or len(run.acked) == count


def set_aside(folder: Path) -> list[Path]:
    """The damaged files moved aside in ``folder`` (without their -wal and -shm)."""
    return sorted(p for p in folder.glob("history.db.damaged-*") if not p.name.endswith(("-wal", "-shm")))


def error_lines(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR and text in r.getMessage()]


# --- a full disk (a real one) -----------------------------------------------------------------------


async def test_a_full_disk_at_start_and_while_running_loses_nothing_and_the_file_stays_readable(
    small_filesystem: SmallFilesystem, running: Callable[[Path], Running], caplog: pytest.LogCaptureFixture
) -> None:
    small_filesystem.mount("4m")
    path = small_filesystem.path / "data" / "history.db"
    small_filesystem.fill()
    with caplog.at_level(logging.INFO):
        run = running(path)  # started on a full disk: the file cannot even be created
        await run.put(0)
        await async_wait_until(lambda: run.route.status.state is State.DISK_FULL, timeout=10)
        assert "is full" in (run.route.status.last_error or "")
        attempts = run.route.status.counters.get("write_errors", 0) + len(error_lines(caplog, "cannot open"))
        assert attempts >= 1 and run.acked == []  # nothing acknowledged: nothing is in a file
        small_filesystem.free()
        await async_wait_until(lambda: run.acked == [0], timeout=10)
        assert run.route.status.state is State.RUNNING

        number = 1
        small_filesystem.fill()  # full while running (the WAL may still have room: write until it has not)
        while not full_or_acked(run, -1):
            await run.put(number)
            number += 1
            await async_wait_until(functools.partial(full_or_acked, run, number), timeout=10)
        waiting = number - 1  # the batch the disk refused
        assert waiting not in run.acked
        # The file stays whole: a reader gets every acknowledged value, and only those.
        assert times(path) == expected(run.acked)
        await run.put(number)  # more arrives meanwhile: it waits too
        small_filesystem.free()
        await async_wait_until(lambda: len(run.acked) == number + 1, timeout=15)
        assert run.route.status.state is State.RUNNING
        await run.stop()
    assert times(path) == expected(range(number + 1))
    # One line per episode: the route's "cannot open" at the start, the sink's while running.
    assert len(error_lines(caplog, "is full")) == 2, error_lines(caplog, "is full")
    assert sum("has room again" in r.getMessage() for r in caplog.records) >= 1


# --- a damaged file -------------------------------------------------------------------------------------


def cut(size: int) -> Callable[[Path, int], None]:
    return lambda path, full: os.truncate(path, size if size > 0 else full // 2)


def garble(offset: int, length: int) -> Callable[[Path, int], None]:
    def damage(path: Path, full: int) -> None:
        with open(path, "r+b") as file:
            file.seek(offset if offset >= 0 else full // 2 + offset)
            file.write(bytes((i * 37 + 11) % 256 for i in range(length)))

    return damage


DAMAGES = {
    "cut in half": cut(0),
    "cut to 50 bytes": cut(50),
    "its header garbled": garble(0, 100),
    "its first pages garbled": garble(100, 6000),
}


@pytest.mark.parametrize("damage", DAMAGES.values(), ids=DAMAGES.keys())
async def test_a_damaged_file_found_at_open_is_moved_aside_and_a_new_one_started(
    tmp_path: Path, damage: Callable[[Path, int], None], caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "data" / "history.db"
    damage(path, filled(path))
    damaged = path.read_bytes()
    sink = make_sink(path)
    with caplog.at_level(logging.INFO):
        await sink.open()
    try:
        moved = set_aside(path.parent)
        assert [m.name for m in moved] == [f"{moved[0].name}"] and moved[0].read_bytes() == damaged  # kept whole
        lines = error_lines(caplog, "is damaged")
        assert len(lines) == 1 and str(path) in lines[0] and str(moved[0]) in lines[0], lines
        assert sink.status.counters["files_set_aside"] == 1
        await sink.write(batch(100, 10))
    finally:
        await sink.close()
    assert times(path) == expected([100], 10)  # collection goes on in the new file


async def test_damage_found_while_running_moves_the_file_aside_and_keeps_what_was_not_compacted(
    tmp_path: Path, running: Callable[[Path], Running], caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "history.db"
    run = running(path)
    for number in range(20):
        await run.put(number)
    await async_wait_until(lambda: len(run.acked) == 20, timeout=20)
    sink = run.sink
    connection = sink.store.connection

    def compact_and_checkpoint() -> None:
        sink.store.compact()
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # every page in the main file

    await sink._run(compact_and_checkpoint)
    reader = sink.history()
    assert len(await reader.read("m", fields=["v"])) == 20 * 500
    garble(-8192, 16384)(path, path.stat().st_size)  # the disk damages the middle of the file
    await sink._run(lambda: connection.execute("PRAGMA shrink_memory"))  # (nothing of it left in memory)
    sink.store.compact_rows = 1  # the next write makes a compaction due, which reads the damaged pages
    with caplog.at_level(logging.INFO):
        await run.put(20)
        await async_wait_until(lambda: sink.status.counters.get("files_set_aside") == 1, timeout=20)
        await run.put(21)
        await async_wait_until(lambda: run.acked[-2:] == [20, 21], timeout=20)
    moved = set_aside(path.parent)
    assert len(moved) == 1
    lines = error_lines(caplog, "is damaged")
    assert len(lines) == 1 and str(moved[0]) in lines[0] and "collection goes on" in lines[0], lines
    assert run.route.status.state is State.RUNNING
    # The new file has the batch written just before the damage was found (copied from the moved
    # file's recent values, acknowledged already) and everything after it.
    assert times(path) == expected([20, 21])
    # The web page's history follows to the new file.
    assert {row.time for row in await sink.history().read("m", fields=["v"])} == expected([20, 21])
    await run.stop()


# --- readers of a damaged file ---------------------------------------------------------------------------


@pytest.mark.parametrize("damage", [DAMAGES["cut in half"], DAMAGES["its first pages garbled"]], ids=["cut", "garbled"])
def test_gateway_query_on_a_damaged_file_says_so_in_one_line(
    tmp_path: Path, damage: Callable[[Path, int], None]
) -> None:
    path = tmp_path / "history.db"
    damage(path, filled(path))
    config = tmp_path / "gateway.yaml"
    config.write_text(textwrap.dedent(f"sinks:\n  - name: local\n    type: historian\n    path: {path}\n"))
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "query", str(config), "-m", "m", "--since", "100000d"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path} is damaged"), result.stderr
    assert path.read_bytes(), "a reader never moves nor changes the file"


async def test_the_web_pages_history_reader_on_a_damaged_file_raises_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    garble(-8192, 16384)(path, filled(path))
    history = ThreadedHistory(lambda: HistorianStore(path, readonly=True), name="local")
    try:
        with pytest.raises(GatewayError, match=r"is damaged.*malformed") as info:
            await history.read("m")
        assert isinstance(info.value, HistorianDamaged) and "\n" not in str(info.value)
    finally:
        await history.aclose()
