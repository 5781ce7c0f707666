"""Per-second rates of the components' counters (points received, written…), over a short window.

The HTTP server samples every status once a second; a rate is the counter's growth between
the oldest and newest sample in the window (10 s by default), divided by the time between them.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable

from gateway.component import Status

__all__ = ["RateTracker"]


class RateTracker:
    def __init__(self, window: float = 10.0) -> None:
        self.window = window
        self._samples: dict[tuple[str, str], deque[tuple[float, dict[str, int]]]] = {}

    def sample(self, statuses: Iterable[Status], now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        for status in statuses:
            samples = self._samples.setdefault((status.kind, status.name), deque())
            samples.append((now, dict(status.counters)))
            while len(samples) > 2 and now - samples[1][0] >= self.window:
                samples.popleft()

    def rates(self, status: Status) -> dict[str, float]:
        """Counter name → growth per second (empty until two samples exist)."""
        samples = self._samples.get((status.kind, status.name))
        if not samples or len(samples) < 2:
            return {}
        (t0, first), (t1, last) = samples[0], samples[-1]
        elapsed = t1 - t0
        if elapsed <= 0:
            return {}
        return {name: round(max(0, value - first.get(name, 0)) / elapsed, 3) for name, value in last.items()}
