"""A frozen network between the gateway and InfluxDB (VictoriaMetrics): the write times out and is retried.

The proxy (tests/fixtures/proxy.py) stops forwarding without closing anything. A write in
flight then never gets an answer: the sink's request timeout ends it, the route keeps the batch
in the durable buffer and retries with backoff (each retry times out the same way while the
network is frozen), and once the network forwards again the buffer drains. Meanwhile the MQTT
connector and the historian go on. The test measures the time from the freeze to the log line,
checks that the line is written once for the whole outage and names the store's address as the
gateway sees it, and that every point is in VictoriaMetrics and in the historian.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from gateway.component import State
from gateway.config import load_config
from gateway.runtime import Gateway
from tests.fixtures.mosquitto import Mosquitto, Publisher, read_history
from tests.fixtures.proxy import FreezingProxy
from tests.fixtures.victoriametrics import Sample, VictoriaMetrics
from tests.helpers import async_wait_until, contract_energy_connector

BASE_MS = 1_714_564_800_000
TIMEOUT = 2.0  # the sink's request timeout under test
FLUSH = 0.1
#: Scheduling slack on a loaded 2-core machine, on top of the bound under test (flush + timeout).
MARGIN = 1.5
NO_ANSWER = "did not answer within"


def topic(i: int) -> str:
    return f"factory/L{i % 4}/energy/m{i % 20:02d}"


def payload(i: int) -> bytes:
    return orjson.dumps({"p": i * 0.5, "e": i, "ts": BASE_MS + i})


def expected_samples(count: int) -> set[Sample]:
    samples: set[Sample] = set()
    for i in range(count):
        tags = (("line", f"L{i % 4}"), ("meter", f"m{i % 20:02d}"))
        samples.add(Sample("energy_power_w", tags, BASE_MS + i, i * 0.5))
        samples.add(Sample("energy_energy_kwh", tags, BASE_MS + i, float(i)))
    return samples


def write_gateway_config(folder: Path, broker: Mosquitto, store_url: str) -> Path:
    config = {
        "gateway": {"name": "frozen-store", "data_dir": str(folder / "data"), "http": {"enabled": False}},
        "sinks": [
            {"name": "local", "type": "historian", "path": str(folder / "history.db"), "flush_interval": "100ms"},
            {
                "name": "influx",
                "type": "influxdb",
                "url": store_url,
                "org": "lab",
                "bucket": "machines",
                "token": "t",
                "timeout": f"{TIMEOUT:g}s",
                "batch_size": 1000,
                "flush_interval": f"{FLUSH * 1000:g}ms",
            },
        ],
        "connectors": [contract_energy_connector(broker.url)],
    }
    path = folder / "gateway.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def detections(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The warnings that the store does not answer (the line on recovery, which quotes it, is info)."""
    return [r for r in caplog.records if r.levelno >= logging.WARNING and NO_ANSWER in r.getMessage()]


async def stream(publisher: Publisher, count: int, rate: float) -> None:
    started = time.monotonic()
    for i in range(count):
        publisher.publish(topic(i), payload(i))
        if i % 25 == 24:
            await asyncio.sleep(max(0.0, started + (i + 1) / rate - time.monotonic()))


@pytest.mark.slow
async def test_a_frozen_network_to_the_store_times_the_write_out_retries_and_loses_nothing(
    mosquitto: Mosquitto,
    victoriametrics: VictoriaMetrics,
    freezing_proxy: Any,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    proxy: FreezingProxy = freezing_proxy(victoriametrics.port)
    count = 5_000
    async with Gateway(load_config(write_gateway_config(tmp_path, mosquitto, f"http://{proxy.address}"))) as gateway:
        source = gateway.sources[0]
        status = gateway.routes["influx"].status
        await async_wait_until(
            lambda: source.status.state is State.RUNNING and source.status.detail.get("subscribed"), timeout=30
        )
        with Publisher(mosquitto) as publisher:
            producing = asyncio.create_task(stream(publisher, count, rate=250.0))
            await async_wait_until(lambda: status.counters["points_written"] >= 500, timeout=30)
            frozen_at = proxy.freeze()
            await async_wait_until(
                lambda: detections(caplog),
                timeout=TIMEOUT + 15,
                message="the write timed out",
            )
            # Still frozen: the retries time out as well (each on a new connection), while the
            # historian keeps everything and the buffer grows.
            await async_wait_until(lambda: status.counters["write_errors"] >= 2, timeout=30, message="a failed retry")
            assert status.state is State.BACKOFF
            written_while_frozen = status.counters["points_written"]
            proxy.thaw()
            await producing
            assert await asyncio.to_thread(publisher.wait) == count
        await async_wait_until(
            lambda: source.status.counters.get("stored", 0) >= count and status.detail["depth_points"] == 0,
            timeout=60,
            message="everything stored and the buffer drained",
        )
        assert status.as_dict()["state"] == State.RUNNING.value  # (recovered since the BACKOFF above)
        assert status.counters["points_written"] > written_while_frozen
    lines = detections(caplog)
    assert len(lines) == 1, [r.getMessage() for r in lines]  # once for the outage, not at every retry
    [line] = lines
    assert f"http://{proxy.address} bucket machines" in line.getMessage(), line.getMessage()
    detected = line.created - frozen_at
    print(f"InfluxDB frozen connection detected {detected:.2f} s after the freeze (timeout {TIMEOUT:g} s)")
    assert detected <= FLUSH + TIMEOUT + MARGIN, (detected, line.getMessage())
    stored = victoriametrics.samples('{__name__=~"energy_.*"}')
    assert set(stored) == expected_samples(count)
    values: dict[tuple[str, tuple[tuple[str, str], ...], int], set[float]] = {}
    for sample in stored:  # a batch sent twice (its answer lost in the freeze) is an exact overwrite
        values.setdefault((sample.name, sample.tags, sample.time_ms), set()).add(sample.value)
    assert all(len(v) == 1 for v in values.values())
    assert len(read_history(tmp_path, "energy")) == 2 * count
