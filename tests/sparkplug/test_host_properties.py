"""The host session under any sequence of Sparkplug B messages (property test): every message gives
valid points or one DecodeError, never another exception; and no field is ever named but by a
birth or by the message's own metric name — never by an alias."""

from __future__ import annotations

import logging
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import DecodeError
from gateway.point import Point
from gateway.sparkplug import sparkplug_b_pb2 as pb
from gateway.sparkplug.host import ONLINE_FIELD, HostSession
from tests.helpers import examples

NAMES = ["Nozzle/Temp", "Count", "bdSeq", "Node Control/Rebirth", "Pump", "Flow", "a\nb", "x" * 3, ""]
TOPICS = [
    "spBv1.0/G/NBIRTH/E",
    "spBv1.0/G/NDEATH/E",
    "spBv1.0/G/NDATA/E",
    "spBv1.0/G/DBIRTH/E/D",
    "spBv1.0/G/DDATA/E/D",
    "spBv1.0/G/DDEATH/E/D",
    "spBv1.0/G/DDATA/E/D2",
    "spBv1.0/STATE/host",
    "spBv1.0/G/NCMD/E",
]
VALUES = st.one_of(
    st.tuples(st.just("int_value"), st.integers(0, 2**32 - 1)),
    st.tuples(st.just("long_value"), st.integers(0, 2**64 - 1)),
    st.tuples(st.just("float_value"), st.floats(width=32)),
    st.tuples(st.just("double_value"), st.floats()),
    st.tuples(st.just("boolean_value"), st.booleans()),
    st.tuples(st.just("string_value"), st.text(max_size=5)),
    st.tuples(st.just("bytes_value"), st.binary(max_size=3)),
    st.tuples(st.just("none"), st.none()),
)
METRIC = st.fixed_dictionaries(
    {
        "name": st.sampled_from(NAMES),
        "alias": st.none() | st.integers(0, 5),
        "datatype": st.integers(0, 40),
        "timestamp": st.none() | st.integers(0, 2**64 - 1),
        "value": VALUES,
        "is_null": st.booleans(),
        "quality": st.none() | st.integers(-5, 600),
        "template": st.booleans(),
    }
)
MESSAGE = st.tuples(
    st.sampled_from(TOPICS),
    st.none() | st.integers(0, 300),
    st.lists(METRIC, max_size=6),
    st.booleans(),  # garbage bytes instead of a payload
)


def encode(seq: int | None, metrics: list[dict[str, Any]]) -> bytes:
    payload = pb.Payload(timestamp=1_700_000_000_000)
    if seq is not None:
        payload.seq = seq
    for spec in metrics:
        metric = payload.metrics.add(datatype=spec["datatype"], is_null=spec["is_null"])
        if spec["name"]:
            metric.name = spec["name"]
        if spec["alias"] is not None:
            metric.alias = spec["alias"]
        if spec["timestamp"] is not None:
            metric.timestamp = spec["timestamp"]
        kind, value = spec["value"]
        if spec["template"]:
            metric.template_value.metrics.add(name="Flow", datatype=10, double_value=1.5)
        elif kind != "none":
            setattr(metric, kind, value)
        if spec["quality"] is not None:
            metric.properties.keys.append("Quality")
            metric.properties.values.add(type=3, int_value=spec["quality"] & 0xFFFFFFFF)
    return payload.SerializeToString()


@settings(max_examples=examples(200, 2000))
@given(st.lists(MESSAGE, max_size=25), st.integers(0, 3))
def test_any_message_sequence_gives_valid_points_or_a_decode_error(
    messages: list[tuple[str, int | None, list[dict[str, Any]], bool]], max_held: int
) -> None:
    host = HostSession("spb", logging.getLogger("test.sparkplug.properties"), max_held=max_held)
    named = {spec["name"] for _, _, metrics, _ in messages for spec in metrics if spec["name"]}
    allowed = named | {f"{name}/Flow" for name in named} | {ONLINE_FIELD}
    for topic, seq, metrics, garbage in messages:
        data = b"\xff\xff" if garbage else encode(seq, metrics)
        try:
            points = host.handle(topic, data, 1_700_000_000_000_000_000)
        except DecodeError:
            continue
        for point in points:
            assert isinstance(point, Point)
            assert set(point.fields) <= allowed, point  # never an alias, never a made-up name
    assert 0 <= host.counters["held"] <= max_held  # one edge node here: its own and its devices' held messages
