"""Synthetic machine timelines with answers worked out by hand, shared by the engine, API, CLI and kpi-point tests.

**imm-07** (UTC, no shifts), from T0 = Monday 2026-03-02 06:00:00Z, a state sample every 10 s:

=============  ==============  ===========================================================
seconds        state           category
=============  ==============  ===========================================================
0 – 3600       PRODUCING       running
3600 – 4200    IDLE            idle
4200 – 4800    ALARM           down
4800 – 5400    SETUP           setup
5400 – 6000    BREAK           planned_stop
6000 – 6290    MAINTENANCE_X   unknown (not in the map); its last sample holds 300 s: to 6590
6590 – 7500    (silence)       no_data (the gap is longer than the 5 min timeout)
7500 – 9000    2               running (a number in the map)
=============  ==============  ===========================================================

``cycle_count`` (total) is sampled every 10 s from T0 - 10 s: 5000 + one part per 12 s running,
reset to 0 at 4000 s (the reset adds 0), then one part per 12 s from 7500 s: 300 + 124 = 424
parts in [0, 9000). ``scrap_count`` (total): 10, +1 at 1000 s, +1 at 2000 s, reset to 0 at 4000 s,
2 at 8000 s: 4. So over [T0, T0 + 9000 s): running 5100, idle 600, down 600, setup 600,
planned_stop 600, unknown 590, no_data 910; planned 9000 - 600 - 910 = 7490; availability
5100/7490 = 0.6809; performance 10 * 424 / 5100 = 0.8314; quality 420/424 = 0.9906; OEE
4200/7490 = 0.5607.

**imm-08** the same states, but counters of kind delta: ``good_delta`` is 1 at every 12th second of
the first running stretch (300 messages) and 5 at 8000 s (305 parts); ``scrap_delta`` is 1 at
1000 s and 3 at 8500 s (4).

**cnc-09** (Europe/Rome, one night shift N on Saturdays 22:00–06:00, ideal cycle 50 s): running,
sampled every minute with one part per sample, from Saturday 20:00 to Sunday 08:00 local on the
two weekends the clocks change (2026-03-28/29: the shift lasts 7 h, 420 parts; 2026-10-24/25:
9 h, 540 parts). Availability 1, performance 50 * 420 / 25200 = 0.8333, quality 1.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.kpi.calendar import to_ns
from gateway.point import Point
from gateway.sinks.historian.store import HistorianStore

__all__ = ["EXPECTED_IMM07", "MACHINES", "SPRING", "T0", "write_scenarios"]

S = 10**9
T0 = to_ns(datetime(2026, 3, 2, 6, tzinfo=UTC))
#: UTC start of the Saturday night shift on the night clocks go forward, and after it, back
SPRING = to_ns(datetime(2026, 3, 28, 21, tzinfo=UTC))
AUTUMN = to_ns(datetime(2026, 10, 24, 20, tzinfo=UTC))

STATE_MAP = {
    "running": ["PRODUCING", 2],
    "idle": ["IDLE", "WAITING"],
    "down": ["ALARM", "FAULT"],
    "setup": ["SETUP"],
    "planned_stop": ["BREAK", "NO_ORDER"],
}

#: The ``machines:`` section of these scenarios (plain data, as read from YAML).
MACHINES: list[dict[str, Any]] = [
    {
        "name": "imm-07",
        "tags": {"machine": "imm-07"},
        "state": {"measurement": "machine", "field": "state", "map": STATE_MAP, "timeout": "5m"},
        "parts": {"measurement": "machine", "field": "cycle_count"},
        "scrap": {"measurement": "machine", "field": "scrap_count"},
        "ideal_cycle_time": "10s",
    },
    {
        "name": "imm-08",
        "tags": {"machine": "imm-08"},
        "state": {"measurement": "machine", "field": "state", "map": STATE_MAP, "timeout": "5m"},
        "parts": {"measurement": "machine", "field": "good_delta", "kind": "delta"},
        "scrap": {"measurement": "machine", "field": "scrap_delta", "kind": "delta"},
        "ideal_cycle_time": "10s",
    },
    {
        "name": "cnc-09",
        "tags": {"machine": "cnc-09"},
        "state": {"measurement": "cnc", "field": "mode", "map": {"running": ["Running"], "idle": ["Idle"]}},
        "parts": {"measurement": "cnc", "field": "parts"},
        "ideal_cycle_time": "50s",
        "shifts": [{"name": "N", "days": ["sat"], "from": "22:00", "to": "06:00"}],
        "timezone": "Europe/Rome",
    },
]

EXPECTED_IMM07: dict[str, Any] = {
    "seconds": {
        "running": 5100,
        "idle": 600,
        "down": 600,
        "setup": 600,
        "planned_stop": 600,
        "unknown": 590,
        "no_data": 910,
    },
    "planned_seconds": 7490,
    "parts": 424,
    "scrap": 4,
    "good": 420,
    "availability": 0.6809,
    "performance": 0.8314,
    "quality": 0.9906,
    "oee": 0.5607,
}


def _state(t: int) -> str | int | None:
    for end, value in (
        (3600, "PRODUCING"),
        (4200, "IDLE"),
        (4800, "ALARM"),
        (5400, "SETUP"),
        (6000, "BREAK"),
        (6300, "MAINTENANCE_X"),
        (7500, None),
        (9000, 2),
    ):
        if t < end:
            return value
    return None


def _count(t: int) -> int:
    if t < 4000:
        return 5000 + max(0, min(t, 3600)) // 12
    return max(0, t - 7500) // 12


def _scrap(t: int) -> int:
    if t < 4000:
        return 10 + (t >= 1000) + (t >= 2000)
    return 2 if t >= 8000 else 0


def imm_points() -> list[Point]:
    points = []
    for t in range(-10, 9000, 10):
        fields: dict[str, Any] = {"cycle_count": _count(t), "scrap_count": _scrap(t)}
        state = _state(t) if t >= 0 else None
        if state is not None:
            fields["state"] = state
        points.append(Point("machine", fields, {"machine": "imm-07", "line": "L1"}, T0 + t * S))
        if state is not None:
            points.append(Point("machine", {"state": state}, {"machine": "imm-08"}, T0 + t * S))
    for t in range(12, 3601, 12):
        points.append(Point("machine", {"good_delta": 1}, {"machine": "imm-08"}, T0 + t * S + 1))
    points.append(Point("machine", {"good_delta": 5}, {"machine": "imm-08"}, T0 + 8000 * S + 1))
    points.append(Point("machine", {"scrap_delta": 1}, {"machine": "imm-08"}, T0 + 1000 * S + 2))
    points.append(Point("machine", {"scrap_delta": 3}, {"machine": "imm-08"}, T0 + 8500 * S + 2))
    return points


def cnc_points() -> list[Point]:
    points = []
    for start in (SPRING - 2 * 3600 * S, AUTUMN - 2 * 3600 * S):  # Saturday 20:00 local
        for minute in range(12 * 60 - 1):  # to Sunday 08:00 local (11 or 13 h of real time around the change)
            t = start + minute * 60 * S
            points.append(Point("cnc", {"mode": "Running", "parts": 100 + minute}, {"machine": "cnc-09"}, t))
    return points


def write_scenarios(path: Path) -> Path:
    """A historian file holding every scenario."""
    with HistorianStore(path) as store:
        store.write(imm_points())
        store.write(cnc_points())
    return path
