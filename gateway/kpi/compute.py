"""The KPIs of one machine over one range, from its state intervals and counter increases. Pure.

Definitions (ISO 22400-2, Nakajima; docs/KPI.md has them with a worked example):

- ``seconds``: time in each category within the range — running, idle, down, setup,
  planned_stop, ``unknown`` (a value the map does not name) and ``no_data`` — adding up to the
  range;
- planned time = the range ∩ the shifts (the whole range without shifts) - planned_stop - no_data;
- availability = running / planned time; performance = ideal cycle time * parts / running;
  quality = (parts - scrap) / parts; OEE = A * P * Q. Running, parts and scrap in these ratios
  are those inside the shifts (all of them without shifts), so no ratio can pass 1 because a
  machine ran outside its shifts;
- a ratio whose denominator is 0 is None (``null``), never 0 or an error. Performance above 1
  (more parts than the ideal cycle time allows: the ideal is set too slow) is given as 1 with a
  warning; so is quality below 0 (more scrap than parts).

Times are integer nanoseconds, so splitting a range in two and adding the halves gives exactly
the totals of the whole (:meth:`Kpi.merge`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from gateway.kpi.calendar import NS, Window
from gateway.kpi.timeline import CounterLine

__all__ = ["CATEGORIES", "MAPPED", "Kpi", "measure"]

#: The categories a state map may name.
MAPPED: Final = ("running", "idle", "down", "setup", "planned_stop")
#: Every category of the ``seconds`` of a result, in the order they are shown.
CATEGORIES: Final = (*MAPPED, "unknown", "no_data")


def _number(value: float) -> float | int:
    """An integral float as an int (``30`` rather than ``30.0`` in JSON and tables)."""
    return int(value) if float(value).is_integer() else value


def _seconds(ns: int) -> float | int:
    return _number(round(ns / NS, 3))


def _ratio(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


@dataclass
class Kpi:
    """What one range adds up to; the ratios are computed from these sums."""

    start: int
    end: int
    #: ns per category over the whole range
    ns: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CATEGORIES, 0))
    #: ns of the planned windows (the shifts within the range, or the range)
    window_ns: int = 0
    #: ns per category within the planned windows
    planned_ns_by: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CATEGORIES, 0))
    #: None when the machine has no such counter
    parts: float | None = None
    scrap: float | None = None
    parts_planned: float | None = None
    scrap_planned: float | None = None
    ideal_ns: int | None = None
    shift: str | None = None
    warnings: list[str] = field(default_factory=list)

    # --- sums ------------------------------------------------------------------------------------

    @property
    def planned_ns(self) -> int:
        return self.window_ns - self.planned_ns_by["planned_stop"] - self.planned_ns_by["no_data"]

    @property
    def running_ns(self) -> int:
        """Running time inside the planned windows (what availability and performance use)."""
        return self.planned_ns_by["running"]

    @property
    def good(self) -> float | None:
        if self.parts is None:
            return None
        return max(self.parts - (self.scrap or 0.0), 0.0)

    # --- ratios ----------------------------------------------------------------------------------

    @property
    def availability(self) -> float | None:
        planned = self.planned_ns
        return self.running_ns / planned if planned > 0 else None

    @property
    def performance(self) -> float | None:
        running = self.running_ns
        if self.ideal_ns is None or self.parts_planned is None or running <= 0:
            return None
        return min(1.0, self.ideal_ns * self.parts_planned / running)

    @property
    def performance_unclamped(self) -> float | None:
        running = self.running_ns
        if self.ideal_ns is None or self.parts_planned is None or running <= 0:
            return None
        return self.ideal_ns * self.parts_planned / running

    @property
    def quality(self) -> float | None:
        parts = self.parts_planned
        if parts is None or parts <= 0:
            return None
        return min(1.0, max(0.0, (parts - (self.scrap_planned or 0.0)) / parts))

    @property
    def oee(self) -> float | None:
        a, p, q = self.availability, self.performance, self.quality
        if a is None or p is None or q is None:
            return None
        return a * p * q

    def check(self) -> Kpi:
        """Add the warnings a plant engineer should see about these numbers."""
        raw = self.performance_unclamped
        if raw is not None and raw > 1.0 + 1e-9 and self.ideal_ns is not None:
            self.warnings.append(
                f"more parts than running time allows at the ideal cycle time of {self.ideal_ns / NS:g} s "
                f"(performance {raw:.2f}, shown as 1): the ideal cycle time is probably set too long"
            )
        parts, scrap = self.parts_planned, self.scrap_planned
        if parts is not None and scrap is not None and scrap > parts:
            self.warnings.append(f"more scrap ({scrap:g}) than parts ({parts:g}): check the two counters")
        return self

    def merge(self, other: Kpi) -> Kpi:
        """The KPIs of this range followed by ``other`` (adjacent ranges of one machine)."""

        def add(a: float | None, b: float | None) -> float | None:
            return None if a is None and b is None else (a or 0.0) + (b or 0.0)

        return Kpi(
            start=min(self.start, other.start),
            end=max(self.end, other.end),
            ns={c: self.ns[c] + other.ns[c] for c in CATEGORIES},
            window_ns=self.window_ns + other.window_ns,
            planned_ns_by={c: self.planned_ns_by[c] + other.planned_ns_by[c] for c in CATEGORIES},
            parts=add(self.parts, other.parts),
            scrap=add(self.scrap, other.scrap),
            parts_planned=add(self.parts_planned, other.parts_planned),
            scrap_planned=add(self.scrap_planned, other.scrap_planned),
            ideal_ns=self.ideal_ns,
        ).check()

    def as_dict(self) -> dict[str, Any]:
        """The figures as the API and ``gateway kpi --format json`` give them (times added by the caller)."""
        good = self.good
        return {
            "seconds": {c: _seconds(self.ns[c]) for c in CATEGORIES},
            "planned_seconds": _seconds(self.planned_ns),
            "parts": None if self.parts is None else _number(self.parts),
            "scrap": None if self.scrap is None else _number(self.scrap),
            "good": None if good is None else _number(good),
            "availability": _ratio(self.availability),
            "performance": _ratio(self.performance),
            "quality": _ratio(self.quality),
            "oee": _ratio(self.oee),
        }


def _overlap(lo: int, hi: int, windows: Sequence[Window]) -> int:
    total = 0
    for window in windows:
        if window.start >= hi:
            break
        a, b = max(lo, window.start), min(hi, window.end)
        if b > a:
            total += b - a
    return total


def measure(
    start: int,
    end: int,
    spans: Iterable[tuple[int, int, str]],
    windows: Sequence[Window],
    *,
    parts: CounterLine | None = None,
    scrap: CounterLine | None = None,
    ideal_ns: int | None = None,
    shift: str | None = None,
) -> Kpi:
    """Sum up one range.

    ``spans`` are (start, end, category) tiling [start, end) in time order; ``windows`` the planned
    windows within it (sorted, not overlapping); ``parts`` and ``scrap`` the counters' increases —
    those outside [start, end) are left out; None: the machine has no such counter.
    """
    kpi = Kpi(start, end, ideal_ns=ideal_ns, shift=shift)
    kpi.window_ns = sum(w.end - w.start for w in windows)
    for lo, hi, category in spans:
        kpi.ns[category] += hi - lo
        if windows:
            kpi.planned_ns_by[category] += _overlap(lo, hi, windows)
    for name, line in (("parts", parts), ("scrap", scrap)):
        if line is None:
            continue
        total = line.amount(start, end)
        planned = sum(line.amount(max(w.start, start), min(w.end, end)) for w in windows)
        setattr(kpi, name, total)
        setattr(kpi, f"{name}_planned", planned)
    return kpi.check()
