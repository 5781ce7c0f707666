"""The secrets sweep: a distinctive value in every secret field, then everything the gateway
printed, logged, served and wrote is searched for each of them.

Real parts: Mosquitto with users (the MQTT connector, the MQTT sink, the Sparkplug connector and
sink each log in as their own user), influxd 1.x with authentication (a v1 sink with its user's
password, one with a wrong password, a v2 sink whose token that server refuses), the OPC UA
simulator with a user (the right password and a wrong one), and the web page over HTTPS with an
encrypted key, viewer and admin credentials. ``gateway validate`` runs on the config and on a
copy with deliberate type errors next to secrets; ``gateway run --log-level debug`` runs while
errors happen, every API endpoint and /metrics is read as admin, the config is reloaded (a new
wrong password, then an invalid file), and SIGTERM stops it. Then stdout, stderr, every file
under data_dir and every HTTP body and header are searched: no secret may appear.
"""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.fixtures.influxdb import Influxd
from tests.fixtures.mosquitto import Mosquitto, Publisher
from tests.helpers import async_wait_until, free_port, stop_process
from tests.http.tls import make_pki

pytestmark = pytest.mark.slow

#: Every secret, distinctive (a hit names the field it came from). Passed through the
#: environment (${VAR}) except those marked literal, which are written in the file itself.
SECRET = {
    "VIEWER_PASSWORD": "Sw-viewer-pass-1f9c2e7d",
    "VIEWER_TOKEN": "Sw-viewer-token-5a0b3c8e",
    "ADMIN_TOKEN": "Sw-admin-token-9e4d1a6b",
    "ADMIN_PASSWORD": "Sw-admin-pass-3c7f0e2a",
    "TLS_KEY_PASSWORD": "Sw-tls-keypw-8b2e5d1f",
    "MQTT_CONN_PASSWORD": "Sw-mqtt-conn-6d3a9f0c",
    "MQTT_WRONG_PASSWORD": "Sw-mqtt-wrong-2f8c4b7e",
    "MQTT_SINK_PASSWORD": "Sw-mqtt-sink-7e1b5c9a",
    "SPB_CONN_PASSWORD": "Sw-spb-conn-4a6e0d3b",
    "SPB_SINK_PASSWORD": "Sw-spb-sink-0c9f7a2d",
    "INFLUX_PASSWORD": "Sw-influx-pw-5b3d8e1c",
    "INFLUX_WRONG_PASSWORD": "Sw-influx-wrong-1e7a4c9f",
    "INFLUX_TOKEN": "Sw-influx-token-8f2c6b0e",
    "OPC_PASSWORD": "Sw-opc-pass-2d9b5f1a",
    "OPC_WRONG_PASSWORD": "Sw-opc-wrong-6c0e3a8d",
}
#: Written only in a reloaded file (a new wrong password), or next to type errors.
RELOADED_WRONG = "Sw-reload-wrong-4e8a1d6c"
INVALID_RELOAD = "Sw-invalid-reload-9a3f7b2e"
VALIDATE_ONLY = ("Sw-validate-list-7c2e9a0f", "Sw-validate-dict-1b8d4f6e", "Sw-validate-url-5e0a3c7b")
NUMERIC_PASSWORD = "918273645501234"  # unquoted in YAML: a number, taken as the password's text
ALL = [*SECRET.values(), RELOADED_WRONG, INVALID_RELOAD, *VALIDATE_ONLY, NUMERIC_PASSWORD]


def config_data(tmp_path: Path, broker: Mosquitto, influxd: Influxd, opc: str, http_port: int) -> dict[str, Any]:
    pki = make_pki(tmp_path / "pki", key_password=SECRET["TLS_KEY_PASSWORD"])
    mqtt = {"broker": broker.url, "reconnect_min": "200ms", "reconnect_max": "1s"}

    def opcua(name: str, password: str) -> dict[str, Any]:
        return {
            "name": name,
            "type": "opcua",
            "endpoint": opc,
            "auth": {"username": "operator", "password": password},
            "measurement": "machine",
            "tags": {"machine": "cnc-01"},
            "subscription": {"publishing_interval": "200ms"},
            "reconnect": {"initial_delay": "200ms", "max_delay": "1s"},
            "nodes": [{"node": "nsu=urn:lab:cnc;s=Spindle.Speed", "field": f"rpm_{name}"}],
        }

    return {
        "gateway": {
            "name": "sweep",
            "data_dir": str(tmp_path / "data"),
            "shutdown_timeout": "10s",
            "http": {
                "listen": f"127.0.0.1:{http_port}",
                "auth": {
                    "viewer": {"username": "officina", "password": "${VIEWER_PASSWORD}", "token": "${VIEWER_TOKEN}"},
                    "admin": {"token": "${ADMIN_TOKEN}", "username": "capo", "password": "${ADMIN_PASSWORD}"},
                },
                "tls": {"cert": str(pki.cert), "key": str(pki.key), "key_password": "${TLS_KEY_PASSWORD}"},
            },
        },
        "sinks": [
            {"name": "local", "type": "historian", "flush_interval": "200ms"},
            {
                "name": "influx",
                "type": "influxdb",
                "api": "v1",
                "url": influxd.url,
                "database": "test",
                "username": "gwuser",
                "password": "${INFLUX_PASSWORD}",
                "flush_interval": "200ms",
            },
            {
                "name": "influx-wrong",
                "type": "influxdb",
                "api": "v1",
                "url": influxd.url,
                "database": "test",
                "username": "gwuser",
                "password": SECRET["INFLUX_WRONG_PASSWORD"],  # literal in the file
                "flush_interval": "200ms",
            },
            {
                "name": "influx-v2",
                "type": "influxdb",
                "url": influxd.url,
                "org": "lab",
                "bucket": "test",
                "token": "${INFLUX_TOKEN}",  # influxd 1.6 has no v2 API: refused, retried
                "flush_interval": "200ms",
            },
            {
                "name": "uns",
                "type": "mqtt",
                **mqtt,
                "client_id": "sweep-uns",
                "topic": "out/{measurement}/{field}",
                "username": "gw-sink",
                "password": "${MQTT_SINK_PASSWORD}",
            },
            {
                "name": "edge",
                "type": "sparkplug",
                **mqtt,
                "client_id": "sweep-edge",
                "group": "Sweep",
                "edge_node": "gw",
                "username": "gw-edge",
                "password": "${SPB_SINK_PASSWORD}",
            },
        ],
        "connectors": [
            opcua("cnc", "${OPC_PASSWORD}"),
            opcua("cnc-wrong", SECRET["OPC_WRONG_PASSWORD"]),
            {
                "name": "energy",
                "type": "mqtt",
                **mqtt,
                "client_id": "sweep-energy",
                "username": "gw-conn",
                "password": "${MQTT_CONN_PASSWORD}",
                "sinks": ["local"],
                "topics": [{"filter": "in/+", "format": "json", "measurement": "energy", "tags_from_topic": {"m": 1}}],
            },
            {
                "name": "energy-wrong",
                "type": "mqtt",
                **mqtt,
                "client_id": "sweep-energy-wrong",
                "username": "gw-conn",
                "password": "${MQTT_WRONG_PASSWORD}",
                "sinks": ["local"],
                "topics": [{"filter": "in/+", "format": "json", "measurement": "energy2"}],
            },
            {
                "name": "spb",
                "type": "sparkplug",
                **mqtt,
                "client_id": "sweep-spb",
                "username": "gw-spb",
                "password": "${SPB_CONN_PASSWORD}",
                "sinks": ["local"],  # what the Sparkplug sink publishes comes back here: not round again
            },
        ],
    }


def invalid_copy(data: dict[str, Any]) -> dict[str, Any]:
    """The config with type errors beside secrets, a password in a URL and an unquoted numeric password."""
    bad: dict[str, Any] = yaml.safe_load(yaml.safe_dump(data))
    bad["gateway"]["http"]["auth"]["viewer"]["password"] = int(NUMERIC_PASSWORD)
    bad["gateway"]["http"]["auth"]["admin"]["token"] = [VALIDATE_ONLY[0]]
    bad["sinks"][1]["password"] = {"nested": VALIDATE_ONLY[1]}
    bad["sinks"][4]["broker"] = bad["sinks"][4]["broker"].replace("mqtt://", f"mqtt://gw-sink:{VALIDATE_ONLY[2]}@")
    bad["connectors"][0]["auth"]["password"] = True
    bad["connectors"][2]["qos"] = "often"
    return bad


def write(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


async def test_no_secret_reaches_any_output(
    tmp_path: Path,
    mosquitto_factory: Callable[..., Mosquitto],
    influxd_auth: Influxd,
    opcua_simulator: Any,
) -> None:
    broker = mosquitto_factory(
        users={
            "gw-conn": SECRET["MQTT_CONN_PASSWORD"],
            "gw-sink": SECRET["MQTT_SINK_PASSWORD"],
            "gw-spb": SECRET["SPB_CONN_PASSWORD"],
            "gw-edge": SECRET["SPB_SINK_PASSWORD"],
            "tester": "tester-password",
        }
    )
    influxd_auth.query(f"CREATE USER gwuser WITH PASSWORD '{SECRET['INFLUX_PASSWORD']}'", db=None)
    influxd_auth.query('GRANT ALL ON "test" TO gwuser', db=None)
    sim = opcua_simulator(machines=1, user=[f"operator:{SECRET['OPC_PASSWORD']}"], bad_rate=0, interval=0.3)
    http_port = free_port()
    work = tmp_path / "gw"
    work.mkdir()
    data = config_data(work, broker, influxd_auth, sim.endpoint(), http_port)
    config = write(work / "gateway.yaml", data)
    env = {**os.environ, **SECRET, "PYTHONUNBUFFERED": "1"}
    outputs: dict[str, bytes] = {}

    # 1. gateway validate: the good config, then one with mistakes beside the secrets.
    for label, path in (("validate", config), ("validate-invalid", write(work / "invalid.yaml", invalid_copy(data)))):
        result = subprocess.run(
            [sys.executable, "-m", "gateway.cli", "validate", str(path)],
            capture_output=True,
            env=env,
            cwd=work,
            timeout=120,
        )
        outputs[f"{label} stdout"], outputs[f"{label} stderr"] = result.stdout, result.stderr
        assert result.returncode == (0 if label == "validate" else 1), result.stderr.decode()
    invalid_text = outputs["validate-invalid stderr"].decode()
    for key in ("gateway.http.auth.admin.token", "sinks[1].password", "sinks[4].broker", "connectors[0].auth.password"):
        assert key in invalid_text, invalid_text  # each mistake reported, at its key
    assert "gateway.http.auth.viewer.password" not in invalid_text  # a number there is its text

    # 2. gateway run, with errors provoked, every endpoint read.
    stdout_path, stderr_path = work / "run.stdout", work / "run.stderr"
    with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "run", str(config), "--log-level", "debug"],
            stdout=out,
            stderr=err,
            env=env,
            cwd=work,
        )
    try:
        await _exercise(process, work, config, data, http_port, broker, influxd_auth, outputs)
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0, stderr_path.read_text()[-3000:]
    finally:
        stop_process(process)
    outputs["run stdout"], outputs["run stderr"] = stdout_path.read_bytes(), stderr_path.read_bytes()
    log = outputs["run stderr"].decode(errors="replace")
    # Not vacuous: the refusals happened and were logged.
    assert "cnc-wrong" in log and "energy-wrong" in log and "influx-wrong" in log

    # 3. Every file the gateway wrote.
    data_dir = work / "data"
    files = [path for path in data_dir.rglob("*") if path.is_file()]
    assert any(path.name.endswith(".db") for path in files), files
    for path in files:
        outputs[f"file {path.relative_to(data_dir)}"] = path.read_bytes()

    leaks = [
        f"{secret!r} in {where}" for where, content in outputs.items() for secret in ALL if secret.encode() in content
    ]
    assert not leaks, "secrets found:\n" + "\n".join(leaks)


async def _exercise(
    process: subprocess.Popen[bytes],
    work: Path,
    config: Path,
    data: dict[str, Any],
    http_port: int,
    broker: Mosquitto,
    influxd: Influxd,
    outputs: dict[str, bytes],
) -> None:
    ca = ssl.create_default_context(cafile=str(work / "pki" / "ca.pem"))
    admin = {"Authorization": f"Bearer {SECRET['ADMIN_TOKEN']}"}
    base = f"https://127.0.0.1:{http_port}"
    bodies = 0
    async with httpx.AsyncClient(base_url=base, verify=ca, timeout=30, headers=admin) as client:

        async def get(path: str, **options: Any) -> httpx.Response:
            nonlocal bodies
            response = await client.get(path, **options)
            bodies += 1
            outputs[f"GET {path} #{bodies}"] = _raw(response)
            return response

        async def status() -> dict[str, Any] | None:
            if process.poll() is not None:
                raise AssertionError(f"the gateway exited with {process.returncode}")
            try:
                response = await client.get("/api/status")
            except httpx.HTTPError:
                return None
            return dict(response.json()) if response.status_code == 200 else None

        await async_wait_until(status, timeout=90, interval=0.2, message="the gateway's HTTPS API to answer")

        def component(state: dict[str, Any], name: str) -> dict[str, Any]:
            return next(c for c in state["components"] if c["name"] == name)

        with Publisher(broker, username="tester", password="tester-password") as publisher:
            sent = 0

            async def settled() -> bool:
                nonlocal sent
                state = await status()
                if state is None:
                    return False
                errors = all(component(state, n)["last_error"] for n in ("cnc-wrong", "energy-wrong", "influx-wrong"))
                stored = component(state, "cnc")["counters"].get("stored", 0) > 0
                mqtt = component(state, "energy")["counters"].get("received", 0) > 0
                influx = component(state, "influx")["counters"].get("points_written", 0) > 0
                if not mqtt:  # published until the connector has subscribed (earlier messages reach nobody)
                    publisher.publish("in/m1", f'{{"power_w": {sent}}}')
                    sent += 1
                return errors and stored and mqtt and influx

            try:
                await async_wait_until(settled, timeout=120, interval=0.5)
            except AssertionError:
                raise AssertionError(f"not settled: {await status()}") from None

        # Every endpoint of the spec, as admin.
        spec = (await get("/api/openapi.json")).json()
        state = await status()
        assert state is not None
        names = [c["name"] for c in state["components"]]
        series = (await get("/api/series")).json()
        series_id = next(s["id"] for s in series if s["id"] is not None)
        for path, methods in spec["paths"].items():
            if "get" not in methods or path == "/api/events":
                continue
            for name in names if "{name}" in path else [""]:
                await get(path.replace("{name}", name or "none").replace("{series_id}", str(series_id)))
        for extra in ("/api/whoami", "/metrics", "/readyz", "/healthz", "/", "/static/js/main.js"):
            await get(extra)
        async with client.stream("GET", "/api/events", params={"topics": "overview,status,values,kpi"}) as stream:
            chunks: list[bytes] = []
            until = time.monotonic() + 3
            async for chunk in stream.aiter_bytes():
                chunks.append(chunk)
                if time.monotonic() > until:
                    break
            outputs["GET /api/events"] = b"".join(chunks)
        components = [outputs[k] for k in outputs if k.startswith("GET /api/components/")]
        assert any(b'"password":"***"' in body.replace(b" ", b"") for body in components)

        # Reloads: unchanged; a new wrong password (applied: that connector restarts); an invalid file.
        for label in ("unchanged", "new-wrong-password", "invalid"):
            if label == "new-wrong-password":
                data["connectors"][3]["password"] = RELOADED_WRONG
                write(config, data)
            elif label == "invalid":
                broken: dict[str, Any] = yaml.safe_load(yaml.safe_dump(data))
                broken["connectors"][3]["password"] = [INVALID_RELOAD]
                broken["connectors"][1]["auth"]["password"] = {"x": INVALID_RELOAD}
                write(config, broken)
            response = await client.post("/api/reload")
            outputs[f"POST /api/reload {label}"] = _raw(response)
            assert response.status_code == (422 if label == "invalid" else 200), response.text

        async def refusal_reported() -> bool:
            state = await status()
            return state is not None and bool(component(state, "energy-wrong")["last_error"])

        await async_wait_until(
            refusal_reported, timeout=60, interval=0.3, message="the reloaded connector to report its refusal"
        )
        await get("/api/status")
        await get("/api/components/energy-wrong")
        # Failed logins (their attempts are not secrets, the gateway's are).
        for _ in range(3):
            response = await client.get("/api/status", headers={"Authorization": "Bearer not-a-token-at-all"})
            outputs[f"failed login {_}"] = _raw(response)
    assert process.poll() is None, "the gateway stopped before SIGTERM"


def _raw(response: httpx.Response) -> bytes:
    headers = "\n".join(f"{k}: {v}" for k, v in response.headers.items())
    return f"{response.status_code}\n{headers}\n\n".encode() + response.content
