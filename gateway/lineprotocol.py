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
from collections.abc import Iterable, Iterator, Mapping, Sequence

from gateway.errors import DecodeError
from gateway.point import FieldValue, Point

__all__ = ["encode", "encode_batch", "parse", "parse_line"]

_MEASUREMENT_SPECIAL = re.compile(r"[, ]")
_KEY_SPECIAL = re.compile(r"[,= ]")
_CACHE_LIMIT = 100_000


def _escape_key(name: str) -> str:
    """Escape a tag key, tag value or field key."""
    if "," in name or "=" in name or " " in name:
        return _KEY_SPECIAL.sub(r"\\\g<0>", name)
    return name


def _escape_measurement(name: str) -> str:
    if "," in name or " " in name:
        return _MEASUREMENT_SPECIAL.sub(r"\\\g<0>", name)
    return name


_SERIES_CACHE: dict[object, str] = {}
_SERIES_CACHE_LIMIT = 20_000
_FIELD_PREFIX: dict[str, str] = {}


def _series(measurement: str, tags: Mapping[str, str]) -> str:
    """Measurement and tags, escaped, tags sorted by key (InfluxDB's own order: fastest ingest)."""
    esc = _escape_key
    head = _escape_measurement(measurement)
    if tags:
        head += "".join(f",{esc(key)}={esc(value)}" for key, value in sorted(tags.items()))
    return head


def _field_prefix(key: str) -> str:
    if len(_FIELD_PREFIX) >= _CACHE_LIMIT:
        _FIELD_PREFIX.clear()
    prefix = _FIELD_PREFIX[key] = _escape_key(key) + "="
    return prefix


def encode(point: Point) -> str:
    """One point as one line of line protocol (no trailing newline), tags sorted by key."""
    # The series part (measurement and tags) repeats for every sample of a series: cached.
    tags = point.tags
    series_key: object = (point.measurement, *tags.items()) if tags else point.measurement
    head = _SERIES_CACHE.get(series_key)
    if head is None:
        if len(_SERIES_CACHE) >= _SERIES_CACHE_LIMIT:
            _SERIES_CACHE.clear()
        head = _SERIES_CACHE[series_key] = _series(point.measurement, tags)
    parts: list[str] = []
    append = parts.append
    prefixes = _FIELD_PREFIX
    for key, value in point.fields.items():
        prefix = prefixes.get(key) or _field_prefix(key)
        kind = type(value)
        if kind is float:
            append(prefix + repr(value))
        elif kind is int:
            append(f"{prefix}{value}i")
        elif kind is bool:
            append(prefix + ("true" if value else "false"))
        else:
            # a str is what remains, but mypy does not narrow on the type() checks above
            text: str = value  # type: ignore[assignment]
            if "\\" in text or '"' in text:
                text = text.replace("\\", "\\\\").replace('"', '\\"')
            append(f'{prefix}"{text}"')
    return f"{head} {','.join(parts)} {point.time}"


def encode_batch(points: Iterable[Point]) -> bytes:
    """Many points as one line-protocol body, ready to POST, UTF-8, newline-terminated."""
    return ("\n".join(map(encode, points)) + "\n").encode()


# --- parser ---------------------------------------------------------------------------------

_SERIES = re.compile(r"((?:[^\\ ]|\\.)+)(?: |$)")
_FIELD = re.compile(r'((?:[^\\=, ]|\\.)+)=("(?:[^"\\]|\\.)*"|[^ ,"]+)(,|(?= )|$)', re.DOTALL)
# re.ASCII: \d would also match other scripts' digits (int("٣") is 3), which no store accepts.
_TIMESTAMP = re.compile(r" (-?\d+)\s*$", re.ASCII)
_SERIES_PART = re.compile(r"(?:[^\\,]|\\.)*")
_UNESCAPE_MEASUREMENT = re.compile(r"\\([, ])")
_UNESCAPE_STRING = re.compile(r'\\(["\\])')
_FLOAT = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_INT = re.compile(r"[+-]?\d+[iu]", re.ASCII)
# A line in the shape the encoder writes (the common case) is read by one regex; anything else
# (extra whitespace, errors) takes the general path below, which says what is wrong.
_NAME = r"(?:[^ ,=\\]|\\.)+"
_VALUE = r'(?:"(?:[^"\\]|\\.)*"|[^ ,"\\]+)'
_FAST_LINE = re.compile(
    rf"((?:[^ ,\\]|\\.)+)((?:,{_NAME}={_NAME})*) ({_NAME}={_VALUE}(?:,{_NAME}={_VALUE})*)(?: (-?\d+))?",
    re.DOTALL | re.ASCII,
)
_FAST_TAG = re.compile(rf",({_NAME})=({_NAME})", re.DOTALL)
_FAST_FIELD = re.compile(rf"({_NAME})=({_VALUE})", re.DOTALL)


def _unescape(name: str) -> str:
    if "\\" in name:  # (equivalent to a regex substitution: the three escapes cannot overlap)
        return name.replace("\\,", ",").replace("\\=", "=").replace("\\ ", " ")
    return name


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


#: Digits of the longest 64-bit integer (uint64). Longer numbers cannot be stored, and Python's
#: str → int conversion is quadratic in their length (refused past 4,300 digits): refused first.
_INT_DIGITS = 20


def _integer(digits: str, what: str, line: str) -> int:
    if len(digits.lstrip("+-").lstrip("0")) > _INT_DIGITS:
        raise DecodeError(f"{what} {digits:.30}… does not fit in a 64-bit integer in {line!r:.80}")
    return int(digits)


def _timestamp(stamp: str, line: str) -> int:
    if len(stamp.lstrip("-").lstrip("0")) > _INT_DIGITS:
        raise DecodeError(
            f"timestamp {stamp:.30}… is outside the range a time-series store can hold (years 1677 to 2262) "
            f"in {line!r:.80}"
        )
    return int(stamp)


def _parse_value(raw: str, line: str) -> FieldValue:
    if raw[0] == '"':
        text = raw[1:-1]
        return _UNESCAPE_STRING.sub(r"\1", text) if "\\" in text else text
    if raw[-1] in "iu" and _INT.fullmatch(raw):
        return _integer(raw[:-1], "field value", line)
    if raw in ("t", "T", "true", "True", "TRUE"):
        return True
    if raw in ("f", "F", "false", "False", "FALSE"):
        return False
    if _FLOAT.fullmatch(raw):
        return float(raw)
    raise DecodeError(f"field value {raw!r:.40} is not a number, boolean or quoted string in {line!r:.80}")


def parse_line(line: str, default_time: int | None = None) -> Point:
    """Parse one line of line protocol into a Point (``default_time`` when it has none)."""
    if line[:1] in ("", " ", "\t"):  # (leading whitespace is skipped, as InfluxDB does)
        return _parse_general(line, default_time)
    if "\\" not in line:
        plain = _parse_plain(line, default_time)
        if plain is not None:
            return plain
    fast = _FAST_LINE.fullmatch(line)
    if fast is None:
        return _parse_general(line, default_time)
    measurement, tag_text, field_text, stamp = fast.groups()
    if "\\" in measurement:
        measurement = _UNESCAPE_MEASUREMENT.sub(r"\1", measurement)
    try:
        return Point(
            measurement,
            {_unescape(key): _parse_value(raw, line) for key, raw in _FAST_FIELD.findall(field_text)},
            {_unescape(key): _unescape(value) for key, value in _FAST_TAG.findall(tag_text)} if tag_text else None,
            _timestamp(stamp, line) if stamp is not None else default_time,
        )
    except ValueError as exc:
        raise DecodeError(str(exc)) from None


def _parse_plain(line: str, default_time: int | None) -> Point | None:
    """A line without escapes, read with str.split (None: not that simple, use a regex).

    Strings are taken here only when they hold no space, comma or quote (``state="idle"``).
    """
    parts = line.split(" ")
    if len(parts) == 3:
        stamp = parts[2]
        if not (stamp.isascii() and (stamp.isdigit() or (stamp[:1] == "-" and stamp[1:].isdigit()))):
            return None
        timestamp: int | None = _timestamp(stamp, line)
    elif len(parts) == 2:
        timestamp = default_time
    else:
        return None
    if '"' in parts[0]:
        return None
    series = parts[0].split(",")
    tags = {}
    for pair in series[1:]:
        key, _, value = pair.partition("=")
        if not key or not value or "=" in value:
            return None
        tags[key] = value
    fields = {}
    for pair in parts[1].split(","):
        key, _, value = pair.partition("=")
        if not key or not value:
            return None
        if '"' in pair and (len(value) < 2 or value[0] != '"' or value[-1] != '"' or value.count('"') != 2):
            return None  # a quote in a key, or a string holding a space, a comma or a quote
        fields[key] = _parse_value(value, line)
    try:
        return Point(series[0], fields, tags, timestamp)
    except ValueError as exc:
        raise DecodeError(str(exc)) from None


def _parse_general(line: str, default_time: int | None) -> Point:
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
        timestamp = _timestamp(stamp.group(1), line)
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
    """Split a body into lines; a line break inside a quoted string value belongs to the value."""
    if '"' not in text:
        yield from text.split("\n")
        return
    pos = 0
    end = len(text)
    while pos <= end:
        newline = text.find("\n", pos)
        if newline < 0:
            newline = end
        line = text[pos:newline]
        if '"' in line and _FAST_LINE.fullmatch(line) is None:
            newline = _end_of_line(text, pos)
            line = text[pos:newline]
        yield line
        pos = newline + 1


def _end_of_line(text: str, start: int) -> int:
    """Where the line starting at ``start`` ends, reading quotes as InfluxDB's scanner does.

    A double quote opens a string only in a field value (after the first unescaped space, where
    more '=' than ',' were seen): quotes in names are literal.
    """
    in_fields = quoted = False
    equals = commas = 0
    for match in _LINE_TOKENS.finditer(text, start):
        char = match.group()
        if len(char) == 2:  # an escaped character
            continue
        if quoted:
            if char == '"':
                quoted = False
        elif char == "\n":
            return match.start()
        elif char == " ":
            in_fields = True
        elif in_fields:
            if char == "=":
                equals += 1
            elif char == ",":
                commas += 1
            elif equals > commas:
                quoted = True
    return len(text)


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
