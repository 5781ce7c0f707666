"""The MQTT sink keeps the no-loss promise at volume and through a broker outage (slow tests).

- 50,000 points through the whole gateway: MQTT messages from a paho publisher → the MQTT
  connector → the MQTT sink republishing them as a UNS → an independent paho subscriber, which
  must get every one, with its value and its own time;
- the broker stopped (SIGTERM) for 15 s and started again during a steady stream: nothing is
  lost (the buffer holds what arrives meanwhile) and nothing is acknowledged early (while the
  broker is down, the sink's ``points_written`` does not move and the buffer grows by exactly
  what arrives).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.component import State
from gateway.config import validate_data
from gateway.point import Point
from gateway.runtime import Gateway
from tests.fixtures.mosquitto import Mosquitto, Publisher
from tests.helpers import async_wait_until
from tests.sinks.mqtt.peers import Witness, depth, sink_route, written

BASE_MS = 1_714_564_800_000
MS = 1_000_000
METERS = [(f"L{k // 5}", f"m{k:02d}") for k in range(20)]

pytestmark = pytest.mark.slow


def exact(witness: Witness) -> dict[tuple[str, int], set[Any]]:
    """(topic, timestamp_ms) → the values received for it (one value each: duplicates are exact copies)."""
    got: dict[tuple[str, int], set[Any]] = {}
    for message in witness.received():
        body = message.json()
        got.setdefault((message.topic, body["timestamp_ms"]), set()).add(body["value"])
    return got


@pytest.mark.timeout(240)
async def test_50000_points_from_mqtt_are_republished_as_a_uns_and_every_one_received(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    count = 50_000
    config = validate_data(
        {
            "gateway": {"name": "uns-test", "data_dir": str(tmp_path / "data"), "http": {"enabled": False}},
            "sinks": [
                {
                    "name": "uns",
                    "type": "mqtt",
                    "broker": mosquitto.url,
                    "client_id": "gw-uns-50k",
                    "qos": 1,
                    "topic": "uns/{line}/{meter}/{measurement}/{field}",
                }
            ],
            "connectors": [
                {
                    "name": "energy",
                    "type": "mqtt",
                    "broker": mosquitto.url,
                    "client_id": "gw-energy-50k",
                    "qos": 1,
                    "topics": [
                        {
                            "filter": "factory/+/energy/+",
                            "tags_from_topic": {"line": 1, "meter": 3},
                            "measurement": "energy",
                            "time": {"path": "ts", "unit": "ms"},
                            "fields": {"power_w": "p"},
                        }
                    ],
                }
            ],
        }
    )
    witness = Witness(mosquitto, "uns/#", qos=1)
    try:
        async with Gateway(config) as gateway:
            source = next(s for s in gateway.sources if s.name == "energy")
            await async_wait_until(lambda: source.status.detail.get("subscribed"), timeout=30, message="subscribed")
            route = gateway.routes["uns"]

            def publish() -> None:
                with Publisher(mosquitto) as publisher:
                    for i in range(count):
                        line, meter = METERS[i % len(METERS)]
                        payload = orjson.dumps({"p": i * 0.5, "ts": BASE_MS + i})
                        publisher.publish(f"factory/{line}/energy/{meter}", payload)
                    publisher.wait(180)

            await asyncio.to_thread(publish)
            await async_wait_until(
                lambda: len(exact(witness)) == count and depth(route) == 0,
                timeout=120,
                message=f"{count} UNS messages received (got {len(exact(witness))})",
            )
            counters = route.status.counters
            assert counters["points_written"] == count and counters["points_rejected"] == 0
            assert source.status.counters["points_stored"] == count
        expected = {
            (f"uns/{METERS[i % 20][0]}/{METERS[i % 20][1]}/energy/power_w", BASE_MS + i): {i * 0.5}
            for i in range(count)
        }
        assert exact(witness) == expected  # every point, its value, its own time; duplicates only as copies
    finally:
        witness.close()


@pytest.mark.timeout(240)
async def test_the_broker_stopped_for_15s_loses_nothing_and_nothing_is_acknowledged_early(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    witness = Witness(mosquitto, "lab/#", client_id="uns-consumer", persistent=True, qos=1)
    fed = 0
    stop_feeding = asyncio.Event()

    def tags(i: int) -> dict[str, str]:
        return {"line": "A", "machine": f"cnc-{i % 4}"}

    async def feed(route: Any) -> None:
        """500 points a second, each with a time of its own, until told to stop."""
        nonlocal fed
        while not stop_feeding.is_set():
            batch = [
                Point("machine", {"spindle_rpm": float(i)}, tags(i), (BASE_MS + i) * MS)
                for i in range(fed, fed + 50)
            ]
            await route.put(batch, lambda: None)
            fed += 50
            await asyncio.sleep(0.1)

    try:
        async with sink_route(tmp_path, mosquitto.url, qos=1) as route:
            route.GAUGE_INTERVAL = 0.1
            async with asyncio.TaskGroup() as tasks:
                feeder = tasks.create_task(feed(route))
                await async_wait_until(lambda: written(route) >= 3_000, timeout=60, message="streaming")

                await asyncio.to_thread(mosquitto.stop)  # SIGTERM: the broker saves its sessions
                down_at = time.monotonic()
                await async_wait_until(
                    lambda: route.status.state is State.BACKOFF, timeout=30, message="the sink sees the broker down"
                )
                written_when_down, fed_when_down = written(route), fed
                samples = []
                while time.monotonic() - down_at < 15:
                    await asyncio.sleep(1)
                    samples.append((written(route), fed - fed_when_down, depth(route)))
                # Nothing acknowledged early: with no broker to acknowledge, not one more point left
                # the buffer, and everything that arrived meanwhile is in it.
                assert all(w == written_when_down for w, _, _ in samples), samples
                assert all(d >= arrived for _, arrived, d in samples), samples
                assert samples[-1][1] >= 5_000  # (the stream went on: about 7,500 points arrived)

                await asyncio.to_thread(mosquitto.start)
                await async_wait_until(
                    lambda: route.status.state is State.RUNNING, timeout=60, message="reconnected after the restart"
                )
                resumed_from = written(route)
                await async_wait_until(  # the stream goes on a little after the restart
                    lambda: written(route) > resumed_from + 1_000, timeout=60, message="streaming again"
                )
                stop_feeding.set()
                await feeder
            await async_wait_until(
                lambda: depth(route) == 0 and written(route) == fed, timeout=90, message="the buffer drained"
            )
            assert route.status.counters["points_rejected"] == 0
        await async_wait_until(lambda: len(exact(witness)) == fed, timeout=60, message=f"all {fed} received")
        expected = {
            (f"lab/A/cnc-{i % 4}/machine/spindle_rpm", BASE_MS + i): {float(i)} for i in range(fed)
        }
        assert exact(witness) == expected
    finally:
        witness.close()
