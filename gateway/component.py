"""The two small interfaces every plug-in implements: :class:`Source` and :class:`Sink`.

A **source** (a connector) produces batches of points and hands each one to ``emit`` together
with an optional ``on_stored`` callback; the pipeline calls ``on_stored`` once every sink has
the batch durably (the MQTT connector acknowledges QoS ≥ 1 messages there). A **sink** writes
batches; batching, retries and acknowledgements are the route's job, written once
(:mod:`gateway.route`).

What a sink needs from the runtime and what it offers to the rest of the gateway are named
abilities on the class, never found by a type name or by probing attributes:

- :attr:`Sink.needs_durable_buffer` — its store is reached over a network, so the runtime puts
  an on-disk buffer in front of it (a store that is down never stops collection);
- :attr:`Sink.takes_line_protocol` — it can write line protocol as it is
  (:meth:`Sink.write_lines`), so the disk buffer hands its records over without decoding them;
- :meth:`Sink.history` — a :class:`~gateway.history.HistoryReader` of what it stored, for the
  web page's charts and the KPI engine.

A connector offers one ability the same way: :meth:`Source.writer` — a
:class:`~gateway.writes.FieldWriter` for the fields its config declares writable (``write:``),
which the runtime finds by the connector's name for ``POST /api/write``.

Both carry a :class:`Status` that the runtime, the logs and the HTTP API read.
"""

from __future__ import annotations

import abc
import bisect
import enum
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

from gateway.history import HistoryReader
from gateway.point import Point
from gateway.secrets import SECRETS
from gateway.writes import FieldWriter

__all__ = [
    "Emit",
    "FieldUnits",
    "Histogram",
    "OnStored",
    "RuntimeContext",
    "Sink",
    "Source",
    "State",
    "Status",
]

OnStored = Callable[[], None]


class Emit(Protocol):
    """Hand a batch of points to the pipeline; waits when the pipeline is full (back-pressure)."""

    def __call__(self, points: Sequence[Point], on_stored: OnStored | None = None) -> Awaitable[None]: ...


class State(enum.StrEnum):
    """Where a component is in its life; shown in logs, status and /readyz."""

    STARTING = "starting"
    CONNECTING = "connecting"
    RUNNING = "running"
    RECONNECTING = "reconnecting"
    BACKOFF = "backoff"  # failed, waiting before the supervisor restarts it
    UNAUTHORIZED = "unauthorized"
    DISK_FULL = "disk_full"  # its files cannot grow (ENOSPC, SQLITE_FULL): points wait unacknowledged
    STOPPING = "stopping"
    STOPPED = "stopped"


#: Upper bounds (seconds) of the write-latency histogram buckets.
LATENCY_BUCKETS: tuple[float, ...] = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass
class Histogram:
    """Counts of observations per bucket (cumulative on export), their sum and count; for /metrics."""

    buckets: tuple[float, ...] = LATENCY_BUCKETS
    counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    sum: float = 0.0
    count: int = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sum += value
        self.count += 1


@dataclass
class Status:
    """The live state of one connector or sink, plus its counters.

    ``state`` is what everyone reads (logs, API, /metrics, /readyz). Two writers feed it: the
    component's life cycle (:meth:`set_state`: running, backoff …) and a *condition* that
    outranks it while it lasts (:meth:`set_condition`: the disk is full). A condition is set by
    whoever sees it (a sink's disk queue, the historian) and cleared by them; meanwhile the
    route may go on setting running/backoff, which is remembered and shown again once the
    condition is cleared. Stopping and stopped always show: they say what the process does.
    """

    name: str
    kind: str  # "connector" or "sink"
    type: str
    state: State = State.STARTING
    since: float = field(default_factory=time.time)
    last_error: str | None = None
    last_error_at: float | None = None
    counters: dict[str, int] = field(default_factory=dict)
    detail: dict[str, Any] = field(default_factory=dict)
    histograms: dict[str, Histogram] = field(default_factory=dict)
    #: called after every change of state (the runtime records connectors' states in the link journal)
    on_change: Callable[[Status], None] | None = field(default=None, repr=False, compare=False)
    #: What outranks the life-cycle state while it lasts (None: nothing); see the class docstring.
    condition: State | None = None
    _lifecycle: State = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._lifecycle = self.state

    def set_state(self, state: State) -> None:
        """The component's life-cycle state; shown unless a condition outranks it."""
        self._lifecycle = state
        if self.condition is not None and state not in (State.STOPPING, State.STOPPED):
            state = self.condition
        if state is not self.state:
            self.state = state
            self.since = time.time()
            if self.on_change is not None:
                self.on_change(self)

    @property
    def lifecycle(self) -> State:
        """The life-cycle state (what ``state`` shows unless a condition outranks it): for the
        component's own decisions, which a full disk does not change."""
        return self._lifecycle

    def set_condition(self, condition: State | None) -> None:
        """Show ``condition`` instead of the life-cycle state until it is cleared (None)."""
        self.condition = condition
        self.set_state(self._lifecycle)

    def record_error(self, message: str) -> None:
        # Shown by /api/status, /readyz, the page and the logs: a configured secret an error
        # text quotes (a URL, a library's message) is masked here, once for all of them.
        self.last_error = SECRETS.mask(message)
        self.last_error_at = time.time()

    def count(self, name: str, amount: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + amount

    def observe(self, name: str, value: float) -> None:
        """Record one measurement (e.g. a write's duration in seconds) in the histogram ``name``."""
        histogram = self.histograms.get(name)
        if histogram is None:
            histogram = self.histograms[name] = Histogram()
        histogram.observe(value)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "type": self.type,
            "state": self.state.value,
            "since": self.since,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
            "counters": dict(self.counters),
            **({"detail": dict(self.detail)} if self.detail else {}),
        }


#: Units the sources found for their fields, e.g. an OPC UA AnalogItem's EngineeringUnits:
#: (measurement, field) → unit text ("°C", "bar"). Shared by the whole gateway; the web page
#: shows them where ``gateway.http.overview.fields`` does not set a unit.
FieldUnits = dict[tuple[str, str], str]


@dataclass(frozen=True)
class RuntimeContext:
    """What the runtime gives every component it builds."""

    gateway_name: str
    data_dir: Path
    log: logging.LoggerAdapter[logging.Logger]
    units: FieldUnits = field(default_factory=dict)
    #: (measurement, field) → the unit the web page shows for it (the display config's, else one a
    #: source found; "" if none), for sinks that publish units (a Sparkplug B edge node's births).
    field_unit: Callable[[str, str], str] = field(default=lambda measurement, field: "")


class Source(abc.ABC):
    """A connector: reads a protocol and emits points.

    Life cycle, driven by the runtime:

    1. ``await run(emit)`` — connect and emit batches until :meth:`request_stop` is called, then
       emit what was already received and return. Transient trouble (a broker restart) is
       handled inside, with the state shown in :attr:`status`; an exception out of ``run``
       makes the runtime log it and call ``run`` again after a capped exponential backoff.
    2. ``await aclose()`` — after the pipeline has drained (so pending acknowledgements could
       still be sent), release connections.
    """

    def __init__(self, name: str, type_: str, context: RuntimeContext) -> None:
        self.name = name
        self.context = context
        self.log = context.log
        self.status = Status(name=name, kind="connector", type=type_)

    @abc.abstractmethod
    async def run(self, emit: Emit) -> None:
        """Produce batches until asked to stop."""

    @abc.abstractmethod
    def request_stop(self) -> None:
        """Stop taking new data; ``run`` emits what it holds and returns soon after."""

    async def aclose(self) -> None:  # noqa: B027 - an optional hook: nothing to release by default
        """Release connections once the pipeline has drained."""

    def writer(self) -> FieldWriter | None:
        """The fields this connector can write to its machine, if its config declares any (default: none)."""
        return None


class Sink(abc.ABC):
    """A store: writes batches of points.

    ``write`` raises :class:`~gateway.errors.SinkUnavailable` (retry later),
    :class:`~gateway.errors.SinkUnauthorized` (retry slowly) or
    :class:`~gateway.errors.SinkRejected` (drop those points); the route acts on each.

    Life cycle, driven by the sink's route: ``open`` (retried with backoff while it fails, the
    points waiting in the route's queue), ``write`` as batches come, ``close`` once the route
    has drained or when the sink is reconfigured.
    """

    #: The store is reached over a network: the runtime gives this sink a durable on-disk
    #: buffer, so points are acknowledged to their sources once on disk and forwarded when the
    #: store takes them. A sink whose own write is durable (a local file) leaves it False and
    #: is fed from memory, acknowledging once written.
    needs_durable_buffer: ClassVar[bool] = False
    #: The sink writes line protocol as it is (:meth:`write_lines`), so the disk buffer hands
    #: over its records without decoding them into points first.
    takes_line_protocol: ClassVar[bool] = False

    def __init__(self, name: str, type_: str, context: RuntimeContext) -> None:
        self.name = name
        self.context = context
        self.log = context.log
        self.status = Status(name=name, kind="sink", type=type_)

    async def open(self) -> None:  # noqa: B027 - an optional hook: nothing to prepare by default
        """Prepare the store (create files, check the connection)."""

    @abc.abstractmethod
    async def write(self, points: Sequence[Point]) -> None:
        """Store a batch durably, or raise a SinkError saying what to do next."""

    async def write_lines(self, body: bytes, count: int) -> None:
        """Store ``count`` points given as line protocol (only when :attr:`takes_line_protocol`)."""
        raise NotImplementedError(f"the {self.status.type} sink does not take line protocol")

    def history(self) -> HistoryReader | None:
        """A reader of what this sink stored, if it can offer one (default: none)."""
        return None

    async def close(self) -> None:  # noqa: B027 - an optional hook: nothing to release by default
        """Flush and release the store."""
