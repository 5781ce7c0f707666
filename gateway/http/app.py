"""The FastAPI application: the web page, the JSON API, Server-Sent Events, health and /metrics.

Built by :func:`create_app` from an :class:`AppContext` — what the app may read of the running
gateway (statuses, latest values, the historian, the config). Tests build one from fakes.

Endpoints (all but /healthz and /readyz need a viewer credential when credentials are set):

=====================================  =========================================================
``GET /healthz``                       the process answers
``GET /readyz``                        200 when every connector and sink is running, else 503
``GET /metrics``                       Prometheus text
``GET /api/status``                    the gateway (config generation, last reload) and every connector
                                       and sink: state, errors, rates
``POST /api/reload``                   reload the config files now (admin); the attempt's outcome
``GET /api/components/{name}``         one component's details and config (admin)
``GET /api/overview``                  machine cards with state badges
``GET /api/series``                    series with their last value
``GET /api/series/{id}/range``         downsampled range (``from``, ``to``, ``points``)
``GET /api/machines``                  every machine: its state now, since when, today's and the shift's OEE
``GET /api/machines/{name}/kpi``       KPIs over a range (``from``, ``to``; ``by=shift|hour|day`` rows)
``GET /api/machines/{name}/states``    state intervals over a range (``from``, ``to``), and the shifts
``GET /api/events``                    live updates (Server-Sent Events: overview, status, values, kpi)
``GET /api/writable``                  fields declared writable; ``POST /api/write`` (operator); ``GET
                                       /api/audit``: the audit trail of writes (gateway/http/writes.py)
``GET /api/openapi.json``              this API's OpenAPI spec
``GET /``                              the web page
=====================================  =========================================================
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol

import orjson
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from starlette.middleware.gzip import GZipMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway import __version__
from gateway.component import State, Status
from gateway.errors import GatewayError
from gateway.history import HistoryReader, SeriesRow
from gateway.http.auth import Role, authenticate
from gateway.http.config import HttpSettings
from gateway.http.display import DisplayCatalogue
from gateway.http.metrics import CONTENT_TYPE, GatewayCollector, render_metrics
from gateway.http.models import (
    ComponentDetailOut,
    ComponentOut,
    ConfigOut,
    GatewayOut,
    Health,
    KpiReportOut,
    MachineOut,
    NotReady,
    OverviewOut,
    RangeOut,
    Readiness,
    ReloadOut,
    SeriesOut,
    StatesOut,
    StatusOut,
    WhoAmI,
)
from gateway.http.overview import build_cards
from gateway.http.rates import RateTracker
from gateway.http.security import LoginLimit, SecurityHeaders
from gateway.http.writes import write_routes
from gateway.latest import LatestValues
from gateway.secrets import masked_dump
from gateway.units import parse_duration
from gateway.writing import WriteDesk

__all__ = ["AppContext", "create_app", "parse_time"]

STATIC = Path(__file__).parent / "static"
PUBLIC_PATHS = frozenset({"/healthz", "/readyz"})
#: Largest number of buckets one range request may ask for.
MAX_POINTS = 10_000
#: Longest range of one KPI request (a year and a day: last year's same week included).
MAX_KPI_DAYS = 400
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: Times a range request may name (years 1823 to 2116): the historian's limit, so bucket
#: arithmetic and the JSON answer (64-bit integers) cannot overflow.
TIME_LIMIT_NS = 2**62
_TIME_LIMITS = " and ".join(
    (_EPOCH + timedelta(microseconds=sign * TIME_LIMIT_NS // 1000)).strftime("%Y-%m-%d") for sign in (-1, 1)
)


def _no_history() -> HistoryReader | None:
    return None


class MachineKpis(Protocol):
    """What the API asks of the KPI engine (:class:`gateway.kpi.engine.KpiEngine`).

    Unknown machine: a LookupError; a wrong request (by=shift without shifts): a ValueError; the
    history cannot be read now: another GatewayError.
    """

    def day_start(self, name: str, now_ns: int) -> int:
        """The machine's local midnight at or before ``now_ns``."""
        ...

    async def overview(self) -> list[dict[str, Any]]: ...

    async def kpi(self, name: str, start: int, end: int, by: Literal["shift", "hour", "day"] | None = None) -> Any: ...

    async def states(self, name: str, start: int, end: int) -> Any: ...


def _no_kpi() -> MachineKpis | None:
    return None


def _no_writes() -> WriteDesk | None:
    return None


@dataclass
class AppContext:
    """What the HTTP app may read of the running gateway."""

    name: str
    settings: HttpSettings
    statuses: Callable[[], Sequence[Status]]
    latest: LatestValues = field(default_factory=LatestValues)
    #: units the connectors found (OPC UA EngineeringUnits), shown where the config sets none
    units: Mapping[tuple[str, str], str] = field(default_factory=dict)
    #: the history reader a sink offers now (it changes when a reload replaces the sink)
    history: Callable[[], HistoryReader | None] = _no_history
    #: the KPI engine in force (None without ``machines:``; a reload of the machines replaces it)
    kpi: Callable[[], MachineKpis | None] = _no_kpi
    started_at: float = field(default_factory=time.time)
    #: ``kind:name`` → the component's config in force
    configs: Callable[[], Mapping[str, BaseModel]] = dict
    #: the config generation and the last reload (``/api/status``, ``/metrics``)
    config_state: Callable[[], Mapping[str, Any]] | None = None
    #: reload the config files (``POST /api/reload``); None when the gateway cannot reload
    reload: Callable[[], Awaitable[Any]] | None = None
    #: the write desk (``/api/writable``, ``POST /api/write``, ``/api/audit``); None: nothing is writable
    writes: Callable[[], WriteDesk | None] = _no_writes
    rates: RateTracker = field(default_factory=RateTracker)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    #: seconds between two ``status`` events on an SSE stream, and the shortest gap between overview events
    status_interval: float = 2.0
    overview_interval: float = 1.0
    #: seconds between two ``kpi`` events (the machines' KPIs move with the clock, not only with data)
    kpi_interval: float = 2.0


def parse_time(text: str | None, now_ns: int, default_ns: int) -> int:
    """``now``, ``-15m`` / ``now-15m``, Unix milliseconds, or ISO 8601 → Unix ns."""
    if text is None or text == "":
        return default_ns
    value = text.strip()
    if value == "now":
        return now_ns
    relative = value.removeprefix("now")
    if relative.startswith("-"):
        return now_ns - int(parse_duration(relative[1:]) * 1e9)
    if re.fullmatch(r"\d{1,15}(\.\d{1,6})?", value):
        whole, _, fraction = value.partition(".")  # exact: a float would lose nanoseconds
        return int(whole) * 1_000_000 + int(fraction.ljust(6, "0"))
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace(" ", "+"))
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time: give Unix milliseconds, ISO 8601 (2026-03-01T08:00:00Z), now, or -15m / -7d"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return (parsed - _EPOCH) // timedelta(microseconds=1) * 1000  # exact: timestamp() is a float


class _AuthMiddleware:
    """Puts the caller's role in ``scope['state']['role']``; refuses unknown callers with 401."""

    def __init__(self, app: ASGIApp, settings: HttpSettings) -> None:
        self.app = app
        self.auth = settings.auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = None
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                header = value.decode("latin-1")
                break
        role = authenticate(self.auth, header)
        scope.setdefault("state", {})["role"] = role
        if role is Role.NONE and scope["path"] not in PUBLIC_PATHS:
            wrong = header is not None
            response = JSONResponse(
                {"detail": "wrong credentials" if wrong else "credentials required"},
                status_code=401,
                headers={"WWW-Authenticate": 'Basic realm="gateway", charset="UTF-8"'},
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _role(request: Request) -> Role:
    role: Role = request.state.role
    return role


def _buffer_depth(status: Status) -> int | None:
    """Points waiting for the store: on disk and queued (durable buffer), or in memory (SinkRunner)."""
    detail = status.detail
    if isinstance(detail.get("depth_points"), int):
        return int(detail["depth_points"]) + int(detail.get("queued_points") or 0)
    value = detail.get("pending_points")
    return value if isinstance(value, int) else None


def _oldest_age(status: Status) -> float | None:
    value = status.detail.get("oldest_age_seconds")
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _component(status: Status, rates: RateTracker) -> dict[str, Any]:
    return {
        "name": status.name,
        "kind": status.kind,
        "type": status.type,
        "state": status.state.value,
        "since": status.since,
        "last_error": status.last_error,
        "last_error_at": status.last_error_at,
        "counters": dict(status.counters),
        "rates": rates.rates(status),
        "buffer_depth": _buffer_depth(status),
        "oldest_age_seconds": _oldest_age(status),
        "devices": status.detail.get("devices") if status.kind == "connector" else None,
    }


def _series_out(
    row: SeriesRow, catalogue: DisplayCatalogue, units: Mapping[tuple[str, str], str] | None = None
) -> SeriesOut:
    return SeriesOut(
        **catalogue.display(row.measurement, row.field, units).as_dict(),
        id=row.id,
        measurement=row.measurement,
        tags=dict(row.tags),
        field=row.field,
        kind=row.kind,
        last_value=row.last_value,
        last_time=row.last_time // 1_000_000 if row.last_time is not None else None,
    )


def _tag_filter(tag: list[str] | None) -> dict[str, str]:
    tags: dict[str, str] = {}
    for item in tag or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise HTTPException(422, f"tag {item!r}: write key=value, e.g. tag=line=A")
        tags[key] = value
    return tags


def _sse(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'), default=str)}\n\n".encode()


def create_app(ctx: AppContext) -> FastAPI:
    app = FastAPI(
        title=f"Gateway {ctx.name}",
        version=__version__,
        description="Status, series and live values of a shop-floor data gateway.",
        docs_url=None,
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    collector = GatewayCollector(
        ctx.name, ctx.statuses, ctx.started_at, lambda: dict(ctx.latest.emitted), config_state=ctx.config_state
    )

    def components() -> list[dict[str, Any]]:
        return [_component(status, ctx.rates) for status in ctx.statuses()]

    def overview() -> dict[str, Any]:
        now = time.time()
        cards = build_cards(ctx.latest.all(), ctx.settings.overview, now, ctx.units)
        return {
            "server_time": now,
            "history": ctx.history() is not None,
            "offline_after": ctx.settings.overview.offline_after,
            "group_by": list(ctx.settings.overview.group_by),
            "cards": [card.as_dict(now) for card in cards],
        }

    @app.get("/healthz", response_model=Health, tags=["health"])
    async def healthz() -> Health:
        """The gateway process is alive and its event loop answers."""
        return Health()

    @app.get("/readyz", response_model=Readiness, tags=["health"], responses={503: {"model": Readiness}})
    async def readyz() -> Response:
        """Every connector and sink is running (503 with the ones that are not)."""
        not_ready = [
            NotReady(kind=s.kind, name=s.name, state=s.state.value, last_error=s.last_error)
            for s in ctx.statuses()
            if s.state is not State.RUNNING
        ]
        body = Readiness(ready=not not_ready and not ctx.stopping.is_set(), not_ready=not_ready)
        return JSONResponse(body.model_dump(), status_code=200 if body.ready else 503)

    @app.get("/metrics", tags=["health"], response_class=Response)
    async def metrics() -> Response:
        """Counters, states, buffer depths and write latencies in the Prometheus text format."""
        return Response(render_metrics(collector), media_type=CONTENT_TYPE)

    @app.get("/api/whoami", response_model=WhoAmI, tags=["api"])
    async def whoami(request: Request) -> WhoAmI:
        """The caller's role (the page hides admin-only parts for viewers)."""
        role = _role(request)
        return WhoAmI(
            role="admin" if role is Role.ADMIN else "operator" if role is Role.OPERATOR else "viewer",
            auth=ctx.settings.auth.configured,
            plain_http=ctx.settings.plain_credentials,
        )

    def config_state(role: Role) -> ConfigOut | None:
        if ctx.config_state is None:
            return None
        state = dict(ctx.config_state())
        if role is not Role.ADMIN:  # a value in the wrong place may be a secret: the count only
            last = state.get("last_reload")
            if last is not None:
                state["last_reload"] = {**last, "errors": []}
            state["recent_reloads"] = [{**attempt, "errors": []} for attempt in state.get("recent_reloads", [])]
        return ConfigOut(**state)

    @app.get("/api/status", response_model=StatusOut, tags=["api"])
    async def status(request: Request) -> StatusOut:
        """The gateway (configuration generation, last reload) and each connector and sink: state,
        last error and when, counters and rates. A refused reload's problems are listed for the
        admin; a viewer sees how many there were."""
        return StatusOut(
            gateway=GatewayOut(
                name=ctx.name,
                version=__version__,
                started_at=ctx.started_at,
                uptime_seconds=round(time.time() - ctx.started_at, 3),
                config=config_state(_role(request)),
            ),
            components=[ComponentOut(**c) for c in components()],
        )

    @app.get("/api/components/{name}", response_model=list[ComponentDetailOut], tags=["api"])
    async def component(name: str, request: Request) -> list[ComponentDetailOut]:
        """Everything one connector or sink reports, and its configuration with secrets masked (admin only)."""
        if _role(request) is not Role.ADMIN:
            raise HTTPException(403, "connector and sink details are for the admin only")
        found = [s for s in ctx.statuses() if s.name == name]
        if not found:
            raise HTTPException(404, f"no connector or sink is named {name!r}")
        result = []
        for s in found:
            config = ctx.configs().get(f"{s.kind}:{s.name}")
            result.append(
                ComponentDetailOut(
                    **_component(s, ctx.rates),
                    detail=json.loads(json.dumps(s.detail, default=str)),
                    config=masked_dump(config) if config is not None else None,
                )
            )
        return result

    @app.post(
        "/api/reload",
        response_model=ReloadOut,
        tags=["api"],
        responses={422: {"model": ReloadOut, "description": "The config is invalid: nothing changed."}},
    )
    async def reload(request: Request) -> Response:
        """Load the config files again and apply what changed (admin only).

        An invalid config changes nothing and is answered 422 with every problem; the gateway
        goes on with the configuration it runs."""
        if _role(request) is not Role.ADMIN:
            raise HTTPException(403, "reloading the configuration is for the admin only")
        if ctx.reload is None:
            raise HTTPException(409, "this gateway was not started from config files, so it cannot reload them")
        try:
            attempt = await ctx.reload()
        except GatewayError as exc:
            raise HTTPException(409, str(exc)) from None
        body = attempt.as_dict()
        return JSONResponse(body, status_code=422 if body["result"] == "failed" else 200)

    @app.get("/api/overview", response_model=OverviewOut, tags=["api"])
    async def get_overview() -> OverviewOut:
        """One card per machine (series grouped by tags) with live values and a state badge."""
        return OverviewOut(**overview())

    @app.get("/api/series", response_model=list[SeriesOut], tags=["api"])
    async def series(
        measurement: Annotated[str | None, Query(description="Only this measurement.")] = None,
        tag: Annotated[list[str] | None, Query(description="Only series with this tag, as key=value.")] = None,
        field: Annotated[str | None, Query(description="Only this field.")] = None,
    ) -> list[SeriesOut]:
        """Every known series with its last value: from the historian, plus live series not stored there."""
        tags = _tag_filter(tag)
        catalogue = ctx.settings.overview.catalogue

        def wanted(m: str, t: Mapping[str, str], f: str) -> bool:
            return (
                (measurement is None or m == measurement)
                and (field is None or f == field)
                and all(t.get(k) == v for k, v in tags.items())
            )

        out: dict[tuple[str, frozenset[tuple[str, str]], str], SeriesOut] = {}
        history = ctx.history()
        if history is not None:
            for row in await history.series():
                if wanted(row.measurement, row.tags, row.field):
                    out[(row.measurement, frozenset(row.tags.items()), row.field)] = _series_out(
                        row, catalogue, ctx.units
                    )
        for entry in ctx.latest.all():
            for name, latest in entry.fields.items():
                value, time_ns = latest.value, latest.time
                if value is None or not wanted(entry.measurement, entry.tags, name):
                    continue
                key = (entry.measurement, frozenset(entry.tags.items()), name)
                known = out.get(key)
                last_ms = time_ns // 1_000_000
                if known is None:
                    out[key] = SeriesOut(
                        **catalogue.display(entry.measurement, name, ctx.units).as_dict(),
                        id=None,
                        measurement=entry.measurement,
                        tags=dict(entry.tags),
                        field=name,
                        last_value=value,
                        last_time=last_ms,
                    )
                elif known.last_time is None or known.last_time <= last_ms:
                    known.last_value, known.last_time = value, last_ms
        return sorted(out.values(), key=lambda s: (s.measurement, sorted(s.tags.items()), s.field))

    @app.get("/api/series/{series_id}/range", response_model=RangeOut, tags=["api"])
    async def series_range(
        series_id: str,
        from_: Annotated[
            str | None, Query(alias="from", description="Start: Unix ms, ISO 8601, now, or -15m (default -1h).")
        ] = None,
        to: Annotated[str | None, Query(description="End: Unix ms, ISO 8601, now, or -5m (default now).")] = None,
        points: Annotated[int, Query(ge=1, le=MAX_POINTS, description="Most buckets to return.")] = 1000,
    ) -> Response:
        """A series between two times, reduced to at most ``points`` buckets (min, max, mean, count each)."""
        history = ctx.history()
        if history is None:
            raise HTTPException(404, "no historian sink is configured, so there is no history to chart")
        now_ns = time.time_ns()
        try:
            start = parse_time(from_, now_ns, now_ns - 3600 * 10**9)
            end = parse_time(to, now_ns, now_ns)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        for name, text, value in (("from", from_, start), ("to", to, end)):
            if not -TIME_LIMIT_NS <= value <= TIME_LIMIT_NS:
                raise HTTPException(422, f"'{name}' ({text}) is out of range: give a time between {_TIME_LIMITS}")
        if end <= start:
            raise HTTPException(422, "'to' must be after 'from'")
        rows = {row.id: row for row in await history.series()}
        row = rows.get(series_id)
        if row is None:
            raise HTTPException(404, f"no series with id {series_id!r} in the historian")
        try:
            buckets = await history.range(series_id, start, end, points)
        except GatewayError as exc:
            raise HTTPException(503, f"the historian cannot be read now: {exc}") from None
        # Built as plain data and encoded with orjson: a week at 1,000 buckets is ~90 KiB of JSON,
        # and validating it into models first would cost more than the query (RangeOut is the spec).
        body = {
            "series": _series_out(row, ctx.settings.overview.catalogue, ctx.units).model_dump(),
            "from": start // 1_000_000,
            "to": end // 1_000_000,
            "points": points,
            "buckets": [
                {
                    "time": b.time // 1_000_000,
                    "min": b.min,
                    "max": b.max,
                    "mean": b.mean,
                    "count": b.count,
                    "last": b.last,
                }
                for b in buckets
            ],
        }
        return Response(orjson.dumps(body), media_type="application/json")

    def kpi_engine() -> MachineKpis:
        engine = ctx.kpi()
        if engine is None:
            raise HTTPException(404, "no machines are configured (machines: in the config file, see docs/KPI.md)")
        return engine

    async def kpi_range(engine: MachineKpis, name: str, from_: str | None, to: str | None) -> tuple[int, int]:
        """``from``/``to`` as the series API takes them; default: today (the machine's local midnight) until now."""
        now_ns = time.time_ns()
        try:
            midnight = engine.day_start(name, now_ns)
        except LookupError as exc:
            raise HTTPException(404, str(exc)) from None
        try:
            start = parse_time(from_, now_ns, midnight)
            end = parse_time(to, now_ns, now_ns)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        for label, text, value in (("from", from_, start), ("to", to, end)):
            if not -TIME_LIMIT_NS <= value <= TIME_LIMIT_NS:
                raise HTTPException(422, f"'{label}' ({text}) is out of range: give a time between {_TIME_LIMITS}")
        if end <= start:
            raise HTTPException(422, "'to' must be after 'from'")
        if end - start > MAX_KPI_DAYS * 86400 * 10**9:
            raise HTTPException(422, f"a range of at most {MAX_KPI_DAYS} days, please")
        return start, end

    def kpi_answer(body: Any) -> Response:
        return Response(orjson.dumps(body), media_type="application/json")

    @app.get("/api/machines", response_model=list[MachineOut], tags=["machines"])
    async def machines() -> Response:
        """Every machine now: its state, category and since when, today's KPIs and the current shift's."""
        engine = ctx.kpi()
        if engine is None:
            return kpi_answer([])
        try:
            return kpi_answer(await engine.overview())
        except GatewayError as exc:
            raise HTTPException(503, str(exc)) from None

    @app.get("/api/machines/{name}/kpi", response_model=KpiReportOut, tags=["machines"])
    async def machine_kpi(
        name: str,
        from_: Annotated[
            str | None,
            Query(alias="from", description="Start: Unix ms, ISO 8601, now, or -8h (default: local midnight)."),
        ] = None,
        to: Annotated[str | None, Query(description="End: Unix ms, ISO 8601, now, or -5m (default: now).")] = None,
        by: Annotated[
            Literal["shift", "hour", "day"] | None, Query(description="One row per shift, local hour or local day.")
        ] = None,
    ) -> Response:
        """A machine's KPIs over a range (availability, performance, quality, OEE, seconds per category, parts):
        ISO 22400-2 / Nakajima, as docs/KPI.md defines them. The part of a range after now is not counted."""
        engine = kpi_engine()
        start, end = await kpi_range(engine, name, from_, to)
        try:
            return kpi_answer(await engine.kpi(name, start, end, by))
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        except GatewayError as exc:
            raise HTTPException(503, str(exc)) from None

    @app.get("/api/machines/{name}/states", response_model=StatesOut, tags=["machines"])
    async def machine_states(
        name: str,
        from_: Annotated[
            str | None,
            Query(alias="from", description="Start: Unix ms, ISO 8601, now, or -8h (default: local midnight)."),
        ] = None,
        to: Annotated[str | None, Query(description="End: Unix ms, ISO 8601, now, or -5m (default: now).")] = None,
    ) -> Response:
        """A machine's state intervals over a range (value and category each; gaps as no_data), and its shifts."""
        engine = kpi_engine()
        start, end = await kpi_range(engine, name, from_, to)
        try:
            return kpi_answer(await engine.states(name, start, end))
        except GatewayError as exc:
            raise HTTPException(503, str(exc)) from None

    async def kpi_event() -> bytes | None:
        engine = ctx.kpi()
        if engine is None:
            return None
        try:
            return _sse("kpi", await engine.overview())
        except GatewayError:
            return None  # (the next event tries again; /api/machines says why)

    @app.get(
        "/api/events",
        tags=["api"],
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}}},
    )
    async def events(
        topics: Annotated[
            str, Query(description="Comma-separated: overview, status, values, kpi.")
        ] = "overview,status",
    ) -> StreamingResponse:
        """Live updates as Server-Sent Events: ``overview`` (cards, at most once a second when
        something changed), ``status`` (components, every 2 s), ``values`` (changed series),
        ``kpi`` (every machine as ``/api/machines`` gives it, every 2 s)."""
        wanted = {t.strip() for t in topics.split(",") if t.strip()}
        return StreamingResponse(_stream(wanted), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    async def _stream(wanted: set[str]) -> AsyncIterator[bytes]:
        latest = ctx.latest
        version = latest.version
        yield b"retry: 2000\n\n"
        if "overview" in wanted:
            yield _sse("overview", overview())
        if "status" in wanted:
            yield _sse("status", components())
        if "kpi" in wanted and (event := await kpi_event()) is not None:
            yield event
        next_status = time.monotonic() + ctx.status_interval
        next_kpi = time.monotonic() + ctx.kpi_interval
        heartbeat = time.monotonic() + 15.0
        while not ctx.stopping.is_set():
            due = min(next_status, heartbeat, next_kpi if "kpi" in wanted else heartbeat)
            await latest.wait_changed(version, max(0.05, due - time.monotonic()))
            if ctx.stopping.is_set():
                break
            if latest.version > version:
                previous, version = version, latest.version
                if "values" in wanted:
                    yield _sse("values", [entry.as_dict() for entry in latest.changed_since(previous)])
                if "overview" in wanted:
                    yield _sse("overview", overview())
                    heartbeat = time.monotonic() + 15.0
                await asyncio.sleep(ctx.overview_interval)  # at most one update per interval
            if "status" in wanted and time.monotonic() >= next_status:
                yield _sse("status", components())
                next_status = time.monotonic() + ctx.status_interval
                heartbeat = time.monotonic() + 15.0
            if "kpi" in wanted and time.monotonic() >= next_kpi:
                if (event := await kpi_event()) is not None:
                    yield event
                    heartbeat = time.monotonic() + 15.0
                next_kpi = time.monotonic() + ctx.kpi_interval
            if time.monotonic() >= heartbeat:
                yield b": keep-alive\n\n"
                heartbeat = time.monotonic() + 15.0

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app.include_router(
        write_routes(
            ctx.writes,
            ctx.settings.auth,
            lambda measurement, field: ctx.settings.overview.catalogue.display(measurement, field, ctx.units).unit,
            parse_time,
        )
    )

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(GZipMiddleware, minimum_size=1024)
    app.add_middleware(_AuthMiddleware, settings=ctx.settings)
    # Outside the authentication: failed logins are counted from its 401s, and every answer
    # (401 and 429 included) gets the security headers.
    app.add_middleware(LoginLimit, settings=ctx.settings)
    app.add_middleware(SecurityHeaders)
    return app
