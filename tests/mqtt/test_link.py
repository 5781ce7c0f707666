"""The MQTT link (gateway/mqtt/link.py) against a real Mosquitto, an independent paho peer and a TCP proxy.

What is proved here, each with the broker's own behaviour as the witness:

- receiving QoS 0/1/2 with MQTT 5 and 3.1.1; a message not acknowledged is redelivered on the
  next connection of a persistent session, an acknowledged one is not;
- QoS 2: PUBREC leaves only once the consumer says the message is stored (held, the link
  killed, reconnected: the broker sends the PUBLISH again, which it would not after a PUBREC);
- keep-alive: a connection that stops forwarding without closing (a proxy that freezes) is
  detected within 1.5 times the keep-alive and reopened once the path works again;
- publishing QoS 0/1/2 to an independent paho subscriber, with MQTT 5 properties; the broker's
  receive maximum bounds the messages in flight; messages in flight when the broker dies are
  sent again after it restarts; a refused message raises an error naming the reason;
- the will message reaches a subscriber when the link dies, not when it closes cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import os
import queue
import select
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway.mqtt import wire
from gateway.mqtt.link import (
    Incoming,
    LinkClosed,
    LinkOptions,
    MqttLink,
    PublishRefused,
    Subscription,
    Will,
    _Connection,
)
from tests.fixtures.mosquitto import Mosquitto, Publisher
from tests.helpers import async_wait_until


class Recorder:
    """The link's events, with the loop time of each."""

    def __init__(self) -> None:
        self.events: list[tuple[float, str, Any]] = []

    def _add(self, kind: str, value: Any) -> None:
        self.events.append((time.monotonic(), kind, value))

    def connected(self, session_present: bool, reconnect: bool) -> None:
        self._add("connected", (session_present, reconnect))

    def connect_failed(self, message: str, unauthorized: bool) -> None:
        self._add("connect_failed", message)

    def disconnected(self, message: str) -> None:
        self._add("disconnected", message)

    def subscribe_failed(self, message: str) -> None:
        self._add("subscribe_failed", message)

    def subscribed(self, filters: list[str]) -> None:
        self._add("subscribed", filters)

    def dropped(self, count: int) -> None:
        self._add("dropped", count)

    def of(self, kind: str) -> list[Any]:
        return [value for _, k, value in self.events if k == kind]


def options(broker: Mosquitto, client_id: str, **overrides: Any) -> LinkOptions:
    values: dict[str, Any] = {
        "host": broker.host,
        "port": broker.port,
        "client_id": client_id,
        "reconnect_min": 0.1,
        "reconnect_max": 0.5,
        "connect_timeout": 5.0,
    }
    values.update(overrides)
    return LinkOptions(**values)


async def subscribed(link: MqttLink, events: Recorder, count: int = 1) -> None:
    await async_wait_until(lambda: len(events.of("subscribed")) >= count, timeout=30, message="SUBACK")


async def collect(link: MqttLink, count: int, timeout: float = 30) -> list[Incoming]:
    got: list[Incoming] = []

    async def read() -> None:
        async for batch in link.batches(1000):
            got.extend(batch)
            if len(got) >= count:
                return

    try:
        await asyncio.wait_for(read(), timeout)
    except TimeoutError:
        raise AssertionError(f"received {len(got)} of {count} messages: {got}") from None
    return got


async def nothing_before_marker(link: MqttLink, broker: Mosquitto, topic: str) -> list[Incoming]:
    """Publish a marker and return what arrived before it: proves no redelivery without a fixed sleep."""
    with Publisher(broker, client_id="marker") as publisher:
        publisher.publish(topic, b"marker", qos=1)
        publisher.wait()
    got: list[Incoming] = []

    async def read() -> None:
        async for batch in link.batches(1000):
            for message in batch:
                if message.payload == b"marker":
                    link.ack([(message.generation, message.mid, message.qos)])
                    return
                got.append(message)

    await asyncio.wait_for(read(), 30)
    return got


def paho_properties(message: paho.MQTTMessage) -> dict[str, Any]:
    properties = message.properties
    return {} if properties is None else dict(properties.json())  # type: ignore[no-untyped-call]


class Subscriber:
    """An independent paho subscriber on its own network thread."""

    def __init__(self, broker: Mosquitto, topic: str, *, client_id: str = "witness", clean: bool = True) -> None:
        self.messages: queue.Queue[paho.MQTTMessage] = queue.Queue()
        self.ready = queue.Queue[int]()
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5, reconnect_on_failure=True
        )
        self.client.reconnect_delay_set(1, 1)
        self.client.on_message = lambda client, userdata, message: self.messages.put(message)
        self.client.on_subscribe = lambda client, userdata, mid, codes, props: self.ready.put(mid)
        self.client.on_connect = lambda client, userdata, flags, rc, props: client.subscribe(topic, qos=2)
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        properties = None
        if not clean:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = 3600
        self.client.connect(broker.host, broker.plain_port, clean_start=clean, properties=properties)
        self.client.loop_start()
        self.ready.get(timeout=30)

    def get(self, timeout: float = 30) -> paho.MQTTMessage:
        return self.messages.get(timeout=timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# --- receiving -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_receives_qos_0_1_and_2_and_acknowledges_after_store(mosquitto: Mosquitto, protocol: str) -> None:
    events = Recorder()
    subs = (Subscription("q0/#", 0), Subscription("q1/#", 1), Subscription("q2/#", 2))
    async with MqttLink(options(mosquitto, "gw-recv", protocol=protocol, subscriptions=subs), events) as link:
        await subscribed(link, events)
        assert events.of("subscribed") == [["q0/#", "q1/#", "q2/#"]]
        assert events.of("connected") == [(False, False)]
        with Publisher(mosquitto, protocol=5 if protocol == "5" else 311) as publisher:
            for qos in (0, 1, 2):
                for i in range(50):
                    publisher.publish(f"q{qos}/m{i % 5}", f"{qos}:{i}".encode(), qos=qos)
            publisher.wait()
        got = await collect(link, 150)
        assert sorted((m.topic, m.payload, m.qos) for m in got) == sorted(
            (f"q{qos}/m{i % 5}", f"{qos}:{i}".encode(), qos) for qos in (0, 1, 2) for i in range(50)
        )
        assert {m.generation for m in got} == {link.generation}
        assert link.ack([(m.generation, m.mid, m.qos) for m in got]) == 100  # QoS 0 needs none
        # Every QoS 1 and 2 exchange completes: the broker's session is empty after a reconnect.
        await async_wait_until(lambda: not link._qos2_received, timeout=30, message="PUBREL for every PUBREC")
    async with MqttLink(options(mosquitto, "gw-recv", protocol=protocol, subscriptions=subs), Recorder()) as link:
        assert await nothing_before_marker(link, mosquitto, "q1/marker") == []


async def test_a_message_not_acknowledged_is_redelivered_after_reconnect(mosquitto: Mosquitto) -> None:
    subs = (Subscription("plant/#", 1),)
    async with MqttLink(options(mosquitto, "gw-redeliver", subscriptions=subs), events := Recorder()) as link:
        await subscribed(link, events)
        with Publisher(mosquitto) as publisher:
            for i in range(20):
                publisher.publish(f"plant/m{i}", str(i).encode(), qos=1)
            publisher.wait()
        first = await collect(link, 20)
        link.ack([(m.generation, m.mid, m.qos) for m in first[:5]])  # the first five are "stored"
    # The next connection of the same session gets the other fifteen again. (Mosquitto 2.0.11 may
    # also resend some of the five acknowledged just before the DISCONNECT: at least once.)
    async with MqttLink(options(mosquitto, "gw-redeliver", subscriptions=subs), events := Recorder()) as link:
        again: list[Incoming] = []
        unacked = {str(i).encode() for i in range(5, 20)}
        while not unacked <= {m.payload for m in again}:
            again += await collect(link, 1)
        assert {m.payload for m in again} <= {str(i).encode() for i in range(20)}
        assert events.of("connected") == [(True, False)]
        link.ack([(m.generation, m.mid, m.qos) for m in again])
        assert await nothing_before_marker(link, mosquitto, "plant/marker") == []


async def test_qos2_pubrec_leaves_only_after_the_store_said_so(mosquitto: Mosquitto) -> None:
    subs = (Subscription("press/#", 2),)
    async with MqttLink(options(mosquitto, "gw-qos2", subscriptions=subs), events := Recorder()) as link:
        await subscribed(link, events)
        with Publisher(mosquitto) as publisher:
            publisher.publish("press/p1", b"180.5", qos=2)
            publisher.wait()
        [held] = await collect(link, 1)
        assert held.qos == 2
        # The store has not answered: the link dies (a crash, a cable pulled).
        conn = link._conn
        assert conn is not None and conn.transport is not None
        conn.transport.abort()
        await async_wait_until(lambda: events.of("disconnected"), timeout=30)
        # Reconnected, the broker sends the PUBLISH again: it never had a PUBREC (after one it
        # would only send PUBREL). The held message's acknowledgement is for the dead connection.
        [again] = await collect(link, 1)
        assert (again.topic, again.payload, again.qos) == ("press/p1", b"180.5", 2)
        assert again.generation != held.generation
        assert link.ack([(held.generation, held.mid, 2)]) == 0
        assert link.ack([(again.generation, again.mid, 2)]) == 1  # stored: PUBREC, PUBREL, PUBCOMP
        await async_wait_until(lambda: not link._qos2_received, timeout=30, message="PUBREL answered")
    async with MqttLink(options(mosquitto, "gw-qos2", subscriptions=subs), Recorder()) as link:
        assert await nothing_before_marker(link, mosquitto, "press/marker") == []


async def test_a_repeated_qos2_publish_is_answered_but_not_delivered_twice() -> None:
    """Unit level (a recorded transport): the broker did not get our PUBREC and sends the PUBLISH again."""
    async with MqttLink(LinkOptions("127.0.0.1", 1, "cid", reconnect_min=60, reconnect_max=60), Recorder()) as link:
        conn, transport = fake_connection(link)
        publish = wire.encode_publish("a/b", b"1", qos=2, packet_id=7)
        conn.data_received(publish)
        conn.data_received(publish)  # on the same connection, before it is stored: not again
        assert [m.mid for m in link.take(10)] == [7]
        assert link.ack([(conn.generation, 7, 2)]) == 1
        assert transport.written[-1] == b"\x50\x02\x00\x07"  # PUBREC
        conn.data_received(wire.encode_publish("a/b", b"1", qos=2, packet_id=7, dup=True))
        assert link.take(10) == [] and transport.written[-1] == b"\x50\x02\x00\x07"  # PUBREC again, no delivery
        conn.data_received(wire.encode_acks(wire.PUBREL, [7]))
        assert transport.written[-1] == b"\x70\x02\x00\x07"  # PUBCOMP
        conn.data_received(publish)  # the identifier is free again: a new message
        assert [m.mid for m in link.take(10)] == [7]


class FakeTransport:
    """A transport that records what the link writes; closing it ends the connection as a socket would."""

    def __init__(self, conn: _Connection) -> None:
        self.conn = conn
        self.written: list[bytes] = []
        self.aborted = False
        self.pauses = self.resumes = 0

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def abort(self) -> None:
        if not self.aborted:
            self.aborted = True
            asyncio.get_running_loop().call_soon(self.conn.connection_lost, None)

    close = abort

    def is_closing(self) -> bool:
        return self.aborted

    def pause_reading(self) -> None:
        self.pauses += 1

    def resume_reading(self) -> None:
        self.resumes += 1


GENERATIONS = itertools.count(1_000_000)


def fake_connection(link: MqttLink, **connack: Any) -> tuple[_Connection, FakeTransport]:
    """A connection the link takes as accepted by a broker (CONNACK), writing into a FakeTransport."""
    conn = _Connection(link, next(GENERATIONS))
    transport = FakeTransport(conn)
    conn.transport = transport  # type: ignore[assignment]
    conn.data_received(wire.encode_connack(0, **connack))
    return conn, transport


async def test_a_malformed_packet_closes_the_connection_with_a_clear_message() -> None:
    async with MqttLink(LinkOptions("127.0.0.1", 1, "cid", reconnect_min=60, reconnect_max=60), Recorder()) as link:
        conn, transport = fake_connection(link)
        conn.data_received(b"\x36\x05\x00\x01a\x00\x01")  # QoS 3
        assert transport.aborted
        assert conn.reason == (
            "malformed PUBLISH packet from the broker: QoS 3 does not exist; closing the connection to the "
            "broker at 127.0.0.1:1"
        )
        conn2, transport2 = fake_connection(link)
        conn2.data_received(wire._fixed(0xF0, b"\x18\x00"))  # AUTH
        assert transport2.aborted and "enhanced authentication (AUTH)" in (conn2.reason or "")


# --- keep-alive and a frozen connection ------------------------------------------------------------------


class Proxy:
    """A TCP proxy that can freeze: it stops forwarding in both directions without closing anything."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.frozen = asyncio.Event()
        self.thawed = asyncio.Event()
        self.thawed.set()
        self.server: asyncio.Server | None = None
        self.port = 0
        self.tasks: set[asyncio.Task[None]] = set()
        self.writers: list[asyncio.StreamWriter] = []
        self.observe: Callable[[str, bytes], None] | None = None

    async def __aenter__(self) -> Proxy:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.close()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.server.wait_closed()

    def freeze(self) -> None:
        self.thawed.clear()

    def thaw(self) -> None:
        self.thawed.set()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self.writers.append(up_writer)
        for source, sink, direction in ((reader, up_writer, "up"), (up_reader, writer, "down")):
            task = asyncio.create_task(self._pipe(source, sink, direction))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, direction: str) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while True:
                await self.thawed.wait()
                data = await reader.read(65536)
                if not data:
                    break
                await self.thawed.wait()  # frozen: hold the bytes, keep the sockets open
                if self.observe is not None:
                    self.observe(direction, data)
                writer.write(data)
                await writer.drain()
        writer.close()


async def test_a_frozen_connection_is_detected_within_1_5_keepalives_and_reopened(mosquitto: Mosquitto) -> None:
    keepalive = 2.0
    async with Proxy(mosquitto.host, mosquitto.port) as proxy:
        subs = (Subscription("cell/#", 1),)
        link_options = options(
            mosquitto, "gw-frozen", port=proxy.port, keepalive=keepalive, connect_timeout=1.5, subscriptions=subs
        )
        async with MqttLink(link_options, events := Recorder()) as link:
            await subscribed(link, events)
            conn = link._conn
            assert conn is not None
            # Idle for a while: PINGREQ/PINGRESP keep the connection up (no false alarm).
            await async_wait_until(lambda: conn.ping_sent > 0 and conn.last_in > conn.ping_sent, timeout=10)
            assert not events.of("disconnected")
            proxy.freeze()
            frozen_at = time.monotonic()
            await async_wait_until(lambda: events.of("disconnected"), timeout=3 * keepalive + 5)
            detected_at, _, message = next(e for e in events.events if e[1] == "disconnected")
            assert detected_at - frozen_at <= 1.5 * keepalive + 1.0, (detected_at - frozen_at, message)
            assert message.startswith(f"no packet from the broker at 127.0.0.1:{proxy.port} for ")
            assert "the connection is frozen" in message
            # Through the frozen proxy every attempt times out; once it forwards again the link is back.
            await async_wait_until(lambda: events.of("connect_failed"), timeout=10)
            assert "no answer from the broker" in events.of("connect_failed")[0]
            proxy.thaw()
            await subscribed(link, events, 2)
            assert len(events.of("disconnected")) == 1  # logged once
            with Publisher(mosquitto) as publisher:
                publisher.publish("cell/after", b"back", qos=1)
                publisher.wait()
            [message_after] = await collect(link, 1)
            assert message_after.payload == b"back"


# --- publishing ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_publish_qos_0_1_2_reaches_an_independent_paho_subscriber(mosquitto: Mosquitto, protocol: str) -> None:
    witness = Subscriber(mosquitto, "out/#")
    try:
        async with MqttLink(options(mosquitto, "gw-pub", protocol=protocol), Recorder()) as link:
            v5 = protocol == "5"
            properties: wire.Properties = (
                {
                    "message_expiry_interval": 3600,
                    "content_type": "application/json",
                    "payload_format_indicator": 1,
                    "user_property": [("site", "north"), ("line", "2")],
                }
                if v5
                else {}
            )
            for qos in (0, 1, 2):
                await link.publish(f"out/q{qos}", f'{{"q": {qos}}}'.encode(), qos=qos, properties=properties or None)
            await link.publish_many([(f"out/many/{i}", str(i).encode()) for i in range(100)], qos=1)
            await link.publish("out/retained", b"r", qos=1, retain=True)
            got = [witness.get() for _ in range(104)]
            by_topic = {m.topic: m for m in got}
            for qos in (0, 1, 2):
                message = by_topic[f"out/q{qos}"]
                assert (message.payload, message.qos) == (f'{{"q": {qos}}}'.encode(), qos)
                if v5:
                    assert paho_properties(message) == {
                        "ContentType": "application/json",
                        "UserProperty": [("site", "north"), ("line", "2")],
                        "PayloadFormatIndicator": 1,
                        "MessageExpiryInterval": paho_properties(message)["MessageExpiryInterval"],
                    }
                    assert 3500 < paho_properties(message)["MessageExpiryInterval"] <= 3600
            assert sorted(m.payload for m in got if m.topic.startswith("out/many/")) == sorted(
                str(i).encode() for i in range(100)
            )
            assert link.in_flight == 0 and link.queued == 0
            with pytest.raises(ValueError, match="cannot be published to"):
                await link.publish("out/+", b"x")
    finally:
        witness.close()
    late = Subscriber(mosquitto, "out/retained", client_id="late")
    try:
        message = late.get()
        assert (message.topic, message.payload, message.retain) == ("out/retained", b"r", True)
    finally:
        late.close()


async def test_the_brokers_receive_maximum_bounds_the_messages_in_flight(mosquitto_factory: Any) -> None:
    broker = mosquitto_factory(max_inflight_messages=5)  # Mosquitto announces it as receive maximum
    outstanding = highest = 0
    buffers = {"up": b"", "down": b""}

    def observe(direction: str, data: bytes) -> None:
        """Count PUBLISH going up and PUBACK coming down, as the proxy forwards them."""
        nonlocal outstanding, highest
        packets, buffers[direction] = _split_stream(buffers[direction] + data)
        kind = wire.PUBLISH if direction == "up" else wire.PUBACK
        count = sum(1 for packet in packets if packet[0] >> 4 == kind)
        outstanding += count if direction == "up" else -count
        highest = max(highest, outstanding)

    async with Proxy(broker.host, broker.port) as proxy:
        proxy.observe = observe
        async with MqttLink(options(broker, "gw-window", port=proxy.port), Recorder()) as link:
            await async_wait_until(lambda: link.connected, timeout=30)
            assert link._window == 5
            await link.publish_many([(f"w/{i}", b"x" * 10) for i in range(500)], qos=1)
    assert highest == 5


def _arrived(reader: asyncio.Task[Any], link: MqttLink, count: int) -> bool:
    return reader.done() or len(link.incoming) >= count


async def _first_batch(link: MqttLink, timeout: float, **gather: Any) -> list[Incoming]:
    async def first() -> list[Incoming]:
        async for batch in link.batches(1000, **gather):
            return batch
        raise AssertionError("batches() ended without a batch")

    return await asyncio.wait_for(first(), timeout)


async def test_mqtt5_gathering_goes_on_through_pauses_until_enough_messages_wait(mosquitto: Mosquitto) -> None:
    """A pause no longer ends a batch: under a steady stream Mosquitto (Nagle on) pauses between
    reads until our side acknowledges, and a batch per pause cost a disk sync every few ms."""
    subs = (Subscription("g/#", 1),)
    async with MqttLink(options(mosquitto, "gw-gather", subscriptions=subs), events := Recorder()) as link:
        await subscribed(link, events)
        assert link.broker_window == 65535  # Mosquitto with max_inflight_messages 0 announces no limit
        reader = asyncio.create_task(_first_batch(link, 60, linger=60.0, linger_below=3, quiet=0.001))
        await asyncio.sleep(0)  # the reader runs up to its wait for the first message
        with Publisher(mosquitto, client_id="gather-pub") as publisher:
            for i in range(3):
                publisher.publish(f"g/{i}", f"m{i}".encode(), qos=1)
                await asyncio.to_thread(publisher.wait)
                # each arrival seen before the next is published: pauses far longer than `quiet`
                await async_wait_until(functools.partial(_arrived, reader, link, i + 1), timeout=30)
        batch = await reader
        assert [m.payload for m in batch] == [b"m0", b"m1", b"m2"]
        assert link.unacked == 3
        assert link.ack([(m.generation, m.mid, m.qos) for m in batch]) == 3
        assert link.unacked == 0


async def test_mqtt5_gathering_ends_when_the_linger_runs_out(mosquitto: Mosquitto) -> None:
    """One message, neither enough nor a full window: it is handed over when the linger ends."""
    subs = (Subscription("l/#", 1),)
    async with MqttLink(options(mosquitto, "gw-linger", subscriptions=subs), events := Recorder()) as link:
        await subscribed(link, events)
        reader = asyncio.create_task(_first_batch(link, 30, linger=0.2, linger_below=500))
        await asyncio.sleep(0)  # the reader runs up to its wait for the first message
        with Publisher(mosquitto, client_id="linger-pub") as publisher:
            publisher.publish("l/0", b"m0", qos=1)
            await asyncio.to_thread(publisher.wait)
            batch = await reader
        assert [m.payload for m in batch] == [b"m0"]


async def test_mqtt5_gathering_ends_at_once_when_the_brokers_window_is_full(mosquitto_factory: Any) -> None:
    """With max_inflight_messages 5 Mosquitto sends five and waits for our acknowledgements:
    the batch is handed over then, not at the end of a 60 s linger (the test's 30 s wait)."""
    broker = mosquitto_factory(max_inflight_messages=5)
    subs = (Subscription("w/#", 1),)
    async with MqttLink(options(broker, "gw-full", subscriptions=subs), events := Recorder()) as link:
        await subscribed(link, events)
        assert link.broker_window == 5
        with Publisher(broker, client_id="window-pub") as publisher:
            for i in range(15):
                publisher.publish(f"w/{i}", f"m{i}".encode(), qos=1)
            publisher.wait()
        received: list[bytes] = []
        while len(received) < 10:  # two windows' worth at least, each handed over when it was full
            batch = await _first_batch(link, 30, linger=60.0, linger_below=500)
            # (Mosquitto 2.0 may send a few more than its window once acknowledgements come in)
            assert link.unacked >= max(5, len(batch))
            received += [m.payload for m in batch]
            link.ack([(m.generation, m.mid, m.qos) for m in batch])
        assert received == [f"m{i}".encode() for i in range(len(received))]


def _readable(sock: Any, timeout: float) -> bool:
    return bool(select.select([sock.fileno()], [], [], timeout)[0])


async def test_a_steady_stream_is_read_once_per_batch_and_what_came_meanwhile_is_in_it(mosquitto: Mosquitto) -> None:
    """Once messages come in several reads per batch, the link stops reading until the linger
    ends (each wake-up of the process costs more than the messages it brings), then reads what
    arrived into that batch: nothing waits a linger longer. When the stream stops, it reads as
    messages come again."""
    linger = 3.0
    subs = (Subscription("s/#", 1),)
    async with MqttLink(options(mosquitto, "gw-steady", subscriptions=subs), events := Recorder()) as link:
        await subscribed(link, events)
        handed: asyncio.Queue[tuple[float, list[bytes]]] = asyncio.Queue()

        async def consume() -> None:
            async for batch in link.batches(1000, linger=linger, linger_below=500):
                handed.put_nowait((time.monotonic(), [m.payload for m in batch]))
                link.ack([(m.generation, m.mid, m.qos) for m in batch])

        consumer = asyncio.create_task(consume())
        try:
            with Publisher(mosquitto, client_id="steady-pub") as publisher:
                for i in range(2):  # two reads within one linger: a stream, not a lone message
                    publisher.publish(f"s/{i}", f"m{i}".encode(), qos=1)
                    await asyncio.to_thread(publisher.wait)
                    await async_wait_until(functools.partial(_arrived, consumer, link, i + 1), timeout=30)
                _, first = await asyncio.wait_for(handed.get(), 30)
                assert first == [b"m0", b"m1"]
                conn = link._conn
                assert conn is not None and conn.transport is not None
                transport, sock = conn.transport, conn.transport.get_extra_info("socket")
                await async_wait_until(lambda: not transport.is_reading(), timeout=30, message="reading paused")
                paused_at = time.monotonic()
                # The scenario: a message arrives a third into the linger.
                await async_wait_until(lambda: time.monotonic() >= paused_at + linger / 3, timeout=30)
                publisher.publish("s/2", b"m2", qos=1)
                await asyncio.to_thread(publisher.wait)
                assert await asyncio.to_thread(_readable, sock, 30)  # in our socket, not read
                waiting_since = time.monotonic()
                assert not link.incoming
                handed_at, second = await asyncio.wait_for(handed.get(), 30)
                assert second == [b"m2"]
                # Handed over when the linger it arrived in ended (about 2 s later), not a whole
                # linger after it was read (5 s: the rest of this linger and a whole next one).
                assert handed_at - waiting_since < linger
                # The next linger finds nothing: the stream stopped, and the link reads again.
                await async_wait_until(transport.is_reading, timeout=30, message="reading again")
                publisher.publish("s/3", b"m3", qos=1)
                await asyncio.to_thread(publisher.wait)
                await async_wait_until(lambda: link.incoming, timeout=30, message="m3 read as it came")
                _, third = await asyncio.wait_for(handed.get(), 30)
                assert third == [b"m3"]
        finally:
            consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await consumer


async def test_a_stream_goes_on_being_read_as_it_comes_when_the_brokers_window_is_small() -> None:
    """With a window smaller than a batch (Mosquitto's default of 20), a full window must be seen
    as it happens, so the link never stops reading to save wake-ups."""
    async with MqttLink(LinkOptions("127.0.0.1", 1, "cid", reconnect_min=60, reconnect_max=60), Recorder()) as link:
        _, small = fake_connection(link, properties={"receive_maximum": 20})
        assert link.broker_window == 20
        assert await link._gather(0.01, 500, read_at_end=True) is False
        assert small.pauses == 0
        _, wide = fake_connection(link)
        assert link.broker_window == 65535
        await link._gather(0.01, 500, read_at_end=True)
        assert (wide.pauses, wide.resumes) == (1, 1)
        await link._gather(0.01, 500, read_at_end=False)  # a lone message: read as it comes
        assert (wide.pauses, wide.resumes) == (1, 1)


async def test_mqtt311_gathering_ends_after_a_quiet_pause(mosquitto: Mosquitto) -> None:
    """MQTT 3.1.1 brokers do not announce their window: a pause of `quiet` ends the batch."""
    subs = (Subscription("q/#", 1),)
    async with MqttLink(
        options(mosquitto, "gw-quiet", protocol="3.1.1", subscriptions=subs), events := Recorder()
    ) as link:
        await subscribed(link, events)
        assert link.broker_window == 0
        with Publisher(mosquitto, client_id="quiet-pub", protocol=311) as publisher:
            publisher.publish("q/0", b"m0", qos=1)
            publisher.wait()
            batch = await _first_batch(link, 30, linger=60.0, linger_below=500, quiet=0.01)
        assert [m.payload for m in batch] == [b"m0"]


def _split_stream(data: bytes) -> tuple[list[bytes], bytes]:
    packets: list[bytes] = []
    while True:
        header = wire._header(data, 0, len(data)) if data else None
        if header is None or header[0] + header[1] > len(data):
            return packets, data
        size = header[0] + header[1]
        packets.append(data[:size])
        data = data[size:]


def _split(data: bytes) -> list[bytes]:
    return _split_stream(data)[0]


async def test_publishes_in_flight_when_the_broker_dies_are_sent_again_after_it_restarts(
    mosquitto: Mosquitto,
) -> None:
    witness = Subscriber(mosquitto, "resend/#", client_id="resend-witness", clean=False)
    try:
        async with MqttLink(options(mosquitto, "gw-resend"), events := Recorder()) as link:
            await async_wait_until(lambda: link.connected, timeout=30)
            await asyncio.to_thread(mosquitto.restart)  # SIGTERM: both sessions are saved
            await async_wait_until(lambda: len(events.of("connected")) == 2 and link.connected, timeout=30)
            assert events.of("connected")[1] == (True, True)
            await asyncio.to_thread(witness.ready.get, True, 30)
            process = mosquitto.process
            assert process is not None
            os.kill(process.pid, signal.SIGSTOP)  # the broker hangs: nothing is acknowledged
            try:
                sending = asyncio.create_task(link.publish_many([(f"resend/{i}", str(i).encode()) for i in range(200)]))
                await async_wait_until(lambda: link.in_flight == 200, timeout=30)
            finally:
                mosquitto.kill()  # SIGKILL while stopped: it never saw them
            await asyncio.to_thread(mosquitto.start)
            await asyncio.wait_for(sending, 60)  # every one acknowledged by the restarted broker
            assert link.in_flight == 0 and link.resent >= 200
            assert events.of("connected")[-1] == (True, True)  # session resumed: resent with DUP
        received: set[bytes] = set()
        while len(received) < 200:
            received.add(bytes(witness.get().payload))
        assert received == {str(i).encode() for i in range(200)}
    finally:
        witness.close()


async def test_a_refused_publish_raises_an_error_naming_the_reason(mosquitto_factory: Any, tmp_path: Path) -> None:
    acl = tmp_path / "acl"
    acl.write_text("topic readwrite allowed/#\n")
    broker = mosquitto_factory(extra=f"acl_file {acl}")
    async with MqttLink(options(broker, "gw-refused"), Recorder()) as link:
        await link.publish("allowed/a", b"1", qos=1)
        with pytest.raises(PublishRefused, match=r"refused the message on 'denied/a': Not authorized \(0x87\)") as info:
            await link.publish("denied/a", b"1", qos=1)
        assert info.value.reason_code == 0x87 and info.value.reason == "Not authorized"
        with pytest.raises(PublishRefused, match="refused 2 of the 3 messages") as many:
            await link.publish_many([("allowed/b", b"1"), ("denied/b", b"1"), ("denied/c", b"1")], qos=1)
        assert many.value.refused == 2


async def test_publish_limits_announced_by_the_broker_and_close_are_clear_errors() -> None:
    async with MqttLink(LinkOptions("127.0.0.1", 1, "cid", reconnect_min=60, reconnect_max=60), Recorder()) as link:
        conn, transport = fake_connection(
            link, properties={"maximum_qos": 1, "retain_available": 0, "maximum_packet_size": 100}
        )
        with pytest.raises(PublishRefused, match="at most QoS 1"):
            await link.publish("a", b"x", qos=2)
        with pytest.raises(PublishRefused, match="does not accept retained messages"):
            await link.publish("a", b"x", qos=1, retain=True)
        with pytest.raises(PublishRefused, match="the broker accepts at most 100"):
            await link.publish("a", b"x" * 200, qos=1)
        pending = asyncio.create_task(link.publish("a", b"x", qos=1))
        await async_wait_until(lambda: link.in_flight == 1, timeout=10)
        conn.data_received(b"\x40\x04\x00" + bytes([transport_packet_id(transport)]) + b"\x97\x00")
        with pytest.raises(PublishRefused, match=r"Quota exceeded \(0x97\)"):
            await pending
        waiting = asyncio.create_task(link.publish("a", b"y", qos=1))
        await async_wait_until(lambda: link.in_flight == 1, timeout=10)
    with pytest.raises(LinkClosed):
        await waiting


def transport_packet_id(transport: FakeTransport) -> int:
    published = [p for p in _split(b"".join(transport.written)) if p[0] >> 4 == wire.PUBLISH]
    packet = wire.decode_packet(published[-1])
    assert isinstance(packet, wire.Publish)
    return packet.packet_id


async def test_the_will_reaches_a_subscriber_when_the_link_dies_not_when_it_closes(mosquitto: Mosquitto) -> None:
    will = Will("gw/status", b"offline", qos=1, properties={"content_type": "text/plain"})
    witness = Subscriber(mosquitto, "gw/status")
    try:
        async with MqttLink(options(mosquitto, "gw-will", will=will, clean_start=True), Recorder()) as link:
            await async_wait_until(lambda: link.connected, timeout=30)
        # A clean close: the broker discards the will. A marker proves nothing came before it.
        with Publisher(mosquitto, client_id="marker") as publisher:
            publisher.publish("gw/status", b"marker", qos=1)
            publisher.wait()
        assert witness.get().payload == b"marker"
        async with MqttLink(options(mosquitto, "gw-will", will=will, clean_start=True), Recorder()) as link:
            await async_wait_until(lambda: link.connected, timeout=30)
            conn = link._conn
            assert conn is not None and conn.transport is not None
            conn.transport.abort()  # the process dies, the cable is pulled
            message = await asyncio.to_thread(witness.get)
            assert (message.payload, message.qos) == (b"offline", 1)
            assert paho_properties(message) == {"ContentType": "text/plain"}
    finally:
        witness.close()


async def test_the_link_owns_its_task_and_ends_it_on_exit(mosquitto: Mosquitto) -> None:
    async with MqttLink(options(mosquitto, "gw-tasks"), Recorder()) as link:
        await async_wait_until(lambda: link.connected, timeout=30)
        supervisor = link._supervisor
        assert supervisor is not None and not supervisor.done()
    assert supervisor.done() and not link.connected and link._conn is None


async def test_connection_failures_are_reported_in_words_with_the_brokers_address() -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)  # the CONNECT arrives; no CONNACK, the connection is closed
        writer.close()

    silent_writers: list[asyncio.StreamWriter] = []

    async def say_nothing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        silent_writers.append(writer)  # accepted, never answered

    closing = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    silent = await asyncio.start_server(say_nothing, "127.0.0.1", 0)
    try:
        for server, expected in (
            (closing, "the broker at 127.0.0.1:{port} closed the connection before accepting it"),
            (silent, "no answer from the broker at 127.0.0.1:{port} (connection timed out)"),
        ):
            port = server.sockets[0].getsockname()[1]
            link_options = LinkOptions("127.0.0.1", port, "cid", connect_timeout=0.5, reconnect_min=5, reconnect_max=5)
            async with MqttLink(link_options, events := Recorder()) as link:
                await async_wait_until(lambda: events.of("connect_failed"), timeout=30)
                assert events.of("connect_failed")[0] == expected.format(port=port)
                assert not link.connected
    finally:
        for writer in silent_writers:
            writer.close()
        for server in (closing, silent):
            server.close()
            await server.wait_closed()


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_filters_an_earlier_configuration_left_in_the_session_are_unsubscribed(
    mosquitto: Mosquitto, protocol: str
) -> None:
    # A persistent session keeps every subscription it ever had: after the filter changed from
    # plant/L0/+ to plant/+/+, a message on plant/L0/x would match both and arrive twice.
    old = options(mosquitto, "gw-stale", protocol=protocol, subscriptions=(Subscription("plant/L0/+", 1),))
    first = Recorder()
    async with MqttLink(old, first) as link:
        await subscribed(link, first)
    new_subs = (Subscription("plant/+/+", 1),)
    events = Recorder()
    new = options(mosquitto, "gw-stale", protocol=protocol, subscriptions=new_subs, stale_filters=("plant/L0/+",))
    async with MqttLink(new, events) as link:
        await subscribed(link, events)
        assert events.of("connected") == [(True, False)]  # the old session, with its old filter
        with Publisher(mosquitto, protocol=5 if protocol == "5" else 311) as publisher:
            for i in range(20):
                publisher.publish("plant/L0/x", str(i).encode(), qos=1)
            publisher.wait()
        got = await collect(link, 20)
        link.ack([(m.generation, m.mid, m.qos) for m in got])
        assert sorted(int(m.payload) for m in got) == list(range(20))
        assert await nothing_before_marker(link, mosquitto, "plant/L1/marker") == [], "each message once"
