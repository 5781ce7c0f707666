"""The shared fakes do what their docstrings promise: other tests rely on it without looking."""

from __future__ import annotations

import asyncio

import pytest

from gateway.component import State
from gateway.errors import SinkRejected, SinkUnavailable, SourceError
from gateway.point import Point
from tests.fakes import CollectingEmit, RecordingSink, ScriptedSource


def pts(start: int, count: int = 1) -> list[Point]:
    return [Point("m", {"v": float(i)}, {"s": "a"}, i) for i in range(start, start + count)]


async def test_recording_sink_raises_the_scripted_failures_in_order_then_stores() -> None:
    sink = RecordingSink(failures=[SinkUnavailable("first"), SinkUnavailable("second")])
    for expected in ("first", "second"):
        with pytest.raises(SinkUnavailable, match=expected):
            await sink.write(pts(0))
    await sink.write(pts(0, 2))
    assert sink.batches == [pts(0, 2)] and sink.stored == pts(0, 2) and len(sink.attempts) == 3


async def test_recording_sink_down_refuses_until_it_comes_back_and_rejects_named_points() -> None:
    sink = RecordingSink("remote", "influxdb", down=True, down_message="store is down")
    with pytest.raises(SinkUnavailable, match="store is down"):
        await sink.write(pts(0))
    sink.down = False
    sink.reject = {1}
    with pytest.raises(SinkRejected) as caught:
        await sink.write(pts(0, 3))
    assert caught.value.rejected == 1 and sink.stored == [pts(0)[0], pts(2)[0]]
    assert (sink.name, sink.status.type) == ("remote", "influxdb")


async def test_recording_sink_gate_holds_writes() -> None:
    sink = RecordingSink(delay=0.01)
    sink.gate.clear()
    write = asyncio.create_task(sink.write(pts(0)))
    await asyncio.sleep(0.05)
    assert not write.done() and sink.stored == []
    sink.gate.set()
    await write
    assert sink.stored == pts(0)


async def test_scripted_source_emits_its_batches_and_records_acks_then_holds_until_stopped() -> None:
    emit = CollectingEmit()
    source = ScriptedSource("meters", [pts(0), pts(1, 2)])
    run = asyncio.create_task(source.run(emit))
    await asyncio.sleep(0.01)
    assert emit.calls and [points for points, _ in emit.calls] == [pts(0), pts(1, 2)]
    assert not run.done() and source.status.state is State.RUNNING
    assert source.acked == [] and emit.acknowledge() == 2 and source.acked == [0, 1]
    source.request_stop()
    await asyncio.wait_for(run, 1)
    await source.aclose()
    assert source.closed and source.runs == 1


async def test_scripted_source_fails_or_returns_after_its_script_and_goes_on_at_the_next_run() -> None:
    emit = CollectingEmit(ack=True)
    failing = ScriptedSource(batches=iter([pts(0), pts(1)]), error=SourceError("connection reset"))
    with pytest.raises(SourceError, match="connection reset"):
        await failing.run(emit)
    assert failing.acked == [0, 1]
    quitting = ScriptedSource(batches=[pts(0)], hold=False)
    await asyncio.wait_for(quitting.run(emit), 1)
    await asyncio.wait_for(quitting.run(emit), 1)  # the script was used up by the first run
    assert quitting.runs == 2 and quitting.emitted == [pts(0)]
    assert emit.points == [*pts(0), *pts(1), *pts(0)]
