"""The KPI component: runs the engine in the gateway and writes the ``kpi`` measurement to every sink.

The runtime starts it when the config has ``machines:`` (and restarts it when a reload changes
them), as a source named :data:`KPI_COMPONENT` — a name no connector can take — whose status is
in ``/api/status`` and ``/metrics`` (kind ``kpi``). Its points go through the normal fan-out, so
Grafana on InfluxDB shows the numbers the API gives.

**The points** (measurement ``kpi``, every field a float; docs/KPI.md):

- every minute, one per machine, at the minute's start: tags ``machine``, ``shift`` (the shift
  the minute is in; ``none`` outside every shift; ``all`` for a machine without shifts, whose
  every minute is planned) and ``period=minute``; fields: the seconds of that minute per
  category (``running_s`` … ``no_data_s``), ``planned_s``, ``parts``, ``scrap``, ``good``, and
  ``ideal_s`` (ideal cycle time * parts: performance over any range is Σ ideal_s / Σ running_s of
  its planned minutes); and ``availability``, ``performance``, ``quality``, ``oee`` **of the
  current shift so far** (of the local day so far outside shifts and without shifts), so the last
  minute point is the current shift's OEE. A ratio that is null is left out;
- at the end of every shift, one per machine at the shift's start, ``period=shift``: the shift's
  totals and ratios; at every local midnight, one per machine at the day's start, ``period=day``,
  ``shift=all``: the day's.

A minute is written :data:`EMIT_DELAY` seconds after it ends (data that took a moment to arrive
is in it). After a restart the minutes since the last stored ``kpi`` point are written (at most
:data:`BACKFILL_NS` back); when a backlog changes an hour already written (a broker's queue after
an outage), that hour's points are written again with the corrected numbers (a store keeps one
point per series and time, so they replace the old ones).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from gateway.component import Emit, RuntimeContext, Source, State
from gateway.errors import GatewayError
from gateway.history import HistoryReader
from gateway.kpi.calendar import HOUR_NS, MINUTE_NS, NS, Window
from gateway.kpi.compute import CATEGORIES, Kpi
from gateway.kpi.config import KPI_MEASUREMENT, MachineConfig
from gateway.kpi.engine import KpiEngine
from gateway.kpi.rollups import RETENTION_HOURS, RollupStore
from gateway.latest import LatestValues
from gateway.point import Point

__all__ = ["EMIT_DELAY", "KPI_COMPONENT", "KpiSource", "kpi_fields"]

#: The component's name in status, logs and metrics (a connector's name cannot hold ':').
KPI_COMPONENT: Final = "kpi:engine"
#: Seconds after a minute's end before its points are written.
EMIT_DELAY: Final = 5.0
#: How far back the minutes missed while the gateway was stopped are written after a restart.
BACKFILL_NS: Final = 24 * HOUR_NS
#: How far back a backlog's corrections are written.
REVISE_NS: Final = 7 * 24 * HOUR_NS
#: What the engine reads ahead at start (today and yesterday: the overview and the usual views).
WARM_NS: Final = 24 * HOUR_NS


def kpi_fields(kpi: Kpi, ratios: Kpi | None = None) -> dict[str, float]:
    """A kpi point's fields: ``kpi``'s seconds and counts, and ``ratios``' (default: ``kpi``'s) ratios."""
    fields: dict[str, float] = {f"{c}_s": kpi.ns[c] / NS for c in CATEGORIES}
    fields["planned_s"] = kpi.planned_ns / NS
    for name, value in (("parts", kpi.parts), ("scrap", kpi.scrap), ("good", kpi.good)):
        if value is not None:
            fields[name] = float(value)
    if kpi.ideal_ns is not None and kpi.parts_planned is not None:
        fields["ideal_s"] = kpi.ideal_ns * kpi.parts_planned / NS
    source = kpi if ratios is None else ratios
    for name, ratio in (
        ("availability", source.availability),
        ("performance", source.performance),
        ("quality", source.quality),
        ("oee", source.oee),
    ):
        if ratio is not None:
            fields[name] = round(ratio, 6)
    return fields


@dataclass
class _Progress:
    """Where one machine's points are: the next minute to write, the current period's sums so far."""

    next_minute: int
    period: Window | None = None
    so_far: Kpi | None = None


class KpiSource(Source):
    """The engine's life cycle in the gateway, and the ``kpi`` points (module docstring)."""

    def __init__(
        self,
        machines: Sequence[MachineConfig],
        context: RuntimeContext,
        *,
        history: Callable[[], HistoryReader | None],
        latest: LatestValues,
        now: Callable[[], int] = time.time_ns,
    ) -> None:
        super().__init__(KPI_COMPONENT, "kpi", context)
        self.status.kind = "kpi"
        self.machines = list(machines)
        self.engine = KpiEngine(self.machines, history, now=now)
        self._history = history
        self._latest = latest
        self._now = now
        self._stop = asyncio.Event()
        self._progress: dict[str, _Progress] = {}
        self._failing = False

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self, emit: Emit) -> None:
        self._stop.clear()
        rollups = RollupStore(self.context.data_dir / "kpi" / "rollups.db", self.log)
        await rollups.prune(self._now() // HOUR_NS - RETENTION_HOURS)
        self.engine.rollups = rollups
        self.engine.attach(self._latest)
        self.status.set_state(State.RUNNING)
        self.status.detail.update(self.engine.stats())
        try:
            async with asyncio.TaskGroup() as tasks:
                warm = tasks.create_task(self._warm(), name="kpi:warm")
                try:
                    await self._loop(emit)
                finally:
                    warm.cancel()
        finally:
            self.engine.detach()
            self.engine.settle()
            await self.engine.flush()
            self.engine.rollups = None
            await rollups.aclose()

    async def _warm(self) -> None:
        """Read today and yesterday into the engine's cache, so the first views come at once."""
        now = self._now()
        for machine in self.machines:
            try:
                await self.engine.preload(machine.name, now - WARM_NS, now)
            except GatewayError as exc:
                self.log.warning("reading ahead the KPIs of %s: %s", machine.name, exc)

    async def _loop(self, emit: Emit) -> None:
        while not self._stop.is_set():
            try:
                if not self._progress:
                    await self._resume()
                await self._write_due(emit)
                await self._write_revised(emit)
                if self._failing:
                    self._failing = False
                    self.log.info("the history can be read again: kpi points are written")
            except GatewayError as exc:
                self.status.record_error(str(exc))
                self.status.count("errors")
                if not self._failing:
                    self._failing = True
                    self.log.warning("kpi points delayed: %s (trying again every minute)", exc)
            self.engine.settle()
            await self.engine.flush()
            self.status.detail.update(self.engine.stats())
            now = self._now()
            wake = (now // MINUTE_NS + 1) * MINUTE_NS + round(EMIT_DELAY * NS)
            if wake - now > MINUTE_NS:
                wake -= MINUTE_NS
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), max(0.05, (wake - now) / NS))

    async def _resume(self) -> None:
        """Where each machine's points start: after the last stored one (at most a day back), or now."""
        now = self._now()
        current = now // MINUTE_NS * MINUTE_NS
        stored: dict[str, int] = {}
        history = self._history()
        if history is not None:
            for row in await history.series():
                if (
                    row.measurement == KPI_MEASUREMENT
                    and row.tags.get("period") == "minute"
                    and row.field == "running_s"
                    and row.last_time is not None
                ):
                    name = row.tags.get("machine", "")
                    stored[name] = max(stored.get(name, row.last_time), row.last_time)
        for machine in self.machines:
            last = stored.get(machine.name)
            start = current if last is None else max(last + MINUTE_NS, current - BACKFILL_NS)
            self._progress[machine.name] = _Progress(next_minute=start)

    async def _write_due(self, emit: Emit) -> None:
        ready = (self._now() - round(EMIT_DELAY * NS)) // MINUTE_NS * MINUTE_NS  # minutes ending by then
        for machine in self.machines:
            progress = self._progress[machine.name]
            if progress.next_minute >= ready:
                continue
            for start in range(progress.next_minute, ready, 6 * HOUR_NS):  # (a backfill in slices)
                end = min(ready, start + 6 * HOUR_NS)
                points = await self._points(machine, progress, start, end)
                if points:
                    await emit(points)
                    self.status.count("points", len(points))
                progress.next_minute = end
            self.status.detail["last_minute"] = ready / NS

    async def _points(self, machine: MachineConfig, progress: _Progress, start: int, end: int) -> list[Point]:
        """The points of the minutes in [start, end) of one machine, and of the shifts and days ending there."""
        calendar = machine.calendar
        minutes = list(range(start, end, MINUTE_NS))
        kpis = await self.engine.measure(machine.name, [(m, m + MINUTE_NS) for m in minutes])
        points: list[Point] = []
        name = machine.name
        for minute, kpi in zip(minutes, kpis, strict=True):
            shift = calendar.shift_at(minute)
            period = shift or _day(calendar.day_start(minute), calendar.day_start(minute + 86400 * NS))
            so_far = progress.so_far
            if progress.period != period or so_far is None or so_far.end != minute:
                [so_far] = await self.engine.measure(name, [(max(period.start, minute - 31 * 86400 * NS), minute)])
                if so_far.end != minute:  # (a period starting at this minute)
                    so_far = None
            so_far = kpi if so_far is None else so_far.merge(kpi)
            progress.period, progress.so_far = period, so_far
            label = shift.name if shift is not None and shift.name else "none" if calendar.shifts else "all"
            tags = {"machine": name, "shift": label, "period": "minute"}
            points.append(Point(KPI_MEASUREMENT, kpi_fields(kpi, so_far), tags, minute))
            for window in self._ending(machine, minute + MINUTE_NS):
                [total] = await self.engine.measure(name, [(window.start, window.end)])
                tags = {"machine": name, "shift": window.name or "all", "period": "shift" if window.name else "day"}
                if window.name is not None and period == window and so_far.start == window.start:
                    total = so_far  # (the same sums, already at hand)
                points.append(Point(KPI_MEASUREMENT, kpi_fields(total), tags, window.start))
        return points

    def _ending(self, machine: MachineConfig, at: int) -> list[Window]:
        """The shifts and the local day that end at ``at`` (days as nameless windows)."""
        calendar = machine.calendar
        found = [w for w in calendar.occurrences(at - MINUTE_NS, at) if w.end == at]
        if calendar.day_start(at) == at:
            found.append(Window(calendar.day_start(at - 1), at, None))
        return found

    async def _write_revised(self, emit: Emit) -> None:
        """Write again the hours a backlog changed (after the sinks stored it)."""
        oldest = self._now() - REVISE_NS
        for name, hours in self.engine.take_revised().items():
            progress = self._progress.get(name)
            machine = next((m for m in self.machines if m.name == name), None)
            if progress is None or machine is None:
                continue
            scratch = _Progress(next_minute=0)
            for hour in hours:
                end = min(hour + HOUR_NS, progress.next_minute)
                if hour < oldest or end <= hour:
                    continue
                points = await self._points(machine, scratch, hour, end)
                if points:
                    await emit(points)
                    self.status.count("points", len(points))
                    self.status.count("points_revised", len(points))
            progress.so_far = None  # the current period's sums may include a revised hour


def _day(start: int, end: int) -> Window:
    return Window(start, end, None)
