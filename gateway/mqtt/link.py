"""One MQTT connection kept alive on the asyncio loop: the link between the gateway and a broker.

Why the gateway speaks MQTT itself rather than through a client library: the no-loss promise
depends on *when* each acknowledgement leaves — PUBACK for QoS 1 and PUBREC for QoS 2 only once
the points are stored, on the connection the message came from — and a backlog must drain at
tens of thousands of messages per second. paho decides both inside its own loop (it answers
PUBREC as soon as a QoS 2 message arrives) and reaching around it meant relying on its private
functions. Here the packets come from :mod:`gateway.mqtt.wire` (a tested codec without I/O)
and this module only owns the connection: an :class:`asyncio.Protocol` over TCP or TLS, the
session's state, keep-alive, reconnection and flow control.

Use::

    options = LinkOptions(host="broker", port=1883, client_id="gw-1", subscriptions=(Subscription("a/#", 1),))
    async with MqttLink(options, events) as link:       # connects, and reconnects until the block ends
        async for batch in link.batches(5000):          # lists of Incoming, oldest first
            ...store the points...
            link.ack([(m.generation, m.mid, m.qos) for m in batch])   # only once stored

Receiving
    Every connection re-subscribes (``options.subscriptions``), so a consumer is never silent
    after a broker restart, even if the broker lost its sessions. :meth:`MqttLink.batches`
    yields what arrived; :meth:`MqttLink.ack` acknowledges (generation, mid, qos) triples: QoS 1
    gets its PUBACK, QoS 2 its PUBREC (then the broker's PUBREL is answered with PUBCOMP), all
    of a batch in one write, and only for the connection *generation* the messages came from —
    an acknowledgement meant for a connection that has dropped is not sent, and the broker
    redelivers those messages on the next one. A QoS 2 PUBLISH repeated while its PUBREC is
    out (the broker did not see it yet) is answered with PUBREC again and not delivered twice;
    one redelivered on a *new* connection before it was acknowledged on the old one is delivered
    again (at-least-once: stores overwrite identical points). QoS 0 messages beyond
    ``max_buffered`` held are dropped and counted (``events.dropped``); for QoS 1/2 the link
    stops reading the socket instead until :meth:`MqttLink.take` makes room.

Publishing (for sinks)
    ``await link.publish(topic, payload, qos=0|1|2, retain=False, properties=None)`` returns once
    the broker has the message: QoS 0 when it is written to the socket, QoS 1 at its PUBACK,
    QoS 2 at its PUBCOMP. While the broker is unreachable the message waits (wrap the call in
    ``asyncio.timeout`` to bound that); a connection that drops with messages in flight resends
    them after reconnecting (with DUP on a resumed session, as MQTT requires) and their calls
    return when the broker acknowledges them. At most the broker's *receive maximum* (and
    ``options.max_inflight``) QoS 1/2 messages are unacknowledged at once; the rest queue.
    ``await link.publish_many([(topic, payload), ...], qos=1)`` does the same for many messages
    with one future and one write per window's worth: use it for batches (it is several times
    faster than one ``publish`` call per message, docs/PERFORMANCE.md). Cancelling a call
    withdraws its messages that were not sent yet; those in flight complete within the session.
    ``link.submit_many(...)`` queues the same way and returns the future ``publish_many`` awaits,
    for a caller that must stop waiting without giving the messages up (the MQTT sink: a write
    that failed because the connection dropped, retried with the same batch, waits on it again
    instead of publishing the batch twice).
    Errors: :class:`PublishRefused` (``.reason_code``, ``.reason``; ``.refusals``: the position
    of each refused message among those given, with its reason code) when the broker refuses a
    message (MQTT 5 reason code ≥ 0x80 in PUBACK/PUBREC) or when the message breaks a limit the
    broker announced (maximum QoS, retain not available, maximum packet size);
    :class:`LinkClosed` when the link is closed before the broker acknowledged the message (it may
    or may not have reached the broker); ``ValueError`` for a topic with wildcards, a QoS other
    than 0/1/2, or properties with MQTT 3.1.1. ``properties`` is a :class:`~gateway.mqtt.wire.Properties`
    dict (MQTT 5): ``message_expiry_interval``, ``content_type``, ``payload_format_indicator``,
    ``user_property`` (a list of (name, value) pairs), ``response_topic``, ``correlation_data``.
    The will message (``options.will``, a :class:`~gateway.mqtt.wire.Will`) is set in every
    CONNECT; a clean :meth:`MqttLink.close` does not trigger it, a lost connection does. Where each
    connection needs a will of its own (a Sparkplug B edge node's NDEATH carries the number of its
    connection, a host's STATE the time of it), ``options.will`` is a function called right before
    each CONNECT instead.
    With ``options.resend_on_reconnect=False``, the publishes the broker had not acknowledged when
    a connection ends fail with :class:`ConnectionLost` instead of going out again on the next
    connection (a Sparkplug B edge node's messages are numbered per connection: after a reconnect
    it is born again and sends its data anew). A publish made while no connection is up waits
    for the next one either way.
    With ``options.give_up_after_drops=N`` (the MQTT sink uses 3), a message that was the oldest
    unacknowledged one each of N times the broker closed the connection within seconds of
    accepting it fails with :class:`PublishRefused` (0x80) instead of being sent again forever:
    some brokers refuse a message by disconnecting (MQTT 3.1.1 allows nothing else, and
    Mosquitto 2.0 does so for an ACL-denied topic even with MQTT 5), and a client that resends it
    after every reconnect is thrown off forever.

Keep-alive: a PINGREQ goes out when nothing was sent or received for ``keepalive`` seconds; when
no packet at all came from the broker for 1.5 times the keepalive (and a PINGREQ has been out for half
a keepalive), the connection is taken as frozen (a NAT or firewall that dropped it silently),
closed, logged once with the broker's address and reopened. While the link itself has stopped
reading (back-pressure) the broker's silence proves nothing and is not held against it.

Tasks: :meth:`MqttLink.__aenter__` starts one supervisor task in an :class:`asyncio.TaskGroup`;
it connects, watches the connection (keep-alive) and reconnects with capped exponential
backoff and jitter. Leaving the ``async with`` block disconnects cleanly (queued
acknowledgements are sent first; the session stays on the broker) and awaits the task.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import socket
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Final, NamedTuple, Protocol, Self

from gateway.errors import GatewayError, SourceError
from gateway.mqtt import wire
from gateway.mqtt.wire import (
    MQTT_5,
    MQTT_311,
    Ack,
    Auth,
    ConnAck,
    Disconnect,
    Properties,
    ProtocolError,
    Publish,
    SubAck,
    Subscription,
    Will,
)

__all__ = [
    "ConnectionLost",
    "Incoming",
    "LinkClosed",
    "LinkEvents",
    "LinkOptions",
    "MqttLink",
    "PublishError",
    "PublishRefused",
    "Subscription",
    "TlsFiles",
    "Will",
    "connect_error_message",
    "tls_context",
]

log = logging.getLogger("gateway.mqtt")

#: A connection shorter than this does not reset the reconnect backoff (no storm if a broker drops us at once).
_STABLE_SECONDS: Final = 10.0
#: A connection the broker closes sooner than this after accepting it counts against the oldest unacknowledged message.
_BLAME_SECONDS: Final = 5.0
#: Connection generations are unique in the process, so an old acknowledgement never reaches a new connection.
_GENERATIONS: Final = itertools.count(1)
_new = tuple.__new__


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
    def dropped(self, count: int) -> None: ...


class _LogEvents:
    """Events of a link whose owner passed none: log lines only."""

    def connected(self, session_present: bool, reconnect: bool) -> None:
        log.info(
            "MQTT %s (%s)",
            "reconnected" if reconnect else "connected",
            "session resumed" if session_present else "new session",
        )

    def connect_failed(self, message: str, unauthorized: bool) -> None:
        log.warning("%s; retrying with backoff", message)

    def disconnected(self, message: str) -> None:
        log.warning("%s; reconnecting", message)

    def subscribe_failed(self, message: str) -> None:
        log.error("%s", message)

    def subscribed(self, filters: list[str]) -> None:
        log.info("subscribed to %s", ", ".join(repr(f) for f in filters))

    def dropped(self, count: int) -> None:
        log.warning("%d QoS 0 messages dropped (the consumer is slower than the broker)", count)


class PublishError(GatewayError):
    """A message the broker did not take."""


class PublishRefused(PublishError):
    """The broker refused a message (or it breaks a limit the broker announced)."""

    def __init__(
        self, message: str, reason_code: int, *, refused: int = 1, refusals: Sequence[tuple[int, int]] = ()
    ) -> None:
        super().__init__(message)
        self.reason_code = reason_code
        self.reason = wire.REASONS.get(reason_code, "Unknown reason code")
        self.refused = refused
        #: (position in the messages handed to ``publish_many``, reason code) of each refused message.
        self.refusals: tuple[tuple[int, int], ...] = tuple(refusals) or ((0, reason_code),)


class LinkClosed(PublishError):
    """The link closed before the broker acknowledged the message."""


class ConnectionLost(PublishError):
    """The connection ended before the broker acknowledged the message (``resend_on_reconnect=False``)."""


class TlsFiles(Protocol):
    """The TLS settings of ``mqtts://`` as a component's config gives them (see :func:`tls_context`)."""

    @property
    def ca_file(self) -> Path | None: ...
    @property
    def cert_file(self) -> Path | None: ...
    @property
    def key_file(self) -> Path | None: ...
    @property
    def key_password(self) -> _Secret | None: ...
    @property
    def insecure(self) -> bool: ...


class _Secret(Protocol):
    def get_secret_value(self) -> str: ...


@dataclass(frozen=True, slots=True)
class LinkOptions:
    """Everything the link needs to connect; each component builds it from its own config."""

    host: str
    port: int
    client_id: str
    protocol: str = "5"  # "5" or "3.1.1"
    ssl: ssl.SSLContext | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # never in a repr (tracebacks, debug logs)
    keepalive: float = 30.0
    clean_start: bool = False
    session_expiry: int = 7 * 86400  # MQTT 5; 3.1.1 keeps a session whenever clean_start is false
    receive_maximum: int = 65535  # MQTT 5: unacknowledged QoS 1/2 messages the broker may send us
    maximum_packet_size: int | None = None  # MQTT 5: larger packets are not sent to us (None: no limit)
    max_inflight: int = 65535  # our own bound on unacknowledged publishes (the broker's may be lower)
    reconnect_min: float = 1.0
    reconnect_max: float = 60.0
    connect_timeout: float = 10.0
    max_buffered: int = 200_000
    subscriptions: tuple[Subscription, ...] = ()
    #: filters a resumed session may still hold from an earlier configuration: unsubscribed when the
    #: broker says the session is present (a persistent session keeps every subscription it ever
    #: had; a message matching an old and a new filter would otherwise arrive twice)
    stale_filters: tuple[str, ...] = ()
    #: the will of every CONNECT, or a function giving the will of each CONNECT (called right before it)
    will: Will | Callable[[], Will] | None = None
    #: False: publishes unacknowledged when a connection ends fail (ConnectionLost), not sent again
    resend_on_reconnect: bool = True
    #: >0: a message that was the next to be acknowledged each of this many times the broker closed
    #: the connection soon after it was sent is given up as refused (PublishRefused, 0x80) instead of
    #: being sent again forever (0: never; see the module docstring)
    give_up_after_drops: int = 0

    @property
    def version(self) -> int:
        return MQTT_5 if self.protocol == "5" else MQTT_311

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def tls_context(tls: TlsFiles | None) -> ssl.SSLContext:
    """The SSL context of ``mqtts://``: system CAs or ``ca_file``, an optional client certificate."""
    try:
        context = ssl.create_default_context(cafile=str(tls.ca_file) if tls and tls.ca_file else None)
        if tls is not None and tls.cert_file is not None:
            context.load_cert_chain(
                str(tls.cert_file),
                str(tls.key_file) if tls.key_file else None,
                tls.key_password.get_secret_value() if tls.key_password else None,
            )
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        raise SourceError(f"TLS files cannot be used (tls.ca_file, cert_file, key_file): {exc}") from None
    if tls is not None and tls.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


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
    if isinstance(exc, ProtocolError):
        return f"{exc} ({where})"
    if isinstance(exc, _ClosedBeforeConnack):
        return str(exc)
    if isinstance(exc, OSError):
        return f"cannot connect to the {where}: {exc.strerror or exc}"
    return f"cannot connect to the {where}: {exc}"


class _ClosedBeforeConnack(ConnectionError):
    """The connection ended before CONNACK; the message says why, with the broker's address."""


class _Refused(Exception):
    def __init__(self, connack: ConnAck) -> None:
        super().__init__(connack.reason)
        self.connack = connack


# --- one TCP/TLS connection --------------------------------------------------------------------------


class _Connection(asyncio.BufferedProtocol):
    """One connection: bytes in → packets to the link; bytes out, coalesced per loop iteration.

    A buffered protocol: the transport reads into one buffer kept for the connection's life. A
    plain ``asyncio.Protocol`` gets a new bytes object of the transport's 256 KiB read size for
    every read, and for the few hundred bytes a read brings under a steady stream, allocating
    and shrinking it cost more than handling them (py-spy: over a quarter of the gateway's time
    at 250 msg/s)."""

    #: bytes one read may bring: large, so that a backlog drains in few reads
    READ_SIZE = 256 * 1024

    def __init__(self, link: MqttLink, generation: int) -> None:
        self.link = link
        self.loop = link._loop
        self.generation = generation
        self.reader = wire.Reader(link.options.version)
        self.transport: asyncio.Transport | None = None
        self.connack: asyncio.Future[ConnAck] = self.loop.create_future()
        self.lost: asyncio.Future[str] = self.loop.create_future()
        self.accepted = False
        self.accepted_at = 0.0
        self.dropped = False  # closed by the broker or the network, not by us
        self.reason: str | None = None  # why we closed it, or why the broker did
        self.last_in = self.last_out = self.loop.time()
        self.ping_sent = 0.0
        self.keepalive = link.options.keepalive
        self.reading_paused = False
        self.writing_paused = False
        self._out: list[bytes] = []
        self._flush_scheduled = False
        self._read_buffer = memoryview(bytearray(self.READ_SIZE))

    # asyncio.BufferedProtocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._read_buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(bytes(self._read_buffer[:nbytes]))  # the packets keep slices of it

    def data_received(self, data: bytes) -> None:
        self.last_in = self.loop.time()
        try:
            packets = self.reader.feed(data)
            if packets:
                self.link._on_packets(self, packets)
        except ProtocolError as exc:
            self.fail(f"{exc}; closing the connection to the broker at {self.link.options.address}")
        except Exception as exc:  # a bug must cost the connection, never the event loop
            log.exception("MQTT link: unexpected error while handling packets")
            self.fail(f"internal error while reading from the broker at {self.link.options.address}: {exc!r}")

    def eof_received(self) -> bool | None:
        return None  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        address = self.link.options.address
        if self.reason is None:
            if not self.accepted:
                self.reason = f"the broker at {address} closed the connection before accepting it"
            else:
                self.reason = f"connection to the broker at {address} lost" + (f" ({exc})" if exc else "")
                self.dropped = True
        if not self.connack.done():
            self.connack.set_exception(_ClosedBeforeConnack(self.reason))
            self.connack.exception()  # retrieved: nobody may be waiting any more
        if not self.lost.done():
            self.lost.set_result(self.reason)
        self.transport = None
        self._out.clear()
        self.link._on_lost(self)

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        self.link._pump()

    # writing

    def write(self, data: bytes) -> None:
        """Write now (acknowledgements, pings)."""
        transport = self.transport
        if transport is not None and data:
            if self._out:
                self.flush()
            transport.write(data)
            self.last_out = self.loop.time()

    def queue(self, data: bytes) -> None:
        """Write at the end of this loop iteration, with whatever else is queued (publishes)."""
        self._out.append(data)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self.flush)

    def flush(self) -> None:
        self._flush_scheduled = False
        out = self._out
        if out and self.transport is not None:
            self._out = []
            self.transport.write(out[0] if len(out) == 1 else b"".join(out))
            self.last_out = self.loop.time()

    def fail(self, reason: str) -> None:
        """Close at once (protocol error, frozen connection); ``reason`` is what gets logged."""
        if self.reason is None:
            self.reason = reason
        if self.transport is not None:
            self.transport.abort()

    @property
    def open(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()


# --- outgoing messages ---------------------------------------------------------------------------------


class _Group:
    """The callers waiting for a set of publishes: one future for a whole publish_many."""

    __slots__ = ("first_code", "future", "reason", "refusals", "remaining", "total")

    def __init__(self, future: asyncio.Future[None], remaining: int) -> None:
        self.future = future
        self.remaining = remaining
        self.total = remaining
        self.refusals: list[tuple[int, int]] = []  # (index, reason code)
        self.first_code = 0
        self.reason = ""


class _Out:
    __slots__ = ("drops", "group", "index", "packet_id", "payload", "properties", "qos", "retain", "state", "topic")

    def __init__(
        self,
        topic: str,
        payload: bytes,
        qos: int,
        retain: bool,
        properties: Properties | None,
        group: _Group,
        index: int = 0,
    ) -> None:
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain
        self.properties = properties
        self.group = group
        self.index = index  # position in the messages of its publish_many
        self.packet_id = 0
        self.state = 0  # 0: PUBLISH sent; 1: PUBREC received, PUBREL sent (QoS 2)
        self.drops = 0  # connections the broker closed while this was the next to be acknowledged


# --- the link --------------------------------------------------------------------------------------------


class MqttLink:
    """One broker connection with its session, kept alive until the ``async with`` block ends."""

    def __init__(self, options: LinkOptions, events: LinkEvents | None = None) -> None:
        self.options = options
        self.events: LinkEvents = events if events is not None else _LogEvents()
        self.incoming: list[Incoming] = []
        self.generation = 0
        self.connected = False
        self.accepting = True
        self.dropped = 0
        #: QoS 1/2 messages delivered on the current connection and not acknowledged yet
        self.unacked = 0
        self.resent = 0  # PUBLISH and PUBREL packets sent again after a reconnect
        self.session_present = False
        self.connack: ConnAck | None = None
        self._loop = asyncio.get_running_loop()
        self._conn: _Connection | None = None
        self._ever_connected = False
        self._closing = False
        self._closed = asyncio.Event()
        self._wake = asyncio.Event()
        #: while batches() gathers a batch: the waiting count that ends it early (None: not gathering)
        self._gather_until: int | None = None
        self._reads_with_messages = 0  # (a steady stream brings several per batch)
        self._broker_window = 65535 if options.protocol == "5" else 0  # (see broker_window)
        self._error: BaseException | None = None
        self._task_group: asyncio.TaskGroup | None = None
        self._supervisor: asyncio.Task[None] | None = None
        # outgoing publishes (kept across connections: the session's state)
        self._backlog: deque[_Out] = deque()
        self._inflight: dict[int, _Out] = {}
        self._window = options.max_inflight
        self._next_id = 0
        self._subscribing: dict[int, tuple[Subscription, ...]] = {}
        # incoming QoS 2: delivered and not yet stored (packet id → generation), and PUBREC sent
        self._qos2_pending: dict[int, int] = {}
        self._qos2_received: set[int] = set()
        self._limits = _Limits()

    # --- lifetime -------------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self._task_group = asyncio.TaskGroup()
        await self._task_group.__aenter__()
        self._supervisor = self._task_group.create_task(self._supervise(), name=f"mqtt-link:{self.options.client_id}")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            await self.close()
        finally:
            if self._supervisor is not None and not self._supervisor.done():
                self._supervisor.cancel()
            assert self._task_group is not None
            # The block's own exception propagates as it is (not wrapped in an ExceptionGroup);
            # the group raises only if the supervisor itself failed.
            await self._task_group.__aexit__(None, None, None)

    async def close(self, timeout: float = 5.0) -> None:
        """Disconnect cleanly: queued acknowledgements go out, then DISCONNECT (the session stays)."""
        self.accepting = False
        if self._closing:
            return
        self._closing = True
        self._closed.set()
        self._wake.set()
        conn = self._conn
        if conn is not None and conn.open and conn.transport is not None:
            conn.reason = "closed by the gateway"
            conn.flush()
            conn.transport.write(wire.encode_disconnect(version=self.options.version))
            # The broker closes the connection once it has read DISCONNECT, so it has read the
            # acknowledgements before it too. Closing first instead would race a new connection
            # with the same client id (a reload restarting the connector): the broker takes the
            # session over and drops what it had not read yet of the old socket, and redelivers
            # those messages although they were stored (hundreds at 1,000 msg/s, measured).
            done, _ = await asyncio.wait({conn.lost}, timeout=timeout)
            if not done and conn.transport is not None:
                conn.transport.abort()
        if self._supervisor is not None and not self._supervisor.done():
            self._supervisor.cancel()
        self._fail_publishes(LinkClosed("the MQTT link was closed before the broker acknowledged the message"))

    @property
    def closing(self) -> bool:
        return self._closing

    async def _supervise(self) -> None:
        """Connect; watch the connection; reconnect with backoff — until the link closes."""
        options = self.options
        delay = options.reconnect_min
        try:
            while not self._closing:
                try:
                    conn = await self._open()
                except _Refused as refused:
                    code = refused.connack.reason_code
                    self.events.connect_failed(
                        f"the broker refused the connection: {refused.connack.reason} (broker at {options.address})",
                        code in (0x86, 0x87),
                    )
                except (OSError, TimeoutError, ProtocolError) as exc:
                    if self._closing:
                        break
                    self.events.connect_failed(connect_error_message(exc, options.host, options.port), False)
                else:
                    started = self._loop.time()
                    reason = await self._watch(conn)
                    if self._closing:
                        break
                    self.events.disconnected(reason)
                    if self._loop.time() - started >= _STABLE_SECONDS:
                        delay = options.reconnect_min
                if self._closing:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closed.wait(), delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, options.reconnect_max)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self._error = exc
            self._wake.set()
            raise
        finally:
            current = self._conn
            if current is not None and current.transport is not None:
                current.transport.abort()

    async def _open(self) -> _Connection:
        """TCP (and TLS), CONNECT, CONNACK; the connection is live when this returns."""
        options = self.options
        conn = _Connection(self, next(_GENERATIONS))
        try:
            async with asyncio.timeout(options.connect_timeout):
                await self._loop.create_connection(
                    lambda: conn,
                    options.host,
                    options.port,
                    ssl=options.ssl,
                    server_hostname=options.host if options.ssl is not None else None,
                )
                conn.write(self._connect_packet())
                connack = await asyncio.shield(conn.connack)
        except BaseException:
            if conn.transport is not None:
                conn.transport.abort()
            raise
        if connack.reason_code >= 0x80:
            conn.reason = "refused"
            if conn.transport is not None:
                conn.transport.abort()
            raise _Refused(connack)
        return conn

    def _connect_packet(self) -> bytes:
        options = self.options
        properties: Properties | None = None
        if options.version == MQTT_5:
            properties = Properties(session_expiry_interval=options.session_expiry)
            if options.receive_maximum != 65535:
                properties["receive_maximum"] = options.receive_maximum
            if options.maximum_packet_size is not None:
                properties["maximum_packet_size"] = options.maximum_packet_size
        username = options.username
        password = options.password.encode() if options.password is not None else None
        will = options.will() if callable(options.will) else options.will
        if options.version == MQTT_311 and username is None:
            password = None  # 3.1.1 forbids a password without a user name
        return wire.encode_connect(
            options.client_id,
            version=options.version,
            clean_start=options.clean_start,
            keepalive=max(0, min(65535, round(options.keepalive))),
            username=username,
            password=password,
            will=will,
            properties=properties,
        )

    async def _watch(self, conn: _Connection) -> str:
        """Keep-alive while ``conn`` lives: PINGREQ when idle, frozen-connection detection; returns why it ended."""
        loop = self._loop
        while not conn.lost.done():
            keepalive = conn.keepalive
            if keepalive <= 0:
                await conn.lost
                break
            now = loop.time()
            if conn.reading_paused:
                conn.last_in = now  # not reading: the broker's silence proves nothing
            silent = now - conn.last_in
            ping_out = conn.ping_sent > conn.last_in
            if ping_out and silent >= 1.5 * keepalive and now - conn.ping_sent >= 0.5 * keepalive:
                conn.fail(
                    f"no packet from the broker at {self.options.address} for {silent:.1f} s (1.5 times the "
                    f"keep-alive of {keepalive:g} s): the connection is frozen, closing it"
                )
                break
            if not ping_out and (silent >= keepalive or now - conn.last_out >= keepalive):
                conn.write(wire.PINGREQ)
                conn.ping_sent = now
                ping_out = True
            if ping_out:
                due = max(conn.last_in + 1.5 * keepalive, conn.ping_sent + 0.5 * keepalive)
            else:
                due = min(conn.last_in, conn.last_out) + keepalive
            await asyncio.wait({conn.lost}, timeout=max(0.01, min(due - now, keepalive / 4)))
        return await conn.lost

    # --- receiving --------------------------------------------------------------------------------------

    def _on_packets(self, conn: _Connection, packets: list[wire.Packet]) -> None:
        if conn is not self._conn:
            if conn.accepted:
                return  # a connection already replaced: nothing it says matters any more
            first = packets[0]
            if isinstance(first, ConnAck):
                self._on_connack(conn, first)
                packets = packets[1:]
            else:
                raise ProtocolError(f"the broker sent {type(first).__name__} before CONNACK")
            if conn is not self._conn:
                return
        incoming = self.incoming
        before = len(incoming)
        accepting = self.accepting
        limit = self.options.max_buffered
        generation = conn.generation
        now = time.time_ns()
        pubcomp: list[int] | None = None
        acknowledged = False
        for packet in packets:
            if type(packet) is Publish:
                qos = packet[2]
                if (qos == 2 or packet[5] is not None) and not self._check_publish(conn, packet):
                    continue
                if not accepting:
                    continue  # stopping: not acknowledged, so the broker keeps it for the next start
                if qos == 0 and len(incoming) >= limit:
                    self.dropped += 1
                    continue
                incoming.append(_new(Incoming, (packet[0], packet[1], qos, packet[3], now, generation)))
                if qos:
                    self.unacked += 1
            elif type(packet) is Ack:
                if packet[0] == wire.PUBREL:
                    # The broker released a QoS 2 message we acknowledged with PUBREC: complete it.
                    self._qos2_received.discard(packet[1])
                    if pubcomp is None:
                        pubcomp = []
                    pubcomp.append(packet[1])
                else:
                    self._on_publish_ack(conn, packet)
                    acknowledged = True
            else:
                self._on_control(conn, packet)
        if pubcomp:
            conn.write(wire.encode_acks(wire.PUBCOMP, pubcomp))
        if acknowledged and self._backlog:
            self._pump()  # once per read, for every place the acknowledgements freed in the window
        if self.dropped:
            self.events.dropped(self.dropped)
            self.dropped = 0
        if len(incoming) != before:
            self._reads_with_messages += 1
            gather_until = self._gather_until
            if gather_until is None or len(incoming) >= gather_until or self.unacked >= self._broker_window:
                self._wake.set()
            if len(incoming) >= limit and incoming[-1].qos and not conn.reading_paused and conn.transport:
                # QoS 1/2 beyond the bound (MQTT 3.1.1 with an unlimited broker window): stop reading.
                conn.reading_paused = True
                conn.transport.pause_reading()

    def _check_publish(self, conn: _Connection, packet: Publish) -> bool:
        """The rare cases of an incoming PUBLISH: properties, QoS 2. False: do not deliver it."""
        if packet.properties is not None and "topic_alias" in packet.properties:
            raise ProtocolError("the broker used a topic alias, which the gateway does not accept (its maximum is 0)")
        if packet.qos != 2:
            return True
        packet_id = packet.packet_id
        if packet_id in self._qos2_received:
            # PUBREC already sent (so it is stored): the broker did not get it; say it again, deliver nothing.
            conn.write(wire.encode_acks(wire.PUBREC, (packet_id,)))
            return False
        if self._qos2_pending.get(packet_id) == conn.generation:
            return False  # already delivered on this connection and not yet stored
        if self.accepting:
            self._qos2_pending[packet_id] = conn.generation
        return True

    def _on_connack(self, conn: _Connection, connack: ConnAck) -> None:
        if not conn.connack.done():
            conn.connack.set_result(connack)
        if connack.reason_code >= 0x80:
            return
        conn.accepted = True
        conn.accepted_at = self._loop.time()
        self._conn = conn
        self.connack = connack
        self.generation = conn.generation
        self.connected = True
        self.session_present = connack.session_present
        properties = connack.properties
        if "server_keep_alive" in properties:
            conn.keepalive = float(properties["server_keep_alive"])
        self._limits = _Limits.of(connack)
        self._window = max(1, min(self.options.max_inflight, properties.get("receive_maximum", 65535), 65534))
        self.unacked = 0  # what the previous connection delivered is redelivered, not acknowledged
        if self.options.protocol == "5":
            self._broker_window = int(properties.get("receive_maximum", 65535))
        if not connack.session_present:
            # A new session: the broker forgot the QoS 2 exchanges it had with us.
            self._qos2_received.clear()
            self._qos2_pending.clear()
        reconnect = self._ever_connected
        self._ever_connected = True
        if connack.session_present:
            self._unsubscribe_stale(conn)
        self._subscribe(conn)
        self._resend(conn, connack.session_present)
        self.events.connected(connack.session_present, reconnect)
        self._pump()

    def _on_control(self, conn: _Connection, packet: wire.Packet) -> None:
        if isinstance(packet, SubAck):
            self._on_suback(packet)
        elif isinstance(packet, Disconnect):
            reason = (
                f"the broker at {self.options.address} closed the connection: {wire.reason_name(packet.reason_code)}"
            )
            if packet.properties and "reason_string" in packet.properties:
                reason += f" ({packet.properties['reason_string']})"
            conn.fail(reason)
        elif isinstance(packet, Auth):
            raise ProtocolError(
                "the broker asked for enhanced authentication (AUTH), which the gateway does not support"
            )
        elif isinstance(packet, ConnAck):
            raise ProtocolError("the broker sent a second CONNACK on one connection")
        # PINGRESP: its arrival (last_in) is all that matters; UNSUBACK: unsubscribing stale
        # filters needs no answer (a filter the session did not hold is no error).

    def _unsubscribe_stale(self, conn: _Connection) -> None:
        current = {sub.filter for sub in self.options.subscriptions}
        stale = [f for f in self.options.stale_filters if f not in current]
        if stale:
            conn.write(wire.encode_unsubscribe(self._allocate_id(), stale, version=self.options.version))
            log.info(
                "client id %r: unsubscribed %s, left in its session at the broker by an earlier configuration",
                self.options.client_id,
                ", ".join(repr(f) for f in stale),
            )

    def _subscribe(self, conn: _Connection) -> None:
        subscriptions = self.options.subscriptions
        self._subscribing.clear()
        if not subscriptions:
            return
        packet_id = self._allocate_id()
        self._subscribing[packet_id] = subscriptions
        conn.write(wire.encode_subscribe(packet_id, subscriptions, version=self.options.version))

    def _on_suback(self, packet: SubAck) -> None:
        subscriptions = self._subscribing.pop(packet.packet_id, None)
        if subscriptions is None:
            return
        granted = []
        for sub, code in zip(subscriptions, packet.reason_codes, strict=False):
            if code >= 0x80:
                name = wire.reason_name(code) if self.options.version == MQTT_5 else "Failure (0x80)"
                self.events.subscribe_failed(f"the broker refused the subscription to {sub.filter!r}: {name}")
                continue
            granted.append(sub.filter)
            if code < sub.qos:
                self.events.subscribe_failed(f"the broker granted QoS {code} instead of {sub.qos} for {sub.filter!r}")
        self.events.subscribed(granted)

    def _on_lost(self, conn: _Connection) -> None:
        if conn is self._conn:
            self._conn = None
            self.connected = False
            self._subscribing.clear()
            if conn.dropped and self.options.give_up_after_drops and self.options.resend_on_reconnect:
                self._blame_oldest(conn)
            if not self.options.resend_on_reconnect and not self._closing:
                self._fail_publishes(
                    ConnectionLost(
                        f"the connection to the broker at {self.options.address} ended before it acknowledged "
                        "the message"
                    )
                )

    def _blame_oldest(self, conn: _Connection) -> None:
        """The broker closed the connection soon after it was made: count it against the oldest
        message it has not acknowledged, and give that message up once it was blamed often enough.

        A broker processes a connection's packets in order and some refuse a message by closing the
        connection rather than answering it (MQTT 3.1.1 allows nothing else; Mosquitto 2.0 does it
        for an ACL-denied topic even with MQTT 5): without this, the link would send that message
        again after every reconnect, and be thrown off again, forever.
        """
        if self._loop.time() - conn.accepted_at > _BLAME_SECONDS:
            return
        oldest = next((item for item in self._inflight.values() if item.state == 0), None)
        if oldest is None:
            return
        oldest.drops += 1
        limit = self.options.give_up_after_drops
        if oldest.drops >= limit:
            del self._inflight[oldest.packet_id]
            self._finish(
                oldest,
                0x80,
                f"the broker at {self.options.address} closed the connection each of the {limit} times the message "
                f"on {oldest.topic!r} was the next to be acknowledged: given up as refused (a broker that refuses "
                "by disconnecting, e.g. a topic its ACL denies)",
            )

    # --- handing over and acknowledging ----------------------------------------------------------------

    @property
    def broker_window(self) -> int:
        """How many unacknowledged QoS 1/2 messages the broker sends us before it waits for our
        acknowledgements, as far as it tells: MQTT 5 brokers announce their in-flight limit as the
        CONNACK's receive maximum (Mosquitto's ``max_inflight_messages``, EMQX's ``max_inflight``),
        and none announced means none (65,535). MQTT 3.1.1 says nothing: 0, unknown."""
        return self._broker_window

    async def batches(
        self, max_messages: int, *, linger: float = 0.0, linger_below: int = 0, quiet: float = 0.005
    ) -> AsyncIterator[list[Incoming]]:
        """Received messages in lists of at most ``max_messages``, oldest first.

        With fewer than ``linger_below`` waiting, gathers more for up to ``linger`` seconds, so
        that a steady stream of a thousand messages a second makes one batch per ``linger``
        instead of one per message or per read (every batch costs a disk sync and an
        acknowledgement packet downstream). Gathering ends early once ``linger_below`` messages
        wait, or once the broker's in-flight window is full (:attr:`broker_window`): it sends no
        more until we acknowledge, and waiting would only cost throughput. With MQTT 3.1.1 the
        window is unknown, and gathering ends when ``quiet`` seconds pass without a new message.

        The window, not the pauses, decides with MQTT 5 because a pause says little: Mosquitto
        (Nagle's algorithm on, by default) holds small messages until our side acknowledges the
        TCP segments it sent, so under a steady stream it goes quiet between reads as a broker
        with a full window does, and ending the batch on every such pause made a batch — a disk
        sync and an acknowledgement round — every few milliseconds.

        Once a stream is steady the link reads once per batch instead of at every arrival (see
        :meth:`_gather`).

        Ends once :attr:`accepting` is false (or the link closes) and everything received was
        handed over; raises SourceError if the link failed.
        """
        streaming = False
        while True:
            if not self.incoming:
                if self._error is not None:
                    raise SourceError(f"the MQTT connection stopped unexpectedly: {self._error!r}")
                if not self.accepting or self._closing:
                    return
                if not streaming:
                    self._wake.clear()
                    await self._wake.wait()
                if linger and self.accepting and self.broker_window:
                    streaming = await self._gather(linger, linger_below, read_at_end=streaming)
                else:
                    streaming = False
                    if linger and self.accepting:
                        await self._gather_while_coming(linger, linger_below, quiet)
                continue
            yield self.take(max_messages)

    async def _gather(self, linger: float, enough: int, *, read_at_end: bool = False) -> bool:
        """Wait up to ``linger`` seconds for ``enough`` messages or a full broker window; return
        whether a steady stream goes on (more than one read brought messages, the linger ran out).

        Woken once, by the reader when either is reached or by the timer; not per message.

        With ``read_at_end`` (a stream goes on) and room for ``enough`` more messages in the
        broker's window, the link does not read until the linger ends, then reads everything that
        arrived into this batch. A wake-up of the process costs more than handling the messages a
        read brings (50–190 µs of CPU each on the 2-core test machine, against about 2 µs per
        message decoded): under 1,000 msg/s from Mosquitto the gateway woke about three times per
        batch (two reads and the timer), now once. Nothing waits longer for it (a batch is still
        handed over ``linger`` after it began), but a message without a timestamp of its own is
        stamped when it is read, up to ``linger`` after it arrived, instead of at the next read.
        A sparse stream (one read per batch) is read as it arrives.
        """
        expired = False

        def expire() -> None:
            # A flag, not a comparison of clocks: asyncio may run a timer up to its clock
            # resolution early, and a loop that went on waiting then would wait for a message.
            nonlocal expired
            expired = True
            self._wake.set()

        timer = self._loop.call_later(linger, expire)
        conn = self._conn
        paused = read_at_end and self._broker_window - self.unacked >= enough and self._pause_reading(conn)
        reads = self._reads_with_messages
        self._gather_until = enough
        try:
            while (
                not expired
                and len(self.incoming) < enough
                and self.unacked < self._broker_window
                and self.accepting
                and not self._closing
                and self._error is None
            ):
                self._wake.clear()
                await self._wake.wait()
        finally:
            self._gather_until = None
            timer.cancel()
            if paused:
                self._resume_reading(conn)
        if not paused:
            return expired and self._reads_with_messages > reads
        # What arrived meanwhile belongs to this batch: the transport reads it on the loop's next
        # turn (a TLS transport hands it over on the one after), before this task goes on.
        for _ in range(3):
            await asyncio.sleep(0)
        return expired and bool(self.incoming)

    @staticmethod
    def _pause_reading(conn: _Connection | None) -> bool:
        """Stop reading ``conn`` for a while; false if it is closed or paused already (a full buffer)."""
        if conn is None or conn.transport is None or conn.reading_paused:
            return False
        conn.transport.pause_reading()
        return True

    @staticmethod
    def _resume_reading(conn: _Connection | None) -> None:
        if conn is not None and conn.transport is not None and not conn.reading_paused:
            conn.transport.resume_reading()

    async def _gather_while_coming(self, linger: float, enough: int, quiet: float) -> None:
        """MQTT 3.1.1: wait up to ``linger`` seconds for ``enough`` messages while they keep coming.

        Polled every ``quiet`` seconds rather than woken per message: the wake-ups would cost more
        than the batching saves."""
        loop = self._loop
        deadline = loop.time() + linger
        seen = len(self.incoming)
        while seen < enough and self.accepting and loop.time() < deadline:
            await asyncio.sleep(min(quiet, max(0.0, deadline - loop.time())))
            if len(self.incoming) == seen:
                break
            seen = len(self.incoming)

    def stop_receiving(self) -> None:
        """Deliver nothing more (what arrives is not acknowledged: the broker keeps it); ends :meth:`batches`."""
        self.accepting = False
        self._wake.set()

    def take(self, limit: int) -> list[Incoming]:
        """Hand over up to ``limit`` received messages (oldest first); reading resumes if it was paused."""
        incoming = self.incoming
        if len(incoming) <= limit:
            self.incoming = []
            taken = incoming
        else:
            taken = incoming[:limit]
            del incoming[:limit]
        conn = self._conn
        if (
            conn is not None
            and conn.reading_paused
            and len(self.incoming) < self.options.max_buffered // 2
            and conn.transport is not None
        ):
            conn.reading_paused = False
            conn.last_in = self._loop.time()
            conn.transport.resume_reading()
        return taken

    def ack(self, acks: Sequence[tuple[int, int, int]]) -> int:
        """Acknowledge (generation, mid, qos) triples of the current connection; returns how many were sent.

        QoS 1 → PUBACK, QoS 2 → PUBREC (the broker's PUBREL is then answered with PUBCOMP); QoS 0
        and other generations are skipped. One write for all of them.
        """
        conn = self._conn
        if conn is None or not self.connected:
            return 0
        generation = self.generation
        ones: list[int] = []
        twos: list[int] = []
        for gen, mid, qos in acks:
            if gen == generation:
                if qos == 1:
                    ones.append(mid)
                elif qos == 2:
                    twos.append(mid)
        if twos:
            pending = self._qos2_pending
            received = self._qos2_received
            for mid in twos:
                pending.pop(mid, None)
                received.add(mid)
            conn.write(wire.encode_acks(wire.PUBACK, ones) + wire.encode_acks(wire.PUBREC, twos))
        elif ones:
            conn.write(wire.encode_acks(wire.PUBACK, ones))
        sent = len(ones) + len(twos)
        self.unacked = max(0, self.unacked - sent)
        return sent

    # --- publishing ---------------------------------------------------------------------------------------

    async def publish(
        self,
        topic: str,
        payload: bytes,
        qos: int = 0,
        retain: bool = False,
        properties: Properties | None = None,
    ) -> None:
        """Publish one message; returns once the broker has it (see the module docstring)."""
        await self.publish_many(((topic, payload),), qos=qos, retain=retain, properties=properties)

    async def publish_many(
        self,
        messages: Sequence[tuple[str, bytes]],
        *,
        qos: int = 1,
        retain: bool = False,
        properties: Properties | None = None,
    ) -> None:
        """Publish (topic, payload) pairs in order; returns once the broker has all of them.

        Raises :class:`PublishRefused` if the broker refused any (``.refused`` says how many and
        ``.refusals`` which, with their reason codes; the others were taken) and
        :class:`LinkClosed` if the link closed first. Cancelling the call withdraws the messages
        not sent yet; those already sent complete within the session.
        """
        await self.submit_many(messages, qos=qos, retain=retain, properties=properties)

    def submit_many(
        self,
        messages: Sequence[tuple[str, bytes]],
        *,
        qos: int = 1,
        retain: bool = False,
        properties: Properties | None = None,
    ) -> asyncio.Future[None]:
        """Queue (topic, payload) pairs in order and return the future :meth:`publish_many` awaits.

        For a caller that must stop waiting without giving the messages up — a sink whose write
        failed because the connection dropped keeps them in flight and, when the same batch is
        written again, waits on this future instead of publishing it twice. The future's result
        and errors are those of :meth:`publish_many`; ``cancel()`` withdraws the messages not
        sent yet (those in flight complete within the session: MQTT does not let a client take
        back a PUBLISH it sent).
        """
        if qos not in (0, 1, 2):
            raise ValueError(f"QoS must be 0, 1 or 2, not {qos!r}")
        if properties and self.options.version != MQTT_5:
            raise ValueError("MQTT 5 properties cannot be sent with protocol 3.1.1")
        if self._closing:
            raise LinkClosed("the MQTT link is closed")
        future: asyncio.Future[None] = self._loop.create_future()
        if not messages:
            future.set_result(None)
            return future
        for topic, _ in messages:
            if not topic or "+" in topic or "#" in topic or "\x00" in topic:
                raise ValueError(f"{topic!r} cannot be published to: a topic name is not empty and has no + or #")
        group = _Group(future, len(messages))
        backlog = self._backlog
        for index, (topic, payload) in enumerate(messages):
            backlog.append(_Out(topic, payload, qos, retain, properties, group, index))
        future.add_done_callback(lambda done: self._withdraw(group) if done.cancelled() else None)
        self._pump()
        return future

    def _withdraw(self, group: _Group) -> None:
        """Drop the messages of a cancelled publish that are not sent yet (those in flight stay)."""
        if any(item.group is group for item in self._backlog):
            self._backlog = deque(item for item in self._backlog if item.group is not group)

    def _pump(self) -> None:
        """Send what the window allows from the backlog (called on publish, acknowledgement, connection)."""
        conn = self._conn
        backlog = self._backlog
        if conn is None or not self.connected or not backlog or conn.writing_paused:
            return
        inflight = self._inflight
        subscribing = self._subscribing
        window = self._window
        version = self.options.version
        v5 = version == MQTT_5
        limits = self._limits if self._limits.strict else None
        header = wire.publish_header
        next_id = self._next_id
        out: list[bytes] = []
        written: list[_Out] = []
        while backlog:
            item = backlog[0]
            qos = item.qos
            if qos and len(inflight) >= window:
                break
            backlog.popleft()
            if limits is not None:
                problem = limits.check(item, version)
                if problem is not None:
                    self._finish(item, *problem)
                    continue
            if qos:
                # The window leaves identifiers free (at most 65,534 in flight, one SUBSCRIBE).
                next_id = next_id % wire.MAX_PACKET_ID + 1
                while next_id in inflight or next_id in subscribing:
                    next_id = next_id % wire.MAX_PACKET_ID + 1
                item.packet_id = next_id
                inflight[next_id] = item
            else:
                written.append(item)
            payload = item.payload
            if item.properties is None:
                out.append(header(item.topic.encode(), len(payload), qos, next_id, retain=item.retain, v5=v5))
                out.append(payload)
            else:
                out.append(
                    wire.encode_publish(
                        item.topic,
                        payload,
                        qos=qos,
                        retain=item.retain,
                        packet_id=item.packet_id,
                        version=version,
                        properties=item.properties,
                    )
                )
        self._next_id = next_id
        if out:
            conn.queue(b"".join(out))
        for item in written:
            self._finish(item)

    def _resend(self, conn: _Connection, session_present: bool) -> None:
        """After reconnecting: publishes in flight go again (DUP on a resumed session), PUBRELs too."""
        if not self._inflight:
            return
        version = self.options.version
        out: list[bytes] = []
        for packet_id, item in list(self._inflight.items()):
            if item.state == 1:
                if session_present:
                    out.append(wire.encode_acks(wire.PUBREL, (packet_id,)))
                else:
                    # The broker had taken the message (PUBREC) before it lost the session.
                    del self._inflight[packet_id]
                    self._finish(item)
                continue
            out.append(
                wire.encode_publish(
                    item.topic,
                    item.payload,
                    qos=item.qos,
                    retain=item.retain,
                    dup=session_present,
                    packet_id=packet_id,
                    version=version,
                    properties=item.properties,
                )
            )
        if out:
            self.resent += len(out)
            conn.write(b"".join(out))

    def _on_publish_ack(self, conn: _Connection, packet: Ack) -> None:
        kind, packet_id, code, properties = packet
        inflight = self._inflight
        item = inflight.get(packet_id)
        if item is None:
            if kind == wire.PUBREC:
                # Not ours (any more): release it so the broker can forget it too.
                conn.write(wire.encode_acks(wire.PUBREL, (packet_id,), reason_code=0x92, version=self.options.version))
            return
        if (kind == wire.PUBACK and item.qos == 1) or (kind == wire.PUBCOMP and item.state == 1):
            del inflight[packet_id]
        elif kind == wire.PUBREC and item.qos == 2:
            if code < 0x80:
                item.state = 1  # the broker has it; PUBREL (again, if this PUBREC is repeated)
                conn.write(wire.encode_acks(wire.PUBREL, (packet_id,)))
                return
            del inflight[packet_id]
        else:
            raise ProtocolError(f"the broker sent {wire.PACKET_NAMES[kind]} for packet {packet_id} out of turn")
        if code < 0x80:
            self._finish(item)
        else:
            reason = wire.reason_name(code)
            if properties and "reason_string" in properties:
                reason += f": {properties['reason_string']}"
            self._finish(item, code, f"the broker refused the message on {item.topic!r}: {reason}")

    def _finish(self, item: _Out, code: int = 0, reason: str = "") -> None:
        group = item.group
        if code:
            if not group.refusals:
                group.first_code, group.reason = code, reason
            group.refusals.append((item.index, code))
        group.remaining -= 1
        if group.remaining == 0 and not group.future.done():
            refused = len(group.refusals)
            if refused:
                message = group.reason
                if group.total > 1:
                    message = f"the broker refused {refused} of the {group.total} messages; the first: {message}"
                group.future.set_exception(
                    PublishRefused(message, group.first_code, refused=refused, refusals=group.refusals)
                )
            else:
                group.future.set_result(None)

    def _fail_publishes(self, error: Exception) -> None:
        items = list(self._inflight.values()) + list(self._backlog)
        self._inflight.clear()
        self._backlog.clear()
        for item in items:
            future = item.group.future
            if not future.done():
                future.set_exception(error)
                future.exception()

    def _allocate_id(self) -> int:
        """A packet identifier not in use by a publish in flight or a pending SUBSCRIBE."""
        inflight = self._inflight
        subscribing = self._subscribing
        for _ in range(wire.MAX_PACKET_ID):
            self._next_id = self._next_id % wire.MAX_PACKET_ID + 1
            packet_id = self._next_id
            if packet_id not in inflight and packet_id not in subscribing:
                return packet_id
        raise PublishError("no free MQTT packet identifier: 65,535 messages are unacknowledged")  # pragma: no cover

    @property
    def in_flight(self) -> int:
        """Publishes sent and not yet acknowledged by the broker."""
        return len(self._inflight)

    @property
    def queued(self) -> int:
        """Publishes waiting for a connection or a free place in the window."""
        return len(self._backlog)


class _Limits:
    """What the broker announced in CONNACK about messages it accepts from us."""

    __slots__ = ("max_packet", "max_qos", "retain", "strict")

    def __init__(self, max_qos: int = 2, retain: bool = True, max_packet: int = wire.MAX_REMAINING + 5) -> None:
        self.max_qos = max_qos
        self.retain = retain
        self.max_packet = max_packet
        self.strict = max_qos < 2 or not retain or max_packet <= wire.MAX_REMAINING

    @classmethod
    def of(cls, connack: ConnAck) -> _Limits:
        properties = connack.properties
        return cls(
            properties.get("maximum_qos", 2),
            bool(properties.get("retain_available", 1)),
            properties.get("maximum_packet_size", wire.MAX_REMAINING + 5),
        )

    def check(self, item: _Out, version: int) -> tuple[int, str] | None:
        if item.qos > self.max_qos:
            return (
                0x9B,
                f"the broker accepts at most QoS {self.max_qos}; {item.topic!r} was published with QoS {item.qos}",
            )
        if item.retain and not self.retain:
            return 0x9A, f"the broker does not accept retained messages ({item.topic!r})"
        if self.max_packet < wire.MAX_REMAINING and len(item.payload) + len(item.topic) + 16 > self.max_packet:
            size = len(
                wire.encode_publish(
                    item.topic, item.payload, qos=item.qos, packet_id=1, version=version, properties=item.properties
                )
            )
            if size > self.max_packet:
                return 0x95, (
                    f"the message on {item.topic!r} is {size:,} bytes as a packet; the broker accepts at most "
                    f"{self.max_packet:,}"
                )
        return None
