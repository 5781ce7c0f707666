"""Unit tests of the MQTT source's batching and acknowledgement rules (no broker: a fake link)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from connectors.mqtt import source as source_module
from connectors.mqtt._client import Incoming, LinkOptions, MqttLink
from connectors.mqtt.config import MqttConfig
from connectors.mqtt.source import MqttSource
from gateway.component import OnStored, RuntimeContext
from gateway.logs import component_logger
from gateway.mqtt import wire
from gateway.mqtt.link import _Connection
from gateway.point import Point


def config(**overrides: Any) -> MqttConfig:
    data: dict[str, Any] = {
        "name": "t",
        "type": "mqtt",
        "broker": "mqtt://127.0.0.1:1",
        "topics": [{"filter": "a/+", "measurement": "m", "fields": {"v": "v"}}],
    }
    data.update(overrides)
    return MqttConfig.model_validate(data)


def make_source(**overrides: Any) -> MqttSource:
    context = RuntimeContext("gw", Path("."), component_logger("connector", "t"))
    return MqttSource(config(**overrides), context)


class FakeLink:
    def __init__(self) -> None:
        self.sent: list[tuple[int, int, int]] = []

    def ack(self, acks: Sequence[tuple[int, int, int]]) -> int:
        self.sent.extend(acks)
        return len(acks)


class HeldEmit:
    """An emit whose batches are 'stored' when the test says so."""

    def __init__(self) -> None:
        self.batches: list[tuple[Sequence[Point], OnStored | None]] = []

    async def __call__(self, points: Sequence[Point], on_stored: OnStored | None = None) -> None:
        self.batches.append((points, on_stored))

    def store(self, index: int) -> None:
        callback = self.batches[index][1]
        assert callback is not None
        callback()


def msg(mid: int, payload: bytes, topic: str | None = "a/x", qos: int = 1, generation: int = 7) -> Incoming:
    return Incoming(topic, payload, qos, mid, 1_000, generation)


async def test_acks_leave_in_arrival_order_whatever_order_batches_are_stored_in() -> None:
    source = make_source()
    link = FakeLink()
    source._link = link  # type: ignore[assignment]
    emit = HeldEmit()
    await source._emit(emit, [msg(1, b'{"v": 1}'), msg(2, b'{"v": 2}')])
    await source._emit(emit, [msg(3, b"not json")])  # only malformed: nothing to store, acked in turn
    await source._emit(emit, [msg(4, b'{"v": 4}', qos=0), msg(5, b'{"v": 5}')])
    assert len(emit.batches) == 2 and link.sent == []
    emit.store(1)
    assert link.sent == []  # the first batch is not stored yet
    emit.store(0)
    assert link.sent == [(7, 1, 1), (7, 2, 1), (7, 3, 1), (7, 5, 1)]  # QoS 0 needs no ack
    counters = source.status.counters
    assert (counters["received"], counters["stored"], counters["malformed"], counters["points_stored"]) == (5, 4, 1, 4)
    assert source.status.detail["topics"]["a/+"] == {"received": 5, "stored": 4, "malformed": 1}


async def test_a_batch_not_handed_over_is_not_acknowledged() -> None:
    source = make_source()
    link = FakeLink()
    source._link = link  # type: ignore[assignment]

    async def failing_emit(points: Sequence[Point], on_stored: OnStored | None = None) -> None:
        raise RuntimeError("pipeline closed")

    emit = HeldEmit()
    await source._emit(emit, [msg(1, b'{"v": 1}')])
    with pytest.raises(RuntimeError):
        await source._emit(failing_emit, [msg(2, b'{"v": 2}')])
    await source._emit(emit, [msg(3, b'{"v": 3}')])
    emit.store(0)
    emit.store(1)
    assert link.sent == [(7, 1, 1), (7, 3, 1)]  # 2 is redelivered by the broker


async def test_unmatched_topics_and_bad_topic_names_are_counted_and_acknowledged() -> None:
    source = make_source()
    link = FakeLink()
    source._link = link  # type: ignore[assignment]
    await source._emit(HeldEmit(), [msg(1, b'{"v": 1}', topic="b/x"), msg(2, b'{"v": 1}', topic=None)])
    assert link.sent == [(7, 1, 1), (7, 2, 1)]
    assert (source.status.counters["unmatched"], source.status.counters["malformed"]) == (1, 1)


async def test_malformed_messages_are_logged_with_their_topic_at_most_10_per_minute(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = make_source()
    source._link = FakeLink()  # type: ignore[assignment]
    caplog.set_level(logging.WARNING)
    await source._emit(HeldEmit(), [msg(i, b"{broken " + bytes([i % 256])) for i in range(1, 31)])
    lines = [r.getMessage() for r in caplog.records if "malformed message on topic 'a/x'" in r.getMessage()]
    assert len(lines) == 10
    assert "payload is not valid JSON" in lines[0] and "payload '{broken \\x01' (9 bytes)" in lines[0]
    # A minute later the next one is logged, with the sum of those that were not.
    monkeypatch.setattr(source._malformed_log, "started", source._malformed_log.started - 61)
    await source._emit(HeldEmit(), [msg(99, b"{broken")])
    assert "20 more malformed messages were skipped without a log line each" in caplog.text
    assert source.status.counters["malformed"] == 31


class Events:
    def __getattr__(self, name: str) -> Any:
        return lambda *args: None


class Transport:
    """What a connection's transport is asked to do, recorded."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.paused = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def is_closing(self) -> bool:
        return False


def connected_link(**overrides: Any) -> tuple[MqttLink, Any, Transport]:
    """A link whose connection was accepted (CONNACK) over a recorded transport, without a broker."""
    link = MqttLink(LinkOptions.from_config(config(**overrides), "cid"), Events())
    conn = _Connection(link, 5)
    transport = Transport()
    conn.transport = transport  # type: ignore[assignment]
    conn.data_received(wire.encode_connack(0, session_present=True, version=link.options.version))
    transport.written.clear()  # the SUBSCRIBE
    return link, conn, transport


def publish(topic: bytes, qos: int, mid: int = 0, payload: bytes = b"1") -> bytes:
    return wire.encode_publish(topic, payload, qos=qos, packet_id=mid)


async def test_qos0_beyond_max_buffered_is_dropped_and_counted_qos1_is_kept(caplog: pytest.LogCaptureFixture) -> None:
    link, conn, transport = connected_link(max_buffered=1000)
    conn.data_received(b"".join(publish(b"a/x", 0) for _ in range(1500)))
    assert len(link.incoming) == 1000
    conn.data_received(publish(b"a/x", 1, 9))
    assert len(link.incoming) == 1001  # QoS 1 is never dropped: the broker's window bounds it
    assert transport.paused  # but the socket is no longer read until the consumer catches up
    conn.data_received(publish(b"\xff/x", 1, 10))
    assert link.incoming[-1].topic is None and link.incoming[-1].mid == 10
    link.take(1000)
    assert not transport.paused

    source = make_source(max_buffered=1000)
    caplog.set_level(logging.WARNING)
    source.dropped(500)
    source.dropped(20)
    assert source.status.counters["dropped"] == 520
    assert caplog.text.count("QoS 0 messages beyond 1000 held are being dropped") == 1


async def test_acks_for_a_dropped_connection_are_not_sent() -> None:
    link, conn, transport = connected_link()
    assert link.generation == 5
    assert link.ack([(4, 1, 1), (5, 2, 1), (5, 3, 2), (5, 4, 0)]) == 2
    # One write: PUBACK 2, then PUBREC 3 (QoS 2: released by the broker's PUBREL, then PUBCOMP).
    assert transport.written == [b"\x40\x02\x00\x02" + b"\x50\x02\x00\x03"]
    conn.connection_lost(None)
    assert link.ack([(5, 5, 1)]) == 0  # not connected


def test_client_id_defaults_to_gateway_and_connector_name() -> None:
    assert make_source().client_id == "gw-t"
    assert make_source(client_id="fixed").client_id == "fixed"
    assert source_module.BATCH_MESSAGES >= 1000
