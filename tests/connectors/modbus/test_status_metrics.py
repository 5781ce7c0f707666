"""What an operator sees of Modbus devices: /api/status per device, /metrics with a device label."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import yaml
from prometheus_client.parser import text_string_to_metric_families

from gateway.config import load_config
from gateway.runtime import Gateway
from tests.fixtures.modbus import StartServer, modbus_connector
from tests.helpers import async_wait_until


async def test_each_device_has_its_state_last_error_and_metrics(modbus_server: StartServer, tmp_path: Path) -> None:
    server = await modbus_server()
    server.unit(1).set("holding", 0, "uint16", 5)
    server.unit(1).illegal.add(("holding", 1))
    server.unit(2)
    server.silent.add(2)
    await server.start()
    field = {"name": "v", "area": "holding", "address": 0}
    devices = [
        {
            "unit": 1,
            "name": "meter",
            "measurement": "m",
            "fields": [field, {"name": "w", "area": "holding", "address": 1}],
        },
        {"unit": 2, "name": "chiller", "measurement": "m", "fields": [field]},
    ]
    data = {
        "gateway": {"name": "gw", "data_dir": str(tmp_path / "data"), "http": {"listen": "127.0.0.1:0"}},
        "sinks": [{"name": "local", "type": "historian", "path": str(tmp_path / "h.db"), "flush_interval": "200ms"}],
        "connectors": [modbus_connector(server.port, devices, timeout="500ms")],
    }
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(data))
    async with Gateway(load_config(path)) as gateway, aiohttp.ClientSession() as http:
        assert gateway.http is not None
        view = gateway.sources[0].status.detail["devices"]
        await async_wait_until(
            lambda: view["meter"]["counters"]["scans"] >= 3 and view["chiller"]["counters"]["read_errors"] >= 1,
            timeout=30,
            message="scans and a silent device",
        )
        async with http.get(f"{gateway.http.url}/api/status") as response:
            status = await response.json()
        async with http.get(f"{gateway.http.url}/metrics") as response:
            text = await response.text()
    (meters,) = [c for c in status["components"] if c["name"] == "meters"]
    assert meters["devices"]["meter"]["state"] == "running"
    assert "exception 2" in meters["devices"]["meter"]["field_errors"]["w"]
    assert meters["devices"]["chiller"]["state"] == "down"
    assert "unit 2 does not answer" in meters["devices"]["chiller"]["last_error"]
    samples = {
        (s.name, s.labels.get("device", "")): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.labels.get("connector") == "meters"
    }
    assert samples[("gateway_connector_read_errors_total", "meter")] >= 3  # field w, once per scan
    assert samples[("gateway_connector_read_errors_total", "chiller")] >= 1
    assert samples[("gateway_connector_scan_overruns_total", "meter")] == 0
    assert samples[("gateway_connector_device_up", "meter")] == 1
    assert samples[("gateway_connector_device_up", "chiller")] == 0
    assert samples[("gateway_connector_scan_duration_seconds_count", "meter")] >= 3
    assert ("gateway_connector_scan_duration_seconds_bucket", "meter") in samples
    assert samples[("gateway_connector_requests_per_scan", "")] == 3  # the meter's read split in two, the chiller's
