"""The KPI engine on a real historian file: exact numbers on the scenarios, the hourly cache, live values.

Everything a production manager would check by hand on tests/kpi/scenarios.py: every category,
a counter reset, delta counters, a gap longer than the timeout, a range that cuts a state in
half, a night shift on the nights the clocks change in Europe/Rome; then what the engine adds:
the same numbers from its hourly cache as from a fresh read, live samples counted without
reading the history again, and a backlog for an hour already compacted read again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from gateway.history import BucketRow, HistoryReader, SeriesRow, ThreadedHistory, ValueRow
from gateway.kpi import engine as engine_module
from gateway.kpi.config import MachineConfig
from gateway.kpi.engine import KpiEngine, MachineNotFound
from gateway.latest import LatestValues
from gateway.point import Point
from gateway.sinks.historian.store import HistorianStore
from tests.kpi.scenarios import AUTUMN, EXPECTED_IMM07, MACHINES, SPRING, T0, write_scenarios

S = 10**9
H = 3600 * S


class CountingReader:
    """A history reader that counts the raw reads (to show what the cache saves)."""

    def __init__(self, inner: HistoryReader) -> None:
        self.inner = inner
        self.reads = 0

    @property
    def name(self) -> str:
        return self.inner.name

    async def series(self) -> list[SeriesRow]:
        return await self.inner.series()

    async def range(self, series_id: str, from_ns: int, to_ns: int, points: int) -> list[BucketRow]:
        return await self.inner.range(series_id, from_ns, to_ns, points)

    async def read(
        self,
        measurement: str,
        *,
        fields: Sequence[str] = (),
        tags: Mapping[str, str] | None = None,
        since_ns: int | None = None,
        until_ns: int | None = None,
        limit: int = 0,
    ) -> list[ValueRow]:
        self.reads += 1
        return await self.inner.read(
            measurement, fields=fields, tags=tags, since_ns=since_ns, until_ns=until_ns, limit=limit
        )


@pytest.fixture
async def history(tmp_path: Path) -> AsyncIterator[CountingReader]:
    path = write_scenarios(tmp_path / "history.db")
    reader = ThreadedHistory(lambda: HistorianStore(path, readonly=True), "local")
    yield CountingReader(reader)
    await reader.aclose()


def machines() -> list[MachineConfig]:
    return [MachineConfig.model_validate(m) for m in MACHINES]


def engine_for(history: HistoryReader | None, now: int) -> KpiEngine:
    return KpiEngine(machines(), lambda: history, now=lambda: now)


def figures(result: dict[str, Any]) -> dict[str, Any]:
    return {key: result[key] for key in EXPECTED_IMM07}


async def test_every_category_a_counter_reset_and_a_gap_longer_than_the_timeout(history: CountingReader) -> None:
    engine = engine_for(history, T0 + 86400 * S)
    result = await engine.kpi("imm-07", T0, T0 + 9000 * S)
    assert figures(result) == EXPECTED_IMM07
    assert (result["from"], result["to"]) == ("2026-03-02T06:00:00+00:00", "2026-03-02T08:30:00+00:00")
    assert result["from_ms"] == T0 // 1_000_000 and result["warnings"] == []
    assert "in_shifts" not in result  # no shifts: everything is planned


async def test_a_range_that_cuts_a_state_in_half(history: CountingReader) -> None:
    engine = engine_for(history, T0 + 86400 * S)
    result = await engine.kpi("imm-07", T0 + 1800 * S, T0 + 5030 * S)
    assert result["seconds"] == {
        "running": 1800,
        "idle": 600,
        "down": 600,
        "setup": 230,
        "planned_stop": 0,
        "unknown": 0,
        "no_data": 0,
    }
    # 151 parts: the increase shown by the sample at 1800 s counts; the reset to 0 at 4000 s adds 0.
    assert (result["parts"], result["scrap"], result["good"]) == (151, 1, 150)
    assert (result["availability"], result["performance"], result["quality"], result["oee"]) == (
        0.5573,
        0.8389,
        0.9934,
        0.4644,
    )


async def test_delta_counters(history: CountingReader) -> None:
    result = await engine_for(history, T0 + 86400 * S).kpi("imm-08", T0, T0 + 9000 * S)
    assert result["seconds"] == EXPECTED_IMM07["seconds"]
    assert (result["parts"], result["scrap"], result["good"]) == (305, 4, 301)
    assert (result["performance"], result["quality"], result["oee"]) == (0.598, 0.9869, 0.4019)


@pytest.mark.parametrize(("shift_start", "hours", "parts"), [(SPRING, 7, 420), (AUTUMN, 9, 540)])
async def test_a_night_shift_on_the_nights_the_clocks_change(
    history: CountingReader, shift_start: int, hours: int, parts: int
) -> None:
    engine = engine_for(history, T0 + 365 * 86400 * S)
    result = await engine.kpi("cnc-09", shift_start - 12 * H, shift_start + 12 * H, by="shift")
    [row] = result["rows"]
    assert row["shift"] == "N"
    assert (row["from_ms"], row["to_ms"]) == (shift_start // 1_000_000, (shift_start + hours * H) // 1_000_000)
    assert row["planned_seconds"] == hours * 3600 and row["seconds"]["running"] == hours * 3600
    assert (row["parts"], row["availability"], row["performance"], row["quality"]) == (parts, 1.0, 0.8333, 1.0)
    assert row["in_shifts"]["parts"] == parts
    # Over the whole day the machine also ran outside the shift: counted, but not in the ratios.
    assert result["seconds"]["running"] > hours * 3600 and result["planned_seconds"] == hours * 3600
    assert result["availability"] == 1.0 and result["parts"] > parts and result["in_shifts"]["parts"] == parts


async def test_local_days_and_hours_on_the_day_clocks_go_forward(history: CountingReader) -> None:
    engine = engine_for(history, T0 + 365 * 86400 * S)
    sunday, monday = SPRING + 2 * H, SPRING + 25 * H  # Sunday 29 March, local midnight to midnight (23 h)
    by_day = await engine.kpi("cnc-09", sunday, monday, by="day")
    assert [row["bucket"] for row in by_day["rows"]] == ["2026-03-29"]
    assert sum(by_day["rows"][0]["seconds"].values()) == 23 * 3600
    by_hour = await engine.kpi("cnc-09", sunday, monday, by="hour")
    assert len(by_hour["rows"]) == 23
    assert [row["bucket"] for row in by_hour["rows"][1:3]] == ["2026-03-29T01:00+01:00", "2026-03-29T03:00+02:00"]
    assert sum(row["parts"] for row in by_hour["rows"]) == by_day["parts"]


async def test_split_ranges_add_up_and_the_cache_saves_reading_again(history: CountingReader) -> None:
    engine = engine_for(history, T0 + 86400 * S)
    whole = await engine.kpi("imm-07", T0, T0 + 9000 * S)
    reads = history.reads
    halves = [await engine.kpi("imm-07", T0, T0 + 4321 * S), await engine.kpi("imm-07", T0 + 4321 * S, T0 + 9000 * S)]
    assert history.reads == reads  # every hour was in the cache already
    for category, seconds in whole["seconds"].items():
        assert halves[0]["seconds"][category] + halves[1]["seconds"][category] == seconds
    assert halves[0]["parts"] + halves[1]["parts"] == whole["parts"]
    # A fresh engine (nothing cached) gives the same as the cached one.
    assert await engine_for(history, T0 + 86400 * S).kpi("imm-07", T0, T0 + 4321 * S) == halves[0]
    hourly = await engine.kpi("imm-07", T0, T0 + 9000 * S, by="hour")
    assert sum(row["parts"] for row in hourly["rows"]) == whole["parts"]
    assert sum(row["seconds"]["running"] for row in hourly["rows"]) == whole["seconds"]["running"]


async def test_states_tile_the_range(history: CountingReader) -> None:
    states = await engine_for(history, T0 + 86400 * S).states("imm-07", T0 - 60 * S, T0 + 9000 * S)
    found = [(i["from_ms"], i["to_ms"], i["value"], i["category"]) for i in states["intervals"]]
    ms = T0 // 1_000_000
    assert found == [
        (ms - 60_000, ms, None, "no_data"),
        (ms, ms + 3_600_000, "PRODUCING", "running"),
        (ms + 3_600_000, ms + 4_200_000, "IDLE", "idle"),
        (ms + 4_200_000, ms + 4_800_000, "ALARM", "down"),
        (ms + 4_800_000, ms + 5_400_000, "SETUP", "setup"),
        (ms + 5_400_000, ms + 6_000_000, "BREAK", "planned_stop"),
        (ms + 6_000_000, ms + 6_590_000, "MAINTENANCE_X", "unknown"),
        (ms + 6_590_000, ms + 7_500_000, None, "no_data"),
        (ms + 7_500_000, ms + 9_000_000, 2, "running"),
    ]


async def test_the_future_is_not_counted_and_unknown_machines_are_named(history: CountingReader) -> None:
    engine = engine_for(history, T0 + 9000 * S)
    result = await engine.kpi("imm-07", T0, T0 + 86400 * S)
    assert result["to_ms"] == (T0 + 9000 * S) // 1_000_000 and figures(result) == EXPECTED_IMM07
    with pytest.raises(MachineNotFound, match="no machine is named 'imm-99' \\(machines: cnc-09, imm-07, imm-08\\)"):
        await engine.kpi("imm-99", T0, T0 + 1)
    with pytest.raises(ValueError, match="no shifts configured"):
        await engine.kpi("imm-07", T0, T0 + H, by="shift")


async def test_the_overview_gives_the_state_now_since_when_and_todays_kpis(history: CountingReader) -> None:
    engine = engine_for(history, T0 + 8000 * S)
    [imm07, imm08, cnc09] = await engine.overview()
    assert (imm07["name"], imm07["value"], imm07["category"]) == ("imm-07", 2, "running")
    assert imm07["since_ms"] == (T0 + 7500 * S) // 1_000_000 and imm07["since"] == "2026-03-02T08:05:00+00:00"
    assert (
        imm07["today"]["from"] == "2026-03-02T00:00:00+00:00" and imm07["today"]["parts"] == 300 + 40
    )  # (the sample at 8000 s is now: not before it)
    assert imm07["shift"] is None
    assert cnc09["category"] == "no_data" and cnc09["value"] is None
    assert imm08["today"]["parts"] == 300


async def test_live_samples_count_at_once_without_reading_the_history_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [T0 + 100 * S]
    store_path = tmp_path / "live.db"
    HistorianStore(store_path).close()
    reader = CountingReader(ThreadedHistory(lambda: HistorianStore(store_path, readonly=True), "local"))
    engine = KpiEngine(machines(), lambda: reader, now=lambda: clock[0])
    latest = LatestValues()
    engine.attach(latest)
    try:
        tags = {"machine": "imm-07"}
        for t in range(100, 700, 10):
            latest.update([Point("machine", {"state": "PRODUCING", "cycle_count": t // 10}, tags, T0 + t * S)])
        clock[0] = T0 + 700 * S
        first = await engine.kpi("imm-07", T0 + 100 * S, T0 + 700 * S)
        reads = reader.reads
        assert first["seconds"]["running"] == 600 and first["parts"] == 59  # (the first sample sets the start)
        latest.update([Point("machine", {"state": "ALARM", "cycle_count": 3}, tags, T0 + 700 * S)])  # a reset
        clock[0] = T0 + 760 * S
        second = await engine.kpi("imm-07", T0 + 100 * S, T0 + 760 * S)
        assert reader.reads == reads  # the current hour is followed live, not read again
        assert second["seconds"]["down"] == 60 and second["parts"] == 62
        # A sample out of order lands exactly too.
        latest.update([Point("machine", {"state": "SETUP"}, tags, T0 + 705 * S)])
        third = await engine.kpi("imm-07", T0 + 100 * S, T0 + 760 * S)
        assert third["seconds"]["down"] == 5 and third["seconds"]["setup"] == 55
        # Another machine's points and other measurements are not taken.
        latest.update([Point("machine", {"state": "IDLE"}, {"machine": "imm-99"}, T0 + 710 * S)])
        assert (await engine.kpi("imm-07", T0 + 100 * S, T0 + 760 * S)) == third
    finally:
        engine.detach()
        await reader.inner.aclose()  # type: ignore[attr-defined]


async def test_a_backlog_for_an_hour_already_compacted_is_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine_module, "RELOAD_DELAY", 0.0)
    path = tmp_path / "backlog.db"
    tags = {"machine": "imm-07"}
    with HistorianStore(path) as store:
        store.write([Point("machine", {"state": "PRODUCING"}, tags, T0 + t * S) for t in range(0, 600, 10)])
    reader = ThreadedHistory(lambda: HistorianStore(path, readonly=True), "local")
    clock = [T0 + 5 * H]
    engine = KpiEngine(machines(), lambda: reader, now=lambda: clock[0])
    latest = LatestValues()
    engine.attach(latest)
    try:
        before = await engine.kpi("imm-07", T0, T0 + H)
        assert before["seconds"]["running"] == 890 and before["seconds"]["no_data"] == 2710  # (590 s + 300 s timeout)
        # After an outage, the broker hands over what the machine said meanwhile: stored, then seen.
        backlog = [Point("machine", {"state": "ALARM"}, tags, T0 + t * S) for t in range(600, 1200, 10)]
        with HistorianStore(path) as store:
            store.write(backlog)
        latest.update(backlog)
        after = await engine.kpi("imm-07", T0, T0 + H)
        assert after["seconds"]["running"] == 600 and after["seconds"]["down"] == 890
        assert engine.take_revised() == {"imm-07": [T0 // H * H]}
        assert engine.stats()["late_samples"] == len(backlog)
    finally:
        engine.detach()
        await reader.aclose()


async def test_without_a_history_the_engine_says_what_it_knows() -> None:
    engine = KpiEngine(machines(), lambda: None, now=lambda: T0 + 60 * S)
    latest = LatestValues()
    engine.attach(latest)
    latest.update([Point("machine", {"state": "IDLE"}, {"machine": "imm-07"}, T0 + 10 * S)])
    result = await engine.kpi("imm-07", T0, T0 + 60 * S)
    assert result["seconds"]["idle"] == 50 and result["seconds"]["no_data"] == 10
    assert "no sink keeps a history" in result["warnings"][0]
    engine.detach()


async def test_a_bug_while_following_the_live_values_never_stops_the_collection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    engine = KpiEngine(machines(), lambda: None, now=lambda: T0 + 60 * S)
    latest = LatestValues()
    engine.attach(latest)

    def broken(*args: object) -> None:
        raise RuntimeError("planted bug")

    monkeypatch.setattr(engine_module._Machine, "add", broken)
    point = Point("machine", {"state": "IDLE"}, {"machine": "imm-07"}, T0 + 10 * S)
    latest.update([point])  # does not raise: the connector's emit goes on
    latest.update([point])
    assert latest.points_seen == 2 and engine.stats()["observe_errors"] == 2
    engine.detach()


async def test_an_hour_read_before_its_live_samples_stays_open_for_them(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    tags = {"machine": "imm-07"}
    with HistorianStore(path) as store:  # what was stored before the gateway started, in this hour
        store.write(
            [Point("machine", {"state": "IDLE", "cycle_count": 1}, tags, T0 + t * S) for t in range(0, 100, 10)]
        )
    reader = ThreadedHistory(lambda: HistorianStore(path, readonly=True), "local")
    clock = [T0 + 100 * S]
    engine = KpiEngine(machines(), lambda: reader, now=lambda: clock[0])
    latest = LatestValues()
    engine.attach(latest)
    try:
        await engine.preload("imm-07", T0, clock[0])  # the warm-up reads this hour first
        latest.update(
            [Point("machine", {"state": "PRODUCING", "cycle_count": 2}, tags, T0 + t * S) for t in (100, 110)]
        )
        clock[0] = T0 + 120 * S
        result = await engine.kpi("imm-07", T0, T0 + 120 * S)
        assert (result["seconds"]["idle"], result["seconds"]["running"], result["parts"]) == (100, 20, 1)
        assert engine.stats()["late_samples"] == 0 and engine.take_revised() == {}
    finally:
        engine.detach()
        await reader.aclose()
