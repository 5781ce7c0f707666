"""The topic template of the MQTT sink: a point's tags, measurement and field → an MQTT topic name.

Pure functions, no I/O. A template is text with placeholders in braces::

    lab/{line}/{machine}/{measurement}/{field}

- ``{measurement}`` is the point's measurement, ``{field}`` the field's name (the template then
  gives one topic, and one message, per field); any other name is a tag of the point;
- ``{machine|meter|sensor}`` takes the first of those tags the point has (sources name their
  asset tag differently);
- ``{{`` and ``}}`` are literal braces.

A point that lacks a tag the template needs gets no topic: :meth:`TopicTemplate.render` says
which placeholder was missing, and the sink counts and skips the point.

**Sanitising.** Every value put into a topic (tag values, the measurement, field names) is made
one safe topic level: ``/``, ``+`` and ``#`` — which would change the tree or make the name a
filter — become ``_``, as do the characters brokers refuse in topic names (NUL, the control
characters U+0001–U+001F and U+007F–U+009F, Unicode non-characters: Mosquitto closes the
connection of a client that sends one, which would stop the sink on one bad tag value). A
topic that would begin with ``$`` (reserved for the broker's own topics, ``$SYS``) begins with
``_`` instead. Values are never empty (a point's names never are); an empty one would become
``_``, so a level is never lost. The template itself is checked once, when the config is read:
no ``+``/``#``, no empty level (``a//b``, a leading or trailing ``/``), no leading ``$``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

__all__ = ["MAX_TOPIC_BYTES", "Missing", "TopicTemplate", "Topics", "sanitise"]

#: Longest MQTT topic name, in UTF-8 bytes.
MAX_TOPIC_BYTES: Final = 65535
#: Placeholders that are not tags.
MEASUREMENT: Final = "measurement"
FIELD: Final = "field"

_ASCII_UNSAFE: Final = {code: "_" for code in (*range(0x20), 0x7F, ord("/"), ord("+"), ord("#"))}
_UNSAFE: Final = re.compile(
    "[/+#\x00-\x1f\x7f-\x9f\ufdd0-\ufdef"
    + "".join(f"{chr(plane << 16 | 0xFFFE)}{chr(plane << 16 | 0xFFFF)}" for plane in range(17))
    + "]"
)


@functools.lru_cache(maxsize=65536)
def sanitise(value: str) -> str:
    """``value`` as one safe topic level (see the module docstring)."""
    value = value.translate(_ASCII_UNSAFE) if value.isascii() else _UNSAFE.sub("_", value)
    return value or "_"


@dataclass(frozen=True, slots=True)
class _Slot:
    """A placeholder: the first of ``names`` that the point has (tags), or a reserved name alone."""

    names: tuple[str, ...]

    @property
    def text(self) -> str:
        return "{" + "|".join(self.names) + "}"


@dataclass(frozen=True, slots=True)
class Missing:
    """A point lacks what a placeholder needs: ``placeholder`` is its text, e.g. ``{machine}``."""

    placeholder: str
    tags: tuple[str, ...]


_Part = str | _Slot


class Topics:
    """The topic names of one series (a measurement with its tags), from :meth:`TopicTemplate.render`.

    ``pieces`` are the sanitised parts around ``{field}`` (one piece, the whole topic, for a
    template without it). A name longer than MQTT allows comes out as ``""``.
    """

    __slots__ = ("by_field", "pieces")

    def __init__(self, pieces: tuple[str, ...]) -> None:
        self.pieces = pieces
        #: field name → topic, filled as fields are met (the sink's hot path reads it directly)
        self.by_field: dict[str, str] = {}

    def topic(self, field: str | None = None) -> str:
        """The topic of the point (template without ``{field}``) or of one of its fields."""
        pieces = self.pieces
        if len(pieces) == 1:
            return _finish(pieces[0])
        topic = _finish(sanitise(field or "").join(pieces))
        if field is not None and len(self.by_field) < 10_000:
            self.by_field[field] = topic
        return topic


def _finish(topic: str) -> str:
    if topic[:1] == "$":
        topic = "_" + topic[1:]  # a placeholder's value must not make it a broker topic ($SYS…)
    if len(topic) > MAX_TOPIC_BYTES // 4 and len(topic.encode()) > MAX_TOPIC_BYTES:
        return ""
    return topic


class TopicTemplate:
    """A parsed, checked template; :meth:`render` gives the topic parts of one point."""

    def __init__(self, text: str) -> None:
        """Raise ValueError saying what is wrong with ``text`` (see the module docstring)."""
        self.text = text
        self.parts = _parse(text)
        _check(text, self.parts)
        slots = [part for part in self.parts if isinstance(part, _Slot)]
        #: One message per field (the template names ``{field}``), else one per point.
        self.per_field = any(slot.names == (FIELD,) for slot in slots)
        #: Every tag the template reads, in order (the key of a point's topic).
        self.tags: tuple[str, ...] = tuple(
            dict.fromkeys(name for slot in slots for name in slot.names if name not in (MEASUREMENT, FIELD))
        )

    def __repr__(self) -> str:
        return f"TopicTemplate({self.text!r})"

    def render(self, measurement: str, tags: Mapping[str, str]) -> Topics | Missing:
        """The topics of a point's series, or what it lacks for them."""
        out: list[str] = []
        piece = ""
        for part in self.parts:
            if isinstance(part, str):
                piece += part
                continue
            names = part.names
            if names == (FIELD,):
                out.append(piece)
                piece = ""
                continue
            if names == (MEASUREMENT,):
                piece += sanitise(measurement)
                continue
            for name in names:
                value = tags.get(name)
                if value is not None:
                    piece += sanitise(value)
                    break
            else:
                return Missing(part.text, names)
        out.append(piece)
        return Topics(tuple(out))


def _parse(text: str) -> list[_Part]:
    parts: list[_Part] = []
    literal = ""
    i = 0
    while i < len(text):
        char = text[i]
        if char == "{" and text.startswith("{{", i):
            literal += "{"
            i += 2
            continue
        if char == "}" and text.startswith("}}", i):
            literal += "}"
            i += 2
            continue
        if char == "}":
            raise ValueError(f"topic {text!r}: '}}' at position {i} closes nothing (write }}}} for a literal brace)")
        if char != "{":
            literal += char
            i += 1
            continue
        end = text.find("}", i + 1)
        if end < 0:
            raise ValueError(f"topic {text!r}: '{{' at position {i} is never closed (write {{{{ for a literal brace)")
        inner = text[i + 1 : end]
        if "{" in inner:
            raise ValueError(f"topic {text!r}: a placeholder cannot contain '{{': {text[i : end + 1]!r}")
        names = tuple(name.strip() for name in inner.split("|"))
        if not all(names):
            raise ValueError(
                f"topic {text!r}: the placeholder {text[i : end + 1]!r} needs a name: a tag, measurement or field "
                "(or tags separated by |, e.g. {machine|meter})"
            )
        if len(names) > 1 and any(name in (MEASUREMENT, FIELD) for name in names):
            raise ValueError(
                f"topic {text!r}: {{measurement}} and {{field}} stand alone; alternatives (a|b) are for tags"
            )
        if literal:
            parts.append(literal)
            literal = ""
        parts.append(_Slot(names))
        i = end + 1
    if literal:
        parts.append(literal)
    return parts


def _check(text: str, parts: list[_Part]) -> None:
    if not text:
        raise ValueError("topic is empty: give a template such as plant/{line}/{machine}/{measurement}/{field}")
    literal = "".join(part for part in parts if isinstance(part, str))
    for char, why in (("+", "'+'"), ("#", "'#'")):
        if char in literal:
            raise ValueError(
                f"topic {text!r} contains {why}: it is a topic name to publish to, not a subscription filter"
            )
    if _UNSAFE.sub("", literal.replace("/", "")) != literal.replace("/", ""):
        raise ValueError(f"topic {text!r} contains a control character or a character MQTT brokers refuse")
    if parts and isinstance(parts[0], str) and parts[0].startswith("$"):
        raise ValueError(f"topic {text!r} begins with '$', which brokers reserve for their own topics ($SYS)")
    # Every level must hold something: a placeholder or literal text.
    levels: list[bool] = [False]
    for part in parts:
        if isinstance(part, _Slot):
            levels[-1] = True
            continue
        pieces = part.split("/")
        levels[-1] = levels[-1] or bool(pieces[0])
        levels.extend(bool(piece) for piece in pieces[1:])
    if not all(levels):
        raise ValueError(
            f"topic {text!r} has an empty level (a leading or trailing '/', or '//'): every level must hold "
            "text or a placeholder"
        )
    if len(literal.encode()) > MAX_TOPIC_BYTES:
        raise ValueError(f"topic {text!r:.80} is longer than {MAX_TOPIC_BYTES} bytes")
