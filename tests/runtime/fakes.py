"""Fake connector and sink types registered for the runtime's tests (``type: fake`` / ``fakesink``).

The ``fake_types`` fixture registers them (and clears what they recorded) for one test; a test
module uses it with ``pytestmark = pytest.mark.usefixtures("fake_types")`` or by naming it.
:data:`EVENTS` records, in order, what happened to them (emits acknowledged, writes, stops,
closes) so tests can check the order of a stop or a reload.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import pytest
from pydantic import BaseModel

from gateway import registry
from gateway.component import Emit, RuntimeContext, Sink, Source, State
from gateway.config import config_model, validate_data
from gateway.errors import SinkUnavailable, SourceError
from gateway.point import Point
from gateway.settings import BufferedSinkConfig, ConnectorConfig, SinkConfig

EVENTS: list[tuple[Any, ...]] = []
SOURCES: dict[str, FakeSource] = {}
SINKS: dict[str, FakeSink] = {}


class FakeSourceConfig(ConnectorConfig):
    type: Literal["fake"]
    mode: Literal["stream", "fail", "quit", "fail_later"] = "stream"
    interval: float = 0.005  # between batches of one point


class FakeSinkConfig(SinkConfig):
    type: Literal["fakesink"]
    down: bool = False


class FakeRemoteConfig(BufferedSinkConfig):
    type: Literal["fakeremote"]
    down: bool = False


class FakeSource(Source):
    """stream: one point per interval until stopped (then one last point); fail: raises at once;
    quit: returns at once without being asked to stop."""

    def __init__(self, config: FakeSourceConfig, context: RuntimeContext) -> None:
        super().__init__(config.name, "fake", context)
        self.config = config
        self.stop_requested = asyncio.Event()
        self.emitted: list[Point] = []
        self.acked: list[int] = []
        self.runs = 0
        SOURCES[config.name] = self

    async def run(self, emit: Emit) -> None:
        self.runs += 1
        if self.config.mode == "fail":
            raise SourceError(f"cannot connect to opc.tcp://10.0.0.20:4840 (attempt {self.runs})")
        if self.config.mode == "quit":
            return
        if self.config.mode == "fail_later":
            await asyncio.sleep(0.1)  # the device answers for a while, then drops the connection
            raise SourceError("connection reset by peer")
        self.status.set_state(State.RUNNING)
        while not self.stop_requested.is_set():
            await self._emit_one(emit)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop_requested.wait(), self.config.interval)
        await self._emit_one(emit)  # what it still held
        EVENTS.append(("returned", self.name))

    async def _emit_one(self, emit: Emit) -> None:
        seq = len(self.emitted)
        point = Point("m", {"seq": seq}, {"source": self.name}, 1_700_000_000_000_000_000 + seq)
        self.emitted.append(point)
        await emit([point], lambda: self._ack(seq))

    def _ack(self, seq: int) -> None:
        self.acked.append(seq)
        EVENTS.append(("acked", self.name, seq))

    def request_stop(self) -> None:
        EVENTS.append(("request_stop", self.name))
        self.stop_requested.set()

    async def aclose(self) -> None:
        EVENTS.append(("aclose", self.name))


class FakeSink(Sink):
    def __init__(self, config: FakeSinkConfig | FakeRemoteConfig, context: RuntimeContext) -> None:
        super().__init__(config.name, config.type, context)
        self.config = config
        self.stored: list[Point] = []
        SINKS[config.name] = self

    async def write(self, points: Sequence[Point]) -> None:
        if self.config.down:
            raise SinkUnavailable("connection refused by the store")
        self.stored.extend(points)
        EVENTS.append(("written", self.name, [p.fields["seq"] for p in points]))

    async def close(self) -> None:
        EVENTS.append(("sink_close", self.name))


class FakeRemote(FakeSink):
    """A store behind a network: the runtime feeds it through a durable disk queue."""

    needs_durable_buffer: ClassVar[bool] = True


def _source(config: BaseModel, context: RuntimeContext) -> Source:
    assert isinstance(config, FakeSourceConfig)
    return FakeSource(config, context)


def _sink(config: BaseModel, context: RuntimeContext) -> Sink:
    assert isinstance(config, FakeSinkConfig)
    return FakeSink(config, context)


def _remote(config: BaseModel, context: RuntimeContext) -> Sink:
    assert isinstance(config, FakeRemoteConfig)
    return FakeRemote(config, context)


@pytest.fixture
def fake_types(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    registry.component_types("sink")  # load the real plug-ins first
    monkeypatch.setitem(
        registry._registry,
        ("connector", "fake"),
        registry.ComponentType("connector", "fake", FakeSourceConfig, _source),
    )
    monkeypatch.setitem(
        registry._registry, ("sink", "fakesink"), registry.ComponentType("sink", "fakesink", FakeSinkConfig, _sink)
    )
    monkeypatch.setitem(
        registry._registry,
        ("sink", "fakeremote"),
        registry.ComponentType("sink", "fakeremote", FakeRemoteConfig, _remote),
    )
    config_model.cache_clear()
    EVENTS.clear()
    SOURCES.clear()
    SINKS.clear()
    yield
    config_model.cache_clear()


def make_config(
    tmp_path: Path, sinks: list[dict[str, Any]], connectors: list[dict[str, Any]], timeout: str = "10s"
) -> Any:
    return validate_data(
        {
            "gateway": {
                "name": "test",
                "data_dir": str(tmp_path),
                "http": {"enabled": False},
                "shutdown_timeout": timeout,
            },
            "sinks": [{"type": "fakesink", "flush_interval": "10ms", **s} for s in sinks],
            "connectors": [{"type": "fake", **c} for c in connectors],
        }
    )
