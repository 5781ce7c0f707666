"""The machines' API on the scenarios: exact numbers in the contract's shape, ranges, rows, errors, SSE.

Every answer is also checked against the API's own response models (what /api/openapi.json
publishes), so the web page and Grafana's engineers can build on the spec.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.component import Status
from gateway.history import ThreadedHistory
from gateway.http.app import AppContext, create_app
from gateway.http.config import HttpSettings
from gateway.http.models import KpiReportOut, MachineOut, StatesOut
from gateway.http.server import HttpServer
from gateway.kpi.config import MachineConfig
from gateway.kpi.engine import KpiEngine
from gateway.sinks.historian.store import HistorianStore
from tests.kpi.scenarios import EXPECTED_IMM07, MACHINES, SPRING, T0, write_scenarios

S = 10**9
H = 3600 * S
MS = T0 // 1_000_000


@pytest.fixture(scope="module")
def history_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_scenarios(tmp_path_factory.mktemp("kpi") / "history.db")


@pytest.fixture
async def engine(history_file: Path) -> AsyncIterator[KpiEngine]:
    reader = ThreadedHistory(lambda: HistorianStore(history_file, readonly=True), "local")
    machines = [MachineConfig.model_validate(m) for m in MACHINES]
    yield KpiEngine(machines, lambda: reader, now=lambda: T0 + 365 * 86400 * S)
    await reader.aclose()


def context(engine: KpiEngine | None) -> AppContext:
    statuses: list[Status] = []
    return AppContext(name="gw", settings=HttpSettings(), statuses=lambda: statuses, kpi=lambda: engine)


@pytest.fixture
async def client(engine: KpiEngine) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(context(engine)))
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as c:
        yield c


async def test_kpi_in_the_contracts_shape_with_exact_numbers(client: httpx.AsyncClient) -> None:
    response = await client.get(
        "/api/machines/imm-07/kpi", params={"from": "2026-03-02T06:00:00Z", "to": "2026-03-02T08:30:00Z"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    KpiReportOut.model_validate(body)
    assert {key: body[key] for key in EXPECTED_IMM07} == EXPECTED_IMM07
    assert body["machine"] == "imm-07"
    assert (body["from"], body["to"]) == ("2026-03-02T06:00:00+00:00", "2026-03-02T08:30:00+00:00")
    # The same range in Unix ms, and relative to a time: the formats the series API takes.
    same = await client.get("/api/machines/imm-07/kpi", params={"from": str(MS), "to": str(MS + 9_000_000)})
    assert {key: same.json()[key] for key in EXPECTED_IMM07} == EXPECTED_IMM07


async def test_rows_per_shift_on_the_night_clocks_go_forward(client: httpx.AsyncClient) -> None:
    params = {"from": str((SPRING - 12 * H) // 10**6), "to": str((SPRING + 12 * H) // 10**6), "by": "shift"}
    body = (await client.get("/api/machines/cnc-09/kpi", params=params)).json()
    KpiReportOut.model_validate(body)
    [row] = body["rows"]
    assert (row["shift"], row["from"], row["to"]) == ("N", "2026-03-28T22:00:00+01:00", "2026-03-29T06:00:00+02:00")
    assert (row["planned_seconds"], row["parts"], row["oee"]) == (25200, 420, 0.8333)
    hours = (await client.get("/api/machines/cnc-09/kpi", params={**params, "by": "hour"})).json()
    buckets = [row["bucket"] for row in hours["rows"]]
    assert len(buckets) == 24 and buckets[0] == "2026-03-28T10:00+01:00"  # 24 real hours…
    assert "2026-03-29T01:00+01:00" in buckets and "2026-03-29T03:00+02:00" in buckets
    assert not any(b.startswith("2026-03-29T02:") for b in buckets)  # …and no 02:00 that day


async def test_states_are_intervals_with_value_and_category(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/machines/imm-07/states", params={"from": str(MS), "to": str(MS + 9_000_000)})
    body = response.json()
    StatesOut.model_validate(body)
    assert [(i["value"], i["category"]) for i in body["intervals"]] == [
        ("PRODUCING", "running"),
        ("IDLE", "idle"),
        ("ALARM", "down"),
        ("SETUP", "setup"),
        ("BREAK", "planned_stop"),
        ("MAINTENANCE_X", "unknown"),
        (None, "no_data"),
        (2, "running"),
    ]
    assert body["intervals"][0]["from_ms"] == MS and body["intervals"][-1]["to_ms"] == MS + 9_000_000


async def test_the_machines_now(client: httpx.AsyncClient) -> None:
    body = (await client.get("/api/machines")).json()
    for machine in body:
        MachineOut.model_validate(machine)
    assert [m["name"] for m in body] == ["imm-07", "imm-08", "cnc-09"]
    assert (body[2]["timezone"], body[2]["ideal_cycle_time_s"]) == ("Europe/Rome", 50.0)
    assert body[0]["category"] == "no_data" and body[0]["today"]["planned_seconds"] == 0
    assert body[0]["today"]["availability"] is None  # nothing planned: null, never 0


@pytest.mark.parametrize(
    ("path", "params", "status", "message"),
    [
        ("/api/machines/imm-99/kpi", {}, 404, "no machine is named 'imm-99' (machines: cnc-09, imm-07, imm-08)"),
        ("/api/machines/imm-07/kpi", {"by": "shift"}, 422, "'imm-07' has no shifts configured: use by=hour"),
        ("/api/machines/imm-07/kpi", {"by": "week"}, 422, "shift"),
        ("/api/machines/imm-07/kpi", {"from": "-1h", "to": "-2h"}, 422, "'to' must be after 'from'"),
        ("/api/machines/imm-07/states", {"from": "yesterday"}, 422, "is not a time"),
        ("/api/machines/imm-07/kpi", {"from": "-500d"}, 422, "at most 400 days"),
    ],
)
async def test_mistakes_are_answered_in_words(
    client: httpx.AsyncClient, path: str, params: dict[str, str], status: int, message: str
) -> None:
    response = await client.get(path, params=params)
    assert response.status_code == status
    assert message in json.dumps(response.json()["detail"]), response.text


async def test_without_machines() -> None:
    transport = httpx.ASGITransport(app=create_app(context(None)))
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        assert (await client.get("/api/machines")).json() == []
        response = await client.get("/api/machines/imm-07/kpi")
        assert response.status_code == 404 and "no machines are configured" in response.json()["detail"]
        spec = (await client.get("/api/openapi.json")).json()
        assert {"/api/machines", "/api/machines/{name}/kpi", "/api/machines/{name}/states"} <= set(spec["paths"])


async def test_the_kpi_topic_of_the_live_stream(engine: KpiEngine) -> None:
    ctx = context(engine)
    ctx.settings = HttpSettings(listen="127.0.0.1:0")
    ctx.kpi_interval = 0.2
    async with HttpServer(ctx) as server, httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        async with client.stream("GET", "/api/events", params={"topics": "kpi"}) as response:
            seen: list[Any] = []

            async def two_events() -> None:
                event = ""
                async for line in response.aiter_lines():
                    if line.startswith("event: "):
                        event = line[len("event: ") :]
                    elif line.startswith("data: ") and event == "kpi":
                        seen.append(json.loads(line[len("data: ") :]))
                        if len(seen) == 2:
                            return

            await asyncio.wait_for(two_events(), 30)  # (a deadline, so a silent stream fails instead of hanging)
            for machines in seen:
                assert [m["name"] for m in machines] == ["imm-07", "imm-08", "cnc-09"]
                for machine in machines:
                    MachineOut.model_validate(machine)
        await server.close()
