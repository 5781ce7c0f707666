"""A reconnect storm against a server that allows one session: the gateway never holds two.

Plant OPC UA servers (a PLC's embedded server above all) allow a handful of sessions, and a
client that opens a new session at every reconnect before the old one is gone soon gets
BadTooManySessions, and with it no data until someone restarts it. The node-opcua peer here
allows one (``maxSessions: 1``) and logs every session it creates, activates or closes with the
number it holds then (``--log-sessions``); the test restarts it and cuts the connection (a
proxy that resets both sides) ten times each, and data must flow again after every one.
"""

from __future__ import annotations

import logging
import re
import time
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
ROUNDS = 10


def connector(endpoint: str) -> dict[str, Any]:
    return {
        "name": "press-line",
        "type": "opcua",
        "endpoint": endpoint,
        "measurement": "press",
        "subscription": {"publishing_interval": "200ms", "sampling_interval": "100ms"},
        "reconnect": {"watchdog_interval": "2s", "request_timeout": "5s", "max_delay": "2s"},
        "nodes": [{"node": f"nsu={NS};s=PressLine.Ramp", "field": "ramp"}],
    }


def session_lines(server: ServerProcess) -> list[str]:
    return re.findall(r"^session .*$", server.log_path.read_text(errors="replace"), re.M)


@pytest.mark.slow
async def test_ten_restarts_and_ten_cuts_never_hold_two_sessions_nor_meet_bad_too_many_sessions(
    node_opcua_server: Any, freezing_proxy: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # DEBUG: asyncua's own lines (every failed attempt, every service fault) are let through to
    # the log at this level, so a BadTooManySessions anywhere in the client would be seen.
    caplog.set_level(logging.DEBUG)
    server: ServerProcess = node_opcua_server(max_sessions=1, log_sessions=True)
    proxy: FreezingProxy = freezing_proxy(server.port)  # the server comes back on the same port

    def latest() -> int:
        return max((v.time for v in stored(tmp_path, "press", fields=["ramp"])), default=0)

    async with Gateway(load_config(gateway_config(tmp_path, [connector(f"opc.tcp://{proxy.address}/")]))) as gateway:
        source = gateway.sources[0]
        await opcua_subscribed(gateway)

        async def flowing_again(after_ns: int, what: str) -> None:
            await async_wait_until(
                lambda: source.status.state is State.RUNNING and latest() > after_ns + 500_000_000,
                timeout=90,
                interval=0.1,
                message=f"data again after {what}",
            )

        for round_ in range(1, ROUNDS + 1):
            server.stop()  # SIGTERM: node-opcua shuts down and its sessions with it
            stopped = time.time_ns()
            server.start()
            await flowing_again(stopped, f"restart {round_}")
            cut = time.time_ns()
            assert proxy.cut() >= 1
            await flowing_again(cut, f"cut {round_}")
        reconnects = source.status.counters["reconnects"]
    lines = session_lines(server)
    held = [int(n) for n in re.findall(r"open=(\d+)", "\n".join(lines))]
    assert held and max(held) == 1, lines  # never two sessions at once
    assert not [line for line in lines if line.startswith("session refused")], lines
    # One session per server process: each cut resumed the session the server still held,
    # and each restart created one (after the old one, which the server no longer knew).
    assert sum(line.startswith("session created") for line in lines) == server.starts, lines
    assert reconnects >= 2 * ROUNDS
    too_many = [r.getMessage() for r in caplog.records if "TooManySessions" in r.getMessage()]
    assert not too_many, too_many[:5]
    assert "TooManySessions" not in server.log_path.read_text(errors="replace")
