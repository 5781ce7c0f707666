"""The only module that imports paho: one MQTT connection driven by the asyncio loop.

Why not ``loop_start()`` (paho's network thread)? paho's own loop reads one packet per
``select()`` with three ``recv()`` calls per packet, builds an ``MQTTMessage`` (with a
``threading.Condition``) and, for MQTT 5, a properties object with three lookup tables for
every message, and each manual acknowledgement is its own write. Driven from the asyncio loop
instead — the socket registered with ``add_reader``, reads served from a 64 KiB buffer, whole
QoS 0/1 PUBLISH packets decoded straight from that buffer, the acknowledgements of a batch
written as one packet — the whole gateway drains a QoS 1 backlog into the historian faster
than paho's thread with per-message acks does nothing (docs/PERFORMANCE.md), in one thread:
no GIL hand-offs, no locks, status changed on the loop only.

:class:`MqttLink` owns the paho client: it connects (the blocking TCP/TLS part in a worker
thread), reconnects with capped exponential backoff, re-subscribes after every connection
(PEERS.md item 8: never silent after a broker restart), collects incoming messages in
:attr:`MqttLink.incoming` and sends acknowledgements for a connection *generation*: an
acknowledgement meant for a connection that has since dropped is not sent (the broker
redelivers those messages on the new connection).

paho internals used (checked on paho-mqtt 2.2; the integration tests exercise each):
``_sock_recv`` and ``_sock_close`` (the read buffer), ``_packet_read`` (the PUBLISH fast
path; anything unusual falls back to paho's), ``_handle_on_message`` (without the unused
per-topic callback matcher), ``_packet_queue`` (one packet holding many PUBACKs; without it,
``Client.ack`` per message) and ``paho.mqtt._packet.Properties`` (replaced by a subclass that
skips rebuilding its tables for every received message).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Final, NamedTuple, Protocol, cast

import paho.mqtt.client as paho
from paho.mqtt import _packet
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from connectors.mqtt.config import MqttConfig
from gateway.errors import SourceError

__all__ = ["Incoming", "LinkEvents", "MqttLink"]

_PUBACK: Final = 0x40
_PUBCOMP: Final = 0x70
_ACK_PACKET: Final = struct.Struct("!BBH").pack
_READ_SIZE: Final = 65536
#: Packets read per wake-up of the reader before giving the loop back to other tasks.
_READ_BURST: Final = 1000  # ~20 ms of work: other connectors and the web page stay responsive
#: A connection shorter than this does not reset the reconnect backoff (no storm if a broker drops us at once).
_STABLE_SECONDS: Final = 10.0
#: Connection generations are unique in the process, so an old acknowledgement never reaches a new connection.
_GENERATIONS: Final = itertools.count(1)


class Incoming(NamedTuple):
    """One received message, as kept until its points are stored."""

    topic: str | None  # None: the topic is not valid UTF-8
    payload: bytes
    qos: int
    mid: int
    received_ns: int
    generation: int


class LinkEvents(Protocol):
    """What the link tells its owner; every call happens on the event loop."""

    def connected(self, session_present: bool, reconnect: bool) -> None: ...
    def connect_failed(self, message: str, unauthorized: bool) -> None: ...
    def disconnected(self, message: str) -> None: ...
    def subscribe_failed(self, message: str) -> None: ...
    def subscribed(self, filters: list[str]) -> None: ...
    def messages(self) -> None: ...
    def dropped(self, count: int) -> None: ...


class _Client(paho.Client):
    """paho's client with buffered socket reads (paho asks for 1, 1 and n bytes per packet)."""

    _rbuf: bytes = b""
    _rpos: int = 0
    would_block: bool = False
    #: Called as (topic, payload, qos, mid) for QoS 0/1 PUBLISH packets read whole from the buffer.
    on_publish_fast: Callable[[bytes, bytes, int, int], None] | None = None

    def _packet_read(self) -> MQTTErrorCode:
        # Fast path: a whole QoS 0/1 PUBLISH (without MQTT 5 properties) already in the read
        # buffer is decoded here, without paho's per-packet dict, struct formats, MQTTMessage
        # and its Condition (about half of the time per message). Anything else — other
        # packets, QoS 2, properties, a packet split across reads — goes through paho.
        handler = self.on_publish_fast
        buf = self._rbuf
        pos = self._rpos
        end = len(buf)
        if handler is None or pos >= end or self._in_packet["command"] != 0:
            return super()._packet_read()
        command = buf[pos]
        if command & 0xF0 != 0x30 or command & 0x06 == 0x04 or command & 0x06 == 0x06:
            return super()._packet_read()
        length = 0
        shift = 0
        i = pos + 1
        while True:
            if i >= end or shift > 21:
                return super()._packet_read()
            byte = buf[i]
            i += 1
            length |= (byte & 0x7F) << shift
            if not byte & 0x80:
                break
            shift += 7
        stop = i + length
        if stop > end or length < 2:
            return super()._packet_read()
        topic_end = i + 2 + ((buf[i] << 8) | buf[i + 1])
        qos = (command >> 1) & 0x03
        mid = 0
        body = topic_end
        if qos:
            mid = (buf[body] << 8) | buf[body + 1]
            body += 2
        if self._protocol == paho.MQTTv5:
            if body >= stop or buf[body] != 0:  # properties present: let paho read them
                return super()._packet_read()
            body += 1
        if body > stop:
            return super()._packet_read()
        self._rpos = stop
        self._last_bytes_received = time.monotonic()
        handler(buf[i + 2 : topic_end], buf[body:stop], qos, mid)
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _sock_recv(self, bufsize: int) -> bytes:
        buf = self._rbuf
        pos = self._rpos
        if pos < len(buf):
            end = pos + bufsize
            self._rpos = end
            return buf[pos:end]
        try:
            data = super()._sock_recv(max(bufsize, _READ_SIZE))
        except BlockingIOError:
            self.would_block = True
            raise
        if len(data) <= bufsize:
            return data
        self._rbuf = data
        self._rpos = bufsize
        return data[:bufsize]

    def _handle_on_message(self, message: paho.MQTTMessage) -> None:
        # paho's version also runs the topic through its message_callback_add() matcher
        # (unused here), about 10 % of the time per message.
        on_message = self.on_message
        if on_message is not None:
            on_message(self, self._userdata, message)

    def _sock_close(self) -> None:
        self._rbuf = b""
        self._rpos = 0
        super()._sock_close()

    @property
    def buffered(self) -> bool:
        sock = self._sock
        return self._rpos < len(self._rbuf) or (isinstance(sock, ssl.SSLSocket) and sock.pending() > 0)


class _Properties(Properties):
    """paho's MQTT 5 properties without rebuilding its lookup tables for every packet.

    paho creates a ``Properties`` for each received PUBLISH: building its three tables and
    clearing it took ~30 % of the time of draining a backlog (profiled here). This subclass
    shares one set of tables and skips the work when the packet has no properties (the usual
    case); it behaves the same otherwise. Installed in ``paho.mqtt._packet`` by :func:`_install`.
    """

    _template: Final = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]

    def __init__(self, packetType: int) -> None:
        object.__setattr__(self, "packetType", packetType)
        object.__setattr__(self, "types", self._template.types)
        object.__setattr__(self, "names", self._template.names)
        object.__setattr__(self, "properties", self._template.properties)

    def unpack(self, buffer: bytes | bytearray) -> tuple[Properties, int]:
        if buffer[:1] == b"\x00":  # property length 0: nothing to read
            return self, 1
        return super().unpack(buffer)  # type: ignore[no-any-return, no-untyped-call]


def _install() -> None:
    if getattr(_packet, "Properties", None) is Properties:
        setattr(_packet, "Properties", _Properties)  # noqa: B010 - not exported, mypy would refuse the attribute


_install()


def connect_error_message(exc: BaseException, host: str, port: int) -> str:
    """A plant engineer's reading of a failed TCP/TLS connection."""
    where = f"broker at {host}:{port}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"TLS: the certificate of the {where} was not accepted ({exc.verify_message}); "
            "set tls.ca_file to the certificate authority that signed it"
        )
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake with the {where} failed: {exc.reason or exc}"
    if isinstance(exc, ConnectionRefusedError):
        return f"connection refused: {where} unreachable (is the broker running and listening on that port?)"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the broker host {host!r}: {exc.strerror}"
    if isinstance(exc, TimeoutError | socket.timeout):
        return f"no answer from the {where} (connection timed out)"
    if isinstance(exc, OSError):
        return f"cannot connect to the {where}: {exc.strerror or exc}"
    return f"cannot connect to the {where}: {exc}"


class MqttLink:
    """One paho client on the running asyncio loop (see the module docstring)."""

    def __init__(self, config: MqttConfig, client_id: str, events: LinkEvents) -> None:
        self.config = config
        self.client_id = client_id
        self.events = events
        self.incoming: list[Incoming] = []
        self.generation = 0
        self.connected = False
        self.accepting = True
        self.dropped = 0
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._closing = False
        self._down = asyncio.Event()
        self._paused = False
        self._sock_fd: int | None = None
        self._writing = False
        self._connected_at = 0.0
        self._ever_connected = False
        self._refused = False
        self._closed = asyncio.Event()
        self._subscribed: list[str] = []
        self._qos_of = {topic.filter: topic.qos if topic.qos is not None else config.qos for topic in config.topics}
        self._client = self._make_client()
        self._batch_acks = hasattr(self._client, "_packet_queue")

    # --- paho client set-up ---------------------------------------------------------------

    def _make_client(self) -> _Client:
        config = self.config
        v5 = config.protocol == "5"
        client = _Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=paho.MQTTv5 if v5 else paho.MQTTv311,
            clean_session=None if v5 else not config.persistent,
            manual_ack=True,
        )
        client.suppress_exceptions = True  # a bug in a callback must not take the connection down
        if config.username is not None:
            client.username_pw_set(
                config.username, config.password.get_secret_value() if config.password is not None else None
            )
        if config.tls_enabled:
            tls = config.tls
            insecure = tls is not None and tls.insecure
            try:
                client.tls_set(
                    ca_certs=str(tls.ca_file) if tls and tls.ca_file else None,
                    certfile=str(tls.cert_file) if tls and tls.cert_file else None,
                    keyfile=str(tls.key_file) if tls and tls.key_file else None,
                    keyfile_password=tls.key_password.get_secret_value() if tls and tls.key_password else None,
                    cert_reqs=ssl.CERT_NONE if insecure else ssl.CERT_REQUIRED,
                )
            except (OSError, ValueError) as exc:
                raise SourceError(f"TLS files cannot be used (tls.ca_file, cert_file, key_file): {exc}") from None
            if insecure:
                client.tls_insecure_set(True)
        properties: Properties | None = None
        if v5:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = min(int(config.session_expiry), 0xFFFFFFFF) if config.persistent else 0
            properties.ReceiveMaximum = config.receive_maximum
        client.connect_async(
            config.host,
            config.port,
            keepalive=max(1, round(config.keepalive)),
            clean_start=not config.persistent if v5 else paho.MQTT_CLEAN_START_FIRST_ONLY,
            properties=properties,
        )
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_publish_fast = self._on_publish_fast
        return client

    # --- connection management ------------------------------------------------------------

    async def run(self) -> None:
        """Connect, and reconnect with backoff whenever the connection drops, until :meth:`close`."""
        delay = self.config.reconnect_min
        misc = asyncio.create_task(self._misc(), name=f"mqtt-misc:{self.client_id}")
        try:
            while not self._closing:
                self._down.clear()
                try:
                    await self._connect()
                except Exception as exc:  # noqa: BLE001 - every failure to connect is retried
                    if self._closing:
                        break
                    self.events.connect_failed(connect_error_message(exc, self.config.host, self.config.port), False)
                else:
                    if self._closing:
                        break
                    await self._down.wait()
                    if self._connected_at and time.monotonic() - self._connected_at >= _STABLE_SECONDS:
                        delay = self.config.reconnect_min
                if self._closing:
                    break
                await self._sleep(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, self.config.reconnect_max)
        finally:
            misc.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await misc

    async def _connect(self) -> None:
        client = self._client
        self._detach_socket()
        self.generation = next(_GENERATIONS)
        self.connected = False
        self._refused = False
        self._connected_at = 0.0
        # The TCP connect and TLS handshake block: run them in a worker thread, with paho's
        # socket callbacks detached so that nothing touches the loop from that thread.
        await asyncio.to_thread(client.reconnect)
        sock = client.socket()
        if self._closing:
            client._sock_close()
            return
        if sock is None:
            raise ConnectionError("the connection closed while it was being opened")
        self._attach_socket(sock)

    def _attach_socket(self, sock: Any) -> None:
        client = self._client
        self._sock_fd = sock.fileno()
        self._loop.add_reader(self._sock_fd, self._on_readable)
        self._paused = False
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_register_write
        client.on_socket_unregister_write = self._on_unregister_write
        if client.want_write():
            self._on_register_write(client, None, sock)

    def _detach_socket(self) -> None:
        client = self._client
        client.on_socket_close = None
        client.on_socket_register_write = None
        client.on_socket_unregister_write = None
        if self._sock_fd is not None:
            self._loop.remove_reader(self._sock_fd)
            self._loop.remove_writer(self._sock_fd)
            self._sock_fd = None
        self._writing = False

    def _on_socket_close(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        if threading.get_ident() != self._loop_thread:  # pragma: no cover - reconnect() closes in its thread
            return
        self._detach_socket()

    def _on_register_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        if self._sock_fd is not None and not self._writing:
            self._writing = True
            self._loop.add_writer(self._sock_fd, self._on_writable)

    def _on_unregister_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        if self._sock_fd is not None and self._writing:
            self._writing = False
            self._loop.remove_writer(self._sock_fd)

    def _on_writable(self) -> None:
        self._client.loop_write()

    def _on_readable(self) -> None:
        if self._sock_fd is None or self._paused:
            return
        client = self._client
        before = len(self.incoming)
        client.would_block = False
        for _ in range(_READ_BURST):
            if client.loop_read() != paho.MQTT_ERR_SUCCESS or client.would_block or client.socket() is None:
                break
        else:
            if client.buffered:  # the kernel will not wake us for bytes already in our buffer
                self._loop.call_soon(self._on_readable)
        if self.dropped:
            self.events.dropped(self.dropped)
            self.dropped = 0
        if len(self.incoming) != before:
            self.events.messages()
            if len(self.incoming) >= self.config.max_buffered and self._sock_fd is not None and not self._paused:
                # QoS 1/2 beyond the bound (MQTT 3.1.1 with an unlimited broker window): stop reading.
                self._paused = True
                self._loop.remove_reader(self._sock_fd)

    def take(self, limit: int) -> list[Incoming]:
        """Hand over up to ``limit`` received messages (oldest first); reading resumes if it was paused."""
        incoming = self.incoming
        if len(incoming) <= limit:
            self.incoming = []
            taken = incoming
        else:
            taken = incoming[:limit]
            del incoming[:limit]
        if self._paused and len(self.incoming) < self.config.max_buffered // 2 and self._sock_fd is not None:
            self._paused = False
            self._loop.add_reader(self._sock_fd, self._on_readable)
            self._loop.call_soon(self._on_readable)
        return taken

    async def _misc(self) -> None:
        """Keep-alive pings and dead-connection detection (paho's loop_misc), once a second."""
        while True:
            await asyncio.sleep(1.0)
            if self._sock_fd is not None:
                self._client.loop_misc()

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closed.wait(), seconds)

    # --- paho callbacks (all on the loop: paho runs them from loop_read / loop_misc) ---------

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            unauthorized = reason_code.getName() in ("Not authorized", "Bad user name or password")
            self._refused = True
            self.events.connect_failed(f"the broker refused the connection: {reason_code}", unauthorized)
            return
        self.connected = True
        self._connected_at = time.monotonic()
        reconnect = self._ever_connected
        self._ever_connected = True
        self._subscribe()
        self.events.connected(bool(flags.session_present), reconnect)

    def _subscribe(self) -> None:
        topics: list[tuple[str, Any]]
        if self.config.protocol == "5":
            # retainHandling 1: retained messages only for a new subscription, not at every reconnect.
            topics = [(f, SubscribeOptions(qos=q, retainHandling=1)) for f, q in self._qos_of.items()]
        else:
            topics = list(self._qos_of.items())
        self._subscribed = [f for f, _ in topics]
        self._client.subscribe(topics)

    def _on_subscribe(self, client: paho.Client, userdata: Any, mid: int, reason_codes: Any, properties: Any) -> None:
        granted = []
        for filter_, code in zip(self._subscribed, reason_codes, strict=False):
            if code.is_failure:
                self.events.subscribe_failed(f"the broker refused the subscription to {filter_!r}: {code}")
                continue
            granted.append(filter_)
            if code.value < self._qos_of[filter_]:
                self.events.subscribe_failed(
                    f"the broker granted QoS {code.value} instead of {self._qos_of[filter_]} for {filter_!r}"
                )
        self.events.subscribed(granted)

    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: Any, reason_code: Any, props: Any) -> None:
        was_connected = self.connected
        self.connected = False
        self._detach_socket()
        self._down.set()
        if self._closing or self._refused:
            return
        if flags.is_disconnect_packet_from_server:
            message = f"the broker closed the connection: {reason_code}"
        elif reason_code.getName() == "Keep alive timeout":
            message = f"no answer from the broker at {self.config.host}:{self.config.port} (keep-alive timed out)"
        elif was_connected:
            message = f"connection to the broker at {self.config.host}:{self.config.port} lost"
        else:
            message = f"the broker at {self.config.host}:{self.config.port} closed the connection before accepting it"
        self.events.disconnected(message)

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        if not self.accepting:
            return  # stopping: not acknowledged, so the broker keeps QoS 1/2 messages for the next start
        qos = message.qos
        if qos == 0 and len(self.incoming) >= self.config.max_buffered:
            self.dropped += 1
            return
        try:
            topic: str | None = message.topic
        except UnicodeDecodeError:
            topic = None
        self.incoming.append(
            Incoming(topic, cast(bytes, message.payload), qos, message.mid, time.time_ns(), self.generation)
        )

    def _on_publish_fast(self, topic: bytes, payload: bytes, qos: int, mid: int) -> None:
        """The same as :meth:`_on_message`, from the fast path (raw topic bytes)."""
        if not self.accepting:
            return
        if qos == 0 and len(self.incoming) >= self.config.max_buffered:
            self.dropped += 1
            return
        try:
            name: str | None = topic.decode()
        except UnicodeDecodeError:
            name = None
        self.incoming.append(Incoming(name, payload, qos, mid, time.time_ns(), self.generation))

    # --- acknowledgements and shutdown ------------------------------------------------------

    def ack(self, acks: Sequence[tuple[int, int, int]]) -> int:
        """Acknowledge (generation, mid, qos) triples of the current connection; returns how many were sent."""
        if not self.connected:
            return 0
        generation = self.generation
        mine = [(mid, qos) for gen, mid, qos in acks if gen == generation and qos]
        if not mine:
            return 0
        client = self._client
        if self._batch_acks:
            data = b"".join([_ACK_PACKET(_PUBACK if qos == 1 else _PUBCOMP, 2, mid) for mid, qos in mine])
            client._packet_queue(_PUBACK, data, 0, 0)
        else:  # pragma: no cover - only if paho's internals change
            for mid, qos in mine:
                client.ack(mid, qos)
        return len(mine)

    async def close(self, timeout: float = 5.0) -> None:
        """Send what is queued (acknowledgements), disconnect (the session stays on the broker), stop."""
        deadline = time.monotonic() + timeout
        client = self._client
        self.accepting = False
        while self.connected and client.want_write() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        self._closing = True
        self._closed.set()
        if self.connected:
            client.disconnect()
            while self._sock_fd is not None and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
        self._detach_socket()
        with contextlib.suppress(Exception):
            client._sock_close()
        self._down.set()

    @property
    def closing(self) -> bool:
        return self._closing
