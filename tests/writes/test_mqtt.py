"""Commands over MQTT through the API, against Mosquitto: an independent subscriber (paho) receives
the value on the command topic, the write is confirmed by the broker's PUBACK, and a value refused
by its limits, or asked while the broker is away, is never published."""

from __future__ import annotations

import json
import queue
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway.component import State
from tests.fixtures.mosquitto import Mosquitto
from tests.helpers import async_wait_until, wait_until
from tests.writes.helpers import VIEWER, running

TOPIC = "plant/L1/press-02/cmd/order"


class Subscriber:
    """paho on its own thread, subscribed to the command topics: what a press's controller receives."""

    def __init__(self, broker: Mosquitto) -> None:
        self.messages: queue.Queue[tuple[str, bytes, int]] = queue.Queue()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id="press-02", protocol=paho.MQTTv5)
        self.client.on_message = lambda client, userdata, message: self.messages.put(
            (message.topic, bytes(message.payload), message.qos)
        )
        self.subscriptions = 0
        self.client.on_subscribe = lambda *args: setattr(self, "subscriptions", self.subscriptions + 1)
        # subscribed again at every connection (the broker may restart without the session)
        self.client.on_connect = lambda client, *args: client.subscribe("plant/L1/press-02/cmd/#", qos=2)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        wait_until(lambda: self.subscriptions, timeout=10, message="the subscriber subscribed")

    def next(self, timeout: float = 10.0) -> tuple[str, bytes, int]:
        return self.messages.get(timeout=timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def press(mosquitto: Mosquitto) -> Iterator[Subscriber]:
    subscriber = Subscriber(mosquitto)
    yield subscriber
    subscriber.close()


def connector(broker: Mosquitto) -> dict[str, Any]:
    return {
        "name": "press-mqtt",
        "type": "mqtt",
        "broker": broker.url,
        "client_id": "gw-commands",
        "qos": 1,
        "tags": {"line": "L1"},
        "topics": [{"filter": "plant/L1/press-02/data", "format": "value", "measurement": "press"}],
        "commands": [
            {
                "name": "order",
                "topic": TOPIC,
                "qos": 1,
                "tags": {"machine": "press-02"},
                "write": {"pattern": "^FA-[0-9]{2}-[0-9]{4}$"},
            },
            {
                "name": "speed",
                "topic": "plant/L1/press-02/cmd/speed",
                "qos": 2,
                "format": "json",
                "write": {"min": 0, "max": 60},
            },
        ],
    }


async def test_a_command_reaches_an_independent_subscriber_confirmed_by_the_broker(
    mosquitto: Mosquitto, press: Subscriber, tmp_path: Path
) -> None:
    async with running(tmp_path, [connector(mosquitto)]) as gw:
        fields = {f["field"]: f for f in (await gw.client.get("/api/writable", headers=VIEWER)).json()}
        assert fields["order"]["type"] == "string" and fields["order"]["pattern"] == "^FA-[0-9]{2}-[0-9]{4}$"
        assert fields["order"]["tags"] == {"line": "L1", "machine": "press-02"}
        assert fields["speed"]["type"] == "number"

        answer = await gw.write("press-mqtt", "order", "FA-12-3456")
        assert (answer["status"], answer["result"], answer["read_back"]) == (200, "written", None)
        assert "PUBACK" in answer["message"]
        assert press.next() == (TOPIC, b"FA-12-3456", 1)
        speed = await gw.write("press-mqtt", "speed", 42.5)
        assert speed["result"] == "written" and "PUBCOMP" in speed["message"]
        topic, payload, qos = press.next()
        assert (topic, json.loads(payload), qos) == ("plant/L1/press-02/cmd/speed", {"value": 42.5}, 2)

        refused = await gw.write("press-mqtt", "order", "FA-1-23")
        assert (refused["status"], refused["result"]) == (422, "refused_limits")
        too_fast = await gw.write("press-mqtt", "speed", 99)
        assert too_fast["result"] == "refused_limits"
        with pytest.raises(queue.Empty):
            press.next(timeout=1.0)  # nothing refused was published
        audited = {e["id"]: e for e in gw.audit() if e["result"] != "pending"}
        assert [audited[r["id"]]["result"] for r in (answer, speed, refused, too_fast)] == [
            "written",
            "written",
            "refused_limits",
            "refused_limits",
        ]

        mosquitto.stop()
        source = gw.gateway.sources[0]
        await async_wait_until(lambda: source.status.state is not State.RUNNING, timeout=30, message="disconnected")
        away = await gw.write("press-mqtt", "order", "FA-99-0001")
        assert (away["status"], away["result"]) == (503, "error")
        assert "not connected to the broker now: nothing was sent" in away["message"]
        subscriptions = press.subscriptions
        mosquitto.start()
        await async_wait_until(lambda: source.status.state is State.RUNNING, timeout=60, message="reconnected")
        await async_wait_until(lambda: press.subscriptions > subscriptions, timeout=60, message="resubscribed")
        again = await gw.write("press-mqtt", "order", "FA-99-0002")
        assert again["result"] == "written"
        assert press.next()[1] == b"FA-99-0002"  # the one refused while away was never queued for later
