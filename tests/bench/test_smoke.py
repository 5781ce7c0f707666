"""Every benchmark still runs: each one's smoke mode, as a user would start it.

Benchmarks print figures and are not judged (docs/PERFORMANCE.md), but a benchmark that no
longer runs measures nothing: two of them had broken silently when an internal name moved
(the OPC UA bench waited forever for a gauge it looked for among the counters). These runs
check that each one finishes and prints its figures; the figures themselves are not asserted.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SMOKE = {
    "bench_lineprotocol": (["--rounds", "1", "--points", "20000"], "points/s"),
    "bench_historian": (["--quick"], "points/s"),
    "bench_mqtt": (["--quick"], "0 missing"),
    "bench_opcua": (["--items", "1000", "--seconds", "3", "--servers", "1"], '"values_lost": 0'),
    "bench_influx": (["--quick"], "live steady-state ceiling"),
    "bench_web": (["--quick"], "first chart with data"),
}


@pytest.mark.slow
@pytest.mark.timeout(400)
@pytest.mark.parametrize("bench", sorted(SMOKE))
def test_benchmark_runs_and_prints_its_figures(bench: str, tmp_path: Path) -> None:
    args, expected = SMOKE[bench]
    result = subprocess.run(
        [sys.executable, "-m", f"bench.{bench}", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=360,
        env={**os.environ, "TMPDIR": str(tmp_path), "PYTHONUNBUFFERED": "1"},
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert expected in output, output[-4000:]
