"""The MQTT sink against a real Mosquitto, checked by an independent paho subscriber.

Every test runs the sink as the runtime does — behind its durable buffer, through a route — and
asserts what a plant engineer would check: what the subscriber received (topics, payloads,
counts), what the status says, what stays in the buffer, what the log says.

"Nothing acknowledged early" is proved with a proxy between the sink and the broker that holds
back the broker's PUBACK (QoS 1) or PUBCOMP (QoS 2): the subscriber already has the messages,
yet not one point leaves the buffer until the acknowledgement passes.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from gateway.component import State
from gateway.errors import SinkUnavailable
from gateway.mqtt import wire
from gateway.point import Point
from gateway.sinks.mqtt.sink import MqttSink
from tests.connectors.mqtt.test_tls import make_pki
from tests.fixtures.mosquitto import Mosquitto
from tests.helpers import async_wait_until
from tests.sinks.mqtt.peers import AckProxy, Witness, context, depth, sink_config, sink_route, written

T0 = 1_714_564_800_000_000_000  # 2024-05-01T12:00:00Z


def machine_points(count: int, *, start: int = 0, line: str = "A") -> list[Point]:
    """Points of a CNC machine, one field each, a millisecond apart."""
    return [
        Point("machine", {"spindle_rpm": float(i)}, {"line": line, "machine": f"cnc-{i % 5}"}, T0 + i * 1_000_000)
        for i in range(start, start + count)
    ]


def values(witness: Witness) -> list[tuple[str, int, Any]]:
    return sorted((m.topic, m.json()["timestamp_ms"], m.json()["value"]) for m in witness.received())


def expected_values(points: list[Point]) -> list[tuple[str, int, Any]]:
    return sorted(
        (f"lab/{p.tags['line']}/{p.tags['machine']}/{p.measurement}/{field}", p.time // 1_000_000, value)
        for p in points
        for field, value in p.fields.items()
    )


async def until(predicate: Any, message: str, timeout: float = 30) -> None:
    await async_wait_until(predicate, timeout=timeout, message=message)


# --- what arrives ----------------------------------------------------------------------------------------


async def test_every_point_reaches_an_independent_subscriber_as_the_contract_says(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    witness = Witness(mosquitto)
    points = [
        Point("machine", {"spindle_rpm": 12500.0, "parts": 42, "running": True, "program": "O1234"},
              {"line": "A", "machine": "cnc-01"}, T0 + 123_456_789),
        Point("machine", {"coolant_temp_c": 21.7, "coolant_temp_c_status": "UncertainLastUsableValue"},
              {"line": "A", "machine": "cnc-01", "quality": "uncertain"}, T0 + 2_000_000_000),
    ]  # fmt: skip
    try:
        async with sink_route(tmp_path, mosquitto.url) as route:
            await route.put(points, lambda: None)
            await until(lambda: witness.count == 6 and depth(route) == 0, "six messages, buffer empty")
            assert route.status.counters["points_written"] == 2
            assert route.status.counters["messages_published"] == 6
            assert route.status.state is State.RUNNING and route.status.detail["connected"] is True
        got = {m.topic: (m.json(), m.qos, m.retain) for m in witness.received()}
        assert got == {
            "lab/A/cnc-01/machine/spindle_rpm": ({"timestamp_ms": 1714564800123, "value": 12500.0}, 1, False),
            "lab/A/cnc-01/machine/parts": ({"timestamp_ms": 1714564800123, "value": 42}, 1, False),
            "lab/A/cnc-01/machine/running": ({"timestamp_ms": 1714564800123, "value": True}, 1, False),
            "lab/A/cnc-01/machine/program": ({"timestamp_ms": 1714564800123, "value": "O1234"}, 1, False),
            "lab/A/cnc-01/machine/coolant_temp_c": (
                {"timestamp_ms": 1714564802000, "value": 21.7, "quality": "uncertain"}, 1, False,
            ),
            "lab/A/cnc-01/machine/coolant_temp_c_status": (
                {"timestamp_ms": 1714564802000, "value": "UncertainLastUsableValue", "quality": "uncertain"}, 1, False,
            ),
        }  # fmt: skip
        assert type(got["lab/A/cnc-01/machine/spindle_rpm"][0]["value"]) is float
    finally:
        witness.close()


async def test_without_field_in_the_template_one_message_per_point(mosquitto: Mosquitto, tmp_path: Path) -> None:
    witness = Witness(mosquitto, "plant/#")
    point = Point("energy", {"power_w": 1250.0, "energy_kwh": 3}, {"site": "north", "meter": "m7"}, T0 + 5)
    try:
        async with sink_route(tmp_path, mosquitto.url, topic="plant/{site}/{machine|meter}/{measurement}") as route:
            await route.put([point], lambda: None)
            await until(lambda: witness.count == 1 and depth(route) == 0, "one message")
        [message] = witness.received()
        assert message.topic == "plant/north/m7/energy"
        assert message.json() == {"timestamp_ms": 1714564800000, "power_w": 1250.0, "energy_kwh": 3}
    finally:
        witness.close()


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_retain_and_message_expiry_reach_a_late_subscriber(
    mosquitto: Mosquitto, tmp_path: Path, protocol: str
) -> None:
    options: dict[str, Any] = {"retain": True, "protocol": protocol}
    if protocol == "5":
        options["message_expiry"] = "1h"
    async with sink_route(tmp_path, mosquitto.url, **options) as route:
        for i in range(3):  # the last value of each topic is the one a late subscriber gets
            await route.put([Point("m", {"v": float(i)}, {"line": "A", "machine": "x"}, T0 + i)], lambda: None)
            await until(lambda i=i: written(route) == i + 1, f"point {i} written")
    late = Witness(mosquitto, "lab/#", client_id="late")
    try:
        await until(lambda: late.count == 1, "the retained message")
        [message] = late.received()
        assert (message.topic, message.json()["value"], message.retain) == ("lab/A/x/m/v", 2.0, True)
        if protocol == "5":
            assert 3500 < message.properties["MessageExpiryInterval"] <= 3600
        else:
            assert "MessageExpiryInterval" not in message.properties
    finally:
        late.close()


# --- nothing acknowledged early ------------------------------------------------------------------------


@pytest.mark.parametrize(("qos", "held"), [(1, wire.PUBACK), (2, wire.PUBCOMP)])
async def test_nothing_leaves_the_buffer_before_the_brokers_acknowledgement(
    mosquitto: Mosquitto, tmp_path: Path, qos: int, held: int
) -> None:
    witness = Witness(mosquitto)
    points = machine_points(500)
    try:
        async with AckProxy(mosquitto) as proxy, sink_route(tmp_path, proxy.url, qos=qos) as route:
            await until(lambda: route.status.state is State.RUNNING, "sink connected")
            proxy.hold = held
            await route.put(points, lambda: None)
            # The broker has every message (the subscriber got them all), and said so (PUBREC for
            # QoS 2) — but its final acknowledgements are held: every point is still in the buffer.
            await until(lambda: witness.count == 500 and len(proxy.held) == 500, "delivered, acknowledgements held")
            if qos == 2:
                assert proxy.down[wire.PUBREC] == 500 and proxy.up[wire.PUBREL] == 500
            assert written(route) == 0 and depth(route) == 500
            proxy.release()
            await until(lambda: written(route) == 500 and depth(route) == 0, "confirmed after the acknowledgements")
        assert values(witness) == expected_values(points)  # QoS 2: each exactly once; QoS 1: no duplicate here
        assert {m.qos for m in witness.received()} == {qos}
    finally:
        witness.close()


@pytest.mark.parametrize("qos", [1, 2])
async def test_a_connection_cut_mid_batch_is_resumed_without_a_second_copy(
    mosquitto: Mosquitto, tmp_path: Path, qos: int
) -> None:
    witness = Witness(mosquitto)
    points = machine_points(300)
    try:
        async with AckProxy(mosquitto) as proxy, sink_route(tmp_path, proxy.url, qos=qos) as route:
            await until(lambda: route.status.state is State.RUNNING, "sink connected")
            proxy.hold = wire.PUBACK if qos == 1 else wire.PUBCOMP
            await route.put(points, lambda: None)
            await until(lambda: len(proxy.held) == 300, "acknowledgements held")
            proxy.hold = None
            proxy.cut()  # the cable is pulled with every message unacknowledged
            await until(lambda: written(route) == 300 and depth(route) == 0, "resumed and confirmed")
            assert route.status.counters["write_errors"] >= 1  # the route saw the cut and retried the batch
            assert route.status.counters["reconnects"] >= 1
            if qos == 1:
                # The link resent the 300 in flight with DUP; the route's retry waited for them
                # instead of publishing the batch a second time.
                assert (proxy.up[wire.PUBLISH], proxy.dup_publishes) == (600, 300)
            else:
                # QoS 2: the broker had them all (PUBREC); only PUBREL went again, nothing republished.
                assert proxy.up[wire.PUBLISH] == 300 and proxy.dup_publishes == 0
        got = values(witness)
        if qos == 2:
            assert got == expected_values(points)  # exactly once
        else:
            assert sorted(set(got)) == expected_values(points)  # at least once, duplicates exact
    finally:
        witness.close()


# --- what cannot be published --------------------------------------------------------------------------


async def test_a_missing_tag_is_counted_and_logged_once_and_its_neighbours_are_published(
    mosquitto: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="test.mqtt-sink")
    witness = Witness(mosquitto)
    try:
        async with sink_route(tmp_path, mosquitto.url) as route:
            for batch in range(3):
                good = machine_points(10, start=batch * 10)
                meters = [Point("energy", {"power_w": 1.0}, {"line": "A", "meter": f"m{i}"}, T0 + i) for i in range(4)]
                await route.put([*good[:5], *meters, *good[5:]], lambda: None)
                await until(lambda b=batch: written(route) == (b + 1) * 10, f"batch {batch} written")
            counters = route.status.counters
            assert (counters["points_missing_tag"], counters["points_rejected"]) == (12, 12)
            await until(lambda: depth(route) == 0, "every batch left the buffer")
            assert route.status.state is State.RUNNING
        await until(lambda: witness.count == 30, "the 30 points with every tag")
        lines = [r.getMessage() for r in caplog.records if "points_missing_tag" in r.getMessage()]
        assert len(lines) == 1, lines
        assert "measurement 'energy' have no tag 'machine'" in lines[0] and "meter=m0" in lines[0]
    finally:
        witness.close()


HOSTILE = [
    *("A/1", "#", "+", "line/+/#"),  # wildcards and level separators
    *("tab\there", "del\x7f", "nel\u0085", "nonchar\uffff"),  # characters Mosquitto refuses in a topic
    *("$SYS", "Grüße 温度 °C", "🛠"),
]


async def test_hostile_tag_values_never_change_the_tree_nor_the_connection(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    levels = Witness(mosquitto, "+/+/+/+/+", client_id="five-levels")  # only topics of exactly five levels
    points = [Point("m$", {"f/x": float(i)}, {"line": v, "machine": v}, T0 + i) for i, v in enumerate(HOSTILE)]
    try:
        async with sink_route(tmp_path, mosquitto.url, topic="{line}/lab/{machine}/{measurement}/{field}") as route:
            await route.put(points, lambda: None)
            await until(lambda: levels.count == len(HOSTILE) and depth(route) == 0, "every hostile point")
            assert route.status.counters["reconnects"] == 0 and route.status.counters["points_rejected"] == 0
        topics = sorted(m.topic for m in levels.received())
        assert topics == sorted(
            [
                "A_1/lab/A_1/m$/f_x",
                "_/lab/_/m$/f_x",
                "_/lab/_/m$/f_x",
                "line____/lab/line____/m$/f_x",
                "tab_here/lab/tab_here/m$/f_x",
                "del_/lab/del_/m$/f_x",
                "nel_/lab/nel_/m$/f_x",
                "nonchar_/lab/nonchar_/m$/f_x",
                "_SYS/lab/$SYS/m$/f_x",  # only a leading '$' would make it a broker topic
                "Grüße 温度 °C/lab/Grüße 温度 °C/m$/f_x",
                "🛠/lab/🛠/m$/f_x",
            ]
        )
    finally:
        levels.close()


async def test_messages_the_broker_refuses_are_dropped_and_counted_and_the_rest_published(
    mosquitto_factory: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="test.mqtt-sink")
    acl = tmp_path / "acl"
    acl.write_text("topic readwrite lab/A/#\n")  # line B is not for this gateway
    broker = mosquitto_factory(extra=f"acl_file {acl}")
    witness = Witness(broker, "lab/A/#")  # (the ACL lets nobody subscribe to more)
    points = [p for i in range(20) for p in machine_points(1, start=i, line="A" if i % 4 else "B")]
    try:
        async with sink_route(tmp_path, broker.url) as route:
            await route.put(points, lambda: None)
            await until(lambda: written(route) + route.status.counters["points_rejected"] == 20, "batch settled")
            counters = route.status.counters
            assert (counters["points_written"], counters["points_rejected"], counters["messages_refused"]) == (15, 5, 5)
            await until(lambda: depth(route) == 0, "the batch left the buffer")
            assert "5 refused by the broker: " in (route.status.last_error or "")
        await until(lambda: len({(m.topic, m.payload) for m in witness.received()}) == 15, "line A")
        # Mosquitto 2.0.11 answers PUBACK "Not authorized" and then closes the connection: a refusal
        # is read from that PUBACK, or, when the connection's reset swallowed it, the link gives the
        # message up after the broker closed the connection three times on it (reason 0x80).
        lines = [r.getMessage() for r in caplog.records if "the broker refused" in r.getMessage()]
        assert 1 <= len(lines) <= 2 and all("lab/B/" in line for line in lines), lines
        reasons = ("Not authorized (0x87)", "closed the connection each of the 3 times")
        assert any(reason in line for line in lines for reason in reasons)
    finally:
        witness.close()


# --- the connection --------------------------------------------------------------------------------------


async def test_wrong_credentials_show_unauthorized_and_keep_every_point(mosquitto_factory: Any, tmp_path: Path) -> None:
    broker = mosquitto_factory(users={"gateway": "right"})
    async with sink_route(tmp_path, broker.url, username="gateway", password="wrong") as route:
        await route.put(machine_points(50), lambda: None)
        await until(lambda: route.status.state is State.UNAUTHORIZED, "state unauthorized")
        assert "Bad user name or password" in (route.status.last_error or "") or "Not authorized" in (
            route.status.last_error or ""
        )
        await until(lambda: depth(route) == 50, "points kept in the buffer")
        assert written(route) == 0


async def test_a_broker_down_at_start_shows_backoff_and_the_points_wait_until_it_is_up(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "late-broker")  # not started yet: its port refuses connections
    witness: Witness | None = None
    try:
        async with sink_route(tmp_path, broker.url) as route:
            await route.put(machine_points(100), lambda: None)
            await until(lambda: route.status.state is State.BACKOFF, "state backoff")
            assert "connection refused" in (route.status.last_error or "")
            await until(lambda: depth(route) == 100, "points in the buffer")
            await asyncio.to_thread(broker.start)
            witness = Witness(broker)
            await until(lambda: written(route) == 100 and depth(route) == 0, "published once the broker is up", 60)
            assert route.status.state is State.RUNNING
    finally:
        if witness is not None:
            witness.close()
        broker.stop()


async def test_mqtts_with_a_client_certificate(mosquitto_factory: Any, tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    broker = mosquitto_factory(tls={"cafile": pki["cafile"], "certfile": pki["certfile"], "keyfile": pki["keyfile"],
                                    "require_certificate": Path()})  # fmt: skip
    witness = Witness(broker)  # on the plain listener
    tls = {"ca_file": str(pki["cafile"]), "cert_file": str(pki["client_cert"]), "key_file": str(pki["client_key"])}
    try:
        async with sink_route(tmp_path, broker.url, tls=tls) as route:
            await route.put(machine_points(20), lambda: None)
            await until(lambda: witness.count == 20 and depth(route) == 0, "published over TLS")
    finally:
        witness.close()
    # A broker whose certificate was not signed by the given CA is refused, with the reason.
    other = make_pki(tmp_path / "other-pki")
    sink = MqttSink(sink_config(broker.url, tls={"ca_file": str(other["cafile"])}), context(tmp_path))
    with pytest.raises(SinkUnavailable, match=r"certificate of the broker at 127\.0\.0\.1:\d+ was not accepted"):
        await sink.open()
    assert sink._holder is None


async def test_the_sink_owns_its_connection_task_and_ends_it_on_close(mosquitto: Mosquitto, tmp_path: Path) -> None:
    sink = MqttSink(sink_config(mosquitto.url), context(tmp_path))
    await sink.open()
    holder = sink._holder
    assert holder is not None and not holder.done() and sink.status.detail["connected"] is True
    await sink.close()
    assert holder.done() and sink._holder is None and sink.status.detail["connected"] is False
    assert not [t for t in asyncio.all_tasks() if (t.get_name() or "").startswith("mqtt-")]
