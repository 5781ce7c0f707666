"""The Sparkplug B connector: a host application whose edge nodes' metrics become points.

Flow: one :class:`~gateway.mqtt.link.MqttLink` subscribed to ``spBv1.0/<group>/#`` (and to its own
STATE topic); :meth:`SparkplugSource.run` takes the messages in batches, hands each to the
:class:`~gateway.sparkplug.host.HostSession` (births, aliases, sequence numbers, deaths, held
data: the rules are in its docstring), emits the points with an ``on_stored`` callback, and
acknowledges QoS 1 messages once stored, in arrival order (as the MQTT connector does). The
rebirth requests the session asks for go out as NCMD ``Node Control/Rebirth`` = true.

STATE (Sparkplug 3.0): every connection registers the will ``{"online": false, "timestamp": T}``
on ``spBv1.0/STATE/<host_id>`` (retained, QoS 1) and then publishes ``{"online": true,
"timestamp": T}`` with the same T; a clean stop publishes ``online: false`` itself. If the
gateway ever reads its own STATE saying offline while it is connected (its will from an older
connection, delivered late), it says online again.

The session is clean (the specification's rule for host applications): what edge nodes published
while the gateway was away is not queued by the broker; the gap shows in their sequence numbers
and a rebirth brings every metric's current value.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import orjson

from connectors.sparkplug.config import SparkplugConfig
from gateway.component import Emit, RuntimeContext, Source, State
from gateway.errors import GatewayError, SourceError
from gateway.mqtt.link import Incoming, MqttLink, PublishError, Subscription, Will
from gateway.point import Point
from gateway.sparkplug import sparkplug_b_pb2 as pb
from gateway.sparkplug.edge import REBIRTH
from gateway.sparkplug.host import COUNTERS, HostSession
from gateway.sparkplug.payload import DataType
from gateway.sparkplug.topics import NAMESPACE, Kind, node_topic, state_topic

__all__ = ["SparkplugSource"]

#: Most messages decoded and emitted as one batch (one acknowledgement packet).
BATCH_MESSAGES = 5000
LINGER_BELOW = 500
LINGER_SECONDS = 0.01
#: Malformed messages logged one by one per minute; the rest are counted.
MALFORMED_LOG_LIMIT = 10
#: A repeated connection error is logged again after this long.
REPEAT_ERROR_LOG = 300.0
#: How long a rebirth request or a STATE message may wait for the connection before it is given up.
PUBLISH_TIMEOUT = 5.0


@dataclass(eq=False)
class _Pending:
    """One emitted batch waiting for storage: its acknowledgements."""

    acks: list[tuple[int, int, int]]
    messages: int
    points: int
    done: bool = False


def rebirth_request(now_ms: int) -> bytes:
    """The NCMD payload that asks an edge node for its births again."""
    payload = pb.Payload(timestamp=now_ms)
    payload.metrics.add(name=REBIRTH, timestamp=now_ms, datatype=DataType.Boolean, boolean_value=True)
    return payload.SerializeToString()


class SparkplugSource(Source):
    """``type: sparkplug``: a Sparkplug B host application on one broker."""

    def __init__(self, config: SparkplugConfig, context: RuntimeContext) -> None:
        super().__init__(config.name, "sparkplug", context)
        self.config = config
        self.client_id = config.client_id or f"{context.gateway_name}-{config.name}"
        self.host_id = config.host_id or self.client_id
        self.state_topic = state_topic(self.host_id)
        status = self.status
        for name in ("received", "stored", "malformed", "points_stored", "reconnects", *COUNTERS):
            status.counters.setdefault(name, 0)
        self.session = HostSession(
            config.measurement,
            self.log,
            counters=status.counters,
            max_held=config.max_held,
            rebirth_interval=config.rebirth_interval,
            units=context.units,
        )
        status.detail.update(
            broker=config.broker,
            client_id=self.client_id,
            host_id=self.host_id,
            group=config.group,
            subscribed=[],
            edge_nodes={},
        )
        self._link: MqttLink | None = None
        self._link_task: asyncio.Task[None] | None = None
        self._release = asyncio.Event()
        self._stopping = False
        self._ledger: deque[_Pending] = deque()
        self._state_timestamp = 0
        self._online_published = False
        self._malformed_logged = 0
        self._malformed_window = 0.0
        self._last_error_logged: tuple[str, float] = ("", 0.0)
        self._background: set[asyncio.Task[None]] = set()

    # --- Source ------------------------------------------------------------------------------

    async def run(self, emit: Emit) -> None:
        self._stopping = False
        link = await self._ensure_link()
        link.accepting = True
        if link.connected:
            self.status.set_state(State.RUNNING)
        if self._stopping:
            link.stop_receiving()
        async for items in link.batches(BATCH_MESSAGES, linger=LINGER_SECONDS, linger_below=LINGER_BELOW):
            await self._emit(emit, items)
            await self._send_rebirth_requests(link)
        if not self._stopping:
            raise SourceError("the MQTT connection closed unexpectedly")

    def request_stop(self) -> None:
        self._stopping = True
        if self._link is not None:
            self._link.stop_receiving()

    async def aclose(self) -> None:
        link = self._link
        if link is not None and link.connected and not link.closing:
            # A clean stop: the will is not sent by the broker, so the gateway says it is going itself.
            with contextlib.suppress(PublishError, TimeoutError):
                async with asyncio.timeout(PUBLISH_TIMEOUT):
                    await link.publish(self.state_topic, self._state(False), qos=1, retain=True)
        await self._close_link()
        for task in list(self._background):
            task.cancel()
        counters = self.status.counters
        self.log.info(
            "disconnected: %d messages received, %d points stored, %d malformed, %d rebirths requested",
            counters["received"],
            counters["points_stored"],
            counters["malformed"],
            counters["rebirths_requested"],
        )

    # --- batches --------------------------------------------------------------------------------

    async def _emit(self, emit: Emit, items: Sequence[Incoming]) -> None:
        points, entry = self._decode(items)
        self._ledger.append(entry)
        self.status.detail["edge_nodes"] = self.session.summary()
        if not points:
            self._stored(entry)
            return
        try:
            await emit(points, lambda: self._stored(entry))
        except BaseException:
            with contextlib.suppress(ValueError):
                self._ledger.remove(entry)
            self._flush_acks()
            raise

    def _decode(self, items: Sequence[Incoming]) -> tuple[list[Point], _Pending]:
        points: list[Point] = []
        acks: list[tuple[int, int, int]] = []
        handle = self.session.handle
        for topic, payload, qos, mid, received_ns, generation in items:
            if qos:
                acks.append((generation, mid, qos))
            if topic is None:
                self._malformed("(not valid UTF-8)", "the topic name is not valid UTF-8")
                continue
            if topic == self.state_topic:
                self._own_state(payload)
                continue
            try:
                points.extend(handle(topic, payload, received_ns))
            except GatewayError as exc:  # DecodeError: not a Sparkplug B topic or payload
                self._malformed(topic, str(exc))
            except Exception as exc:  # a decoding bug must cost one message, never the connector
                self.log.debug("decoding a message on %r failed unexpectedly", topic, exc_info=True)
                self._malformed(topic, f"could not be decoded ({type(exc).__name__}: {exc})")
        self.status.count("received", len(items))
        return points, _Pending(acks, len(items), len(points))

    def _malformed(self, topic: str, reason: str) -> None:
        self.status.count("malformed")
        now = time.monotonic()
        if now - self._malformed_window >= 60.0:
            self._malformed_window, self._malformed_logged = now, 0
        if self._malformed_logged < MALFORMED_LOG_LIMIT:
            self._malformed_logged += 1
            self.log.warning("malformed message on %r skipped: %s", topic[:200], reason)

    def _stored(self, entry: _Pending) -> None:
        entry.done = True
        self._flush_acks()

    def _flush_acks(self) -> None:
        """Acknowledge, in arrival order, every batch stored so far (up to the first one still pending)."""
        ledger = self._ledger
        while ledger and ledger[0].done:
            entry = ledger.popleft()
            if self._link is not None and entry.acks:
                self._link.ack(entry.acks)
            self.status.count("stored", entry.messages)
            self.status.count("points_stored", entry.points)

    async def _send_rebirth_requests(self, link: MqttLink) -> None:
        requests = self.session.rebirths
        if not requests:
            return
        now_ms = time.time_ns() // 1_000_000
        messages = [(node_topic(group, Kind.NCMD, node), rebirth_request(now_ms)) for group, node in requests]
        requests.clear()
        try:
            async with asyncio.timeout(PUBLISH_TIMEOUT):
                await link.publish_many(messages, qos=0)
        except (PublishError, TimeoutError) as exc:
            targets = ", ".join(topic for topic, _ in messages)
            self.log.warning("rebirth request(s) to %s not sent: %s", targets, exc or "timeout")

    # --- STATE ----------------------------------------------------------------------------------

    def _state(self, online: bool) -> bytes:
        return orjson.dumps({"online": online, "timestamp": self._state_timestamp})

    def _will(self) -> Will:
        """The will of the next CONNECT; the STATE birth after it carries the same timestamp."""
        self._state_timestamp = time.time_ns() // 1_000_000
        return Will(self.state_topic, self._state(False), qos=1, retain=True)

    def _publish_state(self) -> None:
        link = self._link
        if link is None or link.closing:
            return
        task = asyncio.create_task(self._say_online(link), name=f"sparkplug-state:{self.name}")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _say_online(self, link: MqttLink) -> None:
        try:
            async with asyncio.timeout(PUBLISH_TIMEOUT):
                await link.publish(self.state_topic, self._state(True), qos=1, retain=True)
        except (PublishError, TimeoutError) as exc:
            self.log.warning("STATE online not published on %s: %s", self.state_topic, exc or "timeout")
            return
        self._online_published = True
        self.log.info("published STATE online on %s", self.state_topic)

    def _own_state(self, payload: bytes) -> None:
        """Our own STATE as the broker holds it: offline while we are connected is an old will; say online again."""
        try:
            state = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return
        if isinstance(state, dict) and state.get("online") is False and self._online_published:
            link = self._link
            if link is not None and link.connected and not self._stopping:
                self.log.info("STATE on %s says offline (an older connection's will): online again", self.state_topic)
                self._publish_state()

    # --- the connection --------------------------------------------------------------------------

    async def _ensure_link(self) -> MqttLink:
        task = self._link_task
        if self._link is not None and task is not None and not task.done() and not self._link.closing:
            return self._link
        await self._close_link()
        config = self.config
        filters = [f"{NAMESPACE}/{config.group}/#"]
        if config.group != "+":
            filters.append(self.state_topic)  # '+' covers spBv1.0/STATE/<host_id> already
        options = dataclasses.replace(
            config.link_options(self.client_id, persistent=False),  # SourceError for unusable TLS files
            subscriptions=tuple(Subscription(f, config.qos) for f in filters),
            will=self._will,
        )
        self.status.set_state(State.CONNECTING)
        link = MqttLink(options, self)
        self._link = link
        self._release = asyncio.Event()
        self._link_task = asyncio.create_task(self._hold(link, self._release), name=f"sparkplug:{self.name}")
        self.log.info(
            "connecting to %s as client id %r, host id %r (group %s)",
            config.broker,
            self.client_id,
            self.host_id,
            config.group,
        )
        return link

    async def _hold(self, link: MqttLink, release: asyncio.Event) -> None:
        """Own the link (its task group) from ``run`` until ``aclose``."""
        try:
            async with link:
                await release.wait()
        finally:
            link.stop_receiving()

    async def _close_link(self) -> None:
        link, task = self._link, self._link_task
        if link is None or task is None:
            return
        self._release.set()
        try:
            await asyncio.wait_for(task, 10.0)
        except (TimeoutError, asyncio.CancelledError):
            task.cancel()
        except Exception as exc:  # noqa: BLE001 - an unexpected end of the link, already reported
            self.log.debug("connection task ended with %r", exc)

    # --- LinkEvents (called on the loop by the link) ------------------------------------------

    def connected(self, session_present: bool, reconnect: bool) -> None:
        status = self.status
        status.detail["subscribed"] = []
        if reconnect:
            status.count("reconnects")
        status.set_state(State.RUNNING)
        self.log.info("%s to %s", "reconnected" if reconnect else "connected", self.config.broker)
        self._last_error_logged = ("", 0.0)
        self._publish_state()

    def connect_failed(self, message: str, unauthorized: bool) -> None:
        self.status.record_error(message)
        self.status.set_state(State.UNAUTHORIZED if unauthorized else State.RECONNECTING)
        self._log_connection_error(message + "; retrying with backoff")

    def disconnected(self, message: str) -> None:
        self.status.detail["subscribed"] = []
        self.status.record_error(message)
        self.status.set_state(State.RECONNECTING)
        self._log_connection_error(message + "; reconnecting")

    def subscribe_failed(self, message: str) -> None:
        self.status.record_error(message)
        self.log.error("%s", message)

    def subscribed(self, filters: list[str]) -> None:
        self.status.detail["subscribed"] = filters
        if filters:
            self.log.info("subscribed to %s", ", ".join(repr(f) for f in filters))

    def dropped(self, count: int) -> None:
        self.status.count("dropped", count)

    def _log_connection_error(self, message: str) -> None:
        last, at = self._last_error_logged
        now = time.monotonic()
        if message != last or now - at >= REPEAT_ERROR_LOG:
            self.log.warning("%s", message)
            self._last_error_logged = (message, now)
        else:
            self.log.debug("%s", message)
