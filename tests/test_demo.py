"""`gateway demo` (what `make demo` runs) works with nothing but Python: MQTT and OPC UA data land in the historian."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from gateway.sinks.historian.store import HistorianStore
from tests.helpers import free_port

ROOT = Path(__file__).resolve().parent.parent


def test_demo_collects_every_simulated_device_into_the_historian(tmp_path: Path) -> None:
    data = tmp_path / "demo"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "demo",
            "--duration",
            "15s",  # time for an embedded broker, two OPC UA servers and the gateway to start on a busy machine
            "--data-dir",
            str(data),
            "--port",
            str(free_port()),
        ],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "gateway query configs/demo.yaml" in result.stdout  # it says where to look

    store = HistorianStore(data / "history.db", readonly=True)
    try:
        energy = store.read("energy")
        machine = store.read("machine")
        temperature = store.read("temperature")
        press = store.read("press")
        electrical = store.read("electrical")
        chiller = store.read("chiller")
        packaging = store.read("packaging")
    finally:
        store.close()
    assert {v.field for v in energy} == {"power_w", "energy_kwh", "power_factor"}
    assert {v.tags["line"] for v in energy} == {"A", "B"}
    assert {v.tags["meter"] for v in energy} >= {"meter-A1", "meter-B3"}
    assert {v.value for v in machine if v.field == "state"} <= {"idle", "setup", "running", "alarm", "break"}
    assert all(isinstance(v.value, int) for v in machine if v.field == "parts")
    assert temperature and all(10 < float(v.value) < 40 for v in temperature)
    # the OPC UA machines: the CNC centre by subscription, the press by polling
    cnc_fields = {v.field for v in machine if v.tags.get("machine") == "cnc-01"}
    assert {"spindle_rpm", "feed_mm_min", "mode", "mode_name", "parts_produced"} <= cnc_fields
    assert {"cycle_time", "mold_temp_c", "shots"} <= {v.field for v in press}
    # the Modbus energy meter and chiller, on one connection
    assert all(200 < float(v.value) < 260 for v in electrical if v.field == "voltage_l1")
    assert {"voltage_l1", "energy_kwh", "running", "alarm_overtemp", "tariff"} <= {v.field for v in electrical}
    assert {"supply_temp_c", "compressor_on", "run_hours"} <= {v.field for v in chiller}
    # the packaging line's S7 PLC: every field, the recipe a string, the setpoint a number
    assert {"line_speed", "packs_good", "seal_temp_c", "recipe", "speed_setpoint"} <= {v.field for v in packaging}
    assert {v.value for v in packaging if v.field == "speed_setpoint"} == {120}
    assert all(isinstance(v.value, str) and v.value for v in packaging if v.field == "recipe")
    # every message the connector received was stored, none malformed
    counts = re.search(r"(\d+) messages received, (\d+) stored, (\d+) malformed", result.stderr)
    assert counts is not None, result.stderr[-3000:]
    received, stored, malformed = map(int, counts.groups())
    assert received >= 50 and stored == received and malformed == 0
