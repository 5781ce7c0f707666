"""``gateway query``: what landed in the historian, as table, JSON and CSV, also while it is written."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gateway.cli import app
from gateway.point import INT64_MAX, Point, now_ns
from gateway.sinks.historian.query import format_time
from gateway.sinks.historian.store import HistorianStore
from tests.helpers import stop_process, wait_until

SECOND = 1_000_000_000
ROOT = Path(__file__).parents[1]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(
        textwrap.dedent(
            f"""
            sinks:
              - name: influx-stand-in
                type: historian
                path: {tmp_path / "other.db"}
              - name: local
                type: historian
                path: {tmp_path / "history.db"}
                retention: 30d
            """
        )
    )
    return path


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["query", *args])
    return result.exit_code, result.output


@pytest.fixture
def stored(tmp_path: Path) -> list[Point]:
    now = now_ns()
    points = [
        Point(
            "energy",
            {"power_w": 1000.5 + i, "energy_wh": INT64_MAX - i, "ok": i % 2 == 0, "note": 'Ölpumpe "P1"\nok'},
            {"line": "A" if i < 3 else "B", "meter": f"m{i}"},
            time=now - (5 - i) * 60 * SECOND + 123,
        )
        for i in range(5)
    ]
    with HistorianStore(tmp_path / "history.db") as store:
        store.write(points)
        store.write([Point("machine", {"state": "running"}, {"machine": "cnc-01"}, time=now - SECOND)])
    return points


def test_json_prints_one_array_of_values_with_exact_types(config: Path, stored: list[Point]) -> None:
    code, output = run(str(config), "--measurement", "energy", "--since", "10m", "--sink", "local", "--format", "json")
    assert code == 0, output
    values = json.loads(output)
    assert len(values) == 20
    expected = {
        (p.time, field, json.dumps(value)) for p in stored for field, value in p.fields.items()
    }  # json.dumps keeps 1.0 vs 1 vs true apart
    assert {(v["time_ns"], v["field"], json.dumps(v["value"])) for v in values} == expected
    first = values[0]
    assert set(first) == {"time", "time_ns", "measurement", "tags", "field", "value"}
    assert first["measurement"] == "energy" and first["tags"] == {"line": "A", "meter": "m0"}
    for v in values:
        assert v["time"].endswith("Z") and len(v["time"].split(".")[1]) == 10, "ns precision"
        # the ISO text says exactly time_ns: whole seconds, then all nine digits of the fraction
        seconds, fraction = divmod(v["time_ns"], 10**9)
        whole = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        assert v["time"] == f"{whole}.{fraction:09d}Z"
    assert [v["time_ns"] for v in values] == sorted(v["time_ns"] for v in values)


def test_the_first_historian_sink_is_the_default(config: Path, tmp_path: Path, stored: list[Point]) -> None:
    with HistorianStore(tmp_path / "other.db") as store:
        store.write([Point("energy", {"power_w": 1.0}, time=now_ns())])
    code, output = run(str(config), "-m", "energy", "--format", "json")
    assert code == 0 and [v["value"] for v in json.loads(output)] == [1.0]


def test_filters_by_field_tag_time_and_limit(config: Path, stored: list[Point]) -> None:
    base = [str(config), "-m", "energy", "--sink", "local", "--format", "json"]
    code, output = run(*base, "--field", "power_w", "--tag", "line=B")
    assert code == 0, output
    assert [(v["value"], v["tags"]["meter"]) for v in json.loads(output)] == [(1003.5, "m3"), (1004.5, "m4")]
    code, output = run(*base, "-f", "power_w", "-f", "ok", "--since", "10m", "--until", "3m")
    assert {v["time_ns"] for v in json.loads(output)} == {p.time for p in stored[:3]}
    assert {v["field"] for v in json.loads(output)} == {"power_w", "ok"}
    code, output = run(*base, "--limit", "3")
    assert len(json.loads(output)) == 3
    code, output = run(*base, "--since", "30s")
    assert json.loads(output) == []


def test_csv_has_a_header_and_a_column_per_tag(config: Path, stored: list[Point]) -> None:
    code, output = run(str(config), "-m", "energy", "--sink", "local", "--format", "csv", "-f", "note", "-f", "ok")
    assert code == 0, output
    rows = list(csv.DictReader(io.StringIO(output)))
    assert list(rows[0]) == ["time", "time_ns", "measurement", "line", "meter", "field", "value"]
    assert len(rows) == 10
    notes = [r for r in rows if r["field"] == "note"]
    assert {r["value"] for r in notes} == {'Ölpumpe "P1"\nok'}
    assert [r["value"] for r in rows if r["field"] == "ok"] == ["true", "false", "true", "false", "true"]
    assert rows[0]["time"] == format_time(int(rows[0]["time_ns"]))


def test_table_is_readable_and_an_empty_result_says_why(config: Path, stored: list[Point]) -> None:
    code, output = run(str(config), "-m", "energy", "--sink", "local", "-f", "power_w")
    assert code == 0, output
    lines = output.splitlines()
    assert lines[0].split() == ["time", "(UTC)", "measurement", "tags", "field", "value"]
    assert "line=A,meter=m0" in lines[2] and lines[2].endswith("1000.5")
    assert lines[-1] == "(5 values)"
    _, output = run(str(config), "-m", "energi", "--sink", "local")
    assert "no measurement 'energi' in the historian (measurements: energy, machine)" in output
    _, output = run(str(config), "-m", "energy", "--sink", "local", "-f", "powr")
    assert "has no field 'powr'" in output and "power_w" in output
    _, output = run(str(config), "-m", "energy", "--sink", "local", "--since", "1s")
    assert "try a longer --since" in output


@pytest.mark.parametrize(
    ("yaml", "args", "message"),
    [
        ("sinks: []\n", [], "the config has no historian sink"),
        (
            "sinks:\n  - {name: local, type: historian, path: PATH}\n",
            [],
            "does not exist yet: sink 'local' has stored nothing",
        ),
        ("sinks:\n  - {name: local, type: historian, path: PATH}\n", ["--sink", "remote"], "no sink named 'remote'"),
        ("sinks:\n  - {name: local, type: historian, path: PATH}\n", ["--since", "yesterday"], "--since 'yesterday'"),
        ("sinks:\n  - {name: local, type: historian, path: PATH}\n", ["--tag", "line"], "write key=value"),
    ],
)
def test_errors_are_one_clear_line_and_exit_1(tmp_path: Path, yaml: str, args: list[str], message: str) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(yaml.replace("PATH", str(tmp_path / "none" / "history.db")))
    code, output = run(str(config), "-m", "energy", *args)
    assert code == 1
    assert message in output
    assert "Traceback" not in output
    assert not (tmp_path / "none").exists(), "a query never creates the file"


WRITER = textwrap.dedent(
    """
    import sys, time
    from gateway.point import Point, now_ns
    from gateway.sinks.historian.store import HistorianStore
    store = HistorianStore(sys.argv[1])
    count = 0
    while True:
        now = now_ns()
        store.write([Point("energy", {"power_w": float(count + i)}, {"meter": f"m{i % 10}"}, time=now + i)
                     for i in range(500)])
        count += 500
        print(count, flush=True)
        time.sleep(0.02)  # the gateway writes a batch every few tens of milliseconds
    """
)


def test_query_reads_while_another_process_writes(config: Path, tmp_path: Path) -> None:
    gateway = shutil.which("gateway", path=str(Path(sys.executable).parent)) or "gateway"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(tmp_path / "history.db")], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    try:
        stdout = writer.stdout
        assert stdout is not None
        wait_until(lambda: int(stdout.readline() or 0) >= 1000, timeout=60, message="the writer started")
        counts = []
        for _ in range(3):
            result = subprocess.run(
                [gateway, "query", str(config), "-m", "energy", "--sink", "local", "--since", "5m", "--format", "json"],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
                cwd=ROOT,
            )
            assert result.returncode == 0, result.stderr
            values = json.loads(result.stdout)
            assert len(values) % 500 == 0, "whole batches only"
            counts.append(len(values))
        assert counts == sorted(counts) and counts[-1] > counts[0], f"the data grew between queries: {counts}"
        assert writer.poll() is None, "the writer kept going"
    finally:
        stop_process(writer)
