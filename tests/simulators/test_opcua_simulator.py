"""The OPC UA simulator's machine models (no server): reproducible, plausible, with states and failures.

The servers only write what ``step()`` returns, so the models are tested directly, over
hours of simulated time in well under a second.
"""

from __future__ import annotations

import itertools
import random
from typing import Any

import pytest

from gateway.simulators.opcua import BAD, MACHINE_STATES, CncModel, PressModel

Model = CncModel | PressModel


def _run(kind: type[Model], seed: int, seconds: int, dt: float = 1.0, bad_rate: float = 0.0) -> list[dict[str, Any]]:
    model = kind("m-01", random.Random(seed), bad_rate=bad_rate)
    return [model.step(dt) for _ in range(int(seconds / dt))]


def _without_wall_clock(run: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # StateChangedAt is the wall-clock time of the change: the only value a seed cannot fix.
    return [{k: v for k, v in values.items() if k != "State/StateChangedAt"} for values in run]


@pytest.mark.parametrize("kind", [CncModel, PressModel])
def test_the_same_seed_reproduces_a_run(kind: type[Model]) -> None:
    first = _without_wall_clock(_run(kind, seed=7, seconds=600, bad_rate=0.01))
    again = _without_wall_clock(_run(kind, seed=7, seconds=600, bad_rate=0.01))
    other = _without_wall_clock(_run(kind, seed=8, seconds=600, bad_rate=0.01))
    assert first == again
    assert first != other
    # The variables a server creates are reproducible too (the CNC's serial number is random).
    assert [v.value for v in kind("m", random.Random(7)).variables() if v.path != "State/StateChangedAt"] == [
        v.value for v in kind("m", random.Random(7)).variables() if v.path != "State/StateChangedAt"
    ]


@pytest.mark.parametrize("kind", [CncModel, PressModel])
def test_every_state_is_seen_and_the_state_variables_agree(kind: type[Model]) -> None:
    run = _run(kind, seed=7, seconds=4 * 3600)
    modes = [values["State/Mode"] for values in run]
    assert {MACHINE_STATES[m] for m in modes} == {"Idle", "Running", "Alarm", "Setup"}
    changes = sum(1 for a, b in itertools.pairwise(modes) if a != b)
    assert 50 < changes < 500, changes  # mean dwell 12–90 s: a few changes per hour per state, not every second
    for values in run:
        state = MACHINE_STATES[values["State/Mode"]]
        assert values["State/Running"] is (state == "Running")
        if kind is CncModel:
            assert values["State/AlarmActive"] is (state == "Alarm")
            assert (values["State/AlarmCode"] != 0) is (state == "Alarm") and (values["State/AlarmText"] != "") is (
                state == "Alarm"
            )
            if state != "Running":
                assert values["Spindle/SpeedSetpoint"] == 0.0


def _series(run: list[dict[str, Any]], path: str) -> list[Any]:
    return [values[path] for values in run]


def test_cnc_values_are_plausible() -> None:
    run = _run(CncModel, seed=3, seconds=2 * 3600)
    assert all(0.0 <= v <= 11_000.0 for v in _series(run, "Spindle/Speed"))
    assert max(_series(run, "Spindle/Speed")) > 6000.0  # it does run
    assert all(0.0 <= v <= 100.0 for v in _series(run, "Spindle/Load"))
    assert all(15.0 <= v <= 70.0 for v in _series(run, "Spindle/Temperature"))
    assert all(15.0 <= v <= 35.0 for v in _series(run, "Coolant/Temperature"))
    assert all(60.0 <= v <= 95.0 for v in _series(run, "Coolant/Level"))
    assert all(0.0 <= v <= 8.0 for v in _series(run, "Coolant/Pressure"))  # bar (gauge): never below 0
    assert all(0.1 <= v <= 6.0 for v in _series(run, "Sensors/Vibration"))
    assert all(0.5 <= v <= 40.0 for v in _series(run, "Energy/Power"))
    for path in ("Counters/PartsProduced", "Counters/CycleCount", "Counters/SpindleRevolutions", "Energy/Energy"):
        series = _series(run, path)
        assert series == sorted(series) and series[-1] > series[0], path  # counters only count up
    assert all(v["Counters/PartsGood"] + v["Counters/PartsScrap"] == v["Counters/PartsProduced"] for v in run)
    parts = run[-1]["Counters/PartsProduced"]
    assert 20 < parts < 2 * 3600 / 40, parts  # one part per 40–50 s of running, never more
    assert all(v["Axes/Position"] == [v["Axes/X/Position"], v["Axes/Y/Position"], v["Axes/Z/Position"]] for v in run)


def test_press_values_are_plausible() -> None:
    run = _run(PressModel, seed=3, seconds=2 * 3600)
    for zone in range(1, 6):
        assert all(150.0 <= v <= 265.0 for v in _series(run, f"Barrel/Zone{zone}")), zone
    assert all(v["Barrel/Temperatures"] == [v[f"Barrel/Zone{i}"] for i in range(1, 6)] for v in run)
    assert all(27.0 <= v <= 30.0 for v in _series(run, "Cycle/CycleTime"))
    assert all(30.0 <= v <= 75.0 for v in _series(run, "Mold/Temperature"))
    assert all(0.0 <= v <= 900.0 for v in _series(run, "Cycle/InjectionPressure"))
    shots = _series(run, "Counters/ShotCounter")
    assert shots == sorted(shots) and 20 < shots[-1] < 2 * 3600 / 27
    assert all(v["Counters/GoodParts"] + v["Counters/RejectedParts"] == v["Counters/ShotCounter"] for v in run)


@pytest.mark.parametrize(("kind", "fragile"), [(CncModel, 2), (PressModel, 2)])
def test_sensors_go_bad_at_about_the_configured_rate(kind: type[Model], fragile: int) -> None:
    rate, seconds = 0.01, 20_000
    run = _run(kind, seed=11, seconds=seconds, bad_rate=rate)
    bad_paths = {path for values in run for path, value in values.items() if value is BAD}
    assert len(bad_paths) == fragile, bad_paths  # only the sensors meant to fail
    onsets = 0
    bad_seconds = 0
    for path in bad_paths:
        states = [values[path] is BAD for values in run]
        onsets += sum(1 for a, b in itertools.pairwise(states) if b and not a)
        bad_seconds += sum(states)
        # A failure lasts 3–10 s, then the sensor is good again.
        lengths = [len(list(group)) for is_bad, group in itertools.groupby(states) if is_bad]
        assert all(3 <= n <= 11 for n in lengths[:-1]), lengths
    good_seconds = fragile * seconds - bad_seconds
    expected = rate * good_seconds  # failures start only on a good sensor
    assert 0.75 * expected < onsets < 1.25 * expected, (onsets, expected)
    # And with a rate of 0, nothing ever fails.
    assert not any(value is BAD for values in _run(kind, seed=11, seconds=3600) for value in values.values())
