"""End to end: a machine over MQTT and one over OPC UA, the gateway computing their KPIs, the kpi points
in VictoriaMetrics (an InfluxDB v2 write API) and in the historian, with the API's numbers.

Real servers: Mosquitto, the OPC UA simulator (a CNC centre: mode enum and part counters), the
MQTT simulator (a machine publishing its state, parts and scrap), VictoriaMetrics, and
``gateway run`` as its own process. A minute's kpi point is written 5 s after the minute ends,
so the test waits for the first whole minute (about 1–2 minutes).
"""

from __future__ import annotations

import subprocess
import sys
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fixtures.gateway import GatewayRun
from tests.helpers import free_port, stop_process, wait_until

pytestmark = pytest.mark.slow

CATEGORIES = ("running", "idle", "down", "setup", "planned_stop", "unknown", "no_data")


def config(tmp_path: Path, broker: str, opcua: str, victoria: str, http_port: int) -> Path:
    data = tmp_path / "gateway"
    document: dict[str, Any] = {
        "gateway": {
            "name": "kpi-e2e",
            "data_dir": str(data),
            "http": {"listen": f"127.0.0.1:{http_port}"},
            "shutdown_timeout": "15s",
        },
        "sinks": [
            {"name": "local", "type": "historian", "path": str(data / "history.db"), "flush_interval": "200ms"},
            {
                "name": "influx",
                "type": "influxdb",
                "url": victoria,
                "org": "lab",
                "bucket": "machines",
                "token": "e2e-token",
                "flush_interval": "200ms",
            },
        ],
        "connectors": [
            {
                "name": "machines-mqtt",
                "type": "mqtt",
                "broker": broker,
                "client_id": "gw-kpi-e2e",
                "qos": 1,
                "topics": [
                    {
                        "filter": "factory/+/machine/+/state",
                        "tags_from_topic": {"line": 1, "machine": 3},
                        "measurement": "machine",
                        "time": {"path": "ts", "unit": "iso8601"},
                        "fields": {
                            "state": {"path": "state", "type": "string"},
                            "parts": {"path": "parts", "type": "int"},
                            "scrap": {"path": "scrap", "type": "int"},
                        },
                    }
                ],
            },
            {
                "name": "cnc-01",
                "type": "opcua",
                "endpoint": opcua,
                "measurement": "machine",
                "tags": {"line": "C", "machine": "cnc-01"},
                "mode": "poll",
                "poll_interval": "1s",
                "nodes": [
                    {"node": "nsu=urn:lab:cnc;s=State.Mode", "field": "mode", "enum_names": True},
                    {"node": "nsu=urn:lab:cnc;s=Counters.PartsProduced", "field": "parts"},
                    {"node": "nsu=urn:lab:cnc;s=Counters.PartsScrap", "field": "scrap"},
                ],
            },
        ],
        "machines": [
            {
                "name": "cnc-A1",
                "tags": {"machine": "cnc-A1"},
                "state": {
                    "measurement": "machine",
                    "field": "state",
                    "map": {
                        "running": ["running"],
                        "idle": ["idle"],
                        "down": ["alarm"],
                        "setup": ["setup"],
                        "planned_stop": ["break"],
                    },
                    "timeout": "1m",
                },
                "parts": {"measurement": "machine", "field": "parts"},
                "scrap": {"measurement": "machine", "field": "scrap"},
                "ideal_cycle_time": "30s",
            },
            {
                "name": "cnc-01",
                "tags": {"machine": "cnc-01"},
                "state": {
                    "measurement": "machine",
                    "field": "mode_name",
                    "map": {"running": ["Running"], "idle": ["Idle"], "down": ["Alarm"], "setup": ["Setup"]},
                    "timeout": "1m",
                },
                "parts": {"measurement": "machine", "field": "parts"},
                "scrap": {"measurement": "machine", "field": "scrap"},
                "ideal_cycle_time": "40s",
            },
        ],
    }
    path = tmp_path / "kpi-e2e.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def test_kpi_points_land_in_victoriametrics_with_the_apis_numbers(
    tmp_path: Path,
    mosquitto: Any,
    opcua_simulator: Any,
    victoriametrics: Any,
    gateway_run: list[GatewayRun],
) -> None:
    cnc = opcua_simulator(machines=1)
    broker = f"mqtt://127.0.0.1:{mosquitto.port}"
    simulator = subprocess.Popen(
        [
            *(sys.executable, "-m", "gateway.cli", "simulate", "mqtt", "--broker", broker, "--rate", "4"),
            *("--lines", "1", "--machines", "1", "--meters", "0", "--seed", "12"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "mqtt-sim.log").open("wb"),
    )
    try:
        http_port = free_port()
        path = config(tmp_path, broker, cnc.endpoint(0), victoriametrics.url, http_port)
        gateway = GatewayRun(path, http_port, tmp_path / "gateway.log")
        gateway_run.append(gateway)
        gateway.start()
        kpi = gateway.component("kpi:engine")
        assert kpi is not None and kpi["kind"] == "kpi"
        wait_until(lambda: gateway.component("kpi:engine")["state"] == "running", timeout=30)  # type: ignore[index]

        def minutes() -> dict[tuple[str, int], dict[str, float]]:
            """(machine, minute ms) → field → value, of the kpi minute points in VictoriaMetrics."""
            found: dict[tuple[str, int], dict[str, float]] = {}
            for sample in victoriametrics.samples('{__name__=~"kpi_.*", period="minute"}'):
                tags = dict(sample.tags)
                found.setdefault((tags["machine"], sample.time_ms), {})[sample.name.removeprefix("kpi_")] = sample.value
            return found

        def both_with_data() -> dict[tuple[str, int], dict[str, float]]:
            found = minutes()
            machines = {m for (m, _), fields in found.items() if fields.get("no_data_s", 60.0) < 60.0}
            return found if machines >= {"cnc-A1", "cnc-01"} else {}

        try:
            points = wait_until(both_with_data, timeout=180, interval=2.0, message="kpi minute points of both machines")
        except AssertionError as exc:
            seen = {key: fields.get("no_data_s") for key, fields in minutes().items()}
            raise AssertionError(f"{exc}\nminute points (no_data_s): {seen}\n{gateway.log_tail(60)}") from None
        for (machine, minute), fields in points.items():
            assert sum(fields[f"{c}_s"] for c in CATEGORIES) == pytest.approx(60.0)
            answer = gateway.get(
                f"/api/machines/{machine}/kpi?" + urllib.parse.urlencode({"from": minute, "to": minute + 60_000})
            )
            assert answer is not None, gateway.log_tail()
            for category in CATEGORIES:
                assert fields[f"{category}_s"] == pytest.approx(answer["seconds"][category], abs=0.001), (
                    machine,
                    category,
                )
            assert fields["planned_s"] == pytest.approx(answer["planned_seconds"], abs=0.001)
            assert (fields["parts"], fields["scrap"]) == (answer["parts"], answer["scrap"])

        # The same points went to the historian: the web page's charts and gateway kpi read them there.
        def in_historian() -> bool:
            stored = gateway.get("/api/series?measurement=kpi&field=running_s") or []
            return {s["tags"]["machine"] for s in stored if s["id"] is not None} >= {"cnc-A1", "cnc-01"}

        wait_until(in_historian, timeout=30, interval=0.5, message="kpi series in the historian")
        machines = gateway.get("/api/machines")
        assert machines is not None and [m["name"] for m in machines] == ["cnc-A1", "cnc-01"]
        assert all(m["category"] in CATEGORIES and m["today"]["seconds"] for m in machines)
        assert gateway.counter("kpi:engine", "points") >= 2
    finally:
        stop_process(simulator)
