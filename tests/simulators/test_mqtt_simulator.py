"""The MQTT simulator's payloads are plausible and match the example configs' topics."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from gateway.errors import GatewayError
from gateway.simulators.mqtt import MACHINE_STATES, Device, SimulatorSettings, build_devices, run_mqtt_simulator


def _devices(lines: int, meters: int, machines: int, seed: int | None = None, prefix: str = "factory") -> list[Device]:
    settings = SimulatorSettings(lines=lines, meters=meters, machines=machines, seed=seed, prefix=prefix)
    return build_devices(settings, random.Random(7))


def test_topics_per_line_follow_the_example_configs() -> None:
    devices = _devices(lines=2, meters=3, machines=2, prefix="factory")
    topics = [d.topic for d in devices]
    assert len(topics) == len(set(topics)) == 2 * (3 + 2 + 1)
    assert "factory/A/energy/meter-A1" in topics
    assert "factory/B/machine/cnc-B2/state" in topics
    assert "factory/A/temperature/coolant-A1" in topics


def test_energy_meter_counts_up_and_power_is_plausible() -> None:
    meter = next(d for d in _devices(lines=1, meters=1, machines=1) if d.kind == "energy")
    readings = []
    for _ in range(50):
        meter.last -= 1.0  # one simulated second between readings
        readings.append(json.loads(meter.payload()))
    energies = [r["e"] for r in readings]
    assert energies == sorted(energies) and energies[-1] > energies[0]
    assert all(300 < r["p"] < 12_000 for r in readings)
    assert all(abs(r["ts"] - time.time() * 1000) < 60_000 for r in readings)


def test_machine_states_transition_and_spindle_follows_state() -> None:
    machine = next(d for d in _devices(lines=1, meters=0, machines=1, seed=3) if d.kind == "machine")
    seen = set()
    for _ in range(3000):
        machine.last -= 1.0
        state = json.loads(machine.payload())
        datetime.fromisoformat(state["ts"])
        assert state["state"] in MACHINE_STATES
        seen.add(state["state"])
        if state["state"] != "running":
            assert state["spindle"]["rpm"] < 9000
        assert (state["alarm"] is not None) == (state["state"] == "alarm")
    assert {"idle", "running"} <= seen and len(seen) >= 3


def test_temperature_is_a_plain_number_that_drifts_smoothly() -> None:
    sensor = next(d for d in _devices(lines=1, meters=0, machines=1) if d.kind == "temperature")
    values = []
    for _ in range(100):
        sensor.last -= 1.0
        values.append(float(sensor.payload()))
    assert all(10 < v < 40 for v in values)
    assert max(abs(a - b) for a, b in itertools.pairwise(values)) < 2.0


def test_a_burst_never_repeats_a_device_timestamp() -> None:
    devices = [d for d in _devices(lines=1, meters=1, machines=1) if d.kind != "temperature"]
    for device in devices:
        stamps = []
        for _ in range(200):  # far more than one message per millisecond
            payload = json.loads(device.payload())
            stamp = payload["ts"]
            stamps.append(stamp if isinstance(stamp, int) else datetime.fromisoformat(stamp).timestamp() * 1000)
        assert all(b > a for a, b in itertools.pairwise(stamps))


async def test_the_heartbeat_says_connected_and_counts_what_was_published(mosquitto: Any, tmp_path: Path) -> None:
    """The compose kit's health check reads this file."""
    status = tmp_path / "sim.json"
    settings = SimulatorSettings(broker=mosquitto.url, rate=200.0, count=300, qos=1, status_file=status)
    published = await asyncio.wait_for(run_mqtt_simulator(settings), 60)
    heartbeat = json.loads(status.read_text())
    assert published == 300
    assert heartbeat["connected"] is True
    assert 0 < heartbeat["published"] <= 300
    assert abs(heartbeat["time"] - time.time()) < 30


def test_a_qos_that_does_not_exist_is_refused_with_a_clear_error() -> None:
    with pytest.raises(GatewayError, match="QoS 5 does not exist"):
        asyncio.run(run_mqtt_simulator(SimulatorSettings(qos=5, count=1)))
