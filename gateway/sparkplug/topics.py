"""Sparkplug B topics: ``spBv1.0/<group>/<type>/<edge node>[/<device>]`` and ``spBv1.0/STATE/<host>``."""

from __future__ import annotations

import enum
from typing import Final, NamedTuple

from gateway.errors import DecodeError

__all__ = [
    "NAMESPACE",
    "Kind",
    "Topic",
    "check_id",
    "device_topic",
    "node_topic",
    "parse_topic",
    "state_topic",
]

#: The first level of every Sparkplug B topic.
NAMESPACE: Final = "spBv1.0"


class Kind(enum.StrEnum):
    """The message types (the third level of the topic)."""

    NBIRTH = "NBIRTH"
    NDEATH = "NDEATH"
    DBIRTH = "DBIRTH"
    DDEATH = "DDEATH"
    NDATA = "NDATA"
    DDATA = "DDATA"
    NCMD = "NCMD"
    DCMD = "DCMD"
    STATE = "STATE"


_NODE_KINDS: Final = frozenset((Kind.NBIRTH, Kind.NDEATH, Kind.NDATA, Kind.NCMD))
_DEVICE_KINDS: Final = frozenset((Kind.DBIRTH, Kind.DDEATH, Kind.DDATA, Kind.DCMD))


class Topic(NamedTuple):
    """A parsed topic; for STATE, ``node`` is the host application's id and ``group`` is empty."""

    group: str
    kind: Kind
    node: str
    device: str | None = None


def parse_topic(topic: str) -> Topic:
    """The parts of a Sparkplug B topic; :class:`~gateway.errors.DecodeError` for any other topic."""
    parts = topic.split("/")
    if parts[0] != NAMESPACE:
        raise DecodeError(f"{topic!r} is not a Sparkplug B topic (it does not start with {NAMESPACE}/)")
    if len(parts) == 3 and parts[1] == Kind.STATE and parts[2]:
        return Topic("", Kind.STATE, parts[2])
    if len(parts) not in (4, 5) or not all(parts[1:]):
        raise DecodeError(f"{topic!r} is not a Sparkplug B topic: {NAMESPACE}/<group>/<type>/<edge node>[/<device>]")
    try:
        kind = Kind(parts[2])
    except ValueError:
        raise DecodeError(f"{topic!r}: {parts[2]!r} is not a Sparkplug B message type") from None
    if len(parts) == 4:
        if kind not in _NODE_KINDS:
            raise DecodeError(f"{topic!r}: a {kind} message names a device after the edge node")
        return Topic(parts[1], kind, parts[3])
    if kind not in _DEVICE_KINDS:
        raise DecodeError(f"{topic!r}: a {kind} message has no device level")
    return Topic(parts[1], kind, parts[3], parts[4])


def node_topic(group: str, kind: Kind, node: str) -> str:
    return f"{NAMESPACE}/{group}/{kind}/{node}"


def device_topic(group: str, kind: Kind, node: str, device: str) -> str:
    return f"{NAMESPACE}/{group}/{kind}/{node}/{device}"


def state_topic(host_id: str) -> str:
    """Where a host application says whether it is online (Sparkplug 3.0)."""
    return f"{NAMESPACE}/{Kind.STATE}/{host_id}"


def check_id(value: str, what: str) -> str:
    """A group, edge node, device or host id: one topic level (ValueError saying what is wrong)."""
    if not value:
        raise ValueError(f"{what} cannot be empty")
    bad = [c for c in ("/", "+", "#") if c in value]
    if bad:
        raise ValueError(
            f"{what} {value!r} contains {' and '.join(repr(c) for c in bad)}: a Sparkplug id is one MQTT topic "
            "level, without '/', '+' or '#'"
        )
    if value != value.strip():
        raise ValueError(f"{what} {value!r} starts or ends with a space")
    return value
