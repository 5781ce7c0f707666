"""Durations and sizes as written in config files."""

from __future__ import annotations

import math
from typing import Any

import pytest
from pydantic import ValidationError

from gateway.settings import StrictModel
from gateway.units import Duration, Size, format_duration, parse_duration, parse_size


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("250ms", 0.25),
        ("5s", 5.0),
        ("10m", 600.0),
        ("2h", 7200.0),
        ("30d", 30 * 86400.0),
        ("1w", 604800.0),
        ("1m30s", 90.0),
        ("1h 30m", 5400.0),
        ("1.5s", 1.5),
        ("500us", 0.0005),
        ("500µs", 0.0005),
        ("100ns", 1e-7),
        (" 5s ", 5.0),
        ("90", 90.0),  # a number in text (quoted, or from ${VAR}) is seconds
        ("0.5", 0.5),
        (90, 90.0),
        (0.25, 0.25),
        (0, 0.0),
    ],
)
def test_durations(text: Any, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "5x",
        "s",
        "-5s",
        "5 parsecs",
        "1m30",
        "five seconds",
        "5s,",
        True,
        None,
        [5],
        -1,
        math.nan,
        math.inf,
    ],
)
def test_bad_durations_raise_value_error_saying_how_to_write_one(text: Any) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("512MiB", 512 * 2**20),
        ("1GiB", 2**30),
        ("100MB", 100 * 10**6),
        ("1.5GiB", int(1.5 * 2**30)),
        ("64KiB", 65536),
        ("2kb", 2000),
        ("1TiB", 2**40),
        ("10B", 10),
        ("4096", 4096),
        (" 512 MiB ", 512 * 2**20),
        ("512mib", 512 * 2**20),
        (1024, 1024),
        (0, 0),
    ],
)
def test_sizes(text: Any, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "MiB", "-1MiB", "5 megabytes", "1.5.5MB", True, None, 1.5, -1, [1]])
def test_bad_sizes_raise_value_error_saying_how_to_write_one(text: Any) -> None:
    with pytest.raises(ValueError, match="size"):
        parse_size(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.25, "250ms"), (5, "5s"), (90, "1m30s"), (86400, "1d"), (93784, "1d2h3m4s"), (1.5, "1.5s"), (0, "0ms")],
)
def test_format_duration_writes_the_config_syntax(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == pytest.approx(seconds)


class _Model(StrictModel):
    timeout: Duration = 1.0
    max_size: Size = 0


def test_duration_and_size_in_a_model() -> None:
    model = _Model.model_validate({"timeout": "1m30s", "max_size": "512MiB"})
    assert model.timeout == 90.0
    assert model.max_size == 512 * 2**20


@pytest.mark.parametrize(
    ("key", "value"), [("timeout", True), ("timeout", "soon"), ("max_size", [1]), ("max_size", "big")]
)
def test_wrong_values_are_validation_errors_not_crashes(key: str, value: Any) -> None:
    with pytest.raises(ValidationError) as info:
        _Model.model_validate({key: value})
    assert "e.g." in str(info.value)


def test_json_schema_documents_the_syntax() -> None:
    import re

    schema = _Model.model_json_schema()["properties"]
    duration_pattern = schema["timeout"]["anyOf"][0]["pattern"]
    size_pattern = schema["max_size"]["anyOf"][0]["pattern"]
    for good in ("250ms", "1m30s", "30d", "90"):
        assert re.search(duration_pattern, good), good
    for bad in ("5 parsecs", "s"):
        assert not re.search(duration_pattern, bad), bad
    for good in ("512MiB", "1GiB", "100MB", "4096"):
        assert re.search(size_pattern, good), good
    assert not re.search(size_pattern, "big")
