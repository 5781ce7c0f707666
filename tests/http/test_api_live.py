"""Every endpoint against a running gateway fed by real Mosquitto and the MQTT simulator."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from gateway.sinks.historian.store import HistorianStore
from tests.helpers import async_wait_until
from tests.http.live import ADMIN_TOKEN, VIEWER_TOKEN, live_gateway

MACHINES = {"line=A,machine=cnc-A1", "line=A,machine=cnc-A2", "line=B,machine=cnc-B1", "line=B,machine=cnc-B2"}


def broker_url(mosquitto: Any) -> str:
    return f"mqtt://{mosquitto.host}:{mosquitto.port}"


async def sse(client: httpx.AsyncClient, path: str) -> AsyncIterator[tuple[str, Any]]:
    async with client.stream("GET", path) as response:
        assert response.status_code == 200
        event = ""
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                yield event, json.loads(line[6:])


def metric_samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_every_endpoint_against_a_live_gateway(tmp_path: Path, mosquitto: Any) -> None:
    async with (
        live_gateway(tmp_path, broker_url(mosquitto), rate=40) as live,
        httpx.AsyncClient(base_url=live.url, timeout=10) as client,
    ):
        assert (await client.get("/healthz")).json() == {"status": "ok"}

        async def ready() -> bool:
            return (await client.get("/readyz")).status_code == 200

        await async_wait_until(ready, timeout=30, interval=0.2, message="/readyz 200")

        # Overview: a card per simulated machine, with its state badge and live values.
        async def all_machines() -> dict[str, Any]:
            cards = {c["id"]: c for c in (await client.get("/api/overview")).json()["cards"]}
            # The machines and each line's card (energy meters, temperatures) with both its meters.
            lines_complete = all(
                sum(v["field"] == "power_w" for v in cards[line]["values"]) == 2
                for line in ("line=A", "line=B")
                if line in cards
            )
            return cards if MACHINES | {"line=A", "line=B"} <= set(cards) and lines_complete else {}

        cards = await async_wait_until(all_machines, timeout=30, interval=0.3, message="a card per machine")
        for card_id in MACHINES:
            card = cards[card_id]
            assert card["state"] in {"running", "idle", "alarm"}
            assert card["state_value"] in {"running", "idle", "setup", "alarm"}
            assert {v["field"] for v in card["values"]} == {"spindle_rpm", "spindle_load", "parts"}
            assert card["age_seconds"] < 20
        assert {"line=A", "line=B"} <= set(cards)  # energy meters and temperatures, per line

        # Status: the connector and sink are running, with rates while the simulator publishes.
        async def rates() -> dict[str, Any]:
            body = (await client.get("/api/status")).json()
            components = {c["name"]: c for c in body["components"]}
            ok = components["sensors"]["rates"].get("received", 0) > 0
            return components if ok and components["local"]["rates"].get("points_written", 0) > 0 else {}

        components = await async_wait_until(rates, timeout=20, interval=0.5, message="rates > 0")
        assert components["sensors"]["state"] == "running" and components["sensors"]["type"] == "mqtt"
        assert components["local"]["state"] == "running" and components["local"]["buffer_depth"] is not None
        assert components["sensors"]["last_error"] is None

        # Series list from the historian, and a downsampled range of one of them.
        async def stored_series() -> list[dict[str, Any]]:
            rows = (await client.get("/api/series", params=[("tag", "machine=cnc-A1")])).json()
            return [r for r in rows if r["id"] is not None and r["field"] == "spindle_rpm"]

        [rpm] = await async_wait_until(stored_series, timeout=20, interval=0.3, message="stored spindle_rpm of cnc-A1")
        assert rpm["tags"] == {"line": "A", "machine": "cnc-A1"} and rpm["kind"] == "float"
        body = (await client.get(f"/api/series/{rpm['id']}/range", params={"from": "-15m", "points": 50})).json()
        assert 1 <= len(body["buckets"]) <= 50
        with HistorianStore(live.history, readonly=True) as store:
            stored = len(store.read("machine", fields=["spindle_rpm"], tags={"machine": "cnc-A1"}, since_ns=0))
        # The range covers what was stored until the request (more may have landed since).
        assert 1 <= sum(b["count"] for b in body["buckets"]) <= stored

        # Live updates: within a few seconds a new overview arrives with a newer value.
        before = cards["line=A,machine=cnc-A1"]["last_update"]
        started = time.monotonic()
        async for event, data in sse(client, "/api/events?topics=overview"):
            if event == "overview":
                card = next(c for c in data["cards"] if c["id"] == "line=A,machine=cnc-A1")
                if card["last_update"] > before:
                    break
            assert time.monotonic() - started < 10, "no newer value over SSE within 10 s"

        # Details for the admin (loopback without credentials: the local user is admin).
        [detail] = (await client.get("/api/components/sensors")).json()
        assert detail["config"]["broker"] == broker_url(mosquitto)
        spec = (await client.get("/api/openapi.json")).json()
        assert "/api/series/{series_id}/range" in spec["paths"]
        page = await client.get("/")
        assert page.status_code == 200 and "/static/js/main.js" in page.text


def publish(broker: Any, count: int) -> None:
    """``count`` QoS 1 energy readings, each with its own timestamp, on 10 meters' topics."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-publisher")
    client.connect(broker.host, broker.port)
    client.loop_start()
    base = 1_750_000_000_000
    infos = [
        client.publish(f"factory/A/energy/m{i % 10}", json.dumps({"ts": base + i, "p": 100.0 + i, "e": i}), qos=1)
        for i in range(count)
    ]
    for info in infos:
        info.wait_for_publish(10)
    client.disconnect()
    client.loop_stop()


async def test_metrics_counters_match_what_was_stored(tmp_path: Path, mosquitto: Any) -> None:
    count = 400
    async with (
        live_gateway(tmp_path, broker_url(mosquitto), simulate=False) as live,
        httpx.AsyncClient(base_url=live.url, timeout=10) as client,
    ):
        await asyncio.to_thread(publish, mosquitto, count)

        progress: dict[str, float] = {}

        async def all_stored() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
            samples = metric_samples((await client.get("/metrics")).text)
            stored = samples.get(
                ("gateway_connector_messages_stored_total", (("connector", "sensors"), ("type", "mqtt")))
            )
            progress.update({k[0]: v for k, v in samples.items() if k[0].startswith("gateway_connector_")})
            return samples if stored == count else {}

        try:
            samples = await async_wait_until(all_stored, timeout=30, interval=0.3)
        except AssertionError:
            raise AssertionError(f"{count} messages not all stored after 30 s; counters: {progress}") from None
        connector = (("connector", "sensors"), ("type", "mqtt"))
        sink = (("sink", "local"), ("type", "historian"))
        assert samples[("gateway_connector_received_total", connector)] == count
        assert samples[("gateway_connector_malformed_total", connector)] == 0
        # One point per message; what the sink says it wrote is what the historian holds.
        with HistorianStore(live.history, readonly=True) as store:
            values = store.read(since_ns=0)
        points = {(v.measurement, tuple(sorted(v.tags.items())), v.time) for v in values}
        assert len(points) == count and len(values) == 2 * count  # power_w and energy_kwh
        assert samples[("gateway_sink_points_written_total", sink)] == count
        assert samples[("gateway_connector_points_emitted_total", (("connector", "sensors"),))] == count
        assert (
            samples[("gateway_sink_write_seconds_count", sink)] == samples[("gateway_sink_batches_written_total", sink)]
        )
        assert samples[("gateway_sink_write_seconds_count", sink)] >= 1
        assert samples[("gateway_sink_pending_points", sink)] == 0
        assert samples[("gateway_component_up", (("kind", "connector"), ("name", "sensors"), ("type", "mqtt")))] == 1


async def test_auth_refuses_missing_or_wrong_credentials_beyond_loopback(tmp_path: Path, mosquitto: Any) -> None:
    async with (
        live_gateway(tmp_path, broker_url(mosquitto), listen="0.0.0.0:0", auth=True, rate=20) as live,
        httpx.AsyncClient(base_url=live.url, timeout=10) as client,
    ):
        for path in ("/", "/api/status", "/api/overview", "/api/series", "/api/events", "/metrics"):
            missing = await client.get(path)
            assert missing.status_code == 401, path
            assert missing.headers["www-authenticate"].startswith("Basic")
            wrong = await client.get(path, headers={"Authorization": "Bearer wrong-token-0123456789"})
            assert wrong.status_code == 401, path
        assert (await client.get("/api/status", auth=("officina", "not-the-password"))).status_code == 401
        viewer = {"Authorization": f"Bearer {VIEWER_TOKEN}"}
        assert (await client.get("/api/status", headers=viewer)).status_code == 200
        assert (await client.get("/metrics", headers=viewer)).status_code == 200
        assert (await client.get("/api/components/sensors", headers=viewer)).status_code == 403
        # The browser's login prompt: any user name, the token as password.
        admin = await client.get("/api/components/sensors", auth=("capo", ADMIN_TOKEN))
        assert admin.status_code == 200 and admin.json()[0]["name"] == "sensors"
        assert (await client.get("/healthz")).status_code == 200  # probes need no credentials
