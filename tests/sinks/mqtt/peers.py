"""Independent peers for the MQTT sink's tests: a paho subscriber, and a proxy that holds acknowledgements.

- :class:`Witness`: a paho subscriber on its own network thread (QoS 2, optionally a persistent
  session), recording every message it receives;
- :class:`AckProxy`: a TCP proxy between the sink and Mosquitto that parses the packets going
  each way, counts them, can hold back the broker's acknowledgements of one kind (PUBACK,
  PUBCOMP…) until released, and can cut every connection (a network failure);
- :func:`sink_route`: the sink behind its durable buffer, as the runtime builds it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.buffer import DiskQueue
from gateway.component import RuntimeContext
from gateway.mqtt import wire
from gateway.pipeline import Backoff
from gateway.route import Route
from gateway.settings import BufferSettings
from gateway.sinks.mqtt.config import MqttSinkConfig
from gateway.sinks.mqtt.sink import MqttSink
from tests.fixtures.mosquitto import Mosquitto
from tests.mqtt.packets import split_packets


@dataclass(frozen=True)
class BrokerAddress:
    """A broker the tests did not start (the demo's embedded one)."""

    host: str
    plain_port: int


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    properties: dict[str, Any]

    def json(self) -> Any:
        return orjson.loads(self.payload)


class Witness:
    """An independent paho subscriber to ``topic`` (QoS 2) that keeps every message it gets."""

    def __init__(
        self,
        broker: Mosquitto | BrokerAddress,
        topic: str = "lab/#",
        *,
        client_id: str = "witness",
        persistent: bool = False,
        qos: int = 2,
        protocol: int = 5,
    ) -> None:
        self.topic = topic
        self.lock = threading.Lock()
        self.messages: list[Received] = []
        self.subscriptions = 0
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=paho.MQTTv5 if protocol == 5 else paho.MQTTv311,
            reconnect_on_failure=True,
        )
        self.client.reconnect_delay_set(1, 1)
        self.client.max_inflight_messages_set(65535)
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.on_connect = lambda client, userdata, flags, rc, props: client.subscribe(topic, qos=qos)
        if protocol == 5:
            properties = None
            if persistent:
                properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
                properties.SessionExpiryInterval = 3600
            self.client.connect(broker.host, broker.plain_port, clean_start=not persistent, properties=properties)
        else:
            self.client.connect(broker.host, broker.plain_port)
        self.client.loop_start()
        deadline = time.monotonic() + 30
        while not self.subscriptions:
            if time.monotonic() > deadline:
                raise AssertionError(f"the witness did not subscribe to {topic!r} within 30 s")
            time.sleep(0.02)

    def _on_message(self, client: Any, userdata: Any, message: paho.MQTTMessage) -> None:
        properties = message.properties
        props = {} if properties is None else dict(properties.json())  # type: ignore[no-untyped-call]
        with self.lock:
            self.messages.append(
                Received(message.topic, bytes(message.payload), message.qos, bool(message.retain), props)
            )

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, codes: Any, props: Any) -> None:
        self.subscriptions += 1

    @property
    def count(self) -> int:
        with self.lock:
            return len(self.messages)

    def received(self) -> list[Received]:
        with self.lock:
            return list(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class AckProxy:
    """A TCP proxy that counts packets each way and can hold back the broker's acknowledgements of one kind."""

    def __init__(self, broker: Mosquitto) -> None:
        self.target = (broker.host, broker.port)
        self.server: asyncio.Server | None = None
        self.port = 0
        self.up: Counter[int] = Counter()  # packet type → count, client → broker
        self.down: Counter[int] = Counter()  # broker → client
        self.dup_publishes = 0
        self.hold: int | None = None  # packet type held back (wire.PUBACK, wire.PUBCOMP…)
        self.held: list[tuple[asyncio.StreamWriter, bytes]] = []
        self.writers: list[asyncio.StreamWriter] = []
        self.tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    async def __aenter__(self) -> AckProxy:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        self.cut()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.server.wait_closed()

    def release(self) -> None:
        """Stop holding; send what was held, in order."""
        self.hold = None
        held, self.held = self.held, []
        for writer, packet in held:
            if not writer.is_closing():
                writer.write(packet)

    def cut(self) -> None:
        """Close every connection at once (the cable is pulled); held packets are lost with them."""
        self.held.clear()
        for writer in self.writers:
            with contextlib.suppress(Exception):
                writer.transport.abort()
        self.writers.clear()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self.writers += [writer, up_writer]
        for source, sink, up in ((reader, up_writer, True), (up_reader, writer, False)):
            task = asyncio.create_task(self._pipe(source, sink, up))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up: bool) -> None:
        rest = b""
        counter = self.up if up else self.down
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                packets, rest = split_packets(rest + data)
                out = []
                for packet in packets:
                    kind = packet[0] >> 4
                    counter[kind] += 1
                    if up and kind == wire.PUBLISH and packet[0] & 0x08:
                        self.dup_publishes += 1
                    if not up and kind == self.hold:
                        self.held.append((writer, packet))
                        continue
                    out.append(packet)
                if out:
                    writer.write(b"".join(out))
                    await writer.drain()
        writer.close()


# --- the sink under test -------------------------------------------------------------------------


def context(folder: Path) -> RuntimeContext:
    return RuntimeContext("test", folder, logging.LoggerAdapter(logging.getLogger("test.mqtt-sink"), {}))


def sink_config(broker: str, **options: Any) -> MqttSinkConfig:
    values: dict[str, Any] = {
        "name": "uns",
        "type": "mqtt",
        "broker": broker,
        "topic": "lab/{line}/{machine}/{measurement}/{field}",
        "client_id": "gw-test-uns",
        "reconnect_min": "100ms",
        "reconnect_max": "500ms",
        "connect_timeout": "5s",
        "flush_interval": "50ms",
    }
    values.update(options)
    return MqttSinkConfig.model_validate(values)


@asynccontextmanager
async def sink_route(folder: Path, broker: str, **options: Any) -> AsyncIterator[Route]:
    """The MQTT sink behind its durable buffer in ``folder``, as the runtime builds it, running until
    the block ends (the route opens and closes the sink)."""
    config = sink_config(broker, **options)
    sink = MqttSink(config, context(folder))
    buffer = folder / "buffer"
    queue = DiskQueue(buffer / sink.name, BufferSettings(path=buffer), config.batch_size, sink.log)
    route = Route(sink, config, queue, backoff=Backoff(initial=0.2, cap=1.0))
    route.GAUGE_INTERVAL = 0.1
    task = asyncio.create_task(route.run(), name="route:uns")
    try:
        yield route
    finally:
        await route.drain(time.monotonic() + 10)
        await asyncio.wait_for(task, 30)


def depth(route: Route) -> int:
    """Points in the sink's buffer, in memory or on disk, not yet confirmed by the broker."""
    queue = route.queue
    assert isinstance(queue, DiskQueue)
    return queue.queued_points + queue.store.depth_points


def written(route: Route) -> int:
    return route.status.counters.get("points_written", 0)
