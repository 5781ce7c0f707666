"""Polling mode and deadbands change what is stored, in the way configured (node-opcua peer).

The peer's Ramp grows by 1 every 100 ms; its Pressure (an AnalogItem, EURange 0..1000)
swings by up to ~150 every 500 ms.
"""

from __future__ import annotations

import itertools
import statistics
from pathlib import Path
from typing import Any

from gateway.config import load_config
from gateway.runtime import Gateway
from tests.fixtures.opcua import gateway_config, stored
from tests.helpers import async_wait_until

NS = "urn:peer:node-opcua:press-line"
RAMP = f"nsu={NS};s=PressLine.Ramp"
PRESSURE = f"nsu={NS};s=PressLine.Pressure"


def _connector(name: str, endpoint: str, nodes: list[dict[str, Any]], **options: Any) -> dict[str, Any]:
    return {
        "name": name,
        "type": "opcua",
        "endpoint": endpoint,
        "measurement": name,
        "subscription": {"publishing_interval": "100ms", "sampling_interval": "50ms", "queue_size": 10},
        "nodes": nodes,
        **options,
    }


def _diffs(values: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(values)]


async def test_polling_and_deadbands_store_what_is_configured(node_opcua_server: Any, tmp_path: Path) -> None:
    server = node_opcua_server()
    endpoint = server.endpoint()
    connectors = [
        _connector("plain", endpoint, [{"node": RAMP, "field": "ramp"}, {"node": PRESSURE, "field": "pressure"}]),
        _connector("absolute", endpoint, [{"node": RAMP, "field": "ramp", "deadband": {"absolute": 5}}]),
        _connector("percent", endpoint, [{"node": PRESSURE, "field": "pressure"}], deadband={"percent": 10}),
        _connector("polled", endpoint, [{"node": RAMP, "field": "ramp"}], mode="poll", poll_interval="1s"),
    ]
    config = gateway_config(tmp_path, connectors, flush_interval="100ms")
    async with Gateway(load_config(config)) as gateway:

        def series(measurement: str, field: str) -> list[Any]:
            return stored(tmp_path, measurement, fields=[field])

        await async_wait_until(
            lambda: len(series("plain", "ramp")) >= 40 and len(series("polled", "ramp")) >= 4,
            timeout=90,
            interval=0.5,
            message="40 ramp changes and 4 polls",
        )
        details = {s.name: dict(s.detail) for s in gateway.statuses()}

    plain = [v.value for v in series("plain", "ramp")]
    absolute = [v.value for v in series("absolute", "ramp")]
    polled = series("polled", "ramp")

    # No deadband: every change of the ramp (+1 each; a busy machine may merge a few).
    assert statistics.median(_diffs(plain)) <= 2
    # Absolute deadband 5: only moves of more than 5 are stored.
    assert len(absolute) >= 4
    assert all(d > 5 for d in _diffs(absolute)), absolute
    assert len(absolute) < len(plain) / 3

    # Percent deadband 10 % of the EURange (0..1000): only moves of more than 100.
    pressure_all = [v.value for v in series("plain", "pressure")]
    pressure_db = [v.value for v in series("percent", "pressure")]
    assert any(abs(d) <= 100 for d in _diffs(pressure_all))
    assert len(pressure_db) >= 2
    assert all(abs(d) > 100 for d in _diffs(pressure_db)), pressure_db

    # Polling every second: one sample per read, at the source time the server gave it.
    times = [v.time / 1e9 for v in polled]
    assert statistics.median(_diffs(times)) >= 0.8, times
    assert len(polled) <= (times[-1] - times[0]) / 1.0 + 2  # about one per second, not one per change
    assert statistics.median(_diffs([v.value for v in polled])) >= 5
    assert details["polled"]["monitored_items"] == 1
