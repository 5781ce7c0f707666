"""The compact hours on disk: a restarted gateway answers without reading the history again, exactly."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.history import ThreadedHistory
from gateway.kpi import engine as engine_module
from gateway.kpi.config import MachineConfig
from gateway.kpi.engine import KpiEngine
from gateway.kpi.rollups import RollupStore
from gateway.latest import LatestValues
from gateway.point import Point
from gateway.sinks.historian.store import HistorianStore
from tests.kpi.scenarios import MACHINES, SPRING, T0, write_scenarios
from tests.kpi.test_engine import CountingReader

S = 10**9
H = 3600 * S
LOG = logging.LoggerAdapter(logging.getLogger("kpi-test"), {})


@pytest.fixture
async def history(tmp_path: Path) -> AsyncIterator[CountingReader]:
    path = write_scenarios(tmp_path / "history.db")
    reader = ThreadedHistory(lambda: HistorianStore(path, readonly=True), "local")
    yield CountingReader(reader)
    await reader.aclose()


def machines(**changes: object) -> list[MachineConfig]:
    return [MachineConfig.model_validate({**m, **changes.get(m["name"], {})}) for m in MACHINES]  # type: ignore[dict-item]


async def test_a_restarted_engine_reads_the_rollups_not_the_history(tmp_path: Path, history: CountingReader) -> None:
    store = RollupStore(tmp_path / "kpi" / "rollups.db", LOG)
    now = T0 + 365 * 86400 * S
    first = KpiEngine(machines(), lambda: history, now=lambda: now, rollups=store)
    ranges = [
        ("imm-07", T0, T0 + 9000 * S, None),
        ("imm-08", T0, T0 + 9000 * S, None),
        ("cnc-09", SPRING - 12 * H, SPRING + 12 * H, "shift"),
    ]
    answers = [await first.kpi(name, start, end, by) for name, start, end, by in ranges]  # type: ignore[arg-type]
    await first.flush()
    await store.aclose()
    reads = history.reads
    # The gateway restarts: a new engine, the same file.
    store = RollupStore(tmp_path / "kpi" / "rollups.db", LOG)
    second = KpiEngine(machines(), lambda: history, now=lambda: now, rollups=store)
    again = [await second.kpi(name, start, end, by) for name, start, end, by in ranges]  # type: ignore[arg-type]
    assert again == answers  # exactly: states (text and the number 2), counters, resets, deltas
    assert history.reads == reads
    # Another timeout makes other runs: that machine's rows are not used, the others' are.
    third = KpiEngine(
        machines(**{"imm-07": {"state": {**MACHINES[0]["state"], "timeout": "10m"}}}),
        lambda: history,
        now=lambda: now,
        rollups=store,
    )
    await third.kpi("imm-08", T0, T0 + 9000 * S)
    assert history.reads == reads
    changed = await third.kpi("imm-07", T0, T0 + 9000 * S)
    assert history.reads > reads and changed["seconds"]["no_data"] == 610  # the silence minus a 10 min hold
    await store.aclose()


async def test_a_backlog_deletes_the_rows_of_its_hours(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_module, "RELOAD_DELAY", 0.0)
    path = tmp_path / "history.db"
    tags = {"machine": "imm-07"}
    with HistorianStore(path) as store:
        store.write([Point("machine", {"state": "PRODUCING"}, tags, T0 + t * S) for t in range(0, 600, 10)])
    reader = ThreadedHistory(lambda: HistorianStore(path, readonly=True), "local")
    rollups = RollupStore(tmp_path / "rollups.db", LOG)
    engine = KpiEngine(machines(), lambda: reader, now=lambda: T0 + 5 * H, rollups=rollups)
    latest = LatestValues()
    engine.attach(latest)
    try:
        assert (await engine.kpi("imm-07", T0, T0 + H))["seconds"]["running"] == 890
        await engine.flush()
        hour = T0 // H
        assert set(await rollups.load("imm-07", engine.machines["imm-07"].key, hour, hour)) == {hour}
        backlog = [Point("machine", {"state": "ALARM"}, tags, T0 + t * S) for t in range(600, 1200, 10)]
        with HistorianStore(path) as store:
            store.write(backlog)
        latest.update(backlog)
        await engine.flush()
        assert await rollups.load("imm-07", engine.machines["imm-07"].key, hour, hour) == {}
        assert (await engine.kpi("imm-07", T0, T0 + H))["seconds"]["down"] == 890
        await engine.flush()  # the corrected hour is written again
        assert set(await rollups.load("imm-07", engine.machines["imm-07"].key, hour, hour)) == {hour}
    finally:
        engine.detach()
        await rollups.aclose()
        await reader.aclose()


async def test_a_cache_that_cannot_be_used_turns_itself_off(
    tmp_path: Path, history: CountingReader, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "kpi"
    blocker.write_text("not a folder")  # the file's folder cannot be made
    store = RollupStore(blocker / "rollups.db", LOG)
    engine = KpiEngine(machines(), lambda: history, now=lambda: T0 + 86400 * S, rollups=store)
    with caplog.at_level(logging.WARNING):
        result = await engine.kpi("imm-07", T0, T0 + 9000 * S)
        await engine.flush()
        await engine.flush()
    assert result["parts"] == 424
    assert sum("the KPI cache" in r.getMessage() for r in caplog.records) == 1
    await store.aclose()
