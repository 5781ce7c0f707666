"""The MQTT sink's JSON payloads (pure): keys, types kept, time to the millisecond, quality."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from gateway.point import INT64_MAX, INT64_MIN, TIME_MAX, TIME_MIN, FieldValue
from gateway.sinks.mqtt.payload import field_payload, point_payload

T = 1_714_564_800_123_456_789  # 2024-05-01T12:00:00.123456789Z


def loads(payload: bytes) -> Any:
    return json.loads(payload)


def test_the_contract_field_message() -> None:
    assert field_payload(1_714_564_800_000_000_000, 12.5) == b'{"timestamp_ms":1714564800000,"value":12.5}'


def test_quality_is_added_when_the_point_carries_one() -> None:
    body = {"timestamp_ms": 1714564800123, "value": 21.7, "quality": "uncertain"}
    assert loads(field_payload(T, 21.7, "uncertain")) == body


def test_sub_millisecond_precision_is_dropped_or_kept_in_timestamp_ns() -> None:
    assert loads(field_payload(T, 1.0)) == {"timestamp_ms": 1714564800123, "value": 1.0}
    exact = {"timestamp_ms": 1714564800123, "timestamp_ns": T, "value": 1.0}
    assert loads(field_payload(T, 1.0, with_ns=True)) == exact
    # Rounded down, also before 1970: -1.5 ms is in the millisecond that starts at -2 ms.
    assert loads(field_payload(-1_500_000, 1.0))["timestamp_ms"] == -2


def test_values_keep_their_type() -> None:
    cases: list[tuple[FieldValue, str]] = [
        (5.0, "5.0"),
        (5, "5"),
        (INT64_MAX, str(INT64_MAX)),
        (INT64_MIN, str(INT64_MIN)),
        (True, "true"),
        (False, "false"),
        (1e-300, "1e-300"),
        ('quote " back\\slash\nnew line\ttab', '"quote \\" back\\\\slash\\nnew line\\ttab"'),
        ("Grüße 温度 °C", '"Grüße 温度 °C"'),
    ]
    for value, text in cases:
        payload = field_payload(0, value)
        assert payload == b'{"timestamp_ms":0,"value":' + text.encode() + b"}"
        decoded = loads(payload)["value"]
        assert decoded == value and type(decoded) is type(value)


def test_one_message_per_point_has_every_field() -> None:
    fields: dict[str, FieldValue] = {"power_w": 1250.0, "energy_kwh": 3, "running": True, "state": "run"}
    assert loads(point_payload(T, fields)) == {"timestamp_ms": 1714564800123, **fields}
    assert loads(point_payload(T, fields, "bad", with_ns=True)) == {
        "timestamp_ms": 1714564800123,
        "timestamp_ns": T,
        **fields,
        "quality": "bad",
    }


def test_a_field_named_like_a_reserved_key_neither_hides_nor_is_hidden() -> None:
    fields: dict[str, FieldValue] = {"timestamp_ms": 1.0, "quality": 99, "value": 2.0}
    assert loads(point_payload(T, fields, "uncertain")) == {
        "timestamp_ms": 1714564800123,
        "field_timestamp_ms": 1.0,
        "field_quality": 99,
        "value": 2.0,
        "quality": "uncertain",
    }


_VALUES = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(INT64_MIN, INT64_MAX),
    st.booleans(),
    st.text(),
)


@given(time=st.integers(TIME_MIN, TIME_MAX), value=_VALUES, quality=st.none() | st.text(min_size=1))
def test_every_storable_value_round_trips_through_json(time: int, value: FieldValue, quality: str | None) -> None:
    body = loads(field_payload(time, value, quality, with_ns=True))
    assert body["timestamp_ns"] == time and body["timestamp_ms"] == time // 1_000_000
    assert body["value"] == value and type(body["value"]) is type(value)
    assert body.get("quality") == quality
