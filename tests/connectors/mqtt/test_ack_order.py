"""Acknowledgements against a real Mosquitto: in arrival order, after every sink, never for a batch not handed over.

The MQTT connector acknowledges a batch only once every sink it feeds has stored it, in the
order the messages arrived (MQTT requires it; a broker forgets an acknowledged message for
good), and never a batch whose hand-over to the sinks failed. tests/connectors/mqtt/test_source.py
checks these rules with a fake link; here the broker itself says what was acknowledged: the
gateway runs in process with the real MQTT connector (fixed client id, QoS 1, persistent
session) behind a proxy, and feeds two sinks of a type registered for these tests: ``slow``,
whose writes the test holds per batch, and ``fast``, which stores at once. The messages go in
as separate batches: G1, G2 (valid JSON), G3 (malformed only: nothing to store, so it is
"stored" at once — acknowledged in its turn) and G4 (valid).

Then the network is cut (the proxy stops listening and resets every connection) and a fresh
MQTT client takes the session over under the same client id: the broker redelivers exactly
the messages nobody acknowledged. Before the cut, the gateway's own link publishes a QoS 1
message and waits for its PUBACK: the broker handles a connection's packets in order, so it
has read every acknowledgement the gateway sent before it.

What each test catches (each checked by planting the bug, then removed):

- ``test_nothing_after_a_held_batch_is_acknowledged_before_it``: the ledger acknowledging a
  batch as soon as it is itself stored instead of in arrival order (G3, malformed only, was
  not redelivered: the broker had forgotten it); the fan-out acknowledging once one sink has
  the batch instead of all of them (nothing at all was redelivered).
- ``test_a_stored_batch_is_acknowledged_and_what_follows_a_held_one_is_not``: the same two bugs
  (G3, resp. all of G2..G4, missing from the redelivery), and a connector that does not
  acknowledge what was stored while it runs (G1 redelivered).
- ``test_a_batch_whose_hand_over_failed_is_not_acknowledged``: acknowledging a batch whose
  ``emit`` raised (here: cancelled at the stop's deadline while the ``slow`` sink's buffer
  cannot be opened, so the hand-over never completes): G1 was not redelivered although
  ``slow`` never had it. The fan-out bug above fails here too (``fast`` had G1).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import orjson
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from pydantic import BaseModel

from connectors.mqtt.source import MqttSource
from gateway import registry
from gateway.component import RuntimeContext, Sink, State
from gateway.config import config_model, validate_data
from gateway.mqtt import wire
from gateway.point import Point
from gateway.runtime import Gateway
from gateway.settings import BufferedSinkConfig, SinkConfig
from tests.fixtures.mosquitto import Mosquitto, Publisher
from tests.helpers import async_wait_until
from tests.sinks.mqtt.peers import AckProxy

CLIENT_ID = "gw-ack-order"
TOPIC = "acktest/meter"

# The batches, by message number n: G3 is malformed only (acknowledged in its turn, never stored).
GROUPS: dict[int, range] = {1: range(0, 10), 2: range(10, 20), 3: range(20, 23), 4: range(23, 33)}
MALFORMED_GROUP = 3
ALL = range(0, 33)


def payload(n: int) -> bytes:
    group = next(g for g, members in GROUPS.items() if n in members)
    if group == MALFORMED_GROUP:
        return b"not json %d" % n
    return orjson.dumps({"g": group, "n": n})


def numbers(payloads: Sequence[bytes]) -> set[int]:
    by_payload = {payload(n): n for n in ALL}
    return {by_payload[p] for p in payloads if p in by_payload}


def valid(*groups: int) -> list[int]:
    return [n for g in groups if g != MALFORMED_GROUP for n in GROUPS[g]]


# --- the sinks: writes held per batch ----------------------------------------------------------------


class HeldSinkConfig(SinkConfig):
    type: Literal["acktest"]


class HeldRemoteConfig(BufferedSinkConfig):
    type: Literal["acktest-remote"]


class HeldSink(Sink):
    """Stores in memory; a write holding a point of a group in :attr:`held` waits until the group is released."""

    instances: ClassVar[dict[str, HeldSink]] = {}

    def __init__(self, config: HeldSinkConfig | HeldRemoteConfig, context: RuntimeContext) -> None:
        super().__init__(config.name, config.type, context)
        self.stored: list[int] = []
        self.waiting: set[int] = set()  # groups of the write being held now
        self.held: dict[int, asyncio.Event] = {}
        HeldSink.instances[config.name] = self

    def hold(self, group: int) -> None:
        self.held[group] = asyncio.Event()

    def release(self, group: int) -> None:
        self.held[group].set()

    def release_all(self) -> None:
        for gate in self.held.values():
            gate.set()

    async def write(self, points: Sequence[Point]) -> None:
        groups = {int(p.fields["g"]) for p in points}
        gates = [self.held[g] for g in groups if g in self.held]
        self.waiting = groups if gates else set()
        for gate in gates:
            await gate.wait()
        self.waiting = set()
        self.stored.extend(int(p.fields["n"]) for p in points)


class HeldRemote(HeldSink):
    """The same store behind a network: the runtime feeds it through a durable disk buffer."""

    needs_durable_buffer: ClassVar[bool] = True


def _held(config: BaseModel, context: RuntimeContext) -> Sink:
    assert isinstance(config, HeldSinkConfig)
    return HeldSink(config, context)


def _remote(config: BaseModel, context: RuntimeContext) -> Sink:
    assert isinstance(config, HeldRemoteConfig)
    return HeldRemote(config, context)


@pytest.fixture(autouse=True)
def held_sink_types(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    registry.component_types("sink")  # the real plug-ins first
    for name, config, factory in (("acktest", HeldSinkConfig, _held), ("acktest-remote", HeldRemoteConfig, _remote)):
        monkeypatch.setitem(registry._registry, ("sink", name), registry.ComponentType("sink", name, config, factory))
    config_model.cache_clear()
    HeldSink.instances.clear()
    yield
    config_model.cache_clear()


#: A sink whose writes the test holds, and one that stores at once.
HELD_AND_FAST: list[dict[str, Any]] = [{"name": "slow", "type": "acktest"}, {"name": "fast", "type": "acktest"}]


def gateway_config(tmp_path: Path, broker_url: str, sinks: list[dict[str, Any]]) -> Any:
    return validate_data(
        {
            "gateway": {
                "name": "acktest",
                "data_dir": str(tmp_path / "data"),
                "http": {"enabled": False},
                "shutdown_timeout": "2s",
            },
            "sinks": [{"batch_size": 1000, "flush_interval": "10ms", **sink} for sink in sinks],
            "connectors": [
                {
                    "name": "meters",
                    "type": "mqtt",
                    "broker": broker_url,
                    "client_id": CLIENT_ID,
                    "qos": 1,
                    "reconnect_min": "200ms",
                    "reconnect_max": "1s",
                    "topics": [{"filter": "acktest/+", "measurement": "m", "fields": {"g": "g", "n": "n"}}],
                }
            ],
        }
    )


# --- the broker's side -------------------------------------------------------------------------------


def redelivered(broker: Mosquitto) -> set[int]:
    """Take the gateway's session over (same client id) and return the message numbers the broker redelivers.

    A marker published once the session is resumed comes after everything the broker still held
    for it (one connection: in order), so reading up to the marker reads all of it.
    """
    lock = threading.Lock()
    got: list[bytes] = []
    connected: list[bool] = []
    marker = threading.Event()

    def on_connect(client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        connected.append(bool(flags.session_present))

    def on_message(client: Any, userdata: Any, message: paho.MQTTMessage) -> None:
        if message.payload == b"marker":
            marker.set()
            return
        with lock:
            got.append(bytes(message.payload))

    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=CLIENT_ID, protocol=paho.MQTTv5)
    client.max_inflight_messages_set(65535)
    client.on_connect = on_connect
    client.on_message = on_message
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.SessionExpiryInterval = 3600
    client.connect(broker.host, broker.port, clean_start=False, properties=properties)
    client.loop_start()
    try:
        for _ in range(300):
            if connected:
                break
            time.sleep(0.1)
        assert connected == [True], "the broker had no session for the gateway's client id"
        with Publisher(broker, client_id="acktest-marker") as publisher:
            publisher.publish(TOPIC, b"marker")
            publisher.wait()
        assert marker.wait(30), "the marker did not reach the resumed session"
    finally:
        client.disconnect()
        client.loop_stop()
    with lock:
        return numbers(got)


def publish(broker: Mosquitto, members: range) -> None:
    with Publisher(broker, client_id="acktest-publisher") as publisher:
        for n in members:
            publisher.publish(TOPIC, payload(n))
        publisher.wait()


async def send_group(broker: Mosquitto, source: MqttSource, group: int) -> None:
    """Publish one group and wait until the connector has taken it (so the next one is a batch of its own)."""
    await asyncio.to_thread(publish, broker, GROUPS[group])
    last = GROUPS[group][-1] + 1
    await async_wait_until(
        lambda: source.status.counters["received"] >= last, timeout=30, message=f"group {group} received"
    )
    assert source.status.counters["received"] == last


async def connected(gateway: Gateway) -> MqttSource:
    source = gateway.sources[0]
    assert isinstance(source, MqttSource)
    await async_wait_until(
        lambda: source.status.state is State.RUNNING and source.status.detail.get("subscribed"),
        timeout=30,
        message="connector connected and subscribed",
    )
    return source


async def cut_after_barrier(source: MqttSource, proxy: AckProxy) -> None:
    """Make sure the broker has read every acknowledgement sent so far, then cut the network for good."""
    link = source._link
    assert link is not None
    # The broker answers a connection's packets in order: this PUBACK comes after it has
    # handled every PUBACK the gateway wrote before this PUBLISH.
    await asyncio.wait_for(link.publish("acktest-barrier/x", b"", qos=1), 30)
    assert proxy.server is not None
    proxy.server.close()  # no reconnection: the gateway must not take the session back
    proxy.cut()


async def wait_stored(sink: HeldSink, expected: list[int], what: str) -> None:
    await async_wait_until(lambda: sorted(sink.stored) == sorted(expected), timeout=30, message=what)


# --- the tests ---------------------------------------------------------------------------------------


async def test_nothing_after_a_held_batch_is_acknowledged_before_it(mosquitto: Mosquitto, tmp_path: Path) -> None:
    """G1's write to ``slow`` is held; G2..G4 follow (``fast`` stores them): the broker must still hold all 33."""
    async with AckProxy(mosquitto) as proxy:
        config = gateway_config(tmp_path, proxy.url, HELD_AND_FAST)
        async with Gateway(config) as gateway:
            source = await connected(gateway)
            slow, fast = HeldSink.instances["slow"], HeldSink.instances["fast"]
            slow.hold(1)
            await send_group(mosquitto, source, 1)
            await async_wait_until(lambda: slow.waiting == {1}, timeout=30, message="G1's write held")
            for group in (2, 3, 4):
                await send_group(mosquitto, source, group)
            await wait_stored(fast, valid(1, 2, 4), "G1, G2 and G4 stored by the fast sink")
            assert slow.stored == []
            await cut_after_barrier(source, proxy)
            assert await asyncio.to_thread(redelivered, mosquitto) == set(ALL)
            assert proxy.up[wire.PUBACK] == 0, "a message was acknowledged before G1 was stored"
            slow.release_all()  # the stop then writes what waits (nothing can be acknowledged any more)
            assert source.status.counters["stored"] == 0


async def test_a_stored_batch_is_acknowledged_and_what_follows_a_held_one_is_not(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """G1 stored everywhere, then G2's write to ``slow`` held: the broker must hold exactly G2, G3 and G4."""
    async with AckProxy(mosquitto) as proxy:
        config = gateway_config(tmp_path, proxy.url, HELD_AND_FAST)
        async with Gateway(config) as gateway:
            source = await connected(gateway)
            slow, fast = HeldSink.instances["slow"], HeldSink.instances["fast"]
            slow.hold(2)
            await send_group(mosquitto, source, 1)
            await wait_stored(slow, valid(1), "G1 stored by the slow sink")
            await async_wait_until(lambda: source.status.counters["stored"] == len(GROUPS[1]), timeout=30)
            await send_group(mosquitto, source, 2)
            await async_wait_until(lambda: slow.waiting == {2}, timeout=30, message="G2's write held")
            for group in (3, 4):
                await send_group(mosquitto, source, group)
            await wait_stored(fast, valid(1, 2, 4), "G1, G2 and G4 stored by the fast sink")
            await cut_after_barrier(source, proxy)
            assert await asyncio.to_thread(redelivered, mosquitto) == set(GROUPS[2]) | set(GROUPS[3]) | set(GROUPS[4])
            assert proxy.up[wire.PUBACK] == len(GROUPS[1])  # G1's, and nothing after it
            slow.release_all()


async def test_a_batch_whose_hand_over_failed_is_not_acknowledged(mosquitto: Mosquitto, tmp_path: Path) -> None:
    """G1 reaches ``fast`` but never ``slow`` (its buffer cannot be opened, the stop cancels the hand-over):
    after a clean stop, which sends every acknowledgement due before it disconnects, the broker still holds G1."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the buffer's folder should be: the buffer cannot be opened\n")
    # ``fast`` first: it has G1 before the hand-over to ``slow`` hangs.
    sinks: list[dict[str, Any]] = [
        {"name": "fast", "type": "acktest"},
        {"name": "slow", "type": "acktest-remote", "buffer": {"path": str(blocker / "buffer")}},
    ]
    async with AckProxy(mosquitto) as proxy:
        async with Gateway(gateway_config(tmp_path, proxy.url, sinks)) as gateway:
            source = await connected(gateway)
            fast = HeldSink.instances["fast"]
            # On a loaded machine G1 may come in more than one batch: the first reaches ``fast``, its
            # hand-over to ``slow`` hangs and holds the rest in the connector. Either way nothing of
            # G1 may be acknowledged.
            await asyncio.to_thread(publish, mosquitto, GROUPS[1])
            await async_wait_until(lambda: fast.stored, timeout=30, message="G1 (its first batch) stored by fast")
            assert set(fast.stored) <= set(GROUPS[1])
            # The stop: the connector's run, still handing G1 to the slow sink, is cancelled at the
            # deadline; then the link sends what acknowledgements are due and disconnects cleanly.
        assert proxy.up[wire.DISCONNECT] == 1  # a clean stop: the broker read every packet before it
        assert await asyncio.to_thread(redelivered, mosquitto) == set(GROUPS[1])
        assert proxy.up[wire.PUBACK] == 0
        assert source.status.counters["stored"] == 0
        assert HeldSink.instances["slow"].stored == []
