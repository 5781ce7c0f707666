"""The link's publishing additions for the MQTT sink, against a scripted broker that answers exactly as told.

- ``submit_many``: the future of a batch, which a caller may stop waiting on and wait on again;
  cancelling it withdraws the messages not sent yet (those in flight complete);
- ``PublishRefused.refusals``: which messages of a batch the broker refused, with their codes;
- ``give_up_after_drops``: a broker that refuses a message by closing the connection (MQTT 3.1.1
  allows nothing else; Mosquitto 2.0.11 does it for ACL-denied topics) does not make the link
  send it again forever.

Real Mosquitto runs of the same paths are in tests/sinks/mqtt/.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import pytest

from gateway.mqtt import wire
from gateway.mqtt.link import LinkOptions, MqttLink, PublishRefused
from tests.helpers import async_wait_until
from tests.mqtt.packets import split_packets


class ScriptedBroker:
    """Accepts every CONNECT (session present after the first); answers each PUBLISH with ``answer(topic)``:
    a reason code for its PUBACK, ``None`` for no answer at all, or ``-1`` to close the connection."""

    def __init__(self, answer: Callable[[str], int | None]) -> None:
        self.answer = answer
        self.server: asyncio.Server | None = None
        self.port = 0
        self.connections = 0
        self.published: list[tuple[str, bool]] = []  # (topic, DUP)
        self.tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> ScriptedBroker:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    def options(self, **overrides: object) -> LinkOptions:
        values: dict[str, object] = {"reconnect_min": 0.05, "reconnect_max": 0.1, "connect_timeout": 5.0}
        values.update(overrides)
        return LinkOptions("127.0.0.1", self.port, "gw-scripted", **values)  # type: ignore[arg-type]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        self.connections += 1
        rest = b""
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await reader.read(65536):
                packets, rest = split_packets(rest + data)
                for raw in packets:
                    packet = wire.decode_packet(raw)
                    if isinstance(packet, wire.Connect):
                        writer.write(wire.encode_connack(0, session_present=self.connections > 1))
                    elif isinstance(packet, wire.Publish):
                        assert packet.topic is not None
                        self.published.append((packet.topic, packet.dup))
                        code = self.answer(packet.topic)
                        if code == -1:
                            writer.transport.abort()
                            return
                        if code is not None:
                            writer.write(wire.encode_acks(wire.PUBACK, (packet.packet_id,), reason_code=code))
        writer.close()
        self.tasks.discard(task)


async def connected(link: MqttLink) -> None:
    await async_wait_until(lambda: link.connected, timeout=10, message="link connected")


async def test_refusals_say_which_messages_of_a_batch_the_broker_refused() -> None:
    codes = {"denied/a": 0x87, "quota/b": 0x97}
    async with ScriptedBroker(lambda topic: codes.get(topic, 0)) as broker, MqttLink(broker.options()) as link:
        await connected(link)
        messages = [("ok/1", b"1"), ("denied/a", b"2"), ("ok/2", b"3"), ("quota/b", b"4"), ("ok/3", b"5")]
        with pytest.raises(PublishRefused, match="refused 2 of the 5 messages") as caught:
            await link.publish_many(messages, qos=1)
        assert caught.value.refusals == ((1, 0x87), (3, 0x97))
        assert caught.value.refused == 2 and caught.value.reason_code == 0x87


async def test_cancelling_a_publish_withdraws_what_was_not_sent_and_lets_what_is_in_flight_complete() -> None:
    pending: list[str] = []

    def answer(topic: str) -> int | None:
        pending.append(topic)
        return None  # no PUBACK: the window stays full

    async with ScriptedBroker(answer) as broker, MqttLink(broker.options(max_inflight=10)) as link:
        await connected(link)
        future = link.submit_many([(f"m/{i}", b"x") for i in range(100)], qos=1)
        await async_wait_until(lambda: link.in_flight == 10 and link.queued == 90, timeout=10)
        future.cancel()
        await async_wait_until(lambda: link.queued == 0, timeout=10, message="the 90 not sent are withdrawn")
        assert link.in_flight == 10  # sent: they complete within the session
        assert len(pending) == 10


async def test_a_future_waited_on_again_completes_after_a_reconnect() -> None:
    """The sink's retry: stop waiting when the connection drops, wait on the same future again."""
    dropped = False

    def answer(topic: str) -> int | None:
        nonlocal dropped
        if topic == "m/5" and not dropped:
            dropped = True
            return -1  # the connection ends in the middle of the batch
        return 0

    async with ScriptedBroker(answer) as broker, MqttLink(broker.options()) as link:
        await connected(link)
        future = link.submit_many([(f"m/{i}", b"x") for i in range(10)], qos=1)
        await async_wait_until(lambda: dropped, timeout=10)
        await asyncio.wait_for(asyncio.shield(future), 10)
        assert broker.connections == 2
        # Resent once, with DUP, from m/5 on (m/6… were in flight too: the broker closed before answering).
        again = [topic for topic, dup in broker.published if dup]
        assert again[0] == "m/5" and sorted(set(t for t, _ in broker.published)) == sorted(f"m/{i}" for i in range(10))


async def test_a_message_the_broker_answers_by_disconnecting_is_given_up_after_three_drops() -> None:
    async with (
        ScriptedBroker(lambda topic: -1 if topic.startswith("bad/") else 0) as broker,
        MqttLink(broker.options(give_up_after_drops=3)) as link,
    ):
        await connected(link)
        with pytest.raises(PublishRefused, match="closed the connection each of the 3 times") as caught:
            await asyncio.wait_for(link.publish_many([("ok/1", b"1"), ("bad/x", b"2"), ("ok/2", b"3")], qos=1), 30)
        assert caught.value.refusals == ((1, 0x80),)
        assert [topic for topic, _ in broker.published].count("bad/x") == 3
        assert broker.connections == 4 and link.in_flight == 0


async def test_without_give_up_the_link_keeps_sending_the_message_as_before() -> None:
    async with (
        ScriptedBroker(lambda topic: -1 if topic.startswith("bad/") else 0) as broker,
        MqttLink(broker.options()) as link,
    ):
        await connected(link)
        future = link.submit_many([("bad/x", b"2")], qos=1)
        await async_wait_until(lambda: broker.connections >= 6, timeout=30, message="sent again at every reconnect")
        assert not future.done()
        future.cancel()
