"""MQTT → historian end to end, with a real Mosquitto: volume, malformed payloads, formats, QoS, protocols."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.component import State
from gateway.config import load_config
from gateway.runtime import Gateway
from tests.fixtures.mosquitto import Mosquitto, Publisher, read_history, write_config
from tests.helpers import async_wait_until, contract_energy_connector

BASE_MS = 1_714_564_800_000  # 2024-05-01T12:00:00Z


def energy_connector(broker: Mosquitto, **overrides: Any) -> dict[str, Any]:
    """The connector of the configuration contract (the hub's example config), on the test broker."""
    return contract_energy_connector(broker.url, **overrides)


async def subscribed(gateway: Gateway, name: str = "energy") -> None:
    source = next(s for s in gateway.sources if s.name == name)
    await async_wait_until(
        lambda: source.status.state is State.RUNNING and source.status.detail.get("subscribed"),
        timeout=30,
        message=f"connector {name} connected and subscribed",
    )


def counters(gateway: Gateway, name: str = "energy") -> dict[str, int]:
    return next(s for s in gateway.sources if s.name == name).status.counters


def energy_rows(tmp_path: Path) -> set[tuple[int, str, str, str, Any]]:
    return {(v.time, v.tags["line"], v.tags["meter"], v.field, v.value) for v in read_history(tmp_path, "energy")}


def expected_energy(line: str, meter: str, i: int) -> set[tuple[int, str, str, str, Any]]:
    time = (BASE_MS + i) * 1_000_000
    return {(time, line, meter, "power_w", i * 0.5), (time, line, meter, "energy_kwh", float(i))}


def energy_payload(i: int) -> bytes:
    return orjson.dumps({"p": i * 0.5, "e": i, "ts": BASE_MS + i})


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_10k_qos1_json_messages_on_20_topics_all_land(
    mosquitto: Mosquitto, tmp_path: Path, protocol: str
) -> None:
    config = load_config(write_config(tmp_path, [energy_connector(mosquitto, protocol=protocol)]))
    topics = [(f"L{k // 5}", f"m{k:02d}") for k in range(20)]
    expected: set[tuple[int, str, str, str, Any]] = set()
    async with Gateway(config) as gateway:
        await subscribed(gateway)
        with Publisher(mosquitto) as publisher:
            for i in range(10_000):
                line, meter = topics[i % 20]
                publisher.publish(f"factory/{line}/energy/{meter}", energy_payload(i))
                expected |= expected_energy(line, meter, i)
            assert publisher.wait() == 10_000
        await async_wait_until(lambda: counters(gateway)["stored"] >= 10_000, timeout=90, message="10,000 stored")
        status = gateway.sources[0].status
        assert {k: status.counters[k] for k in ("received", "stored", "malformed", "points_stored")} == {
            "received": 10_000,
            "stored": 10_000,
            "malformed": 0,
            "points_stored": 10_000,
        }
        assert status.detail["topics"] == {"factory/+/energy/+": {"received": 10_000, "stored": 10_000, "malformed": 0}}
    rows = energy_rows(tmp_path)
    assert len(rows) == 20_000
    assert rows == expected


async def test_malformed_payloads_are_counted_skipped_and_logged_with_their_topic(
    mosquitto: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    connector = energy_connector(mosquitto)
    connector["topics"][0]["fields"] = {"power_w": {"path": "p", "type": "float"}, "energy_kwh": "e"}
    config = load_config(write_config(tmp_path, [connector]))
    bad = {
        "factory/L1/energy/invalid-json": b'{"p": 1.5, "e": ',
        "factory/L1/energy/missing-field": orjson.dumps({"e": 1, "ts": BASE_MS}),
        "factory/L1/energy/wrong-type": orjson.dumps({"p": "n/a", "e": 1, "ts": BASE_MS}),
        "factory/L1/energy/wrong-shape": orjson.dumps({"p": [1, 2], "e": 1, "ts": BASE_MS}),
        "factory/L1/energy/huge": orjson.dumps({"p": 1, "e": 1, "ts": BASE_MS, "pad": "x" * 2**20}),
        "factory/L1/energy/not-utf8": b'{"p": 1, "e": 1, "ts": 1714564800000, "note": "\xff\xfe"}',
        "factory/L1/energy/time-overflow": orjson.dumps({"p": 1, "e": 1, "ts": 1e308}),
        "factory/L1/energy/time-as-huge-text": orjson.dumps({"p": 1, "e": 1, "ts": "1e308"}),
    }
    expected: set[tuple[int, str, str, str, Any]] = set()
    caplog.set_level(logging.WARNING, logger="gateway")
    async with Gateway(config) as gateway:
        await subscribed(gateway)
        with Publisher(mosquitto) as publisher:
            i = 0
            for topic, payload in bad.items():
                for _ in range(5):  # good messages around each bad one
                    publisher.publish("factory/L1/energy/good", energy_payload(i))
                    expected |= expected_energy("L1", "good", i)
                    i += 1
                publisher.publish(topic, payload)
            for _ in range(5):
                publisher.publish("factory/L1/energy/good", energy_payload(i))
                expected |= expected_energy("L1", "good", i)
                i += 1
            publisher.wait()
        good = i
        await async_wait_until(
            lambda: counters(gateway)["stored"] + counters(gateway)["malformed"] >= good + len(bad),
            timeout=60,
            message="every message stored or counted as malformed",
        )
        assert (counters(gateway)["received"], counters(gateway)["stored"], counters(gateway)["malformed"]) == (
            good + len(bad),
            good,
            len(bad),
        )
        assert gateway.sources[0].status.state is State.RUNNING
    assert energy_rows(tmp_path) == expected
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name == "gateway.connector.energy")
    for topic in bad:
        assert f"malformed message on topic '{topic}'" in logged
    assert "is missing" in logged and "expected a number" in logged and "more than max_payload_size" in logged


async def test_qos2_and_mqtt_311_and_value_format_with_hash_filter(mosquitto: Mosquitto, tmp_path: Path) -> None:
    machines = {
        "name": "machines",
        "type": "mqtt",
        "broker": mosquitto.url,
        "client_id": "gw-test-311",
        "protocol": "3.1.1",
        "qos": 2,
        "topics": [
            {
                "filter": "plant/#",
                "format": "value",
                "measurement": "sensor",
                "field": "value",
                "tags_from_topic": {"area": 1, "machine": 2, "signal": -1},
            }
        ],
    }
    config = load_config(write_config(tmp_path, [machines]))
    async with Gateway(config) as gateway:
        await subscribed(gateway, "machines")
        with Publisher(mosquitto, protocol=311) as publisher:
            publisher.publish("plant/press/p-04/temperature", "41.5", qos=2)
            publisher.publish("plant/press/p-04/hydraulics/pressure", "180", qos=2)
            publisher.publish("plant/weld/w1/state", "RUNNING", qos=2)
            publisher.publish("plant/weld/w1/door_open", "false", qos=2)
            publisher.wait()
        await async_wait_until(lambda: counters(gateway, "machines")["stored"] >= 4, timeout=30)
        assert counters(gateway, "machines")["malformed"] == 0
    stored = {(v.tags["area"], v.tags["machine"], v.tags["signal"], v.value) for v in read_history(tmp_path, "sensor")}
    assert stored == {
        ("press", "p-04", "temperature", 41.5),
        ("press", "p-04", "pressure", 180.0),
        ("weld", "w1", "state", "RUNNING"),
        ("weld", "w1", "door_open", False),
    }


async def test_influx_format_and_json_arrays_on_one_connector(mosquitto: Mosquitto, tmp_path: Path) -> None:
    connector = {
        "name": "cells",
        "type": "mqtt",
        "broker": mosquitto.url,
        "client_id": "gw-test-formats",
        "topics": [
            {"filter": "lp/+", "format": "influx", "tags_from_topic": {"cell": 1}},
            {
                "filter": "batch/+",
                "format": "json",
                "measurement": "vibration",
                "tags_from_topic": {"sensor": 1},
                "time": {"path": "t", "unit": "iso8601"},
                "fields": {"rms": "rms", "peak": "peak"},
            },
        ],
    }
    config = load_config(write_config(tmp_path, [connector]))
    async with Gateway(config) as gateway:
        await subscribed(gateway, "cells")
        with Publisher(mosquitto) as publisher:
            publisher.publish(
                "lp/c3",
                'machine,station=s1 spindle_rpm=1200i,state="RUN",alarm=false 1714564800000000001\n'
                "machine,station=s2 spindle_rpm=800i 1714564800000000002\n",
            )
            publisher.publish(
                "batch/v7",
                orjson.dumps(
                    [
                        {"t": "2024-05-01T12:00:00.000000001Z", "rms": 0.12, "peak": 0.5},
                        {"t": "2024-05-01T12:00:00.5Z", "rms": 0.13, "peak": 0.6},
                    ]
                ),
            )
            publisher.wait()
        await async_wait_until(lambda: counters(gateway, "cells")["stored"] >= 2, timeout=30)
        assert counters(gateway, "cells")["points_stored"] == 4
    machine = {(v.time, v.tags["station"], v.tags["cell"], v.field, v.value) for v in read_history(tmp_path, "machine")}
    assert machine == {
        (1714564800000000001, "s1", "c3", "spindle_rpm", 1200),
        (1714564800000000001, "s1", "c3", "state", "RUN"),
        (1714564800000000001, "s1", "c3", "alarm", False),
        (1714564800000000002, "s2", "c3", "spindle_rpm", 800),
    }
    vibration = {(v.time, v.tags["sensor"], v.field, v.value) for v in read_history(tmp_path, "vibration")}
    assert vibration == {
        (1714564800000000001, "v7", "rms", 0.12),
        (1714564800000000001, "v7", "peak", 0.5),
        (1714564800500000000, "v7", "rms", 0.13),
        (1714564800500000000, "v7", "peak", 0.6),
    }


async def test_qos0_large_payloads_and_mqtt5_properties(mosquitto: Mosquitto, tmp_path: Path) -> None:
    """QoS 0; a payload larger than one socket read; PUBLISH packets carrying MQTT 5 properties."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    config = load_config(write_config(tmp_path, [energy_connector(mosquitto, qos=0, client_id="gw-test-qos0")]))
    expected: set[tuple[int, str, str, str, Any]] = set()
    async with Gateway(config) as gateway:
        await subscribed(gateway)
        with Publisher(mosquitto) as publisher:
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            properties.UserProperty = ("site", "north")
            properties.MessageExpiryInterval = 3600
            for i in range(300):
                body: dict[str, object] = {"p": i * 0.5, "e": i, "ts": BASE_MS + i}
                if i % 100 == 7:
                    body["pad"] = "x" * 200_000  # spans several reads of the socket
                info = publisher.client.publish(
                    "factory/L2/energy/m1", orjson.dumps(body), qos=0, properties=properties if i % 2 else None
                )
                publisher.infos.append(info)
                expected |= expected_energy("L2", "m1", i)
            publisher.wait()
        await async_wait_until(lambda: counters(gateway)["stored"] >= 300, timeout=30, message="300 stored")
        assert counters(gateway)["malformed"] == 0
    assert energy_rows(tmp_path) == expected


async def test_username_and_password_from_the_environment(
    mosquitto_factory: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker = mosquitto_factory(users={"gateway": "s3cret-gw-pass", "sensor": "sensor-pass"})
    connector = energy_connector(broker, username="${MQTT_TEST_USER}", password="${MQTT_TEST_PASSWORD}")
    path = write_config(tmp_path, [connector])
    assert "${MQTT_TEST_PASSWORD}" in path.read_text()  # the secret is not in the file
    monkeypatch.setenv("MQTT_TEST_USER", "gateway")
    monkeypatch.setenv("MQTT_TEST_PASSWORD", "wrong")
    async with Gateway(load_config(path)) as gateway:
        status = gateway.sources[0].status
        await async_wait_until(lambda: status.state is State.UNAUTHORIZED, timeout=30, message="unauthorized")
        assert "the broker refused the connection" in (status.last_error or "")
        assert "wrong" not in (status.last_error or "")
    monkeypatch.setenv("MQTT_TEST_PASSWORD", "s3cret-gw-pass")
    async with Gateway(load_config(path)) as gateway:
        await subscribed(gateway)
        with Publisher(broker, username="sensor", password="sensor-pass") as publisher:
            publisher.publish("factory/L1/energy/m1", energy_payload(1))
            publisher.wait()
        await async_wait_until(lambda: counters(gateway)["stored"] >= 1, timeout=30)
    assert energy_rows(tmp_path) == expected_energy("L1", "m1", 1)


async def test_shared_subscription_splits_messages_between_gateways(mosquitto: Mosquitto, tmp_path: Path) -> None:
    """Two connectors in one share group (as two gateway instances would be): each message once."""
    shared = [{**energy_connector(mosquitto, client_id=f"gw-share-{k}"), "name": f"energy-{k}"} for k in ("a", "b")]
    for connector in shared:
        connector["topics"][0]["filter"] = "$share/gateways/factory/+/energy/+"
    config = load_config(write_config(tmp_path, shared))
    expected: set[tuple[int, str, str, str, Any]] = set()
    async with Gateway(config) as gateway:
        await subscribed(gateway, "energy-a")
        await subscribed(gateway, "energy-b")
        with Publisher(mosquitto) as publisher:
            for i in range(200):
                publisher.publish(f"factory/L1/energy/m{i % 4}", energy_payload(i))
                expected |= expected_energy("L1", f"m{i % 4}", i)
            publisher.wait()
        await async_wait_until(
            lambda: counters(gateway, "energy-a")["stored"] + counters(gateway, "energy-b")["stored"] >= 200,
            timeout=30,
        )
        a, b = counters(gateway, "energy-a")["received"], counters(gateway, "energy-b")["received"]
        assert a + b == 200 and a > 0 and b > 0
    assert energy_rows(tmp_path) == expected
