"""Durations (``500ms``, ``10s``, ``5m``, ``30d``) and sizes (``512MiB``) for config models.

``Duration`` validates to seconds as a float, ``Size`` to bytes as an int. Both accept a bare
number too (seconds, bytes), and both document their syntax in the JSON Schema.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, WithJsonSchema

__all__ = ["Duration", "Size", "format_duration", "parse_duration", "parse_size"]

_NUMBER = re.compile(r"\s*\d+(?:\.\d+)?\s*")
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ns|us|µs|ms|s|m|h|d|w)\s*")
_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 604800.0,
}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B|)\s*", re.IGNORECASE)
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}


def _not_a_duration(value: Any) -> ValueError:
    # ValueError, not TypeError, for every wrong input: pydantic reports only ValueError as a config problem.
    return ValueError(f"{value!r:.40} is not a duration: write a number and a unit, e.g. 500ms, 10s, 5m, 30d")


def _not_a_size(value: Any) -> ValueError:
    return ValueError(f"{value!r:.40} is not a size: write a number and a unit, e.g. 512MiB, 1GiB, 100MB")


def parse_duration(value: Any) -> float:
    """``"1m30s"``, ``"500ms"``, ``"30d"`` or a number of seconds → seconds."""
    if isinstance(value, bool):
        raise _not_a_duration(value)
    if isinstance(value, str) and _NUMBER.fullmatch(value):
        value = float(value)  # "90" (quoted, or from an environment variable) is seconds, like 90
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise _not_a_duration(value)
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    if not isinstance(value, str):
        raise _not_a_duration(value)
    text = value.strip()
    pos = 0
    total = 0.0
    while pos < len(text):
        match = _DURATION.match(text, pos)
        if match is None:
            raise ValueError(
                f"{value!r} is not a duration: write a number and a unit (ms, s, m, h, d), e.g. 500ms, 10s, 5m, 30d"
            )
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if not text:
        raise ValueError("a duration cannot be empty")
    return total


def parse_size(value: Any) -> int:
    """``"512MiB"``, ``"1GB"``, or a number of bytes → bytes."""
    if isinstance(value, bool):
        raise _not_a_size(value)
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a size cannot be negative")
        return value
    if isinstance(value, str):
        match = _SIZE.fullmatch(value)
        if match is not None:
            return int(float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()])
    raise ValueError(f"{value!r} is not a size: write a number and a unit, e.g. 512MiB, 1GiB, 100MB")


def format_duration(seconds: float) -> str:
    """Seconds back to the config syntax, for messages (``90`` → ``1m30s``)."""
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    parts = []
    remaining = seconds
    for unit, length in (("d", 86400), ("h", 3600), ("m", 60)):
        if remaining >= length:
            count = int(remaining // length)
            parts.append(f"{count}{unit}")
            remaining -= count * length
    if remaining or not parts:
        parts.append(f"{remaining:g}s")
    return "".join(parts)


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": r"^(\s*\d+(\.\d+)?\s*(ns|us|µs|ms|s|m|h|d|w)\s*)+$|^\s*\d+(\.\d+)?\s*$"},
                {"type": "number", "minimum": 0},
            ],
            "description": "A duration: 500ms, 10s, 5m, 2h, 30d (or a number of seconds).",
        }
    ),
    Field(ge=0),
]

Size = Annotated[
    int,
    BeforeValidator(parse_size),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*([KMGTkmgt][iI]?[bB]|[bB])?\s*$"},
                {"type": "integer", "minimum": 0},
            ],
            "description": "A size: 512MiB, 1GiB, 100MB (or a number of bytes).",
        }
    ),
    Field(ge=0),
]
