"""From samples to time: state runs and intervals, counter increases. Pure, integer nanoseconds.

**States.** A state lasts from its sample until the next sample, or until ``timeout`` after its
last sample, whichever comes first; time with no state is *no data*. Consecutive samples with
the same value and gaps of at most ``timeout`` form a :class:`Run` (its first and last sample
times and the value). Runs are the compact form of a state history: the intervals follow from
them exactly — a run holds from its first sample until the next run's first sample or its last
sample + ``timeout`` — however many samples repeated the value in between, so an hour of 1 Hz
samples of a machine that changed state twice is three runs.

**Counters.** ``kind: total`` (a cumulative counter such as a PLC's part count): each sample adds
its increase over the previous sample; a value lower than the previous one means the counter
was reset, and the new value counts from zero (it adds the value itself). ``kind: delta``: each
sample carries the increment itself. An increase belongs to the time of the sample that shows
it. A :class:`CounterPiece` is the compact form of a counter's samples over a span: its first
and last sample and the non-zero increases between samples inside the span; increases across
two spans are added when the spans are put together (:func:`increases`).
"""

from __future__ import annotations

import bisect
import itertools
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

from gateway.point import FieldValue

__all__ = [
    "CounterKind",
    "CounterLine",
    "CounterPiece",
    "Interval",
    "Run",
    "append_run",
    "counter_piece",
    "increase",
    "increases",
    "intervals",
    "runs_of",
]

CounterKind = Literal["total", "delta"]


@dataclass(slots=True)
class Run:
    """Samples of one state value, each at most ``timeout`` after the previous one."""

    first: int
    last: int
    value: FieldValue


@dataclass(frozen=True, slots=True)
class Interval:
    """A span [start, end) in one state; ``value`` None is time without data."""

    start: int
    end: int
    value: FieldValue | None


def _same(a: FieldValue, b: FieldValue) -> bool:
    return a == b and type(a) is type(b)


def append_run(runs: list[Run], time: int, value: FieldValue, timeout: int) -> bool:
    """Add a sample after every run in ``runs``; False (nothing changed) if it is not after the last sample."""
    if runs:
        last = runs[-1]
        if time <= last.last:
            return False
        if _same(last.value, value) and time - last.last <= timeout:
            last.last = time
            return True
    runs.append(Run(time, time, value))
    return True


def runs_of(samples: Iterable[tuple[int, FieldValue]], timeout: int, *, ordered: bool = False) -> list[Run]:
    """Runs of samples (of two samples at one time, the later in the input wins).

    ``ordered``: the samples come in time order, once each (a history read): no sorting.
    """
    runs: list[Run] = []
    for time, value in samples if ordered else sorted(dict(samples).items()):
        append_run(runs, time, value, timeout)
    return runs


def intervals(runs: Sequence[Run], timeout: int, start: int, end: int) -> list[Interval]:
    """The state timeline on [start, end): runs turned into intervals, gaps as no data, tiling the range.

    ``runs`` must be in time order and hold every run that can reach ``start`` (those whose last
    sample is after ``start - timeout``). Adjacent intervals of one value are merged.
    """
    out: list[Interval] = []
    if end <= start:
        return out
    cursor = start

    def add(lo: int, hi: int, value: FieldValue | None) -> None:
        nonlocal cursor
        lo, hi = max(lo, cursor), min(hi, end)
        if hi <= lo:
            return
        if lo > cursor:
            add_raw(cursor, lo, None)
        add_raw(lo, hi, value)
        cursor = hi

    def add_raw(lo: int, hi: int, value: FieldValue | None) -> None:
        if (
            out
            and out[-1].end == lo
            and (
                (value is None and out[-1].value is None)
                or (value is not None and out[-1].value is not None and _same(out[-1].value, value))
            )
        ):
            out[-1] = Interval(out[-1].start, hi, value)
        else:
            out.append(Interval(lo, hi, value))

    # The first run that can matter: its (last sample + timeout) reaches past start.
    index = max(0, bisect.bisect_left([r.last for r in runs], start - timeout) - 1)
    for i in range(index, len(runs)):
        run = runs[i]
        if run.first >= end:
            break
        hold = run.last + timeout
        if i + 1 < len(runs):
            hold = min(hold, runs[i + 1].first)
        add(run.first, hold, run.value)
    if cursor < end:
        add_raw(cursor, end, None)
    return out


# --- counters -----------------------------------------------------------------------------------


def increase(previous: float, value: float) -> float:
    """What a cumulative counter adds from ``previous`` to ``value`` (a decrease is a reset: from zero)."""
    return value - previous if value >= previous else value


@dataclass(slots=True)
class CounterPiece:
    """A counter's samples over one span, compacted (see the module docstring)."""

    kind: CounterKind
    first: tuple[int, float] | None = None
    last: tuple[int, float] | None = None
    #: times of the non-zero increases inside the span (between two of its samples), ascending;
    #: machine-typed arrays, as an hour of a fast machine holds thousands of them
    times: array[int] = field(default_factory=lambda: array("q"))
    amounts: array[float] = field(default_factory=lambda: array("d"))
    #: samples whose value was not a number (text, a boolean): left out
    not_numeric: int = 0

    @property
    def total(self) -> float:
        return sum(self.amounts)

    def add(self, time: int, value: float) -> bool:
        """Append a sample after the last one; False (nothing changed) if it is not after it."""
        if self.last is not None and time <= self.last[0]:
            return False
        if self.kind == "delta":
            if value > 0:
                self.times.append(time)
                self.amounts.append(value)
        elif self.last is not None:
            amount = increase(self.last[1], value)
            if amount:
                self.times.append(time)
                self.amounts.append(amount)
        if self.first is None:
            self.first = (time, value)
        self.last = (time, value)
        return True


def numeric(value: FieldValue) -> float | None:
    """A counter's sample as a number, or None for text and booleans (not counts)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value


def counter_piece(
    samples: Iterable[tuple[int, FieldValue]], kind: CounterKind, *, ordered: bool = False
) -> CounterPiece:
    """The compact form of a counter's samples (of two at one time the later wins; ``ordered``: as in
    :func:`runs_of`)."""
    piece = CounterPiece(kind)
    for time, value in samples if ordered else sorted(dict(samples).items()):
        number = numeric(value)
        if number is None:
            piece.not_numeric += 1
            continue
        piece.add(time, number)
    return piece


def increases(pieces: Sequence[CounterPiece], baseline: float | None = None) -> Iterator[tuple[int, float]]:
    """Every increase of consecutive pieces in time order, including those between two pieces.

    ``baseline`` is the counter's last value before the first piece (None: unknown, so the first
    sample only sets where counting starts).
    """
    previous = baseline
    for piece in pieces:
        if piece.first is None:
            continue
        if piece.kind == "total" and previous is not None:  # (a delta piece lists every sample already)
            amount = increase(previous, piece.first[1])
            if amount:
                yield piece.first[0], amount
        yield from zip(piece.times, piece.amounts, strict=True)
        assert piece.last is not None
        previous = piece.last[1]


class CounterLine:
    """A counter's increases in time order, summed between any two times in O(log n)."""

    __slots__ = ("_sums", "_times")

    def __init__(self, times: array[int], sums: array[float]) -> None:
        self._times = times
        self._sums = sums  # sums[i]: increases before times[i] (sums[0] = 0), one more entry than times

    @classmethod
    def of(cls, amounts: Iterable[tuple[int, float]]) -> CounterLine:
        times, sums = array("q"), array("d", [0.0])
        total = 0.0
        for time, amount in amounts:
            times.append(time)
            total += amount
            sums.append(total)
        return cls(times, sums)

    @classmethod
    def of_pieces(cls, pieces: Sequence[CounterPiece], baseline: float | None = None) -> CounterLine:
        """:func:`increases` of ``pieces`` as a line, the pieces' arrays copied whole (a week of a fast
        machine is tens of thousands of increases: no Python loop over them)."""
        times, amounts = array("q"), array("d")
        previous = baseline
        for piece in pieces:
            if piece.first is None:
                continue
            if piece.kind == "total" and previous is not None:
                amount = increase(previous, piece.first[1])
                if amount:
                    times.append(piece.first[0])
                    amounts.append(amount)
            times.extend(piece.times)
            amounts.extend(piece.amounts)
            assert piece.last is not None
            previous = piece.last[1]
        sums = array("d", [0.0])
        sums.extend(itertools.accumulate(amounts))
        return cls(times, sums)

    def amount(self, start: int, end: int) -> float:
        """The increases at times in [start, end)."""
        if end <= start:
            return 0.0
        lo = bisect.bisect_left(self._times, start)
        hi = bisect.bisect_left(self._times, end)
        return self._sums[hi] - self._sums[lo]

    def __len__(self) -> int:
        return len(self._times)
