"""MQTT sink figures (docs/PERFORMANCE.md): ``python -m bench.bench_mqtt_sink [--quick]``.

Points of one field each (one MQTT message per point, the contract's UNS template
``lab/{line}/{machine}/{measurement}/{field}``, 100 machines), QoS 1 with every PUBACK awaited,
to a real Mosquitto started in a temp folder with no subscriber. In the same run, one after the
other (never at once, so they do not measure each other):

1. **the sink from its buffer**: the points are first put into the sink's durable buffer (as
   the sources would), then the route is started and timed until the broker has acknowledged
   the last one and the buffer is empty: what a plant gets when a backlog drains, with the disk
   reads, line-protocol parsing and confirmations included; the gateway process's CPU over it;
2. **the sink live**: the route running while the points are put as fast as they come (the put
   side's encoding and disk syncs share the same core);
3. **the sink's write alone**: ``MqttSink.write`` on ready-made points, batches of 5,000 (what
   the route calls), QoS 1 and QoS 2, and QoS 1 to a broker with Mosquitto's default
   ``max_inflight_messages 20`` (which it announces as its receive maximum: 20 in flight);
4. **the link alone**: ``publish_many`` of the same messages already encoded, batches of 5,000;
5. **bare clients beside it**: a paho publisher (its network thread, ≤ 1,000 in flight) and the
   raw socket publisher of bench_mqtt (≤ 1,000 in flight, no bookkeeping at all): the ceiling of
   the broker on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from bench.bench_mqtt import paho_publisher, publish_qos1
from gateway.buffer import DiskQueue
from gateway.component import RuntimeContext, State
from gateway.mqtt.link import LinkOptions, MqttLink
from gateway.point import Point
from gateway.route import Route
from gateway.settings import BufferSettings
from gateway.sinks.mqtt.config import MqttSinkConfig
from gateway.sinks.mqtt.sink import MqttSink
from tests.fixtures.mosquitto import Mosquitto

T0 = 1_714_564_800_000_000_000
TOPIC = "lab/{line}/{machine}/{measurement}/{field}"


def make_points(count: int) -> list[Point]:
    return [
        Point("machine", {"spindle_rpm": i * 0.5}, {"line": f"L{i % 4}", "machine": f"cnc-{i % 100:03d}"}, T0 + i)
        for i in range(count)
    ]


def sink(folder: Path, port: int, name: str, qos: int = 1) -> tuple[MqttSink, MqttSinkConfig]:
    config = MqttSinkConfig.model_validate(
        {"name": name, "type": "mqtt", "broker": f"mqtt://127.0.0.1:{port}", "topic": TOPIC, "qos": qos}
    )
    context = RuntimeContext("bench", folder, logging.LoggerAdapter(logging.getLogger(f"bench.{name}"), {}))
    return MqttSink(config, context), config


def _figure(value: float | str) -> str:
    """A rate with thousands separators, or the time-out text that stands in for it."""
    return value if isinstance(value, str) else f"{value:,.0f}"


async def _until(predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError("timed out")
        await asyncio.sleep(0.002)


async def from_buffer(folder: Path, port: int, points: list[Point], *, live: bool) -> tuple[float, float, int]:
    """(points/s, CPU % of one core, points left in the buffer) through the route and its disk queue."""
    mqtt_sink, config = sink(folder, port, f"uns-{'live' if live else 'drain'}")
    queue = DiskQueue(folder / mqtt_sink.name, BufferSettings(path=folder), config.batch_size, mqtt_sink.log)
    route = Route(mqtt_sink, config, queue)
    process = psutil.Process()
    count = len(points)

    async def put_all() -> None:
        for start in range(0, count, 1000):
            await route.put(points[start : start + 1000], lambda: None)

    if live:
        task = asyncio.create_task(route.run())
        await _until(lambda: route.status.state is State.RUNNING, 30)
        cpu = process.cpu_times()
        began = time.perf_counter()
        await put_all()
    else:
        async with asyncio.TaskGroup() as tasks:  # the queue's committer writes the backlog to disk
            committer = tasks.create_task(queue.run())
            await put_all()
            await _until(lambda: queue.queued_points == 0, 120)
            queue.begin_close()
            await committer
        await queue.aclose()
        queue = DiskQueue(folder / mqtt_sink.name, BufferSettings(path=folder), config.batch_size, mqtt_sink.log)
        route = Route(mqtt_sink, config, queue)
        cpu = process.cpu_times()
        began = time.perf_counter()
        task = asyncio.create_task(route.run())
    await _until(lambda: route.status.counters.get("points_written", 0) >= count, 600)
    elapsed = time.perf_counter() - began
    used = process.cpu_times()
    cpu_percent = 100 * ((used.user - cpu.user) + (used.system - cpu.system)) / elapsed
    await _until(lambda: queue.store.depth_points == 0, 60)
    left = queue.store.depth_points + queue.queued_points
    await route.drain(time.monotonic() + 10)
    await task
    return count / elapsed, cpu_percent, left


async def write_alone(folder: Path, port: int, points: list[Point], qos: int) -> float:
    mqtt_sink, config = sink(folder, port, f"uns-write-q{qos}", qos)
    await mqtt_sink.open()
    try:
        began = time.perf_counter()
        for start in range(0, len(points), config.batch_size):
            await mqtt_sink.write(points[start : start + config.batch_size])
        return len(points) / (time.perf_counter() - began)
    finally:
        await mqtt_sink.close()


async def link_alone(port: int, points: list[Point]) -> float:
    messages = [
        (f"lab/{p.tags['line']}/{p.tags['machine']}/machine/spindle_rpm", b'{"timestamp_ms":%d,"value":%r}' % (
            p.time // 1_000_000, p.fields["spindle_rpm"]))
        for p in points
    ]  # fmt: skip
    options = LinkOptions("127.0.0.1", port, "bench-link-alone", clean_start=True, max_inflight=1000)
    async with MqttLink(options) as link:
        await _until(lambda: link.connected, 30)
        began = time.perf_counter()
        for start in range(0, len(messages), 5000):
            await link.publish_many(messages[start : start + 5000], qos=1)
        return len(messages) / (time.perf_counter() - began)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=100_000, help="points per measurement (default 100,000)")
    parser.add_argument("--quick", action="store_true", help="10,000 points: a smoke run")
    args = parser.parse_args(argv)
    count = 10_000 if args.quick else args.points
    logging.basicConfig(level=logging.WARNING)
    print("# MQTT sink benchmark")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start")
    print(f"{count:,} points of one field each = {count:,} messages, QoS 1 with every PUBACK awaited, no subscriber")
    points = make_points(count)
    with tempfile.TemporaryDirectory(prefix="bench-mqtt-sink-") as tmp:
        root = Path(tmp)
        broker = Mosquitto(root / "broker")
        broker.start()
        try:
            drain, drain_cpu, left = asyncio.run(from_buffer(root / "drain", broker.port, points, live=False))
            live, live_cpu, live_left = asyncio.run(from_buffer(root / "live", broker.port, points, live=True))
            port = broker.port
            rows = [
                ("**sink, draining its disk buffer** (route + disk queue)", f"**{drain:,.0f}**", f"{drain_cpu:.0f} %"),
                ("sink live: route running while the points are put", f"{live:,.0f}", f"{live_cpu:.0f} %"),
            ]
            # (a figure is a rate, or the text that says its run timed out)
            others: list[tuple[str, Callable[[], float | str]]] = [
                ("sink `write` alone, batches of 5,000", lambda: asyncio.run(write_alone(root, port, points, 1))),
                ("sink `write` alone, QoS 2 (PUBCOMP)", lambda: asyncio.run(write_alone(root, port, points, 2))),
                ("link `publish_many` of the encoded messages", lambda: asyncio.run(link_alone(port, points))),
                ("bare paho publisher (network thread, ≤ 1,000 in flight)", lambda: paho_publisher(port, count)),
                (
                    "raw socket publisher (≤ 1,000 in flight, no bookkeeping): the ceiling",
                    lambda: publish_qos1(port, 0, count, 100),
                ),
            ]
            rows += [(name, _figure(run()), "") for name, run in others]
        finally:
            broker.stop()
        # Mosquitto's default window: it announces max_inflight_messages (20) as its receive maximum.
        default = Mosquitto(root / "broker-default-window", max_inflight_messages=20)
        default.start()
        try:
            windowed = asyncio.run(write_alone(root / "default-window", default.port, points, 1))
            rows.insert(4, ("sink `write` alone, broker with Mosquitto's default window (20 in flight)",
                            f"{windowed:,.0f}", ""))  # fmt: skip
        finally:
            default.stop()
    print()
    print("| publisher | points/s (= messages/s, acknowledged) | gateway CPU, one core |")
    print("|---|---|---|")
    for name, rate, cpu in rows:
        print(f"| {name} | {rate} | {cpu} |")
    print(f"\n{left + live_left} left in the buffer after the runs")
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
