"""A realistic MQTT sensor simulator: energy meters, temperatures and machine states.

Per production line (``A``, ``B``, …) it publishes:

- ``<prefix>/<line>/energy/<meter>`` — JSON ``{"ts": <unix ms>, "p": <W>, "e": <kWh>, "pf": <cos φ>}``;
  power follows the state of the machine the meter feeds, energy integrates it;
- ``<prefix>/<line>/temperature/<sensor>`` — a plain number in °C (the ``value`` format),
  drifting smoothly around a set point;
- ``<prefix>/<line>/machine/<machine>/state`` — JSON with an ISO 8601 ``ts``, ``state``
  (``idle`` / ``setup`` / ``running`` / ``alarm`` / ``break`` with plausible transitions), nested
  ``spindle.rpm`` / ``spindle.load``, cumulative ``parts`` (one per 30 s cycle while running) and
  ``scrap`` counters (about 3 % of the parts) and an ``alarm`` code or null.

``configs/energy-meters.yaml`` and ``configs/machine-state.yaml`` read exactly these topics.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import random
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from gateway.errors import GatewayError

__all__ = ["Device", "SimulatorSettings", "build_devices", "run_mqtt_simulator"]

log = logging.LoggerAdapter(logging.getLogger("gateway.simulator.mqtt"), {"component": "simulator=mqtt"})

MACHINE_STATES = ("idle", "setup", "running", "alarm", "break")
# Mean seconds spent in each state before moving on, and where it goes next (weights). A break
# is the operator's planned stop (a planned_stop for the KPIs).
_STATE_DWELL = {"idle": 40.0, "setup": 25.0, "running": 120.0, "alarm": 20.0, "break": 30.0}
_NEXT_STATE = {
    "idle": (("setup", 0.6), ("running", 0.3), ("break", 0.1)),
    "setup": (("running", 0.9), ("alarm", 0.1)),
    "running": (("idle", 0.75), ("alarm", 0.25)),
    "alarm": (("idle", 0.8), ("setup", 0.2)),
    "break": (("idle", 0.5), ("running", 0.5)),
}
#: Share of the parts that are scrap.
_SCRAP_RATE = 0.03
_ALARMS = ("E101 spindle overload", "E204 coolant low", "E310 door open", "E415 tool breakage")


@dataclass
class SimulatorSettings:
    broker: str = "mqtt://localhost:1883"
    rate: float = 10.0
    lines: int = 2
    meters: int = 3
    machines: int = 2
    qos: int = 1
    duration: float | None = None
    count: int = 0
    seed: int | None = None
    prefix: str = "factory"
    protocol: str = "5"  # "5" or "3.1.1"
    username: str | None = None
    password: str | None = None
    ca_file: Path | None = None  # for mqtts:// with a private CA (default: the system's CAs)
    client_id: str = ""
    status_file: Path | None = None  # refreshed every second: {"connected", "published", "time"}


def _smooth(value: float, target: float, dt: float, tau: float, noise: float, rng: random.Random) -> float:
    """Move ``value`` toward ``target`` with time constant ``tau``, plus a little noise."""
    alpha = 1.0 - math.exp(-dt / tau) if tau > 0 else 1.0
    return value + (target - value) * alpha + rng.gauss(0.0, noise * math.sqrt(max(dt, 1e-3)))


@dataclass
class Machine:
    name: str
    rng: random.Random
    state: str = "idle"
    state_left: float = 10.0
    rpm: float = 0.0
    load: float = 0.0
    parts: int = 0
    scrap: int = 0
    part_progress: float = 0.0
    cycle_time: float = 30.0
    alarm: str | None = None

    def step(self, dt: float) -> None:
        self.state_left -= dt
        if self.state_left <= 0:
            options = _NEXT_STATE[self.state]
            self.state = self.rng.choices([name for name, _ in options], [weight for _, weight in options])[0]
            self.state_left = self.rng.expovariate(1.0 / _STATE_DWELL[self.state])
            self.alarm = self.rng.choice(_ALARMS) if self.state == "alarm" else None
        running = self.state == "running"
        self.rpm = max(0.0, _smooth(self.rpm, 9000.0 if running else 0.0, dt, 3.0, 40.0 if running else 0.0, self.rng))
        target_load = 45.0 + 15.0 * math.sin(time.time() / 17.0) if running else 0.0
        self.load = min(100.0, max(0.0, _smooth(self.load, target_load, dt, 2.0, 2.0 if running else 0.0, self.rng)))
        if running:
            self.part_progress += dt
            if self.part_progress >= self.cycle_time:
                self.part_progress -= self.cycle_time
                self.parts += 1
                if self.rng.random() < _SCRAP_RATE:
                    self.scrap += 1

    @property
    def power_w(self) -> float:
        base = {"idle": 900.0, "setup": 1500.0, "running": 4200.0, "alarm": 700.0, "break": 800.0}[self.state]
        return base + 60.0 * self.load


@dataclass
class Device:
    """One publisher: knows its topic and makes its next payload."""

    topic: str
    kind: str  # energy | temperature | machine
    machine: Machine
    rng: random.Random
    value: float = 0.0
    setpoint: float = 0.0
    last: float = field(default_factory=time.monotonic)
    last_stamp_ms: int = 0

    def _stamp_ms(self) -> int:
        """Now in unix ms, strictly increasing per device: a burst never repeats a timestamp
        (a store keeps one value per series and time, so a repeat would overwrite)."""
        self.last_stamp_ms = max(time.time_ns() // 1_000_000, self.last_stamp_ms + 1)
        return self.last_stamp_ms

    def payload(self) -> bytes:
        now = time.monotonic()
        dt = max(now - self.last, 1e-3)
        self.last = now
        if self.kind == "machine":
            m = self.machine
            m.step(dt)
            stamp = (
                datetime.fromtimestamp(self._stamp_ms() / 1000, UTC)
                .isoformat(timespec="milliseconds")
                .replace("+00:00", "Z")
            )
            return orjson.dumps(
                {
                    "ts": stamp,
                    "state": m.state,
                    "spindle": {"rpm": round(m.rpm, 1), "load": round(m.load, 1)},
                    "parts": m.parts,
                    "scrap": m.scrap,
                    "alarm": m.alarm,
                }
            )
        if self.kind == "energy":
            self.machine.step(0.0)
            power = max(0.0, self.machine.power_w + self.rng.gauss(0.0, 25.0))
            self.value += power * dt / 3_600_000.0  # kWh
            return orjson.dumps(
                {
                    "ts": self._stamp_ms(),
                    "p": round(power, 1),
                    "e": round(self.value, 4),
                    "pf": round(0.9 + 0.05 * self.machine.load / 100.0, 3),
                }
            )
        # temperature: follows the machine's load a little, drifts slowly
        target = self.setpoint + 0.08 * self.machine.load
        self.value = _smooth(self.value, target, dt, 60.0, 0.05, self.rng)
        return f"{self.value:.2f}".encode()


def build_devices(settings: SimulatorSettings, rng: random.Random) -> list[Device]:
    devices: list[Device] = []
    for line_index in range(settings.lines):
        line = chr(ord("A") + line_index) if line_index < 26 else f"L{line_index + 1}"
        machines = [
            Machine(name=f"cnc-{line}{i + 1}", rng=rng, state_left=rng.uniform(2, 20), parts=rng.randint(0, 500))
            for i in range(max(1, settings.machines))
        ]
        for machine in machines[: settings.machines]:
            devices.append(Device(f"{settings.prefix}/{line}/machine/{machine.name}/state", "machine", machine, rng))
        for i in range(settings.meters):
            devices.append(
                Device(
                    f"{settings.prefix}/{line}/energy/meter-{line}{i + 1}",
                    "energy",
                    machines[i % len(machines)],
                    rng,
                    value=rng.uniform(1000, 50000),
                )
            )
        devices.append(
            Device(
                f"{settings.prefix}/{line}/temperature/coolant-{line}1",
                "temperature",
                machines[0],
                rng,
                value=21.0,
                setpoint=21.0 + line_index,
            )
        )
    return devices


def _write_status(path: Path, connected: bool, published: int) -> None:
    """A heartbeat for health checks (the compose kit's): written atomically."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"connected": connected, "published": published, "time": time.time()}))
    os.replace(tmp, path)


def _client(settings: SimulatorSettings) -> tuple[mqtt.Client, str, int]:
    url = urlsplit(settings.broker)
    if url.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
        raise GatewayError(f"broker URL {settings.broker!r} must start with mqtt:// or mqtts://")
    tls = url.scheme in ("mqtts", "ssl")
    protocol = mqtt.MQTTv5 if settings.protocol == "5" else mqtt.MQTTv311
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=settings.client_id or f"gw-sim-{random.randrange(1 << 30):x}",
        protocol=protocol,
    )
    if settings.qos not in (0, 1, 2):
        raise GatewayError(f"QoS {settings.qos} does not exist: choose 0, 1 or 2")
    if tls:
        client.tls_set(ca_certs=str(settings.ca_file) if settings.ca_file else None)
    if settings.username:
        client.username_pw_set(settings.username, settings.password)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.reconnect_delay_set(1, 30)
    return client, url.hostname or "localhost", url.port or (8883 if tls else 1883)


async def run_mqtt_simulator(settings: SimulatorSettings, stop: asyncio.Event | None = None) -> int:
    """Publish until ``duration``/``count`` is reached or ``stop`` is set; returns messages published."""
    rng = random.Random(settings.seed)
    devices = build_devices(settings, rng)
    if not devices:
        raise GatewayError("nothing to simulate: give at least one line with meters or machines")
    client, host, port = _client(settings)
    connected = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_connect(_c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any = None) -> None:
        if not reason.is_failure:
            loop.call_soon_threadsafe(connected.set)
            log.info("connected to %s", settings.broker)
        else:
            log.warning("broker refused the connection: %s", reason)

    def on_disconnect(_c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any = None) -> None:
        loop.call_soon_threadsafe(connected.clear)
        if not finished:
            log.warning("disconnected from %s (%s); reconnecting", settings.broker, reason)

    finished = False
    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    client.connect_async(host, port, keepalive=30)
    client.loop_start()
    stop = stop or asyncio.Event()
    sent = 0
    inflight: deque[mqtt.MQTTMessageInfo] = deque()
    started = time.monotonic()
    last_report = started
    last_status = 0.0
    try:
        while not connected.is_set():
            if stop.is_set():
                return 0
            try:
                await asyncio.wait_for(connected.wait(), 5.0)
            except TimeoutError:
                log.warning("broker %s not reachable yet; still trying", settings.broker)
        log.info(
            "publishing %g msg/s on %d topics (qos %d) under %s/",
            settings.rate,
            len(devices),
            settings.qos,
            settings.prefix,
        )
        index = 0
        while not stop.is_set():
            now = time.monotonic()
            if settings.duration is not None and now - started >= settings.duration:
                break
            if settings.count and sent >= settings.count:
                break
            due = int((now - started) * settings.rate) + 1 - sent
            if settings.count:
                due = min(due, settings.count - sent)
            for _ in range(max(0, due)):
                device = devices[index % len(devices)]
                index += 1
                inflight.append(client.publish(device.topic, device.payload(), qos=settings.qos))
                sent += 1
            while inflight and inflight[0].is_published():
                inflight.popleft()
            while len(inflight) > 5000 and not stop.is_set():  # let the broker catch up
                await asyncio.sleep(0.01)
                while inflight and inflight[0].is_published():
                    inflight.popleft()
            if settings.status_file is not None and now - last_status >= 1.0:
                _write_status(settings.status_file, connected.is_set(), sent)
                last_status = now
            if now - last_report >= 10.0:
                log.info("published %d messages", sent)
                last_report = now
            await asyncio.sleep(min(0.05, max(0.001, 1.0 / settings.rate)))
        deadline = time.monotonic() + 10.0
        while inflight and time.monotonic() < deadline:
            if inflight[0].is_published():
                inflight.popleft()
            else:
                await asyncio.sleep(0.01)
        log.info("done: published %d messages", sent)
        return sent
    finally:
        finished = True
        client.disconnect()
        client.loop_stop()
