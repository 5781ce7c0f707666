"""The real uvicorn server on the gateway's loop: live updates over SSE, a taken port, a quick close."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from gateway.component import Status
from gateway.errors import GatewayError
from gateway.http.app import AppContext
from gateway.http.config import HttpSettings
from gateway.http.server import HttpServer, _Server
from gateway.point import Point
from tests.helpers import async_wait_until


async def sse_events(response: httpx.Response) -> AsyncIterator[tuple[str, object]]:
    event = ""
    async for line in response.aiter_lines():
        if line.startswith("event: "):
            event = line[len("event: ") :]
        elif line.startswith("data: "):
            yield event, json.loads(line[len("data: ") :])


def context(listen: str = "127.0.0.1:0") -> AppContext:
    statuses = [Status("energy", "connector", "mqtt")]
    return AppContext(name="gw", settings=HttpSettings(listen=listen), statuses=lambda: statuses, status_interval=0.2)


async def test_sse_sends_overview_when_values_change_and_status_periodically() -> None:
    ctx = context()
    async with HttpServer(ctx) as server, httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        assert (await client.get("/healthz")).status_code == 200
        async with client.stream("GET", "/api/events", params={"topics": "overview,status,values"}) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            events = sse_events(response)
            first = await anext(events)
            assert first == ("overview", first[1]) and first[1]["cards"] == []  # type: ignore[index]
            assert (await anext(events))[0] == "status"
            ctx.latest.update([Point("machine", {"rpm": 1500.0}, {"line": "A", "machine": "m1"}, time.time_ns())])
            seen: dict[str, Any] = {}
            # Overview and values events come only when values change (status ones keep coming
            # meanwhile, so without the change this would wait forever: 30 s bound the test, not
            # the latency, which bench/bench_web.py measures).
            async with asyncio.timeout(30):
                async for name, data in events:
                    seen[name] = data
                    if "overview" in seen and "values" in seen:
                        break
            [card] = seen["overview"]["cards"]
            assert card["id"] == "line=A,machine=m1" and card["values"][0]["value"] == 1500.0
            [series] = seen["values"]
            assert series["fields"]["rpm"]["value"] == 1500.0
            # The server closes without waiting for the live stream: the stream ends cleanly (its
            # last chunk sent), instead of being cut when the grace period for open requests runs
            # out (httpx.RemoteProtocolError: incomplete chunked read).
            await server.close()
            async with asyncio.timeout(30):
                async for _ in events:
                    pass


async def test_a_taken_port_is_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(GatewayError, match=f"cannot listen on 127.0.0.1:{port}.*another program uses that port"):
            async with HttpServer(context(f"127.0.0.1:{port}")):
                pass


async def test_rates_are_sampled_while_serving() -> None:
    ctx = context()
    status = Status("local", "sink", "historian")
    ctx.statuses = lambda: [status]
    async with HttpServer(ctx) as server, httpx.AsyncClient(base_url=server.url) as client:

        async def rate() -> float:
            status.count("points_written", 100)
            body = (await client.get("/api/status")).json()
            return float(body["components"][0]["rates"].get("points_written", 0))

        assert await async_wait_until(rate, timeout=10, interval=0.2, message="a points_written rate") > 0


async def test_keep_alive_requests_are_not_delayed() -> None:
    """Responses on a kept-alive connection must not wait for a delayed ACK (~40 ms per request).

    What prevents it is TCP_NODELAY on every connection the server accepts (Nagle's algorithm
    would hold a response's last small segment until the client's delayed ACK): checked on the
    server's side of the connection, whatever the machine's load. The requests' latency itself is
    a figure of bench/bench_web.py.
    """
    async with HttpServer(context()) as server, httpx.AsyncClient(base_url=server.url) as client:
        for _ in range(3):
            assert (await client.get("/healthz")).status_code == 200
        assert server._server is not None
        connections = list(server._server.server_state.connections)
        assert connections, "the kept-alive connection is open on the server's side"
        for connection in connections:
            sock = connection.transport.get_extra_info("socket")
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY), "Nagle's algorithm is on"


async def test_a_stop_does_not_wait_for_uvicorns_next_tick(monkeypatch: pytest.MonkeyPatch) -> None:
    """uvicorn's loop ticks once a second here (not ten times), so a stop must wake it: with an
    hour between ticks the server still stops within the test's 30 s."""
    monkeypatch.setattr(_Server, "TICK_SECONDS", 3600.0)
    server = HttpServer(context())
    async with asyncio.timeout(30):
        async with server, httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            response = await client.get("/healthz")
            assert response.status_code == 200
            assert response.headers["date"].endswith("GMT")  # still sent, refreshed at each tick
    # Stopped by itself, not cancelled after close()'s 15 s grace.
    assert server._task is not None and server._task.done() and not server._task.cancelled()
