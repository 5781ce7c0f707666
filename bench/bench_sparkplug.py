"""Sparkplug B decode speed: ``python -m bench.bench_sparkplug``.

DDATA messages of 50 metrics each, as an Ignition edge node publishes them (aliases only, a
timestamp per metric; 20 Double, 10 Float, 10 Int32 — half of them negative —, 5 Boolean, 5
Int64), from 10 devices of one edge node, decoded by the connector's
:class:`~gateway.sparkplug.host.HostSession` into validated points (aliases resolved through the
births, sequence numbers checked). Beside it, the ceilings of the protobuf package itself on the
same bytes: ``Payload.FromString`` alone (upb parses lazily: this is the floor of any decoder's
cost), and ``FromString`` plus reading every metric's alias, timestamp and value (what any
decoder must at least do). Prints metrics per second on one core (the best of several rounds,
so that other processes on a shared machine disturb the figure less). Target
(docs/PERFORMANCE.md): ≥ 200k metrics/s.

``--python-backend`` runs the same in a child process with protobuf's pure-Python backend
(``PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python``), to show what upb is worth. The sink's side
(points → DDATA with aliases) is printed too.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable

from google.protobuf.internal import api_implementation

from gateway.point import Point
from gateway.sparkplug import sparkplug_b_pb2 as pb
from gateway.sparkplug.edge import EdgeNode
from gateway.sparkplug.host import HostSession
from gateway.sparkplug.payload import DataType

TARGET = 200_000
METRICS = 50
DEVICES = 10
T0 = 1_767_000_000_000
#: (datatype, count) of a device's 50 metrics
MIX = ((DataType.Double, 20), (DataType.Float, 10), (DataType.Int32, 10), (DataType.Boolean, 5), (DataType.Int64, 5))


def _kinds() -> list[int]:
    return [datatype for datatype, count in MIX for _ in range(count)]


def _set(metric: pb.Payload.Metric, datatype: int, n: int) -> None:
    if datatype == DataType.Double:
        metric.double_value = 20.0 + n * 0.25
    elif datatype == DataType.Float:
        metric.float_value = n * 0.5
    elif datatype == DataType.Int32:
        metric.int_value = (n if n % 2 else -n) & 0xFFFFFFFF
    elif datatype == DataType.Boolean:
        metric.boolean_value = bool(n & 1)
    else:
        metric.long_value = n * 1000


def births() -> list[tuple[str, bytes]]:
    """The NBIRTH and a DBIRTH per device (aliases 100…), seq 0…DEVICES."""
    node = pb.Payload(timestamp=T0, seq=0)
    node.metrics.add(name="bdSeq", datatype=DataType.Int64, long_value=0)
    messages = [("spBv1.0/Plant/NBIRTH/Line-1", node.SerializeToString())]
    for d in range(DEVICES):
        birth = pb.Payload(timestamp=T0, seq=d + 1)
        for i, datatype in enumerate(_kinds()):
            metric = birth.metrics.add(name=f"Area{i % 5}/Tag{i}", alias=100 + d * METRICS + i, datatype=datatype)
            _set(metric, datatype, i)
        messages.append((f"spBv1.0/Plant/DBIRTH/Line-1/Press-{d}", birth.SerializeToString()))
    return messages


def ddata(count: int) -> list[tuple[str, bytes]]:
    """``count`` DDATA messages, round robin over the devices, seq continuing after the births."""
    messages = []
    kinds = _kinds()
    for n in range(count):
        d = n % DEVICES
        ts = T0 + 1 + n
        payload = pb.Payload(timestamp=ts, seq=(DEVICES + 1 + n) % 256)
        for i, datatype in enumerate(kinds):
            metric = payload.metrics.add(alias=100 + d * METRICS + i, timestamp=ts)
            _set(metric, datatype, n + i)
        messages.append((f"spBv1.0/Plant/DDATA/Line-1/Press-{d}", payload.SerializeToString()))
    return messages


def best_rate(run: Callable[[], int], rounds: int) -> float:
    """Items per second of the fastest of ``rounds`` runs (GC off while timing)."""
    best = 0.0
    for _ in range(rounds):
        gc.collect()
        gc.disable()
        started = time.perf_counter()
        items = run()
        elapsed = time.perf_counter() - started
        gc.enable()
        best = max(best, items / elapsed)
    return best


def measure(messages: int, rounds: int) -> dict[str, float]:
    data = ddata(messages)
    total = messages * METRICS

    def parse_only() -> int:
        parse = pb.Payload.FromString
        for _, payload in data:
            parse(payload)
        return total

    def parse_and_read() -> int:
        parse = pb.Payload.FromString
        read = 0
        for _, payload in data:
            for metric in parse(payload).metrics:
                kind = metric.WhichOneof("value")
                if kind is not None and metric.alias >= 0 and metric.timestamp >= 0:
                    getattr(metric, kind)
                    read += 1
        return read

    def gateway() -> int:
        session = HostSession("sparkplug", logging.getLogger("bench"))
        for topic, payload in births():
            session.handle(topic, payload, T0 * 1_000_000)
        handle = session.handle
        fields = 0
        for topic, payload in data:
            for point in handle(topic, payload, 0):
                fields += len(point.fields)
        assert fields == total, f"{fields} of {total} metrics decoded: {session.counters}"
        assert not session.rebirths and not session.counters["seq_gaps"]
        return fields

    return {
        "parse": best_rate(parse_only, rounds),
        "read": best_rate(parse_and_read, rounds),
        "gateway": best_rate(gateway, rounds),
    }


def encode_rate(points: int, rounds: int) -> float:
    """The sink's side: points of 50 fields → DDATA payloads with aliases (metrics per second)."""
    fields = {f"tag{i}": (20.0 + i if i % 3 else i) for i in range(METRICS)}
    batch = [Point("press", fields, {"machine": f"P-{n % DEVICES}"}, (T0 + n) * 1_000_000) for n in range(points)]
    edge = EdgeNode()
    for n in range(DEVICES):
        edge.learn(f"P-{n}", fields)

    def run() -> int:
        for point in batch:
            edge.ddata(point.tags["machine"], point.fields.items(), point.time // 1_000_000, None)
        return points * METRICS

    return best_rate(run, rounds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=20_000, help="DDATA messages per round (default 20,000)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; the best is reported (default 5)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 1,000 messages, 2 rounds")
    parser.add_argument("--python-backend", action="store_true", help="also measure protobuf's pure-Python backend")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.messages, args.rounds = 1000, 2
    rates = measure(args.messages, args.rounds)
    backend = api_implementation.Type()
    if args.child:
        print(f"{backend} {rates['parse']:.0f} {rates['read']:.0f} {rates['gateway']:.0f}")
        return 0
    print(
        f"Python {platform.python_version()}, protobuf backend {backend}; {args.messages:,} DDATA of {METRICS} metrics"
    )
    print(f"  protobuf FromString alone           {rates['parse']:>12,.0f} metrics/s  (upb parses lazily)")
    print(f"  protobuf FromString + every value   {rates['read']:>12,.0f} metrics/s  (the ceiling)")
    share = rates["gateway"] / rates["read"] * 100
    verdict = "meets" if rates["gateway"] >= TARGET else "BELOW"
    print(
        f"  gateway HostSession → points        {rates['gateway']:>12,.0f} metrics/s  ({share:.0f} % of the ceiling; "
        f"{verdict} the target of {TARGET:,})"
    )
    print(f"  sink: points → DDATA with aliases   {encode_rate(args.messages, args.rounds):>12,.0f} metrics/s")
    if args.python_backend:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.bench_sparkplug",
                "--child",
                "--messages",
                str(args.messages // 4),
                "--rounds",
                "2",
            ],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION": "python"},
        )
        name, _, read, gateway = result.stdout.split()
        print(f"  with protobuf's {name} backend instead of upb:")
        print(f"  protobuf FromString + every value   {float(read):>12,.0f} metrics/s")
        print(f"  gateway HostSession → points        {float(gateway):>12,.0f} metrics/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
