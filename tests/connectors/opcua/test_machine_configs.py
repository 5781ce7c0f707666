"""The two OPC UA pilot examples in configs/ collect from the simulated machines as written."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from gateway.config import load_config
from gateway.runtime import Gateway
from gateway.sinks.historian.store import HistorianStore
from tests.fixtures.opcua import ROOT
from tests.helpers import async_wait_until


def _fields(history: Path, measurement: str) -> dict[str, list[Any]]:
    if not history.exists():
        return {}
    store = HistorianStore(history, readonly=True)
    try:
        result: dict[str, list[Any]] = {}
        for value in store.read(measurement):
            result.setdefault(value.field, []).append(value)
        return result
    finally:
        store.close()


async def test_cnc_and_press_examples_collect_from_the_simulator(
    opcua_simulator: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim = opcua_simulator(machines=2, security="all", user=["operator:change-me"], anonymous=True, interval=0.5)
    cnc_data, press_data = tmp_path / "cnc", tmp_path / "press"
    # The administrator trusted the CNC's certificate, as the first run's error message says to.
    trusted = cnc_data / "opcua" / "pki" / "trusted"
    trusted.mkdir(parents=True)
    shutil.copy(sim.folder / "pki" / "cnc-01" / "cert.der", trusted / "cnc-01.der")
    monkeypatch.setenv("OPC_USER", "operator")
    monkeypatch.setenv("OPC_PASSWORD", "change-me")
    monkeypatch.setenv("CNC_ENDPOINT", sim.endpoint(0))
    monkeypatch.setenv("PRESS_ENDPOINT", sim.endpoint(1))
    monkeypatch.setenv("GATEWAY_DATA", str(cnc_data))
    cnc = load_config(ROOT / "configs" / "cnc-machining-centre.yaml")
    monkeypatch.setenv("GATEWAY_DATA", str(press_data))
    press = load_config(ROOT / "configs" / "injection-molding-press.yaml")

    async with Gateway(cnc), Gateway(press):
        cnc_fields = {"spindle_rpm", "coolant_temp_c", "state", "state_name", "program", "axis_x_position",
                      "parts_produced"}  # fmt: skip
        press_fields = {"cycle_time", "cushion", "zone1", "zone5", "mold_temp_c", "shots", "state_name"}
        await async_wait_until(
            lambda: cnc_fields <= set(_fields(cnc_data / "cnc-history.db", "machine")),
            timeout=90,
            interval=0.5,
            message="the CNC example's fields",
        )
        await async_wait_until(
            lambda: press_fields <= set(_fields(press_data / "press-history.db", "press")),
            timeout=90,
            interval=0.5,
            message="the press example's fields",
        )
    cnc_values = _fields(cnc_data / "cnc-history.db", "machine")
    press_values = _fields(press_data / "press-history.db", "press")
    assert 10 < cnc_values["coolant_temp_c"][0].value < 40  # the raw tenths, scaled
    assert cnc_values["state_name"][0].value in ("Idle", "Running", "Alarm", "Setup")
    assert cnc_values["spindle_rpm"][0].tags == {"line": "A", "machine": "cnc-01", "kind": "vmc"}
    assert not any(name.startswith("axis_position") for name in cnc_values)  # arrays: skip
    assert not any(name.startswith("temperatures") for name in press_values)  # arrays: skip
    assert 150 < press_values["zone1"][0].value < 260
