"""The stored ``kpi`` points: the minutes (written again after a restart), the shift and day totals, corrections.

The component's steps run here with the clock fixed (the real loop, in real time, is exercised
end to end in test_end_to_end.py): what a Grafana user adds up from the points must give the
API's numbers.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from gateway.component import OnStored, RuntimeContext
from gateway.history import ThreadedHistory
from gateway.kpi import engine as engine_module
from gateway.kpi.config import MachineConfig
from gateway.kpi.source import KPI_COMPONENT, KpiSource
from gateway.latest import LatestValues
from gateway.point import Point
from gateway.sinks.historian.store import HistorianStore
from tests.kpi.scenarios import EXPECTED_IMM07, MACHINES, SPRING, T0, write_scenarios

S = 10**9
H = 3600 * S
MINUTE = 60 * S


def number(point: Point, name: str) -> float:
    value = point.fields[name]
    assert isinstance(value, float), (name, value)
    return value


class Collected:
    def __init__(self) -> None:
        self.points: list[Point] = []

    async def __call__(self, points: Sequence[Point], on_stored: OnStored | None = None) -> None:
        self.points.extend(points)

    def of(self, machine: str, period: str) -> list[Point]:
        return [p for p in self.points if p.tags["machine"] == machine and p.tags["period"] == period]


@pytest.fixture
async def history(tmp_path: Path) -> AsyncIterator[tuple[Path, ThreadedHistory]]:
    path = write_scenarios(tmp_path / "history.db")
    # Where the points were written before the gateway stopped: a minute before each scenario.
    with HistorianStore(path) as store:
        store.write(
            [
                Point(
                    "kpi", {"running_s": 0.0}, {"machine": "imm-07", "shift": "none", "period": "minute"}, T0 - MINUTE
                ),
                Point(
                    "kpi",
                    {"running_s": 0.0},
                    {"machine": "cnc-09", "shift": "none", "period": "minute"},
                    SPRING - MINUTE,
                ),
            ]
        )
    reader = ThreadedHistory(lambda: HistorianStore(path, readonly=True), "local")
    yield path, reader
    await reader.aclose()


def source_for(reader: ThreadedHistory | None, clock: list[int], names: Sequence[str]) -> KpiSource:
    machines = [MachineConfig.model_validate(m) for m in MACHINES if m["name"] in names]
    context = RuntimeContext("test", Path("."), logging.LoggerAdapter(logging.getLogger("kpi-test"), {}))
    return KpiSource(machines, context, history=lambda: reader, latest=LatestValues(), now=lambda: clock[0])


async def test_minute_points_after_a_restart_add_up_to_the_apis_numbers(
    history: tuple[Path, ThreadedHistory],
) -> None:
    clock = [T0 + 9000 * S + 10 * S]  # 08:30:10: every minute up to 08:30 is due
    source = source_for(history[1], clock, ["imm-07"])
    assert source.name == KPI_COMPONENT and source.status.kind == "kpi"
    collected = Collected()
    await source._resume()
    await source._write_due(collected)
    minutes = collected.of("imm-07", "minute")
    assert [p.time for p in minutes] == list(range(T0, T0 + 9000 * S, MINUTE))  # from the last stored one on
    assert all(p.tags["shift"] == "all" for p in minutes)  # no shifts: every minute is planned
    seconds = {c: sum(number(p, f"{c}_s") for p in minutes) for c in EXPECTED_IMM07["seconds"]}
    assert seconds == EXPECTED_IMM07["seconds"]
    assert sum(number(p, "planned_s") for p in minutes) == EXPECTED_IMM07["planned_seconds"]
    for name in ("parts", "scrap", "good"):
        assert sum(number(p, name) for p in minutes) == EXPECTED_IMM07[name]
    # What Grafana adds up from the minute points gives the API's ratios over the range.
    running, planned = seconds["running"], sum(number(p, "planned_s") for p in minutes)
    ideal, good, parts = (sum(number(p, f) for p in minutes) for f in ("ideal_s", "good", "parts"))
    assert round(running / planned, 4) == EXPECTED_IMM07["availability"]
    assert round(ideal / running, 4) == EXPECTED_IMM07["performance"]
    assert round(ideal * good / (planned * parts), 4) == EXPECTED_IMM07["oee"]
    assert all(isinstance(v, float) for p in minutes for v in p.fields.values())  # one type per field, always
    # The ratios of a minute point are the day's so far: the last one is the API's for the day.
    for name in ("availability", "performance", "quality", "oee"):
        assert round(number(minutes[-1], name), 4) == EXPECTED_IMM07[name]
    # Nothing is written twice: the next round has nothing due.
    await source._write_due(collected)
    assert len(collected.of("imm-07", "minute")) == len(minutes)
    assert source.status.counters["points"] == len(collected.points)


async def test_shift_and_day_points_on_the_night_clocks_go_forward(history: tuple[Path, ThreadedHistory]) -> None:
    clock = [SPRING + 7 * H + 10 * S]  # just after the night shift's end, Sunday 06:00 CEST
    source = source_for(history[1], clock, ["cnc-09"])
    collected = Collected()
    await source._resume()
    await source._write_due(collected)
    [shift] = collected.of("cnc-09", "shift")
    assert shift.time == SPRING and shift.tags == {"machine": "cnc-09", "shift": "N", "period": "shift"}
    assert (shift.fields["planned_s"], shift.fields["running_s"], shift.fields["parts"]) == (25200.0, 25200.0, 420.0)
    assert round(number(shift, "oee"), 4) == 0.8333 and shift.fields["availability"] == 1.0
    [day] = collected.of("cnc-09", "day")  # Saturday, ended at local midnight
    assert day.time == SPRING - 22 * H and day.tags["shift"] == "all"
    # Saturday: running from 20:00 (the first sample) to midnight, the shift's first two hours planned.
    assert day.fields["running_s"] == 4 * 3600.0 and day.fields["planned_s"] == 2 * 3600.0
    minutes = collected.of("cnc-09", "minute")
    assert {p.tags["shift"] for p in minutes} == {"N"} and len(minutes) == 7 * 60
    assert round(number(minutes[-1], "oee"), 4) == 0.8333  # the shift so far, at its last minute


async def test_a_backlog_writes_its_hour_again_with_the_corrected_numbers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine_module, "RELOAD_DELAY", 0.0)
    path = tmp_path / "history.db"
    tags = {"machine": "imm-07"}
    with HistorianStore(path) as store:
        store.write([Point("machine", {"state": "PRODUCING"}, tags, T0 + t * S) for t in range(0, 1200, 10)])
    reader = ThreadedHistory(lambda: HistorianStore(path, readonly=True), "local")
    clock = [T0 + H + 30 * MINUTE]
    source = source_for(reader, clock, ["imm-07"])
    latest = source._latest
    source.engine.attach(latest)
    try:
        collected = Collected()
        source._progress.clear()
        await source._resume()  # (nothing stored: from the current minute on)
        source._progress["imm-07"].next_minute = T0  # as if written since T0
        await source._write_due(collected)
        first = {p.time: p for p in collected.of("imm-07", "minute")}
        assert first[T0 + 30 * MINUTE].fields["no_data_s"] == 60.0
        backlog = [Point("machine", {"state": "ALARM"}, tags, T0 + t * S) for t in range(1200, 2400, 10)]
        with HistorianStore(path) as store:
            store.write(backlog)
        latest.update(backlog)
        collected.points.clear()
        await source._write_revised(collected)
        again = {p.time: p for p in collected.of("imm-07", "minute")}
        assert sorted(again) == list(range(T0, T0 + H, MINUTE))  # the hour the backlog touched
        assert again[T0 + 30 * MINUTE].fields["down_s"] == 60.0 and again[T0 + 30 * MINUTE].fields["no_data_s"] == 0
        assert source.status.counters["points_revised"] == 60
    finally:
        source.engine.detach()
        await reader.aclose()
