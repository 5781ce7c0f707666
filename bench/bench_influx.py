"""InfluxDB sink and durable buffer: throughput, latency, drain rate, and the choices behind them.

    .venv/bin/python -m bench.bench_influx            # full run (about 10 minutes: a 5-minute outage)
    .venv/bin/python -m bench.bench_influx --quick    # smaller, for a smoke check (about 1 minute)
    .venv/bin/python -m bench.bench_influx --sections 4   # the live end-to-end ladder (≤ 3 minutes)

Starts its own VictoriaMetrics (the v2 write path), influxd 1.6 (the v1 path) and Mosquitto
on free ports in a temp folder, and prints:

1. the ceiling: pre-encoded line protocol POSTed straight to the store in 5,000-line batches
   (one request at a time, as the sink does), gzip off and on;
2. HTTP clients for the same bodies: aiohttp (what the sink uses), influxdb-client's async
   and synchronous write APIs;
3. the buffer's disk write: segment files with group commit, against SQLite WAL with
   synchronous=FULL, for the same records (durable before the call returns, both);
4. MQTT → gateway → VictoriaMetrics end to end, live: N publisher processes (``--publishers``,
   default 4: a paced line generator piped into ``mosquitto_pub -l -q 1``, each on its own
   topic; one Python paho process tops out below the gateway) send QoS 1 messages stamped
   with their send time at a fixed share of an offered rate, stepped up (a ladder of
   ~15 s steps, under 3 minutes in all) until the gateway no longer keeps up. Each step gives
   the rate stored, the publish → stored latency p50/p99 and the backlog left when the
   publishers stopped; the steady-state ceiling is the highest step that kept up. Then,
   labelled as such, the rate at which the gateway *drains a backlog* of QoS 1 messages the
   broker queued for its persistent session (not a live figure: no publisher is running);
5. the buffer's drain rate after the store was down for 5 minutes while data kept coming.

Figures are recorded in docs/PERFORMANCE.md ("InfluxDB sink and buffer").
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gzip
import logging
import math
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from array import array
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import psutil
import yaml

from gateway.buffer import DiskQueue, SegmentLog
from gateway.component import State
from gateway.config import load_config
from gateway.lineprotocol import encode_batch
from gateway.point import Point
from gateway.runtime import Gateway
from gateway.sinks.influxdb import InfluxDBSink
from tests.fixtures.influxdb import Influxd
from tests.fixtures.mosquitto import Mosquitto
from tests.fixtures.victoriametrics import VictoriaMetrics

T0 = 1_764_000_000_000_000_000
BATCH = 5_000
_STAMP = re.compile(rb" (\d+)\n")


def bodies(count: int, offset: int) -> list[bytes]:
    """``count`` bodies of 5,000 energy points (2 fields, 2 tags), distinct timestamps."""
    result = []
    for b in range(count):
        base = T0 + (offset + b * BATCH) * 1_000_000
        result.append(
            encode_batch(
                Point(
                    "energy",
                    {"power_w": i * 0.5, "energy_kwh": float(i)},
                    {"line": f"L{i % 4}", "meter": f"m{i % 20:02d}"},
                    base + i * 1_000_000,
                )
                for i in range(BATCH)
            )
        )
    return result


def percentile(ordered: list[float] | list[int] | array[int], q: float) -> float:
    if not len(ordered):
        return math.nan
    return float(ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))])


# --- 1 and 2: the ceiling and the HTTP clients ------------------------------------------------------


async def post_all(url: str, payloads: list[bytes], *, compress: bool) -> float:
    async with aiohttp.ClientSession() as session:
        started = time.perf_counter()
        for body in payloads:
            headers = {}
            if compress:
                body = await asyncio.to_thread(gzip.compress, body, 1, mtime=0)
                headers["Content-Encoding"] = "gzip"
            async with session.post(url, data=body, headers=headers) as response:
                assert response.status == 204, (response.status, await response.text())
        return time.perf_counter() - started


def post_all_blocking(url: str, payloads: list[bytes], *, compress: bool) -> float:
    """:func:`post_all` from synchronous code, on an event loop of its own."""
    return asyncio.run(post_all(url, payloads, compress=compress))


async def influxdb_client_async(base: str, payloads: list[bytes]) -> float:
    from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync

    async with InfluxDBClientAsync(url=base, token="t", org="lab") as client:
        write = client.write_api()
        started = time.perf_counter()
        for body in payloads:
            # influxdb_client annotates the precision as its WritePrecision class, whose values are str
            await write.write(bucket="machines", record=body, write_precision="ns")  # type: ignore[arg-type]
        return time.perf_counter() - started


def influxdb_client_sync(base: str, payloads: list[bytes]) -> float:
    from influxdb_client.client.influxdb_client import InfluxDBClient
    from influxdb_client.client.write_api import SYNCHRONOUS

    with InfluxDBClient(url=base, token="t", org="lab") as client:
        write = client.write_api(write_options=SYNCHRONOUS)
        started = time.perf_counter()
        for body in payloads:
            write.write(bucket="machines", record=body, write_precision="ns")
        return time.perf_counter() - started


def ceiling_and_clients(vm: VictoriaMetrics, influxd: Influxd, batches: int) -> None:
    print(f"\n1. Ceiling: pre-encoded {BATCH:,}-line batches POSTed one at a time ({batches} batches)")
    offset = 0

    def rate(run: Callable[[list[bytes]], float]) -> tuple[float, float]:
        nonlocal offset
        payloads = bodies(batches, offset)
        offset += batches * BATCH
        cpu = time.process_time()
        elapsed = run(payloads)
        return batches * BATCH / elapsed, (time.process_time() - cpu) / elapsed

    v2 = f"{vm.url}/api/v2/write?org=lab&bucket=machines&precision=ns"
    v1 = f"{influxd.url}/write?db=test&precision=ns"
    for url in (v2, v1):  # warm up: the first writes create the series and indexes
        rate(functools.partial(post_all_blocking, url, compress=False))
    for name, url, compress in (
        ("VictoriaMetrics /api/v2/write", v2, False),
        ("VictoriaMetrics /api/v2/write, gzip", v2, True),
        ("InfluxDB 1.6 /write", v1, False),
        ("InfluxDB 1.6 /write, gzip", v1, True),
    ):
        points, cpu = rate(functools.partial(post_all_blocking, url, compress=compress))
        print(f"   {name:40s} {points:>10,.0f} points/s   client CPU {cpu:4.0%}")

    print("\n2. HTTP clients, same pre-encoded bodies to VictoriaMetrics (no gzip)")
    for name, run in (
        ("aiohttp (the sink)", lambda p: asyncio.run(post_all(v2, p, compress=False))),
        ("influxdb-client async write_api", lambda p: asyncio.run(influxdb_client_async(vm.url, p))),
        ("influxdb-client sync write_api", lambda p: influxdb_client_sync(vm.url, p)),
    ):
        results = [rate(run) for _ in range(2)]
        best = max(results)
        print(f"   {name:40s} {best[0]:>10,.0f} points/s   client CPU {best[1]:4.0%}  (best of 2)")


# --- 3: the buffer's disk write ------------------------------------------------------------------


def buffer_write(folder: Path, groups: int) -> None:
    print("\n3. Buffer disk write, durable before returning (records of 100 points, ~9 KB)")
    record = bodies(1, 0)[0]
    lines = record.split(b"\n")
    body = b"\n".join(lines[:100]) + b"\n"
    for per_group in (1, 10, 50):
        log = SegmentLog(folder / f"segments-{per_group}", max_size=1 << 34)
        log.open()
        started = time.perf_counter()
        for _ in range(groups):
            log.append([(body, 100)] * per_group)
        elapsed = time.perf_counter() - started
        log.close()
        print(
            f"   segment files, {per_group:>2} record(s) per group commit   "
            f"{groups * per_group * 100 / elapsed:>10,.0f} points/s   {elapsed / groups * 1e3:6.2f} ms per commit"
        )
        db = sqlite3.connect(folder / f"sqlite-{per_group}.db", isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("CREATE TABLE records (id INTEGER PRIMARY KEY, created INTEGER, points INTEGER, body BLOB)")
        started = time.perf_counter()
        for _ in range(groups):
            db.execute("BEGIN")
            db.executemany(
                "INSERT INTO records (created, points, body) VALUES (?, ?, ?)",
                [(time.time_ns(), 100, body)] * per_group,
            )
            db.execute("COMMIT")
        elapsed = time.perf_counter() - started
        db.close()
        print(
            f"   SQLite WAL synchronous=FULL, {per_group:>2} per transaction  "
            f"{groups * per_group * 100 / elapsed:>10,.0f} points/s   {elapsed / groups * 1e3:6.2f} ms per commit"
        )


# --- 4 and 5: end to end ---------------------------------------------------------------------------


def publisher_main(host: str, port: int, count: int, rate: float, start: int) -> None:
    """Runs in its own process: publish ``count`` QoS 1 messages at ``rate`` (0: full speed)."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-publisher-{start}", protocol=paho.MQTTv5)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    acked = 0

    def on_publish(*_: Any) -> None:
        nonlocal acked
        acked += 1

    client.on_publish = on_publish
    client.connect(host, port)
    client.loop_start()
    started = time.monotonic()
    for n in range(count):
        while n - acked > 20_000:  # message ids wrap at 65,535: keep fewer than that outstanding
            time.sleep(0.001)
        i = start + n
        message = orjson.dumps({"p": i * 0.5, "e": i, "ts": time.time_ns()})
        client.publish(f"factory/L{i % 4}/energy/m{i % 20:02d}", message, qos=1)
        if rate and n % 50 == 49:
            delay = started + (n + 1) / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
    deadline = time.monotonic() + 300
    while acked < count and time.monotonic() < deadline:
        time.sleep(0.01)
    client.disconnect()
    client.loop_stop()


def start_publisher(broker: Mosquitto, count: int, rate: float, start: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.bench_influx",
            "--publisher",
            broker.host,
            str(broker.port),
            str(count),
            str(rate),
            str(start),
        ]
    )


def gateway_config(folder: Path, broker: Mosquitto, vm: VictoriaMetrics, flush_interval: str) -> Path:
    config = {
        "gateway": {
            "name": "bench",
            "data_dir": str(folder / "data"),
            "http": {"enabled": False},
            "buffer": {"path": str(folder / "buffer"), "max_size": "4GiB"},
        },
        "sinks": [
            {
                "name": "influx",
                "type": "influxdb",
                "url": vm.url,
                "org": "lab",
                "bucket": "machines",
                "batch_size": BATCH,
                "flush_interval": flush_interval,
                "gzip": False,
            }
        ],
        "connectors": [
            {
                "name": "energy",
                "type": "mqtt",
                "broker": broker.url,
                "client_id": f"bench-gateway-{flush_interval}",
                "qos": 1,
                "topics": [
                    {
                        "filter": "factory/+/energy/+",
                        "tags_from_topic": {"line": 1, "meter": 3},
                        "format": "json",
                        "measurement": "energy",
                        "time": {"path": "ts", "unit": "ns"},
                        "fields": {"power_w": "p", "energy_kwh": "e"},
                    }
                ],
            }
        ],
    }
    path = folder / f"gateway-{flush_interval}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


class Probe:
    """Records, for every point the store confirms, how long after its publication that was."""

    def __init__(self, sink: InfluxDBSink) -> None:
        self.latencies = array("q")
        self.confirmed = 0
        self.first: float | None = None
        self.last = 0.0
        self.progress: list[tuple[float, int]] = []  # (monotonic time, points confirmed so far)
        write = sink.write_lines

        async def timed(body: bytes, count: int) -> None:
            await write(body, count)
            now = time.time_ns()
            self.latencies.extend(now - int(stamp) for stamp in _STAMP.findall(body))
            self.confirmed += count
            self.last = time.monotonic()
            self.progress.append((self.last, self.confirmed))
            if self.first is None:
                self.first = self.last

        # the probe wraps this one sink's write on purpose; mypy refuses any assignment to a method
        sink.write_lines = timed  # type: ignore[method-assign]

    def reset(self) -> None:
        self.latencies = array("q")
        self.confirmed = 0
        self.first = None
        self.progress = []

    def steady_rate(self) -> float:
        """Points/s between 10 % and 100 % of the run (no publisher start-up, no warm-up)."""
        start = next((t, n) for t, n in self.progress if n >= self.confirmed * 0.1)
        return (self.confirmed - start[1]) / max(1e-9, self.last - start[0])


async def wait_for(predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark condition not reached")
        await asyncio.sleep(0.05)


async def run_gateway(config_path: Path, body: Callable[[Gateway, Probe], Awaitable[None]]) -> None:
    async with Gateway(load_config(config_path)) as gateway:
        sink = next(s for s in gateway.sinks if isinstance(s, InfluxDBSink))
        probe = Probe(sink)
        source = gateway.sources[0]
        await wait_for(
            lambda: bool(source.status.state is State.RUNNING and source.status.detail.get("subscribed")), 30
        )
        await body(gateway, probe)


def confirmed_at_least(probe: Probe, count: int) -> bool:
    return probe.confirmed >= count


#: Writes ``count`` JSON messages, one a line, stamped with their send time, at ``rate`` lines/s
#: (0: full speed), for ``mosquitto_pub -l``. Plain Python, no imports of the project (fast start).
LINES = """
import sys, time
count, rate, start = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
out = sys.stdout
began = time.monotonic()
for n in range(count):
    i = start + n
    out.write('{"p":%r,"e":%d,"ts":%d}\\n' % (i * 0.5, i, time.time_ns()))
    if n % 50 == 49:
        out.flush()
        if rate:
            delay = began + (n + 1) / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
out.flush()
"""


class LinePublisher:
    """A line generator piped into ``mosquitto_pub -l -q 1`` (C: one process sends > 100k msg/s here)."""

    def __init__(self, broker: Mosquitto, topic: str, count: int, rate: float, start: int) -> None:
        self.lines = subprocess.Popen(
            [sys.executable, "-S", "-c", LINES, str(count), str(rate), str(start)], stdout=subprocess.PIPE
        )
        self.mqtt = subprocess.Popen(
            [
                "mosquitto_pub",
                "-h",
                broker.host,
                "-p",
                str(broker.port),
                "-q",
                "1",
                "-t",
                topic,
                "-l",
                "-i",
                f"bench-pub-{start}",
            ],
            stdin=self.lines.stdout,
        )
        assert self.lines.stdout is not None
        self.lines.stdout.close()  # mosquitto_pub holds the pipe now

    def wait(self) -> int:
        self.lines.wait()
        return self.mqtt.wait()


def start_publishers(broker: Mosquitto, processes: int, count: int, rate: float, start: int) -> list[Any]:
    """``processes`` line publishers sharing ``count`` messages at ``rate`` msg/s in all (0: full speed),
    each on its own topic (meter)."""
    share = count // processes
    return [
        LinePublisher(broker, f"factory/L{k % 4}/energy/m{k:02d}", share, rate / processes, start + k * share)
        for k in range(processes)
    ]


def _cpu_seconds(process: psutil.Process | None) -> float:
    """User + system CPU seconds of a process and its children (0 if it is gone)."""
    if process is None:
        return 0.0
    try:
        times = process.cpu_times()
    except psutil.Error:
        return 0.0
    return float(times.user + times.system)


def load_generator(broker: Mosquitto, processes: int, messages: int) -> float:
    """msg/s the publishers reach alone, at full speed (the broker acknowledges, nobody reads)."""
    started = time.monotonic()
    for publisher in start_publishers(broker, processes, messages, 0, 50_000_000):
        publisher.wait()
    return messages // processes * processes / (time.monotonic() - started)


def disk_buffer(gateway: Gateway) -> SegmentLog:
    """The files of the influx sink's durable buffer (its route's disk queue)."""
    queue = gateway.routes["influx"].queue
    assert isinstance(queue, DiskQueue)
    return queue.store


def live_ladder(
    folder: Path, broker: Mosquitto, vm: VictoriaMetrics, processes: int, rates: list[float], step: float
) -> None:
    """Offered rates stepped up while the gateway runs; stops at the first step it cannot keep up with."""
    config = gateway_config(folder, broker, vm, "100ms")

    async def ladder(gateway: Gateway, probe: Probe) -> None:
        route = gateway.routes["influx"]
        buffer = disk_buffer(gateway)
        next_start = 100_000_000
        kept_up = 0.0
        store = psutil.Process(vm.process.pid) if vm.process is not None else None
        for rate in rates:
            count = int(rate * step) // processes * processes
            probe.reset()
            cpu = time.process_time()
            store_cpu = _cpu_seconds(store)
            writes = route.status.histograms.get("write_seconds")
            writes_before = (writes.count, writes.sum) if writes is not None else (0, 0.0)
            started = time.monotonic()
            publishers = start_publishers(broker, processes, count, rate, next_start)
            next_start += count
            warmed = started + 3.0  # publisher start-up and the first batches are not the steady state
            await asyncio.sleep(max(0.0, warmed - time.monotonic()))
            at_warm = probe.confirmed
            warm_latencies = len(probe.latencies)
            for publisher in publishers:
                await asyncio.to_thread(publisher.wait)
            published = time.monotonic()
            at_end = probe.confirmed
            backlog = count - at_end
            buffered = buffer.depth_points  # of the backlog, what the durable buffer holds
            window = probe.latencies[warm_latencies : len(probe.latencies)]
            stored_rate = (at_end - at_warm) / max(1e-9, published - warmed)
            cpu_share = (time.process_time() - cpu) / (published - started)
            store_share = (_cpu_seconds(store) - store_cpu) / (published - started)
            writes = route.status.histograms.get("write_seconds")
            n_writes = (writes.count if writes is not None else 0) - writes_before[0]
            write_time = (writes.sum if writes is not None else 0.0) - writes_before[1]
            # let the gateway finish this step before the next one (bounded: the ladder stops anyway)
            try:
                await wait_for(functools.partial(confirmed_at_least, probe, count), 30)
                caught_up = time.monotonic() - published
            except TimeoutError:
                caught_up = float("inf")
            ordered = sorted(window)
            # kept up: stored at the offered rate in the window, and nothing left over a moment after
            keeps_up = stored_rate >= 0.95 * rate and caught_up < 2.0
            print(
                f"   offered {rate:>7,.0f} msg/s: stored {stored_rate:>7,.0f} points/s (from 3 s in to the last "
                f"publish); publish → stored p50 {percentile(ordered, 0.5) / 1e6:7.1f} ms p99 "
                f"{percentile(ordered, 0.99) / 1e6:7.1f} ms ({len(ordered):,} points); backlog at the end "
                f"{backlog:,} (in the durable buffer {buffered:,}), caught up {caught_up:.1f} s later; "
                f"gateway CPU {cpu_share:.0%}, VictoriaMetrics CPU {store_share:.0%}; {n_writes} writes to the "
                f"store, each {write_time / max(1, n_writes) * 1000:.0f} ms on average, busy "
                f"{write_time / max(1e-9, published - started):.0%} of the step — "
                f"{'keeps up' if keeps_up else 'FALLS BEHIND'}",
                flush=True,
            )
            if not keeps_up:
                break
            kept_up = rate
        print(f"   live steady-state ceiling: {kept_up:,.0f} msg/s = points/s kept up with ({processes} publishers)")

    asyncio.run(run_gateway(config, ladder))


def end_to_end(
    folder: Path,
    broker: Mosquitto,
    vm: VictoriaMetrics,
    messages: int,
    processes: int,
    rates: list[float],
    step: float,
) -> None:
    print("\n4. MQTT → gateway → VictoriaMetrics (QoS 1, 1 point of 2 fields per message, batch_size 5000)")
    started = time.monotonic()
    start_publisher(broker, messages, 0, 0).wait()
    print(
        f"   load generator alone: one Python paho process (QoS 1) {messages / (time.monotonic() - started):,.0f} msg/s"
    )
    print(
        f"   load generator alone: {processes} x mosquitto_pub -l (QoS 1) at full speed "
        f"{load_generator(broker, processes, messages):,.0f} msg/s"
    )

    print(f"   live, {processes} publisher processes, flush_interval 100ms, {step:.0f} s per step:")
    live_ladder(folder, broker, vm, processes, rates, step)

    # Not a live figure: the gateway drains a backlog held by the broker for its persistent session.
    config = gateway_config(folder, broker, vm, "1s")

    async def nothing(gateway: Gateway, probe: Probe) -> None:
        pass

    asyncio.run(run_gateway(config, nothing))  # creates the persistent session
    for publisher in start_publishers(broker, processes, messages, 0, 1_000_000):  # queued by the broker
        publisher.wait()
    started = time.monotonic()
    cpu = time.process_time()

    async def drain_backlog(gateway: Gateway, probe: Probe) -> None:
        await wait_for(lambda: probe.confirmed >= messages // processes * processes, 600)
        elapsed = time.monotonic() - started
        print(
            f"   backlog DRAIN (not live): {messages:,} QoS 1 messages queued by the broker, from the gateway's start "
            f"to the store's last confirmation {elapsed:.1f} s = {messages / elapsed:,.0f} points/s (gateway CPU "
            f"{(time.process_time() - cpu) / elapsed:.0%} of one core)"
        )

    asyncio.run(run_gateway(config, drain_backlog))


def drain_after_outage(folder: Path, broker: Mosquitto, vm: VictoriaMetrics, outage: float, rate: float) -> None:
    print(f"\n5. Drain after a {outage:.0f} s outage of the store, {rate:,.0f} msg/s arriving throughout")

    async def body(gateway: Gateway, probe: Probe) -> None:
        route = gateway.routes["influx"]
        buffer = disk_buffer(gateway)
        total = int(rate * (outage + 120))
        vm.stop()
        publisher = start_publisher(broker, total, rate, 20_000_000)
        await asyncio.sleep(outage)
        depth = buffer.depth_points
        size = buffer.depth_bytes
        route._writer.backoff.reset()  # the next retry waits its first delay again, not the capped one
        vm.start()
        probe.reset()
        started = time.monotonic()
        await wait_for(lambda: buffer.depth_points < rate, outage * 2 + 120)
        ended = time.monotonic()
        assert probe.first is not None
        sending = ended - probe.first
        print(
            f"   backlog {depth:,} points ({size / 2**20:.0f} MiB on disk); the store back, the next retry came after "
            f"{probe.first - started:.1f} s; then sent in {sending:.1f} s: {probe.confirmed / sending:,.0f} points/s "
            f"written, {(depth - buffer.depth_points) / sending:,.0f} points/s net of the new data"
        )
        publisher.terminate()
        await asyncio.to_thread(publisher.wait)

    asyncio.run(run_gateway(gateway_config(folder, broker, vm, "1s"), body))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke check")
    parser.add_argument("--sections", default="12345", help="which sections to run, e.g. 45 (default: all)")
    parser.add_argument("--publishers", type=int, default=4, help="publisher processes for the live run (4)")
    parser.add_argument("--publisher", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.publisher:
        host, port, count, rate, start = args.publisher
        publisher_main(host, int(port), int(count), float(rate), int(start))
        return
    logging.basicConfig(level=logging.WARNING)
    load = os.getloadavg()[0]
    print(f"bench_influx on {os.cpu_count()} cores, load average {load:.1f}{' (quick)' if args.quick else ''}")
    with tempfile.TemporaryDirectory(prefix="bench-influx-") as tmp:
        root = Path(tmp)
        vm = VictoriaMetrics(root / "vm")
        influxd = Influxd(root / "influxd")
        broker = Mosquitto(root / "mosquitto")
        for server in (vm, influxd, broker):
            server.start()
        try:
            influxd.create_database("test")
            if set("12") & set(args.sections):
                ceiling_and_clients(vm, influxd, 10 if args.quick else 40)
            if "3" in args.sections:
                buffer_write(root, 200 if args.quick else 1000)
            if "4" in args.sections:
                rates = (
                    [2_000.0, 5_000.0]
                    if args.quick
                    else [5_000.0, 10_000.0, 20_000.0, 30_000.0, 40_000.0, 50_000.0, 55_000.0, 60_000.0, 70_000.0]
                )
                end_to_end(
                    root, broker, vm, 10_000 if args.quick else 100_000, args.publishers, rates, 3 if args.quick else 15
                )
            if "5" in args.sections:
                drain_after_outage(root, broker, vm, 5 if args.quick else 300, 2_000 if args.quick else 5_000)
        finally:
            for server in (broker, influxd, vm):
                server.stop()


if __name__ == "__main__":
    main()
