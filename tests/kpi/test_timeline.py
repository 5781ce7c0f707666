"""States to intervals, counters to increases, and the ratios: exact small cases and properties.

The properties (hypothesis) are the ones a production manager relies on without checking: the
seconds always add up to the range, every ratio is between 0 and 1 or null, a range split in two
and added up gives the totals of the whole, and the hourly compact form gives exactly what the
raw samples give.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.kpi.calendar import Window
from gateway.kpi.compute import CATEGORIES, Kpi, measure
from gateway.kpi.timeline import CounterLine, Interval, counter_piece, increases, intervals, runs_of
from gateway.point import FieldValue
from tests.helpers import examples

S = 10**9
CATEGORY = {"run": "running", "idle": "idle", "alarm": "down", "setup": "setup", "break": "planned_stop"}


def category(value: FieldValue | None) -> str:
    return "no_data" if value is None else CATEGORY.get(str(value), "unknown")


def spans(found: list[Interval]) -> list[tuple[int, int, str]]:
    return [(i.start, i.end, category(i.value)) for i in found]


def test_a_state_holds_until_the_next_sample_or_the_timeout() -> None:
    samples = [(0, "run"), (10 * S, "run"), (20 * S, "idle"), (100 * S, "idle"), (400 * S, "alarm")]
    found = intervals(runs_of(samples, 60 * S), 60 * S, 0, 500 * S)
    assert [(i.start // S, i.end // S, i.value) for i in found] == [
        (0, 20, "run"),
        (20, 80, "idle"),  # 80 s to the next sample: longer than the timeout, so a gap
        (80, 100, None),
        (100, 160, "idle"),  # the last idle sample holds 60 s; nothing until 400
        (160, 400, None),
        (400, 460, "alarm"),
        (460, 500, None),
    ]
    # A range that starts inside a state counts the part after its start.
    cut = intervals(runs_of(samples, 60 * S), 60 * S, 50 * S, 120 * S)
    assert [(i.start // S, i.end // S, i.value) for i in cut] == [(50, 80, "idle"), (80, 100, None), (100, 120, "idle")]


def test_counter_resets_and_delta_counters() -> None:
    total = counter_piece([(1, 100), (2, 103), (3, 103), (4, 2), (5, 7), (6, "n/a")], "total")
    assert list(increases([total])) == [(2, 3.0), (4, 2.0), (5, 5.0)]  # the reset to 2 counts 2
    assert total.not_numeric == 1
    assert list(increases([total], baseline=90)) == [(1, 10.0), (2, 3.0), (4, 2.0), (5, 5.0)]
    delta = counter_piece([(1, 1), (2, 0), (3, 2), (4, -1)], "delta")
    assert list(increases([delta])) == [(1, 1.0), (3, 2.0)]  # a negative increment is not a part
    line = CounterLine.of(increases([total], baseline=90))
    assert line.amount(0, 10) == 20 and line.amount(2, 4) == 3 and line.amount(4, 4) == 0


def test_ratios_with_a_zero_denominator_are_null_and_out_of_range_ones_are_capped() -> None:
    empty = measure(0, 10 * S, [(0, 10 * S, "planned_stop")], [Window(0, 10 * S)], parts=CounterLine.of([]))
    assert (empty.availability, empty.performance, empty.quality, empty.oee) == (None, None, None, None)
    assert empty.as_dict()["planned_seconds"] == 0
    fast = measure(
        0,
        100 * S,
        [(0, 100 * S, "running")],
        [Window(0, 100 * S)],
        parts=CounterLine.of([(S, 20.0)]),
        scrap=CounterLine.of([(S, 25.0)]),
        ideal_ns=10 * S,
    )
    assert fast.performance == 1.0 and fast.quality == 0.0 and fast.good == 0
    assert len(fast.warnings) == 2 and "ideal cycle time" in fast.warnings[0]


def test_running_outside_the_shifts_does_not_count_in_the_ratios() -> None:
    # 10 h running, a shift of 8 h within it; parts all day long, 1 per 10 s.
    parts = CounterLine.of((t * S, 1.0) for t in range(0, 36000, 10))
    kpi = measure(
        0, 36000 * S, [(0, 36000 * S, "running")], [Window(3600 * S, 32400 * S, "A")], parts=parts, ideal_ns=10 * S
    )
    assert kpi.ns["running"] == 36000 * S and kpi.parts == 3600
    assert kpi.planned_ns == 28800 * S and kpi.parts_planned == 2880
    assert (kpi.availability, kpi.performance, kpi.quality, kpi.oee) == (1.0, 1.0, 1.0, 1.0)


# --- properties -------------------------------------------------------------------------------------

VALUES = st.sampled_from(["run", "idle", "alarm", "setup", "break", "mystery", 2])
TIMES = st.integers(min_value=0, max_value=10_000)
samples_st = st.lists(st.tuples(TIMES.map(lambda t: t * S), VALUES), max_size=60)
counter_st = st.lists(st.tuples(TIMES.map(lambda t: t * S), st.integers(min_value=0, max_value=50)), max_size=60)
timeout_st = st.integers(min_value=1, max_value=2000).map(lambda t: t * S)


@st.composite
def ranges(draw: st.DrawFn) -> tuple[int, int, int]:
    a, b, c = sorted(draw(st.lists(st.integers(min_value=-500, max_value=11_000), min_size=3, max_size=3)))
    return a * S, b * S, c * S


@st.composite
def windows(draw: st.DrawFn) -> list[Window]:
    bounds = sorted(set(draw(st.lists(st.integers(min_value=-500, max_value=11_000), max_size=8))))
    return [Window(lo * S, hi * S, "W") for lo, hi in zip(bounds[::2], bounds[1::2], strict=False)]


def clip(found: list[Window], start: int, end: int) -> list[Window]:
    return [w for w in (x.clip(start, end) for x in found) if w is not None]


def kpi_of(
    samples: list[tuple[int, FieldValue]],
    counts: list[tuple[int, int]],
    scrap: list[tuple[int, int]],
    timeout: int,
    plan: list[Window],
    start: int,
    end: int,
) -> Kpi:
    runs = runs_of(samples, timeout)
    parts = CounterLine.of(increases([counter_piece(counts, "total")]))
    scrap_line = CounterLine.of(increases([counter_piece(scrap, "delta")]))
    return measure(
        start,
        end,
        spans(intervals(runs, timeout, start, end)),
        clip(plan, start, end),
        parts=parts,
        scrap=scrap_line,
        ideal_ns=7 * S,
    )


@settings(max_examples=examples(300, 2000), deadline=None)
@given(samples_st, counter_st, counter_st, timeout_st, windows(), ranges())
def test_seconds_add_up_ratios_stay_in_range_and_halves_add_up_to_the_whole(
    samples: list[tuple[int, FieldValue]],
    counts: list[tuple[int, int]],
    scrap: list[tuple[int, int]],
    timeout: int,
    plan: list[Window],
    bounds: tuple[int, int, int],
) -> None:
    start, middle, end = bounds
    whole = kpi_of(samples, counts, scrap, timeout, plan, start, end)
    assert sum(whole.ns.values()) == end - start
    for ratio in (whole.availability, whole.performance, whole.quality, whole.oee):
        assert ratio is None or 0.0 <= ratio <= 1.0
    merged = kpi_of(samples, counts, scrap, timeout, plan, start, middle).merge(
        kpi_of(samples, counts, scrap, timeout, plan, middle, end)
    )
    assert merged.ns == whole.ns
    assert merged.planned_ns_by == whole.planned_ns_by and merged.window_ns == whole.window_ns
    assert (merged.parts, merged.scrap, merged.parts_planned, merged.scrap_planned) == (
        whole.parts,
        whole.scrap,
        whole.parts_planned,
        whole.scrap_planned,
    )
    assert merged.as_dict() == whole.as_dict()
    assert set(whole.ns) == set(CATEGORIES)


@settings(max_examples=examples(300, 2000), deadline=None)
@given(samples_st, counter_st, timeout_st, st.integers(min_value=1, max_value=3000), ranges())
def test_the_hourly_compact_form_gives_exactly_what_the_raw_samples_give(
    samples: list[tuple[int, FieldValue]],
    counts: list[tuple[int, int]],
    timeout: int,
    chunk_seconds: int,
    bounds: tuple[int, int, int],
) -> None:
    start, _, end = bounds
    chunk = chunk_seconds * S
    raw = dict(samples)  # (the last of two samples at one time wins, as in the store)
    by_chunk: dict[int, list[tuple[int, FieldValue]]] = {}
    for t, v in raw.items():
        by_chunk.setdefault(t // chunk, []).append((t, v))
    runs = [run for key in sorted(by_chunk) for run in runs_of(by_chunk[key], timeout)]
    assert spans(intervals(runs, timeout, start, end)) == spans(
        intervals(runs_of(raw.items(), timeout), timeout, start, end)
    )
    counted = dict(counts)
    pieces: dict[int, list[tuple[int, int]]] = {}
    for t, v in counted.items():
        pieces.setdefault(t // chunk, []).append((t, v))
    chunked = list(increases([counter_piece(pieces[k], "total") for k in sorted(pieces)]))
    assert chunked == list(increases([counter_piece(counted.items(), "total")]))
    line = CounterLine.of_pieces([counter_piece(pieces[k], "total") for k in sorted(pieces)], baseline=7)
    whole = CounterLine.of(increases([counter_piece(counted.items(), "total")], baseline=7))
    assert line.amount(start, end) == whole.amount(start, end) and len(line) == len(whole)
