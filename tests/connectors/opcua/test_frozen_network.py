"""A frozen network between the gateway and an OPC UA server (node-opcua): the session watchdog finds it.

The proxy (tests/fixtures/proxy.py) stops forwarding without closing anything, as a firewall
that forgot the connection does: the socket stays open, publish responses stop, no error comes.
Only the watchdog's read of the server state, which gets no answer, can tell. The test measures
the time from the freeze to the log line, checks that the line is written once and names the
server's endpoint as the gateway sees it, that the same session is resumed once the network
forwards again (the server never holds two), and that every value the gateway received is in
the historian, values from after the freeze included.
"""

from __future__ import annotations

import itertools
import logging
import re
from pathlib import Path
from typing import Any

import pytest

from gateway.component import State
from gateway.config import load_config
from gateway.runtime import Gateway
from tests.fixtures.opcua import ServerProcess, gateway_config, opcua_subscribed, stored
from tests.fixtures.proxy import FreezingProxy
from tests.helpers import async_wait_until

NS = "urn:peer:node-opcua:press-line"
WATCHDOG = 2.0
#: Scheduling slack on a loaded 2-core machine, on top of the bound under test (the watchdog interval).
MARGIN = 1.5
LOST = "reconnecting (the session is resumed"


def connector(endpoint: str) -> dict[str, Any]:
    return {
        "name": "press-line",
        "type": "opcua",
        "endpoint": endpoint,
        "measurement": "press",
        "subscription": {"publishing_interval": "200ms", "sampling_interval": "100ms", "queue_size": 100},
        "reconnect": {"watchdog_interval": f"{WATCHDOG:g}s", "request_timeout": "5s", "max_delay": "2s"},
        "nodes": [
            {"node": f"nsu={NS};s=PressLine.CycleCounter", "field": "cycles"},
            {"node": f"nsu={NS};s=PressLine.Ramp", "field": "ramp"},
        ],
    }


def open_sessions(server: ServerProcess) -> list[int]:
    """The number of sessions the server held after each session event (its --log-sessions lines)."""
    return [int(n) for n in re.findall(r"^session \w+ \S+ .*open=(\d+)$", server.log_path.read_text(), re.M)]


def detections(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.WARNING and LOST in r.getMessage()]


@pytest.mark.slow
async def test_a_frozen_network_to_the_server_is_found_by_the_watchdog_and_the_session_resumed(
    node_opcua_server: Any, freezing_proxy: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    server: ServerProcess = node_opcua_server(log_sessions=True)
    proxy: FreezingProxy = freezing_proxy(server.port)
    endpoint = f"opc.tcp://{proxy.address}/"
    async with Gateway(load_config(gateway_config(tmp_path, [connector(endpoint)]))) as gateway:
        source = gateway.sources[0]
        await opcua_subscribed(gateway)
        await async_wait_until(lambda: len(stored(tmp_path, "press", fields=["cycles"])) >= 3, timeout=30)
        frozen_at = proxy.freeze()
        await async_wait_until(
            lambda: detections(caplog), timeout=2 * WATCHDOG + 15, message="the frozen connection found"
        )
        # Still frozen: the reconnect attempts go into the void as well. Then the network comes back.
        await async_wait_until(lambda: proxy.connections >= 2, timeout=30, message="a reconnect attempt")
        thawed_at = proxy.thaw()
        await async_wait_until(
            lambda: source.status.state is State.RUNNING and source.status.counters["reconnects"] >= 1,
            timeout=60,
            message="reconnected",
        )
        await async_wait_until(
            lambda: max(v.time for v in stored(tmp_path, "press", fields=["cycles"])) > (thawed_at + 2) * 1e9,
            timeout=30,
            message="values flowing after the thaw",
        )
    # Every value the gateway received is in the historian once (the stop emitted what it held and
    # drained the pipeline)...
    assert len(stored(tmp_path, "press")) == source.status.counters["emitted"] == source.status.counters["stored"]
    # ... and nothing measured during the freeze is missing: the server kept the session, its
    # subscription queued the changes and kept the messages it had sent into the void, which the
    # gateway asked for again. The cycle counter counts up by one every 500 ms, sampled every
    # 100 ms: no value may be skipped. (The ramp, +1 every 100 ms, is sampled at its own pace and
    # may skip one now and then whatever the network does.)
    counted = sorted(stored(tmp_path, "press", fields=["cycles"]), key=lambda v: v.time)
    assert counted[0].time < frozen_at * 1e9 and counted[-1].time > thawed_at * 1e9  # across the freeze
    cycles = [v.value for v in counted]
    gaps = [(a, b) for a, b in itertools.pairwise(cycles) if b - a != 1]
    assert not gaps, (gaps, cycles)
    resumed = [r.getMessage() for r in caplog.records if "session resumed with its subscription" in r.getMessage()]
    assert len(resumed) == 1, resumed  # the same session, resumed once
    lines = detections(caplog)
    assert len(lines) == 1, [r.getMessage() for r in lines]  # logged once
    [line] = lines
    assert endpoint in line.getMessage(), line.getMessage()
    detected = line.created - frozen_at
    print(f"OPC UA frozen connection detected {detected:.2f} s after the freeze (watchdog {WATCHDOG:g} s)")
    print(line.getMessage())
    assert detected <= WATCHDOG + MARGIN, (detected, line.getMessage())
    # The server held one session all along, resumed on the new connection, never a second.
    assert max(open_sessions(server)) == 1, server.log_tail()
    assert "session created" in server.log_path.read_text()
    assert server.log_path.read_text().count("session created") == 1, server.log_tail()
