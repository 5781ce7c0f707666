"""Line protocol: encode → parse round trips (property-tested), every escaping rule by example.

The examples follow the InfluxDB line-protocol reference
(https://docs.influxdata.com/influxdb/v2/reference/syntax/line-protocol/): measurements escape
commas and spaces; tag keys, tag values and field keys escape commas, equals signs and
spaces; string field values are double-quoted with double quotes and backslashes escaped;
integers end in ``i``. The encoder is also checked against an independent parser
(``line-protocol-parser`` from PyPI, a C implementation) when it is installed.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.errors import DecodeError, PointError
from gateway.lineprotocol import encode, encode_batch, parse, parse_line
from gateway.point import INT64_MAX, INT64_MIN, TIME_MAX, TIME_MIN, Point
from tests.helpers import examples

# --- strategies ----------------------------------------------------------------------------------

_SPECIAL = ",= \"'#\t{}[]:;/|"
_plain_char = st.one_of(
    st.sampled_from(list(_SPECIAL)),
    st.characters(exclude_characters="\n\r\\\x00", exclude_categories=["Cs"]),
)
# A backslash is allowed in names only before an ordinary character (see Point).
_escaped_literal = st.characters(exclude_characters="\n\r\\,= \x00", exclude_categories=["Cs"]).map(lambda c: "\\" + c)
names = st.lists(st.one_of(_plain_char, _plain_char, _plain_char, _escaped_literal), min_size=1, max_size=12).map(
    "".join
)
measurements = names.filter(lambda name: name[0] not in "#\t\x00")
field_keys = names.filter(lambda name: name[0] not in "\t\x00")
strings = st.text(
    alphabet=st.one_of(
        st.sampled_from(list('"\\\n\r ,=\t')),
        st.characters(exclude_categories=["Cs"]),
    ),
    max_size=40,
)
ints = st.one_of(st.integers(INT64_MIN, INT64_MAX), st.sampled_from([INT64_MIN, INT64_MAX, 0, -1, 1]))
floats = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(allow_nan=False, allow_infinity=False, allow_subnormal=True, min_value=-1e-300, max_value=1e-300),
    st.sampled_from([5e-324, -5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, -0.0, 0.0, 1e16, 1e22, 0.1]),
)
values: st.SearchStrategy[float | int | bool | str] = st.one_of(ints, floats, st.booleans(), strings)
times = st.one_of(st.integers(TIME_MIN, TIME_MAX), st.sampled_from([TIME_MIN, TIME_MAX, 0, -1]))


@st.composite
def points(draw: st.DrawFn) -> Point:
    return Point(
        draw(measurements),
        draw(st.dictionaries(field_keys, values, min_size=1, max_size=5)),
        draw(st.dictionaries(names, names, max_size=4)),
        draw(times),
    )


def _same(a: Point, b: Point) -> bool:
    """Equal, with floats compared bit for bit (so -0.0 and 0.0 differ)."""
    return a == b and all(
        math.copysign(1, v) == math.copysign(1, float(b.fields[k])) for k, v in a.fields.items() if type(v) is float
    )


# --- round trips ---------------------------------------------------------------------------------


@settings(max_examples=examples(400, 2000), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(points())
def test_encode_then_parse_gives_back_the_same_point(point: Point) -> None:
    line = encode(point)
    assert "\n" not in line.replace("\\n", "") or any(type(v) is str and "\n" in v for v in point.fields.values()), (
        "a line break outside a string value"
    )
    parsed = parse_line(line)
    assert _same(parsed, point), line


@settings(max_examples=examples(150, 750), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(points(), min_size=1, max_size=8))
def test_encode_batch_then_parse_gives_back_every_point_in_order(batch: list[Point]) -> None:
    body = encode_batch(batch)
    assert body.endswith(b"\n")
    parsed = parse(body.decode("utf-8"))
    assert len(parsed) == len(batch), body
    for got, want in zip(parsed, batch, strict=True):
        assert _same(got, want), body


try:
    import line_protocol_parser
except ImportError:  # pragma: no cover - optional test dependency
    line_protocol_parser = None

needs_reference_parser = pytest.mark.skipif(
    line_protocol_parser is None, reason="line-protocol-parser (PyPI) is not installed"
)


def _reference_parse(line: str) -> dict[str, Any]:
    assert line_protocol_parser is not None
    result: dict[str, Any] = line_protocol_parser.parse_line(line)
    return result


# The reference parser (a C library) reads names up to the first NUL and treats a backslash
# before any character as an escape in names, as InfluxDB 1.x does; keep to names it reads
# the same way as InfluxDB 2.x.
_reference_char = st.one_of(
    st.sampled_from(list(_SPECIAL)),
    st.characters(exclude_characters="\n\r\\\x00", exclude_categories=["Cs"]),
)
reference_names = st.text(alphabet=_reference_char, min_size=1, max_size=12)
reference_strings = st.text(
    alphabet=st.one_of(
        st.sampled_from(list('"\\\n ,=')), st.characters(exclude_characters="\x00", exclude_categories=["Cs"])
    ),
    max_size=40,
)


# It also refuses subnormal floats (strtod's ERANGE); InfluxDB's Go parser reads them.
reference_floats = st.floats(allow_nan=False, allow_infinity=False, allow_subnormal=False)


@st.composite
def reference_points(draw: st.DrawFn) -> Point:
    return Point(
        draw(reference_names.filter(lambda n: n[0] not in "#\t")),
        draw(
            st.dictionaries(
                reference_names.filter(lambda n: n[0] != "\t"),
                st.one_of(ints, reference_floats, st.booleans(), reference_strings),
                min_size=1,
                max_size=5,
            )
        ),
        draw(st.dictionaries(reference_names, reference_names, max_size=4)),
        draw(times),
    )


@needs_reference_parser
@settings(max_examples=examples(300, 1500), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(reference_points())
def test_an_independent_parser_reads_what_we_encode(point: Point) -> None:
    line = encode(point)
    parsed = _reference_parse(line)
    assert parsed["measurement"] == point.measurement, line
    assert parsed["tags"] == dict(point.tags), line
    assert parsed["time"] == point.time, line
    assert {k: (type(v), v) for k, v in parsed["fields"].items()} == {
        k: (type(v), v) for k, v in point.fields.items()
    }, line


@needs_reference_parser
@pytest.mark.parametrize(
    "line",
    [
        'my\\ Measurement fieldKey="string value"',
        'myMeasurement fieldKey="\\"string\\" within a string"',
        "myMeasurement,tag\\ Key1=tag\\ Value1,tag\\ Key2=tag\\ Value2 fieldKey=100",
        'myMeasurement,tagKey=🍭 fieldKey="Launch 🚀" 1556813561098000000',
        'home,room=Living\\ Room temp=21.1,hum=35.9,co=0i,ok=t,s="a\\\\b" 1641024000000000000',
        "weather,location=us-midwest temperature=82 1465839830100400200",
        "m\\,x,k\\=1=v\\,2 f\\ g=-1.5e-07,i=-9223372036854775808i,b=FALSE -1",
    ],
)
def test_our_parser_agrees_with_the_independent_parser_on_reference_lines(line: str) -> None:
    ours = parse_line(line)
    theirs = _reference_parse(line)
    assert ours.measurement == theirs["measurement"]
    assert dict(ours.tags) == theirs["tags"]
    assert {k: (type(v), v) for k, v in ours.fields.items()} == {k: (type(v), v) for k, v in theirs["fields"].items()}
    if theirs["time"] is not None:
        assert ours.time == theirs["time"]


# --- escaping rules, one by one ------------------------------------------------------------------

T = 1556813561098000000


@pytest.mark.parametrize(
    ("point", "line"),
    [
        # measurement: comma and space escaped; an equals sign is literal
        (Point("my Measurement", {"f": 1}, time=T), f"my\\ Measurement f=1i {T}"),
        (Point("my,Measurement", {"f": 1}, time=T), f"my\\,Measurement f=1i {T}"),
        (Point("my=Measurement", {"f": 1}, time=T), f"my=Measurement f=1i {T}"),
        (Point('my"Measurement', {"f": 1}, time=T), f'my"Measurement f=1i {T}'),
        # tag keys and values: comma, equals sign and space escaped
        (Point("m", {"f": 1}, {"tag Key": "tag Value"}, T), f"m,tag\\ Key=tag\\ Value f=1i {T}"),
        (Point("m", {"f": 1}, {"a,b": "c,d"}, T), f"m,a\\,b=c\\,d f=1i {T}"),
        (Point("m", {"f": 1}, {"a=b": "c=d"}, T), f"m,a\\=b=c\\=d f=1i {T}"),
        (Point("m", {"f": 1}, {"q": '"x"'}, T), f'm,q="x" f=1i {T}'),
        # field keys: comma, equals sign and space escaped
        (Point("m", {"field key": 1}, time=T), f"m field\\ key=1i {T}"),
        (Point("m", {"a,b=c": 1}, time=T), f"m a\\,b\\=c=1i {T}"),
        # string values: double quotes and backslashes escaped, the rest literal
        (Point("m", {"s": '"string" within a string'}, time=T), f'm s="\\"string\\" within a string" {T}'),
        (Point("m", {"s": "C:\\temp\\"}, time=T), f'm s="C:\\\\temp\\\\" {T}'),
        (Point("m", {"s": "a, b = c"}, time=T), f'm s="a, b = c" {T}'),
        (Point("m", {"s": "two\nlines"}, time=T), f'm s="two\nlines" {T}'),
        (Point("m", {"s": ""}, time=T), f'm s="" {T}'),
        # literal backslashes in names stay single
        (Point("C:\\data", {"f": 1}, {"p": "a\\b"}, T), f"C:\\data,p=a\\b f=1i {T}"),
        # value types
        (Point("m", {"i": -(2**63), "j": 2**63 - 1}, time=T), f"m i=-9223372036854775808i,j=9223372036854775807i {T}"),
        (Point("m", {"t": True, "f": False}, time=T), f"m t=true,f=false {T}"),
        (Point("m", {"x": 1.0, "y": 0.1, "z": -0.0}, time=T), f"m x=1.0,y=0.1,z=-0.0 {T}"),
        (Point("m", {"x": 1e16, "y": 5e-324}, time=T), f"m x=1e+16,y=5e-324 {T}"),
        # unicode is written as UTF-8 text
        (
            Point("myMeasurement", {"fieldKey": "Launch 🚀"}, {"tagKey": "🍭"}, T),
            f'myMeasurement,tagKey=🍭 fieldKey="Launch 🚀" {T}',
        ),
        # negative times (before 1970)
        (Point("m", {"f": 1}, time=-1), "m f=1i -1"),
    ],
)
def test_escaping_rules_match_the_reference(point: Point, line: str) -> None:
    assert encode(point) == line
    assert parse_line(line) == point


def test_tags_are_written_sorted_by_key() -> None:
    assert encode(Point("m", {"f": 1}, {"b": "2", "a": "1", "c": "3"}, 0)) == "m,a=1,b=2,c=3 f=1i 0"


def test_fields_keep_their_order() -> None:
    assert encode(Point("m", {"b": 1, "a": 2}, time=0)) == "m b=1i,a=2i 0"


def test_encode_batch_is_utf8_lines_each_ending_in_newline() -> None:
    body = encode_batch([Point("m", {"f": "ü"}, time=1), Point("n", {"g": 2}, time=2)])
    assert body == 'm f="ü" 1\nn g=2i 2\n'.encode()


def test_encode_batch_of_nothing_is_an_empty_body() -> None:
    assert encode_batch([]).strip() == b""


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_nan_and_infinity_never_reach_the_encoder(value: float) -> None:
    with pytest.raises(PointError, match="NaN and infinity cannot be stored"):
        Point("m", {"x": value})


# --- the parser on its own -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("m f=1 5", Point("m", {"f": 1.0}, time=5)),
        ("m f=1i 5", Point("m", {"f": 1}, time=5)),
        ("m f=1u 5", Point("m", {"f": 1}, time=5)),
        ("m a=t,b=T,c=true,d=True,e=TRUE 5", Point("m", dict.fromkeys("abcde", True), time=5)),
        ("m a=f,b=F,c=false,d=False,e=FALSE 5", Point("m", dict.fromkeys("abcde", False), time=5)),
        ("m f=-1.5E+3,g=.5,h=2. 5", Point("m", {"f": -1500.0, "g": 0.5, "h": 2.0}, time=5)),
        ("m,t=1 f=1i 5\r", Point("m", {"f": 1}, {"t": "1"}, 5)),
        ('m,t=a s="idle",n=1i 5', Point("m", {"s": "idle", "n": 1}, {"t": "a"}, 5)),
        ('m s="a=b",e="" 5', Point("m", {"s": "a=b", "e": ""}, time=5)),
        ('m k"ey="x",q="a b,c" 5', Point("m", {'k"ey': "x", "q": "a b,c"}, time=5)),
        ('m,t"=v" s="x" 5', Point("m", {"s": "x"}, {'t"': 'v"'}, 5)),
    ],
)
def test_parser_reads_every_value_syntax(text: str, expected: Point) -> None:
    assert parse(text) == [expected]


def test_parser_skips_leading_whitespace_as_influxdb_does() -> None:
    assert parse("  \tm f=1i 1\n\t# indented comment\nm \t f=2i 2") == [
        Point("m", {"f": 1}, time=1),
        Point("m", {"f": 2}, time=2),
    ]


def test_parser_skips_blank_lines_and_comments() -> None:
    text = "# a comment\n\nm f=1i 1\n   \n# another\nm f=2i 2\n"
    assert parse(text) == [Point("m", {"f": 1}, time=1), Point("m", {"f": 2}, time=2)]


def test_parser_uses_the_default_time_for_lines_without_one() -> None:
    assert parse("m f=1i", default_time=42) == [Point("m", {"f": 1}, time=42)]


def test_a_string_value_with_a_line_break_stays_in_its_line() -> None:
    text = 'm s="one\ntwo",n=1i 1\nm s="\\"\n# not a comment\n" 2\n'
    assert parse(text) == [
        Point("m", {"s": "one\ntwo", "n": 1}, time=1),
        Point("m", {"s": '"\n# not a comment\n'}, time=2),
    ]


def test_quotes_in_names_do_not_start_a_string() -> None:
    # InfluxDB reads a double quote as the start of a string only in a field value.
    text = 'a"b,t"=x"y f"=1i 1\nc f="q" 2\n'
    assert parse(text) == [Point('a"b', {'f"': 1}, {'t"': 'x"y'}, 1), Point("c", {"f": "q"}, time=2)]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("m", "no fields"),
        ("m ", "no fields"),
        ("m f=", "cannot read fields"),
        ("m f=nan 1", "is not a number"),
        ("m f=inf 1", "is not a number"),
        ("m f=+Inf 1", "is not a number"),
        ("m f=abc 1", "is not a number"),
        ('m f="open 1', "cannot read fields"),
        ("m,t f=1 1", "has no '='"),
        ("m f=1 1 2", "unexpected text"),
        ("m f=1 12x", "unexpected text"),
        ("m f=99999999999999999999i 1", "64-bit"),
        ("m f=1i 99999999999999999999", "time"),
        ("#m f=1i 1\n,t=1 f=1i 1", "measurement is empty"),
    ],
)
def test_malformed_lines_raise_decode_error_with_the_reason(text: str, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        parse(text)


def test_decode_error_shows_an_excerpt_of_the_line() -> None:
    with pytest.raises(DecodeError) as info:
        parse("machine,line=A spindle=fast 1700000000000000000")
    assert "spindle=fast" in str(info.value) or "'fast'" in str(info.value)


def test_a_long_malformed_line_gives_a_short_message() -> None:
    with pytest.raises(DecodeError) as info:
        parse("m f=x" + "y" * 100_000)
    assert len(str(info.value)) < 300


# --- the encoder's caches ------------------------------------------------------------------------


def test_the_same_series_with_tags_in_another_order_encodes_the_same() -> None:
    a = Point("m", {"f": 1}, {"b": "2", "a": "1"}, 0)
    b = Point("m", {"f": 1}, {"a": "1", "b": "2"}, 0)
    assert encode(a) == encode(b) == "m,a=1,b=2 f=1i 0"


def test_encoding_stays_right_when_the_caches_overflow(monkeypatch: pytest.MonkeyPatch) -> None:
    import gateway.lineprotocol as lp

    monkeypatch.setattr(lp, "_SERIES_CACHE_LIMIT", 3)
    monkeypatch.setattr(lp, "_CACHE_LIMIT", 3)
    batch = [
        Point(f"m {i % 7}", {f"f,{i % 5}": i, "g": float(i)}, {"t": f"v={i % 11}", "u": "x"}, i) for i in range(200)
    ]
    assert list(parse(encode_batch(batch).decode())) == batch
    assert len(lp._SERIES_CACHE) <= 3
    assert len(lp._FIELD_PREFIX) <= 3


@settings(max_examples=examples(300, 1500), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(points(), st.sampled_from(["", " ", "\t", "  "]))
def test_the_parser_fast_paths_agree_with_the_general_path(point: Point, indent: str) -> None:
    import gateway.lineprotocol as lp

    line = indent + encode(point)
    assert _same(lp._parse_general(line, None), point)
    assert _same(parse_line(line), point)
    without_time = line.rsplit(" ", 1)[0]
    assert _same(parse_line(without_time, default_time=7), lp._parse_general(without_time, 7))


@pytest.mark.parametrize(
    "line",
    ["m f=1 --5", "m f=1 ١٢", "m f=1 ²", "m,t=a=b f=1 1", "m,=b f=1 1", "m,t= f=1 1", "m =1 1", "m f= 1", "m f=1, 1"],
)
def test_the_fast_paths_never_accept_what_the_general_path_refuses(line: str) -> None:
    import gateway.lineprotocol as lp

    try:
        expected: Point | None = lp._parse_general(line, None)
    except DecodeError:
        expected = None
    if expected is None:
        with pytest.raises(DecodeError):
            parse_line(line)
    else:
        assert parse_line(line) == expected


# --- hostile text ----------------------------------------------------------------------------------

_HOSTILE_TOKENS = [
    "m", ",", "=", " ", "\\", '"', "i", "u", "t", "true", "1", "-", ".", "e", "#", "\t", "\n", "\r", "é", "\x00",
    "9" * 25, "9" * 5000, "nan", "inf", "1e999", "٣", "host=a", "v=1", 's="x y"',
]


@settings(max_examples=examples(300, 3000), deadline=None)
@given(
    st.one_of(
        st.lists(st.sampled_from(_HOSTILE_TOKENS), max_size=40).map("".join),
        st.text(max_size=200),
        st.binary(max_size=200).map(lambda b: b.decode("utf-8", "replace")),
    )
)
def test_any_text_parses_into_valid_points_or_one_decode_error(text: str) -> None:
    """MQTT's influx format hands the parser whatever a device sent: points, or a DecodeError."""
    try:
        parsed = parse(text, default_time=0)
    except DecodeError as exc:
        assert str(exc)
        return
    for point in parsed:
        assert isinstance(point, Point)
        encode(point)
