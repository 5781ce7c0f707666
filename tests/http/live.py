"""A real gateway for the API and browser tests: real Mosquitto, the MQTT simulator, the historian.

``async with live_gateway(tmp_path, broker_url) as live:`` runs the gateway in this event loop
(its HTTP server on a free port) with the simulator publishing energy meters, temperatures
and machine states, and stops both at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import yaml

from gateway.config import load_config
from gateway.runtime import Gateway
from gateway.simulators.mqtt import SimulatorSettings, run_mqtt_simulator
from tests.helpers import async_wait_until

VIEWER_TOKEN = "live-viewer-token-0123456789"
ADMIN_TOKEN = "live-admin-token-0123456789"


def gateway_config(
    data: Path, broker: str, listen: str, auth: bool, overview: dict[str, object] | None = None
) -> dict[str, object]:
    http: dict[str, object] = {"listen": listen, "overview": {"offline_after": "20s", **(overview or {})}}
    if auth:
        http["auth"] = {"viewer": {"token": VIEWER_TOKEN}, "admin": {"token": ADMIN_TOKEN}}
    return {
        "gateway": {"name": "live-test", "data_dir": str(data), "http": http, "shutdown_timeout": "10s"},
        "sinks": [{"name": "local", "type": "historian", "path": str(data / "history.db"), "flush_interval": "200ms"}],
        "connectors": [
            {
                "name": "sensors",
                "type": "mqtt",
                "broker": broker,
                "client_id": "gw-live-test",
                "qos": 1,
                "topics": [
                    {
                        "filter": "factory/+/energy/+",
                        "tags_from_topic": {"line": 1, "meter": 3},
                        "measurement": "energy",
                        "time": {"path": "ts", "unit": "ms"},
                        "fields": {"power_w": "p", "energy_kwh": "e"},
                    },
                    {
                        "filter": "factory/+/temperature/+",
                        "tags_from_topic": {"line": 1, "sensor": 3},
                        "format": "value",
                        "measurement": "temperature",
                        "field": "celsius",
                    },
                    {
                        "filter": "factory/+/machine/+/state",
                        "tags_from_topic": {"line": 1, "machine": 3},
                        "measurement": "machine",
                        "time": {"path": "ts", "unit": "iso8601"},
                        "fields": {
                            "state": {"path": "state", "type": "string"},
                            "spindle_rpm": "spindle.rpm",
                            "spindle_load": "spindle.load",
                            "parts": {"path": "parts", "type": "int"},
                        },
                    },
                ],
            }
        ],
    }


@dataclass
class Live:
    gateway: Gateway
    url: str
    history: Path
    simulator: asyncio.Task[int]
    stop_simulator: asyncio.Event


@contextlib.asynccontextmanager
async def live_gateway(
    tmp_path: Path,
    broker: str,
    *,
    listen: str = "127.0.0.1:0",
    auth: bool = False,
    rate: float = 40.0,
    count: int = 0,
    lines: int = 2,
    machines: int = 2,
    meters: int = 2,
    simulate: bool = True,
    overview: dict[str, object] | None = None,
) -> AsyncIterator[Live]:
    data = tmp_path / "gateway"
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(gateway_config(data, broker, listen, auth, overview), sort_keys=False))
    async with Gateway(load_config(path)) as gateway:
        assert gateway.http is not None, "the web server did not start"
        # Publish only once the connector has subscribed: a fresh broker keeps nothing for it before.
        await async_wait_until(
            lambda: all(source.status.detail.get("subscribed") for source in gateway.sources),
            timeout=30,
            message="the MQTT connector subscribed",
        )
        stop = asyncio.Event()
        settings = SimulatorSettings(
            broker=broker, rate=rate, count=count, seed=5, lines=lines, machines=machines, meters=meters
        )
        simulator = asyncio.create_task(
            run_mqtt_simulator(settings, stop) if simulate else asyncio.sleep(0, 0), name="simulator"
        )
        try:
            yield Live(gateway, gateway.http.url, data / "history.db", simulator, stop)
        finally:
            stop.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(simulator, 15)
            gateway.request_stop()
