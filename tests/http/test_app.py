"""The JSON API, /metrics and the static page against fake statuses and a real historian file."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.component import State, Status
from gateway.history import ThreadedHistory
from gateway.http.app import AppContext, create_app, parse_time
from gateway.http.config import HttpSettings
from gateway.point import Point
from gateway.sinks.historian.store import HistorianStore

S = 1_000_000_000
NOW = time.time_ns() // 1_000_000 * 1_000_000  # whole ms: the API speaks ms


@pytest.fixture(scope="module")
def history_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two hours of 1 Hz data for two machines, and a text state series."""
    path = tmp_path_factory.mktemp("hist") / "history.db"
    store = HistorianStore(path)
    start = NOW - 7200 * S
    points = [
        Point("machine", {"rpm": float(i % 600), "state": "running"}, {"line": "A", "machine": m}, start + i * S)
        for i in range(7200)
        for m in ("cnc-1", "cnc-2")
    ]
    for i in range(0, len(points), 5000):
        store.write(points[i : i + 5000])
    store.close()
    return path


@pytest.fixture
def statuses() -> list[Status]:
    connector = Status("energy", "connector", "mqtt")
    sink = Status("local", "sink", "historian")
    connector.count("received", 1234)
    connector.count("malformed", 3)
    sink.count("points_written", 1200)
    sink.detail["pending_points"] = 34
    sink.detail["oldest_age_seconds"] = 1.5
    for seconds in (0.002, 0.004, 0.3):
        sink.observe("write_seconds", seconds)
    return [connector, sink]


@pytest.fixture
async def app_ctx(history_file: Path, statuses: list[Status]) -> AsyncIterator[AppContext]:
    history = ThreadedHistory(lambda: HistorianStore(history_file, readonly=True), name="local")
    ctx = AppContext(name="lab-cell-1", settings=HttpSettings(), statuses=lambda: statuses, history=lambda: history)
    yield ctx
    await history.aclose()


@pytest.fixture
async def client(app_ctx: AppContext) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(app_ctx)), base_url="http://gw") as c:
        yield c


async def test_readyz_follows_component_states(client: httpx.AsyncClient, statuses: list[Status]) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 503
    assert {c["name"] for c in response.json()["not_ready"]} == {"energy", "local"}
    for status in statuses:
        status.set_state(State.RUNNING)
    assert (await client.get("/readyz")).json() == {"ready": True, "not_ready": []}
    statuses[0].set_state(State.RECONNECTING)
    statuses[0].record_error("broker localhost:1883 refused the connection")
    response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["not_ready"] == [
        {
            "kind": "connector",
            "name": "energy",
            "state": "reconnecting",
            "last_error": "broker localhost:1883 refused the connection",
        }
    ]


async def test_metrics_parse_and_match_the_counters(client: httpx.AsyncClient, statuses: list[Status]) -> None:
    statuses[1].set_state(State.RUNNING)
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }
    assert samples[("gateway_connector_received_total", (("connector", "energy"), ("type", "mqtt")))] == 1234
    assert samples[("gateway_connector_malformed_total", (("connector", "energy"), ("type", "mqtt")))] == 3
    assert samples[("gateway_sink_points_written_total", (("sink", "local"), ("type", "historian")))] == 1200
    assert samples[("gateway_sink_pending_points", (("sink", "local"), ("type", "historian")))] == 34
    assert samples[("gateway_sink_oldest_age_seconds", (("sink", "local"), ("type", "historian")))] == 1.5
    latency = (("sink", "local"), ("type", "historian"))
    assert samples[("gateway_sink_write_seconds_count", latency)] == 3
    assert samples[("gateway_sink_write_seconds_bucket", (("le", "0.0025"), *latency))] == 1
    assert samples[("gateway_sink_write_seconds_bucket", (("le", "0.005"), *latency))] == 2
    assert samples[("gateway_sink_write_seconds_bucket", (("le", "+Inf"), *latency))] == 3
    assert samples[("gateway_sink_write_seconds_sum", latency)] == pytest.approx(0.306)
    up = "gateway_component_up"
    assert samples[(up, (("kind", "sink"), ("name", "local"), ("type", "historian")))] == 1
    assert samples[(up, (("kind", "connector"), ("name", "energy"), ("type", "mqtt")))] == 0
    state = (("kind", "connector"), ("name", "energy"), ("state", "starting"), ("type", "mqtt"))
    assert samples[("gateway_component_state", state)] == 1
    assert samples[("gateway_info", (("gateway", "lab-cell-1"),))] == 1


async def test_status_has_states_errors_rates_and_buffer(
    client: httpx.AsyncClient, app_ctx: AppContext, statuses: list[Status]
) -> None:
    app_ctx.rates.sample(statuses, now=100.0)
    statuses[0].count("received", 500)
    statuses[0].record_error("payload on factory/A/energy/m1 is not JSON")
    app_ctx.rates.sample(statuses, now=110.0)
    body = (await client.get("/api/status")).json()
    assert body["gateway"]["name"] == "lab-cell-1" and body["gateway"]["uptime_seconds"] >= 0
    energy, local = body["components"]
    assert energy["name"] == "energy" and energy["state"] == "starting"
    assert energy["rates"]["received"] == 50.0  # 500 more in 10 s
    assert energy["last_error"] == "payload on factory/A/energy/m1 is not JSON"
    assert energy["last_error_at"] == pytest.approx(time.time(), abs=60)
    assert local["buffer_depth"] == 34 and local["oldest_age_seconds"] == 1.5
    assert "detail" not in local  # details are for the admin endpoint


async def test_series_merge_historian_and_live_values(client: httpx.AsyncClient, app_ctx: AppContext) -> None:
    app_ctx.latest.update([Point("machine", {"rpm": 42.0}, {"line": "A", "machine": "cnc-1"}, NOW + S)], "plc")
    app_ctx.latest.update([Point("energy", {"p": 1.5}, {"line": "A", "meter": "m1"}, NOW)], "energy")
    rows = (await client.get("/api/series")).json()
    by_key = {(r["measurement"], r["tags"].get("machine"), r["field"]): r for r in rows}
    rpm = by_key[("machine", "cnc-1", "rpm")]
    assert rpm["id"] is not None and rpm["kind"] == "float"
    assert rpm["last_value"] == 42.0 and rpm["last_time"] == (NOW + S) // 1_000_000  # live is newer
    assert by_key[("machine", "cnc-2", "state")]["last_value"] == "running"
    assert by_key[("energy", None, "p")]["id"] is None  # only live: not in the historian
    only_cnc2 = (await client.get("/api/series", params=[("tag", "machine=cnc-2")])).json()
    assert {r["field"] for r in only_cnc2} == {"rpm", "state"}
    assert {r["measurement"] for r in (await client.get("/api/series?measurement=energy")).json()} == {"energy"}
    assert (await client.get("/api/series", params={"tag": "no-equals"})).status_code == 422


async def test_range_is_downsampled_from_the_historian(client: httpx.AsyncClient) -> None:
    rows = (await client.get("/api/series", params=[("tag", "machine=cnc-1")])).json()
    rpm = next(r for r in rows if r["field"] == "rpm")
    now_ms = NOW // 1_000_000
    window = {"from": now_ms - 3_600_000, "to": now_ms, "points": 100}
    body = (await client.get(f"/api/series/{rpm['id']}/range", params=window)).json()
    assert body["series"]["field"] == "rpm" and body["points"] == 100
    assert 50 <= len(body["buckets"]) <= 100
    assert body["to"] - body["from"] == 3_600_000
    assert sum(b["count"] for b in body["buckets"]) == 3600  # the last hour: points at NOW-3599 s … NOW-0 s
    assert all(b["min"] <= b["mean"] <= b["max"] for b in body["buckets"])
    assert all(body["from"] <= b["time"] <= body["to"] for b in body["buckets"])
    # Absolute times in ms and ISO 8601 give the same window.
    start_ms = (NOW - 7200 * S) // 1_000_000
    by_ms = (await client.get(f"/api/series/{rpm['id']}/range?from={start_ms}&to={start_ms + 600_000}")).json()
    assert sum(b["count"] for b in by_ms["buckets"]) == 601
    iso_from = datetime.fromtimestamp(start_ms / 1000, UTC).isoformat()
    iso_to = datetime.fromtimestamp((start_ms + 600_000) / 1000, UTC).isoformat()
    by_iso = (await client.get(f"/api/series/{rpm['id']}/range", params={"from": iso_from, "to": iso_to})).json()
    assert by_iso["buckets"] == by_ms["buckets"]


async def test_range_errors_say_what_is_wrong(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/series/999999/range")).status_code == 404
    bad = await client.get("/api/series/1/range", params={"from": "yesterday"})
    assert bad.status_code == 422 and "not a time" in bad.text
    assert (await client.get("/api/series/1/range", params={"from": "now", "to": "-1h"})).status_code == 422
    assert (await client.get("/api/series/1/range", params={"points": 0})).status_code == 422


@pytest.mark.parametrize(
    "params",
    [
        {"from": "-99999999999999d"},  # was a 500 (64-bit overflow)
        {"to": "999999999999999"},  # ~1e21 ns: was accepted
        {"from": "1700-01-01T00:00:00Z"},
        {"from": "-80000d"},  # 219 years ago
    ],
)
async def test_range_refuses_times_out_of_range(client: httpx.AsyncClient, params: dict[str, str]) -> None:
    rows = (await client.get("/api/series", params=[("tag", "machine=cnc-1")])).json()
    rpm = next(r for r in rows if r["field"] == "rpm")
    response = await client.get(f"/api/series/{rpm['id']}/range", params=params)
    assert response.status_code == 422
    assert "out of range" in response.json()["detail"] and "1823" in response.json()["detail"]
    # The edges of the range are fine.
    edge = await client.get(
        f"/api/series/{rpm['id']}/range", params={"from": "1824-01-01T00:00:00Z", "to": "2116-01-01"}
    )
    assert edge.status_code == 200 and sum(b["count"] for b in edge.json()["buckets"]) == 7200


async def test_range_without_historian_is_404() -> None:
    ctx = AppContext(name="gw", settings=HttpSettings(), statuses=list)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(ctx)), base_url="http://gw") as c:
        response = await c.get("/api/series/1/range")
        assert response.status_code == 404 and "historian" in response.json()["detail"]
        assert (await c.get("/api/series")).json() == []


async def test_page_openapi_and_vendored_chart_library(client: httpx.AsyncClient) -> None:
    page = await client.get("/")
    assert page.status_code == 200 and 'type="module"' in page.text
    assert "http://" not in page.text and "https://" not in page.text  # no CDN
    assert (await client.get("/static/vendor/uplot/uPlot.iife.min.js")).status_code == 200
    assert "MIT" in (await client.get("/static/vendor/uplot/LICENSE")).text
    spec = (await client.get("/api/openapi.json")).json()
    assert {
        "/healthz",
        "/readyz",
        "/metrics",
        "/api/status",
        "/api/overview",
        "/api/series",
        "/api/series/{series_id}/range",
        "/api/events",
        "/api/components/{name}",
    } <= set(spec["paths"])


def test_parse_time() -> None:
    now = 1_700_000_000 * S
    assert parse_time(None, now, 7) == 7
    assert parse_time("now", now, 0) == now
    assert parse_time("-15m", now, 0) == now - 900 * S
    assert parse_time("now-7d", now, 0) == now - 7 * 86400 * S
    assert parse_time("1700000000000", now, 0) == now
    assert parse_time("1700000000000.5", now, 0) == now + 500_000
    assert parse_time("2023-11-14T22:13:20Z", now, 0) == now
    assert parse_time("2023-11-14T23:13:20+01:00", now, 0) == now
    with pytest.raises(ValueError, match="not a time"):
        parse_time("tomorrow", now, 0)
