"""Line-protocol encoding speed: ``python -m bench.bench_lineprotocol``.

Encodes typical shop-floor points (3 tags, 2–4 fields of mixed types, ns timestamps) with the
gateway's ``encode_batch`` and, side by side, with influxdb-client's
``Point.to_line_protocol()`` (when installed). Prints points per second on one core (the best
of several rounds, so that other processes on a shared machine disturb the figure less).
Target (docs/PERFORMANCE.md): ≥ 500k points/s for the gateway's encoder. The parser's rate (it reads the
durable buffer back and MQTT payloads in line protocol) is printed too.
"""

from __future__ import annotations

import argparse
import functools
import gc
import platform
import random
import sys
import time
from collections.abc import Callable, Sequence

from gateway.lineprotocol import encode_batch, parse
from gateway.point import Point

TARGET = 500_000


def typical_points(count: int, seed: int = 1, *, unique_series: bool = False) -> list[Point]:
    """Energy meters, temperatures and machine states, as the MQTT and OPC UA connectors make them.

    ``unique_series`` gives every point a tag value of its own (the encoder's cache never hits).
    """
    rng = random.Random(seed)
    start = 1_764_000_000_000_000_000
    points = []
    for i in range(count):
        line = f"line-{i % 4}"
        kind = i % 3
        if kind == 0:
            fields: dict[str, float | int | bool | str] = {
                "power_w": round(rng.uniform(0, 25_000), 2),
                "energy_kwh": round(rng.uniform(0, 1e6), 3),
            }
            tags = {"line": line, "meter": f"meter-{i % 20}", "site": "hall 2"}
            measurement = "energy"
        elif kind == 1:
            fields = {
                "temperature_c": round(rng.uniform(15, 90), 2),
                "humidity_pct": round(rng.uniform(20, 80), 1),
                "alarm": rng.random() < 0.01,
            }
            tags = {"line": line, "sensor": f"th-{i % 50}", "site": "hall 2"}
            measurement = "climate"
        else:
            fields = {
                "spindle_rpm": rng.randrange(0, 24_000),
                "feed_mm_min": round(rng.uniform(0, 5000), 1),
                "state": rng.choice(["running", "idle", "setup", "alarm"]),
                "parts": rng.randrange(0, 100_000),
            }
            tags = {"line": line, "machine": f"cnc-{i % 10:02d}", "site": "hall 2"}
            measurement = "machine"
        if unique_series:
            tags["site"] = f"hall {i}"
        points.append(Point(measurement, fields, tags, start + i * 1_000_000))
    return points


def best_rate(run: Callable[[], object], count: int, rounds: int) -> float:
    """Points per second of CPU time in the fastest round (garbage collection off while timing).

    CPU time of this process, not wall time: on a machine shared with other jobs, waiting for
    a core would otherwise count as encoding time.
    """
    best = float("inf")
    for _ in range(rounds):
        gc.collect()
        gc.disable()
        try:
            started = time.process_time()
            run()
            best = min(best, time.process_time() - started)
        finally:
            gc.enable()
    return count / best


def parse_all(bodies: Sequence[str]) -> list[Sequence[Point]]:
    return [parse(body) for body in bodies]


def gateway_encoder(points: Sequence[Point], batch_size: int) -> Callable[[], object]:
    batches = [points[i : i + batch_size] for i in range(0, len(points), batch_size)]

    def run() -> object:
        return [encode_batch(batch) for batch in batches]

    return run


def influxdb_client_encoder(points: Sequence[Point], batch_size: int) -> Callable[[], object] | None:
    try:
        from influxdb_client.client.write.point import Point as ClientPoint
        from influxdb_client.domain.write_precision import WritePrecision
    except ImportError:
        return None
    converted = []
    for point in points:
        client_point = ClientPoint(point.measurement).time(point.time, WritePrecision.NS)
        for key, value in point.tags.items():
            client_point.tag(key, value)
        for key, field in point.fields.items():
            client_point.field(key, field)
        converted.append(client_point)
    batches = [converted[i : i + batch_size] for i in range(0, len(converted), batch_size)]

    def run() -> object:
        # What a sink built on influxdb-client does per batch: one line per point, joined.
        return [("\n".join(p.to_line_protocol() for p in batch) + "\n").encode() for batch in batches]

    return run


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--points", type=int, default=200_000, help="points encoded per round")
    parser.add_argument("--batch-size", type=int, default=5000, help="points per encode_batch call")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; the fastest counts")
    args = parser.parse_args(argv)

    points = typical_points(args.points)
    body = encode_batch(points[:3]).decode()
    print(
        f"python {platform.python_version()} on {platform.machine()}, {args.points:,} points per round, "
        f"batches of {args.batch_size:,}, best of {args.rounds} rounds"
    )
    print("sample lines:\n  " + "\n  ".join(body.splitlines()))
    ours = best_rate(gateway_encoder(points, args.batch_size), len(points), args.rounds)
    print(
        f"gateway encode_batch                 {ours:>12,.0f} points/s  "
        f"({'meets' if ours >= TARGET else 'BELOW'} the {TARGET:,} target)"
    )
    client = influxdb_client_encoder(points, args.batch_size)
    if client is None:
        print("influxdb-client Point.to_line_protocol  (influxdb-client not installed)")
    else:
        theirs = best_rate(client, len(points), max(1, args.rounds // 2))
        print(f"influxdb-client to_line_protocol     {theirs:>12,.0f} points/s  (ours is {ours / theirs:.1f}x faster)")
    unique = typical_points(args.points, unique_series=True)
    worst = best_rate(gateway_encoder(unique, args.batch_size), len(unique), args.rounds)
    print(f"gateway, every point a new series    {worst:>12,.0f} points/s  (worst case: no cache hits)")
    print("parse (durable-buffer replay, MQTT influx payloads), every line validated into a Point:")
    plain = [Point(p.measurement, p.fields, {**p.tags, "site": "hall-2"}, p.time) for p in points]
    for label, sample in (("the points above", points), ("same, site=hall-2", plain)):
        size = args.batch_size
        bodies = [encode_batch(sample[i : i + size]).decode() for i in range(0, len(sample), size)]
        parsed = best_rate(functools.partial(parse_all, bodies), len(sample), max(1, args.rounds // 2))
        print(f"gateway parse, {label:<22} {parsed:>12,.0f} points/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
