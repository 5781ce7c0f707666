"""A Sparkplug B edge node simulator: an injection-moulding line with two presses (``gateway simulate sparkplug``).

Edge node ``<group>/<node>`` (default ``Plant/Line-1``) with devices ``Press-1`` and ``Press-2``
(``--devices`` for more). After every connection it publishes its NBIRTH (bdSeq, one per
connection; the NDEATH with the same bdSeq is its MQTT will) and a DBIRTH per press declaring
each metric with its alias, datatype and unit; then, every ``interval``, one DDATA per press
carrying only aliases and the sample's time:

- ``Nozzle/Temp`` (°C, Double): around 230 °C while running, cooling towards 180 °C when stopped;
- ``Clamp/Pressure`` (bar, Double): around 120 bar while running;
- ``Cycle/Count`` (Int64): one shot per 20 s cycle while running;
- ``Status/Running`` (Boolean) and ``Status/Mode`` (String: ``auto``, ``setup``, ``idle``).

An NCMD ``Node Control/Rebirth`` = true from a host (the gateway's Sparkplug connector sends one
when it missed a birth) makes it publish its births again. Commands to the presses (DCMD) are
logged and ignored. ``connectors/sparkplug`` reads it as it reads Ignition Edge.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from gateway.errors import GatewayError
from gateway.mqtt.link import LinkOptions, MqttLink, PublishError, Subscription, Will
from gateway.point import FieldValue
from gateway.sparkplug.edge import REBIRTH, EdgeNode, ndeath
from gateway.sparkplug.payload import parse
from gateway.sparkplug.topics import Kind, check_id, device_topic, node_topic

__all__ = ["Press", "SparkplugSimulatorSettings", "run_sparkplug_simulator"]

log = logging.LoggerAdapter(logging.getLogger("gateway.simulator.sparkplug"), {"component": "simulator=sparkplug"})

UNITS = {"Nozzle/Temp": "°C", "Clamp/Pressure": "bar"}
_MODES = ("auto", "setup", "idle")
_CYCLE_SECONDS = 20.0


@dataclass
class SparkplugSimulatorSettings:
    broker: str = "mqtt://localhost:1883"
    group: str = "Plant"
    node: str = "Line-1"
    devices: int = 2
    interval: float = 1.0
    duration: float | None = None
    count: int = 0  # stop after this many DDATA (0: no limit)
    seed: int | None = None
    protocol: str = "5"
    username: str | None = None
    password: str | None = None
    client_id: str | None = None


@dataclass
class Press:
    """One press: its state moves on between auto, setup and idle; its values follow it."""

    name: str
    rng: random.Random
    mode: str = "auto"
    temp: float = 225.0
    pressure: float = 118.0
    count: int = 0
    cycle: float = 0.0
    dwell: float = field(default=120.0)

    def step(self, dt: float) -> None:
        self.dwell -= dt
        if self.dwell <= 0:
            self.mode = self.rng.choices(_MODES, weights=(0.6, 0.2, 0.2))[0]
            self.dwell = self.rng.uniform(30.0, 180.0) if self.mode == "auto" else self.rng.uniform(15.0, 60.0)
        running = self.mode == "auto"
        target_temp, target_pressure = (230.0, 120.0) if running else (180.0, 0.0)
        self.temp += (target_temp - self.temp) * min(1.0, dt / 60.0) + self.rng.gauss(0.0, 0.3)
        self.pressure += (target_pressure - self.pressure) * min(1.0, dt / 5.0) + self.rng.gauss(0.0, 0.5)
        if running:
            self.cycle += dt
            while self.cycle >= _CYCLE_SECONDS:
                self.cycle -= _CYCLE_SECONDS
                self.count += 1

    def values(self) -> dict[str, FieldValue]:
        return {
            "Nozzle/Temp": round(self.temp, 2),
            "Clamp/Pressure": round(max(self.pressure, 0.0), 2),
            "Cycle/Count": self.count,
            "Status/Running": self.mode == "auto",
            "Status/Mode": self.mode,
        }


class _Simulator:
    def __init__(self, settings: SparkplugSimulatorSettings) -> None:
        self.settings = settings
        self.rng = random.Random(settings.seed)
        self.presses = [Press(f"Press-{n + 1}", self.rng) for n in range(settings.devices)]
        self.edge = EdgeNode()
        for press in self.presses:
            self.edge.learn(press.name, press.values(), lambda name: UNITS.get(name, ""))
        self.bdseq = -1
        self.published = 0
        self.rebirth = asyncio.Event()
        self.link: MqttLink | None = None

    def will(self) -> Will:
        self.bdseq = (self.bdseq + 1) % 256
        topic = node_topic(self.settings.group, Kind.NDEATH, self.settings.node)
        return Will(topic, ndeath(self.bdseq, _now_ms()), qos=1)

    def births(self) -> list[tuple[str, bytes]]:
        group, node = self.settings.group, self.settings.node
        now = _now_ms()
        messages = [(node_topic(group, Kind.NBIRTH, node), self.edge.nbirth(self.bdseq, now))]
        for press in self.presses:
            messages.append((device_topic(group, Kind.DBIRTH, node, press.name), self.edge.dbirth(press.name, now)))
        return messages

    def data(self) -> list[tuple[str, bytes]]:
        group, node = self.settings.group, self.settings.node
        now = _now_ms()
        messages = []
        for press in self.presses:
            press.step(self.settings.interval)
            values = press.values()
            messages.append(
                (
                    device_topic(group, Kind.DDATA, node, press.name),
                    self.edge.ddata(press.name, values.items(), now, None),
                )
            )
        return messages

    # LinkEvents

    def connected(self, session_present: bool, reconnect: bool) -> None:
        log.info("connected to %s (bdSeq %d): births", self.settings.broker, self.bdseq)
        self.rebirth.set()

    def connect_failed(self, message: str, unauthorized: bool) -> None:
        log.warning("%s; retrying", message)

    def disconnected(self, message: str) -> None:
        log.warning("%s; reconnecting", message)

    def subscribe_failed(self, message: str) -> None:
        log.error("%s", message)

    def subscribed(self, filters: list[str]) -> None:
        pass

    def dropped(self, count: int) -> None:
        pass

    async def commands(self, link: MqttLink) -> None:
        ncmd = node_topic(self.settings.group, Kind.NCMD, self.settings.node)
        async for batch in link.batches(100):
            link.ack([(m.generation, m.mid, m.qos) for m in batch if m.qos])
            for message in batch:
                if message.topic != ncmd:
                    log.info("command on %s ignored (the simulator has nothing to write)", message.topic)
                    continue
                try:
                    metrics = parse(message.payload).metrics
                except GatewayError as exc:
                    log.warning("NCMD ignored: %s", exc)
                    continue
                if any(m.name == REBIRTH and m.boolean_value for m in metrics):
                    log.info("a host asked for a rebirth (NCMD %s)", REBIRTH)
                    self.rebirth.set()


async def run_sparkplug_simulator(settings: SparkplugSimulatorSettings, stop: asyncio.Event | None = None) -> int:
    """Publish until ``stop``, ``duration`` or ``count``; returns how many DDATA were published."""
    check_id(settings.group, "group")
    check_id(settings.node, "node")
    parts = urlsplit(settings.broker)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise GatewayError(f"{settings.broker!r} is not a broker URL: write mqtt://host:1883")
    simulator = _Simulator(settings)
    group, node = settings.group, settings.node
    options = LinkOptions(
        host=parts.hostname,
        port=parts.port or (8883 if parts.scheme == "mqtts" else 1883),
        client_id=settings.client_id or f"spb-sim-{group}-{node}",
        protocol=settings.protocol,
        ssl=_tls() if parts.scheme == "mqtts" else None,
        username=settings.username,
        password=settings.password,
        clean_start=True,
        session_expiry=0,
        subscriptions=(
            Subscription(node_topic(group, Kind.NCMD, node), 0),
            Subscription(device_topic(group, Kind.DCMD, node, "+"), 0),
        ),
        will=simulator.will,
        resend_on_reconnect=False,
    )
    stop = stop or asyncio.Event()
    deadline = time.monotonic() + settings.duration if settings.duration else None
    log.info(
        "Sparkplug B edge node %s/%s with %d presses → %s, every %g s",
        group,
        node,
        settings.devices,
        settings.broker,
        settings.interval,
    )
    async with MqttLink(options, simulator) as link:
        reader = asyncio.create_task(simulator.commands(link), name="sparkplug-simulator-commands")
        try:
            while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
                if settings.count and simulator.published >= settings.count:
                    break
                try:
                    if simulator.rebirth.is_set() and link.connected:
                        simulator.rebirth.clear()
                        await asyncio.wait_for(link.publish_many(simulator.births(), qos=0), 10.0)
                    elif link.connected and not simulator.rebirth.is_set():
                        messages = simulator.data()
                        await asyncio.wait_for(link.publish_many(messages, qos=0), 10.0)
                        simulator.published += len(messages)
                except (PublishError, TimeoutError) as exc:
                    log.warning("not published: %s", exc or "timeout")
                    simulator.rebirth.set()
                # A rebirth asked for cuts the wait short, unless one is pending already (not connected).
                waiting = (stop,) if simulator.rebirth.is_set() else (stop, simulator.rebirth)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(_first(*waiting), settings.interval)
            if link.connected:  # a clean stop: say it, since the broker will not send the will
                topic = node_topic(group, Kind.NDEATH, node)
                with contextlib.suppress(PublishError, TimeoutError):
                    await asyncio.wait_for(link.publish(topic, ndeath(simulator.bdseq, _now_ms()), qos=1), 5.0)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, GatewayError):
                await reader
    log.info("stopped: %d DDATA published", simulator.published)
    return simulator.published


async def _first(*events: asyncio.Event) -> None:
    """Return as soon as one of ``events`` is set."""
    waits = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()


def _tls() -> ssl.SSLContext:
    return ssl.create_default_context()


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
