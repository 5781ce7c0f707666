"""A frozen network between the gateway and the broker: detected by the keep-alive, nothing lost.

The proxy (tests/fixtures/proxy.py) stops forwarding without closing anything, as a firewall
that forgot the connection does. The broker keeps sending into the void and the gateway's
socket stays open: only the MQTT keep-alive can tell. The test measures the time from the
freeze to the log line, checks that the line is written once and names the broker's address as
the gateway sees it, that the gateway is back once the network forwards again, and that every
QoS 1 message published meanwhile is in the historian.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.component import State
from gateway.config import load_config
from gateway.runtime import Gateway
from tests.fixtures.mosquitto import Mosquitto, Publisher, read_history, write_config
from tests.fixtures.proxy import FreezingProxy
from tests.helpers import async_wait_until, contract_energy_connector

BASE_MS = 1_714_564_800_000
KEEPALIVE = 2.0
#: Scheduling slack on a loaded 2-core machine, on top of the bound under test (1.5 times the keep-alive).
MARGIN = 1.5
FROZEN = "the connection is frozen"


def topic(i: int) -> str:
    return f"factory/L{i % 4}/energy/m{i % 20:02d}"


def payload(i: int) -> bytes:
    return orjson.dumps({"p": i * 0.5, "e": i, "ts": BASE_MS + i})


def expected_rows(count: int) -> set[tuple[int, str, str, Any]]:
    rows: set[tuple[int, str, str, Any]] = set()
    for i in range(count):
        time_ns = (BASE_MS + i) * 1_000_000
        rows |= {(time_ns, f"m{i % 20:02d}", "power_w", i * 0.5), (time_ns, f"m{i % 20:02d}", "energy_kwh", float(i))}
    return rows


def stored_rows(folder: Path) -> set[tuple[int, str, str, Any]]:
    return {(v.time, v.tags["meter"], v.field, v.value) for v in read_history(folder, "energy")}


async def stream(publisher: Publisher, count: int, rate: float) -> None:
    """QoS 1 messages at a steady rate, as meters send them, whatever the gateway's network does."""
    started = time.monotonic()
    for i in range(count):
        publisher.publish(topic(i), payload(i))
        if i % 25 == 24:
            await asyncio.sleep(max(0.0, started + (i + 1) / rate - time.monotonic()))


@pytest.mark.slow
async def test_a_frozen_network_to_the_broker_is_found_within_1_5_keepalives_and_nothing_is_lost(
    mosquitto: Mosquitto, freezing_proxy: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    proxy: FreezingProxy = freezing_proxy(mosquitto.port)
    connector = contract_energy_connector(
        f"mqtt://{proxy.address}", keepalive=f"{KEEPALIVE:g}s", reconnect_min="500ms", reconnect_max="2s"
    )
    count = 5_000
    async with Gateway(load_config(write_config(tmp_path, [connector]))) as gateway:
        source = gateway.sources[0]
        await async_wait_until(
            lambda: source.status.state is State.RUNNING and source.status.detail.get("subscribed"),
            timeout=30,
            message="connected and subscribed through the proxy",
        )
        with Publisher(mosquitto) as publisher:  # straight to the broker: only the gateway's network freezes
            producing = asyncio.create_task(stream(publisher, count, rate=250.0))
            await async_wait_until(lambda: source.status.counters.get("stored", 0) >= 500, timeout=30)
            frozen_at = proxy.freeze()
            await async_wait_until(
                lambda: any(FROZEN in r.getMessage() for r in caplog.records),
                timeout=1.5 * KEEPALIVE + 15,
                message="the frozen connection found",
            )
            # Still frozen: the gateway's next attempt goes into the void as well (a new connection
            # through the proxy, never answered). Then the network comes back.
            await async_wait_until(lambda: proxy.connections >= 2, timeout=30, message="a reconnect attempt")
            proxy.thaw()
            await producing
            assert await asyncio.to_thread(publisher.wait) == count
        await async_wait_until(
            lambda: len(stored_rows(tmp_path)) >= 2 * count, timeout=60, interval=0.2, message="every message stored"
        )
        assert source.status.state is State.RUNNING
        assert source.status.counters["reconnects"] >= 1
    lines = [r for r in caplog.records if FROZEN in r.getMessage()]
    assert len(lines) == 1, [r.getMessage() for r in lines]  # logged once
    [line] = lines
    assert f"broker at {proxy.address}" in line.getMessage(), line.getMessage()
    detected = line.created - frozen_at
    print(f"MQTT frozen connection detected {detected:.2f} s after the freeze (keep-alive {KEEPALIVE:g} s)")
    assert detected <= 1.5 * KEEPALIVE + MARGIN, (detected, line.getMessage())
    assert stored_rows(tmp_path) == expected_rows(count)
