"""The MQTT sink: points from the durable buffer → JSON messages on a topic tree, acknowledged.

The runtime puts a disk queue in front of this sink (``needs_durable_buffer``): sources are
acknowledged once their points are on disk, and the route removes a batch from the disk only
when :meth:`MqttSink.write` returns — which it does only once the broker has acknowledged every
message of the batch (PUBACK for QoS 1, PUBCOMP for QoS 2). Nothing leaves the buffer early.

What a write does:

1. encode: each point (each field, with ``{field}`` in the template) becomes (topic, JSON)
   (:mod:`~gateway.sinks.mqtt.topic`, :mod:`~gateway.sinks.mqtt.payload`); a point lacking a
   tag the template needs is skipped, counted in ``points_missing_tag`` and logged once per
   measurement and tag;
2. publish the messages with the link's ``submit_many`` (one window's worth per write to the
   socket) and wait for the broker's acknowledgements;
3. the outcome, as the route expects it:

   - every message acknowledged: return (the batch leaves the buffer);
   - the broker refused some (MQTT 5 reason code ≥ 0x80: not authorized, topic name invalid,
     payload format invalid, implementation specific…, or a limit it announced): those points
     are dropped and counted — :class:`SinkRejected` for them only, after the rest was taken;
     *Quota exceeded* (0x97) and *Packet identifier in use* (0x91) are the broker asking to slow
     down, not a verdict on the message: :class:`SinkUnavailable`, published again;
   - the broker is down, or the connection dropped before everything was acknowledged:
     :class:`SinkUnavailable` (the route retries with backoff; the batch stays on disk);
   - the broker refused the credentials: :class:`SinkUnauthorized`.

**No second copy on a retry.** A write that fails because the connection dropped leaves its
messages with the link: those in flight are sent again by the link itself when it reconnects
(with DUP on the resumed session, as MQTT requires), those not sent yet wait in its queue. When
the route retries, it hands over the same batch (the oldest points in the buffer, perhaps with
newer ones after them): the sink recognises the messages it already handed to the link and
waits for their acknowledgements instead of publishing them again, and publishes only what
follows. So a broker restart costs no duplicate with QoS 2, and with QoS 1 only the ones MQTT
itself resends. After a gateway restart the link's memory is gone: a batch the broker had taken
just before the crash is published again (at least once, like every store of the gateway).

The connection: one :class:`~gateway.mqtt.link.MqttLink` per sink, held by a task of its own
from :meth:`open` to :meth:`close` (the link owns its supervisor task in its ``async with``),
with a fixed client id and, with QoS 1/2, a persistent session.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Sequence
from typing import ClassVar, Final

from gateway.component import RuntimeContext, Sink, State
from gateway.errors import GatewayError, SinkRejected, SinkUnauthorized, SinkUnavailable
from gateway.mqtt.link import MqttLink, PublishRefused
from gateway.mqtt.wire import REASONS, Properties
from gateway.point import Point
from gateway.route import first_of
from gateway.sinks.mqtt.config import MqttSinkConfig
from gateway.sinks.mqtt.payload import field_payload, point_payload
from gateway.sinks.mqtt.topic import MAX_TOPIC_BYTES, Missing, Topics, TopicTemplate
from gateway.units import format_duration

__all__ = ["MqttSink"]

#: Reason codes by which a broker asks the client to slow down: the message is published again.
TRANSIENT_CODES: Final = frozenset({0x91, 0x97})
#: A repeated connection error, or refusals with the same reason code, are logged again after this long.
REPEAT_LOG_SECONDS: Final = 300.0
#: A message that was next to be acknowledged each of this many times the broker closed the
#: connection right after accepting it is counted as refused (the link's give_up_after_drops).
GIVE_UP_AFTER_DROPS: Final = 3
#: Most topics remembered per sink (a point's topic is computed once per tag combination).
TOPIC_CACHE_SIZE: Final = 100_000

Message = tuple[str, bytes]


class _Attempt:
    """The messages of one batch handed to the link, across the route's retries of that batch."""

    __slots__ = ("messages", "outstanding", "reasons", "refused", "resend", "slowed")

    def __init__(self, messages: list[Message]) -> None:
        self.messages = messages
        #: (positions in ``messages``, the link's future for them) not settled yet
        self.outstanding: list[tuple[Sequence[int], asyncio.Future[None]]] = []
        self.refused: dict[int, int] = {}  # position → reason code, for good
        self.resend: list[int] = []  # positions to publish (again)
        self.slowed: set[int] = set()  # reason codes by which the broker asked to slow down
        self.reasons: dict[int, str] = {}  # reason code → the link's words for the first such refusal

    def settle(self) -> None:
        """Fold the finished futures into ``refused`` and ``resend``."""
        still: list[tuple[Sequence[int], asyncio.Future[None]]] = []
        for positions, future in self.outstanding:
            if not future.done():
                still.append((positions, future))
            elif future.cancelled():
                self.resend.extend(positions)
            elif isinstance(error := future.exception(), PublishRefused):
                self.reasons.setdefault(error.reason_code, str(error))
                for index, code in error.refusals:
                    if code in TRANSIENT_CODES:
                        self.resend.append(positions[index])
                        self.slowed.add(code)
                    else:
                        self.refused[positions[index]] = code
            elif error is not None:  # LinkClosed: the link was replaced before the broker answered
                self.resend.extend(positions)
        self.outstanding = still

    def withdraw(self) -> None:
        """Give up waiting: what the link has not sent yet is not sent (what is in flight completes)."""
        for _, future in self.outstanding:
            future.cancel()
        self.outstanding = []


class _Links:
    """The link's events (:class:`~gateway.mqtt.link.LinkEvents`): state, status and log lines."""

    def __init__(self, sink: MqttSink) -> None:
        self.sink = sink
        self.changed = asyncio.Event()  # a connection was made or failed
        self.lost = asyncio.Event()  # set while the link is not connected
        self.lost.set()
        self.error: str | None = None
        self.unauthorized = False
        self._last_logged: tuple[str, float] = ("", 0.0)

    def connected(self, session_present: bool, reconnect: bool) -> None:
        sink = self.sink
        status = sink.status
        status.detail.update(connected=True, session_present=session_present)
        if reconnect:
            status.count("reconnects")
        if status.lifecycle in (State.BACKOFF, State.UNAUTHORIZED):
            status.set_state(State.RUNNING)
        sink.log.info(
            "%s to %s as client id %r (%s)",
            "reconnected" if reconnect else "connected",
            sink.config.broker,
            sink.client_id,
            "session resumed" if session_present else "new session",
        )
        self.error, self.unauthorized = None, False
        self._last_logged = ("", 0.0)
        self.lost.clear()
        self.changed.set()

    def connect_failed(self, message: str, unauthorized: bool) -> None:
        self._down(message, State.UNAUTHORIZED if unauthorized else State.BACKOFF)
        self.unauthorized = unauthorized
        self._log(f"{message}; points wait in the buffer, retrying with backoff")

    def disconnected(self, message: str) -> None:
        self._down(message, State.BACKOFF)
        self._log(f"{message}; points wait in the buffer, reconnecting")

    def _down(self, message: str, state: State) -> None:
        status = self.sink.status
        status.detail["connected"] = False
        status.record_error(message)
        if status.lifecycle in (State.RUNNING, State.BACKOFF, State.UNAUTHORIZED):
            status.set_state(state)
        self.error = message
        self.lost.set()
        self.changed.set()

    def _log(self, message: str) -> None:
        last, at = self._last_logged
        now = time.monotonic()
        if message != last or now - at >= REPEAT_LOG_SECONDS:
            self.sink.log.warning("%s", message)
            self._last_logged = (message, now)

    # A publisher subscribes to nothing and receives nothing.
    def subscribe_failed(self, message: str) -> None:
        self.sink.log.error("%s", message)

    def subscribed(self, filters: list[str]) -> None:
        pass

    def dropped(self, count: int) -> None:
        pass


class MqttSink(Sink):
    """``type: mqtt`` under ``sinks:``: points → JSON messages on a topic tree (see the module docstring)."""

    #: The broker is behind a network: a durable buffer keeps collection going while it is down.
    needs_durable_buffer: ClassVar[bool] = True

    def __init__(self, config: MqttSinkConfig, context: RuntimeContext) -> None:
        super().__init__(config.name, "mqtt", context)
        self.config = config
        # "-sink-" keeps it apart from a connector of the same name (both default to the gateway's name).
        self.client_id = config.client_id or f"{context.gateway_name}-sink-{config.name}"
        self.template = TopicTemplate(config.topic)
        self._properties: Properties | None = (
            Properties(message_expiry_interval=int(config.message_expiry)) if config.message_expiry else None
        )
        self._series: dict[tuple[str, tuple[str | None, ...]], Topics | Missing] = {}
        self._missing_logged: set[tuple[str, str]] = set()
        self._too_long_logged: set[str] = set()
        self._refusals_logged: dict[int, float] = {}
        self._link: MqttLink | None = None
        self._holder: asyncio.Task[None] | None = None
        self._release = asyncio.Event()
        self._events = _Links(self)
        self._attempt: _Attempt | None = None
        status = self.status
        for counter in ("messages_published", "messages_refused", "points_missing_tag", "reconnects"):
            status.counters.setdefault(counter, 0)
        status.detail.update(
            broker=config.broker,
            client_id=self.client_id,
            protocol=config.protocol,
            topic=config.topic,
            qos=config.qos,
            retain=config.retain,
            persistent_session=config.persistent,
            connected=False,
        )

    # --- the connection ------------------------------------------------------------------------

    async def open(self) -> None:
        await self._start()

    async def close(self) -> None:
        self._attempt = None  # its points are still in the buffer
        await self._stop_link()
        self.status.detail["connected"] = False

    async def _start(self) -> MqttLink:
        """A new link, once it is connected (else SinkUnavailable/SinkUnauthorized, and no link)."""
        await self._stop_link()
        config = self.config
        try:
            options = config.link_options(
                self.client_id, persistent=config.persistent, max_inflight=config.max_inflight
            )
        except GatewayError as exc:  # TLS files that cannot be used
            raise SinkUnavailable(str(exc)) from None
        # A broker that refuses a message by closing the connection must not stop the sink forever.
        options = dataclasses.replace(options, give_up_after_drops=GIVE_UP_AFTER_DROPS)
        events = self._events = _Links(self)
        link = MqttLink(options, events)
        self._link = link
        self._release = release = asyncio.Event()
        self._holder = asyncio.create_task(self._hold(link, release), name=f"mqtt-sink:{self.name}")
        try:
            await first_of([events.changed.wait(), self._holder], config.connect_timeout + 1.0)
        except asyncio.CancelledError:
            await self._stop_link()  # cancelled while opening: the route will not call close
            raise
        if link.connected:
            return link
        message = events.error or f"no answer from the broker at {config.host}:{config.port}"
        await self._stop_link()
        if events.unauthorized:
            raise SinkUnauthorized(f"{message}; check username, password or client certificate of sink {self.name}")
        raise SinkUnavailable(message)

    async def _hold(self, link: MqttLink, release: asyncio.Event) -> None:
        """Own the link (its task group) from open to close."""
        async with link:
            await release.wait()

    async def _stop_link(self) -> None:
        link, holder = self._link, self._holder
        self._link = self._holder = None
        if link is None or holder is None:
            return
        self._release.set()
        try:
            await asyncio.wait_for(asyncio.shield(holder), link.options.connect_timeout + 5.0)
        except TimeoutError:
            holder.cancel()
        except Exception as exc:  # noqa: BLE001 - the link failed on its own; its end is all that matters here
            self.log.warning("the MQTT connection ended with an error: %r", exc)

    async def _connected_link(self) -> MqttLink:
        link, holder = self._link, self._holder
        if link is None or holder is None or holder.done():
            link = await self._start()  # never opened, or the link's task ended (a bug): start again
        if link.connected:
            return link
        events = self._events
        message = events.error or f"not connected to the broker at {self.config.host}:{self.config.port}"
        if events.unauthorized:
            raise SinkUnauthorized(message)
        raise SinkUnavailable(message)

    # --- writing ---------------------------------------------------------------------------------

    async def write(self, points: Sequence[Point]) -> None:
        """Publish a batch; return once the broker acknowledged every message (see the module docstring)."""
        messages, owners, skipped = self._encode(points)
        reasons = [f"{len(skipped)} could not be given a topic (points_missing_tag)"] if skipped else []
        if not messages:
            if self._attempt is not None:
                self._attempt.withdraw()
                self._attempt = None
        else:
            link = await self._connected_link()
            attempt = self._resume(messages)
            self._submit(link, attempt)
            await self._wait(link, attempt)
            attempt.settle()
            if attempt.resend:  # the broker asked to slow down: published again by the next try
                names = ", ".join(_reason(code) for code in sorted(attempt.slowed))
                raise SinkUnavailable(
                    f"the broker at {self.config.host}:{self.config.port} asked to slow down ({names}) for "
                    f"{len(attempt.resend)} of {len(messages)} messages; they are published again"
                )
            self._attempt = None
            refused = attempt.refused
            self.status.count("messages_published", len(messages) - len(refused))
            if refused:
                self.status.count("messages_refused", len(refused))
                self._log_refusals(attempt, refused)
                before = len(skipped)
                skipped.update(owners[position] for position in refused)
                names = ", ".join(sorted({_reason(code) for code in refused.values()}))
                reasons.append(f"{len(skipped) - before} refused by the broker: {names}")
        if skipped:
            # Logged here already (once per measurement and tag, once per reason code): not again per batch.
            raise SinkRejected(
                f"{len(skipped)} of {len(points)} points were not published: {'; '.join(reasons)}",
                rejected=len(skipped),
                logged=True,
            )

    def _encode(self, points: Sequence[Point]) -> tuple[list[Message], list[int], set[int]]:
        """(messages, the point of each message, the points that could not be published)."""
        template = self.template
        names = template.tags
        series_of = self._series
        per_field = template.per_field
        with_ns = self.config.timestamp_ns
        messages: list[Message] = []
        owners: list[int] = []
        skipped: set[int] = set()
        append, owner = messages.append, owners.append
        for index, point in enumerate(points):
            tags = point.tags
            key = (point.measurement, tuple(map(tags.get, names)))
            series = series_of.get(key)
            if series is None:
                if len(series_of) >= TOPIC_CACHE_SIZE:
                    series_of.clear()
                series = series_of[key] = template.render(point.measurement, tags)
            if type(series) is Missing:
                self._missing(point, series)
                skipped.add(index)
                continue
            assert isinstance(series, Topics)
            quality = tags.get("quality")
            time_ns = point.time
            if per_field:
                topics = series.by_field
                for name, value in point.fields.items():
                    topic = topics.get(name) or series.topic(name)
                    if not topic:
                        self._too_long(point, series, name)
                        skipped.add(index)
                        continue
                    append((topic, field_payload(time_ns, value, quality, with_ns=with_ns)))
                    owner(index)
            else:
                topic = series.topic()
                if not topic:
                    self._too_long(point, series, None)
                    skipped.add(index)
                    continue
                append((topic, point_payload(time_ns, point.fields, quality, with_ns=with_ns)))
                owner(index)
        return messages, owners, skipped

    def _resume(self, messages: list[Message]) -> _Attempt:
        """The attempt for ``messages``: the previous one when this is its retry, else a new one."""
        previous = self._attempt
        if previous is not None:
            done = len(previous.messages)
            if len(messages) >= done and messages[:done] == previous.messages:
                previous.settle()
                previous.resend.extend(range(done, len(messages)))
                previous.messages = messages
                return previous
            previous.withdraw()  # another batch (never the case with one route): do not wait for the old one
        attempt = self._attempt = _Attempt(messages)
        attempt.resend.extend(range(len(messages)))
        return attempt

    def _submit(self, link: MqttLink, attempt: _Attempt) -> None:
        positions, attempt.resend = attempt.resend, []
        if not positions:
            return
        messages = attempt.messages
        batch = messages if len(positions) == len(messages) else [messages[p] for p in positions]
        config = self.config
        future = link.submit_many(batch, qos=config.qos, retain=config.retain, properties=self._properties)
        attempt.outstanding.append((positions, future))

    async def _wait(self, link: MqttLink, attempt: _Attempt) -> None:
        """Until every message of ``attempt`` is settled; SinkUnavailable if the link drops or is too slow."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.timeout
        lost = self._events.lost
        while True:
            waiting = [future for _, future in attempt.outstanding if not future.done()]
            if not waiting:
                return
            if not link.connected:
                # In flight: resent by the link after it reconnects; queued: sent then. The route's
                # retry of this batch waits for them (_resume) instead of publishing them again.
                raise SinkUnavailable(
                    f"{self._events.error or 'the connection to the broker was lost'}; "
                    f"{link.in_flight} messages in flight and {link.queued} queued are kept and resent"
                )
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise SinkUnavailable(
                    f"the broker at {self.config.host}:{self.config.port} did not acknowledge a batch of "
                    f"{len(attempt.messages)} messages within {format_duration(self.config.timeout)} "
                    f"({link.in_flight} in flight)"
                )
            if lost.is_set():  # (only for the moment between a reconnection and its event)
                await first_of(waiting, min(remaining, 0.1))
            else:
                await first_of([*waiting, lost.wait()], remaining)

    # --- what could not be published -----------------------------------------------------------------

    def _missing(self, point: Point, missing: Missing) -> None:
        self.status.count("points_missing_tag")
        key = (point.measurement, missing.placeholder)
        if key in self._missing_logged:
            return
        self._missing_logged.add(key)
        tags = ", ".join(f"{k}={v}" for k, v in sorted(point.tags.items())) or "none"
        which = (
            f"no tag {missing.tags[0]!r}"
            if len(missing.tags) == 1
            else "none of the tags " + ", ".join(repr(t) for t in missing.tags)
        )
        self.log.warning(
            "points of measurement %r have %s, which the topic template %r needs for %s: they are skipped and "
            "counted in points_missing_tag (logged once per measurement and placeholder; this point's tags: %s)",
            point.measurement,
            which,
            self.config.topic,
            missing.placeholder,
            tags,
        )

    def _too_long(self, point: Point, series: Topics, field: str | None) -> None:
        self.status.count("points_topic_too_long")
        if point.measurement in self._too_long_logged:
            return
        self._too_long_logged.add(point.measurement)
        topic = (field or "").join(series.pieces)
        self.log.warning(
            "points of measurement %r are skipped whose topic would be longer than MQTT allows (%d bytes, the "
            "most is %d: %.80r…); counted in points_topic_too_long (logged once per measurement)",
            point.measurement,
            len(topic.encode()),
            MAX_TOPIC_BYTES,
            topic,
        )

    def _log_refusals(self, attempt: _Attempt, refused: dict[int, int]) -> None:
        """One line per reason code (again after REPEAT_LOG_SECONDS): the broker's reason and a topic."""
        now = time.monotonic()
        by_code: dict[int, list[int]] = {}
        for position, code in refused.items():
            by_code.setdefault(code, []).append(position)
        for code, positions in by_code.items():
            if now - self._refusals_logged.get(code, -REPEAT_LOG_SECONDS) < REPEAT_LOG_SECONDS:
                continue
            self._refusals_logged[code] = now
            topic = attempt.messages[positions[0]][0]
            self.log.error(
                "the broker refused %d messages: %s, e.g. on %r (%s); their points are dropped and counted in "
                "points_rejected (messages_refused counts the messages)",
                len(positions),
                _reason(code),
                topic[:200],
                attempt.reasons.get(code, "no detail"),
            )


def _reason(code: int) -> str:
    return f"{REASONS.get(code, 'unknown reason')} (0x{code:02X})"
