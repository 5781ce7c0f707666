"""Scale and an absolute deadband store the same data in subscribe and poll mode.

The deadband is in the unit of the stored (scaled) value, as the README says: the server,
which compares raw values, is asked for ``absolute / |scale|``. Two servers with a value that
counts up by exactly 1 at a known rate: the node-opcua peer's Ramp (every 100 ms) and the
simulator's bench variable Tag00000 (every ``--interval``).
"""

from __future__ import annotations

import itertools
import statistics
from pathlib import Path
from typing import Any

import pytest

from gateway.config import load_config
from gateway.runtime import Gateway
from tests.fixtures.opcua import gateway_config, stored
from tests.helpers import async_wait_until

RAMP = "nsu=urn:peer:node-opcua:press-line;s=PressLine.Ramp"
BENCH = "nsu=urn:lab:bench;s=Bench.Tag00000"


@pytest.mark.parametrize("server", ["node-opcua", "simulator"])
async def test_scale_and_absolute_deadband_agree_in_subscribe_and_poll_mode(
    server: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    if server == "node-opcua":
        endpoint, node_id = request.getfixturevalue("node_opcua_server")().endpoint(), RAMP
    else:
        sim = request.getfixturevalue("opcua_simulator")(machines=1, bench_items=1, interval=0.1, bad_rate=0)
        endpoint, node_id = sim.endpoint(), BENCH
    # Raw steps of 1, stored as steps of 10; the deadband 25 (stored unit) keeps every 3rd step.
    node = {"node": node_id, "field": "count", "scale": 10, "deadband": {"absolute": 25}}
    common: dict[str, Any] = {"type": "opcua", "endpoint": endpoint, "nodes": [node]}
    connectors = [
        {
            **common,
            "name": "subscribed",
            "measurement": "subscribed",
            "subscription": {"publishing_interval": "100ms", "sampling_interval": "50ms", "queue_size": 10},
        },
        {**common, "name": "polled", "measurement": "polled", "mode": "poll", "poll_interval": "100ms"},
    ]
    config = gateway_config(tmp_path, connectors, flush_interval="100ms")
    async with Gateway(load_config(config)):
        await async_wait_until(
            lambda: all(len(stored(tmp_path, m, fields=["count"])) >= 8 for m in ("subscribed", "polled")),
            timeout=90,
            interval=0.5,
            message="8 stored values in both modes",
        )
    for measurement in ("subscribed", "polled"):
        values = [v.value for v in stored(tmp_path, measurement, fields=["count"])]
        diffs = [b - a for a, b in itertools.pairwise(values)]
        assert all(v % 10 == 0 for v in values), (measurement, values)  # scaled: raw counts * 10
        assert all(d > 25 for d in diffs), (measurement, values)  # the deadband, in stored units
        # 30 when every raw step is seen, a bit more when a busy machine merges a few; never
        # the 260 (raw steps > 25) of a deadband applied to raw values.
        assert statistics.median(diffs) <= 60, (measurement, values)
