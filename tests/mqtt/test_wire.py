# mypy: disable-error-code="no-untyped-call"
"""The MQTT codec (gateway/mqtt/wire.py) against independent peers: paho's parser and client, and Mosquitto.

- properties: ours → paho's ``Properties.unpack``, paho's ``pack`` → ours, and ours → ours;
- PUBLISH both ways through a real paho client connected to a socket the test serves (QoS 0, 1
  and 2 with their whole acknowledgement exchanges), CONNECT, SUBSCRIBE, UNSUBSCRIBE, PINGREQ and
  DISCONNECT from paho decoded by ours, CONNACK and SUBACK from ours decoded by paho;
- our CONNECT and SUBSCRIBE options as Mosquitto acts on them (will, no-local, retain handling,
  retain-as-published, user name and password);
- remaining-length edges, a stream cut anywhere, and malformed input that never raises anything
  but ProtocolError.
"""

from __future__ import annotations

import contextlib
import queue
import socket
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as paho
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties as PahoProperties
from paho.mqtt.subscribeoptions import SubscribeOptions

from gateway.mqtt import wire
from gateway.mqtt.wire import MQTT_5, MQTT_311, Ack, ProtocolError, Publish, Subscription
from tests.fixtures.mosquitto import Mosquitto
from tests.helpers import examples

# --- strategies ---------------------------------------------------------------------------------------

text = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=40)
topics = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00+#"), min_size=1, max_size=60)
u8 = st.integers(0, 255)
u16 = st.integers(0, 65535)
u32 = st.integers(0, 2**32 - 1)
pairs = st.lists(st.tuples(text, text), min_size=1, max_size=3)

#: Properties a PUBLISH may carry (topic aliases aside: the link accepts none), as paho would accept them.
publish_properties = st.fixed_dictionaries(
    {},
    optional={
        "payload_format_indicator": st.integers(0, 1),
        "message_expiry_interval": u32,
        "content_type": text,
        "response_topic": topics,
        "correlation_data": st.binary(max_size=30),
        "user_property": pairs,
    },
)
#: Every property, with any value its type allows (for our own round trip).
any_properties = st.fixed_dictionaries(
    {},
    optional={
        name: {
            wire._BYTE: u8,
            wire._TWO: u16,
            wire._FOUR: u32,
            wire._VARINT: st.lists(st.integers(0, wire.MAX_REMAINING), min_size=1, max_size=3),
            wire._STR: text,
            wire._BIN: st.binary(max_size=20),
            wire._PAIR: pairs,
        }[kind]
        for name, (_, kind) in wire._PROPERTY_NAMES.items()
    },
)

PAHO_NAMES = {ident: name.replace(" ", "") for name, ident in PahoProperties(PacketTypes.PUBLISH).names.items()}


def to_paho(properties: wire.Properties, packet_type: int) -> PahoProperties:
    result = PahoProperties(packet_type)
    for name, value in properties.items():
        ident = wire._PROPERTY_NAMES[name][0]
        setattr(result, PAHO_NAMES[ident], value)
    return result


def from_paho(properties: PahoProperties | None) -> dict[str, Any]:
    if properties is None:
        return {}
    names = {paho_name: wire._PROPERTY_IDS[ident][0] for ident, paho_name in PAHO_NAMES.items()}
    return {names[key]: getattr(properties, key) for key in properties.json()}


# --- properties ---------------------------------------------------------------------------------------


def decode_properties(data: bytes) -> wire.Properties:
    body = wire._Body(data, 0, len(data), "test")
    result = body.properties()
    body.done()
    return result


@settings(deadline=None)  # a loaded CI machine must not turn a slow example into a failure
@given(any_properties)
def test_every_property_round_trips_through_our_codec(properties: dict[str, Any]) -> None:
    data = wire.encode_properties(properties)  # type: ignore[arg-type]
    assert decode_properties(data) == properties


@settings(deadline=None)  # a loaded CI machine must not turn a slow example into a failure
@given(publish_properties)
def test_publish_properties_we_encode_are_read_identically_by_paho(properties: dict[str, Any]) -> None:
    data = wire.encode_properties(properties)  # type: ignore[arg-type]
    parsed, consumed = PahoProperties(PacketTypes.PUBLISH).unpack(data)
    assert consumed == len(data)
    assert from_paho(parsed) == properties


@settings(deadline=None)  # a loaded CI machine must not turn a slow example into a failure
@given(publish_properties)
def test_publish_properties_paho_encodes_are_read_identically_by_ours(properties: dict[str, Any]) -> None:
    data = to_paho(properties, PacketTypes.PUBLISH).pack()  # type: ignore[arg-type]
    assert decode_properties(data) == properties


def test_connack_properties_of_a_broker_are_decoded_with_their_names() -> None:
    properties: wire.Properties = {
        "assigned_client_identifier": "auto-7f3a",
        "server_keep_alive": 20,
        "receive_maximum": 100,
        "maximum_qos": 1,
        "retain_available": 0,
        "maximum_packet_size": 1_048_576,
        "reason_string": "welcome",
        "topic_alias_maximum": 10,
        "session_expiry_interval": 3600,
    }
    connack = wire.decode_packet(wire.encode_connack(0, session_present=True, properties=properties))
    assert isinstance(connack, wire.ConnAck)
    assert connack.session_present and connack.reason_code == 0 and connack.reason == "Success (0x00)"
    assert connack.properties == properties
    refused = wire.decode_packet(wire.encode_connack(0x86))
    assert isinstance(refused, wire.ConnAck) and refused.reason == "Bad User Name or Password (0x86)"
    # MQTT 3.1.1 return codes read as the MQTT 5 reason of the same meaning.
    v311 = wire.decode_packet(wire.encode_connack(5, version=MQTT_311), MQTT_311)
    assert isinstance(v311, wire.ConnAck) and (v311.return_code, v311.reason_code) == (5, 0x87)


# --- a real paho client on a socket the test serves ---------------------------------------------------


def split_packet(buffer: bytes) -> tuple[bytes, bytes] | None:
    header = wire._header(buffer, 0, len(buffer)) if buffer else None
    if header is None:
        return None
    size = header[0] + header[1]
    return (buffer[:size], buffer[size:]) if len(buffer) >= size else None


class PahoPeer:
    """A paho client (its own network thread) connected to us: we play the broker with our codec."""

    def __init__(self, version: int, **connect: Any) -> None:
        self.version = version
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(20)
        port = self.server.getsockname()[1]
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=connect.pop("client_id", "paho-peer"),
            protocol=paho.MQTTv5 if version == MQTT_5 else paho.MQTTv311,
        )
        self.client.max_inflight_messages_set(0)
        self.messages: queue.Queue[paho.MQTTMessage] = queue.Queue()
        self.connacks: queue.Queue[tuple[Any, Any, Any]] = queue.Queue()
        self.subacks: queue.Queue[tuple[int, Any, Any]] = queue.Queue()
        self.client.on_message = lambda client, userdata, message: self.messages.put(message)
        self.client.on_connect = lambda client, userdata, flags, rc, props: self.connacks.put((flags, rc, props))
        self.client.on_subscribe = lambda client, userdata, mid, rcs, props: self.subacks.put((mid, rcs, props))
        will = connect.pop("will", None)
        if will is not None:
            self.client.will_set(**will)
        if "username" in connect:
            self.client.username_pw_set(connect.pop("username"), connect.pop("password", None))
        self.client.connect_async("127.0.0.1", port, **connect)
        self.client.loop_start()
        self.sock, _ = self.server.accept()
        self.sock.settimeout(20)
        self.buffer = b""
        self.next_id = 0

    def read(self, *, ping: bool = False) -> wire.Packet:
        """The next packet from paho; its keep-alive PINGREQs are answered and skipped unless ``ping``."""
        while True:
            found = split_packet(self.buffer)
            if found is not None:
                raw, self.buffer = found
                packet = wire.decode_packet(raw, self.version)
                if isinstance(packet, wire.PingReq):
                    self.send(wire.PINGRESP)
                    if not ping:
                        continue
                return packet
            data = self.sock.recv(65536)
            assert data, "paho closed the connection"
            self.buffer += data

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def packet_id(self) -> int:
        self.next_id = self.next_id % 65535 + 1
        return self.next_id

    def accept(self, **connack: Any) -> wire.Connect:
        connect = self.read()
        assert isinstance(connect, wire.Connect)
        self.send(wire.encode_connack(version=self.version, **connack))
        return connect

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        self.sock.close()
        self.server.close()


@pytest.fixture(scope="module", params=[MQTT_5, MQTT_311], ids=["mqtt5", "mqtt311"])
def peer(request: pytest.FixtureRequest) -> Iterator[PahoPeer]:
    peer = PahoPeer(request.param, keepalive=2)
    peer.accept()
    peer.connacks.get(timeout=20)
    yield peer
    peer.close()


@settings(max_examples=examples(60, 300), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    topic=topics,
    payload=st.binary(max_size=3000),
    qos=st.integers(0, 2),
    retain=st.booleans(),
    properties=publish_properties,
)
def test_a_publish_we_encode_is_received_identically_by_paho(
    peer: PahoPeer, topic: str, payload: bytes, qos: int, retain: bool, properties: dict[str, Any]
) -> None:
    v5 = peer.version == MQTT_5
    packet_id = peer.packet_id() if qos else 0
    peer.send(
        wire.encode_publish(
            topic,
            payload,
            qos=qos,
            retain=retain,
            packet_id=packet_id,
            version=peer.version,
            properties=properties if v5 else None,  # type: ignore[arg-type]
        )
    )
    if qos == 1:
        assert peer.read() == Ack(wire.PUBACK, packet_id)
    elif qos == 2:  # paho hands the message over once released
        assert peer.read() == Ack(wire.PUBREC, packet_id)
        peer.send(wire.encode_acks(wire.PUBREL, [packet_id], version=peer.version))
        assert peer.read() == Ack(wire.PUBCOMP, packet_id)
    message = peer.messages.get(timeout=20)
    assert (message.topic, message.payload, message.qos, message.retain) == (topic, payload, qos, retain)
    if v5:
        assert from_paho(message.properties) == properties


@settings(max_examples=examples(60, 300), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    topic=topics,
    payload=st.binary(max_size=3000),
    qos=st.integers(0, 2),
    retain=st.booleans(),
    properties=publish_properties,
)
def test_a_publish_paho_encodes_is_decoded_identically_by_ours(
    peer: PahoPeer, topic: str, payload: bytes, qos: int, retain: bool, properties: dict[str, Any]
) -> None:
    v5 = peer.version == MQTT_5
    peer.client.publish(
        topic,
        payload,
        qos=qos,
        retain=retain,
        properties=to_paho(properties, PacketTypes.PUBLISH) if v5 and properties else None,  # type: ignore[arg-type]
    )
    packet = peer.read()
    assert isinstance(packet, Publish)
    assert (packet.topic, packet.payload, packet.qos, packet.retain, packet.dup) == (topic, payload, qos, retain, False)
    assert (packet.properties or {}) == (properties if v5 else {})
    # Our stream reader (the link's hot path) agrees with the one-packet decoder.
    raw = wire.encode_publish(
        topic,
        payload,
        qos=qos,
        retain=retain,
        packet_id=packet.packet_id,
        version=peer.version,
        properties=packet.properties,
    )
    assert wire.Reader(peer.version).feed(raw) == [packet]
    if qos == 1:
        peer.send(wire.encode_acks(wire.PUBACK, [packet.packet_id], version=peer.version))
    elif qos == 2:
        peer.send(wire.encode_acks(wire.PUBREC, [packet.packet_id], version=peer.version))
        assert peer.read() == Ack(wire.PUBREL, packet.packet_id)
        peer.send(wire.encode_acks(wire.PUBCOMP, [packet.packet_id], version=peer.version))


def test_subscribe_unsubscribe_ping_and_disconnect_from_paho_are_decoded_and_our_suback_read_by_paho(
    peer: PahoPeer,
) -> None:
    v5 = peer.version == MQTT_5
    if v5:
        options = [
            ("plant/+/temperature", SubscribeOptions(qos=1, noLocal=True, retainAsPublished=True, retainHandling=2)),
            ("$share/gw/factory/#", SubscribeOptions(qos=2, retainHandling=1)),
        ]
        expected = (
            Subscription("plant/+/temperature", 1, no_local=True, retain_as_published=True, retain_handling=2),
            Subscription("$share/gw/factory/#", 2, retain_handling=1),
        )
        peer.client.subscribe(options)
    else:
        peer.client.subscribe([("plant/+/temperature", 1), ("factory/#", 2)])
        expected = (Subscription("plant/+/temperature", 1), Subscription("factory/#", 2))
    subscribe = peer.read()
    assert isinstance(subscribe, wire.Subscribe) and subscribe.subscriptions == expected
    codes = [1, 0x80] if not v5 else [1, 0x9E]  # 0x9E: shared subscriptions not supported
    peer.send(wire.encode_suback(subscribe.packet_id, codes, version=peer.version))
    mid, reason_codes, _ = peer.subacks.get(timeout=20)
    assert mid == subscribe.packet_id and [code.value for code in reason_codes] == codes

    peer.client.unsubscribe(["plant/+/temperature", "factory/#"])
    unsubscribe = peer.read()
    assert isinstance(unsubscribe, wire.Unsubscribe)
    assert unsubscribe.filters == ("plant/+/temperature", "factory/#")
    peer.send(wire.encode_unsuback(unsubscribe.packet_id, [0, 0x11], version=peer.version))

    # paho's own keep-alive (2 s here): its PINGREQ, answered with our PINGRESP.
    while not isinstance(peer.read(ping=True), wire.PingReq):
        pass


@pytest.mark.parametrize("version", [MQTT_5, MQTT_311], ids=["mqtt5", "mqtt311"])
def test_connect_from_paho_is_decoded_and_our_connack_read_by_paho(version: int) -> None:
    v5 = version == MQTT_5
    will_properties = None
    if v5:
        will_properties = PahoProperties(PacketTypes.WILLMESSAGE)
        will_properties.WillDelayInterval = 5
        will_properties.ContentType = "application/json"
        will_properties.UserProperty = ("site", "north")
    connect_properties = None
    if v5:
        connect_properties = PahoProperties(PacketTypes.CONNECT)
        connect_properties.SessionExpiryInterval = 86400
        connect_properties.ReceiveMaximum = 1000
        connect_properties.MaximumPacketSize = 2**20
    peer = PahoPeer(
        version,
        client_id="gw-ü-1",
        keepalive=45,
        username="gateway",
        password="s3cret",
        will={"topic": "gw/status", "payload": b"offline", "qos": 1, "retain": True, "properties": will_properties},
        **({"properties": connect_properties, "clean_start": False} if v5 else {}),
    )
    try:
        connack_properties: wire.Properties = {"receive_maximum": 20, "assigned_client_identifier": "x"} if v5 else {}
        connect = peer.accept(session_present=True, properties=connack_properties)
        assert (connect.client_id, connect.version, connect.keepalive) == ("gw-ü-1", version, 45)
        assert (connect.username, connect.password) == ("gateway", b"s3cret")
        assert connect.will is not None
        assert (connect.will.topic, connect.will.payload, connect.will.qos, connect.will.retain) == (
            "gw/status",
            b"offline",
            1,
            True,
        )
        if v5:
            assert not connect.clean_start
            assert connect.properties == {
                "session_expiry_interval": 86400,
                "receive_maximum": 1000,
                "maximum_packet_size": 2**20,
            }
            assert connect.will.properties == {
                "will_delay_interval": 5,
                "content_type": "application/json",
                "user_property": [("site", "north")],
            }
        flags, reason, properties = peer.connacks.get(timeout=20)
        assert flags.session_present and not reason.is_failure
        if v5:
            assert properties.ReceiveMaximum == 20 and properties.AssignedClientIdentifier == "x"
        peer.client.disconnect()
        assert isinstance(peer.read(), wire.Disconnect)
    finally:
        peer.close()


# --- remaining lengths, streams cut anywhere, malformed bytes -------------------------------------------


@pytest.mark.parametrize("remaining", [0, 127, 128, 16383, 16384, 2097151, 2097152])
def test_remaining_length_edges(remaining: int) -> None:
    topic = b"t"
    payload = b"x" * max(0, remaining - 3)  # 2 bytes topic length + 1 byte topic (QoS 0, MQTT 3.1.1)
    data = wire.PINGRESP if remaining == 0 else wire.encode_publish(topic, payload, version=MQTT_311)
    header = {0: 1, 127: 1, 128: 2, 16383: 2, 16384: 3, 2097151: 3, 2097152: 4}[remaining]
    assert len(data) == 1 + header + remaining
    assert wire._header(data, 0, len(data)) == (remaining, 1 + header)
    expected = wire.PingResp() if remaining == 0 else Publish("t", payload, 0, 0, 0, None)
    assert wire.decode_packet(data, MQTT_311) == expected
    reader = wire.Reader(MQTT_311)
    got: list[wire.Packet] = []
    for start in range(0, len(data), 65536):  # as a socket delivers it
        got += reader.feed(data[start : start + 65536])
    assert got == [expected] and reader.pending == 0
    # The variable byte integer at its 4-byte limit, and one beyond it.
    assert wire._varint(wire.MAX_REMAINING) == b"\xff\xff\xff\x7f"
    with pytest.raises(ProtocolError, match="not a valid variable byte integer"):
        wire.Reader().feed(b"\x30\xff\xff\xff\xff\x01")


@settings(max_examples=examples(200, 2000), deadline=None)
@given(
    packets=st.lists(
        st.tuples(topics, st.binary(max_size=400), st.integers(0, 2), st.booleans(), publish_properties),
        min_size=1,
        max_size=12,
    ),
    cuts=st.lists(st.integers(0, 10_000), max_size=8),
    version=st.sampled_from([MQTT_5, MQTT_311]),
)
def test_a_stream_cut_anywhere_gives_the_same_packets(
    packets: list[tuple[str, bytes, int, bool, dict[str, Any]]], cuts: list[int], version: int
) -> None:
    expected: list[wire.Packet] = []
    data = b""
    for i, (topic, payload, qos, retain, properties) in enumerate(packets):
        props = properties if version == MQTT_5 else None
        data += wire.encode_publish(
            topic,
            payload,
            qos=qos,
            retain=retain,
            packet_id=i + 1 if qos else 0,
            version=version,
            properties=props,  # type: ignore[arg-type]
        )
        expected.append(Publish(topic, payload, qos, i + 1 if qos else 0, (qos << 1) | retain, props or None))  # type: ignore[arg-type]
        data += wire.encode_acks(wire.PUBACK, [i + 1], version=version) + wire.PINGRESP
        expected += [Ack(wire.PUBACK, i + 1), wire.PingResp()]
    reader = wire.Reader(version)
    got: list[wire.Packet] = []
    start = 0
    for cut in [*sorted({c % (len(data) + 1) for c in cuts}), len(data)]:
        got += reader.feed(data[start:cut])
        start = cut
    assert got == expected and reader.pending == 0


def test_a_large_packet_in_small_reads_is_collected_without_copying_it_each_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    payload = bytes(range(256)) * 40_000  # 10 MB
    data = wire.encode_publish("big", payload, qos=1, packet_id=7)
    reader = wire.Reader()
    # What the reader hands its decoder: the bytes held so far, again at every read, would be
    # quadratic (about 12 GB for these 2,442 reads); collected as parts, the packet is decoded once.
    decoded: list[int] = []
    decode = reader._decode

    def counting(chunk: bytes) -> tuple[list[wire.Packet], int]:
        decoded.append(len(chunk))
        return decode(chunk)

    monkeypatch.setattr(reader, "_decode", counting)
    got: list[wire.Packet] = []
    for start in range(0, len(data), 4096):
        got += reader.feed(data[start : start + 4096])
    assert got == [Publish("big", payload, 1, 7, 2, None)]
    assert sum(decoded) <= 2 * len(data), f"{sum(decoded):,} bytes decoded for one packet of {len(data):,}"
    with pytest.raises(ProtocolError, match="more than the 1,000 accepted"):
        wire.Reader(max_packet_size=1000).feed(data[:5000])


def test_a_topic_that_is_not_utf8_is_kept_as_none_not_an_error() -> None:
    data = wire.encode_publish(b"a/\xff", b"1", qos=1, packet_id=3)
    assert wire.Reader().feed(data) == [Publish(None, b"1", 1, 3, 2, None)]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x36\x05\x00\x01a\x00\x01", "QoS 3"),
        (b"\x32\x04\x00\x01a\x00", "packet identifier"),
        (b"\x32\x05\x00\x01a\x00\x00", "packet identifier 0"),
        (b"\x30\x04\x00\x01a\x05", "properties run past"),
        (b"\x30\x06\x00\x01a\x02\x7f\x00", "unknown property identifier 0x7F"),
        (b"\x30\x09\x00\x01a\x03\x02\x00\x00\x00\x01", "runs past the property length"),
        (b"\x30\x0e\x00\x01a\x0a\x02\x00\x00\x00\x01\x02\x00\x00\x00\x01", "appears twice"),
        (b"\x20\x03\x02\x00\x00", "reserved acknowledge flags"),
        (b"\x21\x03\x00\x00\x00", "fixed header flags"),
        (b"\x90\x03\x00\x01\x00", "no reason codes"),
        (b"\x10\x00", "only a client may send"),
        (b"\x82\x00", "only a client may send"),
        (b"\x00\x00", "reserved"),
        (b"\x40\x01\x00", "runs past the end"),
        (b"\xd0\x01\x00", "unexpected bytes"),
        (b"\x20\x06\x00\x00\x03\x12\x00\x01", "runs past|properties run past"),
        (b"\x20\x07\x00\x00\x04\x12\x00\x01\xff", "not valid UTF-8"),
    ],
)
def test_malformed_packets_from_a_broker_are_protocol_errors_that_say_what_is_wrong(data: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        wire.Reader(MQTT_5).feed(data)


@settings(max_examples=examples(500, 5000), deadline=None)
@given(data=st.binary(max_size=200), version=st.sampled_from([MQTT_5, MQTT_311]))
def test_random_bytes_raise_nothing_but_protocol_error(data: bytes, version: int) -> None:
    with contextlib.suppress(ProtocolError):
        wire.Reader(version).feed(data)
    with contextlib.suppress(ProtocolError):
        wire.decode_packet(data, version)


@settings(max_examples=examples(500, 5000), deadline=None)
@given(
    index=st.integers(0, 10_000),
    byte=u8,
    cut=st.integers(0, 10_000),
    properties=publish_properties,
    kind=st.sampled_from(["publish", "connack", "suback", "disconnect", "puback"]),
)
def test_a_valid_packet_with_one_byte_changed_or_cut_short_raises_nothing_but_protocol_error(
    index: int, byte: int, cut: int, properties: dict[str, Any], kind: str
) -> None:
    valid = {
        "publish": lambda: wire.encode_publish("a/b", b"xy", qos=1, packet_id=9, properties=properties),  # type: ignore[arg-type]
        "connack": lambda: wire.encode_connack(0, properties={"receive_maximum": 9, "reason_string": "hi"}),
        "suback": lambda: wire.encode_suback(3, [0, 1, 0x80], properties={"user_property": [("a", "b")]}),
        "disconnect": lambda: wire.encode_disconnect(0x8B, properties={"reason_string": "bye"}),
        "puback": lambda: wire._fixed(0x40, b"\x00\x01\x10" + wire.encode_properties({"reason_string": "ok"})),
    }[kind]()
    changed = bytearray(valid)
    changed[index % len(changed)] = byte
    for data in (bytes(changed), valid[: cut % (len(valid) + 1)]):
        with contextlib.suppress(ProtocolError):
            wire.Reader().feed(data)
        with contextlib.suppress(ProtocolError):
            wire.decode_packet(data)


def test_encoders_refuse_what_mqtt_cannot_carry() -> None:
    with pytest.raises(ValueError, match=r"3\.1\.1 does not allow a password without a user name"):
        wire.encode_connect("c", version=MQTT_311, password=b"x")
    with pytest.raises(ValueError, match=r"3\.1\.1 has no PUBLISH properties"):
        wire.encode_publish("t", b"", version=MQTT_311, properties={"content_type": "x"})
    with pytest.raises(ValueError, match="packet identifier"):
        wire.encode_publish("t", b"", qos=1)
    with pytest.raises(ValueError, match="65,535 bytes"):
        wire.encode_publish("t" * 70_000, b"")
    with pytest.raises(ValueError, match="not an MQTT 5 property"):
        wire.encode_properties({"colour": 1})  # type: ignore[arg-type]
    assert wire.encode_acks(wire.PUBACK, [1, 2, 258]) == b"\x40\x02\x00\x01\x40\x02\x00\x02\x40\x02\x01\x02"
    assert wire.encode_acks(wire.PUBACK, [5], reason_code=0x10) == b"\x40\x03\x00\x05\x10"
    assert wire.encode_disconnect(0x04) == b"\xe0\x02\x04\x00"
    assert wire.encode_disconnect(0x04, version=MQTT_311) == b"\xe0\x00"


# --- our CONNECT and SUBSCRIBE as Mosquitto acts on them ------------------------------------------------


class Raw:
    """A client made of a socket and our codec (no link): what Mosquitto does with our bytes."""

    def __init__(self, broker: Mosquitto, client_id: str, *, version: int = MQTT_5, **connect: Any) -> None:
        self.version = version
        self.sock = socket.create_connection((broker.host, broker.port), timeout=20)
        self.reader = wire.Reader(version)
        self.packets: list[wire.Packet] = []
        self.sock.sendall(wire.encode_connect(client_id, version=version, **connect))
        self.connack = self.next()

    def next(self) -> wire.Packet:
        while not self.packets:
            data = self.sock.recv(65536)
            assert data, "the broker closed the connection"
            self.packets += self.reader.feed(data)
        return self.packets.pop(0)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        self.sock.close()


def test_mosquitto_accepts_our_connect_and_acts_on_our_subscription_options(mosquitto_factory: Any) -> None:
    broker = mosquitto_factory(users={"gw": "pw"})
    refused = Raw(broker, "intruder", username="gw", password=b"wrong")
    assert isinstance(refused.connack, wire.ConnAck) and refused.connack.reason_code in (0x86, 0x87)
    refused.close()

    will = wire.Will("gw/status", b"offline", qos=1, retain=True, properties={"content_type": "text/plain"})
    watcher = Raw(broker, "watcher", username="gw", password=b"pw", properties={"receive_maximum": 50})
    assert isinstance(watcher.connack, wire.ConnAck) and watcher.connack.reason_code == 0
    watcher.send(wire.encode_subscribe(1, [Subscription("gw/status", 1)]))
    assert watcher.next() == wire.SubAck(1, (1,))

    gw = Raw(
        broker,
        "gw-1",
        username="gw",
        password=b"pw",
        clean_start=True,
        keepalive=30,
        will=will,
        properties={"session_expiry_interval": 0, "receive_maximum": 10, "topic_alias_maximum": 0},
    )
    assert isinstance(gw.connack, wire.ConnAck) and gw.connack.reason_code == 0 and not gw.connack.session_present
    gw.send(wire.encode_publish("cell/retained", b"r", qos=1, packet_id=1, retain=True))
    assert gw.next() == Ack(wire.PUBACK, 1, 0x10)  # 0x10: no matching subscribers (yet), taken all the same
    gw.send(
        wire.encode_subscribe(
            2,
            [
                Subscription("cell/own", 1, no_local=True),  # our own messages are not sent back
                Subscription("cell/retained", 1, retain_handling=2),  # no retained message at subscription
                Subscription("cell/rap", 1, retain_as_published=True),
                Subscription("cell/+", 1, retain_handling=1),
            ],
        )
    )
    assert gw.next() == wire.SubAck(2, (1, 1, 1, 1))
    retained = gw.next()  # only through cell/+, the one subscription that asked for retained messages
    assert isinstance(retained, Publish) and (retained.topic, retained.retain) == ("cell/retained", True)
    gw.send(wire.encode_acks(wire.PUBACK, [retained.packet_id]))
    gw.send(wire.encode_publish("cell/own", b"mine", qos=1, packet_id=3))
    gw.send(wire.encode_publish("cell/rap", b"kept", qos=1, packet_id=4, retain=True))
    seen: list[tuple[str | None, bytes, bool]] = []
    while len(seen) < 3:
        packet = gw.next()
        if isinstance(packet, Publish):
            seen.append((packet.topic, packet.payload, packet.retain))
            gw.send(wire.encode_acks(wire.PUBACK, [packet.packet_id]))
        else:
            assert isinstance(packet, Ack)
    # cell/own: once, through cell/+ only (no-local); cell/rap: one copy per subscription, its
    # retain flag kept only where retain-as-published was asked.
    assert sorted(seen) == [("cell/own", b"mine", False), ("cell/rap", b"kept", False), ("cell/rap", b"kept", True)]

    gw.sock.shutdown(socket.SHUT_RDWR)  # gone without DISCONNECT: the broker publishes the will
    gw.close()
    message = watcher.next()
    assert isinstance(message, Publish)
    assert (message.topic, message.payload, message.qos) == ("gw/status", b"offline", 1)
    assert message.properties == {"content_type": "text/plain"}
    watcher.close()


def test_mosquitto_accepts_our_mqtt_311_connect_and_subscribe(mosquitto: Mosquitto) -> None:
    client = Raw(mosquitto, "gw-311", version=MQTT_311, clean_start=False, keepalive=10)
    assert isinstance(client.connack, wire.ConnAck) and client.connack.reason_code == 0
    client.send(wire.encode_subscribe(1, [Subscription("a/#", 2), Subscription("b/+", 0)], version=MQTT_311))
    assert client.next() == wire.SubAck(1, (2, 0))
    client.send(wire.encode_publish("a/x", b"v", qos=2, packet_id=2, version=MQTT_311))
    assert client.next() == Ack(wire.PUBREC, 2)
    client.send(wire.encode_acks(wire.PUBREL, [2], version=MQTT_311))  # the broker delivers once released
    packets = [client.next(), client.next()]  # PUBCOMP for ours, and the broker's delivery (any order)
    assert Ack(wire.PUBCOMP, 2) in packets
    delivery = next(p for p in packets if isinstance(p, Publish))
    assert (delivery.topic, delivery.payload, delivery.qos) == ("a/x", b"v", 2)
    client.send(wire.encode_unsubscribe(3, ["b/+"], version=MQTT_311))
    client.send(wire.PINGREQ)
    rest = {type(client.next()) for _ in range(2)}
    assert rest == {wire.UnsubAck, wire.PingResp}
    client.send(wire.encode_disconnect(version=MQTT_311))
    client.close()


def test_acknowledgements_in_short_form_agree_with_the_general_decoder() -> None:
    """PUBACK and friends without properties take the reader's fast path; it must say what the checked path says."""
    for data, version in [
        (b"\x40\x02\x00\x05", MQTT_5),
        (b"\x40\x02\x00\x05", MQTT_311),
        (b"\x50\x03\x01\x00\x10", MQTT_5),
        (b"\x62\x02\xff\xff", MQTT_5),
        (b"\x70\x03\x00\x09\x92", MQTT_5),
    ]:
        assert wire.Reader(version).feed(data) == [wire.decode_packet(data, version)]
    assert wire.Reader().feed(b"\x40\x03\x00\x05\x10") == [Ack(wire.PUBACK, 5, 0x10, None)]
    with pytest.raises(ProtocolError, match="unexpected bytes"):
        wire.Reader(MQTT_311).feed(b"\x40\x03\x00\x05\x10")  # 3.1.1 has no reason code
    with pytest.raises(ProtocolError, match="packet identifier 0"):
        wire.Reader().feed(b"\x40\x02\x00\x00")
