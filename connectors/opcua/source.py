"""The OPC UA connector: one session per server, subscriptions (or grouped reads), batches of Points.

Life of a connector::

    connect ──▶ resolve nodes (nsu= → index, browse paths, browsed folders) ──▶ subscribe / poll
       ▲                                                                            │
       │   the session is lost: asyncua re-activates it on a new channel (or        │
       │   closes it and opens a new one) with capped backoff; then namespaces are  │
       └── read again and every subscription is deleted and re-created ◀────────────┘

A failure the session cannot recover from (refused password, untrusted server certificate,
server down at start) closes the session, shows the error in the status and the log (once
per episode, not at every attempt) and tries again after a capped backoff: never a crash,
never two sessions.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from connectors.opcua._client import (
    Connection,
    ConnectionSettings,
    MonitorRequest,
    SubscriptionGone,
    Unauthorized,
    VariableInfo,
    explain,
    is_connection_problem,
)
from connectors.opcua.config import BrowseSpec, Deadband, NodeSpec, OpcUaConfig
from connectors.opcua.nodes import is_node_id, parse_browse_path, parse_node_id, unique_field_names
from connectors.opcua.pki import Pki, default_application_uri
from connectors.opcua.values import Item, PointMaker, Sample
from connectors.opcua.writer import OpcUaWriter
from gateway.component import Emit, RuntimeContext, Source, State
from gateway.errors import SourceError
from gateway.pipeline import Backoff
from gateway.point import Point
from gateway.writes import FieldWriter

__all__ = ["OpcUaSource"]

#: Points held in memory while the sinks do not take them (a full disk, a full queue); beyond
#: this the oldest are dropped and counted in ``dropped`` (the newest values matter most). The
#: publish loop never waits for the sinks: the server would drop samples uncounted, or end the
#: subscription for want of publish requests.
MAX_PENDING = 100_000


def _server_filter(deadband: Deadband, scale: float | None) -> tuple[Literal["absolute", "percent"], float] | None:
    """The DataChangeFilter sent to the server, which compares RAW values.

    An absolute deadband is written in the unit of the stored (scaled) value, as the gateway
    applies it: the server gets ``absolute / |scale|``. With ``scale: 0`` every stored value is
    the same, so no server filter is needed (the gateway's own filter drops the repeats).
    """
    if deadband.absolute is not None:
        factor = abs(scale) if scale is not None else 1.0
        return ("absolute", deadband.absolute / factor) if factor > 0 else None
    return ("percent", deadband.percent or 0.0)


@dataclass
class _Target:
    """A variable to collect, before it becomes an Item with a handle."""

    node: Any
    text: str
    field: str | None
    spec: NodeSpec | BrowseSpec
    parts: tuple[str, ...] = ()


class OpcUaSource(Source):
    """``type: opcua`` — see connectors/opcua/README.md."""

    def __init__(self, config: OpcUaConfig, context: RuntimeContext) -> None:
        super().__init__(config.name, "opcua", context)
        self.config = config
        self._stop = asyncio.Event()
        self._restored = asyncio.Event()
        self._resumed = asyncio.Event()
        self._resubscribe = asyncio.Event()
        self._flush_now = asyncio.Event()
        self._conn: Connection | None = None
        self._pending: list[Point] = []
        self._dropping = 0  # samples dropped in the current episode of sinks that do not take them
        self._poll: list[tuple[Any, int]] = []
        self._logged: set[str] = set()  # errors already logged in this episode (until connected again)
        self._connected_once = False
        self._item_state: dict[str, Item] = {}
        self._maker = PointMaker(
            measurement=config.measurement,
            tags=config.tags,
            timestamps=config.timestamps,
            bad_values=config.bad_values,
            status=self.status,
            log=self.log,
        )
        for counter in (
            "received",
            "emitted",
            "stored",
            "bad_quality",
            "skipped",
            "reconnects",
            "dropped",
        ):
            self.status.counters.setdefault(counter, 0)
        # Gauges, not counters: they go down (0 when the session closes, failures fixed on the server).
        self.status.detail["monitored_items"] = 0
        self.status.detail["failed_items"] = 0
        self.status.detail["endpoint"] = config.endpoint
        self._writer = OpcUaWriter(config, lambda: self._conn, lambda m, f: context.units.get((m, f)))

    def writer(self) -> FieldWriter | None:
        """The nodes declared writable (``write:``), written on this connector's session."""
        return None if self._writer.empty else self._writer

    # -- settings ---------------------------------------------------------------------------

    def _settings(self) -> ConnectionSettings:
        config = self.config
        security = config.security
        root = self.context.data_dir / "opcua" / "pki"
        pki = Pki(root, security.trusted_servers)
        app_uri = config.application_uri or default_application_uri(self.context.gateway_name)
        certificate = private_key = None
        if security.secured:
            if security.certificate is not None and security.private_key is not None:
                certificate, private_key = str(security.certificate), str(security.private_key)
            else:
                own = pki.own_certificate(app_uri)
                if own.created:
                    self.log.info(
                        "created the gateway's client certificate %s (application URI %s); servers that check "
                        "clients must trust this file",
                        own.certificate,
                        own.application_uri,
                    )
                certificate, private_key, app_uri = str(own.certificate), str(own.private_key), own.application_uri
        auth = config.auth
        return ConnectionSettings(
            endpoint=config.endpoint,
            application_uri=app_uri,
            policy=security.policy,
            mode=security.mode,
            certificate=certificate,
            private_key=private_key,
            pki=pki,
            username=auth.username if auth else None,
            password=auth.password.get_secret_value() if auth and auth.password is not None else None,
            user_certificate=str(auth.certificate) if auth and auth.certificate else None,
            user_private_key=str(auth.private_key) if auth and auth.private_key else None,
            request_timeout=config.reconnect.request_timeout,
            watchdog_interval=config.reconnect.watchdog_interval,
            session_timeout=config.reconnect.session_timeout,
            reconnect_max_delay=config.reconnect.max_delay,
            session_name=f"shopfloor-gateway {self.context.gateway_name}/{config.name}",
        )

    # -- the Source interface ------------------------------------------------------------------

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self, emit: Emit) -> None:
        backoff = Backoff(initial=1.0, cap=self.config.reconnect.max_delay)
        try:
            # The flusher (samples → batches) lives exactly as long as this run.
            async with asyncio.TaskGroup() as tasks:
                flusher = tasks.create_task(self._flush_loop(emit), name=f"opcua-flush:{self.name}")
                try:
                    while not self._stop.is_set():
                        try:
                            await self._session(backoff)
                        except SourceError as exc:
                            await self._close()
                            delay = backoff.next_delay()
                            self._failed(exc, delay)
                            with contextlib.suppress(TimeoutError):
                                await asyncio.wait_for(self._stop.wait(), delay)
                finally:
                    if self._conn is not None:
                        with contextlib.suppress(Exception):
                            await self._conn.unsubscribe_all()
                    self._flush_now.set()
                    flusher_done = await asyncio.wait({flusher}, timeout=self.config.reconnect.request_timeout)
                    if not flusher_done[0]:
                        flusher.cancel()
        finally:
            await self._emit_pending(emit)

    async def aclose(self) -> None:
        await self._close()

    async def _close(self) -> None:
        conn, self._conn = self._conn, None
        self.status.detail["monitored_items"] = 0
        if conn is not None:
            await conn.close()

    # -- one session ---------------------------------------------------------------------------

    async def _session(self, backoff: Backoff) -> None:
        await self._close()  # never more than one session: the old one is closed first
        self.status.set_state(State.CONNECTING if not self._connected_once else State.RECONNECTING)
        settings = self._settings()
        conn = Connection(settings, on_state=self._on_state, log=self.log)
        if not await self._until_stopped(conn.connect()):
            return
        self._conn = conn
        self._restored.clear()
        self._resumed.clear()
        self._resubscribe.clear()
        try:
            count = await self._prepare(conn)
            if self._connected_once:
                self.status.count("reconnects")
            self._connected_once = True
            backoff.reset()
            self._running(f"connected to {settings.endpoint} ({self._security_text()}): {count}")
            await self._serve(conn)
        except Exception as exc:
            if is_connection_problem(exc):
                raise explain(exc, settings) from exc
            raise

    async def _until_stopped(self, work: Awaitable[None]) -> bool:
        """Run ``work`` unless a stop is requested first (then cancel it): True if it finished."""
        task = asyncio.ensure_future(work)
        stop = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            return False
        task.result()
        return True

    def _security_text(self) -> str:
        security = self.config.security
        who = f"user {self.config.auth.username}" if self.config.auth and self.config.auth.username else "anonymous"
        if self.config.auth and self.config.auth.certificate:
            who = "X.509 user"
        policy = "no security" if not security.secured else f"{security.policy}/{security.mode}"
        return f"{policy}, {who}"

    def _running(self, message: str) -> None:
        self.status.set_state(State.RUNNING)
        self.status.detail.pop("retry_in_seconds", None)
        self._logged.clear()
        self.log.info(message)

    def _failed(self, exc: SourceError, delay: float) -> None:
        message = str(exc)
        self.status.record_error(message)
        self.status.set_state(State.UNAUTHORIZED if isinstance(exc, Unauthorized) else State.BACKOFF)
        self.status.detail["retry_in_seconds"] = round(delay, 1)
        self.status.count("connect_failures")
        if message not in self._logged:
            self._logged.add(message)
            self.log.error(
                "%s; retrying (next attempt in %.0fs, then with backoff up to %.0fs)",
                message,
                delay,
                self.config.reconnect.max_delay,
            )
        else:
            self.log.debug("still failing: %s", message)

    def _on_state(self, state: str, reason: str | None) -> None:
        if state == "reconnecting":
            message = reason or "connection lost"
            self.status.record_error(message)
            self.status.set_state(State.RECONNECTING)
            self.log.warning("%s; reconnecting (the session is resumed if the server still has it)", message)
        elif state == "resumed":
            self._resumed.set()
        else:
            self._restored.set()

    async def _serve(self, conn: Connection) -> None:
        config = self.config
        interval = config.poll_interval if config.mode == "poll" else 1.0
        stale_after = (
            config.subscription.publishing_interval * config.subscription.keepalive_count * 3
            + config.reconnect.request_timeout
        )
        next_poll = time.monotonic()
        while not self._stop.is_set():
            if self._restored.is_set():
                self._restored.clear()
                await conn.unsubscribe_all()
                conn.namespaces = await conn.read_namespaces()
                count = await self._prepare(conn)
                self.status.count("reconnects")
                self._running(f"reconnected to {config.endpoint}: {count}")
            elif self._resumed.is_set():
                self._resumed.clear()
                # The server kept the session, so its subscription and namespaces are those we
                # know: keep them, and fetch what it sent while the connection was down.
                try:
                    again = await conn.recover()
                except Exception as exc:
                    if not (is_connection_problem(exc) or isinstance(exc, SubscriptionGone)):
                        raise
                    self.log.warning("the resumed session's subscription cannot be recovered (%s): re-creating it", exc)
                    self._restored.set()
                    continue
                self.status.count("reconnects")
                self._running(
                    f"reconnected to {config.endpoint}: the session resumed with its subscription "
                    f"(data messages sent again by the server: {again})"
                )
            elif self._resubscribe.is_set() and conn.connected:
                self._resubscribe.clear()
                await conn.unsubscribe_all()
                count = await self._prepare(conn)
                self.log.info("subscription re-created: %s", count)
            if config.mode == "poll" and time.monotonic() >= next_poll:
                next_poll = max(next_poll + interval, time.monotonic())
                if conn.connected:
                    await self._read_once(conn)
            elif config.mode == "subscribe" and conn.connected and conn.seconds_since_publish() > stale_after:
                self.log.warning(
                    "no publish response for %.0fs while connected: re-creating the subscription",
                    conn.seconds_since_publish(),
                )
                self._resubscribe.set()
                continue
            wait = max(0.01, next_poll - time.monotonic()) if config.mode == "poll" else 1.0
            waiters = [
                asyncio.ensure_future(e.wait()) for e in (self._stop, self._restored, self._resumed, self._resubscribe)
            ]
            try:
                await asyncio.wait(waiters, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()

    async def _read_once(self, conn: Connection) -> None:
        nodes = [node for node, _ in self._poll]
        handles = [handle for _, handle in self._poll]
        try:
            samples = await conn.read_samples(nodes, handles)
        except Exception as exc:  # noqa: BLE001 - a failed read is retried at the next interval
            if conn.connected:
                self.status.count("read_errors")
                self.status.record_error(f"read failed: {exc}")
                self.log.warning("read of %d nodes failed: %s", len(nodes), exc)
            return
        await self._on_samples(samples)

    # -- resolving what to collect ------------------------------------------------------------

    async def _prepare(self, conn: Connection) -> str:
        """Resolve every configured node on this server (now), then subscribe or set up the reads."""
        self.status.detail["failed_items"] = 0  # counted afresh on every (re)connect
        targets = await self._targets(conn)
        infos: list[VariableInfo | str] = []
        chunk = 5000
        for start in range(0, len(targets), chunk):
            infos.extend(await conn.variable_info([t.node for t in targets[start : start + chunk]]))
        items: list[tuple[_Target, VariableInfo]] = []
        problems: list[str] = []
        for target, info in zip(targets, infos, strict=True):
            if isinstance(info, str):
                problems.append(f"{target.text}: {info}")
            else:
                items.append((target, info))
        if problems:
            self.status.detail["failed_items"] += len(problems)
            shown = "; ".join(problems[:10]) + (f"; and {len(problems) - 10} more" if len(problems) > 10 else "")
            self.log.warning("%d configured node(s) skipped: %s", len(problems), shown)
        fields = self._fields(items)
        enum_types = [info.data_type for target, info in items if self._opt(target.spec, "enum_names")]
        enums = await conn.enum_names(enum_types) if enum_types else {}
        requests: list[MonitorRequest] = []
        made: dict[int, Item] = {}
        self._poll = []
        sub = self.config.subscription
        for handle, ((target, info), name) in enumerate(zip(items, fields, strict=True), start=1):
            deadband = self._opt(target.spec, "deadband") if info.is_numeric else None
            old = self._item_state.get(target.text)
            item = Item(
                handle=handle,
                node=target.text,
                field=name,
                scale=self._opt(target.spec, "scale"),
                offset=self._opt(target.spec, "offset"),
                deadband=deadband.absolute if isinstance(deadband, Deadband) else None,
                enum_names=enums.get(info.data_type) if self._opt(target.spec, "enum_names") else None,
                arrays=self._opt(target.spec, "arrays"),
            )
            if old is not None and old.field == name:
                item.last_value, item.last_time, item.warned = old.last_value, old.last_time, old.warned
            made[handle] = item
            if self.config.mode == "poll":
                self._poll.append((target.node, handle))
                continue
            sampling = target.spec.sampling_interval
            if sampling is None:
                sampling = sub.sampling_interval if sub.sampling_interval is not None else sub.publishing_interval
            filt: tuple[Any, float] | None = None
            if isinstance(deadband, Deadband):
                filt = _server_filter(deadband, item.scale)
            requests.append(
                MonitorRequest(handle, target.node, sampling, target.spec.queue_size or sub.queue_size, filt)
            )
        self._maker.items = made
        self._item_state = {item.node: item for item in made.values()}
        if self.config.units:
            learnt = [(target, info, name) for (target, info), name in zip(items, fields, strict=True)]
            await self._learn_units(conn, learnt)
        if not self._writer.empty:
            try:
                await self._writer.prepare(conn)
            except Exception as exc:  # noqa: BLE001 - writing is resolved again at the first write; collecting goes on
                self.log.info("the writable nodes' types could not be read now (%s): read at the first write", exc)
        self.status.detail["namespaces"] = len(conn.namespaces)
        self.status.detail["limits"] = {
            "max_nodes_per_read": conn.limits.max_nodes_per_read,
            "max_monitored_items_per_call": conn.limits.max_monitored_items_per_call,
        }
        if self.config.mode == "poll":
            self.status.detail["monitored_items"] = len(self._poll)
            return f"reading {len(self._poll)} variables every {self.config.poll_interval:g}s"
        started = time.monotonic()
        keepalive = sub.keepalive_count
        lifetime = min(
            65_535, max(3 * keepalive, math.ceil(self.config.reconnect.session_timeout / sub.publishing_interval))
        )
        result = await conn.subscribe(
            requests,
            publishing_interval=sub.publishing_interval,
            keepalive_count=keepalive,
            lifetime_count=lifetime,
            max_notifications=sub.max_notifications_per_publish,
            on_samples=self._on_samples,
            on_status=self._on_subscription_status,
        )
        self.status.detail["monitored_items"] = result.created
        self.status.detail["subscribe_seconds"] = round(time.monotonic() - started, 3)
        if result.failed:
            self.status.detail["failed_items"] += len(result.failed)
            names = [f"{made[h].node} ({status})" for h, status in result.failed[:10]]
            self.log.warning("%d node(s) could not be monitored: %s", len(result.failed), "; ".join(names))
        if result.filter_dropped:
            self.log.warning(
                "the server refused the deadband filter for %d node(s) (e.g. %s); the absolute deadband is applied "
                "by the gateway instead",
                len(result.filter_dropped),
                made[result.filter_dropped[0]].node,
            )
        return f"{result.created} monitored items in {time.monotonic() - started:.1f}s"

    async def _learn_units(self, conn: Connection, items: list[tuple[_Target, VariableInfo, str]]) -> None:
        """Tell the gateway the EngineeringUnits of the numeric variables (shown on the web page)."""
        numeric = [(target, name) for target, info, name in items if info.is_numeric]
        if not numeric:
            return
        try:
            units = await conn.engineering_units([target.node for target, _ in numeric])
        except Exception as exc:  # noqa: BLE001 - units are a nicety: collecting goes on without them
            self.log.info("could not read the variables' EngineeringUnits (%s): no units from this server", exc)
            return
        for (_, name), unit in zip(numeric, units, strict=True):
            if unit:
                self.context.units[(self.config.measurement, name)] = unit
        self.status.detail["units_found"] = sum(1 for unit in units if unit)

    def _opt(self, spec: NodeSpec | BrowseSpec, name: str) -> Any:
        value = getattr(spec, name)
        return value if value is not None else getattr(self.config, name)

    async def _targets(self, conn: Connection) -> list[_Target]:
        targets: list[_Target] = []
        for spec in self.config.nodes:
            try:
                if isinstance(spec, NodeSpec):
                    node = (
                        conn.node_id(parse_node_id(spec.node))
                        if is_node_id(spec.node)
                        else await conn.translate(parse_browse_path(spec.node))
                    )
                    parts = () if is_node_id(spec.node) else parse_browse_path(spec.node)[-1:]
                    targets.append(_Target(node, conn.text(node), spec.field, spec, parts))
                else:
                    targets.extend(await self._browse_targets(conn, spec))
            except SourceError as exc:
                self.status.detail["failed_items"] += 1
                self.log.error("%s is skipped: %s", spec.node if isinstance(spec, NodeSpec) else spec.browse, exc)
        seen: set[str] = set()
        unique = []
        for target in targets:
            if target.text not in seen:
                seen.add(target.text)
                unique.append(target)
        return unique

    async def _browse_targets(self, conn: Connection, spec: BrowseSpec) -> list[_Target]:
        root = (
            conn.node_id(parse_node_id(spec.browse))
            if is_node_id(spec.browse)
            else await conn.translate(parse_browse_path(spec.browse))
        )
        found: list[_Target] = []
        visited = {conn.text(root)}
        level: list[tuple[Any, tuple[str, ...]]] = [(root, ())]
        depth = 0
        while level and depth < (spec.max_depth if spec.recursive else 1):
            depth += 1
            children = await conn.browse([node for node, _ in level])
            next_level: list[tuple[Any, tuple[str, ...]]] = []
            for (_, parts), refs in zip(level, children, strict=True):
                for ref in refs:
                    if ref.is_property or ref.text in visited:
                        continue
                    visited.add(ref.text)
                    path = (*parts, ref.browse_name)
                    if ref.node_class == "Variable":
                        found.append(_Target(ref.node, ref.text, None, spec, path))
                    if ref.node_class in ("Object", "Variable"):
                        next_level.append((ref.node, path))
            level = next_level
        if not found:
            self.log.warning("browsing %s found no variables", spec.browse)
        return found

    def _fields(self, items: Sequence[tuple[_Target, VariableInfo]]) -> list[str]:
        """Field names: given ones, else derived from browse names (stable, unique)."""
        explicit = {t.field for t, _ in items if t.field is not None}
        groups: dict[str, list[tuple[str, tuple[str, ...]]]] = {}
        for target, info in items:
            if target.field is None:
                prefix = target.spec.field_prefix if isinstance(target.spec, BrowseSpec) else ""
                parts = target.parts or (info.browse_name,)
                groups.setdefault(prefix, []).append((target.text, parts))
        derived: dict[str, str] = {}
        for prefix, entries in groups.items():
            derived.update(unique_field_names(entries, prefix, taken=explicit | set(derived.values())))
        return [t.field if t.field is not None else derived[t.text] for t, _ in items]

    # -- samples to points to the pipeline ----------------------------------------------------

    def _on_subscription_status(self, status: str) -> None:
        self.log.warning("the server reports the subscription as %s: re-creating it", status)
        self._resubscribe.set()

    async def _on_samples(self, samples: list[Sample]) -> None:
        points = self._maker.convert(samples)
        if not points:
            return
        self._pending.extend(points)
        if len(self._pending) >= 10_000:
            self._flush_now.set()
        excess = len(self._pending) - MAX_PENDING
        if excess > 0:
            del self._pending[:excess]
            self.status.count("dropped", excess)
            if not self._dropping:
                self.log.warning(
                    "the sinks are not taking points (see their state: disk_full, backoff …): the newest %d samples "
                    "are held in memory and older ones dropped, counted in 'dropped'",
                    MAX_PENDING,
                )
            self._dropping += excess

    async def _flush_loop(self, emit: Emit) -> None:
        interval = self.config.batch_interval
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._flush_now.wait(), interval)
            self._flush_now.clear()
            await self._emit_pending(emit)

    async def _emit_pending(self, emit: Emit) -> None:
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        counters = self.status.counters

        def stored() -> None:
            counters["stored"] = counters.get("stored", 0) + len(batch)

        counters["emitted"] = counters.get("emitted", 0) + len(batch)
        await emit(batch, stored)
        if self._dropping:
            self.log.info("the sinks take points again: %d samples were dropped while they did not", self._dropping)
            self._dropping = 0
