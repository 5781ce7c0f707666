"""From OPC UA samples to Points: types, scale, deadband, quality and timestamps (no asyncua here).

The adapter (``_client.py``) turns each DataValue into a :class:`Sample` of plain Python
values; :class:`PointMaker` decides what is stored:

- numbers, booleans, text, DateTime (ISO 8601 text, UTC) and enumerations (the integer, and
  the name as ``<field>_name`` when asked) become fields; arrays become ``<field>_0 …`` or are
  skipped; structures and byte strings are skipped with one warning naming the node;
- a Good status stores the value; Uncertain stores it with the tag ``quality=uncertain``
  and a ``<field>_status`` text field; Bad stores only ``<field>_status`` with the tag
  ``quality=bad`` (the value of a Bad sample is not usable) — or both are dropped and
  counted with ``bad_values: drop``. Their own series (the tag) and a timestamp never older
  than the last good one make sure a bad sample can never overwrite good data;
- the time is the source timestamp (or the server's, or the time of receipt, by config),
  falling back along source → server → receipt when the server leaves one empty or sends one
  no store can hold (before 1677 or after 2262: DateTime.MaxValue, year 9999, is common);
- a value that cannot be stored (a string that is not valid text, an integer too large even
  for a float, a float that scale and offset push to infinity) is skipped, counted and warned
  about once per node: it costs that value only, never the rest of the notification.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from gateway.component import Status
from gateway.errors import PointError
from gateway.point import INT64_MAX, INT64_MIN, TIME_MAX, TIME_MIN, FieldValue, Point

__all__ = ["Item", "PointMaker", "Sample", "quality_of"]

Quality = Literal["good", "uncertain", "bad"]
TimestampSource = Literal["source", "server", "gateway"]

_SKIPPED_KINDS = {"ExtensionObject", "ByteString", "XmlElement", "DataValue", "Variant", "DiagnosticInfo"}


@dataclass(slots=True)
class Sample:
    """One value as the server reported it, in plain Python types."""

    handle: int
    value: Any
    kind: str  # the variant type: Double, Int32, Boolean, String, DateTime, ExtensionObject, Null, …
    status: int = 0
    status_name: str = "Good"
    source_ns: int | None = None
    server_ns: int | None = None


@dataclass(slots=True)
class Item:
    """One monitored variable and how its values are stored."""

    handle: int
    node: str  # the node id in its stable text form (nsu=…), for messages
    field: str
    scale: float | None = None
    offset: float | None = None
    deadband: float | None = None  # absolute, applied to what is stored (also in poll mode)
    enum_names: Mapping[int, str] | None = None
    arrays: Literal["expand", "skip"] = "expand"
    last_value: float | None = None
    last_time: int = 0
    warned: set[str] = dataclasses.field(default_factory=set)


def quality_of(status: int) -> Quality:
    """Severity bits of an OPC UA StatusCode: 00 Good, 01 Uncertain, 10/11 Bad."""
    severity = (status >> 30) & 0b11
    if severity == 0:
        return "good"
    if severity == 1:
        return "uncertain"
    return "bad"


def _iso(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _storable(time_ns: int | None) -> int | None:
    """A timestamp, if a store can hold it (years 1677–2262); else None, as if the server left it empty."""
    return time_ns if time_ns is not None and TIME_MIN <= time_ns <= TIME_MAX else None


class PointMaker:
    """Turns batches of samples into Points for one connector, counting what it skips."""

    def __init__(
        self,
        *,
        measurement: str,
        tags: Mapping[str, str],
        timestamps: TimestampSource,
        bad_values: Literal["store", "drop"],
        status: Status,
        log: logging.LoggerAdapter[logging.Logger],
        clock: Callable[[], int] | None = None,
    ) -> None:
        self.measurement = measurement
        self.tags = dict(tags)
        self._quality_tags = {q: {**self.tags, "quality": q} for q in ("uncertain", "bad")}
        self.timestamps = timestamps
        self.bad_values = bad_values
        self.status = status
        self.log = log
        self.items: dict[int, Item] = {}
        self._clock: Callable[[], int] = clock or time.time_ns

    def _time(self, sample: Sample, received: int) -> int:
        source, server = _storable(sample.source_ns), _storable(sample.server_ns)
        if self.timestamps == "source":
            return source or server or received
        if self.timestamps == "server":
            return server or source or received
        return received

    def convert(self, samples: list[Sample]) -> list[Point]:
        received = self._clock()
        points: list[Point] = []
        counters = self.status.counters
        counters["received"] = counters.get("received", 0) + len(samples)
        for sample in samples:
            item = self.items.get(sample.handle)
            if item is None:  # a late notification for an item of a previous session
                continue
            try:
                point = self._one(item, sample, received)
            except PointError as exc:  # one value no store can take: skipped, the others go on
                self._skip(item, "unstorable", f"a value cannot be stored ({exc})")
                continue
            if point is not None:
                points.append(point)
        return points

    def _one(self, item: Item, sample: Sample, received: int) -> Point | None:
        quality = quality_of(sample.status)
        if quality != "good":
            self.status.count("bad_quality")
            if self.bad_values == "drop":
                self.status.count("dropped_bad")
                return None
            return self._not_good(item, sample, quality, received)
        fields = self._fields(item, sample)
        if not fields:
            return None
        time_ns = self._time(sample, received)
        item.last_time = max(item.last_time, time_ns)
        return Point(self.measurement, fields, self.tags, time_ns)

    def _not_good(self, item: Item, sample: Sample, quality: Quality, received: int) -> Point:
        # Never at (or before) the time of the last good value: a Bad sample that carries the
        # previous value's source timestamp must not land on top of it.
        time_ns = self._time(sample, received)
        if time_ns <= item.last_time:
            later = [t for t in (_storable(sample.server_ns), received) if t is not None and t > item.last_time]
            time_ns = min(later) if later else item.last_time + 1
        fields: dict[str, FieldValue] = {f"{item.field}_status": sample.status_name}
        if quality == "uncertain":
            fields.update(self._fields(item, sample) or {})
        return Point(self.measurement, fields, self._quality_tags[quality], time_ns)

    def _fields(self, item: Item, sample: Sample) -> dict[str, FieldValue] | None:
        value = sample.value
        if isinstance(value, list):
            return self._array(item, sample)
        converted = self._scalar(item, sample.kind, value)
        if converted is None:
            return None
        if item.deadband is not None and isinstance(converted, int | float) and not isinstance(converted, bool):
            if item.last_value is not None and abs(converted - item.last_value) <= item.deadband:
                self.status.count("deadband_filtered")
                return None
            item.last_value = float(converted)
        fields: dict[str, FieldValue] = {item.field: converted}
        if item.enum_names is not None and isinstance(converted, int) and not isinstance(converted, bool):
            fields[f"{item.field}_name"] = item.enum_names.get(converted, str(converted))
        return fields

    def _array(self, item: Item, sample: Sample) -> dict[str, FieldValue] | None:
        if item.arrays == "skip":  # asked for: counted, not warned about
            self.status.count("skipped")
            return None
        fields: dict[str, FieldValue] = {}
        for index, element in enumerate(sample.value):
            if isinstance(element, list):
                self._skip(item, "matrix", "it is a multi-dimensional array, which cannot be stored")
                return None
            converted = self._scalar(item, sample.kind, element)
            if converted is not None:
                fields[f"{item.field}_{index}"] = converted
        return fields or None

    def _scalar(self, item: Item, kind: str, value: Any) -> FieldValue | None:
        if value is None:
            self.status.count("skipped")
            return None
        if kind in _SKIPPED_KINDS or isinstance(value, bytes | bytearray):
            self._skip(item, kind, f"its values are {kind}, which cannot be stored as a number or text")
            return None
        result: FieldValue
        if isinstance(value, bool):
            return value
        if isinstance(value, int):
            try:  # beyond 64 bits a float, as far as a double reaches
                result = value if INT64_MIN <= value <= INT64_MAX else float(value)
            except OverflowError:
                self._skip(item, "huge", "an integer too large even for a float was received")
                return None
        elif isinstance(value, float):
            if not math.isfinite(value):
                self.status.count("skipped")
                return None
            result = value
        elif isinstance(value, str):
            return value
        elif isinstance(value, datetime):
            try:
                return _iso(value)
            except OverflowError:  # e.g. 0001-01-01 with an offset east of UTC: year 0 in UTC
                self._skip(item, "datetime", f"the DateTime {value} has no UTC equivalent")
                return None
        else:
            self._skip(item, kind, f"its values are {kind or type(value).__name__}, which are not supported")
            return None
        if item.scale is not None or item.offset is not None:
            result = float(result) * (item.scale if item.scale is not None else 1.0) + (item.offset or 0.0)
            if not math.isfinite(result):
                self._skip(item, "scaled", f"scale and offset turn a value into {result}")
                return None
        return result

    def _skip(self, item: Item, key: str, reason: str) -> None:
        self.status.count("skipped")
        if key not in item.warned:
            item.warned.add(key)
            self.log.warning("node %s (field %s) is skipped: %s", item.node, item.field, reason)
