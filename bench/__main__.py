"""Run every benchmark in turn: ``python -m bench`` (or ``make bench``).

Each benchmark is also a module of its own (``python -m bench.bench_mqtt``, …) with its own
options; this runner calls each with its defaults, one process at a time, so they do not
measure each other. Figures are printed, not judged: record them in docs/PERFORMANCE.md.
"""

from __future__ import annotations

import subprocess
import sys

BENCHMARKS = (
    "bench.bench_lineprotocol",
    "bench.bench_historian",
    "bench.bench_mqtt",
    "bench.bench_mqtt_sink",
    "bench.bench_opcua",
    "bench.bench_influx",
    "bench.bench_web",
    "bench.bench_modbus",
    "bench.bench_s7",
    "bench.bench_kpi",
    "bench.bench_sparkplug",
)


def main() -> int:
    failed = []
    for module in BENCHMARKS:
        print(f"\n=== {module} ===", flush=True)
        if subprocess.call([sys.executable, "-m", module]) != 0:
            failed.append(module)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
