"""The host session's rules, case by case, with payloads built here (the connector's tests run the
same rules against Tahu's independent edge node): value conversions, stale deaths, held data and
its bound, births out of order, sequence numbers wrapping, rebirth episodes and their interval."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from gateway.errors import DecodeError
from gateway.point import Point
from gateway.sparkplug import sparkplug_b_pb2 as pb
from gateway.sparkplug.host import ONLINE_FIELD, HostSession
from gateway.sparkplug.payload import DataType, convert, quality_of, unit_of

LOG = logging.getLogger("test.sparkplug")
T0 = 1_700_000_000_000


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def payload(seq: int | None, *metrics: dict[str, Any], timestamp: int = T0) -> bytes:
    message = pb.Payload(timestamp=timestamp)
    if seq is not None:
        message.seq = seq
    for metric in metrics:
        properties = metric.pop("properties", None)
        added = message.metrics.add(**metric)
        for key, value in (properties or {}).items():
            added.properties.keys.append(key)
            added.properties.values.add(**value)
    return message.SerializeToString()


def nbirth(bdseq: int = 0, seq: int = 0) -> bytes:
    return payload(
        seq,
        {"name": "bdSeq", "datatype": DataType.Int64, "long_value": bdseq},
        {"name": "Node Control/Rebirth", "datatype": DataType.Boolean, "boolean_value": False, "alias": 0},
        {"name": "Uptime", "alias": 1, "datatype": DataType.Int64, "long_value": 5},
    )


def dbirth(seq: int) -> bytes:
    return payload(
        seq,
        {"name": "Nozzle/Temp", "alias": 10, "datatype": DataType.Double, "double_value": 200.0},
        {"name": "Count", "alias": 11, "datatype": DataType.Int8, "int_value": 3},
    )


def fields(points: list[Point]) -> list[dict[str, object]]:
    return [dict(p.fields) for p in points if ONLINE_FIELD not in p.fields]


def session(**options: Any) -> tuple[HostSession, Clock]:
    clock = Clock()
    return HostSession("spb", LOG, clock=clock, **options), clock


NODE = "spBv1.0/G/{}/E"
DEVICE = "spBv1.0/G/{}/E/D"


@pytest.mark.parametrize(
    ("datatype", "kind", "raw", "stored"),
    [
        (DataType.Int8, "int_value", 0xFFFFFFFF, -1),  # 32-bit two's complement (Tahu's JavaScript)
        (DataType.Int8, "int_value", 0xFF, -1),  # 8-bit two's complement
        (DataType.Int8, "int_value", 127, 127),
        (DataType.Int16, "int_value", 0x8000, -32768),
        (DataType.Int16, "int_value", 0xFFFF8000, -32768),
        (DataType.Int32, "int_value", 0x80000000, -(2**31)),
        (DataType.Int64, "long_value", 2**64 - 5, -5),
        (DataType.Int32, "long_value", 2**64 - 5, -5),
        (DataType.UInt16, "int_value", 65535, 65535),
        (DataType.UInt32, "long_value", 4_000_000_000, 4_000_000_000),
        (DataType.UInt32, "int_value", 4_000_000_000, 4_000_000_000),
        (DataType.UInt64, "long_value", 2**63, float(2**63)),
        (DataType.UInt64, "long_value", 2**63 - 1, 2**63 - 1),
        (DataType.DateTime, "long_value", T0, T0),
        (DataType.Boolean, "int_value", 1, True),
        (DataType.Double, "long_value", 7, 7.0),
    ],
)
def test_each_datatype_becomes_the_stored_value(datatype: int, kind: str, raw: int, stored: object) -> None:
    value = convert(datatype, kind, raw)
    assert (value, type(value)) == (stored, type(stored))


def test_quality_codes_and_units() -> None:
    def metric(**properties: dict[str, Any]) -> pb.Payload.Metric:
        return pb.Payload.FromString(payload(0, {"name": "x", "properties": properties})).metrics[0]

    int32 = DataType.Int32
    assert quality_of(metric(Quality={"type": int32, "int_value": 192})) is None
    assert quality_of(metric(Quality={"type": int32, "int_value": 0})) == "bad"
    assert quality_of(metric(Quality={"type": int32, "int_value": 500})) == "bad"
    assert quality_of(metric(Quality={"type": int32, "int_value": 68})) == "uncertain"
    assert quality_of(metric()) is None
    assert unit_of(metric(engUnit={"type": DataType.String, "string_value": "°C"})) == "°C"


def test_birth_data_death_rebirth_and_a_stale_death() -> None:
    host, _ = session()
    points = host.handle(NODE.format("NBIRTH"), nbirth(bdseq=3), 1)
    assert fields(points) == [{"Uptime": 5}]  # bdSeq and Node Control/… are not machine data
    points = host.handle(DEVICE.format("DBIRTH"), dbirth(1), 1)
    assert fields(points) == [{"Nozzle/Temp": 200.0, "Count": 3}]
    data = payload(2, {"alias": 10, "double_value": 201.5}, {"alias": 11, "int_value": 0xFE})
    assert fields(host.handle(DEVICE.format("DDATA"), data, 1)) == [{"Nozzle/Temp": 201.5, "Count": -2}]
    # An NDEATH with another bdSeq: an older connection's will, delivered late. Ignored.
    stale = payload(None, {"name": "bdSeq", "datatype": DataType.Int64, "long_value": 2})
    assert host.handle(NODE.format("NDEATH"), stale, 1) == []
    assert host.counters["stale_deaths"] == 1 and host.summary()["G/E"]["online"] is True
    death = payload(None, {"name": "bdSeq", "datatype": DataType.Int64, "long_value": 3})
    marks = [(p.tags.get("device"), p.fields[ONLINE_FIELD]) for p in host.handle(NODE.format("NDEATH"), death, 1)]
    assert marks == [("D", False), (None, False)]
    assert host.rebirths == []


def test_sequence_numbers_wrap_past_255_without_a_gap() -> None:
    host, _ = session()
    host.handle(NODE.format("NBIRTH"), nbirth(seq=0), 1)
    host.handle(DEVICE.format("DBIRTH"), dbirth(1), 1)
    for n in range(2, 600):
        host.handle(DEVICE.format("DDATA"), payload(n % 256, {"alias": 10, "double_value": float(n)}), 1)
    assert host.counters["seq_gaps"] == 0 and host.rebirths == []


def test_a_rebirth_episode_asks_once_then_again_only_after_the_interval() -> None:
    host, clock = session(rebirth_interval=30.0)
    for n in range(5):
        host.handle(DEVICE.format("DDATA"), payload(n, {"alias": 10, "double_value": 1.0}), 1)
    assert host.rebirths == [("G", "E")] and host.counters["before_birth"] == 5
    clock.now = 29.0
    host.handle(DEVICE.format("DDATA"), payload(6, {"alias": 10, "double_value": 1.0}), 1)
    assert host.rebirths == [("G", "E")]
    clock.now = 31.0
    host.handle(DEVICE.format("DDATA"), payload(7, {"alias": 10, "double_value": 1.0}), 1)
    assert host.rebirths == [("G", "E"), ("G", "E")] and host.counters["rebirths_requested"] == 2
    host.handle(NODE.format("NBIRTH"), nbirth(), 1)  # the episode ends
    host.rebirths.clear()
    host.handle(DEVICE.format("DBIRTH"), dbirth(1), 1)
    host.handle(DEVICE.format("DDATA"), payload(5, {"alias": 10, "double_value": 1.0}), 1)  # a gap: a new episode
    assert host.rebirths == [("G", "E")] and host.counters["seq_gaps"] == 1


def test_held_data_is_bounded_and_released_by_name_only() -> None:
    host, _ = session(max_held=3)
    for n in range(5):
        named = {"name": "Nozzle/Temp", "double_value": float(n)}
        aliased = {"alias": 11, "int_value": n}
        host.handle(DEVICE.format("DDATA"), payload(n, named, aliased, timestamp=T0 + n), 1)
    assert (host.counters["held"], host.counters["held_dropped"]) == (3, 2)
    host.handle(NODE.format("NBIRTH"), nbirth(), 1)
    assert host.counters["held"] == 3  # waiting for the device's birth
    points = host.handle(DEVICE.format("DBIRTH"), dbirth(1), 1)
    # The birth's own values, then the three newest held messages: by name; the aliases discarded.
    assert fields(points) == [{"Nozzle/Temp": 200.0, "Count": 3}] + [{"Nozzle/Temp": float(n)} for n in (2, 3, 4)]
    assert (host.counters["held"], host.counters["discarded"], host.counters["unknown_alias"]) == (0, 3, 0)


def test_with_max_held_0_data_before_its_birth_is_dropped_and_counted() -> None:
    host, _ = session(max_held=0)
    host.handle(DEVICE.format("DDATA"), payload(0, {"name": "Nozzle/Temp", "double_value": 1.0}), 1)
    assert (host.counters["held"], host.counters["held_dropped"], host.rebirths) == (0, 1, [("G", "E")])


def test_a_dbirth_before_the_nbirth_waits_for_it_and_its_values_are_kept() -> None:
    host, _ = session()
    assert host.handle(DEVICE.format("DBIRTH"), dbirth(4), 1) == []
    points = host.handle(NODE.format("NBIRTH"), nbirth(), 1)
    assert fields(points) == [{"Uptime": 5}, {"Nozzle/Temp": 200.0, "Count": 3}]
    data = payload(1, {"alias": 10, "double_value": 3.5})
    assert fields(host.handle(DEVICE.format("DDATA"), data, 1)) == [{"Nozzle/Temp": 3.5}]


def test_what_cannot_be_stored_is_counted_and_the_rest_of_the_message_kept() -> None:
    host, _ = session()
    host.handle(NODE.format("NBIRTH"), nbirth(), 1)
    host.handle(DEVICE.format("DBIRTH"), dbirth(1), 1)
    data = payload(
        2,
        {"alias": 10, "double_value": float("nan")},
        {"alias": 11, "is_null": True},
        {"name": "Blob", "datatype": DataType.Bytes, "bytes_value": b"x"},
        {"name": "Mystery", "int_value": 1},  # a name neither the birth nor the message gives a type for
        {"alias": 99, "double_value": 1.0},
        {"name": "Extra", "datatype": DataType.Float, "float_value": 0.5},
    )
    assert fields(host.handle(DEVICE.format("DDATA"), data, 1)) == [{"Extra": 0.5}]
    counters = host.counters
    assert (counters["invalid_metrics"], counters["null_metrics"], counters["unsupported_metrics"]) == (1, 1, 1)
    assert (counters["unknown_metric"], counters["unknown_alias"]) == (1, 1)
    assert host.rebirths == [("G", "E")]


def test_templates_are_flattened_and_definitions_skipped() -> None:
    host, _ = session()
    message = pb.Payload(timestamp=T0, seq=0)
    message.metrics.add(name="bdSeq", datatype=DataType.Int64, long_value=0)
    definition = message.metrics.add(name="_types_/Pump", datatype=DataType.Template)
    definition.template_value.is_definition = True
    definition.template_value.metrics.add(name="Flow", datatype=DataType.Double, double_value=0.0)
    instance = message.metrics.add(name="Pump1", alias=5, datatype=DataType.Template)
    instance.template_value.template_ref = "Pump"
    instance.template_value.metrics.add(name="Flow", datatype=DataType.Double, double_value=2.5)
    inner = instance.template_value.metrics.add(name="Motor", datatype=DataType.Template)
    inner.template_value.metrics.add(name="On", datatype=DataType.Boolean, boolean_value=True)
    assert fields(host.handle(NODE.format("NBIRTH"), message.SerializeToString(), 1)) == [
        {"Pump1/Flow": 2.5, "Pump1/Motor/On": True}
    ]


@pytest.mark.parametrize(
    ("topic", "message"),
    [
        ("spBv1.0/G/NBIRTH", "is not a Sparkplug B topic"),
        ("spBv1.0/G/XDATA/E", "'XDATA' is not a Sparkplug B message type"),
        ("spBv1.0/G/NDATA/E/D", "has no device level"),
        ("spBv1.0/G/DDATA/E", "names a device after the edge node"),
        ("other/G/NDATA/E", "does not start with spBv1.0/"),
    ],
)
def test_topics_that_are_not_sparkplug_are_decode_errors(topic: str, message: str) -> None:
    host, _ = session()
    with pytest.raises(DecodeError, match=message):
        host.handle(topic, nbirth(), 1)


def test_a_payload_that_is_not_protobuf_is_a_decode_error() -> None:
    host, _ = session()
    with pytest.raises(DecodeError, match="not a Sparkplug B payload"):
        host.handle(NODE.format("NBIRTH"), b"\xff\xff\xff", 1)
