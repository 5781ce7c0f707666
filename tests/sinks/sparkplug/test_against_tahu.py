"""The Sparkplug B sink decoded by an independent host: Eclipse Tahu's JavaScript payload library
over MQTT.js (tests/sparkplug_peer/host.js), through a real Mosquitto. What that library decodes
is what Ignition or any host would see:

- the NBIRTH (bdSeq, Node Control/Rebirth, seq 0) and a DBIRTH per device with every metric's
  name, alias, datatype, unit (engUnit) and value; DDATA with aliases only, each metric stamped
  with the point's own time, and a Quality property where the point has a quality tag;
- seq 0–255 wrapping without a gap across births and data;
- a device that gains a metric is born again before that metric's data;
- an NCMD Node Control/Rebirth brings the births again, with the last values;
- a write returns only once the broker acknowledged its messages (a frozen broker holds it);
- with a primary host, nothing is published until its STATE says online, and births come again
  when it returns.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.component import RuntimeContext
from gateway.errors import SinkUnavailable
from gateway.logs import component_logger
from gateway.point import Point
from gateway.sinks.sparkplug.config import SparkplugSinkConfig
from gateway.sinks.sparkplug.sink import SparkplugSink
from tests.fixtures.mosquitto import Mosquitto
from tests.fixtures.sparkplug import Event, PeerProcess
from tests.helpers import async_wait_until

T0 = 1_767_000_000_000  # ms
UNITS = {("press", "temp"): "°C", ("press", "pressure"): "bar"}


def press(machine: str, n: int, **extra: Any) -> Point:
    fields = {"temp": 200.0 + n, "count": n, "running": n % 2 == 0, "mode": f"auto-{n}", **extra}
    return Point("press", fields, {"machine": machine, "line": "L1"}, (T0 + n) * 1_000_000)


@pytest.fixture
async def sink(mosquitto: Mosquitto, tmp_path: Path) -> AsyncIterator[Callable[..., SparkplugSink]]:
    opened: list[SparkplugSink] = []

    def make(**options: Any) -> SparkplugSink:
        config = SparkplugSinkConfig.model_validate(
            {
                "name": "spb-out",
                "type": "sparkplug",
                "broker": mosquitto.url,
                "group": "Plant",
                "edge_node": "gateway-1",
                "reconnect_min": "100ms",
                "reconnect_max": "500ms",
                **options,
            }
        )
        context = RuntimeContext(
            "gw",
            tmp_path,
            component_logger("sink", "spb-out"),
            field_unit=lambda measurement, field: UNITS.get((measurement, field), ""),
        )
        made = SparkplugSink(config, context)
        opened.append(made)
        return made

    yield make
    for made in opened:
        await made.close()


def messages(host: PeerProcess, kind: str | None = None, device: str | None = None) -> list[Event]:
    return [m for m in host.messages(kind) if device is None or m["topic"].endswith(f"/{device}")]


async def wait_messages(host: PeerProcess, count: int, kind: str | None = None) -> list[Event]:
    await async_wait_until(lambda: len(messages(host, kind)) >= count, timeout=30, message=f"{count} {kind}")
    return messages(host, kind)


async def write_when_ready(out: SparkplugSink, points: list[Point]) -> None:
    """Write as the route does: a SinkUnavailable (not connected or born yet) is retried."""
    for _ in range(100):
        try:
            await out.write(points)
        except SinkUnavailable:
            await asyncio.sleep(0.1)
        else:
            return
    await out.write(points)


def wire_value(datatype: str, metric: dict[str, Any]) -> Any:
    """A data metric's value read from the wire with the datatype its birth declared, as a host does."""
    if datatype == "Int64":
        value = int(metric["longValue"])
        return value - 2**64 if value >= 2**63 else value
    field = {"Double": "doubleValue", "Boolean": "booleanValue", "String": "stringValue"}[datatype]
    return metric[field]


def metric_map(message: Event) -> dict[str, dict[str, Any]]:
    return {m["name"]: m for m in message["payload"]["metrics"]}


async def test_births_aliases_units_and_ddata_with_each_points_time(
    mosquitto: Mosquitto, sink: Callable[..., SparkplugSink], sparkplug_host: Callable[..., PeerProcess]
) -> None:
    host = await asyncio.to_thread(sparkplug_host, mosquitto)
    out = sink()
    await out.open()
    points = [press("P-1", 1), press("P-2", 2), press("P-1", 3)]
    points.append(Point("press", {"temp": 150.5}, {"machine": "P-2", "line": "L1", "quality": "bad"}, (T0 + 4) * 10**6))
    await write_when_ready(out, points)
    (nbirth,) = await wait_messages(host, 1, "NBIRTH")
    assert nbirth["topic"] == "spBv1.0/Plant/NBIRTH/gateway-1" and nbirth["payload"]["seq"] == "0"
    node = metric_map(nbirth)
    assert (node["bdSeq"]["type"], node["bdSeq"]["value"]) == ("Int64", "0")
    assert (node["Node Control/Rebirth"]["type"], node["Node Control/Rebirth"]["value"]) == ("Boolean", False)
    births = await wait_messages(host, 2, "DBIRTH")
    assert [b["topic"] for b in births] == ["spBv1.0/Plant/DBIRTH/gateway-1/P-1", "spBv1.0/Plant/DBIRTH/gateway-1/P-2"]
    declared = metric_map(births[0])
    assert {name: m["type"] for name, m in declared.items()} == {
        "press/L1/temp": "Double",
        "press/L1/count": "Int64",
        "press/L1/running": "Boolean",
        "press/L1/mode": "String",
    }
    assert declared["press/L1/temp"]["properties"] == {"engUnit": {"type": "String", "value": "°C"}}
    assert (declared["press/L1/temp"]["value"], declared["press/L1/count"]["value"]) == (201.0, "1")
    aliases = {(b["topic"].rsplit("/", 1)[1], name): m["alias"] for b in births for name, m in metric_map(b).items()}
    assert len(set(aliases.values()) | {node["bdSeq"]["alias"], node["Node Control/Rebirth"]["alias"]}) == 10

    data = await wait_messages(host, 4, "DDATA")
    types = {
        (b["topic"].rsplit("/", 1)[1], m["alias"]): (name, m["type"])
        for b in births
        for name, m in metric_map(b).items()
    }
    decoded = []
    for message, point in zip(data, points, strict=True):
        device = message["topic"].rsplit("/", 1)[1]
        assert device == point.tags["machine"]
        for metric in message["payload"]["raw"]["metrics"]:
            assert "name" not in metric and "datatype" not in metric  # aliases only, types from the birth
            assert metric["timestamp"] == str(point.time // 10**6)  # the point's own time
            name, datatype = types[(device, metric["alias"])]
            quality = metric.get("properties", {}).get("keys") == ["Quality"]
            decoded.append((device, name, wire_value(datatype, metric), quality))
    assert decoded[:4] == [
        ("P-1", "press/L1/temp", 201.0, False),
        ("P-1", "press/L1/count", 1, False),
        ("P-1", "press/L1/running", False, False),
        ("P-1", "press/L1/mode", "auto-1", False),
    ]
    assert decoded[-1] == ("P-2", "press/L1/temp", 150.5, True)
    assert data[-1]["payload"]["raw"]["metrics"][0]["properties"]["values"] == [{"type": 3, "intValue": 0}]
    seqs = [int(m["payload"]["seq"]) for m in host.messages() if m["payload"].get("seq") is not None]
    assert seqs == list(range(len(seqs)))


async def test_seq_wraps_past_255_and_a_new_metric_brings_a_new_dbirth_first(
    mosquitto: Mosquitto, sink: Callable[..., SparkplugSink], sparkplug_host: Callable[..., PeerProcess]
) -> None:
    host = await asyncio.to_thread(sparkplug_host, mosquitto)
    out = sink()
    await out.open()
    await write_when_ready(out, [press("P-1", n) for n in range(300)])
    await write_when_ready(out, [press("P-1", 300, speed=12.5)])  # the device gains a metric
    await wait_messages(host, 301, "DDATA")
    seqs = [int(m["payload"]["seq"]) for m in host.messages() if "seq" in m["payload"]]
    assert len(seqs) == 1 + 2 + 301  # NBIRTH, two DBIRTHs, 301 DDATA
    assert seqs == [n % 256 for n in range(len(seqs))]  # 0…255, 0…: no gap, no repeat
    kinds = [m["topic"].split("/")[2] for m in host.messages()]
    assert kinds[-2:] == ["DBIRTH", "DDATA"]  # the new birth before the data that needs it
    rebirth = metric_map(host.messages("DBIRTH")[-1])
    assert rebirth["press/L1/speed"]["value"] == 12.5 and rebirth["press/L1/temp"]["value"] == 499.0


async def test_an_ncmd_rebirth_brings_the_births_again_with_the_last_values(
    mosquitto: Mosquitto, sink: Callable[..., SparkplugSink], sparkplug_host: Callable[..., PeerProcess]
) -> None:
    host = await asyncio.to_thread(sparkplug_host, mosquitto)
    out = sink()
    await out.open()
    await write_when_ready(out, [press("P-1", 1), press("P-1", 2)])
    await wait_messages(host, 2, "DDATA")
    ncmd = {"timestamp": T0, "metrics": [{"name": "Node Control/Rebirth", "type": "Boolean", "value": True}]}
    await asyncio.to_thread(host.command, {"cmd": "publish", "topic": "spBv1.0/Plant/NCMD/gateway-1", "payload": ncmd})
    births = await wait_messages(host, 2, "NBIRTH")
    assert births[1]["payload"]["seq"] == "0" and metric_map(births[1])["bdSeq"]["value"] == "0"  # same connection
    (_, dbirth) = await wait_messages(host, 2, "DBIRTH")
    assert (
        metric_map(dbirth)["press/L1/temp"]["value"] == 202.0 and metric_map(dbirth)["press/L1/count"]["value"] == "2"
    )
    assert out.status.counters["rebirth_requests"] == 1
    await write_when_ready(out, [press("P-1", 3)])
    last = (await wait_messages(host, 3, "DDATA"))[-1]
    assert last["payload"]["seq"] == "2"  # NBIRTH 0, DBIRTH 1, then this


async def test_a_write_returns_only_once_the_broker_acknowledged_it(
    mosquitto: Mosquitto, sink: Callable[..., SparkplugSink]
) -> None:
    out = sink()
    await out.open()
    await write_when_ready(out, [press("P-1", 1)])
    process = mosquitto.process
    assert process is not None
    os.kill(process.pid, signal.SIGSTOP)  # the broker hangs: no PUBACK
    try:
        writing = asyncio.create_task(out.write([press("P-1", 2), press("P-1", 3)]))
        link = out._link
        assert link is not None
        await async_wait_until(lambda: link.in_flight == 2, timeout=30, message="two DDATA in flight")
        await asyncio.sleep(0.3)  # a write that returned early would be done by now
        assert not writing.done()
    finally:
        os.kill(process.pid, signal.SIGCONT)
    await asyncio.wait_for(writing, 30)
    assert link.in_flight == 0 and out.status.counters["points_published"] == 3


async def refused_because(out: SparkplugSink, text: str) -> bool:
    """True when a write is refused for ``text`` (taken, or refused for another reason: not yet)."""
    try:
        await out.write([press("P-1", 0)])
    except SinkUnavailable as exc:
        return text in str(exc)
    return False


async def test_with_a_primary_host_nothing_is_published_until_its_state_says_online(
    mosquitto: Mosquitto, sink: Callable[..., SparkplugSink], sparkplug_host: Callable[..., PeerProcess]
) -> None:
    host = await asyncio.to_thread(sparkplug_host, mosquitto)
    out = sink(primary_host="Ignition")
    await out.open()
    offline = "the primary host 'Ignition' is offline"
    await async_wait_until(lambda: refused_because(out, offline), timeout=30, message="refused: host offline")
    assert not host.messages()
    mosquitto.pub("spBv1.0/STATE/Ignition", '{"online": true, "timestamp": 1}', qos=1, retain=True)
    await write_when_ready(out, [press("P-1", 1)])
    await wait_messages(host, 1, "DDATA")
    assert [m["topic"] for m in host.messages()] == [
        "spBv1.0/STATE/Ignition",
        "spBv1.0/Plant/NBIRTH/gateway-1",
        "spBv1.0/Plant/DBIRTH/gateway-1/P-1",
        "spBv1.0/Plant/DDATA/gateway-1/P-1",
    ]
    mosquitto.pub("spBv1.0/STATE/Ignition", '{"online": false, "timestamp": 2}', qos=1, retain=True)
    await async_wait_until(lambda: refused_because(out, offline), timeout=30, message="refused: host offline again")
    mosquitto.pub("spBv1.0/STATE/Ignition", '{"online": true, "timestamp": 3}', qos=1, retain=True)
    await wait_messages(host, 2, "NBIRTH")  # born again for the host that came back
    await write_when_ready(out, [press("P-1", 2)])
    await wait_messages(host, 2, "DDATA")


async def test_a_write_not_acknowledged_in_time_is_written_again_after_new_births(
    mosquitto: Mosquitto, sink: Callable[..., SparkplugSink], sparkplug_host: Callable[..., PeerProcess]
) -> None:
    host = await asyncio.to_thread(sparkplug_host, mosquitto)
    out = sink(timeout="1s")
    await out.open()
    await write_when_ready(out, [press("P-1", 1)])
    await wait_messages(host, 1, "DDATA")
    process = mosquitto.process
    assert process is not None
    os.kill(process.pid, signal.SIGSTOP)  # no PUBACK within the timeout
    try:
        with pytest.raises(SinkUnavailable, match="did not acknowledge 1 messages within 1s"):
            await out.write([press("P-1", 2)])
    finally:
        os.kill(process.pid, signal.SIGCONT)
    await write_when_ready(out, [press("P-1", 2)])  # as the route retries the batch
    births = await wait_messages(host, 2, "NBIRTH")
    assert births[1]["payload"]["seq"] == "0"

    def after_the_births() -> list[Event]:
        # The DDATA of the timed-out write may arrive too (it was in flight): at least once.
        received = host.messages()
        second = [i for i, m in enumerate(received) if "/NBIRTH/" in m["topic"]][1]
        return [m for m in received[second:] if "/DDATA/" in m["topic"]]

    await async_wait_until(after_the_births, timeout=30, message="a DDATA after the new births")
    assert after_the_births()[0]["payload"]["raw"]["metrics"][0]["doubleValue"] == 202.0
