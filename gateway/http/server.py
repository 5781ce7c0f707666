"""uvicorn on the gateway's own event loop, started and stopped by the runtime.

:meth:`HttpServer.run` binds the listen address (a port already in use is a clear
:class:`~gateway.errors.GatewayError`, not a traceback), serves until asked to stop, then
closes: live streams end at once, open requests get a few seconds to finish. uvicorn's own
signal handling is switched off — SIGINT/SIGTERM/SIGHUP belong to the gateway. The runtime
builds the :class:`~gateway.http.app.AppContext`: this package never imports the runtime.

With ``gateway.http.tls`` the listening socket speaks HTTPS (the certificate is loaded before
binding: an unusable one is a clear error, like a taken port). Credentials required beyond
loopback over plain HTTP are worth one warning at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Callable, Generator
from types import TracebackType
from typing import Self

import uvicorn

from gateway.errors import GatewayError
from gateway.http.app import AppContext, create_app
from gateway.http.security import server_tls_context
from gateway.logs import component_logger

__all__ = ["HttpServer"]

log = component_logger("http", "server")

#: How often the counters are sampled for the per-second rates.
RATE_SAMPLE_SECONDS = 1.0


class _Server(uvicorn.Server):
    #: seconds between two of uvicorn's ticks (the Date header it sends is refreshed at each)
    TICK_SECONDS = 1.0

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._exit_requested = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # The gateway owns SIGINT/SIGTERM (run_gateway); uvicorn must not replace its handlers.
        yield

    def exit_soon(self) -> None:
        """Stop serving (open requests get ``timeout_graceful_shutdown``), without waiting for a tick."""
        self.should_exit = True
        self._exit_requested.set()

    async def main_loop(self) -> None:
        # uvicorn's own loop wakes ten times a second to look at should_exit and to refresh the
        # Date header once a second: half the wake-ups of an idle gateway. Here it wakes once a
        # second, or at once when exit_soon() is called. (on_tick refreshes the header when the
        # counter is a multiple of 10.)
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + 10) % 864000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._exit_requested.wait(), self.TICK_SECONDS)
            should_exit = await self.on_tick(counter)


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


def _fixed_context(context: ssl.SSLContext) -> Callable[[uvicorn.Config, Callable[[], ssl.SSLContext]], ssl.SSLContext]:
    def factory(config: uvicorn.Config, default: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
        return context

    return factory


class HttpServer:
    """The web page, API and /metrics.

    The runtime runs :meth:`run` as one task of its own (stopped by :meth:`request_stop`);
    ``async with HttpServer(ctx) as server:`` does the same for a block of code (tests, benches).
    """

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.settings = ctx.settings
        self.app = create_app(ctx)
        self._server: _Server | None = None
        self._socket: socket.socket | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

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
        scheme = "https" if self.settings.tls is not None else "http"
        return f"{scheme}://{f'[{host}]' if ':' in host else host}:{self.port}"

    async def run(self, started: asyncio.Future[None]) -> None:
        """Serve until :meth:`request_stop`; ``started`` resolves once listening (or fails with why not)."""
        try:
            tls = server_tls_context(self.settings.tls) if self.settings.tls is not None else None
            self._socket = _bind(self.settings.host, self.settings.port)
        except GatewayError as exc:
            started.set_exception(exc)
            return
        config = uvicorn.Config(
            self.app,
            log_config=None,
            log_level="warning",
            access_log=False,
            lifespan="off",
            ws="none",
            timeout_graceful_shutdown=3,
            server_header=False,
            # uvicorn wraps the socket it is given with this context (asyncio's create_server(ssl=…)).
            ssl_context_factory=_fixed_context(tls) if tls is not None else None,
        )
        server = self._server = _Server(config)
        try:
            async with asyncio.TaskGroup() as tasks:
                serve = tasks.create_task(server.serve(sockets=[self._socket]), name="http:serve")
                while not server.started:
                    if serve.done():
                        break
                    await asyncio.sleep(0.01)
                if not server.started:
                    if not started.done():
                        started.set_exception(GatewayError("the web page server stopped while starting"))
                    return
                rates = tasks.create_task(self._sample_rates(), name="http:rates")
                log.info("web page, API and /metrics on %s", self.url)
                if self.settings.plain_credentials:
                    log.warning(
                        "the web page listens on %s over plain HTTP: passwords and tokens cross the network "
                        "unencrypted; set gateway.http.tls: {cert: …, key: …} (or listen on 127.0.0.1 behind "
                        "an HTTPS reverse proxy)",
                        self.settings.listen,
                    )
                started.set_result(None)
                await self._stop.wait()
                # Live streams end at once; open requests get a few seconds (timeout_graceful_shutdown).
                self.ctx.stopping.set()
                self.ctx.latest.wake()
                server.exit_soon()
                rates.cancel()
        except Exception as exc:  # noqa: BLE001 - the web page failing must not stop collection
            log.error("the web server stopped: %s", exc)
            if not started.done():
                started.set_exception(GatewayError(f"the web server stopped: {exc}"))
        finally:
            self._socket.close()

    def request_stop(self) -> None:
        self._stop.set()

    async def __aenter__(self) -> Self:
        started: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self.run(started), name="http")
        try:
            await started
        except BaseException:
            await asyncio.gather(self._task, return_exceptions=True)
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        self.request_stop()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), 15.0)
            except TimeoutError:
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)

    async def _sample_rates(self) -> None:
        while True:
            self.ctx.rates.sample(self.ctx.statuses())
            await asyncio.sleep(RATE_SAMPLE_SECONDS)
