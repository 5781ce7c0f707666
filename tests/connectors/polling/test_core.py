"""The polling core with fake links and devices (unit tests: no server)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

import pytest

from connectors.polling import Device, DeviceDown, Link, LinkDown, Poller, Reconnect, ScanResult, Schedule
from gateway.component import State, Status
from gateway.errors import SourceError
from gateway.point import Point
from tests.helpers import async_wait_until

log = logging.LoggerAdapter(logging.getLogger("test.polling"), {})


def test_schedule_keeps_its_phase_and_skips_missed_slots() -> None:
    schedule = Schedule(1.0, first_at=10.0)
    assert schedule.delay(9.5) == 0.5
    assert schedule.advance(10.2) == 0 and schedule.next_at == 11.0
    assert schedule.advance(13.5) == 2 and schedule.next_at == 14.0  # 12 and 13 skipped, not run back to back
    schedule.postpone(14.0, 2.5)
    assert schedule.next_at == 17.0  # the retry waits, then keeps the phase


class FakeLink(Link):
    def __init__(self) -> None:
        self.name = "fake:502"
        self.opens = 0
        self.fail_opens = 0

    async def open(self) -> None:
        self.opens += 1
        if self.fail_opens:
            self.fail_opens -= 1
            raise SourceError("cannot connect to fake:502")

    async def close(self) -> None:
        return None


class FakeDevice(Device):
    def __init__(
        self,
        name: str,
        interval: float,
        behaviour: list[str] | None = None,
        took: float = 0.0,
        link: FakeLink | None = None,
    ) -> None:
        self.link = link  # on "link": the connection is gone and the next 3 reopen attempts fail
        self.name = name
        self.interval = interval
        self.behaviour = behaviour or []  # "down", "link", "slow" per scan, then "ok"
        self.took = took
        self.scans = 0

    async def scan(self) -> ScanResult:
        self.scans += 1
        what = self.behaviour.pop(0) if self.behaviour else "ok"
        if what == "down":
            raise DeviceDown("unit 9 does not answer")
        if what == "link":
            if self.link is not None:
                self.link.fail_opens = 3
            raise LinkDown("connection reset")
        if self.took:
            await asyncio.sleep(self.took)
        errors = {"bad": "Modbus exception 2"} if what == "field" else {}
        return ScanResult([Point("m", {"v": self.scans}, {"d": self.name})], errors, 1)


def _poller(groups: Sequence[tuple[Link, Sequence[Device]]]) -> tuple[Poller, Status]:
    status = Status(name="c", kind="connector", type="fake")
    return Poller(status, log, groups, reconnect=Reconnect(0.05, 0.2)), status


async def _run(poller: Poller, until: Callable[[], bool], timeout: float = 20) -> list[Point]:
    emitted: list[Point] = []
    stop = asyncio.Event()

    async def emit(points: Sequence[Point], on_stored: object = None) -> None:
        emitted.extend(points)

    task = asyncio.create_task(poller.run(emit, stop))
    try:
        await async_wait_until(until, timeout=timeout, message="condition")
    finally:
        stop.set()
        await task
    return emitted


async def test_a_silent_device_backs_off_while_another_goes_on_and_its_gap_is_logged_twice(
    caplog: pytest.LogCaptureFixture,
) -> None:
    link = FakeLink()
    good = FakeDevice("good", 0.05)
    flaky = FakeDevice("flaky", 0.05, ["ok", "down", "down", "down"])
    poller, status = _poller([(link, [good, flaky])])
    devices = status.detail["devices"]
    with caplog.at_level(logging.INFO):
        await _run(poller, lambda: devices["flaky"]["counters"]["gaps"] == 1 and good.scans >= 10)
    assert devices["flaky"]["counters"]["read_errors"] == 3
    assert devices["flaky"]["state"] == "stopped" and devices["good"]["counters"]["read_errors"] == 0
    messages = [r.getMessage() for r in caplog.records]
    assert sum(m.startswith("flaky: no data since") for m in messages) == 1
    assert sum(m.startswith("flaky: data again after a gap of") for m in messages) == 1
    assert status.counters["emitted"] == good.scans + flaky.scans - 3


async def test_a_lost_link_is_reopened_with_backoff_and_all_its_devices_wait() -> None:
    link = FakeLink()
    link.fail_opens = 2
    device = FakeDevice("d", 0.05, ["ok", "link"], link=link)
    other = FakeDevice("other", 0.05)
    poller, status = _poller([(link, [device, other])])
    views = status.detail["devices"]
    waiting: set[str] = set()

    def recovered() -> bool:
        waiting.update(name for name, view in views.items() if view["state"] == "waiting")
        return status.counters["reconnects"] == 1 and device.scans >= 4 and other.scans >= 4

    await _run(poller, recovered)
    assert link.opens == 2 + 1 + 3 + 1  # two failed, one good; after the loss three failed, one good
    assert status.counters["connect_failures"] == 5
    assert status.state is State.RUNNING
    # Both devices waited and had a gap: the one that found the connection lost, and the other one on it.
    assert waiting == {"d", "other"}
    assert views["d"]["counters"]["gaps"] == 1 and views["other"]["counters"]["gaps"] == 1
    assert views["other"]["counters"]["read_errors"] == 0  # waiting for the connection is not a read error


def test_the_connector_stops_claiming_to_run_the_moment_a_device_finds_its_link_lost() -> None:
    link = FakeLink()
    poller, status = _poller([(link, [FakeDevice("d", 0.05)])])
    runner, _ = poller.runners[0]
    runner.up.set()
    poller.link_state(runner, State.RUNNING)
    runner.report_lost("connection reset")
    # Before the link's own task gets a turn: a page refreshed now must not show "running".
    assert status.state is State.RECONNECTING
    assert runner.lost.is_set() and not runner.up.is_set()


async def test_overruns_and_field_errors_are_counted_never_values(caplog: pytest.LogCaptureFixture) -> None:
    link = FakeLink()
    slow = FakeDevice("slow", 0.02, ["field", "field"], took=0.05)
    poller, status = _poller([(link, [slow])])
    with caplog.at_level(logging.WARNING):
        points = await _run(poller, lambda: slow.scans >= 4)
    assert sum("longer than the interval" in r.getMessage() for r in caplog.records) == 1  # once, not per scan
    view = status.detail["devices"]["slow"]
    assert view["counters"]["scan_overruns"] >= 3
    assert view["counters"]["read_errors"] == 2 and view["field_errors"] == {}
    assert all(set(p.fields) == {"v"} for p in points)
    assert view["scan_seconds"]["count"] == view["counters"]["scans"]
