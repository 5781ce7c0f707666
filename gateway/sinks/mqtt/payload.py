"""The JSON payloads of the MQTT sink (orjson), as pure functions.

One message per field (the topic template names ``{field}``)::

    {"timestamp_ms": 1714564800000, "value": 12.5}
    {"timestamp_ms": 1714564800000, "value": 21.7, "quality": "uncertain"}

One message per point (the template does not name ``{field}``)::

    {"timestamp_ms": 1714564800000, "power_w": 1250.0, "energy_kwh": 3.5}

- ``timestamp_ms``: the point's own time (when the value was measured, not when it was sent),
  in whole milliseconds since 1970-01-01 UTC, rounded down (also before 1970). Finer precision
  (OPC UA's 100 ns, a source's µs) is dropped unless ``timestamp_ns`` is on: then
  ``"timestamp_ns"`` carries the exact integer nanoseconds beside it.
- ``quality``: the point's ``quality`` tag, when it has one (OPC UA marks ``uncertain`` and
  ``bad`` samples so; a good sample has none).
- values keep their type: a float stays a float (``5.0``, never ``5``), integers are exact up to
  64 bits, booleans are ``true``/``false``, text is a JSON string.
- per point, a field named like one of the keys above (``timestamp_ms``, ``timestamp_ns``,
  ``quality``) is written as ``field_<name>`` so that it neither hides nor is hidden by them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import orjson

from gateway.point import FieldValue

__all__ = ["RESERVED_KEYS", "field_payload", "point_payload"]

RESERVED_KEYS: Final = frozenset({"timestamp_ms", "timestamp_ns", "quality"})

_dumps = orjson.dumps


def field_payload(time_ns: int, value: FieldValue, quality: str | None = None, *, with_ns: bool = False) -> bytes:
    """The message of one field: ``{"timestamp_ms": …, "value": …}`` (+ ``timestamp_ns``, ``quality``)."""
    if with_ns:
        if quality is None:
            return _dumps({"timestamp_ms": time_ns // 1_000_000, "timestamp_ns": time_ns, "value": value})
        return _dumps(
            {"timestamp_ms": time_ns // 1_000_000, "timestamp_ns": time_ns, "value": value, "quality": quality}
        )
    if quality is None:
        return _dumps({"timestamp_ms": time_ns // 1_000_000, "value": value})
    return _dumps({"timestamp_ms": time_ns // 1_000_000, "value": value, "quality": quality})


def point_payload(
    time_ns: int, fields: Mapping[str, FieldValue], quality: str | None = None, *, with_ns: bool = False
) -> bytes:
    """The message of a whole point: ``{"timestamp_ms": …, "<field>": <value>, …}`` (+ ``quality``)."""
    body: dict[str, FieldValue] = {"timestamp_ms": time_ns // 1_000_000}
    if with_ns:
        body["timestamp_ns"] = time_ns
    for name, value in fields.items():
        body[f"field_{name}" if name in RESERVED_KEYS else name] = value
    if quality is not None:
        body["quality"] = quality
    return _dumps(body)
