"""The MQTT sink's topic template and sanitising (pure): what a plant engineer writes, what comes out."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.sinks.mqtt.topic import Missing, Topics, TopicTemplate, sanitise

CONTRACT = "lab/{line}/{machine}/{measurement}/{field}"


def topic(template: str, measurement: str, tags: dict[str, str], field: str | None = None) -> str:
    series = TopicTemplate(template).render(measurement, tags)
    assert isinstance(series, Topics), series
    return series.topic(field)


def test_the_contract_template_gives_one_topic_per_field() -> None:
    template = TopicTemplate(CONTRACT)
    assert template.per_field and template.tags == ("line", "machine")
    tags = {"line": "A", "machine": "cnc-01", "quality": "bad"}
    assert topic(CONTRACT, "machine", tags, "spindle_rpm") == "lab/A/cnc-01/machine/spindle_rpm"


def test_without_field_one_topic_per_point() -> None:
    template = TopicTemplate("plant/{site}/{machine}/{measurement}")
    assert not template.per_field
    assert topic(template.text, "energy", {"site": "north", "machine": "m7"}) == "plant/north/m7/energy"


def test_alternatives_take_the_first_tag_the_point_has() -> None:
    text = "lab/{line}/{machine|meter|sensor}/{measurement}/{field}"
    assert topic(text, "energy", {"line": "A", "meter": "m7"}, "power_w") == "lab/A/m7/energy/power_w"
    assert topic(text, "temp", {"line": "A", "sensor": "t1", "meter": "x"}, "c") == "lab/A/x/temp/c"
    assert topic(text, "machine", {"line": "A", "machine": "cnc"}, "rpm") == "lab/A/cnc/machine/rpm"
    assert TopicTemplate(text).tags == ("line", "machine", "meter", "sensor")


def test_a_missing_tag_names_the_placeholder() -> None:
    template = TopicTemplate(CONTRACT)
    missing = template.render("energy", {"line": "A", "meter": "m7"})
    assert missing == Missing("{machine}", ("machine",))
    alternatives = TopicTemplate("x/{machine|meter}/{field}").render("energy", {"line": "A"})
    assert alternatives == Missing("{machine|meter}", ("machine", "meter"))


def test_placeholders_inside_a_level_and_literal_braces() -> None:
    assert topic("site/{line}-{machine}/{field}", "m", {"line": "A", "machine": "7"}, "f") == "site/A-7/f"
    assert topic("a/{{raw}}/{field}", "m", {}, "f") == "a/{raw}/f"
    assert topic("{measurement}/{field}/{field}", "m", {}, "v") == "m/v/v"


@pytest.mark.parametrize(
    ("value", "safe"),
    [
        ("A/1", "A_1"),
        ("+", "_"),
        ("#", "_"),
        ("line/#/+", "line____"),
        ("tab\there", "tab_here"),
        ("del\x7fete", "del_ete"),
        ("next\u0085line", "next_line"),
        ("non\ufffechar", "non_char"),
        ("plane\U0010ffff", "plane_"),
        ("nonchar\ufdd0", "nonchar_"),
        ("Grüße 温度 °C", "Grüße 温度 °C"),  # any script is kept
        ("with space", "with space"),
        ("emoji 🛠", "emoji 🛠"),
        ("", "_"),
    ],
)
def test_sanitise_makes_one_safe_level(value: str, safe: str) -> None:
    assert sanitise(value) == safe


def test_a_value_never_makes_a_broker_topic() -> None:
    assert topic("{line}/{field}", "m", {"line": "$SYS"}, "x") == "_SYS/x"
    assert topic("{field}/{line}", "m", {"line": "a"}, "$f") == "_f/a"
    assert topic("{measurement}", "$SYS", {}) == "_SYS"


def test_a_topic_longer_than_mqtt_allows_comes_out_empty() -> None:
    assert topic("{line}/{field}", "m", {"line": "x" * 70_000}, "f") == ""
    assert topic("{line}", "m", {"line": "é" * 33_000}) == ""  # 66,000 bytes in UTF-8


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("", "topic is empty"),
        ("lab/+/{field}", "contains '+'"),
        ("lab/#", "contains '#'"),
        ("$SYS/{field}", "begins with '$'"),
        ("/lab/{field}", "empty level"),
        ("lab/{field}/", "empty level"),
        ("lab//{field}", "empty level"),
        ("lab/{line", "is never closed"),
        ("lab/line}", "closes nothing"),
        ("lab/{}/x", "needs a name"),
        ("lab/{a|}/x", "needs a name"),
        ("lab/{machine|field}", "stand alone"),
        ("lab/{a{b}}", "cannot contain '{'"),
        ("lab/\t/{field}", "control character"),
        ("x" * 65_536, "longer than 65535 bytes"),
    ],
)
def test_template_mistakes_are_explained(template: str, message: str) -> None:
    with pytest.raises(ValueError, match=None) as caught:
        TopicTemplate(template)
    assert message in str(caught.value)


_TEXT = st.text(min_size=1, max_size=40)


@given(line=_TEXT, machine=_TEXT, measurement=_TEXT, field=_TEXT)
def test_no_value_ever_changes_the_tree(line: str, machine: str, measurement: str, field: str) -> None:
    """Whatever the values, the topic has the template's five levels, none empty, no wildcard,
    nothing a broker refuses, and each level is the value itself when it was already safe."""
    name = topic(CONTRACT, measurement, {"line": line, "machine": machine}, field)
    levels = name.split("/")
    assert len(levels) == 5 and levels[0] == "lab" and all(levels)
    assert "+" not in name and "#" not in name and not name.startswith("$")
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F or (ord(c) & 0xFFFE) == 0xFFFE for c in name)
    name.encode()  # valid UTF-8
    for level, value in zip(levels[1:], (line, machine, measurement, field), strict=True):
        assert len(level) == len(value)  # one character for one character: nothing spills over
        if sanitise(value) == value:
            assert level == value
