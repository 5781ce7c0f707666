"""Hostile payloads against the MQTT decoder (property tests): it never raises anything but DecodeError.

Whatever arrives on a topic — random bytes, invalid UTF-8, JSON nested 10,000 deep, NaN,
integers past 64 bits, duplicate keys, line protocol with a 5,000-digit number — the decoder
either returns points (each a valid :class:`Point`, which line protocol can carry) or raises
:class:`DecodeError`, which the connector counts as one malformed message. Anything else would
be a decoder bug (the connector survives those too, but counts them as "could not be decoded").
Round trips where an encoder exists: a JSON object of every kind of value, and line protocol.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.mqtt.config import TopicConfig
from connectors.mqtt.decode import TopicDecoder, TopicMatcher
from gateway.errors import DecodeError
from gateway.lineprotocol import encode
from gateway.point import INT64_MAX, INT64_MIN, Point
from tests.helpers import examples
from tests.test_lineprotocol import points as line_protocol_points

RECEIVED = 1_700_000_000_123_456_789

#: Topic configs covering every option of the decoder: formats, field types, flatten, records, times, tags.
CONFIGS: list[dict[str, Any]] = [
    {},
    {"numbers": "auto"},
    {"flatten": True, "numbers": "auto"},
    {"fields": {"p": "p", "e": "meter.e", "first": "list.0"}},
    {
        "fields": {
            "f": {"path": "a", "type": "float"},
            "i": {"path": "b", "type": "int"},
            "b": {"path": "c", "type": "bool"},
            "s": {"path": "d", "type": "string"},
        }
    },
    {"fields": {"obj": "a"}, "flatten": True},
    {"records": "rows", "time": {"path": "t", "unit": "s"}, "tags_from_payload": {"machine": "id"}},
    {"time": {"path": "ts", "unit": "ms"}},
    {"time": {"path": "ts", "unit": "ns"}},
    {"time": {"path": "ts", "unit": "iso8601"}},
    {"tags_from_payload": {"machine": "id", "cell": "where.cell"}},
    {"format": "value"},
    {"format": "value", "numbers": "auto", "field": "celsius"},
    {"format": "influx"},
    {"format": "influx", "measurement": "override"},
]
FORMATS = {"json": [c for c in CONFIGS if c.get("format", "json") == "json"]}


def decoder(config: dict[str, Any], max_payload_size: int = 256 * 1024) -> TopicDecoder:
    topic = TopicConfig.model_validate(
        {"filter": "plant/+/+/#", "tags_from_topic": {"area": 1, "machine": 2, "last": -1}, **config}
    )
    return TopicDecoder(topic, measurement="m", tags={"site": "north"}, max_payload_size=max_payload_size)


DECODERS = [decoder(config) for config in CONFIGS]


def check(dec: TopicDecoder, topic: str, payload: bytes) -> list[Point]:
    """Decode; anything but points or a DecodeError fails the test. Every point must encode."""
    try:
        points = dec.decode(topic, payload, RECEIVED)
    except DecodeError as exc:
        assert str(exc), "a DecodeError must say what is wrong"
        return []
    assert isinstance(points, list)
    for point in points:
        assert isinstance(point, Point)
        encode(point)  # what a sink will do with it: never fails for a valid Point
    return points


# --- strategies ---------------------------------------------------------------------------------

topics = st.one_of(
    st.just("plant/press/p-04/state"),
    st.text(max_size=80).map(lambda t: "plant/" + t),
    st.lists(st.text(max_size=8), min_size=1, max_size=12).map("/".join),
)
keys = st.one_of(
    st.sampled_from(["p", "e", "a", "b", "c", "d", "ts", "t", "id", "rows", "meter", "list", "where", "cell", ""]),
    st.text(max_size=6),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),  # past 64 bits too: written by hand below, orjson cannot
    st.integers(INT64_MIN - 2, INT64_MIN + 2),
    st.integers(INT64_MAX - 2, 2**64 + 2),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(["nan", "NaN", "inf", "-Infinity", "1e999", "2024-05-01T12:00:00.250Z", "0001-01-01T00:00-23:59"]),
)


def json_text(value: Any) -> str:
    """JSON as a device might write it, including what orjson refuses to write (big ints)."""
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{json_text(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(json_text(v) for v in value) + "]"
    return json.dumps(value)


json_values = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=5), st.dictionaries(keys, children, max_size=6)),
    max_leaves=30,
)
#: Tokens a hostile JSON document is assembled from: valid pieces, and what breaks JSON.
_JSON_TOKENS = [
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    '"p"',
    '"ts"',
    '"rows"',
    '"id"',
    "1",
    "-0",
    "1.5e3",
    "true",
    "null",
    "NaN",
    "Infinity",
    "-Infinity",
    "1e999",
    "9" * 30,
    "9" * 5000,
    '"\\ud800"',
    '"\\u0000"',
    '"x\\"y"',
    " ",
    "\n",
]
hostile_json = st.one_of(
    json_values.map(lambda v: json_text(v).encode()),
    st.lists(st.sampled_from(_JSON_TOKENS), max_size=40).map(lambda t: "".join(t).encode()),
    # an object with a key given twice (a device's bug: which value is meant?)
    st.tuples(keys, scalars, scalars, st.dictionaries(keys, scalars, max_size=3)).map(
        lambda t: (
            "{"
            + f"{json.dumps(t[0])}:{json_text(t[1])},{json.dumps(t[0])}:{json_text(t[2])}"
            + "".join(f",{json.dumps(k)}:{json_text(v)}" for k, v in t[3].items())
            + "}"
        ).encode()
    ),
    st.integers(1, 12_000).map(lambda depth: b'{"a":' * depth + b"1" + b"}" * depth),
    st.integers(1, 12_000).map(lambda depth: b"[" * depth + b"]" * depth),
)
_LP_TOKENS = [
    "m",
    "cpu",
    ",",
    "=",
    " ",
    "\\",
    '"',
    "i",
    "u",
    "t",
    "f",
    "true",
    "1",
    "-",
    ".",
    "e",
    "#",
    "\t",
    "\n",
    "\r",
    "9" * 25,
    "9" * 5000,
    "nan",
    "inf",
    "1e999",
    "host=a",
    "v=1",
    's="x y"',
    "é",
    "\x00",
]
hostile_line_protocol = st.one_of(
    st.lists(st.sampled_from(_LP_TOKENS), max_size=40).map("".join),
    st.text(max_size=120),
)


# --- properties -----------------------------------------------------------------------------------


@settings(max_examples=examples(300, 3000))
@given(config=st.sampled_from(range(len(CONFIGS))), topic=topics, payload=st.binary(max_size=300))
def test_random_bytes_give_points_or_a_decode_error(config: int, topic: str, payload: bytes) -> None:
    check(DECODERS[config], topic, payload)


@settings(max_examples=examples(300, 3000))
@given(config=st.sampled_from(range(len(CONFIGS))), topic=topics, payload=hostile_json)
def test_hostile_json_gives_points_or_a_decode_error(config: int, topic: str, payload: bytes) -> None:
    check(DECODERS[config], topic, payload)


@settings(max_examples=examples(300, 3000))
@given(config=st.sampled_from(range(len(CONFIGS))), topic=topics, text=hostile_line_protocol)
def test_hostile_text_gives_points_or_a_decode_error(config: int, topic: str, text: str) -> None:
    check(DECODERS[config], topic, text.encode("utf-8", "surrogatepass"))


@settings(max_examples=examples(200, 2000))
@given(
    config=st.sampled_from(range(len(CONFIGS))),
    payload=st.binary(min_size=1, max_size=40),
    cut=st.integers(0, 40),
    junk=st.binary(max_size=3),
)
def test_a_good_payload_cut_short_or_spliced_gives_points_or_a_decode_error(
    config: int, payload: bytes, cut: int, junk: bytes
) -> None:
    good = b'{"p": 1520.5, "e": 10234, "ts": 1714564800250, "id": "press-4", "rows": [{"t": 1, "v": 2}]}'
    check(DECODERS[config], "plant/a/b/c", good[:cut] + junk + good[cut:])
    check(DECODERS[config], "plant/a/b/c", good[: len(good) - cut])


@settings(max_examples=examples(200, 2000))
@given(
    fields=st.dictionaries(
        st.text(min_size=1, max_size=10).filter(lambda k: k.strip("\t") == k and "\x00" not in k),
        st.one_of(
            st.booleans(),
            st.integers(INT64_MIN, INT64_MAX),
            st.floats(allow_nan=False, allow_infinity=False),
            st.text(max_size=20),
        ),
        min_size=1,
        max_size=8,
    ).filter(lambda f: all("\n" not in k and "\r" not in k and "\\" not in k for k in f))
)
def test_a_json_object_round_trips_with_every_value_kept(fields: dict[str, Any]) -> None:
    points = check(DECODERS[1], "plant/a/b/c", orjson.dumps(fields))  # numbers: auto
    assert len(points) == 1
    assert points[0].fields == fields
    assert {k: type(v) for k, v in points[0].fields.items()} == {k: type(v) for k, v in fields.items()}


@settings(max_examples=examples(200, 2000))
@given(line_protocol_points())
def test_line_protocol_round_trips_through_the_influx_format(point: Point) -> None:
    dec = decoder({"format": "influx"})
    dec.static_tags = {}  # (the topic's and the connector's tags would be added to the point's)
    dec._topic_tags = ()
    assert dec.decode("plant/a/b/c", encode(point).encode(), RECEIVED) == [point]


@settings(max_examples=examples(200, 2000))
@given(filters=st.lists(st.sampled_from(["#", "+", "a", "b", "$SYS", ""]), min_size=1, max_size=4), topic=topics)
def test_the_topic_matcher_never_raises(filters: list[str], topic: str) -> None:
    TopicMatcher(["/".join(filters), "a/#"]).match(topic)


# --- the hostile payloads of the issue, one by one ----------------------------------------------


@pytest.mark.parametrize(
    ("config", "payload", "reason"),
    [
        ({}, b"\xff\xfe\x00garbage", "not valid JSON"),
        ({"format": "value"}, b"\xc3\x28", "not UTF-8"),
        ({"format": "influx"}, b"m v=1 \xe2\x82", "not UTF-8"),
        ({}, b'{"a":' * 10_000 + b"1" + b"}" * 10_000, "not valid JSON"),
        ({}, b"[" * 10_000 + b"]" * 10_000, "not valid JSON"),
        ({"flatten": True}, b'{"a":' * 1000 + b"1" + b"}" * 1000, "nested too deeply"),
        ({}, b'{"p": NaN}', "not valid JSON"),
        ({}, b'{"p": Infinity}', "not valid JSON"),
        ({}, b'{"p": 1e999}', "not valid JSON"),
        ({"format": "value"}, b"nan", "NaN and infinity cannot be stored"),
        ({"format": "value"}, b"-Infinity", "NaN and infinity cannot be stored"),
        ({"format": "value"}, b"1e999", "NaN and infinity cannot be stored"),
        ({"format": "influx"}, b"m v=1e999", "NaN and infinity cannot be stored"),
        ({"fields": {"n": {"path": "n", "type": "int"}}}, b'{"n": 18446744073709551616}', "64-bit integer"),
        ({"fields": {"n": {"path": "n", "type": "int"}}}, b'{"n": "' + b"9" * 5000 + b'"}', "expected an integer"),
        ({"format": "influx"}, b"m v=" + b"9" * 5000 + b"i", "64-bit integer"),
        ({"format": "influx"}, b"m v=1i " + b"9" * 5000, "time"),
        ({"format": "influx"}, b"m,t=a v=" + b"9" * 30 + b"i", "64-bit integer"),
        ({}, b'{"p": 1, "p": 2}', "key 'p' appears twice"),
        ({}, b'{"p": 1, "meter": {"e": 1, "e": 2}}', "key 'e' appears twice"),
        ({}, b'{"p": 1, "s": "\\ud800"}', "not valid JSON"),
    ],
)
def test_each_hostile_payload_of_the_issue_is_one_decode_error(
    config: dict[str, Any], payload: bytes, reason: str
) -> None:
    with pytest.raises(DecodeError, match=reason):
        decoder(config).decode("plant/a/b/c", payload, RECEIVED)


def test_a_megabyte_of_json_is_refused_by_size_or_decoded() -> None:
    big = orjson.dumps({"p": 1.5, "blob": "x" * 1_000_000})
    with pytest.raises(DecodeError, match="more than max_payload_size"):
        decoder({}).decode("plant/a/b/c", big, RECEIVED)
    points = decoder({"fields": {"p": "p"}}, max_payload_size=2 * 2**20).decode("plant/a/b/c", big, RECEIVED)
    assert [p.fields for p in points] == [{"p": 1.5}]
    rows = orjson.dumps([{"p": i} for i in range(100_000)])  # a megabyte of records: 100,000 points
    assert len(decoder({}, max_payload_size=2 * 2**20).decode("plant/a/b/c", rows, RECEIVED)) == 100_000


def test_integers_past_64_bits_are_floats_with_numbers_float_and_malformed_with_numbers_auto() -> None:
    """orjson reads a literal past 2**64 as a float: with numbers: auto it is refused like 2**63 is."""
    for literal in (b"9223372036854775808", b"18446744073709551615", b"18446744073709551616", b"9" * 30):
        payload = b'{"n": ' + literal + b', "m": -' + literal + b"}"
        (point,) = decoder({}).decode("plant/a/b/c", payload, RECEIVED)
        assert point.fields == {"n": float(literal), "m": -float(literal)}
        for config in (
            {"numbers": "auto"},
            {"numbers": "auto", "flatten": True},
            {"fields": {"n": "n"}, "numbers": "auto"},
        ):
            with pytest.raises(DecodeError, match="does not fit in a 64-bit integer"):
                decoder(config).decode("plant/a/b/c", payload, RECEIVED)
        with pytest.raises(DecodeError, match="does not fit in a 64-bit integer"):
            decoder({"fields": {"n": {"path": "n", "type": "int"}}}).decode("plant/a/b/c", payload, RECEIVED)
        (point,) = decoder({"fields": {"n": {"path": "n", "type": "string"}}, "numbers": "auto"}).decode(
            "plant/a/b/c", payload, RECEIVED
        )
        assert point.fields == {"n": str(int(literal))}  # asked for as text: the digits, exactly
        (point,) = decoder({"format": "value"}).decode("plant/a/b/c", literal, RECEIVED)
        assert point.fields == {"value": float(literal)}
        with pytest.raises(DecodeError, match="does not fit in a 64-bit integer"):
            decoder({"format": "value", "numbers": "auto"}).decode("plant/a/b/c", literal, RECEIVED)
    (point,) = decoder({"numbers": "auto"}).decode(
        "plant/a/b/c", b'{"n": 9223372036854775807, "s": "12345678901234567890123"}', RECEIVED
    )
    assert point.fields == {"n": INT64_MAX, "s": "12345678901234567890123"}


def test_duplicate_keys_are_found_beside_text_that_looks_like_keys() -> None:
    """The quick check counts `":` in the text; text values holding `":` take the exact path."""
    dec = decoder({"numbers": "auto"})
    (point,) = dec.decode("plant/a/b/c", b'{"s": "a\\":b", "t": "\\" : "}', RECEIVED)
    assert point.fields == {"s": 'a":b', "t": '" : '}
    with pytest.raises(DecodeError, match="key 's' appears twice"):
        dec.decode("plant/a/b/c", b'{"s": "a\\":b", "s": "c"}', RECEIVED)
    assert [p.fields for p in dec.decode("plant/a/b/c", b'[{"p": 1}, {"p": 2}]', RECEIVED)] == [{"p": 1}, {"p": 2}]


def test_long_topics_are_matched_and_tagged_without_being_cached() -> None:
    """A topic may be 64 KiB long: 10,000 of them cached would hold 640 MB; they are read each time."""
    dec = decoder({})
    matcher = TopicMatcher(["plant/+/+/#"])
    for index in range(50):
        topic = f"plant/a{index}/b/" + "x" * 65_000
        assert matcher.match(topic) == 0
        (point,) = dec.decode(topic, b'{"p": 1}', RECEIVED)
        assert point.tags["area"] == f"a{index}"
        assert point.tags["last"] == "x" * 65_000
    assert not matcher._cache
    assert not dec._tag_cache
    dec.decode("plant/a/b/c", b'{"p": 1}', RECEIVED)
    assert list(dec._tag_cache) == ["plant/a/b/c"]  # short topics are still cached
