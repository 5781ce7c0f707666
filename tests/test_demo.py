"""`gateway demo` (what `make demo` runs) works with nothing but Python: MQTT and OPC UA data land in the
historian, and its machines take writes through the API (the round trip the page's controls make)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from gateway.ports import free_ports
from gateway.sinks.historian.store import HistorianStore
from tests.helpers import free_port, stop_process, wait_until

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


# --- the demo's machines take writes: checked, written, read back, audited -----------------------------


def _card_value(api: httpx.Client, machine: str, field: str) -> Any:
    """The value of ``field`` on the overview card of ``machine`` (None until it arrives)."""
    for card in api.get("/api/overview").json()["cards"]:
        if card["tags"].get("machine") == machine:
            for value in card["values"]:
                if value["field"] == field:
                    return value["value"]
    return None


def test_the_demo_writes_to_its_simulated_machines_through_the_api(tmp_path: Path) -> None:
    """`gateway demo` as a user runs it (configs/demo.yaml, its simulators, the web API on loopback,
    where whoever reaches it is admin): the CNC's program and feed override (OPC UA), the chiller's
    setpoint (Modbus) and the packaging line's speed setpoint (S7) written and read back, each machine
    acting on it; a value outside the limits refused with 422 before it reaches the machine."""
    port = free_ports(1)
    log = tmp_path / "demo.log"
    with log.open("wb") as out:
        demo = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "demo", "--data-dir", str(tmp_path / "demo"), "--port", str(port)],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as api:

            def running() -> bool:
                assert demo.poll() is None, log.read_text()[-3000:]
                try:
                    components = api.get("/api/status").json()["components"]
                except httpx.HTTPError:
                    return False
                states = {c["name"]: c["state"] for c in components}
                return all(states.get(n) == "running" for n in ("cnc-01", "utilities", "packaging-line"))

            wait_until(
                running, timeout=120, interval=0.5, message="the demo's OPC UA, Modbus and S7 connectors running"
            )
            assert api.get("/api/whoami").json()["role"] == "admin"  # loopback, no credentials: the page shows controls

            writable = {(f["connector"], f["field"]): f for f in api.get("/api/writable").json()}
            assert set(writable) == {
                ("cnc-01", "program"),
                ("cnc-01", "feed_override"),
                ("utilities", "setpoint_c"),
                ("packaging-line", "speed_setpoint"),
            }
            program = writable[("cnc-01", "program")]
            assert (program["type"], program["allowed"]) == ("string", ["O1001", "O1002", "O1003", "O2040", "O3100"])
            override = writable[("cnc-01", "feed_override")]
            assert (override["type"], override["min"], override["max"]) == ("integer", 0, 120)  # a Byte node
            chiller = writable[("utilities", "setpoint_c")]
            assert (chiller["type"], chiller["min"], chiller["max"], chiller["unit"]) == ("number", 5, 15, "°C")
            speed = writable[("packaging-line", "speed_setpoint")]
            assert (speed["type"], speed["min"], speed["max"]) == ("integer", 30, 150)

            def write(connector: str, field: str, value: Any) -> tuple[int, dict[str, Any]]:
                answer = api.post("/api/write", json={"connector": connector, "field": field, "value": value})
                return answer.status_code, answer.json()

            # the round trip: written, read back from the machine, and the machine acts on it
            for connector, field, value, old in (
                ("cnc-01", "program", "O1002", "O1001"),
                ("cnc-01", "feed_override", 80, 100),
                ("utilities", "setpoint_c", 9.5, 7.0),
                ("packaging-line", "speed_setpoint", 90, 120),
            ):
                status, record = write(connector, field, value)
                assert (status, record["result"], record["old"], record["read_back"]) == (200, "written", old, value), (
                    record
                )
                assert record["user"] == "local" and record["role"] == "admin"
            wait_until(
                lambda: _card_value(api, "cnc-01", "program_title") == "O1002 HOUSING-B",
                timeout=30,
                interval=0.5,
                message="the CNC loaded O1002 (its program title on the card)",
            )
            wait_until(
                lambda: _card_value(api, "chiller-1", "setpoint_c") == 9.5,
                timeout=30,
                interval=0.5,
                message="the chiller's new setpoint on its card",
            )
            wait_until(
                lambda: _card_value(api, "flow-wrapper-1", "speed_setpoint") == 90,
                timeout=30,
                interval=0.5,
                message="the packaging line's new speed setpoint on its card",
            )

            # outside the limits: refused before anything reaches the machine
            for connector, field, value, words in (
                ("utilities", "setpoint_c", 30, "30 °C is above the highest value allowed for setpoint_c (15 °C)"),
                ("cnc-01", "program", "O9999", "'O9999' is not one of the values allowed for program"),
                ("cnc-01", "feed_override", 150, "above the highest value allowed for feed_override"),
                ("packaging-line", "speed_setpoint", 10, "below the lowest value allowed for speed_setpoint"),
            ):
                status, record = write(connector, field, value)
                assert (status, record["result"]) == (422, "refused_limits"), record
                assert words in record["message"]
                assert record["old"] is None and record["read_back"] is None  # the machine was not even read
            # ...and the machines still hold what was written before (read from them by the next write)
            status, record = write("utilities", "setpoint_c", 8)
            assert (status, record["result"], record["old"], record["read_back"]) == (200, "written", 9.5, 8)
            status, record = write("cnc-01", "program", "O1003")
            assert (status, record["result"], record["old"], record["read_back"]) == (200, "written", "O1002", "O1003")

            audit = api.get("/api/audit", params={"limit": 100}).json()["entries"]
            results = [(e["connector"], e["field"], e["result"]) for e in reversed(audit)]  # oldest first
            assert results == [
                ("cnc-01", "program", "written"),
                ("cnc-01", "feed_override", "written"),
                ("utilities", "setpoint_c", "written"),
                ("packaging-line", "speed_setpoint", "written"),
                ("utilities", "setpoint_c", "refused_limits"),
                ("cnc-01", "program", "refused_limits"),
                ("cnc-01", "feed_override", "refused_limits"),
                ("packaging-line", "speed_setpoint", "refused_limits"),
                ("utilities", "setpoint_c", "written"),
                ("cnc-01", "program", "written"),
            ]
    finally:
        stop_process(demo, timeout=60)
    assert demo.returncode == 0, log.read_text()[-3000:]
    assert (tmp_path / "demo" / "audit" / "audit.jsonl").exists()
