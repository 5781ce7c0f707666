"""Unit tests of the MQTT payload decoder (connectors/mqtt/decode.py) and of its config model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from connectors.mqtt.config import MqttConfig, TopicConfig
from connectors.mqtt.decode import TopicDecoder, TopicMatcher, excerpt, filter_matches
from gateway.config import load_config
from gateway.errors import DecodeError, PointError
from gateway.point import Point
from tests.helpers import contract_energy_connector

RECEIVED = 1_700_000_000_123_456_789


def decoder(**options: Any) -> TopicDecoder:
    options.setdefault("filter", "factory/+/energy/+")
    max_payload_size = options.pop("max_payload_size", 256 * 1024)
    return TopicDecoder(TopicConfig.model_validate(options), measurement="default", max_payload_size=max_payload_size)


def decode(payload: Any, topic: str = "factory/A/energy/m7", **options: Any) -> list[Point]:
    raw = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    return decoder(**options).decode(topic, raw, RECEIVED)


def one(payload: Any, topic: str = "factory/A/energy/m7", **options: Any) -> Point:
    points = decode(payload, topic, **options)
    assert len(points) == 1
    return points[0]


# --- json: the contract example ------------------------------------------------------------------


def test_contract_example_gives_tags_from_topic_fields_and_payload_time() -> None:
    point = one(
        {"p": 1520.5, "e": 10234, "ts": 1714564800250},
        measurement="energy",
        tags_from_topic={"line": 1, "meter": 3},
        time={"path": "ts", "unit": "ms"},
        fields={"power_w": "p", "energy_kwh": "e"},
    )
    assert point == Point(
        "energy", {"power_w": 1520.5, "energy_kwh": 10234.0}, {"line": "A", "meter": "m7"}, 1714564800250 * 10**6
    )


def test_without_time_the_receipt_time_is_used_and_measurement_defaults() -> None:
    point = one({"p": 1}, fields={"p": "p"})
    assert point.time == RECEIVED
    assert point.measurement == "default"


def test_static_tags_and_topic_tags_merge() -> None:
    point = one({"p": 1}, tags={"site": "north"}, tags_from_topic={"meter": -1})
    assert point.tags == {"site": "north", "meter": "m7"}


def test_empty_topic_segment_gives_no_tag() -> None:
    point = one({"p": 1}, "factory//energy/m7", tags_from_topic={"line": 1, "meter": 3})
    assert point.tags == {"meter": "m7"}


def test_tags_from_topic_with_hash_filter_and_segment_beyond_topic_skipped() -> None:
    dec = decoder(filter="plant/#", tags_from_topic={"area": 1, "machine": 2, "sensor": 5})
    assert dec.decode("plant/press/p-04", b'{"t": 1}', RECEIVED)[0].tags == {"area": "press", "machine": "p-04"}
    assert dec.decode("plant/weld/w1/a/b/temp", b'{"t": 1}', RECEIVED)[0].tags == {
        "area": "weld",
        "machine": "w1",
        "sensor": "temp",
    }


# --- json: key paths, types --------------------------------------------------------------------


def test_nested_key_paths_and_list_indexes() -> None:
    payload = {"power": {"total": 3.5}, "phases": [{"v": 230.1}, {"v": 229.8}], "meta": {"ts": 1714564800}}
    point = one(
        payload,
        fields={"total": "power.total", "v1": "phases.0.v", "v2": "phases.1.v", "vlast": "phases.-1.v"},
        time={"path": "meta.ts", "unit": "s"},
    )
    assert dict(point.fields) == {"total": 3.5, "v1": 230.1, "v2": 229.8, "vlast": 229.8}
    assert point.time == 1714564800 * 10**9


def test_numeric_string_keys_in_objects_are_keys_not_indexes() -> None:
    assert dict(one({"a": {"0": 5}}, fields={"x": "a.0"}).fields) == {"x": 5.0}


def test_numbers_are_floats_by_default_and_integers_with_numbers_auto() -> None:
    assert dict(one({"n": 3, "b": True, "s": "RUN"}).fields) == {"n": 3.0, "b": True, "s": "RUN"}
    fields = one({"n": 3, "x": 2.5}, numbers="auto").fields
    assert fields == {"n": 3, "x": 2.5} and type(fields["n"]) is int


def test_declared_types_convert() -> None:
    point = one(
        {"a": "21.5", "b": 7.0, "c": 1, "d": 42, "e": "TRUE"},
        fields={
            "a": {"path": "a", "type": "float"},
            "b": {"path": "b", "type": "int"},
            "c": {"path": "c", "type": "bool"},
            "d": {"path": "d", "type": "string"},
            "e": {"path": "e", "type": "bool"},
        },
    )
    assert point.fields == {"a": 21.5, "b": 7, "c": True, "d": "42", "e": True}
    assert type(point.fields["b"]) is int


def test_omitted_fields_take_every_top_level_scalar_except_time_and_tags() -> None:
    payload = {
        "ts": 1714564800000,
        "id": "m1",
        "temp": 21.5,
        "run": True,
        "mode": "AUTO",
        "nested": {"x": 1},
        "n": None,
    }
    point = one(payload, time={"path": "ts"}, tags_from_payload={"machine": "id"})
    assert point.fields == {"temp": 21.5, "run": True, "mode": "AUTO"}
    assert point.tags["machine"] == "m1"
    assert point.time == 1714564800000 * 10**6


def test_flatten_whole_object() -> None:
    payload = {"axes": {"x": {"pos": 1.5, "load": 20}, "y": {"pos": -2}}, "alarms": [3, 4], "state": "RUN", "ts": 5}
    point = one(payload, flatten=True, time={"path": "ts", "unit": "s"})
    assert point.fields == {
        "axes_x_pos": 1.5,
        "axes_x_load": 20.0,
        "axes_y_pos": -2.0,
        "alarms_0": 3.0,
        "alarms_1": 4.0,
        "state": "RUN",
    }


def test_flatten_a_picked_object_under_its_field_name() -> None:
    point = one({"spindle": {"rpm": 1200, "temp": {"c": 41.5}}}, flatten=True, fields={"sp": "spindle"})
    assert point.fields == {"sp_rpm": 1200.0, "sp_temp_c": 41.5}


def test_array_of_objects_gives_one_point_each() -> None:
    payload = [{"ts": 1000, "p": 1}, {"ts": 2000, "p": 2}, {"ts": 3000, "p": 3}]
    points = decode(payload, fields={"p": "p"}, time={"path": "ts", "unit": "ms"}, tags_from_topic={"meter": 3})
    assert [(p.time, p.fields["p"], p.tags["meter"]) for p in points] == [
        (10**9, 1.0, "m7"),
        (2 * 10**9, 2.0, "m7"),
        (3 * 10**9, 3.0, "m7"),
    ]


def test_records_path_with_tags_and_time_from_the_enclosing_object() -> None:
    payload = {
        "device": "plc-3",
        "ts": 1714564800,
        "readings": [{"ch": 1, "v": 0.5}, {"ch": 2, "v": 0.7, "ts": 1714564801}],
    }
    points = decode(
        payload,
        records="readings",
        fields={"v": "v"},
        tags_from_payload={"device": "device", "channel": "ch"},
        time={"path": "ts", "unit": "s"},
    )
    assert [(p.tags, p.fields, p.time) for p in points] == [
        ({"device": "plc-3", "channel": "1"}, {"v": 0.5}, 1714564800 * 10**9),
        ({"device": "plc-3", "channel": "2"}, {"v": 0.7}, 1714564801 * 10**9),
    ]


def test_empty_array_gives_no_points() -> None:
    assert decode([]) == []


# --- time ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("unit", "value", "expected"),
    [
        ("s", 1714564800, 1714564800 * 10**9),
        ("s", 1714564800.25, 1714564800_250_000_000),
        ("s", "1714564800", 1714564800 * 10**9),
        ("ms", 1714564800250, 1714564800_250_000_000),
        ("ms", 1714564800250.5, 1714564800_250_500_000),
        ("us", 1714564800250001, 1714564800_250_001_000),
        ("ns", 1714564800250001002, 1714564800_250_001_002),
        ("ns", "1714564800250001002", 1714564800_250_001_002),
        ("iso8601", "2024-05-01T12:00:00Z", 1714564800 * 10**9),
        ("iso8601", "2024-05-01T12:00:00.250Z", 1714564800_250_000_000),
        ("iso8601", "2024-05-01T14:00:00.250+02:00", 1714564800_250_000_000),
        ("iso8601", "2024-05-01T12:00:00.123456789Z", 1714564800_123_456_789),
        ("iso8601", "2024-05-01T12:00:00.1234567Z", 1714564800_123_456_700),
        ("iso8601", "2024-05-01 12:00:00", 1714564800 * 10**9),  # no offset: UTC
    ],
)
def test_time_units(unit: str, value: Any, expected: int) -> None:
    assert one({"t": value, "v": 1}, time={"path": "t", "unit": unit}, fields={"v": "v"}).time == expected


@pytest.mark.parametrize(
    ("unit", "value", "message"),
    [
        ("ms", "yesterday", "time (path 't') is 'yesterday', expected a number of ms since 1970"),
        ("ms", None, "time (path 't') is null, expected a number of ms since 1970"),
        ("s", True, "time (path 't') is True, expected a number of s since 1970"),
        ("iso8601", 1714564800, "time (path 't') is 1714564800, expected ISO 8601 text"),
        ("iso8601", "01/05/2024 12:00", "time (path 't') is '01/05/2024 12:00', expected ISO 8601 text"),
    ],
)
def test_bad_time_is_a_decode_error(unit: str, value: Any, message: str) -> None:
    with pytest.raises(DecodeError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        one({"t": value, "v": 1}, time={"path": "t", "unit": unit})


@pytest.mark.parametrize(
    ("unit", "value"),
    [("ms", 1e308), ("s", 1e300), ("ms", "1e308"), ("ns", 1e19), ("ms", -1e17), ("s", 10**12)],
)
def test_a_time_beyond_what_can_be_stored_is_a_decode_error_not_a_crash(unit: str, value: Any) -> None:
    with pytest.raises(DecodeError, match=r"time \(path 't'\)|outside the range"):
        one({"t": value, "v": 1}, time={"path": "t", "unit": unit})


def test_a_payload_nested_too_deep_to_flatten_is_a_decode_error() -> None:
    payload = ('{"v": ' + '{"a": ' * 1000 + "1" + "}" * 1001).encode()  # orjson reads up to 1,024 levels
    with pytest.raises(DecodeError, match=r"nested too deeply|not valid JSON"):
        decoder(flatten=True).decode("t", payload, 0)


def test_missing_time_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match=r"time \(path 'ts'\) is missing"):
        one({"v": 1}, time={"path": "ts"})


# --- malformed json --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "options", "message"),
    [
        (b'{"p": 1', {}, "payload is not valid JSON"),
        (b"", {}, "payload is empty, expected JSON"),
        (b'\xff\xfe{"p": 1}', {}, "payload is not valid JSON"),
        (b"42", {}, "payload is 42, expected a JSON object or an array of objects"),
        (b'{"e": 1}', {"fields": {"power_w": "p"}}, r"field 'power_w' \(path 'p'\) is missing"),
        (
            b'{"p": "abc"}',
            {"fields": {"p": {"path": "p", "type": "float"}}},
            r"field 'p' \(path 'p'\) is 'abc', expected a number",
        ),
        (
            b'{"p": [1, 2]}',
            {"fields": {"p": "p"}},
            r"field 'p' \(path 'p'\) is a list, expected a number, boolean or text",
        ),
        (b'{"p": {"x": 1}}', {"fields": {"p": "p"}}, r"field 'p' \(path 'p'\) is an object"),
        (b'{"p": null}', {"fields": {"p": "p"}}, r"field 'p' \(path 'p'\) is null"),
        (b'{"p": 1.5}', {"fields": {"p": {"path": "p", "type": "int"}}}, "expected an integer"),
        (b'{"p": 2}', {"fields": {"p": {"path": "p", "type": "bool"}}}, "expected true or false"),
        (b'{"a": {"b": 1}}', {}, "payload has no number, boolean or text value to store"),
        (b'[{"p": 1}, 7]', {}, "element 1 of the array is 7, expected an object"),
        (b'[{"p": 1}, {"q": 2}]', {"fields": {"p": "p"}}, r"element 1: field 'p' \(path 'p'\) is missing"),
        (b'{"x": 1}', {"records": "rows"}, "records 'rows' is missing, expected a list of objects"),
        (b'{"p": 1}', {"tags_from_payload": {"machine": "id"}}, r"tag 'machine' \(path 'id'\) is missing"),
        (b'{"p": 1, "id": ""}', {"tags_from_payload": {"machine": "id"}}, r"tag 'machine' \(path 'id'\) is ''"),
        (b'{"p": 1e400}', {}, "payload is not valid JSON"),
        (b'{"p": 18446744073709551615}', {"numbers": "auto"}, "does not fit in a 64-bit integer"),
        (b'{"p": 1, "id": "a\\nb"}', {"tags_from_payload": {"m": "id"}}, "line break"),
    ],
)
def test_malformed_json_is_a_decode_error(payload: bytes, options: dict[str, Any], message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        decode(payload, **options)


def test_payload_larger_than_the_limit_is_refused_before_parsing() -> None:
    with pytest.raises(DecodeError, match=r"payload is 1048576 bytes, more than max_payload_size \(256KiB\)"):
        decode(b"{" + b" " * (2**20 - 2) + b"}")
    assert decode({"p": 1}, max_payload_size=16)  # at the limit is fine


# --- value ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "numbers", "expected"),
    [
        (b"21.5", "float", 21.5),
        (b" 42\n", "float", 42.0),
        (b"42", "auto", 42),
        (b"4.5", "auto", 4.5),
        (b"true", "float", True),
        (b"FALSE", "float", False),
        (b"RUNNING", "float", "RUNNING"),
    ],
)
def test_value_format(payload: bytes, numbers: str, expected: Any) -> None:
    point = one(
        payload,
        "plant/press/p4/temp",
        filter="plant/#",
        format="value",
        numbers=numbers,
        field="v",
        measurement="m",
        tags_from_topic={"machine": 2},
    )
    assert point.fields == {"v": expected} and type(point.fields["v"]) is type(expected)
    assert point.tags == {"machine": "p4"} and point.time == RECEIVED and point.measurement == "m"


@pytest.mark.parametrize(
    ("payload", "message"),
    [(b"", "payload is empty"), (b"\xff\x00", "payload is not UTF-8 text"), (b"nan", "NaN and infinity")],
)
def test_bad_value_payload(payload: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        decode(payload, format="value")


# --- influx ------------------------------------------------------------------------------------


def test_influx_format_keeps_payload_time_adds_topic_tags() -> None:
    payload = b'machine,cell=3 temp=21.5,count=7i,state="RUN" 1714564800000000000\nmachine temp=22 \n'
    points = decode(payload, format="influx", tags_from_topic={"line": 1})
    assert points == [
        Point("machine", {"temp": 21.5, "count": 7, "state": "RUN"}, {"cell": "3", "line": "A"}, 1714564800 * 10**9),
        Point("machine", {"temp": 22.0}, {"line": "A"}, RECEIVED),
    ]


def test_influx_measurement_override() -> None:
    assert one(b"x v=1", format="influx", measurement="plc").measurement == "plc"


@pytest.mark.parametrize(
    ("payload", "message"), [(b"garbage", "no fields"), (b"\n#c\n", "no line"), (b"\xff", "UTF-8")]
)
def test_bad_influx_payload(payload: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        decode(payload, format="influx")


# --- topic matching ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filter_", "topic", "matches"),
    [
        ("factory/+/energy/+", "factory/A/energy/m7", True),
        ("factory/+/energy/+", "factory/A/energy", False),
        ("factory/+/energy/+", "factory/A/energy/m7/x", False),
        ("factory/#", "factory", True),
        ("factory/#", "factory/a/b/c", True),
        ("#", "anything/at/all", True),
        ("#", "$SYS/broker/load", False),
        ("+/x", "$SYS/x", False),
        ("$SYS/#", "$SYS/broker", True),
        ("a/+", "a/", True),
    ],
)
def test_filter_matches(filter_: str, topic: str, matches: bool) -> None:
    assert filter_matches(filter_.split("/"), topic) is matches


def test_first_listed_filter_wins() -> None:
    matcher = TopicMatcher(["a/b", "a/+", "#"])
    assert [matcher.match(t) for t in ("a/b", "a/c", "z", "a/b")] == [0, 1, 2, 0]
    assert TopicMatcher(["a/+"]).match("b/c") is None


def test_excerpt_is_short_and_printable() -> None:
    assert excerpt(b"\xff" + b"x" * 100, limit=5) == "'\\xffxxxx'…"


# --- config model ---------------------------------------------------------------------------------


def mqtt_config(**overrides: Any) -> MqttConfig:
    data = contract_energy_connector("mqtt://localhost:1883", **overrides)
    return MqttConfig.model_validate(data)


def test_contract_config_validates_with_a_persistent_session() -> None:
    config = mqtt_config()
    assert (config.host, config.port, config.persistent, config.protocol) == ("localhost", 1883, True, "5")
    assert mqtt_config(qos=0).persistent is False
    assert mqtt_config(broker="mqtts://broker.local", tls={"ca_file": "ca.pem"}).port == 8883
    assert mqtt_config(protocol=5).protocol == "5"
    assert mqtt_config(protocol="3.1.1").protocol == "3.1.1"


@pytest.mark.parametrize(
    "filter_",
    ["a/#/b", "a+/b", "a/b#", "", "$share/g", "$share//a", "$share/g+/a", "a/\x00"],
)
def test_bad_topic_filters_are_refused(filter_: str) -> None:
    with pytest.raises(ValidationError, match="filter"):
        mqtt_config(topics=[{"filter": filter_}])


def test_shared_subscription_is_accepted_and_tags_count_from_the_inner_filter() -> None:
    topic = mqtt_config(topics=[{"filter": "$share/gw/factory/+/energy/+", "tags_from_topic": {"meter": 3}}]).topics[0]
    assert topic.topic_filter == "factory/+/energy/+"
    with pytest.raises(ValidationError, match="segment 4 does not exist"):
        mqtt_config(topics=[{"filter": "$share/gw/factory/+/energy/+", "tags_from_topic": {"meter": 4}}])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"broker": "http://localhost:1883"}, "is not a broker URL"),
        ({"broker": "mqtt://localhost:99999"}, "invalid port"),
        ({"broker": "mqtt://user:pw@localhost"}, "credentials"),
        ({"broker": "mqtt://localhost", "tls": {"insecure": True}}, "not mqtts://"),
        ({"broker": "mqtts://h", "tls": {"cert_file": "c.pem"}}, "cert_file and key_file go together"),
        ({"qos": 3}, "qos"),
        ({"topics": []}, "at least 1"),
        ({"topics": [{"filter": "a", "format": "value", "fields": {"x": "x"}}]}, "only for format json"),
        ({"topics": [{"filter": "a", "time": {"path": "a..b"}}]}, "is not a key path"),
        ({"topics": [{"filter": "a"}, {"filter": "a"}]}, "listed twice"),
        ({"topics": [{"filter": "a", "fields": {}}]}, "fields is empty"),
    ],
)
def test_bad_connector_options_are_refused(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        mqtt_config(**overrides)


# --- the pilot examples in configs/ decode the payloads their comments show --------------------------

CONFIGS = Path(__file__).parents[3] / "configs"


def pilot_decoder(file: str, connector: str, filter_: str) -> TopicDecoder:
    config = load_config(CONFIGS / file)
    mqtt = next(c for c in config.connectors if c.name == connector)
    assert isinstance(mqtt, MqttConfig)
    topic = next(t for t in mqtt.topics if t.filter == filter_)
    return TopicDecoder(topic, measurement=mqtt.measurement or mqtt.name, tags=mqtt.tags)


def test_energy_meters_example() -> None:
    panel = pilot_decoder("energy-meters.yaml", "panel-meters", "site/+/energy/+")
    payload = {
        "ts": 1714564800250,
        "P": 15234.5,
        "E_imp": 123456.7,
        "E_exp": 0.0,
        "PF": 0.93,
        "L": [{"U": 231.2, "I": 21.4}, {"U": 230.8, "I": 22.0}, {"U": 231.5, "I": 20.9}],
    }
    [point] = panel.decode("site/hall-2/energy/m-04", orjson.dumps(payload), RECEIVED)
    assert point.tags == {"site": "werk-1", "hall": "hall-2", "meter": "m-04"}
    assert point.time == 1714564800250 * 10**6
    assert point.fields["power_w"] == 15234.5 and point.fields["l3_current_a"] == 20.9 and len(point.fields) == 10
    clamps = pilot_decoder("energy-meters.yaml", "compressor-clamps", "shellies/+/emeter/+/power")
    [point] = clamps.decode("shellies/shellyem3-A1B2C3/emeter/2/power", b"1520.30", RECEIVED)
    assert point == Point(
        "compressor_energy",
        {"power_w": 1520.3},
        {"site": "werk-1", "hall": "hall-1", "device": "shellyem3-A1B2C3", "phase": "2"},
        RECEIVED,
    )


def test_machine_state_example() -> None:
    state = pilot_decoder("machine-state.yaml", "imm", "$share/moulding-gateways/plant/+/+/state")
    payload = {
        "machine": "imm-07",
        "timestamp": "2024-05-01T12:00:00.250Z",
        "state": "PRODUCING",
        "mode": "AUTO",
        "order": "FA-24-1187",
        "cycle": {"count": 18234, "time_s": 31.2},
        "temperatures": {"barrel": [220.1, 225.4, 230.0], "mold": 45.2, "oil": 41.0},
        "alarms": 0,
    }
    [point] = state.decode("plant/line-2/imm-07/state", orjson.dumps(payload), RECEIVED)
    assert point == Point(
        "machine",
        {
            "state": "PRODUCING",
            "mode": "AUTO",
            "order": "FA-24-1187",
            "cycle_count": 18234,
            "cycle_time_s": 31.2,
            "temperatures_barrel_0": 220.1,
            "temperatures_barrel_1": 225.4,
            "temperatures_barrel_2": 230.0,
            "temperatures_mold": 45.2,
            "temperatures_oil": 41.0,
            "alarms": 0,
        },
        {"plant": "moulding", "line": "line-2", "machine": "imm-07"},
        1714564800_250_000_000,
    )
    scrap = pilot_decoder("machine-state.yaml", "imm", "$share/moulding-gateways/plant/+/+/scrap")
    payload2 = {"machine": "imm-07", "entries": [{"t": 1714564800, "reason": "short_shot", "parts": 3}]}
    [point] = scrap.decode("plant/line-2/imm-07/scrap", orjson.dumps(payload2), RECEIVED)
    assert (point.tags["reason"], point.tags["machine"], point.fields, point.time) == (
        "short_shot",
        "imm-07",
        {"parts": 3},
        1714564800 * 10**9,
    )


# --- names checked once: the configuration's at start, each topic's tags at its first message --------


def test_a_topic_whose_tag_cannot_be_stored_is_malformed_and_the_next_topic_still_decodes() -> None:
    d = decoder(tags_from_topic={"line": 1, "meter": 3}, fields={"power_w": "p"})
    assert d._names_checked
    with pytest.raises(DecodeError, match=r"tag 'meter' value 'm\\x00' contains a NUL"):
        d.decode("factory/A/energy/m\x00", b'{"p": 1.5}', RECEIVED)
    with pytest.raises(DecodeError, match=r"tag 'meter' value 'm\\x00'"):  # remembered, said again
        d.decode("factory/A/energy/m\x00", b'{"p": 2.5}', RECEIVED)
    [point] = d.decode("factory/A/energy/m7", b'{"p": 3.5}', RECEIVED)
    assert point == Point("default", {"power_w": 3.5}, {"line": "A", "meter": "m7"}, RECEIVED)


def test_a_configured_name_that_cannot_be_stored_is_reported_by_every_message() -> None:
    d = decoder(measurement="#energy", fields={"power_w": "p"})
    assert not d._names_checked
    for _ in range(2):
        with pytest.raises(DecodeError, match="measurement '#energy' starts with '#'"):
            d.decode("factory/A/energy/m7", b'{"p": 1.5}', RECEIVED)


def test_points_with_checked_names_still_have_their_values_and_time_checked() -> None:
    d = decoder(fields={"power_w": "p"}, time={"path": "ts", "unit": "s"}, numbers="auto")
    assert d._names_checked
    with pytest.raises(DecodeError, match="field 'power_w' = 9223372036854775808 does not fit in a 64-bit integer"):
        d.decode("factory/A/energy/m7", b'{"p": 9223372036854775808, "ts": 1}', RECEIVED)
    with pytest.raises(DecodeError, match="1677 to 2262"):
        d.decode("factory/A/energy/m7", b'{"p": 1, "ts": 1e12}', RECEIVED)
    fast = Point.with_checked_names("m", {"v": 1.0}, {"t": "a"}, RECEIVED)
    assert fast == Point("m", {"v": 1.0}, {"t": "a"}, RECEIVED)
    with pytest.raises(PointError, match="NaN"):
        Point.with_checked_names("m", {"v": float("nan")}, {}, RECEIVED)
    with pytest.raises(PointError, match="has no fields"):
        Point.with_checked_names("m", {}, {}, RECEIVED)
