"""`gateway demo --uns`: the demo republishes every value to its own embedded broker as a UNS (slow: the whole demo)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from gateway import demo
from tests.helpers import async_wait_until, free_port
from tests.sinks.mqtt.peers import BrokerAddress, Witness

pytestmark = pytest.mark.slow


@pytest.mark.timeout(180)
async def test_the_demo_republishes_its_machines_as_a_uns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    brokers: list[str] = []
    monkeypatch.setattr(demo, "_print_uns_guide", brokers.append)
    monkeypatch.setattr(demo, "_reachable", lambda host, port: False)  # always the embedded broker (amqtt)
    task = asyncio.create_task(demo.run_demo(tmp_path / "demo", free_port(), duration=25, uns=True))
    witness: Witness | None = None
    try:
        await async_wait_until(lambda: brokers or task.done(), timeout=90, message="the demo started")
        assert not task.done(), task.exception()
        host, _, port = brokers[0].removeprefix("mqtt://").partition(":")
        witness = await asyncio.to_thread(Witness, BrokerAddress(host, int(port)), "lab/#", qos=1, protocol=4)

        def assets() -> set[str]:
            assert witness is not None
            return {m.topic.split("/")[1] for m in witness.received()}

        # Retained: the witness, subscribing after the demo began, gets the current values at once.
        wanted = {"cnc-01", "press-01", "main-meter", "chiller-1", "flow-wrapper-1"}
        await async_wait_until(lambda: wanted <= assets(), timeout=60, message=f"every demo machine: {assets()}")
        messages = witness.received()
        assert any(m.topic.startswith("lab/meter-") and m.topic.endswith("/energy/power_w") for m in messages)
        assert any(m.topic.endswith("/machine/spindle_rpm") for m in messages)
        sample: Any = next(m for m in messages if m.topic == "lab/flow-wrapper-1/packaging/speed_setpoint").json()
        assert sample["value"] == 120 and isinstance(sample["timestamp_ms"], int)
        assert all(m.topic.count("/") == 3 for m in messages)
    finally:
        if witness is not None:
            witness.close()
        await asyncio.wait_for(task, 120)
