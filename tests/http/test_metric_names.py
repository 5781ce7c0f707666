"""/metrics names: one metric per meaning, gauges for values that go down, and the age of the
oldest point waiting in a sink's in-memory queue."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from prometheus_client.parser import text_string_to_metric_families

from gateway.component import Status
from gateway.http.metrics import GatewayCollector, render_metrics
from gateway.pipeline import Backoff
from gateway.point import Point
from gateway.route import MemoryQueue, Route
from gateway.settings import BatchPolicy
from tests.fakes import RecordingSink
from tests.helpers import async_wait_until


def _samples(statuses: Sequence[Status], emitted: dict[str, int] | None = None) -> dict[tuple[str, str], float]:
    text = render_metrics(GatewayCollector("gw", lambda: statuses, 0.0, lambda: dict(emitted or {}))).decode()
    return {
        (s.name, s.labels.get("connector") or s.labels.get("sink") or ""): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_one_metric_per_meaning_and_gauges_for_item_counts() -> None:
    opcua = Status("cnc", "connector", "opcua")  # counts points: emitted and stored
    opcua.count("emitted", 40)
    opcua.count("stored", 38)
    opcua.detail.update(monitored_items=12, failed_items=1)
    mqtt = Status("energy", "connector", "mqtt")  # counts messages stored, and the points in them
    mqtt.count("stored", 10)
    mqtt.count("points_stored", 20)
    samples = _samples([opcua, mqtt], {"cnc": 40, "energy": 20})
    names = {name for name, _ in samples}
    assert samples[("gateway_connector_points_emitted_total", "cnc")] == 40
    assert samples[("gateway_connector_points_stored_total", "cnc")] == 38
    assert samples[("gateway_connector_points_stored_total", "energy")] == 20
    assert samples[("gateway_connector_messages_stored_total", "energy")] == 10
    assert "gateway_connector_emitted_total" not in names
    assert "gateway_connector_stored_total" not in names
    assert samples[("gateway_connector_monitored_items", "cnc")] == 12
    assert samples[("gateway_connector_failed_items", "cnc")] == 1
    assert not {"gateway_connector_monitored_items_total", "gateway_connector_failed_items_total"} & names


async def test_a_memory_route_exports_the_age_of_its_oldest_waiting_point() -> None:
    sink = RecordingSink("remote", "influxdb", down=True)  # unreachable until it comes back
    runner = Route(
        sink, BatchPolicy(batch_size=10, flush_interval=0.01), MemoryQueue(10), backoff=Backoff(initial=0.05, cap=0.1)
    )
    task = asyncio.create_task(runner.run())
    try:
        put_at = time.monotonic()
        await runner.put([Point("m", {"v": 1.0}, {}, 1)], lambda: None)

        def age() -> float:
            return _samples([sink.status])[("gateway_sink_oldest_age_seconds", "remote")]

        # While the store refuses, the age grows (refreshed at each retry) …
        await async_wait_until(lambda: age() >= 0.3, timeout=10, message="oldest age grows")
        assert age() <= time.monotonic() - put_at
        # … and is 0 once everything is stored.
        sink.down = False
        await async_wait_until(lambda: sink.stored, timeout=10, message="stored")
        assert age() == 0.0 and _samples([sink.status])[("gateway_sink_pending_points", "remote")] == 0
    finally:
        await runner.drain(time.monotonic() + 1)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
