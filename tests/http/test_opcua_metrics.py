"""/metrics of a real OPC UA connector: items monitored and failed are gauges, counted afresh on reconnect.

The simulator runs as a subprocess (tests/fixtures/opcua.py); it is stopped and started again, so
the connector opens a new session and resolves its nodes once more.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from gateway.config import load_config
from gateway.http.metrics import GatewayCollector, render_metrics
from gateway.runtime import Gateway
from tests.fixtures.opcua import gateway_config
from tests.helpers import async_wait_until


def _metrics(gateway: Gateway) -> dict[str, float]:
    text = render_metrics(GatewayCollector("gw", gateway.statuses, 0.0)).decode()
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.labels.get("connector") == "cnc-01"
    }


async def test_monitored_and_failed_items_are_gauges_reset_on_reconnect(opcua_simulator: Any, tmp_path: Path) -> None:
    sim = opcua_simulator(machines=1, bad_rate=0, interval=0.5)
    connector = {
        "name": "cnc-01",
        "type": "opcua",
        "endpoint": sim.endpoint(),
        "measurement": "machine",
        "subscription": {"publishing_interval": "200ms"},
        "reconnect": {"max_delay": "1s", "watchdog_interval": "1s", "request_timeout": "5s"},
        "nodes": [
            {"node": "nsu=urn:lab:cnc;s=Spindle.Speed", "field": "spindle_rpm"},
            {"node": "nsu=urn:lab:cnc;s=No.Such.Variable", "field": "missing"},  # fails when read
            {"node": "Objects/Machine/NoSuchFolder/Value", "field": "gone"},  # fails when translated
        ],
    }
    async with Gateway(load_config(gateway_config(tmp_path, [connector]))) as gateway:
        status = gateway.sources[0].status
        await async_wait_until(lambda: status.detail.get("monitored_items") == 1, timeout=60, message="subscribed")
        metrics = _metrics(gateway)
        assert metrics["gateway_connector_monitored_items"] == 1
        assert metrics["gateway_connector_failed_items"] == 2
        assert not {"gateway_connector_monitored_items_total", "gateway_connector_failed_items_total"} & set(metrics)

        reconnects = status.counters["reconnects"]
        sim.stop()
        await async_wait_until(lambda: status.state.value != "running", timeout=60, message="loss noticed")
        sim.start()
        await async_wait_until(
            lambda: status.counters["reconnects"] > reconnects and status.state.value == "running",
            timeout=60,
            message="subscribed again",
        )
        # The same two nodes fail on the new session: still 2, not 2 + 2.
        assert _metrics(gateway)["gateway_connector_failed_items"] == 2
        assert _metrics(gateway)["gateway_connector_monitored_items"] == 1
    # Closed: nothing is monitored any more (a gauge goes down; a counter could not).
    assert _metrics(gateway)["gateway_connector_monitored_items"] == 0
