"""MQTT 3.1.1 and 5 packets as bytes, and bytes as packets: a codec without sockets or asyncio.

Why the gateway has its own codec: the link (:mod:`gateway.mqtt.link`) must decide *when* each
acknowledgement leaves (PUBACK, and PUBREC for QoS 2, only once the points are stored), must
decode a backlog of tens of thousands of PUBLISH packets per second without building an
object per packet heavier than a tuple, and must not depend on another client's internals.
Everything here is a pure function of its arguments, so every packet layout is tested on its
own against paho's parser and Mosquitto (tests/mqtt/test_wire.py).

Encoding: :func:`encode_connect`, :func:`encode_subscribe`, :func:`encode_unsubscribe`,
:func:`encode_publish`, :func:`encode_acks` (many PUBACK/PUBREC/PUBREL/PUBCOMP in one bytes
object), :data:`PINGREQ`, :func:`encode_disconnect`; for test brokers also
:func:`encode_connack`, :func:`encode_suback`, :func:`encode_unsuback`.

Decoding: :class:`Reader` turns the byte stream from a broker into packets
(:class:`Publish` tuples on the hot path, small dataclasses for the rest);
:func:`decode_packet` decodes one whole packet of any type (also those a client sends).
Anything malformed raises :class:`ProtocolError`, never another exception.

MQTT 5 properties are plain dicts (:class:`Properties`) keyed by the spec's names in
snake case (``message_expiry_interval``, ``user_property`` as a list of pairs, ...).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple, TypedDict, cast

from gateway.errors import SourceError

__all__ = [
    "MQTT_5",
    "MQTT_311",
    "PINGREQ",
    "PINGRESP",
    "Ack",
    "Auth",
    "ConnAck",
    "Connect",
    "Disconnect",
    "Packet",
    "PingReq",
    "PingResp",
    "Properties",
    "ProtocolError",
    "Publish",
    "Reader",
    "SubAck",
    "Subscribe",
    "Subscription",
    "UnsubAck",
    "Unsubscribe",
    "Will",
    "connack_reason",
    "decode_packet",
    "encode_acks",
    "encode_connack",
    "encode_connect",
    "encode_disconnect",
    "encode_properties",
    "encode_publish",
    "encode_suback",
    "encode_subscribe",
    "encode_unsuback",
    "encode_unsubscribe",
    "publish_header",
    "reason_name",
]

MQTT_311: Final = 4  # protocol level in CONNECT
MQTT_5: Final = 5

CONNECT: Final = 1
CONNACK: Final = 2
PUBLISH: Final = 3
PUBACK: Final = 4
PUBREC: Final = 5
PUBREL: Final = 6
PUBCOMP: Final = 7
SUBSCRIBE: Final = 8
SUBACK: Final = 9
UNSUBSCRIBE: Final = 10
UNSUBACK: Final = 11
PINGREQ_TYPE: Final = 12
PINGRESP_TYPE: Final = 13
DISCONNECT: Final = 14
AUTH: Final = 15

PACKET_NAMES: Final = {
    CONNECT: "CONNECT",
    CONNACK: "CONNACK",
    PUBLISH: "PUBLISH",
    PUBACK: "PUBACK",
    PUBREC: "PUBREC",
    PUBREL: "PUBREL",
    PUBCOMP: "PUBCOMP",
    SUBSCRIBE: "SUBSCRIBE",
    SUBACK: "SUBACK",
    UNSUBSCRIBE: "UNSUBSCRIBE",
    UNSUBACK: "UNSUBACK",
    PINGREQ_TYPE: "PINGREQ",
    PINGRESP_TYPE: "PINGRESP",
    DISCONNECT: "DISCONNECT",
    AUTH: "AUTH",
}

PINGREQ: Final = b"\xc0\x00"
PINGRESP: Final = b"\xd0\x00"
#: The largest remaining length the variable-byte integer can carry (256 MiB - 1).
MAX_REMAINING: Final = 268_435_455
MAX_PACKET_ID: Final = 65535

_U16: Final = struct.Struct("!H")
_U32: Final = struct.Struct("!I")
_ACK: Final = struct.Struct("!BBH")
_ACK5: Final = struct.Struct("!BBHB")


class ProtocolError(SourceError):
    """Bytes from the other side that break MQTT: the connection must be closed."""


# --- reason codes ----------------------------------------------------------------------------------

REASONS: Final = {
    0x00: "Success",
    0x01: "Granted QoS 1",
    0x02: "Granted QoS 2",
    0x04: "Disconnect with Will Message",
    0x10: "No matching subscribers",
    0x11: "No subscription existed",
    0x18: "Continue authentication",
    0x19: "Re-authenticate",
    0x80: "Unspecified error",
    0x81: "Malformed Packet",
    0x82: "Protocol Error",
    0x83: "Implementation specific error",
    0x84: "Unsupported Protocol Version",
    0x85: "Client Identifier not valid",
    0x86: "Bad User Name or Password",
    0x87: "Not authorized",
    0x88: "Server unavailable",
    0x89: "Server busy",
    0x8A: "Banned",
    0x8B: "Server shutting down",
    0x8C: "Bad authentication method",
    0x8D: "Keep Alive timeout",
    0x8E: "Session taken over",
    0x8F: "Topic Filter invalid",
    0x90: "Topic Name invalid",
    0x91: "Packet Identifier in use",
    0x92: "Packet Identifier not found",
    0x93: "Receive Maximum exceeded",
    0x94: "Topic Alias invalid",
    0x95: "Packet too large",
    0x96: "Message rate too high",
    0x97: "Quota exceeded",
    0x98: "Administrative action",
    0x99: "Payload format invalid",
    0x9A: "Retain not supported",
    0x9B: "QoS not supported",
    0x9C: "Use another server",
    0x9D: "Server moved",
    0x9E: "Shared Subscriptions not supported",
    0x9F: "Connection rate exceeded",
    0xA0: "Maximum connect time",
    0xA1: "Subscription Identifiers not supported",
    0xA2: "Wildcard Subscriptions not supported",
}

#: MQTT 3.1.1 CONNACK return codes, mapped to the MQTT 5 reason code of the same meaning.
_V311_CONNACK: Final = {0: 0x00, 1: 0x84, 2: 0x85, 3: 0x88, 4: 0x86, 5: 0x87}


def reason_name(code: int) -> str:
    """``0x87`` → ``'Not authorized (0x87)'``."""
    return f"{REASONS.get(code, 'Unknown reason code')} (0x{code:02X})"


def connack_reason(code: int, version: int) -> int:
    """A CONNACK's code as an MQTT 5 reason code (3.1.1 return codes are translated)."""
    if version == MQTT_5:
        return code
    return _V311_CONNACK.get(code, 0x80)


# --- properties --------------------------------------------------------------------------------------


class Properties(TypedDict, total=False):
    """MQTT 5 properties by name; ``user_property`` and ``subscription_identifier`` may repeat."""

    payload_format_indicator: int
    message_expiry_interval: int
    content_type: str
    response_topic: str
    correlation_data: bytes
    subscription_identifier: list[int]
    session_expiry_interval: int
    assigned_client_identifier: str
    server_keep_alive: int
    authentication_method: str
    authentication_data: bytes
    request_problem_information: int
    will_delay_interval: int
    request_response_information: int
    response_information: str
    server_reference: str
    reason_string: str
    receive_maximum: int
    topic_alias_maximum: int
    topic_alias: int
    maximum_qos: int
    retain_available: int
    user_property: list[tuple[str, str]]
    maximum_packet_size: int
    wildcard_subscription_available: int
    subscription_identifier_available: int
    shared_subscription_available: int


_BYTE, _TWO, _FOUR, _VARINT, _STR, _BIN, _PAIR = range(7)

#: identifier → (name, type); the spec's table 2-4.
_PROPERTY_IDS: Final[dict[int, tuple[str, int]]] = {
    0x01: ("payload_format_indicator", _BYTE),
    0x02: ("message_expiry_interval", _FOUR),
    0x03: ("content_type", _STR),
    0x08: ("response_topic", _STR),
    0x09: ("correlation_data", _BIN),
    0x0B: ("subscription_identifier", _VARINT),
    0x11: ("session_expiry_interval", _FOUR),
    0x12: ("assigned_client_identifier", _STR),
    0x13: ("server_keep_alive", _TWO),
    0x15: ("authentication_method", _STR),
    0x16: ("authentication_data", _BIN),
    0x17: ("request_problem_information", _BYTE),
    0x18: ("will_delay_interval", _FOUR),
    0x19: ("request_response_information", _BYTE),
    0x1A: ("response_information", _STR),
    0x1C: ("server_reference", _STR),
    0x1F: ("reason_string", _STR),
    0x21: ("receive_maximum", _TWO),
    0x22: ("topic_alias_maximum", _TWO),
    0x23: ("topic_alias", _TWO),
    0x24: ("maximum_qos", _BYTE),
    0x25: ("retain_available", _BYTE),
    0x26: ("user_property", _PAIR),
    0x27: ("maximum_packet_size", _FOUR),
    0x28: ("wildcard_subscription_available", _BYTE),
    0x29: ("subscription_identifier_available", _BYTE),
    0x2A: ("shared_subscription_available", _BYTE),
}
_PROPERTY_NAMES: Final = {name: (ident, kind) for ident, (name, kind) in _PROPERTY_IDS.items()}
_REPEATABLE: Final = frozenset({"user_property", "subscription_identifier"})


def _varint(value: int) -> bytes:
    if value < 128:
        return bytes((value,))
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _string(text: str) -> bytes:
    data = text.encode()
    if len(data) > 65535:
        raise ValueError(f"an MQTT string is at most 65,535 bytes in UTF-8 (this one has {len(data):,})")
    return _U16.pack(len(data)) + data


def _binary(data: bytes) -> bytes:
    if len(data) > 65535:
        raise ValueError(f"MQTT binary data is at most 65,535 bytes (this one has {len(data):,})")
    return _U16.pack(len(data)) + data


def encode_properties(properties: Properties | None) -> bytes:
    """The property length and the properties (b'\\x00' for none)."""
    if not properties:
        return b"\x00"
    out = bytearray()
    for name, value in cast(dict[str, Any], properties).items():
        entry = _PROPERTY_NAMES.get(name)
        if entry is None:
            raise ValueError(f"{name!r} is not an MQTT 5 property")
        ident, kind = entry
        values = value if name in _REPEATABLE else (value,)
        for item in values:
            out += _varint(ident)
            if kind == _BYTE:
                out.append(item)
            elif kind == _TWO:
                out += _U16.pack(item)
            elif kind == _FOUR:
                out += _U32.pack(item)
            elif kind == _VARINT:
                if not 0 <= item <= MAX_REMAINING:
                    raise ValueError(f"{name} must be 0 to {MAX_REMAINING}")
                out += _varint(item)
            elif kind == _STR:
                out += _string(item)
            elif kind == _BIN:
                out += _binary(item)
            else:
                key, text = item
                out += _string(key) + _string(text)
    return _varint(len(out)) + bytes(out)


def _fixed(first: int, body: bytes) -> bytes:
    length = len(body)
    if length > MAX_REMAINING:
        raise ValueError(f"an MQTT packet carries at most {MAX_REMAINING:,} bytes (this one {length:,})")
    if length < 128:
        return bytes((first, length)) + body
    return bytes((first,)) + _varint(length) + body


# --- encoders (client → broker) ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Will:
    """The message the broker publishes when the connection ends without a DISCONNECT."""

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    properties: Properties | None = None  # MQTT 5: will_delay_interval, message_expiry_interval, content_type…


@dataclass(frozen=True, slots=True)
class Subscription:
    """One topic filter of a SUBSCRIBE, with its MQTT 5 subscription options."""

    filter: str
    qos: int = 1
    no_local: bool = False
    retain_as_published: bool = False
    retain_handling: int = 0  # 0 send retained, 1 only for a new subscription, 2 never

    @property
    def options(self) -> int:
        return (
            self.qos
            | (0x04 if self.no_local else 0)
            | (0x08 if self.retain_as_published else 0)
            | (self.retain_handling << 4)
        )


def encode_connect(
    client_id: str,
    *,
    version: int = MQTT_5,
    clean_start: bool = True,
    keepalive: int = 60,
    username: str | None = None,
    password: bytes | None = None,
    will: Will | None = None,
    properties: Properties | None = None,
) -> bytes:
    """CONNECT. MQTT 3.1.1 refuses a password without a user name (the spec forbids it)."""
    if version not in (MQTT_311, MQTT_5):
        raise ValueError(f"unknown MQTT protocol level {version}")
    if not 0 <= keepalive <= 65535:
        raise ValueError("keepalive must be 0 to 65535 seconds")
    if version == MQTT_311 and password is not None and username is None:
        raise ValueError("MQTT 3.1.1 does not allow a password without a user name")
    flags = 0x02 if clean_start else 0
    if will is not None:
        if will.qos not in (0, 1, 2):
            raise ValueError("the will's QoS must be 0, 1 or 2")
        flags |= 0x04 | (will.qos << 3) | (0x20 if will.retain else 0)
    if username is not None:
        flags |= 0x80
    if password is not None:
        flags |= 0x40
    out = bytearray(b"\x00\x04MQTT")
    out += bytes((version, flags))
    out += _U16.pack(keepalive)
    v5 = version == MQTT_5
    if v5:
        out += encode_properties(properties)
    elif properties:
        raise ValueError("MQTT 3.1.1 has no CONNECT properties")
    out += _string(client_id)
    if will is not None:
        if v5:
            out += encode_properties(will.properties)
        elif will.properties:
            raise ValueError("MQTT 3.1.1 has no will properties")
        out += _string(will.topic) + _binary(will.payload)
    if username is not None:
        out += _string(username)
    if password is not None:
        out += _binary(password)
    return _fixed(0x10, bytes(out))


def encode_subscribe(
    packet_id: int,
    subscriptions: Sequence[Subscription],
    *,
    version: int = MQTT_5,
    properties: Properties | None = None,
) -> bytes:
    """SUBSCRIBE; 3.1.1 carries only each filter's QoS (the other options are MQTT 5)."""
    if not subscriptions:
        raise ValueError("SUBSCRIBE needs at least one topic filter")
    out = bytearray(_U16.pack(packet_id))
    if version == MQTT_5:
        out += encode_properties(properties)
    for sub in subscriptions:
        if sub.qos not in (0, 1, 2) or sub.retain_handling not in (0, 1, 2):
            raise ValueError(f"{sub.filter!r}: QoS must be 0, 1 or 2 and retain handling 0, 1 or 2")
        out += _string(sub.filter)
        out.append(sub.options if version == MQTT_5 else sub.qos)
    return _fixed(0x82, bytes(out))


def encode_unsubscribe(
    packet_id: int, filters: Sequence[str], *, version: int = MQTT_5, properties: Properties | None = None
) -> bytes:
    if not filters:
        raise ValueError("UNSUBSCRIBE needs at least one topic filter")
    out = bytearray(_U16.pack(packet_id))
    if version == MQTT_5:
        out += encode_properties(properties)
    for filter_ in filters:
        out += _string(filter_)
    return _fixed(0xA2, bytes(out))


def encode_publish(
    topic: str | bytes,
    payload: bytes,
    *,
    qos: int = 0,
    retain: bool = False,
    dup: bool = False,
    packet_id: int = 0,
    version: int = MQTT_5,
    properties: Properties | None = None,
) -> bytes:
    """PUBLISH (``packet_id`` is needed for QoS 1 and 2)."""
    name = topic.encode() if isinstance(topic, str) else topic
    if len(name) > 65535:
        raise ValueError("a topic name is at most 65,535 bytes in UTF-8")
    if qos:
        if qos not in (1, 2):
            raise ValueError("QoS must be 0, 1 or 2")
        if not 1 <= packet_id <= MAX_PACKET_ID:
            raise ValueError("a QoS 1 or 2 PUBLISH needs a packet identifier from 1 to 65535")
        head = _U16.pack(len(name)) + name + _U16.pack(packet_id)
    else:
        head = _U16.pack(len(name)) + name
    if version == MQTT_5:
        head += encode_properties(properties) if properties else b"\x00"
    elif properties:
        raise ValueError("MQTT 3.1.1 has no PUBLISH properties (use protocol 5)")
    first = 0x30 | (qos << 1) | (0x08 if dup else 0) | (0x01 if retain else 0)
    return _fixed(first, head + payload)


def publish_header(
    topic: bytes,
    payload_size: int,
    qos: int,
    packet_id: int,
    *,
    retain: bool = False,
    dup: bool = False,
    v5: bool = True,
) -> bytes:
    """Everything of a PUBLISH without properties before its payload: header + payload is the packet.

    For a publisher's hot path (no copy of the payload, no keyword handling per message); the
    arguments are trusted: :func:`encode_publish` is the checked form.
    """
    head = _U16.pack(len(topic)) + topic
    if qos:
        head += _U16.pack(packet_id)
    if v5:
        head += b"\x00"
    length = len(head) + payload_size
    first = 0x30 | (qos << 1) | (0x08 if dup else 0) | (0x01 if retain else 0)
    if length < 128:
        return bytes((first, length)) + head
    if length > MAX_REMAINING:
        raise ValueError(f"an MQTT packet carries at most {MAX_REMAINING:,} bytes (this one {length:,})")
    return bytes((first,)) + _varint(length) + head


_ACK_FIRST: Final = {PUBACK: 0x40, PUBREC: 0x50, PUBREL: 0x62, PUBCOMP: 0x70}


def encode_acks(kind: int, packet_ids: Iterable[int], *, reason_code: int = 0, version: int = MQTT_5) -> bytes:
    """Many PUBACK, PUBREC, PUBREL or PUBCOMP packets (``kind``) in one bytes object, for one write.

    With reason code 0 (success) MQTT 5 allows the 2-byte form of MQTT 3.1.1, which is used.
    """
    first = _ACK_FIRST[kind]
    if reason_code == 0 or version != MQTT_5:
        pack = _ACK.pack
        return b"".join([pack(first, 2, packet_id) for packet_id in packet_ids])
    pack5 = _ACK5.pack
    return b"".join([pack5(first, 3, packet_id, reason_code) for packet_id in packet_ids])


def encode_disconnect(reason_code: int = 0, *, version: int = MQTT_5, properties: Properties | None = None) -> bytes:
    if version != MQTT_5:
        return b"\xe0\x00"
    if reason_code == 0 and not properties:
        return b"\xe0\x00"
    return _fixed(0xE0, bytes((reason_code,)) + encode_properties(properties))


# --- encoders (broker → client), for test brokers ------------------------------------------------------


def encode_connack(
    reason_code: int = 0,
    *,
    session_present: bool = False,
    version: int = MQTT_5,
    properties: Properties | None = None,
) -> bytes:
    body = bytes((1 if session_present else 0, reason_code))
    if version == MQTT_5:
        body += encode_properties(properties)
    return _fixed(0x20, body)


def encode_suback(
    packet_id: int, reason_codes: Sequence[int], *, version: int = MQTT_5, properties: Properties | None = None
) -> bytes:
    body = _U16.pack(packet_id) + (encode_properties(properties) if version == MQTT_5 else b"")
    return _fixed(0x90, body + bytes(reason_codes))


def encode_unsuback(
    packet_id: int, reason_codes: Sequence[int] = (), *, version: int = MQTT_5, properties: Properties | None = None
) -> bytes:
    if version != MQTT_5:
        return _fixed(0xB0, _U16.pack(packet_id))
    return _fixed(0xB0, _U16.pack(packet_id) + encode_properties(properties) + bytes(reason_codes))


# --- decoded packets ---------------------------------------------------------------------------------


class Publish(NamedTuple):
    """A PUBLISH: the hot path's only object per message.

    ``topic`` is None when the topic name is not valid UTF-8: the link counts such a message
    as malformed and acknowledges it, since closing the connection would only make the broker
    send it again, forever. ``flags`` is the packet's first byte: ``flags & 0x08`` DUP,
    ``flags & 0x01`` RETAIN.
    """

    topic: str | None
    payload: bytes
    qos: int
    packet_id: int
    flags: int
    properties: Properties | None

    @property
    def dup(self) -> bool:
        return bool(self.flags & 0x08)

    @property
    def retain(self) -> bool:
        return bool(self.flags & 0x01)


@dataclass(frozen=True, slots=True)
class ConnAck:
    session_present: bool
    reason_code: int  # MQTT 5 reason code (a 3.1.1 return code is translated; see ``return_code``)
    properties: Properties = field(default_factory=lambda: Properties())
    return_code: int = 0  # the code as it was on the wire

    @property
    def reason(self) -> str:
        return reason_name(self.reason_code)


class Ack(NamedTuple):
    """PUBACK, PUBREC, PUBREL or PUBCOMP (``kind`` is the packet type: 4, 5, 6 or 7).

    A tuple, like :class:`Publish`: a publisher's backlog brings one per message.
    """

    kind: int
    packet_id: int
    reason_code: int = 0
    properties: Properties | None = None


@dataclass(frozen=True, slots=True)
class SubAck:
    packet_id: int
    reason_codes: tuple[int, ...]
    properties: Properties | None = None


@dataclass(frozen=True, slots=True)
class UnsubAck:
    packet_id: int
    reason_codes: tuple[int, ...]  # empty with MQTT 3.1.1
    properties: Properties | None = None


@dataclass(frozen=True, slots=True)
class PingResp:
    pass


@dataclass(frozen=True, slots=True)
class PingReq:
    pass


@dataclass(frozen=True, slots=True)
class Disconnect:
    reason_code: int = 0
    properties: Properties | None = None


@dataclass(frozen=True, slots=True)
class Auth:
    reason_code: int = 0
    properties: Properties | None = None


@dataclass(frozen=True, slots=True)
class Connect:
    client_id: str
    version: int
    clean_start: bool
    keepalive: int
    username: str | None = None
    password: bytes | None = field(default=None, repr=False)  # never in a repr (tracebacks, debug logs)
    will: Will | None = None
    properties: Properties | None = None


@dataclass(frozen=True, slots=True)
class Subscribe:
    packet_id: int
    subscriptions: tuple[Subscription, ...]
    properties: Properties | None = None


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    packet_id: int
    filters: tuple[str, ...]
    properties: Properties | None = None


Packet = (
    Publish
    | ConnAck
    | Ack
    | SubAck
    | UnsubAck
    | PingResp
    | PingReq
    | Disconnect
    | Auth
    | Connect
    | Subscribe
    | Unsubscribe
)


# --- decoding helpers ------------------------------------------------------------------------------------


class _Body:
    """A cursor over one packet's remaining bytes; every read checks the bounds."""

    __slots__ = ("data", "end", "name", "pos")

    def __init__(self, data: bytes, pos: int, end: int, name: str) -> None:
        self.data = data
        self.pos = pos
        self.end = end
        self.name = name

    def fail(self, what: str) -> ProtocolError:
        return ProtocolError(f"malformed {self.name} packet from the broker: {what}")

    def need(self, count: int, what: str) -> int:
        pos = self.pos
        if pos + count > self.end:
            raise self.fail(f"{what} runs past the end of the packet")
        self.pos = pos + count
        return pos

    def byte(self, what: str) -> int:
        return self.data[self.need(1, what)]

    def u16(self, what: str) -> int:
        pos = self.need(2, what)
        return (self.data[pos] << 8) | self.data[pos + 1]

    def u32(self, what: str) -> int:
        pos = self.need(4, what)
        return int(_U32.unpack_from(self.data, pos)[0])

    def varint(self, what: str) -> int:
        value = 0
        for shift in (0, 7, 14, 21):
            byte = self.byte(what)
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
        raise self.fail(f"{what} is not a valid variable byte integer")

    def binary(self, what: str) -> bytes:
        length = self.u16(what)
        pos = self.need(length, what)
        return self.data[pos : pos + length]

    def string(self, what: str) -> str:
        raw = self.binary(what)
        try:
            text = raw.decode()
        except UnicodeDecodeError:
            raise self.fail(f"{what} is not valid UTF-8") from None
        if "\x00" in text:
            raise self.fail(f"{what} contains a NUL character")
        return text

    def rest(self) -> bytes:
        data = self.data[self.pos : self.end]
        self.pos = self.end
        return data

    def done(self) -> None:
        if self.pos != self.end:
            raise self.fail(f"{self.end - self.pos} unexpected bytes at the end")

    def properties(self) -> Properties:
        length = self.varint("property length")
        stop = self.pos + length
        if stop > self.end:
            raise self.fail("the properties run past the end of the packet")
        result: dict[str, Any] = {}
        while self.pos < stop:
            ident = self.varint("property identifier")
            entry = _PROPERTY_IDS.get(ident)
            if entry is None:
                raise self.fail(f"unknown property identifier 0x{ident:02X}")
            name, kind = entry
            value: Any
            if kind == _BYTE:
                value = self.byte(name)
            elif kind == _TWO:
                value = self.u16(name)
            elif kind == _FOUR:
                value = self.u32(name)
            elif kind == _VARINT:
                value = self.varint(name)
            elif kind == _STR:
                value = self.string(name)
            elif kind == _BIN:
                value = self.binary(name)
            else:
                value = (self.string(name), self.string(name))
            if self.pos > stop:
                raise self.fail(f"property {name} runs past the property length")
            if name in _REPEATABLE:
                result.setdefault(name, []).append(value)
            elif name in result:
                raise self.fail(f"property {name} appears twice")
            else:
                result[name] = value
        return cast(Properties, result)


def _ack_body(body: _Body, kind: int, version: int) -> Ack:
    packet_id = body.u16("packet identifier")
    if packet_id == 0:
        raise body.fail("packet identifier 0")
    reason = 0
    properties: Properties | None = None
    if version == MQTT_5 and body.pos < body.end:
        reason = body.byte("reason code")
        if body.pos < body.end:
            properties = body.properties()
    body.done()
    return Ack(kind, packet_id, reason, properties or None)


def _decode_publish(data: bytes, first: int, start: int, stop: int, version: int) -> Publish:
    body = _Body(data, start, stop, "PUBLISH")
    qos = (first >> 1) & 0x03
    if qos == 3:
        raise body.fail("QoS 3 does not exist")
    raw_topic = body.binary("topic name")
    try:
        topic: str | None = raw_topic.decode()
    except UnicodeDecodeError:
        topic = None
    packet_id = 0
    if qos:
        packet_id = body.u16("packet identifier")
        if packet_id == 0:
            raise body.fail("packet identifier 0 is not allowed")
    properties: Properties | None = None
    if version == MQTT_5:
        properties = body.properties() or None
    return Publish(topic, body.rest(), qos, packet_id, first & 0x0F, properties)


def _decode_body(kind: int, first: int, data: bytes, start: int, stop: int, version: int) -> Packet:
    """Any packet but PUBLISH, from data[start:stop] (its remaining bytes)."""
    name = PACKET_NAMES.get(kind, f"type {kind}")
    flags = first & 0x0F
    expected = 0x02 if kind in (PUBREL, SUBSCRIBE, UNSUBSCRIBE) else 0
    body = _Body(data, start, stop, name)
    properties: Properties | None
    if kind == 0:
        raise body.fail("packet type 0 is reserved")
    if flags != expected:
        raise body.fail(f"fixed header flags 0x{flags:X} (0x{expected:X} expected)")
    v5 = version == MQTT_5
    if kind == CONNACK:
        ack_flags = body.byte("acknowledge flags")
        if ack_flags & 0xFE:
            raise body.fail("reserved acknowledge flags are set")
        code = body.byte("reason code")
        connack_properties = body.properties() if v5 else Properties()
        body.done()
        return ConnAck(bool(ack_flags & 1), connack_reason(code, version), connack_properties, code)
    if kind in (PUBACK, PUBREC, PUBREL, PUBCOMP):
        return _ack_body(body, kind, version)
    if kind == SUBACK:
        packet_id = body.u16("packet identifier")
        properties = body.properties() if v5 else None
        codes = tuple(body.rest())
        if not codes:
            raise body.fail("no reason codes")
        return SubAck(packet_id, codes, properties or None)
    if kind == UNSUBACK:
        packet_id = body.u16("packet identifier")
        if not v5:
            body.done()
            return UnsubAck(packet_id, ())
        properties = body.properties()
        return UnsubAck(packet_id, tuple(body.rest()), properties or None)
    if kind in (PINGREQ_TYPE, PINGRESP_TYPE):
        body.done()
        return PingResp() if kind == PINGRESP_TYPE else PingReq()
    if kind in (DISCONNECT, AUTH):
        if kind == AUTH and not v5:
            raise body.fail("AUTH does not exist in MQTT 3.1.1")
        reason = 0
        properties = None
        if v5 and body.pos < body.end:
            reason = body.byte("reason code")
            if body.pos < body.end:
                properties = body.properties() or None
        body.done()
        return Disconnect(reason, properties) if kind == DISCONNECT else Auth(reason, properties)
    if kind == SUBSCRIBE:
        packet_id = body.u16("packet identifier")
        properties = body.properties() if v5 else None
        subs = []
        while body.pos < body.end:
            filter_ = body.string("topic filter")
            options = body.byte("subscription options")
            if options & 0xC0 or (options & 0x03) == 3 or (options >> 4) & 3 == 3 or (not v5 and options & 0xFC):
                raise body.fail(f"invalid subscription options 0x{options:02X}")
            subs.append(Subscription(filter_, options & 3, bool(options & 4), bool(options & 8), (options >> 4) & 3))
        if not subs:
            raise body.fail("no topic filters")
        return Subscribe(packet_id, tuple(subs), properties or None)
    if kind == UNSUBSCRIBE:
        packet_id = body.u16("packet identifier")
        properties = body.properties() if v5 else None
        filters = []
        while body.pos < body.end:
            filters.append(body.string("topic filter"))
        if not filters:
            raise body.fail("no topic filters")
        return Unsubscribe(packet_id, tuple(filters), properties or None)
    # CONNECT
    if body.string("protocol name") != "MQTT":
        raise body.fail("protocol name is not MQTT")
    level = body.byte("protocol level")
    if level not in (MQTT_311, MQTT_5):
        raise body.fail(f"unknown protocol level {level}")
    v5 = level == MQTT_5
    cflags = body.byte("connect flags")
    if cflags & 0x01:
        raise body.fail("the reserved connect flag is set")
    keepalive = body.u16("keep alive")
    properties = body.properties() if v5 else None
    client_id = body.string("client identifier")
    will = None
    if cflags & 0x04:
        will_properties = body.properties() if v5 else None
        will_topic = body.string("will topic")
        will_payload = body.binary("will payload")
        will_qos = (cflags >> 3) & 3
        if will_qos == 3:
            raise body.fail("will QoS 3 does not exist")
        will = Will(will_topic, will_payload, will_qos, bool(cflags & 0x20), will_properties or None)
    elif cflags & 0x38:
        raise body.fail("will QoS or retain set without a will")
    username = body.string("user name") if cflags & 0x80 else None
    password = body.binary("password") if cflags & 0x40 else None
    body.done()
    return Connect(client_id, level, bool(cflags & 0x02), keepalive, username, password, will, properties or None)


def _header(data: bytes, pos: int, end: int) -> tuple[int, int] | None:
    """(remaining length, offset of the body) of the packet at ``pos``; None if the header is incomplete."""
    length = 0
    i = pos + 1
    for shift in (0, 7, 14, 21):
        if i >= end:
            return None
        byte = data[i]
        i += 1
        length |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return length, i
    raise ProtocolError("malformed packet from the broker: its remaining length is not a valid variable byte integer")


def decode_packet(data: bytes, version: int = MQTT_5) -> Packet:
    """Exactly one whole packet of any type (also those only a client sends)."""
    header = _header(data, 0, len(data))
    if not data or header is None:
        raise ProtocolError("malformed packet: incomplete fixed header")
    length, start = header
    if start + length != len(data):
        raise ProtocolError(f"malformed packet: remaining length {length} but {len(data) - start} bytes follow")
    first = data[0]
    if first >> 4 == PUBLISH:
        return _decode_publish(data, first, start, start + length, version)
    return _decode_body(first >> 4, first, data, start, start + length, version)


#: Packet types a broker never sends to a client.
_CLIENT_ONLY: Final = frozenset({CONNECT, SUBSCRIBE, UNSUBSCRIBE, PINGREQ_TYPE})
_ACK_FIRSTS: Final = frozenset({0x40, 0x50, 0x62, 0x70})
_new = tuple.__new__


class Reader:
    """The byte stream from a broker → packets, however the stream is cut into reads.

    :meth:`feed` returns every packet completed by the new bytes. A packet split across reads
    is kept until it is whole; a large one is collected as a list of parts and joined once
    (no quadratic copying for a 100 MB payload read 256 KiB at a time). ``max_packet_size``
    bounds what is accepted (``ProtocolError`` beyond it).
    """

    def __init__(self, version: int = MQTT_5, max_packet_size: int = MAX_REMAINING + 5) -> None:
        self.version = version
        self.max_packet_size = max_packet_size
        self._rest = b""
        self._parts: list[bytes] = []
        self._have = 0
        self._need = 0

    @property
    def pending(self) -> int:
        """Bytes of an incomplete packet held."""
        return self._have if self._parts else len(self._rest)

    def feed(self, data: bytes) -> list[Packet]:
        if self._parts:
            self._parts.append(data)
            self._have += len(data)
            if self._have < self._need:
                return []
            data = b"".join(self._parts)
            self._parts = []
            self._have = 0
        elif self._rest:
            data = self._rest + data
        packets, pos = self._decode(data)
        if pos == len(data):
            self._rest = b""
            return packets
        rest = data[pos:] if pos else data
        header = _header(rest, 0, len(rest))
        if header is not None:
            size = header[0] + header[1]
            if size > self.max_packet_size:
                raise ProtocolError(
                    f"the broker sent a packet of {size:,} bytes, more than the {self.max_packet_size:,} accepted"
                )
            if size > 65536 and size > 2 * len(rest):
                self._parts = [rest]
                self._have = len(rest)
                self._need = size
                self._rest = b""
                return packets
        self._rest = rest
        return packets

    def _decode(self, data: bytes) -> tuple[list[Packet], int]:
        """Every whole packet in ``data``; the offset of the first incomplete one (or len(data))."""
        packets: list[Packet] = []
        append = packets.append
        end = len(data)
        pos = 0
        v5 = self.version == MQTT_5
        limit = self.max_packet_size
        while pos < end:
            first = data[pos]
            # Remaining length: one byte in the common case (< 128 bytes), else the general reader.
            if pos + 1 >= end:
                break
            length = data[pos + 1]
            if length < 128:
                start = pos + 2
            else:
                header = _header(data, pos, end)
                if header is None:
                    break
                length, start = header
            stop = start + length
            if stop > end:
                if stop - pos > limit:
                    raise ProtocolError(
                        f"the broker sent a packet of {stop - pos:,} bytes, more than the {limit:,} accepted"
                    )
                break
            if first & 0xF0 == 0x30:
                # PUBLISH, the hot path: fields read inline; anything unusual takes the checked path.
                if length < 2 or first & 0x06 == 0x06:
                    append(_decode_publish(data, first, start, stop, self.version))
                else:
                    topic_end = start + 2 + ((data[start] << 8) | data[start + 1])
                    qos = (first >> 1) & 0x03
                    body = topic_end + 2 if qos else topic_end
                    if (
                        body > stop
                        or (v5 and (body >= stop or data[body] != 0))
                        or (qos and data[body - 2 : body] == b"\x00\x00")
                    ):
                        append(_decode_publish(data, first, start, stop, self.version))
                    else:
                        try:
                            topic: str | None = data[start + 2 : topic_end].decode()
                        except UnicodeDecodeError:
                            topic = None
                        if v5:
                            body += 1
                        mid = ((data[topic_end] << 8) | data[topic_end + 1]) if qos else 0
                        append(_new(Publish, (topic, data[body:stop], qos, mid, first & 0x0F, None)))
            elif first in _ACK_FIRSTS and (length == 2 or (length == 3 and v5)):
                # PUBACK/PUBREC/PUBREL/PUBCOMP without properties: the publisher's hot path.
                packet_id = (data[start] << 8) | data[start + 1]
                if packet_id == 0:
                    raise ProtocolError(
                        f"malformed {PACKET_NAMES[first >> 4]} packet from the broker: packet identifier 0"
                    )
                append(_new(Ack, (first >> 4, packet_id, data[start + 2] if length == 3 else 0, None)))
            else:
                kind = first >> 4
                if kind in _CLIENT_ONLY:
                    raise ProtocolError(f"the broker sent a {PACKET_NAMES[kind]} packet, which only a client may send")
                append(_decode_body(kind, first, data, start, stop, self.version))
            pos = stop
        return packets, pos
