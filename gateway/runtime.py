"""The supervisor: builds every connector and sink from the config, owns their lifecycles, reloads.

Start: one route per sink (it opens the sink, retrying while that fails), every connector as
its own supervised task, the web server. A connector that fails is logged, shown in its
status, and restarted with capped exponential backoff; the others go on.

Reload (:meth:`Gateway.reload`: SIGHUP, ``--watch``, ``POST /api/reload``): the whole config is
loaded and validated first; an invalid one changes nothing (every problem logged as
``file:line: key: message``, shown in the status, counted). A valid one is applied component
by component as :func:`gateway.reload.plan_reload` says, and nothing else is touched.

Stop (SIGINT/SIGTERM or :meth:`Gateway.request_stop`): connectors stop taking data first, then
the routes write everything pending (acknowledgements flow back to the connectors, which are
still connected), then connectors disconnect and sinks close, the web server last.

Every task has an owner: the gateway's task group holds one task per connector, per route,
the web server and each reload; each of those owns its own sub-tasks (a route's committer,
the web server's rate sampler), so stopping a component cancels exactly its tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from pydantic import BaseModel

from gateway import heap
from gateway.audit import AuditTrail
from gateway.buffer import DiskQueue
from gateway.component import FieldUnits, OnStored, RuntimeContext, Sink, Source, State, Status
from gateway.config import GatewayConfig, LoadedConfig, load_config_source
from gateway.errors import ConfigError, GatewayError
from gateway.history import HistoryReader
from gateway.http.app import AppContext
from gateway.http.server import HttpServer
from gateway.kpi import machines_of
from gateway.kpi.engine import KpiEngine
from gateway.kpi.source import KPI_COMPONENT, KpiSource
from gateway.latest import LatestValues, seed_from_history
from gateway.linkjournal import ALIVE_SECONDS, LinkJournal
from gateway.logs import component_logger, install_secret_filter
from gateway.pipeline import Backoff, Fanout
from gateway.point import Point
from gateway.registry import component_types
from gateway.reload import ReloadPlan, buffer_settings, plan_reload, sink_buffer_folder
from gateway.reloads import ConfigGeneration, ReloadAttempt, ReloadHistory, ReloadResult, ReloadTrigger
from gateway.route import MemoryQueue, PointQueue, Route
from gateway.secrets import SECRETS, secret_values
from gateway.settings import LEGACY_BUFFER_FOLDER, ConnectorConfig, SinkConfig
from gateway.writes import FieldWriter
from gateway.writing import WriteDesk

__all__ = ["Gateway", "run_gateway"]

log = component_logger("gateway", "runtime")

#: A connector that ran this long before failing starts its backoff from the beginning again.
HEALTHY_RUN_SECONDS = 60.0
#: Longest a reload waits for a restarted or removed connector's batches to be stored.
RELOAD_SETTLE_SECONDS = 10.0


@dataclass(eq=False)
class _ConnectorSlot:
    """One connector: its source, its fan-out, the batches it handed over and not stored yet."""

    config: ConnectorConfig
    source: Source
    fanout: Fanout
    task: asyncio.Task[None] | None = None
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    inflight: int = 0
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    #: its batches are recorded as latest values (not the kpi component's: they are no machine's values)
    record_latest: bool = True

    def __post_init__(self) -> None:
        self.idle.set()


class _SinkSlot:
    """One sink's way in, as the connectors' fan-outs hold it: stable while its route is replaced.

    ``put`` waits while the gate is closed (a route being replaced); :meth:`quiesce` closes the
    gate and waits for the puts already on their way, so none lands in a route that is draining.
    """

    def __init__(self, config: SinkConfig, route: Route) -> None:
        self.config = config
        self.route = route
        self.task: asyncio.Task[None] | None = None
        self._open = asyncio.Event()
        self._open.set()
        self._putting = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def name(self) -> str:
        return self.config.name

    async def put(self, points: Sequence[Point], done: OnStored) -> None:
        while not self._open.is_set():
            await self._open.wait()
        self._putting += 1
        self._idle.clear()
        try:
            await self.route.put(points, done)
        finally:
            self._putting -= 1
            if not self._putting:
                self._idle.set()

    async def quiesce(self) -> None:
        """Close the gate and wait until no put is on its way into the route."""
        self._open.clear()
        await self._idle.wait()

    def reopen(self, route: Route, task: asyncio.Task[None]) -> None:
        self.route, self.task = route, task
        self._open.set()


class Gateway:
    """The running gateway; ``async with Gateway(config) as gw: await gw.wait_stopped()``.

    ``config`` is a validated config, or a :class:`~gateway.config.LoadedConfig` that also
    knows its files (needed to reload them).
    """

    def __init__(self, config: GatewayConfig | LoadedConfig) -> None:
        if isinstance(config, LoadedConfig):
            self.loaded: LoadedConfig | None = config
            self.config = config.config
            digest, files = config.sha256, tuple(str(f) for f in config.files)
        else:
            self.loaded = None
            self.config = config
            digest, files = "", ()
        self.started_at = time.time()
        self.generation = ConfigGeneration(1, self.started_at, digest, files)
        # The config's passwords and tokens are masked in every log line, whoever set logging up.
        SECRETS.add(secret_values(self.config))
        install_secret_filter()
        self.reloads = ReloadHistory()
        #: the latest value of every series, updated with every batch a connector emits (web page, SSE, KPI)
        self.latest = LatestValues()
        #: units the connectors found for their fields (OPC UA EngineeringUnits), for the web page
        self.units: FieldUnits = {}
        self.http: HttpServer | None = None
        self._connectors: dict[str, _ConnectorSlot] = {}
        self._sinks: dict[str, _SinkSlot] = {}
        #: the built-in kpi component (``machines:``), supervised like a connector
        self._kpi: _ConnectorSlot | None = None
        self._kpi_source: KpiSource | None = None
        self._http_task: asyncio.Task[None] | None = None
        self._tasks = asyncio.TaskGroup()
        self._stop = asyncio.Event()
        self._reload_lock = asyncio.Lock()
        self._heap_frozen = False  # (freeze_heap)
        self._refreeze: asyncio.TimerHandle | None = None
        self._restart_required: tuple[str, ...] = ()
        #: when each connector was connected (<data_dir>/link/), for the interconnection report
        self.link_journal = LinkJournal(self.config.gateway.data_dir)
        #: writes to machines (POST /api/write) and their audit trail; its points go to every sink
        self.writes = self._write_desk()
        self._audit_fanout = Fanout([])
        self._audit_task: asyncio.Task[None] | None = None

    def _spawn(self, work: Coroutine[Any, Any, Any], name: str, status: Status | None = None) -> asyncio.Task[None]:
        """A task of the gateway's task group that never takes the others down: an unexpected
        exception (a bug) is logged with its traceback and shown in the component's status."""

        async def guarded() -> None:
            try:
                await work
            except Exception as exc:
                log.exception("%s stopped by an unexpected error (a bug: please report it)", name)
                if status is not None:
                    status.record_error(f"stopped by an unexpected error: {type(exc).__name__}: {exc}")
                    status.set_state(State.STOPPED)

        return self._tasks.create_task(guarded(), name=name)

    # --- what others read --------------------------------------------------------------------------

    @property
    def sources(self) -> list[Source]:
        return [slot.source for slot in self._connectors.values()]

    @property
    def routes(self) -> dict[str, Route]:
        return {name: slot.route for name, slot in self._sinks.items()}

    @property
    def sinks(self) -> list[Sink]:
        return [slot.route.sink for slot in self._sinks.values()]

    def statuses(self) -> list[Status]:
        kpi = [self._kpi.source.status] if self._kpi is not None else []
        return (
            [slot.source.status for slot in self._connectors.values()]
            + kpi
            + [slot.route.status for slot in self._sinks.values()]
        )

    def kpi(self) -> KpiEngine | None:
        """The KPI engine in force (None without ``machines:``); a reload of the machines replaces it."""
        return self._kpi_source.engine if self._kpi_source is not None else None

    def history(self) -> HistoryReader | None:
        """The history of the first sink that offers one (the embedded historian), if any."""
        for slot in self._sinks.values():
            reader = slot.route.sink.history()
            if reader is not None:
                return reader
        return None

    def configs(self) -> dict[str, BaseModel]:
        configs: dict[str, BaseModel] = {f"connector:{c.name}": c for c in self.config.connectors}
        configs.update({f"sink:{s.name}": s for s in self.config.sinks})
        return configs

    def config_state(self) -> dict[str, Any]:
        """The configuration in force and the last reload attempt (``/api/status``, ``/metrics``)."""
        last = self.reloads.last
        return {
            **self.generation.as_dict(),
            "reloads": {result.value: count for result, count in self.reloads.counts.items()},
            "last_reload": last.as_dict() if last is not None else None,
            # An applied reload stays visible after later attempts: a file watcher that sees the
            # same save as a SIGHUP records an "unchanged" attempt right after it.
            "recent_reloads": [attempt.as_dict() for attempt in self.reloads.attempts],
            "restart_required": list(self._restart_required),
            "reloadable": self.loaded is not None,
        }

    # --- start and stop -------------------------------------------------------------------------------

    def _context(self, kind: str, name: str) -> RuntimeContext:
        settings = self.config.gateway
        return RuntimeContext(
            gateway_name=settings.name,
            data_dir=settings.data_dir,
            log=component_logger(kind, name),
            units=self.units,
            field_unit=self._field_unit,
        )

    def _field_unit(self, measurement: str, field: str) -> str:
        """A field's unit as the web page shows it, from the config in force (it may change by a reload)."""
        return self.config.gateway.http.overview.catalogue.display(measurement, field, self.units).unit

    #: seconds after an applied reload before the heap is collected and frozen again: the
    #: replaced components finish closing (their last tasks end) in the meantime
    REFREEZE_DELAY = 5.0

    def freeze_heap(self) -> None:
        """Leave the started gateway's objects out of the collector's walks (:mod:`gateway.heap`),
        and do so again after every applied reload. For ``gateway run``'s own process."""
        heap.freeze()
        self._heap_frozen = True

    def _refreeze_soon(self) -> None:
        """Unfreeze now (what the old configuration held can be collected again), and collect and
        freeze once the replaced components have finished closing."""
        heap.unfreeze()
        if self._refreeze is not None:
            self._refreeze.cancel()
        self._refreeze = asyncio.get_running_loop().call_later(self.REFREEZE_DELAY, heap.freeze)

    async def __aenter__(self) -> Self:
        await self._tasks.__aenter__()
        try:
            self._make_data_dir()
            self.link_journal.open()
            self._spawn(self._note_alive(), "link:alive")
            await self._start_http(self.config)
            for sink_config in self.config.sinks:
                self._start_sink(sink_config)
            for connector_config in self.config.connectors:
                self._start_connector(connector_config)
            self._start_kpi()
            self._spawn(self._seed_latest(), "latest:seed")
            await self._start_audit()
        except BaseException:
            await self._shutdown()
            await self._tasks.__aexit__(None, None, None)
            raise
        log.info(
            "started %d connectors and %d sinks (config generation %d%s)",
            len(self._connectors),
            len(self._sinks),
            self.generation.number,
            f", sha256 {self.generation.sha256[:12]}" if self.generation.sha256 else "",
            extra={"fields": {"gateway": self.config.gateway.name}},
        )
        return self

    def _make_data_dir(self) -> None:
        """Create gateway.data_dir; a full or read-only disk does not stop the start (each component
        makes its own folders, and waits, unacknowledged, while it cannot write there)."""
        data_dir = self.config.gateway.data_dir
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            log.error(
                "cannot create the data folder %s (%s): the components that write there wait until they can",
                data_dir,
                exc.strerror or exc,
            )

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            await self._shutdown()
        finally:
            # Every task has ended by now; the block's own exception (if any) propagates as it
            # is instead of being wrapped in an exception group by the task group.
            await self._tasks.__aexit__(None, None, None)

    def request_stop(self) -> None:
        """Ask the gateway to stop (what SIGINT/SIGTERM do)."""
        self._stop.set()

    async def wait_stopped(self) -> None:
        await self._stop.wait()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    # --- sinks ----------------------------------------------------------------------------------------

    def _build_sink(self, config: SinkConfig) -> Sink:
        sink = component_types("sink")[config.type].factory(config, self._context("sink", config.name))
        assert isinstance(sink, Sink)
        return sink

    def _queue_for(self, sink: Sink, config: SinkConfig, adopt: Sequence[Path] = ()) -> PointQueue:
        settings = buffer_settings(self.config, config)
        if not sink.needs_durable_buffer or settings is None:
            return MemoryQueue(config.batch_size)
        folder = sink_buffer_folder(self.config, config)
        assert folder is not None
        if settings.path is None:  # before data_dir decided it, the default folder was ./data/buffer
            adopt = [*adopt, LEGACY_BUFFER_FOLDER.resolve() / config.name]
        return DiskQueue(folder, settings, config.batch_size, sink.log, adopt=adopt)

    def _new_route(self, config: SinkConfig, adopt: Sequence[Path] = ()) -> tuple[Route, asyncio.Task[None]]:
        sink = self._build_sink(config)
        route = Route(sink, config, self._queue_for(sink, config, adopt))
        return route, self._spawn(route.run(), f"sink:{config.name}", route.status)

    def _start_sink(self, config: SinkConfig) -> _SinkSlot:
        route, task = self._new_route(config)
        slot = _SinkSlot(config, route)
        slot.task = task
        self._sinks[config.name] = slot
        return slot

    async def _stop_sink(self, slot: _SinkSlot, deadline: float, *, removed: bool) -> None:
        await slot.quiesce()
        await slot.route.drain(deadline, removed=removed)
        await _wait_tasks([slot.task] if slot.task else [], deadline + 1.0)

    async def _replace_sink(self, slot: _SinkSlot, config: SinkConfig, old: GatewayConfig, deadline: float) -> None:
        """A sink whose type or buffer folder changed: the old route stops (its buffer stays on disk)
        and the new one takes the old buffer's files over; the connectors wait meanwhile."""
        old_folder = sink_buffer_folder(old, slot.config)
        await self._stop_sink(slot, deadline, removed=False)
        route, task = self._new_route(config, adopt=[old_folder] if old_folder is not None else [])
        slot.config = config
        slot.reopen(route, task)

    # --- connectors -----------------------------------------------------------------------------------

    def _fanout_routes(self, config: ConnectorConfig) -> list[_SinkSlot]:
        names = config.sinks or [s.name for s in self.config.sinks]
        return [self._sinks[name] for name in names]

    def _start_connector(self, config: ConnectorConfig, carry: Status | None = None) -> _ConnectorSlot:
        source = component_types("connector")[config.type].factory(config, self._context("connector", config.name))
        assert isinstance(source, Source)
        if carry is not None:  # a restarted connector's counters go on from where they were
            for key, value in carry.counters.items():
                source.status.counters[key] = source.status.counters.get(key, 0) + value
        slot = _ConnectorSlot(config, source, Fanout(self._fanout_routes(config)))
        journal = self.link_journal
        journal.state(config.name, config.type, source.status.state.value)
        source.status.on_change = lambda status: journal.state(config.name, config.type, status.state.value)
        slot.task = self._spawn(self._supervise(slot), f"connector:{config.name}", source.status)
        self._connectors[config.name] = slot
        return slot

    def _emit_for(self, slot: _ConnectorSlot) -> Any:
        """The connector's ``emit``: record the batch as latest values, count it in flight, fan it out."""
        update = self.latest.update
        name = slot.source.name

        async def emit(points: Sequence[Point], on_stored: Any = None) -> None:
            slot.inflight += 1
            slot.idle.clear()

            def stored() -> None:
                slot.inflight -= 1
                if slot.inflight == 0:
                    slot.idle.set()
                if on_stored is not None:
                    on_stored()

            if slot.record_latest:
                update(points, name)
            try:
                await slot.fanout(points, stored)
            except BaseException:
                slot.inflight -= 1
                if slot.inflight == 0:
                    slot.idle.set()
                raise

        return emit

    async def _supervise(self, slot: _ConnectorSlot) -> None:
        source = slot.source
        emit = self._emit_for(slot)
        backoff = Backoff(initial=1.0, cap=60.0)
        while not slot.stop.is_set():
            started = time.monotonic()
            try:
                await source.run(emit)
                if slot.stop.is_set():
                    break
                raise GatewayError("the connector stopped by itself")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if slot.stop.is_set():
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
                    await asyncio.wait_for(slot.stop.wait(), delay)
        source.status.set_state(State.STOPPED)

    def _request_connector_stop(self, slot: _ConnectorSlot) -> None:
        slot.stop.set()
        slot.source.status.set_state(State.STOPPING)
        try:
            slot.source.request_stop()
        except Exception:
            slot.source.log.exception("error while stopping")

    async def _close_connector(self, slot: _ConnectorSlot, deadline: float) -> None:
        try:
            await asyncio.wait_for(slot.source.aclose(), max(1.0, deadline - time.monotonic()))
        except Exception as exc:  # noqa: BLE001 - one failing close must not stop the others
            slot.source.log.warning("error while disconnecting: %s", exc)
        slot.source.status.set_state(State.STOPPED)

    async def _stop_connector(self, slot: _ConnectorSlot, deadline: float) -> None:
        """Stop one connector while the rest runs: what it emitted is stored (and acknowledged) first."""
        self._request_connector_stop(slot)
        await _wait_tasks([slot.task] if slot.task else [], deadline)
        if slot.inflight:  # its last batches are written now, not at the end of a flush interval
            for sink in slot.fanout.routes:
                if isinstance(sink, _SinkSlot):
                    sink.route.flush_soon()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(slot.idle.wait(), max(0.0, deadline - time.monotonic()))
        if slot.inflight:
            slot.source.log.warning(
                "%d batches were not stored yet when the connector was stopped: MQTT QoS 1/2 messages among "
                "them are redelivered by the broker",
                slot.inflight,
            )
        await self._close_connector(slot, deadline)

    # --- the KPI engine (machines:) --------------------------------------------------------------------

    def _start_kpi(self) -> None:
        """The built-in kpi component, when the config has machines: it writes to every sink."""
        machines = machines_of(self.config)
        if not machines:
            return
        source = KpiSource(machines, self._context("kpi", KPI_COMPONENT), history=self.history, latest=self.latest)
        # Not a connector of the file: a config for the fan-out (every sink) that no file can name.
        config = ConnectorConfig.model_construct(name=KPI_COMPONENT, type="kpi", sinks=None)
        slot = _ConnectorSlot(config, source, Fanout(self._fanout_routes(config)), record_latest=False)
        slot.task = self._spawn(self._supervise(slot), KPI_COMPONENT, source.status)
        self._kpi, self._kpi_source = slot, source

    async def _apply_kpi(self, plan: ReloadPlan, deadline: float) -> None:
        """Changed machines restart the component (its points stored first); else its fan-out follows the sinks."""
        slot = self._kpi
        if plan.kpi is None:
            if slot is not None:
                slot.fanout.routes = tuple(self._fanout_routes(slot.config))
            return
        if slot is not None:
            self._kpi, self._kpi_source = None, None
            await self._stop_connector(slot, deadline)
        self._start_kpi()

    # --- writes to machines and their audit trail -------------------------------------------------------

    def _write_desk(self) -> WriteDesk:
        settings = self.config.gateway
        audit = settings.audit
        trail = AuditTrail(audit.folder(settings.data_dir), max_size=audit.max_size, keep=audit.keep)
        return WriteDesk(
            trail,
            find=self._writer,
            writers=self._writers,
            connectors=lambda: list(self._connectors),
            log=component_logger("writes", "desk"),
            gateway_name=settings.name,
        )

    def _writer(self, name: str) -> FieldWriter | None:
        """The writing ability of the connector named ``name`` in force (None: none, or nothing writable)."""
        slot = self._connectors.get(name)
        return slot.source.writer() if slot is not None else None

    def _writers(self) -> list[tuple[str, FieldWriter]]:
        found = []
        for name, slot in self._connectors.items():
            writer = slot.source.writer()
            if writer is not None:
                found.append((name, writer))
        return found

    async def _start_audit(self) -> None:
        """Open the audit trail (a write a stop interrupted gets its outcome) and send its points to every sink.

        A trail that cannot be opened (a read-only disk) does not stop collection: writes are refused
        until it can be written (each attempt tries again)."""
        try:
            recovered = await asyncio.to_thread(self.writes.trail.open)
        except GatewayError as exc:
            log.error("%s: writes to machines are refused until it can be written", exc)
            recovered = []
        self._audit_fanout.routes = tuple(self._sinks.values())
        self.writes.recovered(recovered)
        self._audit_task = self._spawn(self.writes.run(self._audit_fanout), "writes:audit")

    def _apply_audit(self) -> None:
        """A reload: audit points follow the sinks in force; new trail settings apply from the next entry."""
        self._audit_fanout.routes = tuple(self._sinks.values())
        settings = self.config.gateway
        audit = settings.audit
        self.writes.trail.reconfigure(audit.folder(settings.data_dir), audit.max_size, audit.keep)

    # --- the web server -------------------------------------------------------------------------------

    def app_context(self, config: GatewayConfig | None = None) -> AppContext:
        """What the web app may read of this gateway (its settings from ``config``, default: the one in force)."""
        config = config or self.config
        return AppContext(
            name=config.gateway.name,
            settings=config.gateway.http,
            statuses=self.statuses,
            latest=self.latest,
            units=self.units,
            history=self.history,
            kpi=self.kpi,
            started_at=self.started_at,
            configs=self.configs,
            config_state=self.config_state,
            reload=self._reload_from_api if self.loaded is not None else None,
            writes=lambda: self.writes,
        )

    async def _start_http(self, config: GatewayConfig) -> None:
        """The web page, API and /metrics; if its port is taken, collection goes on without them."""
        if not config.gateway.http.enabled:
            return
        server = HttpServer(self.app_context(config))
        started: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        task = self._spawn(server.run(started), "http")
        try:
            await asyncio.shield(started)
        except GatewayError as exc:
            log.error("%s; collecting data without the web page, API and /metrics", exc)
            await asyncio.gather(task, return_exceptions=True)
            return
        self.http = server
        self._http_task = task

    async def _stop_http(self) -> None:
        server, task = self.http, self._http_task
        self.http, self._http_task = None, None
        if server is not None:
            server.request_stop()
        if task is not None:
            await _wait_tasks([task], time.monotonic() + 15.0)

    async def _seed_latest(self) -> None:
        """After a restart, show the last stored values on the overview until live ones arrive."""
        reader = self.history()
        if reader is not None:
            seeded = await seed_from_history(self.latest, reader)
            log.debug("%d stored values shown until live ones arrive", seeded)

    # --- reload ---------------------------------------------------------------------------------------

    async def _reload_from_api(self) -> ReloadAttempt:
        return await self.reload(ReloadTrigger.API)

    async def _reload_quietly(self, trigger: ReloadTrigger) -> None:
        try:
            await self.reload(trigger)
        except GatewayError as exc:
            log.warning("reload (%s) not done: %s", trigger.value, exc)

    def request_reload(self, trigger: ReloadTrigger) -> None:
        """Start a reload in the background (what SIGHUP and the file watcher do)."""
        if self._stop.is_set():
            return
        self._spawn(self._reload_quietly(trigger), f"reload:{trigger.value}")

    async def reload(self, trigger: ReloadTrigger = ReloadTrigger.CALL) -> ReloadAttempt:
        """Load the config files again; apply them if they are valid and differ (module docstring)."""
        if self.loaded is None:
            raise GatewayError("this gateway was started from a config object, not from files: nothing to reload")
        async with self._reload_lock:
            if self._stop.is_set():
                raise GatewayError("the gateway is stopping")
            started, at = time.monotonic(), time.time()
            path = self.loaded.path
            log.info("reloading %s (%s)", path, trigger.value)
            try:
                loaded = await asyncio.to_thread(load_config_source, path)
            except ConfigError as exc:
                errors = tuple(str(problem) for problem in exc.problems)
                for line in errors:
                    log.error("%s", line)
                log.error(
                    "reload refused: %d problem%s in %s; still running on config generation %d",
                    len(errors),
                    "s" if len(errors) != 1 else "",
                    path,
                    self.generation.number,
                )
                attempt = ReloadAttempt(at, trigger, ReloadResult.FAILED, time.monotonic() - started, errors=errors)
                self.reloads.record(attempt)
                return attempt
            SECRETS.add(secret_values(loaded.config))  # before anything new runs (and may log)
            plan = plan_reload(self.config, loaded.config)
            if plan.empty and not plan.restart_required:
                self.loaded = loaded
                if loaded.sha256 != self.generation.sha256:
                    # the text changed (a comment, the order of keys) but nothing the gateway runs
                    self.generation = ConfigGeneration(
                        self.generation.number, self.generation.applied_at, loaded.sha256, self.generation.files
                    )
                log.info("reload: nothing changed (config generation %d)", self.generation.number)
                attempt = ReloadAttempt(
                    at, trigger, ReloadResult.UNCHANGED, time.monotonic() - started, generation=self.generation.number
                )
                self.reloads.record(attempt)
                return attempt
            await self._apply(plan)
            self.loaded = loaded
            self._restart_required = tuple(plan.restart_required)
            self.generation = ConfigGeneration(
                self.generation.number + 1, time.time(), loaded.sha256, tuple(str(f) for f in loaded.files)
            )
            attempt = ReloadAttempt(
                at,
                trigger,
                ReloadResult.APPLIED,
                time.monotonic() - started,
                changes=plan.changes,
                restart_required=tuple(plan.restart_required),
                generation=self.generation.number,
            )
            self.reloads.record(attempt)
            if self._heap_frozen:
                self._refreeze_soon()
            for line in plan.restart_required:
                log.warning("%s", line)
            summary = ", ".join(f"{name} {what}" for name, what in plan.changes.items()) or "nothing applied"
            log.info(
                "config generation %d applied in %.2fs (sha256 %s): %s",
                self.generation.number,
                attempt.duration_seconds,
                loaded.sha256[:12],
                summary,
            )
            return attempt

    async def _apply(self, plan: ReloadPlan) -> None:
        old, new = self.config, plan.config
        deadline = time.monotonic() + min(RELOAD_SETTLE_SECONDS, new.gateway.shutdown_timeout)
        self.config = new
        await self._apply_sinks(plan, old, deadline)
        await self._apply_connectors(plan, deadline)
        await self._apply_kpi(plan, deadline)
        self._apply_audit()
        await self._remove_sinks(plan, old, deadline)
        if plan.http_restart:
            await self._stop_http()
            await self._start_http(new)
            if self.http is None and old.gateway.http.enabled and new.gateway.http.enabled:
                log.error("the web server could not start with the new settings; starting it with the previous ones")
                await self._start_http(old)

    async def _apply_sinks(self, plan: ReloadPlan, old: GatewayConfig, deadline: float) -> None:
        """New sinks start (before connectors may feed them); changed ones keep every queued point."""
        new = self.config
        configs = {s.name: s for s in new.sinks}
        for name in plan.sinks_added:
            self._start_sink(configs[name])
        for name in plan.sinks_reconfigured:
            slot, config = self._sinks[name], configs[name]
            slot.config = config
            queue = slot.route.queue
            if isinstance(queue, DiskQueue):
                settings = buffer_settings(new, config)
                assert settings is not None
                queue.reconfigure(settings, config.batch_size)
            elif isinstance(queue, MemoryQueue):
                queue.batch_size = config.batch_size
            await slot.route.reconfigure(self._build_sink(config), config)
        for name in plan.sinks_replaced:
            await self._replace_sink(self._sinks[name], configs[name], old, deadline)

    async def _apply_connectors(self, plan: ReloadPlan, deadline: float) -> None:
        """Removed and restarted connectors stop once what they emitted is stored; every fan-out follows."""
        configs = {c.name: c for c in self.config.connectors}
        # They stay in the status (state "stopping") until they are stopped or replaced.
        stopping = [self._connectors[name] for name in (*plan.connectors_removed, *plan.connectors_restarted)]
        await asyncio.gather(*(self._stop_connector(slot, deadline) for slot in stopping))
        for slot in stopping:
            del self._connectors[slot.config.name]
        for slot in stopping:
            if slot.config.name in plan.connectors_restarted:
                self._start_connector(configs[slot.config.name], carry=slot.source.status)
        for name in plan.connectors_added:
            self._start_connector(configs[name])
        # Unchanged connectors are not restarted: their fan-out switches to the routes the config names.
        for slot in self._connectors.values():
            slot.config = configs[slot.config.name]
            slot.fanout.routes = tuple(self._fanout_routes(slot.config))

    async def _remove_sinks(self, plan: ReloadPlan, old: GatewayConfig, deadline: float) -> None:
        """Removed sinks (no fan-out feeds them now) drain what they hold in memory; a disk buffer stays."""
        removed = [self._sinks.pop(name) for name in plan.sinks_removed]
        for slot in removed:
            folder = sink_buffer_folder(old, slot.config)
            if folder is not None:
                slot.route.log.info(
                    "removed from the configuration: what its store did not take stays in %s "
                    "(sent when a sink of this name comes back)",
                    folder,
                )
        await asyncio.gather(*(self._stop_sink(slot, deadline, removed=True) for slot in removed))

    # --- shutdown -------------------------------------------------------------------------------------

    async def _shutdown(self) -> None:
        timeout = self.config.gateway.shutdown_timeout
        deadline = time.monotonic() + timeout
        self._stop.set()
        if self._refreeze is not None:
            self._refreeze.cancel()
        async with self._reload_lock:  # a reload in progress finishes first
            connectors = list(self._connectors.values()) + ([self._kpi] if self._kpi is not None else [])
            sinks = list(self._sinks.values())
        # 0. Writes to machines in progress end (no new one starts); their audit points go to the routes.
        await self.writes.close(deadline)
        await _wait_tasks([self._audit_task] if self._audit_task else [], deadline)
        # 1. Sources stop taking data and emit what they hold.
        for slot in connectors:
            self._request_connector_stop(slot)
        await _wait_tasks([slot.task for slot in connectors if slot.task], deadline)
        # 2. Routes write everything pending; acknowledgements reach the still-connected sources.
        for sink_slot in sinks:
            await sink_slot.route.drain(deadline)
        await _wait_tasks([slot.task for slot in sinks if slot.task], deadline + 1.0)
        # 3. Connections close.
        for slot in connectors:
            await self._close_connector(slot, deadline)
        # 4. The web page last, so /readyz and /metrics show the whole shutdown.
        await self._stop_http()
        await asyncio.to_thread(self.link_journal.close)
        log.info("stopped")

    async def _note_alive(self) -> None:
        """Note in the link journal, every ALIVE_SECONDS, that the gateway runs (bounds an unclean stop's time)."""
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), ALIVE_SECONDS)
            if not self._stop.is_set():
                self.link_journal.alive()


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
            log.error("task %s ended with %r", task.get_name(), task.exception())


async def run_gateway(config: LoadedConfig | GatewayConfig, *, watch: bool = False, debounce: float = 0.5) -> None:
    """Run until SIGINT or SIGTERM, reloading on SIGHUP (and on file changes with ``watch``).

    Reloading needs the files: ``config`` from :func:`~gateway.config.load_config_source`."""
    loop = asyncio.get_running_loop()
    async with Gateway(config) as gateway:
        gateway.freeze_heap()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, _on_signal, gateway, sig)
        if isinstance(config, LoadedConfig):
            loop.add_signal_handler(signal.SIGHUP, gateway.request_reload, ReloadTrigger.SIGNAL)
        try:
            if watch and isinstance(config, LoadedConfig):
                from gateway.watch import watch_config

                stop = asyncio.Event()
                async with asyncio.TaskGroup() as tasks:
                    tasks.create_task(watch_config(gateway, config.path, debounce, stop), name="watch")
                    await gateway.wait_stopped()
                    stop.set()
            else:
                await gateway.wait_stopped()
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                loop.remove_signal_handler(sig)  # (False for a signal never handled: nothing to undo)


def _on_signal(gateway: Gateway, sig: signal.Signals) -> None:
    if gateway.stopping:
        log.warning("%s again: still stopping (waiting for pending writes)", sig.name)
        return
    log.info("%s received: stopping connectors, flushing sinks", sig.name)
    gateway.request_stop()
