"""KPI engine: a week of 1 Hz state samples and counters → KPIs, and ten machines' overview.

    .venv/bin/python -m bench.bench_kpi            # full run (about two minutes, most of it writing the file)
    .venv/bin/python -m bench.bench_kpi --quick    # 1 day instead of 7, fewer rounds (the suite's smoke run)

Builds a historian file with one machine (``imm-01``) sampled every second for a week — its state
(changing every 1–10 minutes among the five categories and an unknown value), a parts counter
(one part per 10 s while running, reset once a day) and a scrap counter — and nine more machines
sampled every second since local midnight. Then prints:

1. the ceiling: reading the week's raw values alone (``HistorianStore.read`` of the state and the
   counters, what any computation from raw values costs at least);
2. the week's KPIs by a fresh engine (nothing cached: it reads the raw values and builds its
   hourly rollups), then by the same engine again (from its rollups in memory), p50/p95; with
   by=day and by=hour rows too; then by an engine started anew on the rollups file the first one
   wrote (what a restarted gateway does);
3. the overview of ten machines with today's OEE (``GET /api/machines``' work), from the rollups;
4. what following the live values costs per emitted point (the observer in every ``emit``).

Figures are recorded in docs/PERFORMANCE.md ("KPI engine").
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from gateway.history import ThreadedHistory
from gateway.kpi.config import MachineConfig
from gateway.kpi.engine import KpiEngine
from gateway.kpi.rollups import RollupStore
from gateway.latest import LatestValues
from gateway.point import Point
from gateway.sinks.historian.store import HistorianStore

SECOND = 1_000_000_000
DAY = 86400 * SECOND
STATES = (("PRODUCING", 0.6), ("IDLE", 0.12), ("ALARM", 0.08), ("SETUP", 0.08), ("BREAK", 0.08), ("CLEANING", 0.04))


def machine(name: str) -> MachineConfig:
    return MachineConfig.model_validate(
        {
            "name": name,
            "tags": {"machine": name},
            "state": {
                "measurement": "machine",
                "field": "state",
                "map": {
                    "running": ["PRODUCING"],
                    "idle": ["IDLE"],
                    "down": ["ALARM"],
                    "setup": ["SETUP"],
                    "planned_stop": ["BREAK"],
                },
                "timeout": "5m",
            },
            "parts": {"measurement": "machine", "field": "cycle_count"},
            "scrap": {"measurement": "machine", "field": "scrap_count"},
            "ideal_cycle_time": "9s",
            "shifts": [
                {"name": "A", "from": "06:00", "to": "14:00"},
                {"name": "B", "from": "14:00", "to": "22:00"},
                {"name": "C", "from": "22:00", "to": "06:00"},
            ],
            "timezone": "Europe/Rome",
        }
    )


def write_machine(store: HistorianStore, name: str, start: int, end: int, rng: random.Random) -> int:
    """1 Hz samples of one machine between two times; returns how many values were written."""
    tags = {"machine": name}
    state, left, parts, scrap = "PRODUCING", 0, 0, 0
    batch: list[Point] = []
    written = 0
    for t in range(start, end, SECOND):
        if left <= 0:
            state = rng.choices([s for s, _ in STATES], [w for _, w in STATES])[0]
            left = rng.randint(60, 600)
        left -= 1
        second = t // SECOND
        if state == "PRODUCING" and second % 10 == 0:
            parts += 1
            if rng.random() < 0.02:
                scrap += 1
        if second % 86400 == 3 * 3600:  # the counters are reset every night at 03:00 UTC
            parts = scrap = 0
        batch.append(Point("machine", {"state": state, "cycle_count": parts, "scrap_count": scrap}, tags, t))
        if len(batch) == 10_000:
            store.write(batch)
            written += 3 * len(batch)
            batch = []
    store.write(batch)
    return written + 3 * len(batch)


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"p50 {statistics.median(ordered) * 1000:8.1f} ms   p95 {p95 * 1000:8.1f} ms   (n={len(ordered)})"


async def timed(rounds: int, call: Callable[[], Awaitable[Any]]) -> list[float]:
    timings = []
    for _ in range(rounds):
        started = time.perf_counter()
        await call()
        timings.append(time.perf_counter() - started)
    return timings


async def run(path: Path, days: int, now: int, rounds: int) -> None:
    week_start = now - days * DAY
    # 1. the ceiling: the raw values alone
    store = HistorianStore(path, readonly=True)
    started = time.perf_counter()
    values = store.read("machine", fields=["state", "cycle_count", "scrap_count"], tags={"machine": "imm-01"})
    ceiling = time.perf_counter() - started
    store.close()
    print(f"  ceiling: read {len(values):,} raw values of {days} d (HistorianStore.read): {ceiling * 1000:8.1f} ms")

    reader = ThreadedHistory(lambda: HistorianStore(path, readonly=True), "bench")
    machines = [machine(f"imm-{i:02d}") for i in range(1, 11)]
    try:
        # 2. a week's KPIs: cold, then from the rollups
        engine = KpiEngine(machines, lambda: reader, now=lambda: now)
        started = time.perf_counter()
        week = await engine.kpi("imm-01", week_start, now)
        cold = time.perf_counter() - started
        print(
            f"  {days} d of imm-01, fresh engine (reads raw, builds rollups): {cold * 1000:8.1f} ms  "
            f"(OEE {week['oee']}, {week['parts']} parts)"
        )
        print(
            f"  {days} d of imm-01 from the rollups:           "
            f"{percentiles(await timed(rounds, lambda: engine.kpi('imm-01', week_start, now)))}"
        )
        print(
            f"  {days} d of imm-01, by=day:                    "
            f"{percentiles(await timed(rounds, lambda: engine.kpi('imm-01', week_start, now, by='day')))}"
        )
        print(
            f"  {days} d of imm-01, by=hour ({days * 24} rows):         "
            f"{percentiles(await timed(rounds, lambda: engine.kpi('imm-01', week_start, now, by='hour')))}"
        )
        # ... and after a restart: a new engine on the rollups file the first one wrote
        rollups = RollupStore(path.parent / "kpi" / "rollups.db", logging.LoggerAdapter(logging.getLogger("bench"), {}))
        engine.rollups = rollups
        await engine.flush()
        restarts = []
        for _ in range(rounds):
            fresh = KpiEngine(machines, lambda: reader, now=lambda: now, rollups=rollups)
            started = time.perf_counter()
            again = await fresh.kpi("imm-01", week_start, now)
            restarts.append(time.perf_counter() - started)
        assert again == week, "the rollups file gives other numbers than the raw values"
        print(f"  {days} d of imm-01 after a restart (rollups file): {percentiles(restarts)}")
        engine.rollups = None
        await rollups.aclose()
        # 3. ten machines now (today's OEE, the current shift, the state since when)
        started = time.perf_counter()
        await engine.overview(max_age=0)
        first = time.perf_counter() - started
        print(f"  overview of 10 machines, first (reads today):   {first * 1000:8.1f} ms")
        print(
            "  overview of 10 machines, from the rollups:       "
            f"{percentiles(await timed(rounds, lambda: engine.overview(max_age=0)))}"
        )
        # 4. following the live values: the observer's cost per emitted point
        live = KpiEngine(machines, lambda: reader, now=lambda: now)
        latest = LatestValues()
        batches = [
            [
                Point(
                    "machine", {"state": "PRODUCING", "cycle_count": i}, {"machine": f"imm-{i % 10 + 1:02d}"}, now + i
                )
                for i in range(b * 1000, (b + 1) * 1000)
            ]
            for b in range(50)
        ]
        other = [[Point("energy", {"power_w": 1.0}, {"meter": "m1"}, now + i) for i in range(1000)] for _ in range(50)]
        for label, data in (("a machine's points", batches), ("other points", other)):
            plain = LatestValues()
            started = time.perf_counter()
            for batch in data:
                plain.update(batch)
            bare = time.perf_counter() - started
            live.attach(latest)
            started = time.perf_counter()
            for batch in data:
                latest.update(batch)
            followed = time.perf_counter() - started
            live.detach()
            print(
                f"  live, {label}: LatestValues.update {bare / 50_000 * 1e9:6.0f} ns/point, "
                f"with the KPI observer {followed / 50_000 * 1e9:6.0f} ns/point"
            )
    finally:
        await reader.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 day of data instead of 7, fewer rounds")
    args = parser.parse_args()
    days, rounds = (1, 5) if args.quick else (7, 30)
    rng = random.Random(12)
    print(f"bench_kpi: {days} d at 1 Hz for one machine, today at 1 Hz for nine more (load {os.getloadavg()[0]:.1f})")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "history.db"
        now = time.time_ns() // SECOND * SECOND
        started = time.perf_counter()
        with HistorianStore(path) as store:
            written = write_machine(store, "imm-01", now - days * DAY, now, rng)
            today = now - now % DAY
            for i in range(2, 11):
                written += write_machine(store, f"imm-{i:02d}", max(today - 3600 * SECOND, now - DAY), now, rng)
        print(f"  wrote {written:,} values in {time.perf_counter() - started:.0f} s")
        asyncio.run(run(path, days, now, rounds))


if __name__ == "__main__":
    main()
