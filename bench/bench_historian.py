"""Embedded historian: SQLite (WAL) as built, against DuckDB, for the gateway's workload.

    .venv/bin/python -m bench.bench_historian            # full run (a few minutes)
    .venv/bin/python -m bench.bench_historian --quick    # smaller, for a smoke check

Prints:
- SQLite ingest through ``HistorianStore.write`` in batches of 5,000 and 10,000 points over
  many series (Points built beforehand; the rate is the write calls alone, compactions
  included), and the bytes the process wrote to disk per point (from /proc/self/io: WAL,
  checkpoints);
- the disk writes of a live gateway (every series at 1 Hz, a commit every 250 ms);
- 7 days of one 1 Hz series (604,800 points) reduced to 1,000 buckets: p50/p99 latency
  with the per-minute rollups, and with raw samples only;
- the same for DuckDB (columnar inserts with the same primary key and upsert; the query as
  one GROUP BY with arg_max for the last value);
- whether a second process can read the file while the first one writes, for both.

Figures are recorded in docs/PERFORMANCE.md ("Embedded historian").
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from gateway.point import Point
from gateway.sinks.historian.store import HistorianStore

SECOND = 1_000_000_000
T0 = 1_764_000_000 * SECOND
WEEK_POINTS = 7 * 86400


def disk_writes() -> int | None:
    """Bytes this process caused to be written to storage so far (Linux), or None."""
    try:
        for line in Path("/proc/self/io").read_text().splitlines():
            if line.startswith("write_bytes:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p50 = statistics.median(ordered)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return p50, p99


def timed(fn: Callable[[], Any], runs: int) -> tuple[float, float, Any]:
    result = fn()  # warm-up (page cache, statement cache)
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        result = fn()
        samples.append((time.perf_counter() - start) * 1000)
    p50, p99 = percentiles(samples)
    return p50, p99, result


# --- SQLite ingest -----------------------------------------------------------------------------


def many_series_batches(series: int, batch: int, total: int, fields: int = 1) -> Iterator[list[Point]]:
    """Like a backlog drain: every series at 1 Hz, in time order, cut into batches."""
    tags = [{"line": f"L{i % 8}", "machine": f"m{i:05d}"} for i in range(series)]
    names = [f"f{j}" for j in range(fields)]
    points: list[Point] = []
    for k in range(total):
        i, second = k % series, k // series
        points.append(
            Point("machine", {n: float(k % 977) + j for j, n in enumerate(names)}, tags[i], time=T0 + second * SECOND)
        )
        if len(points) == batch:
            yield points
            points = []
    if points:
        yield points


def bench_sqlite_ingest(folder: Path, series: int, batch: int, total: int, fields: int = 1) -> None:
    path = folder / f"ingest-{series}-{batch}-{fields}.db"
    batches = list(many_series_batches(series, batch, total, fields))
    with HistorianStore(path) as store:
        store.write(batches[0])  # creates the series: steady state is what is measured
        written_before = disk_writes()
        start = time.perf_counter()
        for points in batches[1:]:
            store.write(points)
        elapsed = time.perf_counter() - start
        written_after = disk_writes()
    count = sum(len(b) for b in batches[1:])
    per_point = ""
    if written_before is not None and written_after is not None:
        per_point = f", {(written_after - written_before) / count:,.0f} B written to disk per point"
    print(
        f"  batches of {batch:>6,}, {series:>6,} series, {fields} field{'s' if fields > 1 else ' '}: "
        f"{count / elapsed:>9,.0f} points/s ({count * fields / elapsed:,.0f} values/s{per_point})",
        flush=True,
    )


def bench_duckdb_ingest(folder: Path, series: int, batch: int, total: int) -> None:
    """The same batches into DuckDB: Points → columns (series ids from a dict, as ours) → one upsert."""
    try:
        import duckdb
    except ImportError:
        return
    con = duckdb.connect(str(folder / f"ingest-{series}-{batch}.duckdb"))
    con.execute("CREATE TABLE samples (series_id INTEGER, time BIGINT, value DOUBLE, PRIMARY KEY (series_id, time))")
    ids: dict[tuple[str, tuple[tuple[str, str], ...], str], int] = {}
    batches = list(many_series_batches(series, batch, total))
    start = time.perf_counter()
    for points in batches:
        sids, times, values = [], [], []
        for point in points:
            tags = tuple(point.tags.items())
            for field, value in point.fields.items():
                sid = ids.setdefault((point.measurement, tags, field), len(ids) + 1)
                sids.append(sid)
                times.append(point.time)
                values.append(value)
        con.execute(
            "INSERT INTO samples SELECT unnest($1), unnest($2), unnest($3) "
            "ON CONFLICT DO UPDATE SET value = excluded.value",
            [sids, times, values],
        )
    elapsed = time.perf_counter() - start
    con.close()
    count = sum(len(b) for b in batches)
    print(f"  DuckDB: batches of {batch:,}, {series:,} series, 1 field: {count / elapsed:>9,.0f} points/s", flush=True)


def bench_steady_state(folder: Path, series: int, commit_every: float, seconds: int) -> None:
    """A live gateway: every series at 1 Hz, a commit every ``commit_every`` s (simulated time)."""
    path = folder / f"steady-{series}.db"
    per_commit = max(1, int(series * commit_every))
    batches = list(many_series_batches(series, per_commit, series * seconds))
    with HistorianStore(path) as store:
        store.write(batches[0])
        written_before = disk_writes()
        for points in batches[1:]:
            store.write(points)
        written_after = disk_writes()
    if written_before is None or written_after is None:
        print("  (no /proc/self/io: disk writes not measured)")
        return
    per_second = (written_after - written_before) / (seconds - commit_every)
    print(
        f"  {series:>5,} series at 1 Hz, a commit every {commit_every * 1000:.0f} ms: "
        f"{per_second / 1e3:,.0f} kB written to disk per second of data ({per_second * 86400 / 1e9:.1f} GB/day)",
        flush=True,
    )


# --- 7 days at 1 Hz → 1,000 buckets ------------------------------------------------------------


def week_values() -> Iterator[tuple[int, float]]:
    for i in range(WEEK_POINTS):
        yield T0 + i * SECOND, 20.0 + (i % 3600) / 100.0


def bench_sqlite_week(folder: Path, runs: int) -> None:
    path = folder / "week.db"
    with HistorianStore(path) as store:
        batch: list[Point] = []
        start = time.perf_counter()
        for t, v in week_values():
            batch.append(Point("machine", {"temperature_c": v}, {"machine": "cnc-01"}, time=t))
            if len(batch) == 10_000:
                store.write(batch)
                batch = []
        store.write(batch)
        print(f"  SQLite: wrote 604,800 points in {time.perf_counter() - start:.1f} s (Points built inline)")
        sid = store.series("machine")[0].id
        end = T0 + WEEK_POINTS * SECOND - 1
        for label, rollups, n in (("with rollups", None, runs), ("raw samples only", False, max(5, runs // 5))):
            p50, p99, buckets = timed(functools.partial(store.range, sid, T0, end, 1000, rollups=rollups), n)
            assert sum(b.count for b in buckets) == WEEK_POINTS
            print(f"  SQLite {label:<17} p50 {p50:7.1f} ms   p99 {p99:7.1f} ms   ({len(buckets)} buckets, {n} runs)")
        # A window that slides (the web page's "last 7 days"): edges cut through minutes.
        p50, p99, buckets = timed(lambda: store.range(sid, T0 + 12_345_678_901, end - 7_654_321_000, 1000), runs)
        print(f"  SQLite sliding window     p50 {p50:7.1f} ms   p99 {p99:7.1f} ms   ({len(buckets)} buckets)")
    print(f"  SQLite file: {path.stat().st_size / 1e6:.1f} MB for 604,800 points (samples + rollups)")


def bench_duckdb_week(folder: Path, runs: int) -> None:
    try:
        import duckdb
    except ImportError:
        print("  DuckDB: not installed (pip install duckdb)")
        return
    path = folder / "week.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE samples (series_id INTEGER, time BIGINT, value DOUBLE, PRIMARY KEY (series_id, time))")
    values = list(week_values())
    start = time.perf_counter()
    for i in range(0, len(values), 10_000):
        chunk = values[i : i + 10_000]
        con.execute(
            "INSERT INTO samples SELECT 1, unnest($1), unnest($2) ON CONFLICT DO UPDATE SET value = excluded.value",
            [[t for t, _ in chunk], [v for _, v in chunk]],
        )
    print(f"  DuckDB: wrote 604,800 points in {time.perf_counter() - start:.1f} s (columnar, 10,000 per insert)")
    end = T0 + WEEK_POINTS * SECOND - 1
    width = (end - T0) // 999 + 1
    origin = T0 // width * width
    sql = (
        "SELECT (time - $origin) // $width AS b, min(value), max(value), avg(value), count(*), arg_max(value, time) "
        "FROM samples WHERE series_id = 1 AND time BETWEEN $from AND $to GROUP BY b ORDER BY b"
    )
    params = {"origin": origin, "width": width, "from": T0, "to": end}
    p50, p99, rows = timed(lambda: con.execute(sql, params).fetchall(), runs)
    assert sum(r[4] for r in rows) == WEEK_POINTS
    print(f"  DuckDB raw GROUP BY       p50 {p50:7.1f} ms   p99 {p99:7.1f} ms   ({len(rows)} buckets, {runs} runs)")
    con.close()
    print(f"  DuckDB file: {path.stat().st_size / 1e6:.1f} MB")


# --- a second process reading while the first writes --------------------------------------------

SQLITE_READER = """
import sys
from gateway.sinks.historian.store import HistorianStore
with HistorianStore(sys.argv[1], readonly=True) as store:
    print(len(store.read()))
"""
DUCKDB_READER = """
import sys, duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
print(con.execute("SELECT count(*) FROM samples").fetchone()[0])
"""


def second_reader(script: str, path: Path) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=Path(__file__).parents[1],
    )
    if result.returncode == 0:
        return f"yes (read {result.stdout.strip()} values)"
    return "no: " + (result.stderr.strip().splitlines() or ["?"])[-1][:150]


def bench_concurrent_readers(folder: Path) -> None:
    path = folder / "shared.db"
    with HistorianStore(path) as store:
        store.write([Point("m", {"v": i}, time=T0 + i) for i in range(1000)])
        print(f"  SQLite (WAL), writer open:  another process reads: {second_reader(SQLITE_READER, path)}")
    try:
        import duckdb
    except ImportError:
        return
    dpath = folder / "shared.duckdb"
    con = duckdb.connect(str(dpath))
    con.execute("CREATE TABLE samples (series_id INTEGER, time BIGINT, value DOUBLE)")
    con.execute("INSERT INTO samples SELECT 1, range, 0.0 FROM range(1000)")
    print(f"  DuckDB, writer open:         another process reads: {second_reader(DUCKDB_READER, dpath)}")
    con.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller runs, for a smoke check")
    parser.add_argument("--dir", type=Path, default=None, help="folder for the files (default: a temp folder)")
    args = parser.parse_args()
    total = 100_000 if args.quick else 400_000
    runs = 10 if args.quick else 50
    print(f"Embedded historian benchmark ({os.cpu_count()} CPUs; {'quick' if args.quick else 'full'} run)")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        folder = Path(tmp)
        print("Ingest (SQLite: HistorianStore.write, one transaction per batch):")
        for series in (100, 1_000, 10_000):
            for batch in (5_000, 10_000):
                bench_sqlite_ingest(folder, series, batch, total)
        bench_sqlite_ingest(folder, 1_000, 10_000, total // 2, fields=4)
        bench_duckdb_ingest(folder, 1_000, 10_000, total)
        print("SQLite steady state, disk wear (simulated time, compaction by row count):")
        for series in (200, 1_000):
            bench_steady_state(folder, series, 0.25, 120 if args.quick else 300)
        print("7 days of one 1 Hz series (604,800 points) → 1,000 buckets:")
        bench_sqlite_week(folder, runs)
        bench_duckdb_week(folder, runs)
        print("Reading from another process while the writer has the file open:")
        bench_concurrent_readers(folder)


if __name__ == "__main__":
    main()
