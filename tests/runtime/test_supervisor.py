"""The supervisor with fake connectors and sinks registered for the test: isolation and restart
with capped backoff, stop order, nothing pending lost on a clean stop, the shutdown deadline
with a store that is down, and SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import ClassVar

import pytest

from gateway import runtime
from gateway.component import State
from gateway.errors import SinkUnavailable
from gateway.pipeline import Backoff
from gateway.route import Route
from gateway.runtime import Gateway, run_gateway
from tests.helpers import async_wait_until
from tests.runtime.fakes import EVENTS, SINKS, SOURCES, FakeSink, make_config

pytestmark = pytest.mark.usefixtures("fake_types")


class RecordingBackoff(Backoff):
    """The supervisor's backoff, 20x faster (cap 300x lower), recording every delay."""

    delays: ClassVar[list[float]] = []

    def __init__(self, initial: float, cap: float) -> None:
        super().__init__(initial=initial / 20, cap=cap / 300)

    def next_delay(self) -> float:
        delay = super().next_delay()
        RecordingBackoff.delays.append(delay)
        return delay


# --- isolation and restart -------------------------------------------------------------------------


async def test_a_failing_connector_is_restarted_with_capped_backoff_while_another_delivers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    RecordingBackoff.delays = []
    monkeypatch.setattr(runtime, "Backoff", RecordingBackoff)
    config = make_config(tmp_path, [{"name": "store"}], [{"name": "bad", "mode": "fail"}, {"name": "good"}])
    async with Gateway(config) as gw:
        bad, good = SOURCES["bad"], SOURCES["good"]
        store = SINKS["store"]
        await async_wait_until(lambda: bad.runs >= 3, timeout=20)
        stored_then = len(store.stored)
        await async_wait_until(lambda: bad.runs >= 6, timeout=20)
        assert len(store.stored) > stored_then, "the healthy connector must go on delivering"
        assert bad.status.counters["restarts"] >= 5
        assert bad.status.last_error is not None and "cannot connect" in bad.status.last_error
        assert bad.status.state in (State.BACKOFF, State.STARTING)
        assert good.status.state is State.RUNNING
        assert gw.statuses()  # both connectors and the sink report
    delays = RecordingBackoff.delays
    assert len(delays) >= 5
    initial, cap = 1.0 / 20, 60.0 / 300
    assert 0.8 * initial <= delays[0] <= 1.2 * initial
    assert delays[1] > delays[0]  # exponential: 50 ms, 100 ms, then the 200 ms cap
    assert all(delay <= cap for delay in delays)
    assert delays[4] >= 0.8 * cap
    failures = [r for r in caplog.records if "failed: cannot connect" in r.getMessage()]
    assert len(failures) >= 5
    assert all(getattr(r, "component", "") == "connector=bad" for r in failures)
    assert "restarting in" in failures[0].getMessage()


async def test_backoff_starts_again_after_a_healthy_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    RecordingBackoff.delays = []
    monkeypatch.setattr(runtime, "Backoff", RecordingBackoff)
    monkeypatch.setattr(runtime, "HEALTHY_RUN_SECONDS", 0.05)
    config = make_config(tmp_path, [{"name": "store"}], [{"name": "flaky", "mode": "fail_later"}])
    async with Gateway(config):
        await async_wait_until(lambda: SOURCES["flaky"].runs >= 4, timeout=20)
    initial = 1.0 / 20
    assert len(RecordingBackoff.delays) >= 3
    assert all(delay <= 1.2 * initial for delay in RecordingBackoff.delays)  # never grew: each run was healthy


async def test_a_connector_that_stops_by_itself_is_restarted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    RecordingBackoff.delays = []
    monkeypatch.setattr(runtime, "Backoff", RecordingBackoff)
    config = make_config(tmp_path, [{"name": "store"}], [{"name": "quitter", "mode": "quit"}])
    async with Gateway(config):
        await async_wait_until(lambda: SOURCES["quitter"].runs >= 3, timeout=20)
        assert SOURCES["quitter"].status.last_error == "the connector stopped by itself"


async def test_points_go_only_to_the_sinks_a_connector_names(tmp_path: Path) -> None:
    config = make_config(
        tmp_path,
        [{"name": "a"}, {"name": "b"}],
        [{"name": "to-a", "sinks": ["a"]}, {"name": "to-all"}],
    )
    async with Gateway(config):
        await async_wait_until(lambda: len(SINKS["b"].stored) >= 3, timeout=20)
    assert {p.tags["source"] for p in SINKS["a"].stored} == {"to-a", "to-all"}
    assert {p.tags["source"] for p in SINKS["b"].stored} == {"to-all"}


# --- stopping ----------------------------------------------------------------------------------------


async def test_a_clean_stop_loses_nothing_and_keeps_the_stop_order(tmp_path: Path) -> None:
    config = make_config(tmp_path, [{"name": "one"}, {"name": "two"}], [{"name": "src"}])
    async with Gateway(config) as gw:
        await async_wait_until(lambda: len(SINKS["two"].stored) >= 20, timeout=20)
        gw.request_stop()
    source = SOURCES["src"]
    # Everything emitted before and during the stop is stored in both sinks and acknowledged once.
    assert SINKS["one"].stored == source.emitted
    assert SINKS["two"].stored == source.emitted
    assert source.acked == list(range(len(source.emitted)))
    # Order: stop requested → the source returns (after its last batch) → that batch is written
    # to every sink → acknowledged → the connection closes; each sink closes once its route has
    # written everything.
    kinds = [event[0] for event in EVENTS]
    last = len(source.emitted) - 1
    stop = kinds.index("request_stop")
    returned = kinds.index("returned")
    last_writes = [i for i, e in enumerate(EVENTS) if e[0] == "written" and last in e[2]]
    last_ack = EVENTS.index(("acked", "src", last))
    aclose = EVENTS.index(("aclose", "src"))
    sink_closes = [i for i, e in enumerate(EVENTS) if e[0] == "sink_close"]
    assert stop < returned < min(last_writes)
    assert max(last_writes) < last_ack < aclose
    assert max(last_writes) < min(sink_closes)
    assert len(sink_closes) == 2
    assert source.status.state is State.STOPPED
    assert all(sink.status.state is State.STOPPED for sink in SINKS.values())


async def test_a_store_that_is_down_at_shutdown_is_given_up_at_the_deadline(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = make_config(tmp_path, [{"name": "down", "down": True}], [{"name": "src", "interval": 0.05}], timeout="1s")
    gw = Gateway(config)
    await gw.__aenter__()
    await async_wait_until(lambda: gw.routes["down"].status.state is State.BACKOFF, timeout=20)
    # The store stays down: a stop that waited for it would never end. It gives up at its 1 s
    # deadline (counted and logged, below); the 30 s only bound the test, however loaded the machine.
    await asyncio.wait_for(gw.__aexit__(None, None, None), 30)
    source = SOURCES["src"]
    assert source.acked == []  # nothing stored, so nothing acknowledged (MQTT redelivers)
    counters = gw.routes["down"].status.counters
    assert counters["points_lost_on_shutdown"] == len(source.emitted)
    assert counters["points_written"] == 0
    assert any("points not stored" in r.getMessage() for r in caplog.records)


async def test_a_sink_that_cannot_open_waits_and_its_points_wait_unacknowledged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A store that cannot be opened (a read-only or full disk) must not stop collection: the
    # gateway comes up, says why the sink waits, and writes everything once it can open.
    attempts = 0

    async def open_later(self: FakeSink) -> None:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise SinkUnavailable("cannot create /readonly/history.db: permission denied")

    monkeypatch.setattr(FakeSink, "open", open_later)
    monkeypatch.setattr(Route, "MAX_RETRY_DELAY", 0.2)
    config = make_config(tmp_path, [{"name": "store"}], [{"name": "src"}])
    async with Gateway(config) as gw:
        status = gw.routes["store"].status
        await async_wait_until(lambda: status.state is State.BACKOFF, timeout=10)
        assert status.last_error == "cannot create /readonly/history.db: permission denied"
        await async_wait_until(lambda: "src" in SOURCES and len(SOURCES["src"].emitted) >= 5, timeout=10)
        assert SOURCES["src"].acked == [] or attempts >= 3, "nothing is acknowledged before the sink is open"
        await async_wait_until(lambda: status.state is State.RUNNING, timeout=20)
        await async_wait_until(lambda: len(SINKS["store"].stored) >= 10, timeout=20)
    source = SOURCES["src"]
    assert SINKS["store"].stored == source.emitted
    assert source.acked == list(range(len(source.emitted)))


async def test_sigterm_stops_sources_then_flushes_then_returns(tmp_path: Path) -> None:
    config = make_config(tmp_path, [{"name": "store"}], [{"name": "src"}])
    before = signal.getsignal(signal.SIGTERM)
    task = asyncio.create_task(run_gateway(config))
    await async_wait_until(lambda: "store" in SINKS and len(SINKS["store"].stored) >= 10, timeout=20)
    await async_wait_until(lambda: signal.getsignal(signal.SIGTERM) is not before, timeout=20)
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.wait_for(task, 30)
    source = SOURCES["src"]
    assert SINKS["store"].stored == source.emitted
    assert source.acked == list(range(len(source.emitted)))
    assert signal.getsignal(signal.SIGTERM) is before
