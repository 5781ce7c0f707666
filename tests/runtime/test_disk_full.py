"""A full disk, end to end: the buffer, the historian and the data folder on a small filesystem
(a real tmpfs) that the test fills, with real Mosquitto and VictoriaMetrics.

What a user checks:

- ``gateway run`` started on a full disk comes up (its API answers) and waits; the sinks show
  ``disk_full`` in their status, in /metrics and in /readyz; nothing is acknowledged to the
  broker, which keeps every message (the gateway killed and restarted on the full disk gets
  them again); once there is room, and once the store is up, every published message is in
  both stores, exactly;
- the disk filling up while the gateway runs, the store down: the same, without a restart;
- OPC UA samples wait in a bounded memory queue while the historian's disk is full, and those
  beyond it are dropped and counted (one log line); collection resumes by itself.

Mounting needs root (CI runs as root): elsewhere these tests are skipped with the reason.
"""

from __future__ import annotations

import functools
import logging
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

import connectors.opcua.source as opcua_source
import gateway.runtime
from gateway.component import State
from gateway.config import load_config
from gateway.point import Point
from gateway.route import MemoryQueue
from gateway.runtime import Gateway
from tests.fixtures.gateway import GatewayRun
from tests.fixtures.mosquitto import Mosquitto, Publisher, read_history
from tests.fixtures.small_filesystem import SmallFilesystem
from tests.fixtures.victoriametrics import Sample, VictoriaMetrics
from tests.helpers import async_wait_until, contract_energy_connector, free_port, wait_until

BASE_MS = 1_714_564_800_000  # 2024-05-01T12:00:00Z
TOPICS = [(f"L{k // 5}", f"m{k:02d}") for k in range(20)]


def topic(i: int) -> str:
    line, meter = TOPICS[i % len(TOPICS)]
    return f"factory/{line}/energy/{meter}"


def payload(i: int) -> bytes:
    return orjson.dumps({"p": i * 0.5, "e": i, "ts": BASE_MS + i})


def expected_samples(count: int) -> set[Sample]:
    samples = set()
    for i in range(count):
        tags = (("line", TOPICS[i % len(TOPICS)][0]), ("meter", TOPICS[i % len(TOPICS)][1]))
        samples.add(Sample("energy_power_w", tags, BASE_MS + i, i * 0.5))
        samples.add(Sample("energy_energy_kwh", tags, BASE_MS + i, float(i)))
    return samples


def expected_history(count: int) -> set[tuple[int, str, str, str, Any]]:
    rows = set()
    for i in range(count):
        line, meter = TOPICS[i % len(TOPICS)]
        point = Point("energy", {"power_w": i * 0.5, "energy_kwh": float(i)}, {"line": line, "meter": meter})
        for field, value in point.fields.items():
            rows.add(((BASE_MS + i) * 1_000_000, line, meter, field, value))
    return rows


def history_rows(folder: Path) -> set[tuple[int, str, str, str, Any]]:
    return {(v.time, v.tags["line"], v.tags["meter"], v.field, v.value) for v in read_history(folder, "energy")}


def publish(broker: Mosquitto, indexes: range) -> None:
    """Publish at QoS 1 and wait until the broker has acknowledged every message (it holds them now)."""
    with Publisher(broker) as publisher:
        for i in indexes:
            publisher.publish(topic(i), payload(i))
        assert publisher.wait(timeout=120) == len(indexes)


def state(gateway: GatewayRun, name: str) -> str:
    component = gateway.component(name)
    return str(component["state"]) if component else ""


def metrics(gateway: GatewayRun) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{gateway.http_port}/metrics", timeout=30) as response:
        return str(response.read().decode())


def subscribed(gateway: GatewayRun) -> bool:
    component = gateway.component("energy")
    return bool(component and component["detail"].get("subscribed"))


@pytest.mark.slow
def test_a_full_disk_holds_back_acknowledgements_the_gateway_waits_and_every_message_lands(
    small_filesystem: SmallFilesystem, gateway_run: list[GatewayRun], mosquitto: Mosquitto, tmp_path: Path
) -> None:
    disk = small_filesystem
    disk.mount("16m")
    store = VictoriaMetrics(tmp_path / "victoria-metrics")  # down until the end
    http_port = free_port()
    config = tmp_path / "gateway.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "gateway": {
                    "name": "disk-full",
                    "data_dir": str(disk.path / "data"),
                    "shutdown_timeout": "10s",
                    "http": {"listen": f"127.0.0.1:{http_port}"},
                    "buffer": {"path": str(disk.path / "buffer")},
                },
                "sinks": [
                    {
                        "name": "local",
                        "type": "historian",
                        "path": str(disk.path / "history.db"),
                        "flush_interval": "100ms",
                    },
                    {
                        "name": "influx",
                        "type": "influxdb",
                        "url": store.url,
                        "org": "lab",
                        "bucket": "machines",
                        "token": "t",
                        "flush_interval": "100ms",
                    },
                ],
                "connectors": [contract_energy_connector(mosquitto.url)],
            },
            sort_keys=False,
        )
    )
    first, second = 2_000, 2_000

    def started() -> GatewayRun:
        run = GatewayRun(config, http_port, tmp_path / "gateway.log")
        gateway_run.append(run)
        run.start()
        wait_until(lambda: subscribed(run), timeout=60, message="the MQTT connector subscribed")
        return run

    try:
        # 1. Started on a full disk: it comes up, and nothing is acknowledged.
        disk.fill()
        run = started()
        publish(mosquitto, range(first))
        wait_until(lambda: state(run, "local") == "disk_full", timeout=30, message="the historian shows disk_full")
        wait_until(lambda: state(run, "influx") == "disk_full", timeout=30, message="the buffer shows disk_full")
        wait_until(lambda: run.counter("energy", "received") > 0, timeout=30, message="messages reached the gateway")
        assert run.counter("energy", "stored") == 0  # not one acknowledged to the broker
        text = metrics(run)
        assert 'gateway_component_state{kind="sink",name="influx",state="disk_full",type="influxdb"} 1.0' in text
        assert 'gateway_component_state{kind="sink",name="local",state="disk_full",type="historian"} 1.0' in text
        code, ready = run.request("GET", "/readyz")
        assert code == 503 and {"local", "influx"} <= {c["name"] for c in ready["not_ready"]}
        assert {c["state"] for c in ready["not_ready"] if c["name"] in ("local", "influx")} == {"disk_full"}

        # 2. Killed and restarted on the full disk: the broker kept every message and sends them again.
        run.process.kill()  # type: ignore[union-attr]
        run.process.wait(10)  # type: ignore[union-attr]
        run = started()
        wait_until(lambda: state(run, "local") == "disk_full", timeout=30, message="disk_full after the restart")
        wait_until(lambda: run.counter("energy", "received") > 0, timeout=30, message="the broker sent them again")
        assert run.counter("energy", "stored") == 0

        # 3. Space returns: everything is stored by itself (the store is still down: in the buffer).
        disk.free()
        wait_until(lambda: run.counter("energy", "stored") == first, timeout=90, message="every message stored")
        # The influx sink says "backoff" only at its first write after the buffer's disk recovered
        # (flush_interval later), which may come after the last acknowledgement.
        wait_until(lambda: state(run, "influx") == "backoff", timeout=30, message="the store still down, retried")
        assert state(run, "local") == "running"
        assert history_rows(disk.path) == expected_history(first)

        # 4. The disk fills up while it runs, the store still down: acknowledgements stop again.
        disk.fill()
        publish(mosquitto, range(first, first + second))
        wait_until(lambda: state(run, "influx") == "disk_full", timeout=30, message="disk_full while running")
        assert run.counter("energy", "stored") < first + second
        run.alive()

        # 5. Room again, and the store starts: every message published is in both stores.
        disk.free()
        store.start()
        wait_until(lambda: run.counter("energy", "stored") == first + second, timeout=90, message="all acknowledged")
        wait_until(lambda: run.counter("influx", "points_written") >= first + second, timeout=90)
        wait_until(lambda: (run.component("influx") or {}).get("detail", {}).get("depth_points") == 0, timeout=60)
        assert set(store.samples('{__name__=~"energy_.*"}')) == expected_samples(first + second)
        assert history_rows(disk.path) == expected_history(first + second)
        assert state(run, "local") == state(run, "influx") == "running"
        assert "Traceback" not in run.log_text()
    finally:
        store.stop()


@pytest.mark.slow
async def test_opcua_samples_wait_in_bounded_memory_then_are_dropped_and_counted_while_the_disk_is_full(
    small_filesystem: SmallFilesystem,
    opcua_simulator: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Small bounds, so a few seconds of samples fill them (the defaults hold 100,000 and 50,000).
    monkeypatch.setattr(opcua_source, "MAX_PENDING", 5_000)
    monkeypatch.setattr(gateway.runtime, "MemoryQueue", functools.partial(MemoryQueue, max_pending=1_000))
    disk = small_filesystem
    simulator = opcua_simulator(machines=1, bad_rate=0, interval=0.1, bench_items=100)
    path = tmp_path / "gateway.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "gateway": {"name": "opcua-full", "data_dir": str(disk.path / "data"), "http": {"enabled": False}},
                "sinks": [
                    {
                        "name": "local",
                        "type": "historian",
                        "path": str(disk.path / "history.db"),
                        "flush_interval": "100ms",
                    }
                ],
                "connectors": [
                    {
                        "name": "cnc-01",
                        "type": "opcua",
                        "endpoint": simulator.endpoint(0),
                        "measurement": "machine",
                        "subscription": {
                            "publishing_interval": "200ms",
                            "sampling_interval": "100ms",
                            "queue_size": 50,
                        },
                        "nodes": [{"browse": "Objects/Bench", "recursive": True, "field_prefix": "bench_"}],
                    }
                ],
            },
            sort_keys=False,
        )
    )
    with caplog.at_level(logging.INFO):
        async with Gateway(load_config(path)) as running:
            source = running.sources[0]
            assert isinstance(source, opcua_source.OpcUaSource)
            counters = source.status.counters
            await async_wait_until(lambda: counters["stored"] > 2_000, timeout=60, message="samples stored")
            disk.fill()
            await async_wait_until(lambda: counters["dropped"] > 2_000, timeout=90, message="samples dropped")
            assert running.routes["local"].status.state is State.DISK_FULL
            assert len(source._pending) <= opcua_source.MAX_PENDING  # bounded
            held = counters["emitted"] - counters["stored"]
            assert held <= 1_000 + opcua_source.MAX_PENDING  # the historian's queue and the batch on its way
            disk.free()
            await async_wait_until(lambda: "the sinks take points again" in caplog.text, timeout=60)
            stored = counters["stored"]
            await async_wait_until(lambda: counters["stored"] > stored + 2_000, timeout=60, message="collecting again")
        # Stopped: everything handed to the historian is in it; the rest was dropped and counted.
        assert counters["emitted"] == counters["stored"]
        with_values = [r for r in read_history(disk.path, "machine") if r.field.startswith("bench_")]
        assert len(with_values) == counters["stored"]
    # One warning when an episode begins, one line with its count when it ends (not one per sample).
    began = [r.getMessage() for r in caplog.records if "are not taking points" in r.getMessage()]
    ended = [r.getMessage() for r in caplog.records if "take points again" in r.getMessage()]
    assert 1 <= len(began) == len(ended) <= 3
    assert sum(int(line.split(": ")[1].split()[0]) for line in ended) == counters["dropped"]
