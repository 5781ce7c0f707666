"""The supervisor: builds every connector and sink from the config and owns their lifecycles.

Start: open the sinks, start one writer per sink, start every connector as its own task.
A connector that fails is logged, shown in its status, and restarted with capped exponential
backoff; the others go on. Stop (SIGINT/SIGTERM or :meth:`Gateway.request_stop`): connectors
stop taking data first, then the sinks write everything pending (acknowledgements flow back to
the connectors, which are still connected), then connectors disconnect and sinks close.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from gateway.buffer import BufferedRoute
from gateway.component import FieldUnits, RuntimeContext, Sink, Source, State, Status
from gateway.config import GatewayConfig
from gateway.errors import GatewayError
from gateway.http.latest import LatestValues
from gateway.logs import component_logger
from gateway.pipeline import Backoff, Route, SinkRunner, fan_out
from gateway.registry import component_types
from gateway.settings import SinkConfig

if TYPE_CHECKING:
    from gateway.http.server import HttpServer

__all__ = ["Gateway", "run_gateway"]

log = component_logger("gateway", "runtime")

#: A connector that ran this long before failing starts its backoff from the beginning again.
HEALTHY_RUN_SECONDS = 60.0


class Gateway:
    """The running gateway; ``async with Gateway(config) as gw: await gw.wait_stopped()``."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.sinks: list[Sink] = []
        self.routes: dict[str, Route] = {}
        self.sources: list[Source] = []
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._route_tasks: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()
        self.started_at = time.time()
        #: the latest value of every series, updated by a tap on every connector's emit (web page, SSE)
        self.latest = LatestValues()
        #: units the connectors found for their fields (OPC UA EngineeringUnits), for the web page
        self.units: FieldUnits = {}
        self.http: HttpServer | None = None

    def _context(self, kind: str, name: str) -> RuntimeContext:
        settings = self.config.gateway
        return RuntimeContext(
            gateway_name=settings.name,
            data_dir=settings.data_dir,
            log=component_logger(kind, name),
            units=self.units,
        )

    def _make_route(self, sink: Sink, config: SinkConfig) -> Route:
        # Network stores (durable_buffer = True) get their own on-disk buffer; a sink whose
        # write is itself durable (the historian) is fed straight from memory.
        if getattr(sink, "durable_buffer", False):
            return BufferedRoute.for_sink(sink, config, self.config.gateway.buffer)
        return SinkRunner(sink, config)

    async def __aenter__(self) -> Self:
        self.config.gateway.data_dir.mkdir(parents=True, exist_ok=True)
        sink_types = component_types("sink")
        connector_types = component_types("connector")
        try:
            await self._start_http()
            for sink_config in self.config.sinks:
                sink = sink_types[sink_config.type].factory(sink_config, self._context("sink", sink_config.name))
                assert isinstance(sink, Sink)
                await sink.open()
                self.sinks.append(sink)
                route = self._make_route(sink, sink_config)
                self.routes[sink.name] = route
                self._route_tasks.append(asyncio.create_task(route.run(), name=f"sink:{sink.name}"))
            for connector_config in self.config.connectors:
                source = connector_types[connector_config.type].factory(
                    connector_config, self._context("connector", connector_config.name)
                )
                assert isinstance(source, Source)
                names = connector_config.sinks or [s.name for s in self.config.sinks]
                emit: Any = self.latest.tap(fan_out([self.routes[name] for name in names]), source.name)
                self.sources.append(source)
                self._tasks[source.name] = asyncio.create_task(
                    self._supervise(source, emit), name=f"connector:{source.name}"
                )
        except BaseException:
            await self._shutdown()
            raise
        log.info(
            "started %d connectors and %d sinks",
            len(self.sources),
            len(self.sinks),
            extra={"fields": {"gateway": self.config.gateway.name}},
        )
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._shutdown()

    def request_stop(self) -> None:
        """Ask the gateway to stop (what SIGINT/SIGTERM do)."""
        self._stop.set()

    async def wait_stopped(self) -> None:
        await self._stop.wait()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def statuses(self) -> list[Status]:
        return [source.status for source in self.sources] + [route.status for route in self.routes.values()]

    async def _start_http(self) -> None:
        """The web page, API and /metrics; if its port is taken, collection goes on without them."""
        if not self.config.gateway.http.enabled:
            return
        from gateway.http.server import HttpServer, context_for

        server = HttpServer(context_for(self))
        try:
            await server.__aenter__()
        except GatewayError as exc:
            log.error("%s; collecting data without the web page, API and /metrics", exc)
            return
        self.http = server

    async def _supervise(self, source: Source, emit: Any) -> None:
        backoff = Backoff(initial=1.0, cap=60.0)
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                await source.run(emit)
                if self._stop.is_set():
                    break
                raise GatewayError("the connector stopped by itself")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._stop.is_set():
                    break
                if time.monotonic() - started > HEALTHY_RUN_SECONDS:
                    backoff.reset()
                delay = backoff.next_delay()
                message = str(exc) or type(exc).__name__
                source.status.record_error(message)
                source.status.set_state(State.BACKOFF)
                source.status.count("restarts")
                source.log.error(
                    "failed: %s; restarting in %.1fs",
                    message,
                    delay,
                    exc_info=not isinstance(exc, GatewayError),
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), delay)
        source.status.set_state(State.STOPPED)

    async def _shutdown(self) -> None:
        timeout = self.config.gateway.shutdown_timeout
        deadline = time.monotonic() + timeout
        # 1. Sources stop taking data and emit what they hold.
        self._stop.set()
        for source in self.sources:
            source.status.set_state(State.STOPPING)
            try:
                source.request_stop()
            except Exception:
                source.log.exception("error while stopping")
        await _wait_tasks(list(self._tasks.values()), deadline)
        # 2. Sinks write everything pending; acknowledgements reach the still-connected sources.
        for route in self.routes.values():
            route.status.set_state(State.STOPPING)
            await route.drain(deadline)
        await _wait_tasks(self._route_tasks, deadline + 1.0)
        # 3. Connections close.
        for source in self.sources:
            try:
                await asyncio.wait_for(source.aclose(), max(1.0, deadline - time.monotonic()))
            except Exception as exc:  # noqa: BLE001 - one failing close must not stop the others
                source.log.warning("error while disconnecting: %s", exc)
        for sink in self.sinks:
            try:
                await sink.close()
            except Exception as exc:  # noqa: BLE001 - one failing close must not stop the others
                sink.log.warning("error while closing: %s", exc)
            sink.status.set_state(State.STOPPED)
        # 4. The web page last, so /readyz and /metrics show the whole shutdown.
        if self.http is not None:
            await self.http.close()
        log.info("stopped")


async def _wait_tasks(tasks: Sequence[asyncio.Task[None]], deadline: float) -> None:
    pending = [task for task in tasks if not task.done()]
    if pending:
        _, still = await asyncio.wait(pending, timeout=max(0.0, deadline - time.monotonic()))
        for task in still:
            task.cancel()
        if still:
            await asyncio.wait(still, timeout=5.0)
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            logging.getLogger("gateway").error("task %s ended with %r", task.get_name(), task.exception())


async def run_gateway(config: GatewayConfig) -> None:
    """Run until SIGINT or SIGTERM, then stop cleanly (the body of ``gateway run``)."""
    loop = asyncio.get_running_loop()
    async with Gateway(config) as gateway:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, _on_signal, gateway, sig)
        try:
            await gateway.wait_stopped()
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)


def _on_signal(gateway: Gateway, sig: signal.Signals) -> None:
    if gateway.stopping:
        log.warning("%s again: still stopping (waiting for pending writes)", sig.name)
        return
    log.info("%s received: stopping connectors, flushing sinks", sig.name)
    gateway.request_stop()
