"""HistorianStore: exact round trips, idempotent writes, filters, range queries, retention, readers."""

from __future__ import annotations

import itertools
import math
import random
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.point import INT64_MAX, INT64_MIN, FieldValue, Point
from gateway.sinks.historian.store import (
    MINUTE_NS,
    Bucket,
    HistorianError,
    HistorianStore,
    SeriesInfo,
    StoredValue,
)
from tests.helpers import examples, wait_until

SECOND = 1_000_000_000
# The extreme times a Point accepts (InfluxDB's limits: the int64 range minus reserved values).
TIME_MIN = INT64_MIN + 2
TIME_MAX = INT64_MAX - 1
T0 = 1_764_000_000 * SECOND  # 2025-11-24T16:00:00Z, a whole minute


#: How often written values move from `recent` into `samples`: after every write, after some
#: writes, never during the test. Reads must give the same answers in every case.
COMPACTION = {"compact-each-write": 1, "compact-sometimes": 700, "compact-never": 10**12}


@pytest.fixture(params=list(COMPACTION))
def store(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[HistorianStore]:
    rows = COMPACTION[request.param]
    with HistorianStore(tmp_path / "history.db", compact_rows=rows, compact_interval=math.inf) as s:
        yield s


def typed(values: list[StoredValue]) -> list[tuple[int, str, dict[str, str], str, type, object]]:
    """Values with their Python type (1 == 1.0 == True, but a store must keep the type)."""
    return [(v.time, v.measurement, v.tags, v.field, type(v.value), v.value) for v in values]


# --- round trips ---------------------------------------------------------------------------

EVERY_TYPE: list[tuple[str, float | int | bool | str]] = [
    ("f_zero", 0.0),
    ("f_one", 1.0),
    ("f_neg", -2.5),
    ("f_big", 1.7976931348623157e308),
    ("f_tiny", 5e-324),
    ("f_third", 1 / 3),
    ("i_zero", 0),
    ("i_one", 1),
    ("i_min", INT64_MIN),
    ("i_max", INT64_MAX),
    ("b_true", True),
    ("b_false", False),
    ("s_empty", ""),
    ("s_unicode", "Temperatur °C – Ölpumpe ✓ 温度 🙂"),
    ("s_quotes", 'say "hi", it\'s a \\ back\\slash'),
    ("s_newlines", "line 1\nline 2\r\n\ttabbed"),
    ("s_numeric", "42"),
    ("s_nul", "a\x00b"),
]


def test_every_type_round_trips_exactly(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    times = [T0 + 123_456_789, 0, -1, TIME_MIN, TIME_MAX, T0 + 1]
    points = [Point("machine", dict(EVERY_TYPE), {"line": "A", "machine": "cnc-01"}, time=t) for t in times]
    with HistorianStore(path) as store:
        store.write(points)
    with HistorianStore(path, readonly=True) as reader:  # a fresh object reads only the file
        got = reader.read("machine")
    expected = [
        (t, "machine", {"line": "A", "machine": "cnc-01"}, field, type(value), value)
        for t in sorted(times)
        for field, value in sorted(EVERY_TYPE, key=lambda fv: fv[0])
    ]
    assert sorted(typed(got), key=lambda r: (r[0], r[3])) == expected
    assert [v.time for v in got] == sorted(v.time for v in got), "values come oldest first"
    kinds = {s.field: s.kind for s in reader_series(path)}
    assert kinds["f_one"] == "float" and kinds["i_max"] == "int" and kinds["b_true"] == "bool"
    assert kinds["s_nul"] == "str"


def reader_series(path: Path) -> list[SeriesInfo]:
    with HistorianStore(path, readonly=True) as reader:
        return reader.series()


_examples = itertools.count()
field_values = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=INT64_MIN, max_value=INT64_MAX),
    st.booleans(),
    st.text(),
)


@settings(max_examples=examples(40, 400), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=st.lists(
        st.tuples(
            st.integers(min_value=TIME_MIN, max_value=TIME_MAX),
            st.sampled_from(["a", "b", "c"]),
            field_values,
        ),
        min_size=1,
        max_size=30,
    )
)
def test_any_values_round_trip_and_the_last_write_wins(
    store: HistorianStore, rows: list[tuple[int, str, FieldValue]]
) -> None:
    measurement = f"m{next(_examples)}"  # one store for all examples, one measurement each
    store.write([Point(measurement, {field: value}, {"k": "v"}, time=t) for t, field, value in rows])
    family = {bool: "bool", str: "str", int: "number", float: "number"}
    expected: dict[tuple[int, str, str], object] = {}
    for t, field, value in rows:  # the later of two writes of the same series and time wins
        expected[(t, field, family[type(value)])] = value
    got = {(v.time, v.field, family[type(v.value)]): v.value for v in store.read(measurement)}
    assert {k: (type(v), v) for k, v in got.items()} == {k: (type(v), v) for k, v in expected.items()}


def test_a_number_field_may_mix_ints_and_floats_and_text_gets_its_own_series(store: HistorianStore) -> None:
    store.write([Point("energy", {"p": 5}, time=T0), Point("energy", {"p": 5.5}, time=T0 + SECOND)])
    store.write([Point("energy", {"p": "sensor fault"}, time=T0 + 2 * SECOND)])
    assert typed(store.read("energy")) == [
        (T0, "energy", {}, "p", int, 5),
        (T0 + SECOND, "energy", {}, "p", float, 5.5),
        (T0 + 2 * SECOND, "energy", {}, "p", str, "sensor fault"),
    ]
    assert sorted((s.kind, s.last_value) for s in store.series("energy")) == [
        ("float", 5.5),
        ("str", "sensor fault"),
    ]


def test_an_empty_batch_is_a_no_op(store: HistorianStore) -> None:
    store.write([])
    assert store.read() == [] and store.series() == []


def test_series_survive_reopening_and_keep_their_ids(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    with HistorianStore(path) as store:
        store.write([Point("m", {"x": 1.0}, {"a": "1"}, time=T0)])
        first = store.series()
    with HistorianStore(path) as store:
        store.write([Point("m", {"x": 2.0}, {"a": "1"}, time=T0 + SECOND)])
        again = store.series()
        assert [s.id for s in again] == [s.id for s in first]
        assert again[0].last_value == 2.0 and again[0].last_time == T0 + SECOND
        assert [v.value for v in store.read("m")] == [1.0, 2.0]


# --- idempotence ---------------------------------------------------------------------------


def test_a_redelivered_point_overwrites_itself(store: HistorianStore) -> None:
    batch = [
        Point("energy", {"power_w": 100.0 + i, "count": i}, {"meter": "m1"}, time=T0 + i * SECOND) for i in range(120)
    ]
    store.write(batch)
    store.write(batch[50:70])  # at-least-once delivery: the same points again
    store.write(batch)
    store.write([Point("energy", {"power_w": 999.0}, {"meter": "m1"}, time=T0 + 10 * SECOND)])  # corrected value
    values = store.read("energy", fields=["power_w"])
    assert len(values) == 120
    assert values[10].value == 999.0
    assert len(store.series("energy")) == 2
    # Rollups are not skewed by the duplicates: 120 values in total, the right sum.
    power = next(s for s in store.series("energy", counts=True) if s.field == "power_w")
    assert power.count == 120
    buckets = store.range(power.id, T0, T0 + 3 * 60 * SECOND, points=2, rollups=True)
    assert sum(b.count for b in buckets) == 120
    expected_sum = sum(100.0 + i for i in range(120)) - 110.0 + 999.0
    assert sum((b.mean or 0) * b.count for b in buckets) == pytest.approx(expected_sum)


# --- filters -------------------------------------------------------------------------------


def test_read_filters_by_tags_fields_time_and_limit(store: HistorianStore) -> None:
    points = []
    for i in range(10):
        for line, machine in (("A", "cnc-01"), ("A", "cnc-02"), ("B", "cnc-01")):
            points.append(
                Point(
                    "machine",
                    {"rpm": i * 10, "temp": 20.0 + i},
                    {"line": line, "machine": machine},
                    time=T0 + i * SECOND,
                )
            )
    points.append(Point("energy", {"rpm": 1}, {"line": "A"}, time=T0))
    store.write(points)

    line_a = store.read("machine", tags={"line": "A"})
    assert len(line_a) == 40 and {v.tags["machine"] for v in line_a} == {"cnc-01", "cnc-02"}
    one = store.read("machine", tags={"line": "A", "machine": "cnc-02"}, fields=["rpm"])
    assert [(v.time, v.value) for v in one] == [(T0 + i * SECOND, i * 10) for i in range(10)]
    assert store.read("machine", tags={"line": "C"}) == []
    assert store.read("machine", tags={"shift": "night"}) == []
    assert store.read("nothing") == []
    window = store.read("machine", fields=["temp"], since_ns=T0 + 3 * SECOND, until_ns=T0 + 5 * SECOND)
    assert sorted({v.time for v in window}) == [T0 + 3 * SECOND, T0 + 4 * SECOND, T0 + 5 * SECOND]
    assert len(window) == 9
    first = store.read("machine", limit=4)
    assert len(first) == 4 and all(v.time == T0 for v in first)
    assert len(store.read()) == 61, "no measurement: everything"
    assert {v.measurement for v in store.read(tags={"line": "A"}, fields=["rpm"])} == {"machine", "energy"}


# --- range queries -------------------------------------------------------------------------


def brute_force_check(
    samples: dict[int, float | int], buckets: list[Bucket], start: int, end: int, points: int
) -> None:
    """Every bucket against the samples it covers; buckets cover every sample once, in order."""
    assert len(buckets) <= points
    covered = 0
    previous_end = start - 1
    for bucket in buckets:
        assert start <= bucket.time <= bucket.end <= end
        assert bucket.time > previous_end, "buckets are ordered and do not overlap"
        previous_end = bucket.end
        inside = sorted((t, v) for t, v in samples.items() if bucket.time <= t <= bucket.end)
        assert inside, "no empty buckets"
        values = [v for _, v in inside]
        assert bucket.count == len(values)
        assert bucket.min == min(values) and bucket.max == max(values)
        assert bucket.mean == pytest.approx(sum(values) / len(values), rel=1e-9)
        assert bucket.last == inside[-1][1] and type(bucket.last) is type(inside[-1][1])
        covered += len(values)
    assert covered == sum(1 for t in samples if start <= t <= end)


def test_range_matches_brute_force_for_raw_and_rollup_paths(store: HistorianStore) -> None:
    rng = random.Random(7)
    samples: dict[int, float | int] = {}
    # Six hours of irregular data with gaps, written in shuffled batches, some twice.
    t = T0 - 3 * 3600 * SECOND
    while t < T0 + 3 * 3600 * SECOND:
        t += rng.choice([SECOND, SECOND, 2 * SECOND, 7 * SECOND + 123, 600 * SECOND])
        samples[t] = rng.choice([rng.uniform(-50, 50), rng.randint(-1000, 1000)])
    items = list(samples.items())
    batches = [items[i : i + 700] for i in range(0, len(items), 700)]
    rng.shuffle(batches)
    for batch in batches + batches[:3]:
        store.write([Point("m", {"v": v}, time=t) for t, v in batch])
    sid = store.series("m")[0].id

    cases = [
        (T0 - 3 * 3600 * SECOND, T0 + 3 * 3600 * SECOND, 1000),  # whole range, 22 s buckets: raw
        (T0 - 3 * 3600 * SECOND, T0 + 3 * 3600 * SECOND, 100),  # 4-minute buckets: rollups
        (T0 - 7_777_777_777, T0 + 5400 * SECOND + 12_345, 50),  # edges not on minute boundaries
        (T0 + 17 * SECOND, T0 + 17 * SECOND, 10),  # a single instant
        (T0 - 3 * 3600 * SECOND, T0 + 3 * 3600 * SECOND, 1),  # one bucket
        (T0 + 90 * SECOND, T0 + 150 * SECOND, 1000),  # narrow: one-nanosecond-ish buckets
    ]
    for start, end, points in cases:
        for rollups in (None, False, True):
            buckets = store.range(sid, start, end, points, rollups=rollups)
            brute_force_check(samples, buckets, start, end, points)
    assert store.range(sid, T0, T0 - 1) == []
    with pytest.raises(HistorianError, match="no series with id"):
        store.range(10_000, T0, T0 + 1)


def test_range_uses_rollups_for_long_spans_and_buckets_stay_aligned(store: HistorianStore) -> None:
    day = 86400
    store.write([Point("m", {"v": float(i % 600)}, time=T0 + i * SECOND) for i in range(day)])
    store.compact()
    sid = store.series("m")[0].id
    # The rollups really serve the query: corrupting a rolled-up minute shows in the result.
    store.connection.execute(
        "UPDATE rollup_1m SET vmax = 1e9 WHERE series_id = ? AND minute = ?", (sid, T0 // MINUTE_NS + 5)
    )
    with_rollups = store.range(sid, T0, T0 + day * SECOND, 200)
    raw = store.range(sid, T0, T0 + day * SECOND, 200, rollups=False)
    assert max(b.max for b in with_rollups if b.max is not None) == 1e9
    assert max(b.max for b in raw if b.max is not None) == 599.0
    width = with_rollups[1].time - with_rollups[0].time
    assert width % MINUTE_NS == 0 and all(b.time % width == 0 for b in with_rollups[1:])
    # Sliding the window by a few seconds keeps the same bucket boundaries.
    slid = store.range(sid, T0 + 7 * SECOND, T0 + day * SECOND + 7 * SECOND, 200)
    assert [b.time for b in slid[1:-1]] == [b.time for b in with_rollups[1 : len(slid) - 1]]


def test_range_of_bool_and_text_series(store: HistorianStore) -> None:
    states = ["idle", "running", "running", "alarm"]
    store.write(
        [Point("machine", {"on": i % 3 == 0, "state": states[i % 4]}, time=T0 + i * 10 * SECOND) for i in range(600)]
    )
    by_field = {s.field: s for s in store.series("machine")}
    assert by_field["on"].kind == "bool" and by_field["on"].last_value is False
    for rollups in (False, True):
        on = store.range(by_field["on"].id, T0, T0 + 6000 * SECOND, 10, rollups=rollups)
        assert sum(b.count for b in on) == 600
        assert all(type(b.last) is bool for b in on)
        assert sum(b.mean * b.count for b in on if b.mean is not None) == pytest.approx(200)
        state = store.range(by_field["state"].id, T0, T0 + 6000 * SECOND, 10, rollups=rollups)
        assert sum(b.count for b in state) == 600
        assert all(b.min is None and b.mean is None and isinstance(b.last, str) for b in state)
    assert state[-1].last == "alarm"


def test_late_points_update_rolled_up_minutes(store: HistorianStore) -> None:
    store.write([Point("m", {"v": 1.0}, time=T0 + i * SECOND) for i in range(600)])  # ten minutes
    sid = store.series("m")[0].id
    store.write([Point("m", {"v": 50.0}, time=T0 + 30 * SECOND + 1)])  # late, into a rolled-up minute
    store.write([Point("m", {"v": -5.0}, time=T0 + 61 * SECOND)])  # an overwrite there
    buckets = store.range(sid, T0, T0 + 600 * SECOND - 1, 12, rollups=True)  # one-minute buckets
    assert buckets[0].count == 61 and buckets[0].max == 50.0
    assert buckets[1].count == 60 and buckets[1].min == -5.0


# --- retention -----------------------------------------------------------------------------


def test_retention_deletes_old_values_in_chunks_and_keeps_rollups_right(tmp_path: Path) -> None:
    store = HistorianStore(tmp_path / "h.db", retention=86400)
    hour = 3600 * SECOND
    now = T0 + 72 * hour
    samples = {T0 + i * 30 * SECOND + 17: float(i) for i in range(72 * 120)}  # 3 days, every 30 s
    store.write([Point("m", {"v": v}, {"a": "1"}, time=t) for t, v in samples.items()])
    store.write([Point("old", {"v": 1}, time=T0)])  # a series with nothing recent
    cutoff = now - 24 * hour
    old = sum(1 for t in samples if t < cutoff) + 1

    assert store.retention_step(cutoff, max_rows=100) == 100
    assert store.apply_retention(now) == old - 100
    assert store.apply_retention(now) == 0

    kept = {t: v for t, v in samples.items() if t >= cutoff}
    assert [(v.time, v.value) for v in store.read("m")] == sorted(kept.items())
    assert [s.measurement for s in store.series()] == ["m"], "a series left empty is removed"
    sid = store.series("m")[0].id
    for rollups in (True, False):
        brute_force_check(kept, store.range(sid, T0, now, 100, rollups=rollups), T0, now, 100)
    assert store.series(counts=True)[0].count == len(kept)
    # The removed series comes back as a new series when written again.
    store.write([Point("old", {"v": 2}, time=now)])
    assert [v.value for v in store.read("old")] == [2]
    store.close()


def test_no_retention_keeps_everything(store: HistorianStore) -> None:
    store.write([Point("m", {"v": 1}, time=0)])
    assert store.apply_retention() == 0
    assert len(store.read("m")) == 1


# --- files, readers, errors ----------------------------------------------------------------


def test_readonly_needs_an_existing_historian_file(tmp_path: Path) -> None:
    with pytest.raises(HistorianError, match="no historian file at"):
        HistorianStore(tmp_path / "missing.db", readonly=True)
    assert not (tmp_path / "missing.db").exists()
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
    for readonly in (True, False):
        with pytest.raises(HistorianError, match="not a historian file"):
            HistorianStore(other, readonly=readonly)
    (tmp_path / "text.db").write_text("hello, I am not a database at all" * 100)
    with pytest.raises(HistorianError, match="not a historian file"):
        HistorianStore(tmp_path / "text.db", readonly=True)
    HistorianStore(tmp_path / "h.db").close()
    with HistorianStore(tmp_path / "h.db", readonly=True) as reader, pytest.raises(HistorianError, match="read-only"):
        reader.write([Point("m", {"v": 1})])


def test_a_failed_write_changes_nothing_and_the_store_recovers(store: HistorianStore) -> None:
    store.write([Point("m", {"v": 1.0}, time=T0)])
    pages = store.connection.execute("PRAGMA page_count").fetchone()[0]
    store.connection.execute(f"PRAGMA max_page_count = {pages}")  # the disk is "full"
    big = [Point("m", {"v": float(i), "new": "x" * 100}, {"t": str(i % 50)}, time=T0 + i) for i in range(1, 5000)]
    with pytest.raises(sqlite3.OperationalError, match="full"):
        store.write(big)
    assert len(store.read()) == 1 and len(store.series()) == 1
    store.connection.execute("PRAGMA max_page_count = 1073741823")
    store.write(big)
    assert len(store.read()) == 1 + 2 * 4999
    assert len(store.series()) == 101


WRITER = textwrap.dedent(
    """
    import sys
    import time
    from gateway.point import Point
    from gateway.sinks.historian.store import HistorianStore
    store = HistorianStore(sys.argv[1])
    t0 = 1_764_000_000 * 10**9
    for batch in range(int(sys.argv[2])):
        store.write([Point("m", {"v": batch * 1000 + i}, {"s": str(i % 10)}, time=t0 + (batch * 1000 + i) * 10**6)
                     for i in range(1000)])
        time.sleep(0.01)  # a gateway writes a batch every few milliseconds, not flat out
    store.close()
    """
)


def test_a_reader_reads_while_another_process_writes(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    HistorianStore(path).close()
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), "150"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[3],
    )
    try:
        with HistorianStore(path, readonly=True) as reader:
            seen = [0]

            def grew() -> bool:
                infos = reader.series("m", counts=True)
                count = sum(s.count or 0 for s in infos)
                assert count % 1000 == 0, "a reader sees whole batches (transactions), never half of one"
                assert count >= seen[-1]
                if count:
                    newest = reader.read("m", since_ns=T0 + (count - 1000) * 10**6, until_ns=T0 + (count - 1) * 10**6)
                    assert [v.value for v in newest] == list(range(count - 1000, count))
                    buckets = reader.range(infos[0].id, T0, T0 + 10**12, 100)
                    in_range = sum(b.count for b in buckets)  # read later: maybe more batches by now
                    assert in_range >= count // 10 and in_range % 100 == 0
                seen.append(count)
                return count >= 150_000

            wait_until(grew, timeout=120, interval=0.02, message="the reader sees every batch")
            assert len(set(seen)) > 3, f"the reader saw the data grow while it was written: {sorted(set(seen))}"
        assert writer.wait(60) == 0
    finally:
        writer.kill()
        writer.wait()
    with HistorianStore(path, readonly=True) as reader:
        assert len(reader.read("m")) == 150_000
        assert [s.count for s in reader.series(counts=True)] == [15_000] * 10
        for info in reader.series():
            assert sum(b.count for b in reader.range(info.id, T0, T0 + 10**12, 100)) == 15_000


@pytest.mark.parametrize("compact_rows", [1, 10**12])
def test_two_writers_on_one_file_stay_correct(tmp_path: Path, compact_rows: int) -> None:
    """Not the intended setup (one gateway per file), but two writers must not corrupt rollups."""
    path = tmp_path / "h.db"
    first, second = (HistorianStore(path, compact_rows=compact_rows, compact_interval=math.inf) for _ in range(2))
    samples: dict[int, float | int] = {}
    for minute in range(6):
        writer = first if minute % 2 == 0 else second
        batch = {T0 + minute * MINUTE_NS + s * SECOND: float(minute * 100 + s) for s in range(0, 60, 5)}
        writer.write([Point("m", {"v": v}, time=t) for t, v in batch.items()])
        samples.update(batch)
    # Late points, into minutes the other writer rolled up, and newer than what this one wrote.
    late = {T0 + 2 * MINUTE_NS + 1: 1e6, T0 + 10 * SECOND: -1e6, T0 + 4 * MINUTE_NS + 57 * SECOND: 0.5}
    first.write([Point("m", {"v": v}, time=t) for t, v in late.items()])
    samples.update(late)
    for store in (first, second):
        info = store.series("m", counts=True)[0]
        assert info.count == len(samples)
        assert (info.last_time, info.last_value) == (T0 + 5 * MINUTE_NS + 55 * SECOND, 555.0)
        buckets = store.range(info.id, T0, T0 + 7 * MINUTE_NS, 7, rollups=True)
        brute_force_check(samples, buckets, T0, T0 + 7 * MINUTE_NS, 7)
    first.close()
    second.close()


KILLED_WRITER = textwrap.dedent(
    """
    import sys, time
    from gateway.point import Point
    from gateway.sinks.historian.store import HistorianStore
    store = HistorianStore(sys.argv[1], compact_rows=2500)
    t0 = 1_764_000_000 * 10**9
    for batch in range(7):
        store.write([Point("m", {"v": batch * 1000 + i}, {"s": str(i % 7)}, time=t0 + (batch * 1000 + i) * 10**9)
                     for i in range(1000)])
    print("written", flush=True)
    time.sleep(600)  # killed here, without closing: some values compacted, some still pending
    """
)


def test_every_committed_write_survives_a_killed_writer(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    writer = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[3],
    )
    try:
        assert writer.stdout is not None and writer.stdout.readline() == "written\n"
    finally:
        writer.kill()
        writer.wait()
    expected = list(range(7000))
    with HistorianStore(path, readonly=True) as reader:
        assert [v.value for v in reader.read("m")] == expected
        pending = reader.connection.execute("SELECT count(*) FROM recent").fetchone()[0]
        assert 0 < pending < 7000, "the kill left values both compacted and pending"
    with HistorianStore(path) as store:  # the next gateway start carries on
        assert store.compact() == pending
        assert [v.value for v in store.read("m")] == expected
        info = store.series("m", counts=True)
        assert sum(s.count or 0 for s in info) == 7000
        brute_force_check(
            {T0 + (b * 1000 + i) * SECOND: b * 1000 + i for b in range(7) for i in range(0, 1000, 7)},  # s=0
            store.range(info[0].id, T0, T0 + 7000 * SECOND, 50),
            T0,
            T0 + 7000 * SECOND,
            50,
        )


def test_closing_the_writer_compacts_everything(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    with HistorianStore(path) as store:
        store.write([Point("m", {"v": i}, time=T0 + i) for i in range(100)])
        assert store.connection.execute("SELECT count(*) FROM recent").fetchone()[0] == 100
    con = sqlite3.connect(path)
    assert con.execute("SELECT count(*) FROM recent").fetchone()[0] == 0
    assert con.execute("SELECT count(*) FROM samples").fetchone()[0] == 100
    con.close()
