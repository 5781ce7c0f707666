"""MQTT payloads → points: pure functions, no I/O, compiled once per topic filter.

A :class:`TopicDecoder` is built from one :class:`~connectors.mqtt.config.TopicConfig`: key
paths are split once, tags from topic segments are cached per topic, JSON is read with orjson.
``decode(topic, payload, received_ns)`` returns the points of one message or raises
:class:`~gateway.errors.DecodeError` with a message that says what is wrong with the payload.

Formats:

- ``json``: fields picked by key path (``a.b.c``, list indexes ``a.0.b``), or every top-level
  number/boolean/text when ``fields`` is omitted; ``flatten`` turns nested objects into
  ``a_b_c`` fields; a payload that is a JSON array (or the list at ``records``) gives one point
  per object;
- ``value``: the payload is one number, ``true``/``false`` or text;
- ``influx``: the payload is line protocol (:func:`gateway.lineprotocol.parse`).

Hostile payloads are one :class:`DecodeError` each (the connector counts them as malformed):
invalid JSON or UTF-8, NaN and infinity, nesting deeper than orjson's 1,024 levels, and a JSON
object with the same key twice (which value is meant cannot be known; most parsers silently
keep the last). With ``numbers: auto`` an integer too large for 64 bits is malformed too (no
store keeps it as an integer; ``numbers: float``, the default, stores it as a float).
"""

from __future__ import annotations

import contextlib
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from connectors.mqtt.config import FieldSpec, TimeSpec, TopicConfig
from gateway.errors import DecodeError, PointError
from gateway.lineprotocol import parse as parse_line_protocol
from gateway.point import INT64_MAX, INT64_MIN, FieldValue, Point, check_names, check_tags

__all__ = ["TopicDecoder", "TopicMatcher", "excerpt", "filter_matches"]

_MISSING: Final = object()
_TAG_CACHE_LIMIT: Final = 10_000
#: Longer topics are not cached: 10,000 cached topics of 64 KiB (the MQTT limit) would hold 640 MB.
_CACHED_TOPIC_LENGTH: Final = 256
_UNIT_NS: Final = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}
_ISO_FRACTION: Final = re.compile(r"\.(\d{7,})")
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)

Step = tuple[str, int | None]
Path = tuple[Step, ...]


def excerpt(payload: bytes, limit: int = 60) -> str:
    """The start of a payload, printable, for log lines."""
    return repr(bytes(payload[:limit]))[1:] + ("…" if len(payload) > limit else "")


def _size(size: int) -> str:
    for unit, length in (("MiB", 2**20), ("KiB", 2**10)):
        if size >= length and size % length == 0:
            return f"{size // length}{unit}"
    return f"{size} bytes"


# --- topic filters ----------------------------------------------------------------------------


def filter_matches(filter_segments: Sequence[str], topic: str) -> bool:
    """Does ``topic`` match the filter (split on '/')? Topics starting with '$' need a literal first segment."""
    segments = topic.split("/")
    if topic.startswith("$") and filter_segments and filter_segments[0] in ("+", "#"):
        return False
    for index, wanted in enumerate(filter_segments):
        if wanted == "#":
            return True
        if index >= len(segments):
            return False
        if wanted != "+" and wanted != segments[index]:
            return False
    return len(segments) == len(filter_segments) or (
        # "a/#" also matches "a" itself
        len(filter_segments) == len(segments) + 1 and filter_segments[-1] == "#"
    )


class TopicMatcher:
    """Which filter (the first listed) a topic belongs to; results cached per topic."""

    def __init__(self, filters: Sequence[str]) -> None:
        self._filters = [tuple(f.split("/")) for f in filters]
        self._cache: dict[str, int | None] = {}

    def match(self, topic: str) -> int | None:
        try:
            return self._cache[topic]
        except KeyError:
            pass
        found = next((i for i, f in enumerate(self._filters) if filter_matches(f, topic)), None)
        if len(topic) <= _CACHED_TOPIC_LENGTH:
            if len(self._cache) >= _TAG_CACHE_LIMIT:
                self._cache.clear()
            self._cache[topic] = found
        return found


# --- key paths --------------------------------------------------------------------------------


def _compile_path(path: str) -> Path:
    steps: list[Step] = []
    for part in path.split("."):
        index: int | None
        try:
            index = int(part)
        except ValueError:
            index = None
        steps.append((part, index))
    return tuple(steps)


def _pick(value: Any, path: Path) -> Any:
    for key, index in path:
        kind = type(value)
        if kind is dict:
            value = value.get(key, _MISSING)
            if value is _MISSING:
                return _MISSING
        elif kind is list and index is not None and -len(value) <= index < len(value):
            value = value[index]
        else:
            return _MISSING
    return value


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return f"{value!r:.40}"


# --- duplicate keys ---------------------------------------------------------------------------

# Every key in JSON text is followed by a colon (after optional whitespace): text with no more
# colons, or no more `"` + colon, than the parsed document has keys cannot hold a key twice.
_KEY_END: Final = re.compile(rb'"[ \t\n\r]*:')


class _DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


def _key_count(document: dict[str, Any] | list[Any]) -> int:
    count = 0
    stack: list[Any] = [document]
    while stack:  # a loop, not recursion: orjson reads 1,024 levels, more than Python's stack
        value = stack.pop()
        items = value.values() if type(value) is dict else value
        if type(value) is dict:
            count += len(value)
        for item in items:
            if type(item) is dict or type(item) is list:
                stack.append(item)
    return count


def _unique(pairs: list[tuple[str, Any]]) -> None:
    if len({key for key, _ in pairs}) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)


def _check_unique_keys(payload: bytes, document: dict[str, Any] | list[Any]) -> None:
    """DecodeError if an object of the JSON text holds a key twice (orjson keeps the last silently).

    Two counts of the text settle nearly every payload at a fraction of the parse's cost; only a
    payload with a duplicate, or with text values that look like keys ("a\":b"), is parsed again.
    """
    keys = _key_count(document)
    # (about 0.4 µs for a payload of a few keys; the regex, for text with ISO times, 0.5 µs more)
    if payload.count(b":") == keys or len(_KEY_END.findall(payload)) == keys:
        return
    try:
        json.loads(payload, object_pairs_hook=_unique)
    except _DuplicateKey as exc:
        raise DecodeError(f"key {exc.key!r:.60} appears twice in the same object: which value is meant?") from None


# --- integers past 64 bits ---------------------------------------------------------------------

# orjson reads an integer literal past 64 bits as a float, silently. With numbers: auto (integers
# stay integers) such a literal is malformed like one just below 2**64, which orjson keeps as an
# int and Point refuses: a payload with 20 digits in a row is read again by the json module,
# which says which numbers were written as integers.
_LONG_DIGITS: Final = re.compile(rb"[0-9]{20}")


class _BigInt(str):
    """The digits of an integer literal past 64 bits (numbers: auto): no store keeps it as an integer."""

    def __repr__(self) -> str:
        return str(self)


def _parse_int(text: str) -> int | _BigInt:
    value = int(text)
    return value if INT64_MIN <= value <= INT64_MAX else _BigInt(text)


class _TooBig(ValueError):
    """A converter met a _BigInt where it must give an integer."""


def _too_big(where: str, value: Any) -> DecodeError:
    # the same words as Point's own refusal of an integer between 2**63 and 2**64
    return DecodeError(f"{where} = {value:.40} does not fit in a 64-bit integer (numbers: float stores it as a float)")


# --- value conversions -----------------------------------------------------------------------

Convert = Callable[[Any], FieldValue]


def _auto(numbers: str) -> Convert:
    floats = numbers == "float"

    def convert(value: Any) -> FieldValue:
        kind = type(value)
        if kind is float or kind is str or kind is bool:
            return value  # type: ignore[no-any-return]
        if kind is int:
            return float(value) if floats else value
        if kind is _BigInt:
            raise _TooBig
        raise ValueError("a number, boolean or text")

    return convert


def _to_float(value: Any) -> FieldValue:
    kind = type(value)
    if kind is float:
        return value  # type: ignore[no-any-return]
    if kind is int or kind is _BigInt:
        return float(value)
    if kind is str:
        try:
            return float(value)
        except ValueError:
            pass
    raise ValueError("a number")


def _to_int(value: Any) -> FieldValue:
    kind = type(value)
    if kind is int:
        return value  # type: ignore[no-any-return]
    if kind is float and value.is_integer():
        return int(value)
    if kind is str:
        try:
            return int(value)
        except ValueError:
            pass
    if kind is _BigInt:
        raise _TooBig
    raise ValueError("an integer")


def _to_bool(value: Any) -> FieldValue:
    kind = type(value)
    if kind is bool:
        return value  # type: ignore[no-any-return]
    if (kind is int or kind is float) and value in (0, 1):
        return bool(value)
    if kind is str and value.lower() in ("true", "false"):
        return bool(value.lower() == "true")
    raise ValueError("true or false")


def _to_string(value: Any) -> FieldValue:
    kind = type(value)
    if kind is str or kind is _BigInt:
        return str(value)
    if kind is bool:
        return "true" if value else "false"
    if kind is int or kind is float:
        return str(value)
    raise ValueError("text")


def _converter(spec: FieldSpec, numbers: str) -> Convert:
    if spec.type == "float":
        return _to_float
    if spec.type == "int":
        return _to_int
    if spec.type == "bool":
        return _to_bool
    if spec.type == "string":
        return _to_string
    return _auto(numbers)


def _tag_text(value: Any) -> str | None:
    kind = type(value)
    if kind is str:
        return value or None
    if kind is _BigInt:
        return str(value)
    if kind is bool:
        return "true" if value else "false"
    if kind is int or kind is float:
        return str(value)
    return None


# --- time ------------------------------------------------------------------------------------


#: Times beyond ±2**63 ns (years 1677–2262) cannot be stored anywhere downstream.
_NS_LIMIT: Final = float(2**63)


def _time_reader(spec: TimeSpec) -> Callable[[Any], int]:
    if spec.unit == "iso8601":
        return _iso_ns
    factor = _UNIT_NS[spec.unit]
    unit = spec.unit

    def read(value: Any) -> int:
        kind = type(value)
        if kind is str:
            try:
                value = int(value)
            except ValueError:
                try:
                    value = float(value)
                except ValueError:
                    raise ValueError(f"a number of {unit} since 1970") from None
            kind = type(value)
        if kind is int:
            return value * factor  # type: ignore[no-any-return]
        if kind is float and math.isfinite(value) and abs(value * factor) < _NS_LIMIT:
            # Floats carry about 16 digits: keep microseconds, which they hold exactly for dates near now.
            return round(value * factor / 1000) * 1000 if factor >= 1000 else round(value)  # type: ignore[no-any-return]
        raise ValueError(f"a number of {unit} since 1970 (years 1677 to 2262)")

    return read


def _iso_ns(value: Any) -> int:
    if type(value) is not str:
        raise ValueError("ISO 8601 text such as 2024-05-01T12:00:00.250Z")
    extra_ns = 0
    text = value
    fraction = _ISO_FRACTION.search(text)
    if fraction is not None:  # datetime keeps microseconds: read the digits beyond them here
        digits = fraction.group(1)
        extra_ns = int(digits[6:9].ljust(3, "0"))
        text = text[: fraction.start()] + "." + digits[:6] + text[fraction.end() :]
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError("ISO 8601 text such as 2024-05-01T12:00:00.250Z") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000 + extra_ns


# --- the decoder ----------------------------------------------------------------------------


class TopicDecoder:
    """Turns the messages of one topic filter into points (see the module docstring)."""

    def __init__(
        self,
        config: TopicConfig,
        *,
        measurement: str,
        tags: Mapping[str, str] | None = None,
        max_payload_size: int = 256 * 1024,
    ) -> None:
        self.config = config
        self.format = config.format
        self.measurement = config.measurement or measurement
        self.static_tags = {**(tags or {}), **config.tags}
        self.max_payload_size = max_payload_size
        self._topic_tags = tuple(config.tags_from_topic.items())
        #: topic → its tags, and whether they passed the point's checks (only when _names_checked)
        self._tag_cache: dict[str, tuple[dict[str, str], bool]] = {}
        self._payload_tags = tuple((name, path, _compile_path(path)) for name, path in config.tags_from_payload.items())
        self._time: tuple[str, Path, Callable[[Any], int]] | None = None
        if config.time is not None:
            self._time = (config.time.path, _compile_path(config.time.path), _time_reader(config.time))
        # (name, path text, path, conversion, the key when the path is one key, else None)
        self._fields: tuple[tuple[str, str, Path, Convert, str | None], ...] | None = None
        if config.fields is not None:
            self._fields = tuple(
                (name, spec.path, path, _converter(spec, config.numbers), path[0][0] if len(path) == 1 else None)
                for name, spec in config.fields.items()
                for path in (_compile_path(spec.path),)
            )
        # Names the configuration fixes are checked once here, and each topic's tags once per
        # topic, so that a message's point only has its values checked (Point.with_checked_names).
        # A name that fails is left to each message's point to report, as before.
        self._names_checked = False
        if self._fields is not None and not self._payload_tags and not config.flatten:
            with contextlib.suppress(PointError):
                check_names(self.measurement, None, [name for name, *_ in self._fields])
                self._names_checked = True
        self._auto = _auto(config.numbers)
        self._auto_numbers = config.numbers == "auto"
        self._records = None if config.records is None else _compile_path(config.records)
        # Top-level keys that are the time or a tag, not fields, when every value is taken.
        self._reserved = {p for p in [*config.tags_from_payload.values(), config.time.path if config.time else ""] if p}
        self._value_field = config.field

    # -- public --

    def tags_for(self, topic: str) -> dict[str, str]:
        """Static tags plus tags from the topic's segments (cached per topic)."""
        return self._tags_of(topic)[0]

    def _tags_of(self, topic: str) -> tuple[dict[str, str], bool]:
        """The topic's tags, and whether they all pass the point's checks (checked once per topic,
        and only when the configured names passed theirs: see ``_names_checked``)."""
        entry = self._tag_cache.get(topic)
        if entry is None:
            tags = dict(self.static_tags)
            if self._topic_tags:
                segments = topic.split("/")
                count = len(segments)
                for name, index in self._topic_tags:
                    if -count <= index < count and segments[index]:
                        tags[name] = segments[index]
            checked = self._names_checked
            if checked:
                try:
                    check_tags(tags)
                except PointError:
                    checked = False  # each message's point says why
            entry = (tags, checked)
            if len(topic) <= _CACHED_TOPIC_LENGTH:
                if len(self._tag_cache) >= _TAG_CACHE_LIMIT:
                    self._tag_cache.clear()
                self._tag_cache[topic] = entry
        return entry

    def decode(self, topic: str, payload: bytes, received_ns: int) -> list[Point]:
        """The points of one message; DecodeError if the payload cannot give them."""
        if len(payload) > self.max_payload_size:
            raise DecodeError(
                f"payload is {len(payload)} bytes, more than max_payload_size ({_size(self.max_payload_size)})"
            )
        try:
            if self.format == "json":
                return self._json(topic, payload, received_ns)
            if self.format == "value":
                return [self._value(topic, payload, received_ns)]
            return self._influx(topic, payload, received_ns)
        except PointError as exc:
            raise DecodeError(str(exc)) from None
        except RecursionError:
            raise DecodeError("payload is nested too deeply to read (hundreds of levels)") from None
        except OverflowError as exc:
            raise DecodeError(f"a number in the payload is out of range ({exc})") from None

    # -- formats --

    def _json(self, topic: str, payload: bytes, received_ns: int) -> list[Point]:
        try:
            document = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            if not payload.strip():
                raise DecodeError("payload is empty, expected JSON") from None
            raise DecodeError(f"payload is not valid JSON: {exc}") from None
        if type(document) is dict or type(document) is list:
            _check_unique_keys(payload, document)
            if self._auto_numbers and _LONG_DIGITS.search(payload) is not None:
                document = json.loads(payload, parse_int=_parse_int)
        tags, trusted = self._tags_of(topic)
        if self._records is not None:
            if type(document) is not dict:
                raise DecodeError(f"payload is {_describe(document)}, expected a JSON object with records")
            records = _pick(document, self._records)
            if type(records) is not list:
                found = "missing" if records is _MISSING else _describe(records)
                raise DecodeError(f"records {self.config.records!r} is {found}, expected a list of objects")
            return [self._record(item, document, tags, received_ns, i, trusted) for i, item in enumerate(records)]
        kind = type(document)
        if kind is dict:
            return [self._object(document, None, tags, received_ns, trusted)]
        if kind is list:
            return [self._record(item, None, tags, received_ns, i, trusted) for i, item in enumerate(document)]
        raise DecodeError(f"payload is {_describe(document)}, expected a JSON object or an array of objects")

    def _record(
        self,
        item: Any,
        parent: dict[str, Any] | None,
        tags: dict[str, str],
        received_ns: int,
        index: int,
        trusted: bool = False,
    ) -> Point:
        if type(item) is not dict:
            raise DecodeError(f"element {index} of the array is {_describe(item)}, expected an object")
        try:
            return self._object(item, parent, tags, received_ns, trusted)
        except DecodeError as exc:
            raise DecodeError(f"element {index}: {exc}") from None

    def _lookup(self, obj: dict[str, Any], parent: dict[str, Any] | None, path: Path) -> Any:
        value = _pick(obj, path)
        if value is _MISSING and parent is not None:
            value = _pick(parent, path)
        return value

    def _object(
        self,
        obj: dict[str, Any],
        parent: dict[str, Any] | None,
        tags: dict[str, str],
        received_ns: int,
        trusted: bool = False,
    ) -> Point:
        """``trusted``: the measurement, field names and ``tags`` passed the point's checks already."""
        if self._payload_tags:
            tags = dict(tags)
            for name, path_text, path in self._payload_tags:
                text = _tag_text(self._lookup(obj, parent, path))
                if text is None:
                    found = self._lookup(obj, parent, path)
                    raise DecodeError(
                        f"tag {name!r} (path {path_text!r}) is "
                        + ("missing" if found is _MISSING else f"{_describe(found)}, expected text or a number")
                    )
                tags[name] = text
        time = received_ns
        if self._time is not None:
            path_text, path, read = self._time
            raw = self._lookup(obj, parent, path)
            if raw is _MISSING:
                raise DecodeError(f"time (path {path_text!r}) is missing")
            try:
                time = read(raw)
            except ValueError as exc:
                raise DecodeError(f"time (path {path_text!r}) is {_describe(raw)}, expected {exc}") from None
        fields: dict[str, FieldValue] = {}
        if self._fields is None:
            self._all_fields(obj, fields)
            if not fields:
                raise DecodeError("payload has no number, boolean or text value to store")
        else:
            for name, path_text, path, convert, key in self._fields:
                if key is None:
                    raw = self._lookup(obj, parent, path)
                else:  # one key: what _lookup does, without its calls
                    raw = obj.get(key, _MISSING)
                    if raw is _MISSING and parent is not None:
                        raw = parent.get(key, _MISSING)
                if raw is _MISSING:
                    raise DecodeError(f"field {name!r} (path {path_text!r}) is missing")
                if type(raw) is dict and self.config.flatten:
                    self._flatten(raw, name, path_text, fields)
                    continue
                try:
                    fields[name] = convert(raw)
                except _TooBig:
                    raise _too_big(f"field {name!r} (path {path_text!r})", raw) from None
                except ValueError as exc:
                    raise DecodeError(
                        f"field {name!r} (path {path_text!r}) is {_describe(raw)}, expected {exc}"
                    ) from None
        if trusted:
            return Point.with_checked_names(self.measurement, fields, tags, time)
        return Point(self.measurement, fields, tags, time)

    def _all_fields(self, obj: dict[str, Any], fields: dict[str, FieldValue]) -> None:
        reserved = self._reserved
        if self.config.flatten:
            for key, value in obj.items():
                if key not in reserved:
                    self._flatten_value(value, key, key, fields)
            return
        convert = self._auto
        for key, value in obj.items():
            kind = type(value)
            if (kind is float or kind is int or kind is str or kind is bool) and key not in reserved:
                fields[key] = convert(value)
            elif kind is _BigInt and key not in reserved:
                raise _too_big(f"field {key!r:.60}", value)

    def _flatten(self, obj: dict[str, Any], prefix: str, path: str, fields: dict[str, FieldValue]) -> None:
        for key, value in obj.items():
            self._flatten_value(value, f"{prefix}_{key}", f"{path}.{key}", fields)

    def _flatten_value(self, value: Any, name: str, path: str, fields: dict[str, FieldValue]) -> None:
        kind = type(value)
        if kind is dict:
            self._flatten(value, name, path, fields)
        elif kind is list:
            for index, item in enumerate(value):
                self._flatten_value(item, f"{name}_{index}", f"{path}.{index}", fields)
        elif type(value) is _BigInt and path not in self._reserved:
            raise _too_big(f"field {name!r:.60} (path {path!r:.60})", value)
        elif value is not None and path not in self._reserved:
            fields[name] = self._auto(value)

    def _value(self, topic: str, payload: bytes, received_ns: int) -> Point:
        try:
            text = payload.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise DecodeError("payload is not UTF-8 text") from None
        if not text:
            raise DecodeError("payload is empty, expected a number, true/false or text")
        value: FieldValue
        lowered = text.lower()
        if lowered in ("true", "false"):
            value = lowered == "true"
        else:
            try:
                value = int(text) if self.config.numbers == "auto" else float(text)
            except ValueError:
                try:
                    value = float(text)
                except ValueError:
                    value = text
        return Point(self.measurement, {self._value_field: value}, self.tags_for(topic), received_ns)

    def _influx(self, topic: str, payload: bytes, received_ns: int) -> list[Point]:
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError:
            raise DecodeError("payload is not UTF-8 text") from None
        points = parse_line_protocol(text, default_time=received_ns)
        if not points:
            raise DecodeError("payload holds no line of line protocol")
        tags = self.tags_for(topic)
        measurement = self.config.measurement
        if not tags and measurement is None:
            return list(points)
        return [
            Point(measurement or p.measurement, p.fields, {**p.tags, **tags} if tags else p.tags, p.time)
            for p in points
        ]
