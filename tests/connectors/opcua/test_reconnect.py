"""Reconnects: a machine restarted with another namespace order, and network blips.

A restarted server must get data flowing again without anyone restarting the gateway;
reconnecting must never pile up sessions until the server refuses new ones
(BadTooManySessions); and namespace indexes that move after a restart must not send values
to the wrong fields.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from asyncua.client.client import Client

from gateway.config import load_config
from gateway.runtime import Gateway
from tests.fixtures.opcua import TcpProxy, gateway_config, stored
from tests.helpers import async_wait_until


def _connector(endpoint: str) -> dict[str, Any]:
    return {
        "name": "cnc-01",
        "type": "opcua",
        "endpoint": endpoint,
        "measurement": "machine",
        "tags": {"machine": "cnc-01"},
        "subscription": {"publishing_interval": "200ms", "sampling_interval": "100ms"},
        "reconnect": {"max_delay": "2s", "watchdog_interval": "1s", "request_timeout": "5s"},
        "nodes": [
            {"node": "nsu=urn:lab:cnc;s=Spindle.Speed", "field": "spindle_rpm"},
            {"node": "nsu=urn:lab:cnc;s=Energy.Energy", "field": "energy_kwh"},
            {"browse": "Objects/Machine/Axes", "recursive": True},
        ],
    }


MONITORED = 2 + 7  # two nodes, and Axes/{X,Y,Z}/{Position,Load} + Axes/Position


def _times(folder: Path, field: str) -> list[int]:
    return [v.time for v in stored(folder, "machine", fields=[field])]


async def _namespace_index(endpoint: str, uri: str) -> int:
    async with Client(endpoint) as client:
        return int(await client.get_namespace_index(uri))


@pytest.mark.slow
async def test_server_down_10s_and_restarted_with_another_namespace_order(opcua_simulator: Any, tmp_path: Path) -> None:
    sim = opcua_simulator(machines=1, bad_rate=0, interval=0.5)
    index_before = await _namespace_index(sim.endpoint(), "urn:lab:cnc")
    config = gateway_config(tmp_path, [_connector(sim.endpoint())])
    async with Gateway(load_config(config)) as gateway:
        source = gateway.sources[0]
        await async_wait_until(lambda: len(_times(tmp_path, "spindle_rpm")) >= 2, timeout=60, message="first data")
        before = sim.status()
        assert (before["sessions"], before["subscriptions"], before["monitored_items"]) == (1, 1, MONITORED)

        sim.stop()
        down_since = time.monotonic()
        await async_wait_until(lambda: source.status.state.value != "running", timeout=30, message="loss noticed")
        # The scenario: the machine stays off for 10 s. The connector waits, retrying, and stays alive.
        while time.monotonic() - down_since < 10:
            assert source.status.state.value in ("reconnecting", "backoff"), source.status.state
            await asyncio.sleep(0.2)
        assert source.status.last_error

        sim.start(extra_namespaces=3)  # the same machine, its namespace now at another index
        restarted = time.time_ns()
        index_after = await _namespace_index(sim.endpoint(), "urn:lab:cnc")
        assert index_after != index_before

        def flowing_again() -> bool:
            return all(any(t > restarted for t in _times(tmp_path, f)) for f in ("spindle_rpm", "x_position"))

        await async_wait_until(flowing_again, timeout=60, message="data after the restart")
        assert source.status.state.value == "running"
        assert source.status.counters["reconnects"] >= 1
        after = sim.status()
        assert (after["sessions"], after["subscriptions"], after["monitored_items"]) == (1, 1, MONITORED)
        assert source.status.detail["monitored_items"] == MONITORED


async def test_network_drops_resume_the_same_session_without_duplicates(opcua_simulator: Any, tmp_path: Path) -> None:
    sim = opcua_simulator(machines=1, bad_rate=0, interval=0.5)
    async with TcpProxy(sim.port) as proxy:
        config = gateway_config(tmp_path, [_connector(proxy.endpoint)])
        async with Gateway(load_config(config)) as gateway:
            source = gateway.sources[0]
            await async_wait_until(lambda: _times(tmp_path, "spindle_rpm"), timeout=60, message="first data")
            most_sessions = 0
            for blip in range(1, 4):
                cut_at = time.time_ns()
                proxy.cut()

                def recovered(blip: int = blip, cut_at: int = cut_at) -> bool:
                    nonlocal most_sessions
                    most_sessions = max(most_sessions, sim.status()["sessions"])
                    return source.status.counters["reconnects"] >= blip and any(
                        t > cut_at for t in _times(tmp_path, "spindle_rpm")
                    )

                await async_wait_until(recovered, timeout=60, interval=0.1, message=f"data after blip {blip}")
            status = sim.status()
            assert most_sessions == 1
            # One session for the whole test: re-activated on each new connection, never created again.
            assert (status["sessions"], status["sessions_created"]) == (1, 1)
            assert (status["subscriptions"], status["monitored_items"]) == (1, MONITORED)
            assert proxy.connections >= 4
            assert source.status.state.value == "running"


async def test_a_dead_link_without_reset_is_found_by_the_watchdog(opcua_simulator: Any, tmp_path: Path) -> None:
    """No RST, no FIN: the socket looks open and nothing arrives. The session watchdog notices."""
    sim = opcua_simulator(machines=1, bad_rate=0, interval=0.5)
    async with TcpProxy(sim.port) as proxy:
        config = gateway_config(tmp_path, [_connector(proxy.endpoint)])
        async with Gateway(load_config(config)) as gateway:
            source = gateway.sources[0]
            await async_wait_until(lambda: _times(tmp_path, "spindle_rpm"), timeout=60, message="first data")
            frozen_at = time.time_ns()
            proxy.freeze()
            await async_wait_until(
                lambda: (
                    source.status.counters["reconnects"] >= 1
                    and any(t > frozen_at + 1_000_000_000 for t in _times(tmp_path, "spindle_rpm"))
                ),
                timeout=60,
                interval=0.2,
                message="data again after the watchdog found the dead link",
            )
            status = sim.status()
            assert (status["sessions"], status["subscriptions"], status["monitored_items"]) == (1, 1, MONITORED)
            assert source.status.state.value == "running"
