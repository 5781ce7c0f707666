"""uvicorn on the gateway's own event loop, opened and closed by the runtime.

``async with HttpServer(ctx) as server:`` binds the listen address (a port already in use is a
clear :class:`~gateway.errors.GatewayError`, not a traceback), serves until the block ends,
then closes: live streams end at once, open requests get a few seconds to finish. uvicorn's
own signal handling is switched off — SIGINT/SIGTERM belong to the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Generator
from types import TracebackType
from typing import TYPE_CHECKING, Self

import uvicorn
from pydantic import BaseModel

from gateway.errors import GatewayError
from gateway.http.app import AppContext, create_app
from gateway.http.history import history_for_config
from gateway.logs import component_logger

if TYPE_CHECKING:
    from gateway.runtime import Gateway

__all__ = ["HttpServer", "context_for"]

log = component_logger("http", "server")

#: How often the counters are sampled for the per-second rates.
RATE_SAMPLE_SECONDS = 1.0


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # The gateway owns SIGINT/SIGTERM (run_gateway); uvicorn must not replace its handlers.
        yield


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY only on such sockets (and on the connections
    # they accept); without it every keep-alive response waited ~40 ms (Nagle + delayed ACK).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        hint = " (another program uses that port: choose another in gateway.http.listen)" if exc.errno == 98 else ""
        raise GatewayError(f"the web page cannot listen on {host}:{port}: {exc.strerror or exc}{hint}") from None
    sock.setblocking(False)
    return sock


class HttpServer:
    """The web page, API and /metrics, served while the ``async with`` block runs."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.settings = ctx.settings
        self.app = create_app(ctx)
        self._server: _Server | None = None
        self._socket: socket.socket | None = None
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def port(self) -> int:
        """The port actually bound (useful with ``listen: 127.0.0.1:0``)."""
        assert self._socket is not None, "the server is not started"
        return int(self._socket.getsockname()[1])

    @property
    def url(self) -> str:
        host = self.settings.host
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1"
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}"

    async def __aenter__(self) -> Self:
        self._socket = _bind(self.settings.host, self.settings.port)
        config = uvicorn.Config(
            self.app,
            log_config=None,
            log_level="warning",
            access_log=False,
            lifespan="off",
            ws="none",
            timeout_graceful_shutdown=3,
            server_header=False,
        )
        self._server = _Server(config)
        serve = asyncio.create_task(self._server.serve(sockets=[self._socket]), name="http:serve")
        self._tasks.append(serve)
        while not self._server.started:
            if serve.done():
                self._socket.close()
                serve.result()
                raise GatewayError("the web page server stopped while starting")
            await asyncio.sleep(0.01)
        self._tasks.append(asyncio.create_task(self._sample_rates(), name="http:rates"))
        if self.ctx.history is not None:
            self._tasks.append(asyncio.create_task(self._seed_latest(), name="http:seed"))
        log.info("web page, API and /metrics on %s", self.url)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        self.ctx.stopping.set()
        self.ctx.latest.wake()
        if self._server is not None:
            self._server.should_exit = True
        for task in self._tasks[1:]:
            task.cancel()
        if self._tasks:
            done, pending = await asyncio.wait(self._tasks, timeout=10.0)
            for task in pending:
                task.cancel()
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    log.warning("web server task %s ended with %r", task.get_name(), task.exception())
        self._tasks.clear()
        if self._socket is not None:
            self._socket.close()
        if self.ctx.history is not None:
            await asyncio.to_thread(self.ctx.history.close)

    async def _sample_rates(self) -> None:
        while True:
            self.ctx.rates.sample(self.ctx.statuses())
            await asyncio.sleep(RATE_SAMPLE_SECONDS)

    async def _seed_latest(self) -> None:
        """After a restart, show the last stored values on the overview until live ones arrive."""
        assert self.ctx.history is not None
        try:
            rows = await self.ctx.history.series()
        except Exception as exc:  # noqa: BLE001 - the historian may not exist yet on a first start
            logging.getLogger("gateway.http").debug("no stored values to show yet: %s", exc)
            return
        for row in rows:
            if row.last_value is not None and row.last_time is not None:
                self.ctx.latest.seed(row.measurement, dict(row.tags), row.field, row.last_value, row.last_time)


def context_for(gateway: Gateway) -> AppContext:
    """What the app may read of a running :class:`~gateway.runtime.Gateway`."""
    config = gateway.config
    configs: dict[str, BaseModel] = {f"connector:{c.name}": c for c in config.connectors}
    configs.update({f"sink:{s.name}": s for s in config.sinks})
    return AppContext(
        name=config.gateway.name,
        settings=config.gateway.http,
        statuses=gateway.statuses,
        latest=gateway.latest,
        units=gateway.units,
        history=history_for_config(config.sinks),
        started_at=gateway.started_at,
        configs=configs,
    )
