"""The polling core: devices read on a schedule over shared connections, each independently.

A connector that polls (Modbus, S7, OPC UA in poll mode) describes what it reads as *links*
(a connection: a Modbus TCP endpoint, a PLC) and *devices* read through them (a Modbus unit
id, the PLC's variables). It implements two small interfaces and hands them to a
:class:`Poller`::

    class MyLink(Link):            # open() / close(): the connection
    class MyDevice(Device):        # scan() -> ScanResult: one read of everything planned

    poller = Poller(status, log, [(link, [device, ...]), ...], reconnect=Reconnect(...))
    await poller.run(emit, stop)   # until stop is set; every task is owned by a TaskGroup

The poller owns the rest, written once for every protocol:

- **one task per device**, on its own fixed-rate :class:`~connectors.polling.schedule.Schedule`
  (devices of a link are spread over the interval), so a device that times out never delays
  another; a scan longer than the interval counts an overrun (``scan_overruns``);
- a device that does not answer (:class:`DeviceDown`) is retried with capped backoff while
  the others go on; a field that cannot be read is a counted error in the :class:`ScanResult`,
  never a value;
- a lost connection (:class:`LinkDown` from any device, or a failed ``open``) is closed and
  opened again with capped backoff; its devices wait meanwhile;
- per-device state, last error, counters, scan durations and data gaps
  (:class:`~connectors.polling.health.DeviceHealth`) in ``status.detail["devices"]``.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from connectors.polling.health import DeviceHealth, DeviceState
from connectors.polling.schedule import Schedule
from gateway.component import Emit, State, Status
from gateway.errors import SourceError
from gateway.pipeline import Backoff
from gateway.point import Point

__all__ = ["Device", "DeviceDown", "Link", "LinkDown", "Poller", "Reconnect", "ScanResult"]


class LinkDown(SourceError):
    """The connection is gone (refused, reset, silent): every device on it waits for the reconnect."""


class DeviceDown(SourceError):
    """This device does not answer (a timeout, a gateway's "target did not respond"): it is
    retried with backoff; the other devices go on. ``partial`` holds what the scan had read
    before the device fell silent (it is stored: those values were read)."""

    def __init__(self, message: str, partial: ScanResult | None = None) -> None:
        super().__init__(message)
        self.partial = partial


@dataclass
class ScanResult:
    """What one scan of a device gave: points (with the time of their read), the fields that
    could not be read (field → why), and how many requests it took."""

    points: list[Point] = field(default_factory=list)
    field_errors: dict[str, str] = field(default_factory=dict)
    requests: int = 0


class Link(abc.ABC):
    """A connection shared by the devices read through it."""

    #: How the connection is named in logs and errors, e.g. "10.0.0.20:502".
    name: str = ""

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect; raise :class:`~gateway.errors.SourceError` with what to check on failure."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Disconnect (also after a failed open); never raises."""


class Device(abc.ABC):
    """Something read on a schedule through a link."""

    #: Unique within the connector: the ``device`` label in /metrics and the key in the status.
    name: str = ""
    #: Seconds between two scans.
    interval: float = 1.0
    #: The device's live status entry (set by :meth:`attach`).
    status_view: dict[str, Any]

    @abc.abstractmethod
    async def scan(self) -> ScanResult:
        """Read everything planned once. Raise :class:`DeviceDown` when the device does not
        answer, :class:`LinkDown` when the connection is lost; report fields that fail alone in
        ``ScanResult.field_errors``."""

    def facts(self) -> dict[str, Any]:
        """Fixed facts shown in the device's status (its address, requests per scan, …)."""
        return {}

    def attach(self, view: dict[str, Any]) -> None:
        """The device's live status entry, for protocol details the device keeps up to date itself
        (e.g. which connection it is read through); the poller owns the standard keys."""
        self.status_view = view


@dataclass(frozen=True)
class Reconnect:
    """Backoff (seconds) for a connection that fails and for a device that does not answer."""

    initial_delay: float = 1.0
    max_delay: float = 30.0


class _LinkRunner:
    """Keeps one link open: opens it, and on a loss closes and reopens it with capped backoff."""

    def __init__(self, link: Link, poller: Poller) -> None:
        self.link = link
        self.poller = poller
        self.up = asyncio.Event()
        self.lost = asyncio.Event()
        self.reason = "not connected yet"
        self.connected_once = False

    def report_lost(self, reason: str) -> None:
        if self.up.is_set():
            self.reason = reason
            self.up.clear()
            self.lost.set()
            # The status says so at once, not when this runner's task next gets a turn: a page
            # or an alarm reading it right after a device saw the loss must not see "running".
            self.poller.link_state(self, State.RECONNECTING)

    async def run(self, stop: asyncio.Event) -> None:
        poller = self.poller
        backoff = Backoff(initial=poller.reconnect.initial_delay, cap=poller.reconnect.max_delay)
        logged: set[str] = set()
        try:
            while not stop.is_set():
                poller.link_state(self, State.RECONNECTING if self.connected_once else State.CONNECTING)
                failure: SourceError | None = None
                try:
                    await self.link.open()
                except SourceError as exc:
                    failure = exc
                if failure is not None:
                    await self.link.close()
                    delay = backoff.next_delay()
                    message = str(failure)
                    poller.status.count("connect_failures")
                    poller.status.record_error(message)
                    poller.status.detail["retry_in_seconds"] = round(delay, 1)
                    poller.link_state(self, State.BACKOFF)
                    if message not in logged:  # once per distinct error and episode, not at every attempt
                        logged.add(message)
                        poller.log.error("%s; retrying with backoff (next attempt in %.1f s)", message, delay)
                    await _wait(stop, delay)
                    continue
                logged.clear()
                backoff.reset()
                poller.status.detail.pop("retry_in_seconds", None)
                if self.connected_once:
                    poller.status.count("reconnects")
                    poller.log.info("connection to %s restored", self.link.name)
                else:
                    poller.log.info("connected to %s", self.link.name)
                self.connected_once = True
                self.lost.clear()
                self.up.set()
                poller.link_state(self, State.RUNNING)
                await _first(stop, self.lost)
                if self.lost.is_set() and not stop.is_set():
                    poller.status.record_error(self.reason)
                    poller.log.warning("connection to %s lost: %s; reconnecting", self.link.name, self.reason)
                    await self.link.close()
        finally:
            # The link itself is closed by the poller once every device's last scan has ended.
            self.up.clear()


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds`` or until ``stop`` is set."""
    if seconds > 0 and not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)


async def _first(*events: asyncio.Event) -> None:
    """Wait until any of ``events`` is set."""
    if any(event.is_set() for event in events):
        return
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


class Poller:
    """Reads every device of every link on its schedule until ``stop``; see the module doc."""

    def __init__(
        self,
        status: Status,
        log: logging.LoggerAdapter[logging.Logger],
        groups: Sequence[tuple[Link, Sequence[Device]]],
        *,
        reconnect: Reconnect | None = None,
    ) -> None:
        self.status = status
        self.log = log
        self.reconnect = reconnect or Reconnect()
        self.runners = [(_LinkRunner(link, self), list(devices)) for link, devices in groups]
        self.health: dict[str, DeviceHealth] = {}
        devices_view: dict[str, Any] = {}
        for _, devices in self.runners:
            for device in devices:
                if device.name in self.health:
                    raise ValueError(f"two devices are named {device.name!r}")
                health = DeviceHealth(device.name, device.interval, log, device.facts())
                device.attach(health.view)
                self.health[device.name] = health
                devices_view[device.name] = health.view
        status.detail["devices"] = devices_view
        for counter in ("emitted", "stored", "reconnects", "connect_failures"):
            status.counters.setdefault(counter, 0)
        self._update_gauges()

    def link_state(self, runner: _LinkRunner, state: State) -> None:
        """The connector's state follows its links: running once every link is up."""
        others_up = all(r.up.is_set() for r, _ in self.runners if r is not runner)
        if state is State.RUNNING and not others_up:
            return
        self.status.set_state(state)

    def _update_gauges(self) -> None:
        states = [h.state for h in self.health.values()]
        self.status.detail["devices_running"] = sum(1 for s in states if s is DeviceState.RUNNING)
        self.status.detail["devices_down"] = sum(1 for s in states if s in (DeviceState.DOWN, DeviceState.WAITING))

    async def run(self, emit: Emit, stop: asyncio.Event) -> None:
        """Poll until ``stop`` is set; a scan in progress then ends and its points are emitted."""
        try:
            async with asyncio.TaskGroup() as group:
                for runner, devices in self.runners:
                    group.create_task(runner.run(stop), name=f"link:{self.status.name}:{runner.link.name}")
                    for index, device in enumerate(devices):
                        # Devices of one link are spread over their interval: their requests do
                        # not all queue on the connection at the same instant.
                        offset = device.interval * index / max(1, len(devices))
                        group.create_task(
                            self._device_loop(runner, device, offset, emit, stop),
                            name=f"device:{self.status.name}:{device.name}",
                        )
        finally:
            for runner, _ in self.runners:
                await runner.link.close()

    async def _device_loop(
        self, runner: _LinkRunner, device: Device, offset: float, emit: Emit, stop: asyncio.Event
    ) -> None:
        health = self.health[device.name]
        backoff = Backoff(initial=max(self.reconnect.initial_delay, device.interval), cap=self.reconnect.max_delay)
        schedule: Schedule | None = None
        try:
            while not stop.is_set():
                if not runner.up.is_set():
                    if health.state not in (DeviceState.STARTING, DeviceState.WAITING):
                        # Its connection is down (another device found it): no data from it either.
                        health.failed(runner.reason, waiting=True)
                        self._update_gauges()
                    await _first(runner.up, stop)
                    continue
                if schedule is None:
                    schedule = Schedule(device.interval, time.monotonic() + offset)
                await _wait(stop, schedule.delay(time.monotonic()))
                if stop.is_set():
                    break
                if not runner.up.is_set():
                    continue
                started = time.monotonic()
                try:
                    result = await device.scan()
                except LinkDown as exc:
                    health.failed(str(exc), waiting=True)
                    runner.report_lost(str(exc))
                    self._update_gauges()
                    continue
                except DeviceDown as exc:
                    health.failed(str(exc))
                    self.status.record_error(f"{device.name}: {exc}")
                    schedule.postpone(time.monotonic(), backoff.next_delay())
                    self._update_gauges()
                    if exc.partial is not None and exc.partial.points:
                        await self._emit(emit, exc.partial.points)
                    continue
                duration = time.monotonic() - started
                backoff.reset()
                health.scanned(duration, len(result.points), result.field_errors)
                if result.field_errors:
                    field, message = next(iter(result.field_errors.items()))
                    self.status.record_error(f"{device.name}: {field}: {message}")
                self._update_gauges()
                health.timing(duration, device.interval)
                schedule.advance(time.monotonic())
                if result.points:
                    await self._emit(emit, result.points)
        finally:
            health.stopped()

    async def _emit(self, emit: Emit, points: list[Point]) -> None:
        counters = self.status.counters

        def stored() -> None:
            counters["stored"] = counters.get("stored", 0) + len(points)

        counters["emitted"] = counters.get("emitted", 0) + len(points)
        await emit(points, stored)

    def device_views(self) -> Mapping[str, Mapping[str, Any]]:
        return {name: health.view for name, health in self.health.items()}
