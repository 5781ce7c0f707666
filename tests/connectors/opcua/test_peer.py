"""The OPC UA connector against an independent server: node-opcua (tests/opcua_peer/server.js).

Connect, browse, subscribe, nsu= resolution (the namespace is not at the index a guess
would give), a Bad status stored as bad and never as a value (a failed sensor's reading
stored as good would pass for a measurement), source timestamps kept (when the machine
measured, not when the gateway received), and 600 variables on a server that refuses calls
above 100 operations (real servers enforce such limits: one call with every node fails).
"""

from __future__ import annotations

import asyncio
import functools
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from asyncua import ua
from asyncua.client.client import Client
from asyncua.ua.uaerrors import UaStatusCodeError

from gateway.config import load_config
from gateway.http.app import create_app
from gateway.runtime import Gateway
from tests.fixtures.opcua import gateway_config, opcua_subscribed, stored
from tests.helpers import async_wait_until

NS = "urn:peer:node-opcua:press-line"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _ns(value: datetime) -> int:
    delta = value - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


def _connector(endpoint: str, nodes: list[dict[str, Any]], **options: Any) -> dict[str, Any]:
    return {
        "name": "press-line",
        "type": "opcua",
        "endpoint": endpoint,
        "measurement": "press",
        "tags": {"line": "B"},
        "subscription": {"publishing_interval": "200ms", "sampling_interval": "100ms"},
        "nodes": nodes,
        **options,
    }


async def test_node_opcua_browse_subscribe_nsu_and_bad_status(node_opcua_server: Any, tmp_path: Path) -> None:
    server = node_opcua_server(extra_namespaces=2)  # our namespace is at index 4, not 2
    nodes = [
        {"node": f"nsu={NS};s=PressLine.Temperature", "field": "melt_temperature"},
        {"browse": "Objects/PressLine"},  # every variable directly below: field names from browse names
    ]
    config = gateway_config(tmp_path, [_connector(server.endpoint(), nodes)])
    async with Gateway(load_config(config)) as gateway:

        def landed(field: str, **tags: str) -> list[Any]:
            return stored(tmp_path, "press", fields=[field], tags=tags)

        # The subscription is live before the independent client reads: the temperature changes
        # every 500 ms, so a value read before the gateway subscribed (the gateway still starting
        # on a loaded machine) may never be reported to it.
        await opcua_subscribed(gateway)
        await async_wait_until(lambda: landed("melt_temperature"), timeout=60, message="a first melt temperature")
        async with Client(server.endpoint()) as client:
            assert await client.get_namespace_index(NS) == 4
            dv = await client.get_node(ua.NodeId(ua.String("PressLine.Temperature"), ua.Int16(4))).read_data_value()

        # The value an independent client read, at the server's source timestamp.
        assert dv.SourceTimestamp is not None and dv.Value is not None
        want = (_ns(dv.SourceTimestamp), dv.Value.Value)
        await async_wait_until(
            lambda: want in [(v.time, v.value) for v in landed("melt_temperature")],
            timeout=60,
            message="the value read by an independent client, at its source time",
        )
        for field in ("cycle_counter", "running", "recipe", "zone_temperatures_0", "zone_temperatures_2", "pressure"):
            await async_wait_until(functools.partial(landed, field), timeout=30, message=field)
        assert isinstance(landed("cycle_counter")[0].value, int)
        assert isinstance(landed("running")[0].value, bool)
        assert landed("recipe")[0].value == "PP-CAP-28 rev 4"
        assert all(v.tags == {"line": "B"} for v in landed("melt_temperature"))

        # BrokenSensor is always BadSensorFailure: stored as bad, its value never stored.
        bad = await async_wait_until(lambda: landed("broken_sensor_status"), timeout=30, message="bad status")
        assert bad[0].value == "BadSensorFailure"
        assert bad[0].tags == {"line": "B", "quality": "bad"}
        assert landed("broken_sensor") == []

        # FlakySensor alternates Good / BadSensorFailure (value 0.0 when bad): both visible,
        # the bad ones never as good values.
        await async_wait_until(
            lambda: len(landed("flaky_sensor_status")) >= 2 and len(landed("flaky_sensor")) >= 2,
            timeout=30,
            message="flaky sensor good and bad",
        )
        good = landed("flaky_sensor")
        assert all(v.value > 0 and "quality" not in v.tags for v in good)
        bad_times = {v.time for v in landed("flaky_sensor_status")}
        assert not bad_times & {v.time for v in good}

        status = next(s for s in gateway.statuses() if s.name == "press-line")
        assert status.counters["bad_quality"] >= 3
        assert status.state.value == "running"
        assert status.detail["namespaces"] == 5


async def test_six_hundred_nodes_on_a_server_that_refuses_more_than_100_per_call(
    node_opcua_server: Any, tmp_path: Path
) -> None:
    server = node_opcua_server(
        items=600, max_nodes_per_read=100, max_monitored_items_per_call=100, status_file=tmp_path / "peer.json"
    )
    # The server really refuses larger calls (what breaks peers: one call with every node).
    async with Client(server.endpoint()) as client:
        idx = await client.get_namespace_index(NS)
        many = [client.get_node(ua.NodeId(ua.String(f"PressLine.Tags.Tag{i:04d}"), ua.Int16(idx))) for i in range(150)]
        with pytest.raises(UaStatusCodeError, match="BadTooManyOperations"):
            await client.read_values(many)

    subscribed = _connector(server.endpoint(), [{"browse": "Objects/PressLine/Tags", "field_prefix": "t_"}])
    polled = {
        **_connector(server.endpoint(), [{"browse": "Objects/PressLine/Tags", "field_prefix": "t_"}]),
        "name": "press-line-polled",
        "measurement": "press_polled",
        "mode": "poll",
        "poll_interval": "1s",
    }
    config = gateway_config(tmp_path, [subscribed, polled])
    async with Gateway(load_config(config)) as gateway:

        def fields(measurement: str) -> set[str]:
            return {v.field for v in stored(tmp_path, measurement)}

        await async_wait_until(lambda: len(fields("press")) == 600, timeout=90, message="600 subscribed fields")
        await async_wait_until(lambda: len(fields("press_polled")) == 600, timeout=90, message="600 polled fields")
        statuses = {s.name: s for s in gateway.statuses()}
        assert statuses["press-line"].detail["monitored_items"] == 600
        assert statuses["press-line"].detail["limits"]["max_monitored_items_per_call"] == 100
        assert statuses["press-line-polled"].detail["limits"]["max_nodes_per_read"] == 100
        assert statuses["press-line"].counters.get("failed_items", 0) == 0
        assert "read_errors" not in statuses["press-line-polled"].counters
        import json

        def peer() -> tuple[int, int, int]:  # the peer rewrites its view every 200 ms
            view = json.loads((tmp_path / "peer.json").read_text())
            return view["monitored_items"], view["subscriptions"], view["sessions"]

        await async_wait_until(lambda: peer() == (600, 1, 2), timeout=30, message="the peer's own count")


async def test_a_bad_or_missing_node_never_stops_the_others(node_opcua_server: Any, tmp_path: Path) -> None:
    """One bad or missing node must neither fail the whole read nor stop the subscription."""
    server = node_opcua_server()
    nodes = [
        {"node": f"nsu={NS};s=PressLine.BrokenSensor", "field": "broken"},
        {"node": f"nsu={NS};s=PressLine.DoesNotExist", "field": "missing"},
        {"node": f"nsu={NS};s=PressLine.CycleCounter", "field": "cycles"},
    ]
    subscribed = _connector(server.endpoint(), nodes)
    polled = {**_connector(server.endpoint(), nodes), "name": "polled", "measurement": "polled", "mode": "poll"}
    polled["poll_interval"] = "500ms"
    config = gateway_config(tmp_path, [subscribed, polled])

    def three_cycle_counts(measurement: str) -> bool:
        return len({v.value for v in stored(tmp_path, measurement, fields=["cycles"])}) >= 3

    async with Gateway(load_config(config)) as gateway:
        for measurement in ("press", "polled"):
            await async_wait_until(
                functools.partial(three_cycle_counts, measurement),
                timeout=60,
                message=f"{measurement}: the good node keeps flowing",
            )
            broken = stored(tmp_path, measurement, fields=["broken_status"])
            assert broken and all(v.tags.get("quality") == "bad" for v in broken)
            assert not stored(tmp_path, measurement, fields=["broken"])
            assert not stored(tmp_path, measurement, fields=["missing", "missing_status"])
        statuses = {s.name: s for s in gateway.statuses()}
        for name in ("press-line", "polled"):
            assert statuses[name].detail["failed_items"] == 1, statuses[name].detail
            assert statuses[name].state.value == "running"


async def test_engineering_units_of_analog_items_reach_the_web_page(node_opcua_server: Any, tmp_path: Path) -> None:
    """An AnalogItem's EngineeringUnits (Pressure: bar) is shown with its values, without any config;
    ``units: false`` turns the lookup off."""
    server = node_opcua_server(max_nodes_per_read=3)  # the lookup is batched within the server's limits
    with_units = _connector(server.endpoint(), [{"browse": "Objects/PressLine"}])
    without = {**with_units, "name": "press-line-2", "measurement": "press2", "units": False}
    config = gateway_config(tmp_path, [with_units, without])

    # gateway browse shows the unit after the value, and --yaml beside the type.
    def browse(*extra: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "gateway.cli", "browse", server.endpoint(), "--from", "Objects/PressLine", *extra],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=tmp_path,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    tree = (await asyncio.to_thread(browse)).splitlines()
    pressure = next(line for line in tree if "s=PressLine.Pressure " in line)
    assert re.search(r"Double = [0-9.]+ bar  \[read", pressure), pressure
    temperature = next(line for line in tree if "s=PressLine.Temperature " in line)
    assert re.search(r"Double = [0-9.]+  \[read", temperature), temperature  # no unit: none shown
    generated = await asyncio.to_thread(browse, "--yaml")
    assert re.search(r"s=PressLine.Pressure\", field: pressure}  # Double, bar$", generated, re.MULTILINE), generated

    async with Gateway(load_config(config)) as gateway:
        await opcua_subscribed(gateway)
        assert gateway.units == {("press", "pressure"): "bar"}
        statuses = {s.name: s for s in gateway.statuses()}
        assert statuses["press-line"].detail["units_found"] == 1
        assert "units_found" not in statuses["press-line-2"].detail

        transport = httpx.ASGITransport(app=create_app(gateway.app_context()))
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:

            async def series() -> dict[tuple[str, str], Any]:
                found = {(s["measurement"], s["field"]): s for s in (await client.get("/api/series")).json()}
                return found if {("press", "pressure"), ("press2", "pressure")} <= found.keys() else {}

            found = await async_wait_until(series, timeout=30, interval=0.2, message="pressure of both connectors")
            assert found[("press", "pressure")]["unit"] == "bar"
            assert found[("press", "temperature")]["unit"] == ""  # a plain variable: no EngineeringUnits
            assert found[("press2", "pressure")]["unit"] == ""
            cards = (await client.get("/api/overview")).json()["cards"]
            values = [v for card in cards for v in card["values"] if v["field"] == "pressure"]
            assert {(v["measurement"], v["unit"]) for v in values} == {("press", "bar"), ("press2", "")}
