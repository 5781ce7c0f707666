"""Node addressing and field naming, without asyncua: pure functions, tested on their own.

Node ids are written as in the OPC UA specification (Part 6, 5.3.1.10)::

    i=2258                          namespace 0 (the standard one)
    ns=2;i=1005                     namespace by index (indexes may move when a server restarts)
    nsu=urn:lab:cnc;s=Spindle.Speed namespace by URI: resolved to its index at every connect
    ns=3;g=09087e75-8e5e-499b-954f-f2a9603db28a
    ns=1;b=M/RbKBsRVkePCePcx24oRA==

A browse path names nodes by their browse names from the Root folder:
``Objects/Machine/Spindle/Speed``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "NodeRef",
    "field_name",
    "format_node_id",
    "is_node_id",
    "parse_browse_path",
    "parse_node_id",
    "unique_field_names",
]

IdKind = Literal["i", "s", "g", "b"]
Identifier = int | str | uuid.UUID | bytes

_KINDS: dict[str, IdKind] = {"i": "i", "s": "s", "g": "g", "b": "b"}  # what the pattern's kind can be
_NODE_ID = re.compile(r"^(?:ns=(?P<ns>\d+);|nsu=(?P<nsu>.+?);)?(?P<kind>[isgb])=(?P<id>.*)$", re.DOTALL)


@dataclass(frozen=True, slots=True)
class NodeRef:
    """A node id as written in a config: by namespace index, or by namespace URI (``nsu=``)."""

    kind: IdKind
    identifier: Identifier
    namespace_index: int = 0
    namespace_uri: str | None = None

    def with_index(self, index: int) -> NodeRef:
        return NodeRef(self.kind, self.identifier, index, self.namespace_uri)


def is_node_id(text: str) -> bool:
    """True when ``text`` is written as a node id rather than a browse path."""
    return _NODE_ID.match(text.strip()) is not None


def parse_node_id(text: str) -> NodeRef:
    """``"nsu=urn:lab:cnc;s=Spindle.Speed"`` → NodeRef; ValueError with a hint when malformed."""
    match = _NODE_ID.match(text.strip())
    if match is None:
        raise ValueError(
            f"{text!r} is not a node id: write e.g. ns=2;i=1005, ns=2;s=Motor.Speed or nsu=urn:lab:cnc;s=Spindle.Speed"
        )
    kind = _KINDS[match["kind"]]
    raw = match["id"]
    identifier: Identifier
    if kind == "i":
        if not raw.isdigit() or int(raw) > 2**32 - 1:
            raise ValueError(f"{text!r}: a numeric identifier (i=) must be a whole number from 0 to 4294967295")
        identifier = int(raw)
    elif kind == "s":
        if not raw:
            raise ValueError(f"{text!r}: the string identifier (s=) is empty")
        identifier = raw
    elif kind == "g":
        try:
            identifier = uuid.UUID(raw)
        except ValueError:
            raise ValueError(f"{text!r}: g= needs a GUID such as 09087e75-8e5e-499b-954f-f2a9603db28a") from None
    else:
        try:
            identifier = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"{text!r}: b= needs base64 text") from None
    if match["nsu"] is not None:
        return NodeRef(kind, identifier, 0, match["nsu"])
    index = int(match["ns"]) if match["ns"] is not None else 0
    if index > 65535:
        raise ValueError(f"{text!r}: namespace index {index} is out of range (0 to 65535)")
    return NodeRef(kind, identifier, index)


def _identifier_text(kind: IdKind, identifier: Identifier) -> str:
    if kind == "b" and isinstance(identifier, bytes):
        return base64.b64encode(identifier).decode("ascii")
    return str(identifier)


def format_node_id(ref: NodeRef, namespace_uri: str | None = None) -> str:
    """The text form; with ``namespace_uri`` (or a ref that has one) the stable ``nsu=`` form."""
    ident = f"{ref.kind}={_identifier_text(ref.kind, ref.identifier)}"
    uri = namespace_uri if namespace_uri is not None else ref.namespace_uri
    if uri is not None and (ref.namespace_uri is not None or ref.namespace_index != 0):
        return f"nsu={uri};{ident}"
    if ref.namespace_index:
        return f"ns={ref.namespace_index};{ident}"
    return ident


def parse_browse_path(text: str) -> tuple[str, ...]:
    """``"Objects/Machine/Counters"`` → ``("Objects", "Machine", "Counters")`` (from the Root folder)."""
    stripped = text.strip().strip("/")
    if re.match(r"^(ns|nsu|[a-z])=", stripped):
        parse_node_id(stripped)  # it was meant as a node id: say what is wrong with it
    if not stripped:
        raise ValueError("the browse path is empty: write e.g. Objects/Machine/Counters")
    parts = tuple(part.strip() for part in stripped.split("/"))
    if any(not part for part in parts):
        raise ValueError(f"{text!r} has an empty step: write e.g. Objects/Machine/Counters")
    if parts[0] == "Root":
        parts = parts[1:]
    if not parts:
        raise ValueError(f"{text!r} names the Root folder itself: start below it, e.g. Objects/Machine")
    return parts


_CAMEL_1 = re.compile(r"([A-Z]+)([A-Z][a-z])")
_CAMEL_2 = re.compile(r"([a-z0-9])([A-Z])")
_NOT_WORD = re.compile(r"[^0-9a-zA-Z]+")


def field_name(parts: Sequence[str], prefix: str = "", *, collapse: bool = False) -> str:
    """Browse names → a snake_case field name: ``("Axes", "X", "Position")`` → ``axes_x_position``.

    With ``collapse``, a name that starts with the words of the folder above it replaces that
    folder's words: ``("Cycle", "CycleTime")`` → ``cycle_time`` (not ``cycle_cycle_time``),
    ``("Energy", "Energy")`` → ``energy``. It depends on the path only, so it is as stable.
    """
    words: list[list[str]] = []
    for part in parts:
        text = _CAMEL_2.sub(r"\1_\2", _CAMEL_1.sub(r"\1_\2", part))
        text = _NOT_WORD.sub("_", text).strip("_").lower()
        if not text:
            continue
        these = text.split("_")
        if collapse and words and these[: len(words[-1])] == words[-1]:
            words[-1] = these
        else:
            words.append(these)
    name = "_".join("_".join(w) for w in words) or "value"
    if name[0].isdigit() and not prefix:
        name = f"v{name}"
    return prefix + name


def unique_field_names(
    entries: Iterable[tuple[str, Sequence[str]]], prefix: str = "", taken: Iterable[str] = (), *, collapse: bool = False
) -> dict[str, str]:
    """Field names for browsed variables, keyed by their node id text: stable, unique, readable.

    A name that more than one variable would get (or that is already ``taken``) is made
    unique with a short hash of the node id, so it does not depend on browse order and
    stays the same at every connect.
    """
    candidates: dict[str, list[str]] = {}
    for node_text, parts in entries:
        candidates.setdefault(field_name(parts, prefix, collapse=collapse), []).append(node_text)
    reserved = set(taken)
    result: dict[str, str] = {}
    for name, nodes in candidates.items():
        if len(nodes) == 1 and name not in reserved:
            result[nodes[0]] = name
            continue
        for node_text in nodes:
            digest = hashlib.sha1(node_text.encode("utf-8")).hexdigest()[:6]
            result[node_text] = f"{name}_{digest}"
    return result
