"""What one polled device is doing: its state, last error, counters, scan times and data gaps.

Every device has a :class:`DeviceHealth`. It keeps the device's entry in the connector's
``Status.detail["devices"]`` up to date (the HTTP API and ``/metrics`` read it from there)
and logs each gap in the data exactly twice: when the device stops delivering, with the
reason, and when data flows again, with how long the gap lasted.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Mapping
from typing import Any

from gateway.component import LATENCY_BUCKETS, Histogram

__all__ = ["DEVICE_COUNTERS", "DeviceHealth", "DeviceState"]

#: Counters every device has (per device in /metrics, with a ``device`` label).
DEVICE_COUNTERS = ("scans", "read_errors", "scan_overruns", "points", "gaps")


class DeviceState(enum.StrEnum):
    STARTING = "starting"  # not read yet
    RUNNING = "running"  # the last scan delivered data
    DOWN = "down"  # the device does not answer; retried with backoff
    WAITING = "waiting"  # the connection it is read through is down
    STOPPED = "stopped"


def _clock_text(wall: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(wall))


def _length_text(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min {secs} s" if hours else f"{minutes} min {secs} s"


class DeviceHealth:
    """The live status of one device; ``view`` is its JSON entry in the connector's status."""

    def __init__(
        self, name: str, interval: float, log: logging.LoggerAdapter[logging.Logger], facts: Mapping[str, Any]
    ) -> None:
        self.name = name
        self.log = log
        self.started_at = time.time()
        self.last_data_at: float | None = None
        self.gap_since: float | None = None
        self.histogram = Histogram(buckets=LATENCY_BUCKETS)
        self.counters = dict.fromkeys(DEVICE_COUNTERS, 0)
        self._overrunning = False
        self.view: dict[str, Any] = {
            **facts,
            "state": DeviceState.STARTING.value,
            "interval_seconds": interval,
            "last_error": None,
            "last_error_at": None,
            "last_scan_at": None,
            "last_scan_seconds": None,
            "down_since": None,
            "last_gap_seconds": None,
            "field_errors": {},
            "counters": self.counters,
            # A histogram of scan durations for /metrics: bucket bounds, counts per bucket (not
            # cumulative), sum and count; the lists are the live ones, updated at every scan.
            "scan_seconds": {
                "buckets": list(self.histogram.buckets),
                "counts": self.histogram.counts,
                "sum": 0.0,
                "count": 0,
            },
        }

    @property
    def state(self) -> DeviceState:
        return DeviceState(self.view["state"])

    def _set_state(self, state: DeviceState) -> None:
        self.view["state"] = state.value

    def scanned(self, duration: float, points: int, field_errors: Mapping[str, str]) -> None:
        """A scan delivered data (possibly with some fields in error)."""
        now = time.time()
        self.counters["scans"] += 1
        self.counters["points"] += points
        self.histogram.observe(duration)
        histogram = self.view["scan_seconds"]
        histogram["sum"], histogram["count"] = self.histogram.sum, self.histogram.count
        self.view["last_scan_at"] = now
        self.view["last_scan_seconds"] = round(duration, 6)
        self._field_errors(field_errors, now)
        if self.gap_since is not None:
            length = now - self.gap_since
            self.counters["gaps"] += 1
            self.view["last_gap_seconds"] = round(length, 3)
            self.log.info(
                "%s: data again after a gap of %s (no data from %s to %s)",
                self.name,
                _length_text(length),
                _clock_text(self.gap_since),
                _clock_text(now),
            )
            self.gap_since = None
        self.last_data_at = now
        self.view["down_since"] = None
        self._set_state(DeviceState.RUNNING)

    def _field_errors(self, errors: Mapping[str, str], now: float) -> None:
        current: dict[str, str] = self.view["field_errors"]
        for field, message in errors.items():
            if current.get(field) != message:
                # Once per field and message: the same error at every scan is one line, not a flood.
                self.log.warning("%s: field %s cannot be read: %s", self.name, field, message)
            self.view["last_error"], self.view["last_error_at"] = f"{field}: {message}", now
        self.counters["read_errors"] += len(errors)
        for field in set(current) - set(errors):
            self.log.info("%s: field %s is read again", self.name, field)
        self.view["field_errors"] = dict(errors)

    def failed(self, message: str, *, waiting: bool = False) -> None:
        """No data from this scan: the device did not answer (``waiting``: its connection is down)."""
        now = time.time()
        if not waiting:
            self.counters["read_errors"] += 1
        self.view["last_error"], self.view["last_error_at"] = message, now
        self._set_state(DeviceState.WAITING if waiting else DeviceState.DOWN)
        if self.gap_since is None:
            self.gap_since = self.last_data_at if self.last_data_at is not None else self.started_at
            self.view["down_since"] = self.gap_since
            since = (
                f"since {_clock_text(self.gap_since)}"
                if self.last_data_at is not None
                else "since the connector started"
            )
            self.log.warning("%s: no data %s: %s; retrying with backoff", self.name, since, message)

    def timing(self, duration: float, interval: float) -> None:
        """Count an overrun when a scan took longer than the interval; say so once per episode."""
        if duration <= interval:
            self._overrunning = False
            return
        self.counters["scan_overruns"] += 1
        if not self._overrunning:
            self._overrunning = True
            self.log.warning(
                "%s: a scan took %.3f s, longer than the interval of %g s: scans are skipped to keep the "
                "schedule (counted in scan_overruns); lengthen the interval or read fewer values",
                self.name,
                duration,
                interval,
            )

    def stopped(self) -> None:
        self._set_state(DeviceState.STOPPED)
