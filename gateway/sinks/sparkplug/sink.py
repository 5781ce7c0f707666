"""The Sparkplug B sink: the gateway as an edge node, so Ignition (or any host application) sees its
machines. Points come from the durable buffer; a batch leaves it only once the broker has
acknowledged every DBIRTH and DDATA it needed (PUBACK, with ``qos: 1``).

What hosts see:

- one **edge node** (``group``/``edge_node``) whose NBIRTH carries ``bdSeq`` and
  ``Node Control/Rebirth``; its **devices** are the values of the ``device_tag`` tag (a point
  without it belongs to a device named after its measurement);
- per device a **DBIRTH** declaring every metric it has sent so far — name, alias, datatype,
  unit (``engUnit``, from the web page's field display config), last value — and a new DBIRTH
  whenever the device gains a metric (or one changes type), before that metric's data;
- one **DDATA** per point: aliases only, every metric stamped with the point's own time (not the
  time of publishing: data that waited in the buffer keeps its time), ``seq`` 0–255 wrapping,
  a ``Quality`` property (0 bad, 64 uncertain) where the point has a ``quality`` tag;
- metric names ``<measurement>/<other tag values…>/<field>`` (Ignition shows them as folders);
- the **NDEATH** as the MQTT will, with the connection's ``bdSeq``; a clean stop publishes it
  itself. bdSeq goes up by one at every connection and is kept in
  ``<data_dir>/sparkplug/<sink>.bdseq``, so a restarted gateway never reuses its last one.

Births go out after every (re)connection and on an NCMD ``Node Control/Rebirth`` = true, before
any data (one lock orders births and writes). With ``primary_host``, births and data wait until
that host's STATE says online (points stay in the buffer meanwhile), and it gets births again
when it comes back.

A connection that drops while messages are in flight fails the write (``SinkUnavailable``): the
link does not send them again on the next connection (``resend_on_reconnect=False``), because
their seq numbers belong to the old one; the route writes the batch again after the new births
(hosts may get a point twice — at least once, like every store of the gateway — never with a
wrong alias).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import ClassVar, Final

import orjson

from gateway.component import RuntimeContext, Sink, State
from gateway.errors import DecodeError, GatewayError, SinkRejected, SinkUnavailable
from gateway.mqtt.link import ConnectionLost, LinkClosed, MqttLink, PublishError, PublishRefused, Subscription, Will
from gateway.point import FieldValue, Point
from gateway.sinks.sparkplug.config import SparkplugSinkConfig
from gateway.sparkplug.edge import REBIRTH, EdgeNode, ndeath
from gateway.sparkplug.payload import parse
from gateway.sparkplug.topics import Kind, device_topic, node_topic, state_topic
from gateway.units import format_duration

__all__ = ["SparkplugSink"]

#: How long a write waits for the births of a connection before it gives the batch back to the route.
READY_WAIT: Final = 2.0
#: Characters a device id may not have (one MQTT topic level); each becomes "_".
_UNSAFE: Final = str.maketrans({"/": "_", "+": "_", "#": "_"})
_NS_PER_MS: Final = 1_000_000


class SparkplugSink(Sink):
    """``type: sparkplug`` under ``sinks:``: publishes points as a Sparkplug B edge node."""

    #: A network store: a durable buffer in front of it keeps collection going while it is down.
    needs_durable_buffer: ClassVar[bool] = True

    def __init__(self, config: SparkplugSinkConfig, context: RuntimeContext) -> None:
        super().__init__(config.name, "sparkplug", context)
        self.config = config
        self.client_id = config.client_id or f"{context.gateway_name}-{config.name}"
        self.edge = EdgeNode()
        self.ncmd_topic = node_topic(config.group, Kind.NCMD, config.edge_node)
        self.host_topic = state_topic(config.primary_host) if config.primary_host else None
        self.bdseq_path = context.data_dir / "sparkplug" / f"{config.name}.bdseq"
        #: the bdSeq of the current (or last) connection; the next one uses this plus one
        self.bdseq = _load_bdseq(self.bdseq_path)
        self._host_online = config.primary_host is None
        self._host_timestamp = -1
        self._born = asyncio.Event()
        self._lock = asyncio.Lock()
        self._link: MqttLink | None = None
        self._link_task: asyncio.Task[None] | None = None
        self._release = asyncio.Event()
        self._births_task: asyncio.Task[None] | None = None
        self._prefixes: dict[tuple[str, tuple[tuple[str, str], ...]], str] = {}
        self._dcmd_logged = False
        self._last_error_logged: tuple[str, float] = ("", 0.0)
        for name in ("births", "rebirth_requests", "ddata", "points_published", "reconnects"):
            self.status.counters.setdefault(name, 0)
        self.status.detail.update(
            broker=config.broker,
            client_id=self.client_id,
            group=config.group,
            edge_node=config.edge_node,
            bdSeq=None,
            devices=0,
            **({"primary_host": config.primary_host, "primary_host_online": False} if config.primary_host else {}),
        )

    # --- life cycle ----------------------------------------------------------------------------

    async def open(self) -> None:
        task = self._link_task
        if task is not None and not task.done():
            return
        config = self.config
        filters = [self.ncmd_topic, device_topic(config.group, Kind.DCMD, config.edge_node, "+")]
        if self.host_topic is not None:
            filters.append(self.host_topic)
        options = dataclasses.replace(
            config.link_options(self.client_id, persistent=False),  # Sparkplug: a clean session
            subscriptions=tuple(Subscription(f, 1) for f in filters),
            will=self._will,
            resend_on_reconnect=False,
        )
        self.status.set_state(State.CONNECTING)
        link = MqttLink(options, self)
        self._link = link
        self._release = asyncio.Event()
        self._link_task = asyncio.create_task(self._hold(link, self._release), name=f"sparkplug-sink:{self.name}")
        self.log.info(
            "publishing as Sparkplug B edge node %s/%s to %s (client id %r)",
            config.group,
            config.edge_node,
            config.broker,
            self.client_id,
        )

    async def close(self) -> None:
        link = self._link
        if link is not None and link.connected and not link.closing:
            # A clean stop: the broker will not send the will, so the edge node says it is going itself.
            topic = node_topic(self.config.group, Kind.NDEATH, self.config.edge_node)
            with contextlib.suppress(PublishError, TimeoutError):
                async with asyncio.timeout(5.0):
                    await link.publish(topic, ndeath(self.bdseq, _now_ms()), qos=1)
        if self._births_task is not None:
            self._births_task.cancel()
        task = self._link_task
        if task is not None:
            self._release.set()
            try:
                await asyncio.wait_for(task, 10.0)
            except (TimeoutError, asyncio.CancelledError):
                task.cancel()
            except Exception as exc:  # noqa: BLE001 - an unexpected end of the link, already reported
                self.log.debug("connection task ended with %r", exc)
        self._link = self._link_task = None
        self._born.clear()

    async def _hold(self, link: MqttLink, release: asyncio.Event) -> None:
        """Own the link (its task group) and read its commands from ``open`` until ``close``."""
        async with link:
            reader = asyncio.create_task(self._read(link), name=f"sparkplug-sink-commands:{self.name}")
            try:
                await release.wait()
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, GatewayError):
                    await reader

    # --- writing ---------------------------------------------------------------------------------

    async def write(self, points: Sequence[Point]) -> None:
        link = await self._ready()
        async with self._lock:
            if not self._born.is_set():
                raise SinkUnavailable(self._not_ready_reason())
            messages = self._encode(points)
            try:
                async with asyncio.timeout(self.config.timeout):
                    await link.publish_many(messages, qos=self.config.qos)
            except TimeoutError:
                # What was not sent is withdrawn: seq numbers were skipped and a DBIRTH may be among
                # them, so the edge node is born again before the batch is written again.
                self._start_births("a write was not acknowledged in time")
                raise SinkUnavailable(
                    f"the broker at {self.config.broker} did not acknowledge {len(messages)} messages within "
                    f"{format_duration(self.config.timeout)}; the points stay in the buffer"
                ) from None
            except (ConnectionLost, LinkClosed) as exc:
                raise SinkUnavailable(f"{exc}; the points stay in the buffer and go out after the births") from None
            except PublishRefused as exc:
                # Refused messages cannot succeed later (an ACL, a size limit): those points are dropped.
                raise SinkRejected(
                    f"the broker refused {exc.refused} of {len(messages)} Sparkplug messages: {exc}",
                    rejected=min(exc.refused, len(points)),
                ) from None
        self.status.count("ddata", len(points))
        self.status.count("points_published", len(points))
        self.status.detail["devices"] = len(self.edge.devices)

    async def _ready(self) -> MqttLink:
        link = self._link
        if link is None:
            raise SinkUnavailable("the Sparkplug B sink is not open")
        if not self._born.is_set():
            if link.connected and self._host_online and (self._births_task is None or self._births_task.done()):
                self._start_births("births not acknowledged yet")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._born.wait(), READY_WAIT)
        if not self._born.is_set():
            raise SinkUnavailable(self._not_ready_reason())
        return link

    def _not_ready_reason(self) -> str:
        link = self._link
        if link is None or not link.connected:
            why = self.status.last_error or "connecting"
            return f"not connected to the broker at {self.config.broker} ({why}); the points stay in the buffer"
        if not self._host_online:
            return (
                f"the primary host {self.config.primary_host!r} is offline (its STATE); the points stay in the "
                "buffer until it is back"
            )
        return "the births of this connection are not acknowledged yet; the points stay in the buffer"

    def _encode(self, points: Sequence[Point]) -> list[tuple[str, bytes]]:
        """DBIRTHs for the devices that gained metrics, then one DDATA per point (seq in that order)."""
        edge = self.edge
        config = self.config
        device_tag = config.device_tag
        field_unit = self.context.field_unit
        entries: list[tuple[str, dict[str, FieldValue], int, str | None]] = []
        reborn: dict[str, None] = {}
        for point in points:
            tags = point.tags
            measurement = point.measurement
            device = (tags.get(device_tag) or measurement).translate(_UNSAFE)
            prefix = self._prefix(measurement, tags)
            values = {prefix + name: value for name, value in point.fields.items()}
            cut = len(prefix)

            def unit(metric: str, measurement: str = measurement, cut: int = cut) -> str:
                return field_unit(measurement, metric[cut:])

            if edge.learn(device, values, unit):
                reborn[device] = None
            entries.append((device, values, point.time // _NS_PER_MS, tags.get("quality")))
        messages: list[tuple[str, bytes]] = []
        group, node = config.group, config.edge_node
        if reborn:
            for device, values, ts_ms, _ in entries:  # a birth carries the first value this batch has
                if device in reborn:
                    for name, value in values.items():
                        spec = edge.spec(device, name)
                        if spec.value is None:
                            spec.value, spec.timestamp = value, ts_ms
            now_ms = _now_ms()
            for device in reborn:
                messages.append((device_topic(group, Kind.DBIRTH, node, device), edge.dbirth(device, now_ms)))
            self.status.count("births", len(reborn))
            self.log.info("DBIRTH for %s: new metrics", ", ".join(repr(d) for d in reborn))
        topics: dict[str, str] = {}
        for device, values, ts_ms, quality in entries:
            topic = topics.get(device)
            if topic is None:
                topic = topics[device] = device_topic(group, Kind.DDATA, node, device)
            messages.append((topic, edge.ddata(device, values.items(), ts_ms, quality)))
        return messages

    def _prefix(self, measurement: str, tags: Mapping[str, str]) -> str:
        """``<measurement>/<tag values but the device's and quality>/`` for a point's metric names."""
        items = tuple(tags.items())
        key = (measurement, items)
        prefix = self._prefixes.get(key)
        if prefix is None:
            skip = (self.config.device_tag, "quality")
            parts = [measurement, *(value for name, value in sorted(items) if name not in skip)]
            prefix = "/".join(parts) + "/"
            if len(self._prefixes) < 100_000:
                self._prefixes[key] = prefix
        return prefix

    # --- births -----------------------------------------------------------------------------------

    def _start_births(self, reason: str) -> None:
        if self._births_task is not None and not self._births_task.done():
            self._births_task.cancel()  # a newer reason: the births start again from NBIRTH
        self._born.clear()
        self._births_task = asyncio.create_task(self._births(reason), name=f"sparkplug-births:{self.name}")

    async def _births(self, reason: str) -> None:
        link = self._link
        async with self._lock:
            if link is None or not link.connected or not self._host_online:
                return
            now_ms = _now_ms()
            config = self.config
            messages = [(node_topic(config.group, Kind.NBIRTH, config.edge_node), self.edge.nbirth(self.bdseq, now_ms))]
            for device in self.edge.devices:
                messages.append(
                    (
                        device_topic(config.group, Kind.DBIRTH, config.edge_node, device),
                        self.edge.dbirth(device, now_ms),
                    )
                )
            try:
                async with asyncio.timeout(config.timeout):
                    await link.publish_many(messages, qos=config.qos)
            except (PublishError, TimeoutError) as exc:
                self.log.warning("births (%s) not acknowledged: %s; trying again with the next write", reason, exc)
                return
            self._born.set()
        self.status.count("births", len(messages))
        self.status.detail.update(bdSeq=self.bdseq, devices=len(self.edge.devices))
        self.log.info("NBIRTH (bdSeq %d) and %d DBIRTH published (%s)", self.bdseq, len(messages) - 1, reason)

    def _will(self) -> Will:
        """The will of the next CONNECT: the NDEATH with a new bdSeq, kept on disk first."""
        self.bdseq = (self.bdseq + 1) % 256
        try:
            _save_bdseq(self.bdseq_path, self.bdseq)
        except OSError as exc:
            self.log.warning(
                "bdSeq %d could not be kept in %s (%s): after a restart the gateway may reuse it",
                self.bdseq,
                self.bdseq_path,
                exc.strerror or exc,
            )
        topic = node_topic(self.config.group, Kind.NDEATH, self.config.edge_node)
        return Will(topic, ndeath(self.bdseq, _now_ms()), qos=1, retain=False)

    # --- commands and the primary host's STATE -------------------------------------------------------

    async def _read(self, link: MqttLink) -> None:
        async for batch in link.batches(100):
            acks = []
            for message in batch:
                if message.qos:
                    acks.append((message.generation, message.mid, message.qos))
                if message.topic is not None:
                    try:
                        self._command(message.topic, message.payload)
                    except GatewayError as exc:
                        self.log.warning("message on %r ignored: %s", message.topic, exc)
            link.ack(acks)

    def _command(self, topic: str, payload: bytes) -> None:
        if topic == self.ncmd_topic:
            for metric in parse(payload).metrics:
                rebirth = metric.name == REBIRTH or (not metric.name and metric.HasField("alias") and metric.alias == 1)
                if rebirth and metric.boolean_value:
                    self.status.count("rebirth_requests")
                    self.log.info("a host asked for a rebirth (NCMD %s)", REBIRTH)
                    self._start_births("NCMD rebirth")
        elif topic == self.host_topic:
            self._host_state(payload)
        elif not self._dcmd_logged:
            self._dcmd_logged = True
            self.log.warning(
                "commands to devices (DCMD on %r) are ignored: the gateway does not write to machines", topic
            )

    def _host_state(self, payload: bytes) -> None:
        try:
            state = orjson.loads(payload)
        except orjson.JSONDecodeError:
            raise DecodeError(f"the STATE of {self.config.primary_host!r} is not JSON: {payload[:100]!r}") from None
        if not isinstance(state, dict) or not isinstance(state.get("online"), bool):
            raise DecodeError(f"the STATE of {self.config.primary_host!r} has no online true/false: {payload[:100]!r}")
        timestamp = state.get("timestamp")
        if isinstance(timestamp, int):
            if timestamp < self._host_timestamp:
                return  # older than what we know (the specification: ignore it)
            self._host_timestamp = timestamp
        online = state["online"]
        self.status.detail["primary_host_online"] = online
        if online == self._host_online:
            return
        self._host_online = online
        if online:
            self.log.info(
                "primary host %r is online: births, then the points waiting in the buffer", self.config.primary_host
            )
            self._start_births("the primary host came online")
        else:
            self.log.warning("primary host %r is offline: points wait in the buffer", self.config.primary_host)
            self._born.clear()

    # --- LinkEvents (called on the loop by the link) ------------------------------------------

    def connected(self, session_present: bool, reconnect: bool) -> None:
        if reconnect:
            self.status.count("reconnects")
        self.status.set_state(State.RUNNING)
        self.log.info(
            "%s to %s (bdSeq %d)", "reconnected" if reconnect else "connected", self.config.broker, self.bdseq
        )
        self._last_error_logged = ("", 0.0)
        if self.host_topic is not None:
            self._host_online = False  # until its retained STATE says otherwise
            self.status.detail["primary_host_online"] = False
        else:
            self._start_births("connected")

    def connect_failed(self, message: str, unauthorized: bool) -> None:
        self._down(message + "; retrying with backoff", State.UNAUTHORIZED if unauthorized else State.RECONNECTING)

    def disconnected(self, message: str) -> None:
        self._down(message + "; reconnecting", State.RECONNECTING)

    def _down(self, message: str, state: State) -> None:
        self._born.clear()
        self.status.record_error(message)
        self.status.set_state(state)
        last, at = self._last_error_logged
        now = time.monotonic()
        if message != last or now - at >= 300.0:
            self.log.warning("%s", message)
            self._last_error_logged = (message, now)

    def subscribe_failed(self, message: str) -> None:
        self.status.record_error(message)
        self.log.error("%s (rebirth requests from hosts will not be heard)", message)

    def subscribed(self, filters: list[str]) -> None:
        self.log.debug("subscribed to %s", ", ".join(repr(f) for f in filters))

    def dropped(self, count: int) -> None:
        self.log.warning("%d commands dropped", count)


def _now_ms() -> int:
    return time.time_ns() // _NS_PER_MS


def _load_bdseq(path: Path) -> int:
    """The last bdSeq used (-1 when none was kept, so that the first connection uses 0)."""
    try:
        value = int(path.read_text().strip())
    except (OSError, ValueError):
        return -1
    return value % 256


def _save_bdseq(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    with open(temporary, "w") as file:
        file.write(f"{value}\n")
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
