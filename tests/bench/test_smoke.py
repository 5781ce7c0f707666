"""Every benchmark still runs: each one's smoke mode, as a user would start it.

Benchmarks print figures and are not judged (docs/PERFORMANCE.md), but a benchmark that no
longer runs measures nothing: two of them had broken silently when an internal name moved
(the OPC UA bench waited forever for a gauge it looked for among the counters). These runs
check that each one finishes and prints its figures; the figures themselves are not asserted,
except where a figure is the point (nothing missing, nothing lost). Each expected text is a
regular expression bounded by word boundaries, so that "10 missing" never passes for "0 missing".
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SMOKE = {
    "bench_lineprotocol": (["--rounds", "1", "--points", "20000"], r"\bpoints/s\b"),
    "bench_historian": (["--quick"], r"\bpoints/s\b"),
    "bench_mqtt": (["--quick"], r"\b0 missing\b"),
    "bench_mqtt_sink": (["--quick"], r"(?<![\d,])0 left in the buffer\b"),
    "bench_opcua": (["--items", "1000", "--seconds", "3", "--servers", "1"], r'"values_lost": 0\b'),
    "bench_influx": (["--quick"], r"\blive steady-state ceiling\b"),
    "bench_web": (["--quick"], r"\bfirst chart with data\b"),
    "bench_modbus": (["--quick"], r"\b0 read errors\b"),
    "bench_s7": (["--quick"], r"\b0 read errors\b"),
    "bench_kpi": (["--quick"], r"\boverview of 10 machines, from the rollups\b"),
    "bench_sparkplug": (["--quick"], r"\bmetrics/s\s+\(\d+ % of the ceiling"),
    "bench_runtime": (["--quick"], r"(?<![\d,])0 missing\b"),
}


@pytest.mark.slow
@pytest.mark.timeout(400)
@pytest.mark.parametrize("bench", sorted(SMOKE))
def test_benchmark_runs_and_prints_its_figures(bench: str) -> None:
    args, expected = SMOKE[bench]
    # A short folder of its own, not pytest's: Chromium puts a Unix socket under TMPDIR and
    # refuses to start when the socket's path is longer than 107 bytes.
    with tempfile.TemporaryDirectory(prefix="bench-") as scratch:
        result = subprocess.run(
            [sys.executable, "-m", f"bench.{bench}", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=360,
            env={**os.environ, "TMPDIR": scratch, "PYTHONUNBUFFERED": "1"},
            check=False,
        )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert re.search(expected, output), output[-4000:]
