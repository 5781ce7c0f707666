"""InfluxDB line protocol: the project's own encoder and parser.

The encoder is a plain string builder with escaping (influxdb-client's ``Point`` is about ten
times slower); the parser reads payloads that arrive already in line protocol (the MQTT
``influx`` format) and checks the encoder in the property tests.

Escaping rules (https://docs.influxdata.com/influxdb/v2/reference/syntax/line-protocol/):

- measurement: comma and space are escaped with a backslash;
- tag keys, tag values, field keys: comma, equals sign and space are escaped;
- string field values are double-quoted; double quote and backslash are escaped; a line
  break inside a string value is kept as is (the parser reads quoted strings whole);
- integers end in ``i``, booleans are ``true``/``false``, floats use Python's shortest
  round-trip representation; NaN and infinity never reach the encoder (``Point`` refuses them).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence

from gateway.errors import DecodeError
from gateway.point import FieldValue, Point

__all__ = ["encode", "encode_batch", "parse", "parse_line"]

_MEASUREMENT_SPECIAL = re.compile(r"[, ]")
_KEY_SPECIAL = re.compile(r"[,= ]")
_NAME_CACHE: dict[str, str] = {}
_MEASUREMENT_CACHE: dict[str, str] = {}
_CACHE_LIMIT = 100_000


def _escape_key(name: str) -> str:
    """Escape a tag key, tag value or field key (cached: names repeat endlessly)."""
    escaped = _NAME_CACHE.get(name)
    if escaped is None:
        escaped = _KEY_SPECIAL.sub(lambda m: "\\" + m.group(0), name)
        if len(_NAME_CACHE) >= _CACHE_LIMIT:
            _NAME_CACHE.clear()
        _NAME_CACHE[name] = escaped
    return escaped


def _escape_measurement(name: str) -> str:
    escaped = _MEASUREMENT_CACHE.get(name)
    if escaped is None:
        escaped = _MEASUREMENT_SPECIAL.sub(lambda m: "\\" + m.group(0), name)
        if len(_MEASUREMENT_CACHE) >= _CACHE_LIMIT:
            _MEASUREMENT_CACHE.clear()
        _MEASUREMENT_CACHE[name] = escaped
    return escaped


def _encode_value(value: FieldValue) -> str:
    kind = type(value)
    if kind is float:
        return repr(value)
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return f"{value}i"
    text: str = value  # type: ignore[assignment]
    if "\\" in text or '"' in text:
        text = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def encode(point: Point) -> str:
    """One point as one line of line protocol (no trailing newline), tags sorted by key."""
    esc = _escape_key
    head = _escape_measurement(point.measurement)
    tags = point.tags
    if tags:
        head += "".join(
            f",{esc(key)}={esc(value)}" for key, value in (sorted(tags.items()) if len(tags) > 1 else tags.items())
        )
    fields = ",".join(f"{esc(key)}={_encode_value(value)}" for key, value in point.fields.items())
    return f"{head} {fields} {point.time}"


def encode_batch(points: Iterable[Point]) -> bytes:
    """Many points as one line-protocol body, ready to POST, UTF-8, newline-terminated."""
    return ("\n".join(map(encode, points)) + "\n").encode()


# --- parser ---------------------------------------------------------------------------------

_SERIES = re.compile(r"((?:[^\\ ]|\\.)+)(?: |$)")
_FIELD = re.compile(r'((?:[^\\=, ]|\\.)+)=("(?:[^"\\]|\\.)*"|[^ ,"]+)(,|(?= )|$)', re.DOTALL)
_TIMESTAMP = re.compile(r" (-?\d+)\s*$")
_SERIES_PART = re.compile(r"(?:[^\\,]|\\.)*")
_UNESCAPE_NAME = re.compile(r"\\([,= ])")
_UNESCAPE_MEASUREMENT = re.compile(r"\\([, ])")
_UNESCAPE_STRING = re.compile(r'\\(["\\])')
_FLOAT = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_INT = re.compile(r"[+-]?\d+[iu]")


def _unescape(name: str) -> str:
    return _UNESCAPE_NAME.sub(r"\1", name) if "\\" in name else name


def _split_series(series: str) -> list[str]:
    """Measurement and tag pairs, split at the commas that are not escaped."""
    if "\\" not in series:
        return series.split(",")
    parts = []
    pos = 0
    while True:
        part = _SERIES_PART.match(series, pos)
        assert part is not None  # the pattern matches the empty string
        parts.append(part.group())
        pos = part.end() + 1  # past the comma that ended this part
        if pos > len(series):
            return parts


def _parse_value(raw: str, line: str) -> FieldValue:
    if raw.startswith('"'):
        return _UNESCAPE_STRING.sub(r"\1", raw[1:-1])
    if _INT.fullmatch(raw):
        return int(raw[:-1])
    if raw in ("t", "T", "true", "True", "TRUE"):
        return True
    if raw in ("f", "F", "false", "False", "FALSE"):
        return False
    if _FLOAT.fullmatch(raw):
        return float(raw)
    raise DecodeError(f"field value {raw!r:.40} is not a number, boolean or quoted string in {line!r:.80}")


def parse_line(line: str, default_time: int | None = None) -> Point:
    """Parse one line of line protocol into a Point (``default_time`` when it has none)."""
    if line[:1] in (" ", "\t"):
        line = line.lstrip(" \t")  # as InfluxDB does
    series = _SERIES.match(line)
    if series is None or series.end() >= len(line):
        raise DecodeError(f"line has no fields: {line!r:.80}")
    parts = _split_series(series.group(1))
    measurement = _UNESCAPE_MEASUREMENT.sub(r"\1", parts[0]) if "\\" in parts[0] else parts[0]
    tags: dict[str, str] = {}
    for pair in parts[1:]:
        key, sep, value = _split_pair(pair)
        if not sep:
            raise DecodeError(f"tag {pair!r:.40} has no '=' in {line!r:.80}")
        tags[_unescape(key)] = _unescape(value)
    rest = line[series.end() :]
    if rest[:1] in (" ", "\t"):
        rest = rest.lstrip(" \t")  # as InfluxDB does
    fields: dict[str, FieldValue] = {}
    pos = 0
    while True:
        match = _FIELD.match(rest, pos)
        if match is None:
            raise DecodeError(f"cannot read fields at {rest[pos:]!r:.40} in {line!r:.80}")
        fields[_unescape(match.group(1))] = _parse_value(match.group(2), line)
        pos = match.end()
        if match.group(3) != ",":
            break
    tail = rest[pos:]
    timestamp = default_time
    if tail.strip():
        stamp = _TIMESTAMP.fullmatch(tail)
        if stamp is None:
            raise DecodeError(f"unexpected text {tail!r:.40} after the fields in {line!r:.80}")
        timestamp = int(stamp.group(1))
    try:
        return Point(measurement, fields, tags, timestamp)
    except ValueError as exc:
        raise DecodeError(str(exc)) from None


def _split_pair(pair: str) -> tuple[str, str, str]:
    index = 0
    while True:
        index = pair.find("=", index)
        if index < 0:
            return pair, "", ""
        if index == 0 or pair[index - 1] != "\\":
            return pair[:index], "=", pair[index + 1 :]
        index += 1


_LINE_TOKENS = re.compile(r'\\.|["=, \n]', re.DOTALL)


def _lines(text: str) -> Iterator[str]:
    """Split a body into lines; a line break inside a quoted string value belongs to the value.

    As in InfluxDB's own scanner, a double quote opens a string only in a field value (after
    the first unescaped space, where more '=' than ',' were seen): quotes in names are literal.
    """
    if '"' not in text:
        yield from text.split("\n")
        return
    start = 0
    in_fields = quoted = False
    equals = commas = 0
    for match in _LINE_TOKENS.finditer(text):
        char = match.group()
        if len(char) == 2:  # an escaped character
            continue
        if quoted:
            if char == '"':
                quoted = False
        elif char == "\n":
            yield text[start : match.start()]
            start = match.end()
            in_fields = False
            equals = commas = 0
        elif char == " ":
            in_fields = True
        elif in_fields:
            if char == "=":
                equals += 1
            elif char == ",":
                commas += 1
            elif equals > commas:
                quoted = True
    yield text[start:]


def parse(text: str, default_time: int | None = None) -> Sequence[Point]:
    """Parse a body of line protocol; blank lines and ``#`` comments are skipped."""
    points = []
    for line in _lines(text):
        stripped = line.rstrip("\r")
        start = stripped.lstrip(" \t")  # the whitespace InfluxDB skips; other characters are names
        if not start or start[0] == "#":
            continue
        points.append(parse_line(stripped, default_time))
    return points
