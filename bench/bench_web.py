"""Web page and API: range query latency and page load time to the first chart.

    .venv/bin/python -m bench.bench_web            # full run (about a minute)
    .venv/bin/python -m bench.bench_web --quick    # 1 day of data instead of 7, fewer rounds

Builds a historian file with 7 days of one 1 Hz series (604,800 points), serves it with the
gateway's HTTP server (uvicorn on this event loop, as in the gateway), and prints:

1. the range query reduced to 1,000 buckets: the store alone, and through the API
   (``GET /api/series/{id}/range?from=-7d&points=1000``: store + JSON + HTTP), p50/p95;
2. page load in headless Chromium (Debian's /usr/bin/chromium) until the machine page's
   first chart has data, for the default 1 h range and for 7 days (a fresh browser context
   each round: nothing cached); and the overview page until its first card;
3. kept-alive requests (``GET /healthz`` on one connection: a delayed ACK would add ~40 ms to
   each) and live updates (a changed value until its ``overview`` event on ``/api/events``);
4. the latest-values tap on every emitted batch: ns per point.

Figures are recorded in docs/PERFORMANCE.md ("Web page and API").
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from gateway.component import Status
from gateway.history import ThreadedHistory
from gateway.http.app import AppContext
from gateway.http.config import HttpSettings
from gateway.http.server import HttpServer
from gateway.latest import LatestValues, seed_from_history
from gateway.point import Point
from gateway.sinks.historian.store import HistorianStore
from tests.fixtures.browser import CHROMIUM, CHROMIUM_ARGS

SECOND = 1_000_000_000
TAGS = {"line": "A", "machine": "bench-1"}


def build_history(path: Path, days: int) -> int:
    """One 1 Hz series ending now (plus the machine's state); returns the series id of spindle_rpm."""
    store = HistorianStore(path)
    now = time.time_ns() // SECOND * SECOND
    count = days * 86400
    start = now - (count - 1) * SECOND
    batch: list[Point] = []
    for i in range(count):
        batch.append(Point("machine", {"spindle_rpm": 8000.0 + (i % 600) * 2.5}, TAGS, start + i * SECOND))
        if len(batch) == 10_000:
            store.write(batch)
            batch = []
    batch.append(Point("machine", {"state": "running"}, TAGS, now))
    store.write(batch)
    [info] = [s for s in store.series() if s.field == "spindle_rpm"]
    store.close()
    return int(info.id)


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"p50 {statistics.median(ordered) * 1000:7.1f} ms   p95 {p95 * 1000:7.1f} ms   (n={len(ordered)})"


def bench_store(path: Path, series_id: int, days: int, rounds: int) -> None:
    store = HistorianStore(path, readonly=True)
    now = time.time_ns()
    timings = []
    for _ in range(rounds):
        started = time.perf_counter()
        buckets = store.range(series_id, now - days * 86400 * SECOND, now, points=1000)
        timings.append(time.perf_counter() - started)
    store.close()
    print(f"  store.range, {days} d → {len(buckets)} buckets:      {percentiles(timings)}")


async def bench_api(url: str, series_id: int, days: int, rounds: int) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        timings = []
        size = 0
        for _ in range(rounds):
            started = time.perf_counter()
            response = await client.get(f"/api/series/{series_id}/range", params={"from": f"-{days}d", "points": 1000})
            response.raise_for_status()
            timings.append(time.perf_counter() - started)
            size = len(response.content)
        buckets = len(response.json()["buckets"])
    print(
        f"  GET …/range?from=-{days}d&points=1000 → {buckets} buckets, {size / 1024:.0f} KiB JSON: "
        f"{percentiles(timings)}"
    )


async def bench_page(url: str, rounds: int, days: int) -> None:
    from playwright.async_api import async_playwright

    card = "line=A,machine=bench-1"
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        results: dict[str, list[float]] = {"overview: first card": [], "machine page, 1 h: first chart with data": []}
        if days >= 7:
            results["machine page, 7 days: chart with data"] = []
        for _ in range(rounds):
            context = await browser.new_context(viewport={"width": 1280, "height": 800}, locale="en-GB")
            page = await context.new_page()
            started = time.perf_counter()
            await page.goto(url + "/")
            await page.wait_for_selector(f'.card[data-id="{card}"]')
            results["overview: first card"].append(time.perf_counter() - started)
            await context.close()

            context = await browser.new_context(viewport={"width": 1280, "height": 800}, locale="en-GB")
            page = await context.new_page()
            started = time.perf_counter()
            await page.goto(f"{url}/#/machine/{card.replace('=', '%3D').replace(',', '%2C')}")
            await page.wait_for_function("() => Number(document.querySelector('.chart')?.dataset.points) > 0")
            results["machine page, 1 h: first chart with data"].append(time.perf_counter() - started)
            if days >= 7:
                before = await page.evaluate("() => document.querySelector('.chart').dataset.points")
                started = time.perf_counter()
                await page.click('[data-range="7d"]')
                await page.wait_for_function(
                    "(before) => document.querySelector('.chart').dataset.points !== before", arg=before
                )
                results["machine page, 7 days: chart with data"].append(time.perf_counter() - started)
            await context.close()
        await browser.close()
    for label, samples in results.items():
        print(f"  {label:45s} {percentiles(samples)}")


async def bench_keep_alive(url: str, rounds: int) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        (await client.get("/healthz")).raise_for_status()
        timings = []
        for _ in range(rounds):
            started = time.perf_counter()
            (await client.get("/healthz")).raise_for_status()
            timings.append(time.perf_counter() - started)
    print(f"  GET /healthz, one kept-alive connection:   {percentiles(timings)}   fastest {min(timings) * 1000:.1f} ms")


async def bench_live_update(url: str, ctx: AppContext, rounds: int) -> None:
    """A value changed in the latest values until the overview event that carries it arrives."""
    timings = []
    async with (
        httpx.AsyncClient(base_url=url, timeout=30) as client,
        client.stream("GET", "/api/events", params={"topics": "overview"}) as response,
    ):
        lines = response.aiter_lines()
        async for line in lines:  # the overview every stream starts with
            if line.startswith("data: "):
                break
        for i in range(rounds):
            # The server sends at most one overview per overview_interval: wait it out first, so
            # that each round measures the reaction to a change, not that pause.
            await asyncio.sleep(ctx.overview_interval * 1.5)
            value = 1.0e6 + i
            started = time.perf_counter()
            ctx.latest.update([Point("machine", {"spindle_rpm": value}, TAGS, time.time_ns())])
            async for line in lines:
                if line.startswith("data: ") and str(value) in line:
                    timings.append(time.perf_counter() - started)
                    break
    print(f"  a changed value to its overview event:     {percentiles(timings)}")


def bench_tap(points_per_batch: int = 500, batches: int = 400) -> None:
    latest = LatestValues()
    batch = [
        Point("energy", {"power_w": float(i), "energy_kwh": 1.0 * i}, {"line": "A", "meter": f"m{i % 50}"}, i)
        for i in range(points_per_batch)
    ]
    started = time.perf_counter()
    for _ in range(batches):
        latest.update(batch, "energy")
    elapsed = time.perf_counter() - started
    total = points_per_batch * batches
    print(f"  latest-values tap: {elapsed / total * 1e9:.0f} ns per point ({total / elapsed / 1e6:.2f} M points/s)")


async def main(quick: bool) -> None:
    days = 1 if quick else 7
    rounds = 10 if quick else 30
    page_rounds = 3 if quick else 7
    with tempfile.TemporaryDirectory(prefix="bench-web-") as folder:
        path = Path(folder) / "history.db"
        started = time.perf_counter()
        series_id = build_history(path, days)
        print(f"historian: {days * 86400:,} points of one 1 Hz series written in {time.perf_counter() - started:.1f} s")
        print("1. range query, 1,000 buckets")
        bench_store(path, series_id, days, rounds)
        statuses: list[Status] = []
        history = ThreadedHistory(lambda: HistorianStore(path, readonly=True), name="bench")
        ctx = AppContext(
            name="bench",
            settings=HttpSettings(listen="127.0.0.1:0"),
            statuses=lambda: statuses,
            history=lambda: history,
        )
        await seed_from_history(ctx.latest, history)  # what the runtime does at start
        async with HttpServer(ctx) as server:
            await bench_api(server.url, series_id, days, rounds)
            print("2. page load in headless Chromium (fresh context each round)")
            await bench_page(server.url, page_rounds, days)
            print("3. kept-alive requests and live updates (SSE)")
            await bench_keep_alive(server.url, rounds * 10)
            await bench_live_update(server.url, ctx, 3 if quick else 10)
    print("4. overhead on the data path")
    bench_tap()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 day of data, fewer rounds")
    args: Any = parser.parse_args()
    asyncio.run(main(args.quick))
