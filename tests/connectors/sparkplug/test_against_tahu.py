"""The Sparkplug B connector against an independent edge node: Eclipse Tahu's JavaScript payload
library over MQTT.js (tests/sparkplug_peer/edge.js), through a real Mosquitto.

What is right is what the edge node says it published: its own events give each message's metrics
with their names (births), aliases, datatypes, values and timestamps, and the points the
connector emits must be exactly those — every scalar type, the template's members, the Quality
property as a tag — with nothing stored under an alias or a name the edge node did not give:

- births with aliases, data carrying only aliases, a device death and its new birth, the node's
  death when the edge node is killed (its will), and STATE online/offline seen by an independent host;
- a missed birth (the connector starts after the births): the data is held, one rebirth request
  goes out, and what follows the rebirth is stored under the right names;
- a sequence gap and an unknown alias: counted, one rebirth request each episode, never stored.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from connectors.sparkplug.config import SparkplugConfig
from connectors.sparkplug.source import SparkplugSource
from gateway.component import RuntimeContext
from gateway.logs import component_logger
from gateway.point import FieldValue, Point
from gateway.sparkplug.host import ONLINE_FIELD
from tests.fakes import CollectingEmit
from tests.fixtures.mosquitto import Mosquitto
from tests.fixtures.sparkplug import Event, PeerProcess
from tests.helpers import async_wait_until

INT64_MAX = 2**63 - 1
#: Metrics that are the protocol's (not stored) or have no place in a time series (counted, skipped).
NOT_STORED = {"bdSeq", "Node Control/Rebirth", "Nozzle/Spare", "Recipe", "Blob"}
Row = tuple[tuple[tuple[str, str], ...], int, str, FieldValue]


def stored_value(kind: str, value: Any) -> FieldValue:
    """What the gateway must store for a value the peer sent (64-bit integers come as text)."""
    if kind in ("Double", "Float"):
        return float(value)
    if kind in ("Int64", "UInt64", "DateTime"):
        number = int(value)
        return float(number) if number > INT64_MAX else number
    if kind in ("Int8", "Int16", "Int32", "UInt8", "UInt16", "UInt32"):
        return int(value)
    if kind == "Boolean":
        return bool(value)
    assert kind in ("String", "Text", "UUID"), kind
    return str(value)


def expected_rows(edge: PeerProcess, group: str = "Plant", node: str = "Line-1", since: int = 0) -> set[Row]:
    """Every (tags, time, field, value) the peer's published births and data must give, from event ``since`` on.

    Alias → name comes from the peer's own births, as it published them.
    """
    names: dict[str, str] = {}
    rows: set[Row] = set()
    for event in edge.events:
        if event.get("event") != "published" or event["kind"] not in ("NBIRTH", "DBIRTH", "NDATA", "DDATA"):
            continue
        device = event["device"]
        for metric in event["metrics"]:
            if "name" in metric:
                names[f"{device}/{metric['alias']}"] = metric["name"]
        if edge.events.index(event) < since:
            continue
        tags = {"group": group, "edge_node": node, **({"device": device} if device else {})}
        for metric in event["metrics"]:
            name = metric.get("name") or names.get(f"{device}/{metric['alias']}")
            if name is None or name in NOT_STORED:  # an alias no birth named: nothing may be stored for it
                continue
            time_ns = int(metric["timestamp"]) * 1_000_000
            if metric["type"] == "Template":
                for member in metric["value"]["metrics"]:
                    key = tuple(sorted(tags.items()))
                    rows.add((key, time_ns, f"{name}/{member['name']}", stored_value(member["type"], member["value"])))
                continue
            quality = metric.get("properties", {}).get("Quality")
            row_tags = {**tags, "quality": "bad"} if quality else tags
            rows.add((tuple(sorted(row_tags.items())), time_ns, name, stored_value(metric["type"], metric["value"])))
    return rows


def rows_of(points: list[Point]) -> set[Row]:
    return {
        (tuple(sorted(p.tags.items())), p.time, name, value)
        for p in points
        for name, value in p.fields.items()
        if name != ONLINE_FIELD
    }


def typed(rows: set[Row]) -> set[tuple[Any, ...]]:
    """Rows with each value's type beside it (1 == 1.0 == True in Python; a store keeps the type)."""
    return {(*row, type(row[3]).__name__) for row in rows}


def online_marks(points: list[Point]) -> list[tuple[str | None, bool]]:
    return [(p.tags.get("device"), bool(p.fields[ONLINE_FIELD])) for p in points if ONLINE_FIELD in p.fields]


class Connector:
    """The connector running in this process, its points collected by a test ``emit``."""

    def __init__(self, source: SparkplugSource) -> None:
        self.source = source
        self.emit = CollectingEmit(ack=True)
        self.task = asyncio.create_task(source.run(self.emit))

    @property
    def points(self) -> list[Point]:
        return self.emit.points

    @property
    def counters(self) -> dict[str, int]:
        return self.source.status.counters

    async def subscribed(self) -> None:
        await async_wait_until(lambda: self.source.status.detail["subscribed"], timeout=30, message="SUBACK")

    async def stop(self) -> None:
        self.source.request_stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.task, 30)
        await self.source.aclose()


@pytest.fixture
async def connector(mosquitto: Mosquitto, tmp_path: Path) -> AsyncIterator[Callable[..., Connector]]:
    started: list[Connector] = []

    def start(**options: Any) -> Connector:
        config = SparkplugConfig.model_validate(
            {
                "name": "spb",
                "type": "sparkplug",
                "broker": mosquitto.url,
                "client_id": f"gw-spb-{len(started)}",
                "host_id": "gateway-test",
                "reconnect_min": "100ms",
                "reconnect_max": "500ms",
                **options,
            }
        )
        context = RuntimeContext("gw", tmp_path, component_logger("connector", "spb"))
        running = Connector(SparkplugSource(config, context))
        started.append(running)
        return running

    yield start
    for running in started:
        await running.stop()


async def command(peer: PeerProcess, cmd: dict[str, Any]) -> None:
    await asyncio.to_thread(peer.command, cmd)


async def wait_event(peer: PeerProcess, predicate: Callable[[Event], bool], start: int = 0) -> Event:
    return await asyncio.to_thread(peer.wait_for, predicate, 30.0, start=start)


async def test_births_aliases_every_type_a_device_death_and_rebirth_and_the_node_death(
    mosquitto: Mosquitto, connector: Callable[..., Connector], sparkplug_edge: Callable[..., PeerProcess]
) -> None:
    gateway = connector()
    await gateway.subscribed()
    edge = await asyncio.to_thread(sparkplug_edge, mosquitto)
    await command(edge, {"cmd": "data", "count": 6})  # alias-only data; rounds 2 and 5 with Quality bad
    await command(edge, {"cmd": "ddeath", "device": "Press-2"})
    await command(edge, {"cmd": "data", "count": 2})
    await command(edge, {"cmd": "dbirth", "device": "Press-2"})
    await command(edge, {"cmd": "data", "count": 2})
    expected = expected_rows(edge)
    await async_wait_until(lambda: rows_of(gateway.points) >= expected, timeout=30, message="every metric stored")
    got = rows_of(gateway.points)
    assert typed(got) == typed(expected)  # nothing else, and every value with the type it was sent as
    fields = {row[2] for row in got}
    assert "Nozzle/Temp" in fields and "Pump/Flow" in fields and "Counters/UInt64" in fields
    assert ("quality", "bad") in {tag for row in got for tag in row[0]}
    counters = gateway.counters
    assert counters["rebirths_requested"] == 0 and counters["seq_gaps"] == 0 and counters["unknown_alias"] == 0
    assert counters["malformed"] == 0 and counters["held"] == 0
    # Per birth and data message of a device: the null is skipped, the DataSet and the Bytes are not kept.
    device_messages = sum(1 for e in edge.of("published") if e["kind"] in ("DBIRTH", "DDATA"))
    assert counters["null_metrics"] == device_messages
    assert counters["unsupported_metrics"] == 2 * device_messages
    assert online_marks(gateway.points) == [
        (None, True),
        ("Press-1", True),
        ("Press-2", True),
        ("Press-2", False),
        ("Press-2", True),
    ]
    nodes = gateway.source.status.detail["edge_nodes"]
    assert nodes["Plant/Line-1"]["online"] is True and nodes["Plant/Line-1"]["bdSeq"] == 0

    edge.kill()  # SIGKILL: the broker publishes its will, the NDEATH with the same bdSeq
    await async_wait_until(lambda: gateway.counters["deaths"] == 2, timeout=30, message="NDEATH")
    assert online_marks(gateway.points)[-3:] == [("Press-1", False), ("Press-2", False), (None, False)]
    node = gateway.source.status.detail["edge_nodes"]["Plant/Line-1"]
    assert node["online"] is False and not any(d["online"] for d in node["devices"].values())


async def test_a_missed_birth_is_held_one_rebirth_is_requested_and_what_follows_is_stored_right(
    mosquitto: Mosquitto, connector: Callable[..., Connector], sparkplug_edge: Callable[..., PeerProcess]
) -> None:
    # Born before the gateway listens: ready means the broker has routed the births (not only that the
    # edge wrote them), so the gateway, subscribing after, cannot receive them.
    edge = await asyncio.to_thread(sparkplug_edge, mosquitto)
    gateway = connector()
    await gateway.subscribed()
    start = len(edge.events)
    await command(edge, {"cmd": "data", "count": 5})  # data before any birth the gateway saw: held
    rebirth = await wait_event(edge, lambda e: e.get("event") == "rebirth" and e["reason"] == "ncmd", start)
    after = edge.events.index(rebirth) - 3  # its NBIRTH and two DBIRTHs were published just before
    await command(edge, {"cmd": "data", "count": 3})
    expected = expected_rows(edge, since=after)
    await async_wait_until(lambda: rows_of(gateway.points) >= expected, timeout=30, message="data after the rebirth")
    counters = gateway.counters
    assert counters["rebirths_requested"] == 1  # one per episode, however many messages were held
    assert counters["before_birth"] >= 3 and counters["held"] == 0
    # The held messages carried aliases only: never resolved through the new birth, never stored.
    assert counters["discarded"] > 0
    assert rows_of(gateway.points) == expected  # nothing from before the birth, nothing under another name
    assert len(edge.of("ncmd")) == 1


async def test_held_data_that_names_its_metrics_is_stored_once_the_birth_comes(
    mosquitto: Mosquitto, connector: Callable[..., Connector], sparkplug_edge: Callable[..., PeerProcess]
) -> None:
    edge = await asyncio.to_thread(sparkplug_edge, mosquitto, names_in_data=True)
    gateway = connector()
    await gateway.subscribed()
    start = len(edge.events)
    await command(edge, {"cmd": "data", "count": 2})
    await wait_event(edge, lambda e: e.get("event") == "rebirth", start)
    await command(edge, {"cmd": "data", "count": 1})
    expected = expected_rows(edge, since=start)  # the held rounds too: their names are their own
    await async_wait_until(lambda: rows_of(gateway.points) >= expected, timeout=30, message="held data stored")
    assert typed(rows_of(gateway.points)) == typed(expected)
    assert gateway.counters["discarded"] == 0 and gateway.counters["rebirths_requested"] == 1


async def test_a_sequence_gap_asks_for_a_rebirth_once(
    mosquitto: Mosquitto, connector: Callable[..., Connector], sparkplug_edge: Callable[..., PeerProcess]
) -> None:
    gateway = connector(rebirth_interval="1h")
    await gateway.subscribed()
    edge = await asyncio.to_thread(sparkplug_edge, mosquitto)
    await command(edge, {"cmd": "data", "count": 1})
    start = len(edge.events)
    await command(edge, {"cmd": "gap"})
    await command(edge, {"cmd": "data", "count": 1})
    await wait_event(edge, lambda e: e.get("event") == "rebirth" and e["reason"] == "ncmd", start)
    await command(edge, {"cmd": "data", "count": 2})
    expected = expected_rows(edge)
    await async_wait_until(lambda: rows_of(gateway.points) >= expected, timeout=30, message="every metric stored")
    assert typed(rows_of(gateway.points)) == typed(expected)
    assert gateway.counters["seq_gaps"] == 1 and gateway.counters["rebirths_requested"] == 1


async def test_an_unknown_alias_is_counted_never_stored_and_asks_for_a_rebirth(
    mosquitto: Mosquitto, connector: Callable[..., Connector], sparkplug_edge: Callable[..., PeerProcess]
) -> None:
    gateway = connector()
    await gateway.subscribed()
    edge = await asyncio.to_thread(sparkplug_edge, mosquitto)
    start = len(edge.events)
    await command(edge, {"cmd": "unknown_alias"})
    await wait_event(edge, lambda e: e.get("event") == "rebirth" and e["reason"] == "ncmd", start)
    await command(edge, {"cmd": "data", "count": 1})
    expected = expected_rows(edge)
    await async_wait_until(lambda: rows_of(gateway.points) >= expected, timeout=30, message="every metric stored")
    assert typed(rows_of(gateway.points)) == typed(expected)  # the value 1.5 under alias 9999 is nowhere
    assert gateway.counters["unknown_alias"] == 1 and gateway.counters["rebirths_requested"] == 1


async def test_state_online_then_the_will_says_offline_with_the_same_timestamp(
    mosquitto: Mosquitto, connector: Callable[..., Connector], sparkplug_host: Callable[..., PeerProcess]
) -> None:
    host = await asyncio.to_thread(sparkplug_host, mosquitto, filter="spBv1.0/STATE/#")
    gateway = connector()
    online = await wait_event(host, lambda e: e.get("event") == "message" and e["payload"].get("online") is True)
    assert online["topic"] == "spBv1.0/STATE/gateway-test" and online["qos"] == 1
    timestamp = online["payload"]["timestamp"]
    assert isinstance(timestamp, int) and timestamp > 1_600_000_000_000
    link = gateway.source._link
    assert link is not None and link._conn is not None and link._conn.transport is not None
    start = len(host.events)
    link._conn.transport.abort()  # the gateway's connection dies: the broker publishes the will
    offline = await wait_event(
        host, lambda e: e.get("event") == "message" and e["payload"].get("online") is False, start
    )
    assert offline["payload"]["timestamp"] == timestamp
    # Reconnected, it says online again with a newer timestamp (the will of the new connection has it
    # too). The first online may come again before it: the link resends a publish whose PUBACK the
    # dead connection did not bring back.
    def newer(event: Event) -> bool:
        payload = event.get("payload", {})
        return event.get("event") == "message" and payload.get("online") is True and payload["timestamp"] > timestamp

    await wait_event(host, newer, start)
