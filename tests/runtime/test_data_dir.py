"""``gateway.data_dir`` is the root of every file the gateway writes, and no buffer is abandoned.

A historian without a path lands in ``<data_dir>/history.db`` (where ``gateway query`` looks
too), a network sink's buffer in ``<data_dir>/buffer/<sink>``. A buffer an older version left
under ``./data/buffer`` while ``data_dir`` pointed elsewhere is found at start, moved and sent.
"""

from __future__ import annotations

import asyncio
import io
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.buffer import DiskQueue
from gateway.component import RuntimeContext, Sink
from gateway.config import load_config, load_config_source
from gateway.errors import SinkUnavailable
from gateway.logs import component_logger
from gateway.point import Point
from gateway.route import Route
from gateway.runtime import Gateway
from gateway.settings import BatchPolicy, BufferSettings
from gateway.sinks.historian.query import run_query_command
from tests.helpers import async_wait_until
from tests.runtime.fakes import SINKS

pytestmark = pytest.mark.usefixtures("fake_types")


class _DownStore(Sink):
    """The store of the older gateway: down until it stopped."""

    needs_durable_buffer = True

    def __init__(self) -> None:
        super().__init__("remote", "fakeremote", RuntimeContext("old", Path("."), component_logger("sink", "remote")))

    async def write(self, points: Sequence[Point]) -> None:
        raise SinkUnavailable("connection refused by the store")


@pytest.fixture
def in_folder(tmp_path: Path) -> Iterator[Path]:
    """Run the test from ``tmp_path`` (the gateway's working folder)."""
    before = Path.cwd()
    os.chdir(tmp_path)
    try:
        yield tmp_path
    finally:
        os.chdir(before)


def write(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


async def test_files_default_to_data_dir(in_folder: Path) -> None:
    data = in_folder / "var" / "gw"
    path = write(
        in_folder / "gw.yaml",
        {
            "gateway": {"name": "t", "data_dir": str(data), "http": {"enabled": False}},
            "sinks": [
                {"name": "local", "type": "historian", "flush_interval": "10ms"},
                {"name": "remote", "type": "fakeremote", "flush_interval": "10ms"},
            ],
            "connectors": [{"name": "a", "type": "fake", "interval": 0.01}],
        },
    )
    async with Gateway(load_config_source(path)) as gw:
        await async_wait_until(lambda: len(SINKS["remote"].stored) >= 10, timeout=10)
        assert gw.routes["remote"].status.detail["buffer_path"] == str(data / "buffer" / "remote")
    assert (data / "history.db").is_file()
    assert (data / "buffer" / "remote").is_dir()
    assert not (in_folder / "data").exists(), "nothing is written outside data_dir"
    out = io.StringIO()
    run_query_command(
        load_config(path),
        measurement="m",
        fields=[],
        tags={},
        since="100000d",
        until=None,
        sink=None,
        output="csv",
        limit=0,
        out=out,
    )
    assert len(out.getvalue().splitlines()) > 10, "gateway query finds the historian in data_dir"


async def test_a_buffer_left_in_the_old_default_folder_is_moved_and_sent(
    in_folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # An older version, data_dir elsewhere, wrote the buffer under ./data/buffer and stopped
    # while the store was down: 300 points acknowledged to their sources wait there.
    legacy = in_folder / "data" / "buffer" / "remote"
    down = _DownStore()
    queue = DiskQueue(legacy, BufferSettings(), 100, down.log)
    route = Route(down, BatchPolicy(batch_size=100, flush_interval=0.01), queue)
    task = asyncio.create_task(route.run())
    points = [Point("m", {"seq": i}, {"source": "old"}, 1_700_000_000_000_000_000 + i) for i in range(300)]
    acked: list[int] = []
    for start in range(0, 300, 50):
        await route.put(points[start : start + 50], lambda: acked.append(1))
    await async_wait_until(lambda: len(acked) == 6, timeout=10)
    await route.drain(time.monotonic() + 5)
    await task
    assert queue.store.closed and any(legacy.glob("seg-*.log"))

    data = in_folder / "var" / "gw"
    path = write(
        in_folder / "gw.yaml",
        {
            "gateway": {"name": "t", "data_dir": str(data), "http": {"enabled": False}},
            "sinks": [{"name": "remote", "type": "fakeremote", "flush_interval": "10ms"}],
            "connectors": [],
        },
    )
    async with Gateway(load_config_source(path)):
        await async_wait_until(lambda: len(SINKS["remote"].stored) >= 300, timeout=10)
    assert SINKS["remote"].stored == points
    assert not any(legacy.glob("seg-*.log")), "the old folder was emptied"
    warnings = [r.getMessage() for r in caplog.records if "old buffer folder" in r.getMessage()]
    assert len(warnings) == 1 and str(legacy) in warnings[0] and str(data / "buffer" / "remote") in warnings[0]
