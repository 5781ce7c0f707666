"""What the interconnection report says about one machine, gathered from the gateway's own records.

:func:`gather` reads, without writing anything (the gateway may be running beside it):

- the **configuration** (:class:`~gateway.config.LoadedConfig`): the machine's connector(s) —
  protocol, endpoint, security mode, identity, sampling, the fields declared writable — the
  sinks, the gateway's name, the files and their SHA-256;
- the **history** (a :class:`~gateway.history.HistoryReader` over the historian's file): every
  series of the machine with its first and last time in the range, its sample count and
  ~120 buckets for a small chart;
- the **link journal** (:mod:`gateway.linkjournal`): connected time and outages;
- the **audit trail** (:mod:`gateway.audit`): the writes to the machine in the range.

:mod:`gateway.report.render` turns the result into the printable page.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway import __version__
from gateway.audit import AuditQuery, AuditTrail
from gateway.config import LoadedConfig
from gateway.history import BucketRow, HistoryReader, SeriesRow
from gateway.kpi import machines_of
from gateway.linkjournal import LINK_FOLDER, read_link_journal
from gateway.report.availability import Availability, availability

__all__ = [
    "ConnectionInfo",
    "InterconnectionReport",
    "MachineNotFound",
    "Phrase",
    "SignalInfo",
    "SinkInfo",
    "gather",
    "resolve_machine",
]

#: Buckets of each signal's small chart.
SPARK_POINTS = 120
#: A signal's first and last sample are found by narrowing to a window this short, then read.
_EXACT_WINDOW_NS = 10 * 1_000_000_000
#: Measurements the gateway writes about itself: never one of the machine's signals.
_OWN_MEASUREMENTS = frozenset({"kpi", "audit", "link"})
_MINUTE_NS = 60 * 1_000_000_000


#: A phrase the renderer words in the report's language: a key of its texts and the values it names.
Phrase = tuple[str, dict[str, str]]


class MachineNotFound(ValueError):
    """The machine or its connector cannot be told from the config (the message says what to give)."""


@dataclass(frozen=True)
class Machine:
    """The machine the report is about: its name, the tags its points carry, its connectors."""

    name: str
    tags: Mapping[str, str]
    connectors: tuple[Any, ...]
    timezone: str | None = None


@dataclass
class ConnectionInfo:
    """One connector of the machine, as the config describes it (no secret)."""

    name: str
    type: str
    protocol: str
    endpoint: str
    security: Phrase
    identity: Phrase
    sampling: Phrase
    tags: dict[str, str]
    sinks: list[str]
    #: (field or node, its limits: allowed, min, max, pattern) of every field the config declares writable
    writable: list[tuple[str, dict[str, str]]]


@dataclass
class SignalInfo:
    """One series of the machine over the range."""

    measurement: str
    field: str
    tags: dict[str, str]
    kind: str | None
    label: str
    labels: dict[str, str]
    unit: str
    decimals: int | None
    count: int
    first_ns: int | None
    last_ns: int | None
    buckets: list[BucketRow]
    minimum: float | None = None
    maximum: float | None = None

    def display(self, lang: str) -> str:
        return self.labels.get(lang) or self.label or self.field


@dataclass
class SinkInfo:
    name: str
    type: str
    destination: str
    #: seconds kept (None: everything, or the store decides)
    retention: float | None
    #: the machine's connector(s) write to it
    fed: bool


@dataclass
class InterconnectionReport:
    """Everything the report shows."""

    machine: str
    tags: dict[str, str]
    start_ns: int
    end_ns: int
    #: the end asked for (``end_ns`` is earlier when the range reaches into the future)
    asked_end_ns: int
    generated_ns: int
    timezone: str
    gateway: str
    version: str
    config_files: list[str]
    config_sha256: str
    history_source: str | None
    link_folder: str
    audit_folder: str
    connections: list[ConnectionInfo]
    availability: list[Availability]
    signals: list[SignalInfo]
    writes: list[dict[str, Any]]
    sinks: list[SinkInfo]
    #: the journal's first record (None: none at all), to say from when the link is known
    journal_start_ns: int | None = None
    #: the historian deletes what is older than its retention: samples before this time are gone
    retention_cutoff_ns: int | None = None
    notes: list[str] = field(default_factory=list)


# --- the machine and its connectors ---------------------------------------------------------------


def _static_tags(connector: Any) -> dict[str, str]:
    tags = getattr(connector, "tags", None)
    return dict(tags) if isinstance(tags, Mapping) else {}


def resolve_machine(config: Any, name: str, connectors: Sequence[str] = ()) -> Machine:
    """The machine called ``name``: one of ``machines:`` (its tags), else a connector of that name
    (its static tags), else the points tagged ``machine=<name>``. Its connectors: those named, else
    those whose static tags include the machine's (or the connector of that name)."""
    by_name = {c.name: c for c in config.connectors}
    unknown = [c for c in connectors if c not in by_name]
    if unknown:
        raise MachineNotFound(
            f"--connector {', '.join(unknown)}: no such connector (connectors: {', '.join(sorted(by_name)) or 'none'})"
        )
    configured = {m.name: m for m in machines_of(config)}
    timezone = None
    if name in configured:
        tags = dict(configured[name].tags) or {"machine": name}
        timezone = configured[name].timezone
    elif name in by_name and _static_tags(by_name[name]):
        tags = _static_tags(by_name[name])
    else:
        tags = {"machine": name}
    if connectors:
        chosen = [by_name[c] for c in connectors]
    else:
        chosen = [
            c
            for c in config.connectors
            if c.name == name or (tags and all(_static_tags(c).get(k) == v for k, v in tags.items()))
        ]
    if not chosen:
        raise MachineNotFound(
            f"no connector of the config collects machine {name!r} (its points carry "
            f"{', '.join(f'{k}={v}' for k, v in tags.items())}); name it with --connector "
            f"(connectors: {', '.join(sorted(by_name)) or 'none'})"
        )
    return Machine(name, tags, tuple(chosen), timezone)


def _duration(seconds: Any) -> str:
    if not isinstance(seconds, int | float):
        return str(seconds)
    if seconds >= 1 and float(seconds).is_integer():
        return f"{int(seconds)} s"
    return f"{seconds * 1000:g} ms" if seconds < 1 else f"{seconds:g} s"


def _limits(limits: Mapping[str, Any]) -> dict[str, str]:
    found = {}
    if limits.get("allowed"):
        found["allowed"] = ", ".join(str(v) for v in limits["allowed"])
    for key in ("min", "max"):
        if limits.get(key) is not None:
            found[key] = f"{limits[key]:g}"
    if limits.get("pattern"):
        found["pattern"] = str(limits["pattern"])
    return found


def _writable(data: Any) -> list[tuple[str, dict[str, str]]]:
    """Every mapping of the connector's config with a ``write:`` block (an OPC UA node, a register…)."""
    found: list[tuple[str, dict[str, str]]] = []

    def walk(value: Any) -> None:
        if isinstance(value, Mapping):
            limits = value.get("write")
            if isinstance(limits, Mapping):
                where = value.get("field") or value.get("name") or value.get("node") or value.get("topic") or "?"
                found.append((str(where), _limits(limits)))
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(data)
    return found


def _connection(connector: Any, sinks: Sequence[str]) -> ConnectionInfo:
    """What the config says of the connection, as phrases the renderer words in each language."""
    data = connector.model_dump(mode="json")
    kind = connector.type
    endpoint = protocol = ""
    security: Phrase = ("unknown", {})
    identity: Phrase = ("unknown", {})
    sampling: Phrase = ("unknown", {})
    if kind == "opcua":
        protocol = "OPC UA (IEC 62541), opc.tcp"
        endpoint = data.get("endpoint", "")
        sec = data.get("security") or {}
        policy, mode = sec.get("policy", "None"), sec.get("mode", "None")
        security = ("sec.opcua_none", {}) if policy == "None" else ("sec.opcua", {"policy": policy, "mode": mode})
        auth = data.get("auth") or {}
        if auth.get("certificate"):
            identity = ("id.x509", {})
        elif auth.get("username"):
            identity = ("id.user", {"user": str(auth["username"])})
        else:
            identity = ("id.anonymous", {})
        sub = data.get("subscription") or {}
        if data.get("mode") == "poll":
            sampling = ("samp.poll", {"interval": _duration(data.get("poll_interval"))})
        elif sub.get("sampling_interval") is not None:
            sampling = (
                "samp.subscription_sampling",
                {
                    "publishing": _duration(sub.get("publishing_interval")),
                    "sampling": _duration(sub["sampling_interval"]),
                },
            )
        else:
            sampling = ("samp.subscription", {"publishing": _duration(sub.get("publishing_interval"))})
    elif kind in ("mqtt", "sparkplug"):
        broker = str(data.get("broker", ""))
        protocol = f"MQTT {data.get('protocol', '5')}" if kind == "mqtt" else "Sparkplug B (MQTT)"
        endpoint = broker + (f" (group {data['group']})" if kind == "sparkplug" and data.get("group") else "")
        tls = broker.startswith(("mqtts://", "ssl://")) or bool(data.get("tls"))
        security = ("sec.tls", {}) if tls else ("sec.plain", {})
        tls_data = data.get("tls") or {}
        if tls_data.get("cert_file"):
            identity = ("id.client_certificate", {})
        elif data.get("username"):
            identity = ("id.user", {"user": str(data["username"])})
        else:
            identity = ("id.none", {})
        sampling = ("samp.published", {"qos": str(data.get("qos", 0))})
    elif kind == "modbus":
        framing = data.get("framing", "tcp")
        if data.get("serial"):
            protocol = "Modbus RTU"
            endpoint = str((data.get("serial") or {}).get("port", ""))
        else:
            protocol = "Modbus TCP" if framing == "tcp" else "Modbus RTU over TCP"
            endpoint = f"{data.get('host')}:{data.get('port', 502)}"
        security = ("sec.modbus", {})
        identity = ("id.modbus", {})
        sampling = ("samp.poll", {"interval": _duration(data.get("interval"))})
    elif kind == "s7":
        protocol = "Siemens S7 (ISO-on-TCP, RFC 1006)"
        endpoint = f"{data.get('host')}:{data.get('port', 102)}, rack {data.get('rack', 0)}, slot {data.get('slot', 1)}"
        security = ("sec.s7", {})
        identity = ("id.s7", {"type": str(data.get("connection_type", "pg")).upper()})
        sampling = ("samp.poll", {"interval": _duration(data.get("interval"))})
    else:
        protocol = kind
        endpoint = str(data.get("endpoint") or data.get("url") or data.get("broker") or data.get("host") or "")
    return ConnectionInfo(
        name=connector.name,
        type=kind,
        protocol=protocol,
        endpoint=endpoint,
        security=security,
        identity=identity,
        sampling=sampling,
        tags=_static_tags(connector),
        sinks=list(sinks),
        writable=_writable(data),
    )


def _sink_info(sink: Any, data_dir: Path, fed: bool) -> SinkInfo:
    data = sink.model_dump(mode="json")
    if sink.type == "historian":
        path = getattr(sink, "path", None)
        destination = str(path if path is not None else data_dir / "history.db")
    else:
        destination = str(data.get("url") or data.get("broker") or data.get("endpoint") or data.get("path") or "")
        for key in ("bucket", "database", "topic", "group"):
            if data.get(key):
                destination += f" ({key} {data[key]})"
    retention = data.get("retention")
    return SinkInfo(
        sink.name,
        sink.type,
        destination,
        float(retention) if isinstance(retention, int | float) else None,
        fed,
    )


# --- the history ------------------------------------------------------------------------------------


async def _edge(reader: HistoryReader, row: SeriesRow, lo: int, hi: int, first: bool) -> int | None:
    """The exact time of the first (or last) sample of ``row`` in [lo, hi]: narrow by buckets, then read."""
    while hi - lo > _EXACT_WINDOW_NS:
        points = 200
        buckets = [b for b in await reader.range(row.id, lo, hi, points) if b.count]
        if not buckets:
            return None
        bucket = buckets[0] if first else buckets[-1]
        width = (hi - lo) // (points - 1) + 2
        if width >= _MINUTE_NS:
            width += _MINUTE_NS  # rolled-up buckets are whole minutes
        lo, hi = max(lo, bucket.time), min(hi, bucket.time + width)
    values = await reader.read(row.measurement, fields=[row.field], tags=row.tags, since_ns=lo, until_ns=hi)
    times = [v.time for v in values if dict(v.tags) == dict(row.tags) and v.field == row.field]
    if not times:
        return None
    return min(times) if first else max(times)


async def _signal(
    reader: HistoryReader, row: SeriesRow, start: int, end: int, display: Mapping[str, Any]
) -> SignalInfo:
    last = end - 1  # the range is [start, end): the reader's bounds are both included
    buckets = await reader.range(row.id, start, last, SPARK_POINTS)
    count = sum(b.count for b in buckets)
    first_ns = last_ns = None
    if count:
        first_ns = await _edge(reader, row, start, last, first=True)
        last_ns = await _edge(reader, row, start, last, first=False)
    lows = [b.min for b in buckets if b.min is not None]
    highs = [b.max for b in buckets if b.max is not None]
    return SignalInfo(
        measurement=row.measurement,
        field=row.field,
        tags=dict(row.tags),
        kind=row.kind,
        label=str(display.get("label") or row.field),
        labels=dict(display.get("labels") or {}),
        unit=str(display.get("unit") or ""),
        decimals=display.get("decimals"),
        count=count,
        first_ns=first_ns,
        last_ns=last_ns,
        buckets=buckets,
        minimum=min(lows) if lows else None,
        maximum=max(highs) if highs else None,
    )


# --- the whole report ---------------------------------------------------------------------------------


async def gather(
    loaded: LoadedConfig,
    reader: HistoryReader | None,
    machine_name: str,
    start_ns: int,
    end_ns: int,
    *,
    now_ns: int,
    timezone: str,
    connectors: Sequence[str] = (),
) -> InterconnectionReport:
    """Read the config, the history, the link journal and the audit trail for one machine over [start, end)."""
    config = loaded.config
    machine = resolve_machine(config, machine_name, connectors)
    settings = config.gateway
    data_dir = Path(settings.data_dir)
    notes: list[str] = []
    end = min(end_ns, now_ns)
    if end <= start_ns:
        raise ValueError("the range starts after now: nothing has been recorded in it yet")

    all_sinks = [s.name for s in config.sinks]
    fed: set[str] = set()
    connections = []
    for connector in machine.connectors:
        names = list(getattr(connector, "sinks", None) or all_sinks)
        fed.update(names)
        connections.append(_connection(connector, names))
    sinks = [_sink_info(s, data_dir, s.name in fed) for s in config.sinks]

    link_folder = data_dir / LINK_FOLDER
    records = read_link_journal(link_folder, start_ns, end)
    journal = read_link_journal(link_folder, None, None)[:1]
    links = [availability(records, c.name, start_ns, end) for c in machine.connectors]

    catalogue = settings.http.overview.catalogue
    signals: list[SignalInfo] = []
    cutoff = None
    if reader is None:
        notes.append("no_history")
    else:
        store = next((s for s in config.sinks if s.name == reader.name), None)
        retention = getattr(store, "retention", None)
        if isinstance(retention, int | float) and now_ns - int(retention * 1e9) > start_ns:
            cutoff = now_ns - int(retention * 1e9)
        rows = [
            r
            for r in await reader.series()
            if r.measurement not in _OWN_MEASUREMENTS and all(r.tags.get(k) == v for k, v in machine.tags.items())
        ]
        for row in rows:
            display = catalogue.display(row.measurement, row.field).as_dict()
            signal = await _signal(reader, row, start_ns, end, display)
            if signal.count:
                signals.append(signal)
        signals.sort(key=lambda s: (s.measurement, s.display("en").lower(), sorted(s.tags.items())))

    audit_folder = settings.audit.folder(data_dir)
    trail = AuditTrail(audit_folder)
    writes: list[dict[str, Any]] = []
    for connector in machine.connectors:
        query = AuditQuery(start=start_ns, end=end - 1, connector=connector.name, limit=1_000_000)
        writes += trail.read(query)
    writes.sort(key=lambda e: (e.get("at_ms") or 0, str(e.get("id"))))

    return InterconnectionReport(
        machine=machine.name,
        tags=dict(machine.tags),
        start_ns=start_ns,
        end_ns=end,
        asked_end_ns=end_ns,
        generated_ns=now_ns,
        timezone=timezone,
        gateway=settings.name,
        version=__version__,
        config_files=[str(f) for f in loaded.files],
        config_sha256=loaded.sha256,
        history_source=reader.name if reader is not None else None,
        link_folder=str(link_folder),
        audit_folder=str(audit_folder),
        connections=connections,
        availability=links,
        signals=signals,
        writes=writes,
        sinks=sinks,
        journal_start_ns=journal[0].at_ns if journal else None,
        retention_cutoff_ns=cutoff,
        notes=notes,
    )
