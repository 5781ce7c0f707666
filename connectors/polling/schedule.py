"""A fixed-rate scan schedule: slot *k* is at ``start + k * interval``, whatever each scan took.

A scan that ends after its next slot (an overrun) does not make the following scans run back
to back to catch up: the schedule moves on to the first slot still ahead, so a slow device is
read as often as it can be, at the same phase, and the skipped slots are counted.
"""

from __future__ import annotations

import math

__all__ = ["Schedule"]


class Schedule:
    """When the next scan is due, on a monotonic clock (seconds)."""

    def __init__(self, interval: float, first_at: float) -> None:
        if interval <= 0:
            raise ValueError("a scan interval must be positive")
        self.interval = interval
        self.next_at = first_at

    def delay(self, now: float) -> float:
        """Seconds until the next scan is due (0 if it is due already)."""
        return max(0.0, self.next_at - now)

    def advance(self, now: float) -> int:
        """The scan of the current slot is done at ``now``: move to the next slot ahead.

        Returns how many slots were skipped because the scan ended after them.
        """
        self.next_at += self.interval
        if self.next_at > now:
            return 0
        missed = math.floor((now - self.next_at) / self.interval) + 1
        self.next_at += missed * self.interval
        return missed

    def postpone(self, now: float, delay: float) -> None:
        """Retry later than the schedule would (a device that does not answer): ``delay`` from now,
        then on the same phase as before."""
        target = now + delay
        if target > self.next_at:
            self.next_at += math.ceil((target - self.next_at) / self.interval) * self.interval
