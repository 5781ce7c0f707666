"""The write API and the operator role: who may write, the answer's shape and status for every
result, the audit trail through the API, and what keeps another site's page from writing.

The machine here is an in-memory one (what the HTTP layer does does not depend on the protocol);
tests/writes/ writes to real servers of every protocol.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.audit import AuditTrail
from gateway.component import OnStored
from gateway.http.app import AppContext, create_app
from gateway.http.auth import Role, authenticate, identify
from gateway.http.config import AuthSettings, HttpSettings
from gateway.logs import component_logger
from gateway.point import Point
from gateway.writes import Value, WritableField, WriteLimits, WriteOutcome, WriteResult
from gateway.writing import WriteDesk

VIEWER_TOKEN = "viewer-token-0123456789"
OPERATOR_TOKEN = "operator-token-0123456789"
OPERATOR_PASSWORD = "turno di notte 42"
ADMIN_TOKEN = "admin-token-0123456789ab"
SECRETS = (VIEWER_TOKEN, OPERATOR_TOKEN, OPERATOR_PASSWORD, ADMIN_TOKEN)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


VIEWER = {"Authorization": f"Bearer {VIEWER_TOKEN}"}
OPERATOR = {"Authorization": basic("mario", OPERATOR_PASSWORD)}
OPERATOR_BY_TOKEN = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@dataclass
class Machine:
    """A machine in memory: ``setpoint`` (number), ``program`` (text), a ``locked`` field it refuses,
    a ``slow`` one that never answers, and ``broken`` whose writer fails."""

    values: dict[str, Value] = field(default_factory=lambda: {"setpoint": 7.0, "program": "O1001", "locked": 1.0})
    writes: list[tuple[str, Value]] = field(default_factory=list)

    def writable_fields(self) -> Sequence[WritableField]:
        def spec(name: str, kind: str, timeout: float = 5.0, **limits: Any) -> WritableField:
            return WritableField(
                "chiller",
                name,
                "chiller",
                {"machine": "chiller-1"},
                kind,  # type: ignore[arg-type]
                WriteLimits.model_validate(limits),
                f"holding {name}",
                unit="°C" if name == "setpoint" else None,
                timeout=timeout,
            )

        return [
            spec("setpoint", "number", min=4, max=15),
            spec("program", "string", allowed=["O1001", "O1002"]),
            spec("locked", "number"),
            spec("slow", "number", timeout=0.3),
            spec("broken", "number"),
        ]

    async def write(self, spec: WritableField, value: Value) -> WriteOutcome:
        if spec.field == "slow":
            await asyncio.sleep(30)
        if spec.field == "broken":
            raise RuntimeError("a bug in a writer")
        old = self.values.get(spec.field)
        if spec.field == "locked":
            return WriteOutcome(WriteResult.REFUSED_BY_MACHINE, "refused: read-only", old=old, code="BadNotWritable")
        self.values[spec.field] = value
        self.writes.append((spec.field, value))
        return WriteOutcome(WriteResult.WRITTEN, "written and read back", old=old, read_back=self.values[spec.field])


@dataclass
class Collected:
    points: list[Point] = field(default_factory=list)

    async def __call__(self, points: Sequence[Point], on_stored: OnStored | None = None) -> None:
        self.points.extend(points)


@pytest.fixture
def machine() -> Machine:
    return Machine()


@pytest.fixture
async def desk(tmp_path: Path, machine: Machine) -> AsyncIterator[tuple[WriteDesk, Collected]]:
    trail = AuditTrail(tmp_path / "audit")
    trail.open()
    desk = WriteDesk(
        trail,
        find=lambda name: machine if name == "chiller" else None,
        writers=lambda: [("chiller", machine)],
        connectors=lambda: ["chiller", "energy"],
        log=component_logger("writes", "test"),
        gateway_name="test-gw",
    )
    collected = Collected()
    task = asyncio.create_task(desk.run(collected))
    yield desk, collected
    await desk.close(0.0)
    await asyncio.wait_for(task, 5)
    trail.close()


def _client(settings: HttpSettings, desk: WriteDesk, base_url: str = "http://gateway") -> httpx.AsyncClient:
    ctx = AppContext(name="gw", settings=settings, statuses=list, writes=lambda: desk)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(ctx)), base_url=base_url)


@pytest.fixture
async def client(desk: tuple[WriteDesk, Collected]) -> AsyncIterator[httpx.AsyncClient]:
    settings = HttpSettings.model_validate(
        {
            "listen": "0.0.0.0:8080",
            "auth": {
                "viewer": {"token": VIEWER_TOKEN},
                "operator": {"token": OPERATOR_TOKEN, "username": "mario", "password": OPERATOR_PASSWORD},
                "admin": {"token": ADMIN_TOKEN},
            },
        }
    )
    async with _client(settings, desk[0]) as client:
        yield client


async def write(
    client: httpx.AsyncClient, headers: dict[str, str], value: Any, name: str = "setpoint"
) -> httpx.Response:
    return await client.post(
        "/api/write", json={"connector": "chiller", "field": name, "value": value}, headers=headers
    )


def test_the_operator_role_is_between_viewer_and_admin() -> None:
    auth = AuthSettings.model_validate(
        {"viewer": {"token": VIEWER_TOKEN}, "operator": {"username": "mario", "password": OPERATOR_PASSWORD}}
    )
    assert auth.configured
    assert authenticate(auth, basic("mario", OPERATOR_PASSWORD)) is Role.OPERATOR
    assert authenticate(auth, f"Bearer {VIEWER_TOKEN}") is Role.VIEWER
    assert authenticate(auth, basic("mario", "wrong password 123")) is Role.NONE
    assert Role.VIEWER < Role.OPERATOR < Role.ADMIN
    assert identify(auth, basic("mario", OPERATOR_PASSWORD), Role.OPERATOR) == "mario"
    # A token typed as the password of any user name: the name says nothing, it is not recorded.
    op = AuthSettings.model_validate({"operator": {"token": OPERATOR_TOKEN}})
    assert identify(op, basic("whoever typed this", OPERATOR_TOKEN), Role.OPERATOR) == "operator token"
    assert identify(AuthSettings(), None, Role.ADMIN) == "local"


async def test_an_operator_writes_a_viewer_is_refused_and_both_are_audited(
    client: httpx.AsyncClient, machine: Machine, desk: tuple[WriteDesk, Collected], tmp_path: Path
) -> None:
    assert (await client.get("/api/whoami", headers=OPERATOR)).json()["role"] == "operator"
    refused = await write(client, VIEWER, 9.5)
    assert refused.status_code == 403
    body = refused.json()
    assert body["result"] == "forbidden" and "needs the operator or admin role" in body["message"]
    assert (body["user"], body["role"], body["requested"]) == ("viewer token", "viewer", 9.5)
    assert machine.writes == []  # nothing reached the machine

    written = await write(client, OPERATOR, 9.5)
    assert written.status_code == 200
    body = written.json()
    assert {k: body[k] for k in ("result", "connector", "field", "requested", "old", "read_back", "user", "role")} == {
        "result": "written",
        "connector": "chiller",
        "field": "setpoint",
        "requested": 9.5,
        "old": 7.0,
        "read_back": 9.5,
        "user": "mario",
        "role": "operator",
    }
    assert body["at"].endswith("Z") and isinstance(body["at_ms"], int) and body["message"]
    assert (await write(client, OPERATOR_BY_TOKEN, 10)).json()["user"] == "operator token"
    assert (await write(client, ADMIN, 11)).json()["role"] == "admin"
    assert machine.writes == [("setpoint", 9.5), ("setpoint", 10), ("setpoint", 11)]
    assert (await write(client, {}, 12)).status_code == 401  # no credential: not even an attempt

    audit = (await client.get("/api/audit", headers=VIEWER)).json()["entries"]
    assert [(e["result"], e["user"], e["requested"]) for e in audit] == [
        ("written", "admin token", 11),
        ("written", "operator token", 10),
        ("written", "mario", 9.5),
        ("forbidden", "viewer token", 9.5),
    ]
    assert all(e["client"] == "127.0.0.1" for e in audit)
    on_disk = [json.loads(line) for line in (tmp_path / "audit" / "audit.jsonl").read_text().splitlines()]
    assert [e["result"] for e in on_disk] == [
        "forbidden",
        "pending",
        "written",
        "pending",
        "written",
        "pending",
        "written",
    ]
    await asyncio.sleep(0)  # the audit points go to the sinks
    collected = desk[1]
    assert [p.tags["result"] for p in collected.points] == ["forbidden", "written", "written", "written"]


async def test_every_result_has_its_status_and_says_why(client: httpx.AsyncClient, machine: Machine) -> None:
    cases = [
        ("setpoint", 99, 422, "refused_limits", "above the highest value allowed for setpoint (15 °C)"),
        ("setpoint", "9", 422, "refused_type", "'9' is not a number"),
        ("program", "O9999", 422, "refused_limits", "not one of the values allowed"),
        ("nope", 1, 404, "not_writable", "nope of chiller is not declared writable"),
        ("locked", 2, 502, "refused_by_machine", "refused: read-only"),
        ("slow", 1, 504, "timeout", "whether it took the value is unknown"),
        ("broken", 1, 503, "error", "RuntimeError: a bug in a writer"),
    ]
    for name, value, status, result, words in cases:
        response = await write(client, OPERATOR, value, name)
        body = response.json()
        assert (response.status_code, body["result"]) == (status, result), body
        assert words in body["message"], body
    other = await client.post("/api/write", json={"connector": "energy", "field": "x", "value": 1}, headers=OPERATOR)
    assert other.status_code == 404 and "nothing of energy is declared writable" in other.json()["message"]
    unknown = await client.post("/api/write", json={"connector": "ghost", "field": "x", "value": 1}, headers=OPERATOR)
    assert "there is no connector named 'ghost'" in unknown.json()["message"]
    assert machine.writes == []
    entries = (await client.get("/api/audit", headers=VIEWER, params={"limit": 100})).json()["entries"]
    assert len(entries) == len(cases) + 2
    assert entries[0]["connector"] == "ghost"


async def test_writable_fields_for_the_page(client: httpx.AsyncClient) -> None:
    fields = (await client.get("/api/writable", headers=VIEWER)).json()
    setpoint = next(f for f in fields if f["field"] == "setpoint")
    assert {
        k: setpoint[k] for k in ("connector", "measurement", "tags", "type", "allowed", "min", "max", "pattern", "unit")
    } == {
        "connector": "chiller",
        "measurement": "chiller",
        "tags": {"machine": "chiller-1"},
        "type": "number",
        "allowed": None,
        "min": 4.0,
        "max": 15.0,
        "pattern": None,
        "unit": "°C",
    }
    assert next(f for f in fields if f["field"] == "program")["allowed"] == ["O1001", "O1002"]


async def test_audit_range_and_filters(client: httpx.AsyncClient) -> None:
    for value in (5, 6, 7):
        await write(client, OPERATOR, value)
    await write(client, OPERATOR, "O1002", "program")
    everything = (await client.get("/api/audit", headers=VIEWER)).json()["entries"]
    first_ms = everything[-1]["at_ms"]
    only = (await client.get("/api/audit", headers=VIEWER, params={"field": "program"})).json()["entries"]
    assert [e["requested"] for e in only] == ["O1002"]
    limited = (await client.get("/api/audit", headers=VIEWER, params={"limit": 2})).json()["entries"]
    assert [e["requested"] for e in limited] == ["O1002", 7]
    later = await client.get(
        "/api/audit", headers=VIEWER, params={"from": first_ms + 10**6, "to": first_ms + 2 * 10**6}
    )
    assert later.json()["entries"] == []
    backwards = await client.get("/api/audit", headers=VIEWER, params={"from": first_ms + 10**6})
    assert backwards.status_code == 422  # 'from' after 'to' (now)
    window = (await client.get("/api/audit", headers=VIEWER, params={"from": first_ms, "to": "now"})).json()
    assert len(window["entries"]) == 4
    assert (await client.get("/api/audit", headers=VIEWER, params={"from": "yesterday"})).status_code == 422


async def test_another_sites_page_cannot_make_a_browser_write(client: httpx.AsyncClient, machine: Machine) -> None:
    form = await client.post(
        "/api/write",
        content=json.dumps({"connector": "chiller", "field": "setpoint", "value": 9}),
        headers={**OPERATOR, "Content-Type": "text/plain"},  # what a form or a no-preflight fetch can send
    )
    assert form.status_code == 415
    cross = await client.post(
        "/api/write",
        json={"connector": "chiller", "field": "setpoint", "value": 9},
        headers={**OPERATOR, "Origin": "https://evil.example"},
    )
    assert cross.status_code == 403 and "evil.example" in cross.json()["message"]
    fetched = await client.post(
        "/api/write",
        json={"connector": "chiller", "field": "setpoint", "value": 9},
        headers={**OPERATOR, "Sec-Fetch-Site": "cross-site"},
    )
    assert fetched.status_code == 403
    same = await client.post(
        "/api/write",
        json={"connector": "chiller", "field": "setpoint", "value": 9},
        headers={**OPERATOR, "Origin": "http://gateway", "Sec-Fetch-Site": "same-origin"},
    )
    assert same.status_code == 200
    assert machine.writes == [("setpoint", 9)]


async def test_loopback_without_credentials_is_admin_but_only_under_a_loopback_name(
    desk: tuple[WriteDesk, Collected], machine: Machine
) -> None:
    settings = HttpSettings(listen="127.0.0.1:8080")
    async with _client(settings, desk[0], "http://127.0.0.1:8080") as local:
        assert (await local.get("/api/whoami")).json()["role"] == "admin"
        response = await write(local, {}, 8)
        assert response.status_code == 200 and response.json()["user"] == "local"
    # A page of a domain that resolves to 127.0.0.1 (DNS rebinding) reaches the same socket.
    async with _client(settings, desk[0], "http://rebound.example:8080") as rebound:
        response = await write(rebound, {}, 9)
        assert response.status_code == 403 and "loopback" in response.json()["message"]
    assert machine.writes == [("setpoint", 8)]


async def test_beyond_loopback_a_caller_on_the_same_host_needs_credentials(client: httpx.AsyncClient) -> None:
    # httpx's ASGI transport calls from 127.0.0.1: on a listen address beyond loopback that earns nothing
    # (a reverse proxy on the gateway's machine must not make everyone admin).
    assert (await client.get("/api/writable")).status_code == 401
    assert (await write(client, {}, 9)).status_code == 401


async def test_the_audit_never_holds_a_secret(client: httpx.AsyncClient, tmp_path: Path) -> None:
    for headers in (VIEWER, OPERATOR, OPERATOR_BY_TOKEN, ADMIN, {"Authorization": basic("anyone", OPERATOR_TOKEN)}):
        await write(client, headers, 9)
        await write(client, headers, 99)
    text = "".join(path.read_text() for path in (tmp_path / "audit").iterdir())
    assert text.count("\n") >= 10
    for secret in SECRETS:
        assert secret not in text
    api = (await client.get("/api/audit", headers=ADMIN)).text
    for secret in SECRETS:
        assert secret not in api
