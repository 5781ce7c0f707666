"""A Sparkplug B host application's memory of the edge nodes it hears: births, aliases, sequence
numbers, deaths, rebirth requests — and the points their messages become. No I/O here: the
connector (``connectors/sparkplug``) feeds it the messages and sends the rebirth requests it asks for.

What a birth is for. An edge node announces every metric once, in its NBIRTH (node metrics) and
a DBIRTH per device: name, datatype, and usually an *alias*, a number that its data messages
then carry instead of the name. An alias means something only within the birth that declared
it; so does a datatype left out of a data message. Hence the rules this module keeps:

- **Never an alias as a name, never a guessed name.** A data metric carrying only an alias is
  resolved through the current birth of its node or device; an alias that birth did not declare
  is counted (``unknown_alias``) and not stored, and a rebirth is requested. A metric that
  carries its name is stored under that name.
- **Data before its birth is held** (the gateway started after the births, or a DBIRTH was
  missed): up to ``max_held`` messages per edge node, oldest dropped first (``held_dropped``),
  and a rebirth is requested. When the birth arrives, the held messages are decoded again:
  metrics that carry their name are stored (with the birth's datatypes); metrics that carry only
  an alias are counted (``discarded``) and dropped — the new birth may number them differently.
- **Sequence numbers** (0–255, one counter per edge node across NBIRTH, DBIRTH, NDATA, DDATA and
  DDEATH): a gap means messages were lost — perhaps a birth — so a rebirth is requested
  (``seq_gaps``); the message itself is decoded with the births in force.
- **Rebirth requests** (NCMD ``Node Control/Rebirth`` = true) go out once per *episode*: the first
  trouble opens it and sends one request, further trouble before the birth sends nothing, and
  the NBIRTH closes it. If no birth comes, the request is repeated every ``rebirth_interval``
  seconds (an edge node that ignores it is not flooded). Each request is counted
  (``rebirths_requested``) and logged.
- **Deaths.** An NDEATH whose ``bdSeq`` matches the node's birth marks the node and its devices
  offline (an NDEATH with another bdSeq is the will of an older connection, delivered late, and
  is ignored: ``stale_deaths``); a DDEATH marks its device offline. Births mark them online.
  Each change is also a point with the boolean field ``sparkplug_online`` (tags as the data's),
  so the web page shows the machine offline at once and the history keeps when it was.

Points: the configured measurement; tags ``group``, ``edge_node`` and ``device`` (absent for the
node's own metrics), plus ``quality`` (``uncertain`` / ``bad``) from a Quality property that is
not good; one field per metric, named exactly as the birth names it (``Nozzle/Temp``); the
metric's timestamp (else the payload's, else the time of receipt). Metrics with the same
timestamp and quality make one point. ``bdSeq`` and the ``Node Control/…`` and
``Device Control/…`` metrics are the protocol's, not the machine's, and are not stored.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Final

from gateway.errors import PointError
from gateway.point import FieldValue, Point
from gateway.sparkplug import sparkplug_b_pb2 as pb
from gateway.sparkplug.payload import DataType, Skipped, convert, parse, quality_of, unit_of, values
from gateway.sparkplug.topics import Kind, Topic, parse_topic

__all__ = ["ONLINE_FIELD", "HostSession"]

#: The field that says whether an edge node or device is online (births: true, deaths: false).
ONLINE_FIELD: Final = "sparkplug_online"
#: Counters a host session keeps (the connector shows them in its status and /metrics).
COUNTERS: Final = (
    "births",
    "deaths",
    "stale_deaths",
    "seq_gaps",
    "before_birth",
    "held",
    "held_dropped",
    "discarded",
    "unknown_alias",
    "unknown_metric",
    "null_metrics",
    "unsupported_metrics",
    "invalid_metrics",
    "rebirths_requested",
)
_NS_PER_MS: Final = 1_000_000
_PROTOCOL_PREFIXES: Final = ("Node Control/", "Device Control/")
#: Oneof fields whose value is stored as it is (Float and Double are checked to be finite).
_PLAIN: Final = frozenset(("boolean_value", "string_value"))
_FLOATS: Final = frozenset(("double_value", "float_value"))
_INTEGERS: Final = frozenset(("int_value", "long_value"))
_SKIP_COUNTER: Final = {
    Skipped.NULL: "null_metrics",
    Skipped.UNSUPPORTED: "unsupported_metrics",
    Skipped.INVALID: "invalid_metrics",
}


@dataclass(slots=True)
class _Birth:
    """What a birth declared: alias → (name, datatype), name → datatype."""

    aliases: dict[int, tuple[str, int]] = field(default_factory=dict)
    names: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, payload: pb.Payload) -> _Birth:
        birth = cls()
        for metric in payload.metrics:
            name = metric.name
            if not name:
                continue  # a birth names every metric; one without a name declares nothing
            datatype = metric.datatype
            birth.names[name] = datatype
            if metric.HasField("alias"):
                birth.aliases[metric.alias] = (name, datatype)
        return birth


@dataclass(slots=True)
class _Held:
    topic: Topic
    payload: pb.Payload
    received_ns: int


@dataclass(slots=True)
class _Device:
    online: bool = False
    since: float = 0.0
    birth: _Birth | None = None
    held: deque[_Held] = field(default_factory=deque)


@dataclass(slots=True)
class _Node:
    group: str
    node: str
    online: bool = False
    since: float = 0.0
    bdseq: int | None = None
    seq: int | None = None
    birth: _Birth | None = None
    devices: dict[str, _Device] = field(default_factory=dict)
    held: deque[_Held] = field(default_factory=deque)
    #: the open rebirth episode: why it opened (None: none open), when the last request went out
    episode: str | None = None
    requested_at: float = 0.0


class HostSession:
    """Turns Sparkplug B messages into points; see the module docstring for the rules.

    :meth:`handle` returns the points of one message; rebirth requests to send accumulate in
    :attr:`rebirths` as (group, edge node) pairs, for the caller to publish and clear.
    """

    def __init__(
        self,
        measurement: str,
        log: logging.Logger | logging.LoggerAdapter[logging.Logger],
        *,
        counters: MutableMapping[str, int] | None = None,
        max_held: int = 1000,
        rebirth_interval: float = 30.0,
        units: MutableMapping[tuple[str, str], str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.measurement = measurement
        self.log = log
        self.counters: MutableMapping[str, int] = counters if counters is not None else {}
        for name in COUNTERS:
            self.counters.setdefault(name, 0)
        self.max_held = max_held
        self.rebirth_interval = rebirth_interval
        self.clock = clock
        #: (measurement, field) → unit, from the ``engUnit`` property of birth metrics (for the web page)
        self.units: MutableMapping[tuple[str, str], str] = units if units is not None else {}
        self.rebirths: list[tuple[str, str]] = []
        self.nodes: dict[tuple[str, str], _Node] = {}
        self._tags: dict[tuple[str, str, str | None, str | None], dict[str, str]] = {}

    # --- messages ---------------------------------------------------------------------------------

    def handle(self, topic: str, data: bytes, received_ns: int) -> list[Point]:
        """The points of one message (raises DecodeError for a topic or payload that is not Sparkplug B)."""
        parsed = parse_topic(topic)
        kind = parsed.kind
        if kind in (Kind.STATE, Kind.NCMD, Kind.DCMD):
            return []  # host states and commands to edge nodes carry no machine data
        payload = parse(data)
        key = (parsed.group, parsed.node)
        node = self.nodes.get(key)
        if node is None:
            node = self.nodes[key] = _Node(parsed.group, parsed.node)
        if kind is Kind.NBIRTH:
            return self._nbirth(node, payload, received_ns)
        if kind is Kind.NDEATH:
            return self._ndeath(node, payload, received_ns)
        if kind is Kind.DDEATH:
            assert parsed.device is not None
            if node.birth is not None:
                self._check_seq(node, payload)
            return self._ddeath(node, parsed.device, node.devices.setdefault(parsed.device, _Device()), received_ns)
        if node.birth is None:
            self._hold(node, node.held, _Held(parsed, payload, received_ns))
            self._trouble(node, "sent data before its birth (NBIRTH), which the gateway has not seen")
            return []
        self._check_seq(node, payload)
        if kind is Kind.NDATA:
            return self._decode(node, None, node.birth, payload, received_ns)
        assert parsed.device is not None
        device = node.devices.get(parsed.device)
        if device is None:
            device = node.devices[parsed.device] = _Device()
        if kind is Kind.DDATA:
            if device.birth is None:
                self._hold(node, device.held, _Held(parsed, payload, received_ns))
                self._trouble(node, f"device {parsed.device!r} sent data before its birth (DBIRTH)")
                return []
            return self._decode(node, parsed.device, device.birth, payload, received_ns)
        return self._dbirth(node, parsed.device, device, payload, received_ns)

    def _nbirth(self, node: _Node, payload: pb.Payload, received_ns: int) -> list[Point]:
        self.counters["births"] += 1
        birth = _Birth.of(payload)
        node.birth = birth
        self._record_units(payload)
        node.bdseq = _bdseq(payload)
        node.seq = payload.seq
        for device in node.devices.values():
            device.birth = None  # every device is born again after its node
        if node.episode is not None:
            self.log.info(
                "edge node %s/%s was born again (bdSeq %s); the rebirth episode (%s) is over",
                node.group,
                node.node,
                node.bdseq,
                node.episode,
            )
            node.episode = None
        points = self._online(node, None, node, True, received_ns)
        points += self._decode(node, None, birth, payload, received_ns)
        held, node.held = node.held, deque()
        points += self._release(node, held)
        return points

    def _dbirth(
        self, node: _Node, device_id: str, device: _Device, payload: pb.Payload, received_ns: int
    ) -> list[Point]:
        self.counters["births"] += 1
        birth = _Birth.of(payload)
        device.birth = birth
        self._record_units(payload)
        points = self._online(node, device_id, device, True, received_ns)
        points += self._decode(node, device_id, birth, payload, received_ns)
        held, device.held = device.held, deque()
        points += self._release(node, held)
        return points

    def _ddeath(self, node: _Node, device_id: str, device: _Device, received_ns: int) -> list[Point]:
        self.counters["deaths"] += 1
        device.birth = None
        return self._online(node, device_id, device, False, received_ns)

    def _ndeath(self, node: _Node, payload: pb.Payload, received_ns: int) -> list[Point]:
        bdseq = _bdseq(payload)
        if node.bdseq is not None and bdseq is not None and bdseq != node.bdseq:
            # The will of an older connection (its bdSeq), delivered after the node was born again.
            self.counters["stale_deaths"] += 1
            self.log.info(
                "edge node %s/%s: NDEATH with bdSeq %d ignored (the node's birth has bdSeq %d: an older "
                "connection's death certificate)",
                node.group,
                node.node,
                bdseq,
                node.bdseq,
            )
            return []
        self.counters["deaths"] += 1
        node.birth = None
        node.seq = None
        node.episode = None  # a dead node cannot answer a rebirth request; its next NBIRTH will come
        self._drop_held(node, "the edge node died before its birth was seen")
        points = []
        for device_id, device in node.devices.items():
            device.birth = None
            points += self._online(node, device_id, device, False, received_ns)
        points += self._online(node, None, node, False, received_ns)
        return points

    def _record_units(self, payload: pb.Payload) -> None:
        """Units a birth declares (the ``engUnit`` property, as Ignition publishes them)."""
        for metric in payload.metrics:
            if metric.name and metric.HasField("properties"):
                unit = unit_of(metric)
                if unit and len(self.units) < 100_000:
                    self.units[(self.measurement, metric.name)] = unit

    # --- held data ------------------------------------------------------------------------------------

    def _hold(self, node: _Node, queue: deque[_Held], held: _Held) -> None:
        self.counters["before_birth"] += 1
        if self.max_held <= 0:  # holding nothing: dropped at once
            self.counters["held_dropped"] += 1
            return
        if sum(len(d.held) for d in node.devices.values()) + len(node.held) >= self.max_held:
            oldest = node.held if node.held else max(node.devices.values(), key=lambda d: len(d.held)).held
            oldest.popleft()
            self.counters["held_dropped"] += 1
            self.counters["held"] -= 1
        queue.append(held)
        self.counters["held"] += 1

    def _release(self, node: _Node, held: Iterable[_Held]) -> list[Point]:
        """Held messages decoded with the births now known: by name only (an old alias may mean anything now)."""
        points: list[Point] = []
        discarded = 0
        for item in held:
            self.counters["held"] -= 1
            device_id = item.topic.device
            if device_id is not None and item.topic.kind is not Kind.DBIRTH:
                device = node.devices.get(device_id)
                if device is None or device.birth is None:
                    # Its node was born, its device not yet: it waits for the DBIRTH.
                    if device is None:
                        device = node.devices[device_id] = _Device()
                    device.held.append(item)
                    self.counters["held"] += 1
                    continue
                birth = device.birth
            elif item.topic.kind is Kind.DBIRTH:
                assert device_id is not None
                device = node.devices.setdefault(device_id, _Device())
                birth = _Birth.of(item.payload)
                device.birth = birth
                points += self._online(node, device_id, device, True, item.received_ns)
            else:
                assert node.birth is not None
                birth = node.birth
            before = self.counters["unknown_alias"]
            points += self._decode(node, device_id, birth, item.payload, item.received_ns, by_name=True)
            discarded += self.counters["unknown_alias"] - before
            self.counters["unknown_alias"] = before  # not unknown: unusable (counted as discarded)
        if discarded:
            self.counters["discarded"] += discarded
            self.log.warning(
                "edge node %s/%s: %d metrics received before its birth carried only an alias and were not "
                "stored (an alias means something only within the birth that declared it)",
                node.group,
                node.node,
                discarded,
            )
        return points

    def _drop_held(self, node: _Node, why: str) -> None:
        count = len(node.held) + sum(len(d.held) for d in node.devices.values())
        if not count:
            return
        node.held.clear()
        for device in node.devices.values():
            device.held.clear()
        self.counters["held"] -= count
        self.counters["discarded"] += count
        self.log.warning("edge node %s/%s: %d held messages discarded: %s", node.group, node.node, count, why)

    # --- sequence numbers and rebirth episodes ----------------------------------------------------

    def _check_seq(self, node: _Node, payload: pb.Payload) -> None:
        seq = payload.seq
        if node.seq is not None:
            expected = (node.seq + 1) & 0xFF
            if seq != expected:
                self.counters["seq_gaps"] += 1
                self._trouble(node, f"sequence number {seq} where {expected} was due (messages were lost)")
        node.seq = seq

    def _trouble(self, node: _Node, reason: str) -> None:
        """Open a rebirth episode (one request) or, if one is open and quiet for long enough, ask again."""
        now = self.clock()
        if node.episode is None:
            node.episode = reason
        elif now - node.requested_at < self.rebirth_interval:
            return
        else:
            self.log.warning(
                "edge node %s/%s: still no birth %.0f s after the rebirth request; asking again",
                node.group,
                node.node,
                now - node.requested_at,
            )
        node.requested_at = now
        self.rebirths.append((node.group, node.node))
        self.counters["rebirths_requested"] += 1
        if node.episode == reason:
            self.log.warning(
                "edge node %s/%s %s; asking it for a rebirth (NCMD Node Control/Rebirth)", node.group, node.node, reason
            )

    # --- points -----------------------------------------------------------------------------------------

    def _tags_of(self, node: _Node, device: str | None, quality: str | None = None) -> dict[str, str]:
        key = (node.group, node.node, device, quality)
        tags = self._tags.get(key)
        if tags is None:
            tags = {"group": node.group, "edge_node": node.node}
            if device is not None:
                tags["device"] = device
            if quality is not None:
                tags["quality"] = quality
            if len(self._tags) < 100_000:
                self._tags[key] = tags
        return tags

    def _online(
        self, node: _Node, device_id: str | None, holder: _Node | _Device, online: bool, received_ns: int
    ) -> list[Point]:
        if holder.online == online and holder.since:
            return []
        holder.online = online
        holder.since = time.time()
        return [Point(self.measurement, {ONLINE_FIELD: online}, self._tags_of(node, device_id), received_ns)]

    def _decode(
        self,
        node: _Node,
        device: str | None,
        birth: _Birth,
        payload: pb.Payload,
        received_ns: int,
        *,
        by_name: bool = False,
    ) -> list[Point]:
        """The points of a birth or data payload, names and datatypes resolved through ``birth``."""
        counters = self.counters
        default_ms = payload.timestamp or received_ns // _NS_PER_MS
        groups: dict[tuple[int, str | None], dict[str, FieldValue]] = {}
        names = birth.names
        aliases = birth.aliases
        unknown_alias = unknown_metric = 0
        for metric in payload.metrics:
            name = metric.name
            if name:
                datatype = names.get(name)
                if datatype is None:
                    datatype = metric.datatype
                    if not datatype:
                        unknown_metric += 1  # neither the birth nor the message says what it is
                        continue
                elif metric.datatype:
                    datatype = metric.datatype
            elif metric.HasField("alias") and not by_name:
                known = aliases.get(metric.alias)
                if known is None:
                    unknown_alias += 1
                    continue
                name, datatype = known
            else:
                unknown_alias += 1  # no name, and no alias that may be resolved
                continue
            if name == "bdSeq" or name.startswith(_PROTOCOL_PREFIXES):
                continue
            kind = metric.WhichOneof("value")
            value: FieldValue
            if metric.is_null or kind is None:
                counters["null_metrics" if metric.is_null else "invalid_metrics"] += 1
                continue
            if kind in _FLOATS:
                number: float = getattr(metric, kind)
                if number - number != 0.0:  # NaN or infinity (faster than math.isfinite here)
                    counters["invalid_metrics"] += 1
                    continue
                value = number
            elif kind in _PLAIN or (kind in _INTEGERS and datatype in (DataType.UInt8, DataType.UInt16)):
                value = getattr(metric, kind)
            elif kind in _INTEGERS:
                value = convert(datatype, kind, getattr(metric, kind))
            else:
                timestamp = metric.timestamp or default_ms
                quality = quality_of(metric) if metric.HasField("properties") else None
                for item in values(name, datatype, metric):
                    if isinstance(item, Skipped):
                        counters[_SKIP_COUNTER[item]] += 1
                    else:
                        groups.setdefault((timestamp, quality), {})[item[0]] = item[1]
                continue
            quality = quality_of(metric) if metric.HasField("properties") else None
            fields = groups.get((metric.timestamp or default_ms, quality))
            if fields is None:
                fields = groups[(metric.timestamp or default_ms, quality)] = {}
            fields[name] = value
        if unknown_alias or unknown_metric:
            counters["unknown_alias"] += unknown_alias
            counters["unknown_metric"] += unknown_metric
            if not by_name:
                what = "an alias" if unknown_alias else "a metric"
                where = f"device {device!r}" if device is not None else "the node"
                self._trouble(node, f"sent {what} that the birth of {where} did not declare (not stored)")
        return self._points(node, device, groups)

    def _points(
        self, node: _Node, device: str | None, groups: dict[tuple[int, str | None], dict[str, FieldValue]]
    ) -> list[Point]:
        points = []
        measurement = self.measurement
        for (timestamp_ms, quality), fields in groups.items():
            tags = self._tags_of(node, device, quality)
            try:
                points.append(Point(measurement, fields, tags, timestamp_ms * _NS_PER_MS))
            except PointError:
                points += self._salvage(fields, tags, timestamp_ms)
        return points

    def _salvage(self, fields: dict[str, FieldValue], tags: dict[str, str], timestamp_ms: int) -> list[Point]:
        """The fields of a group that make a valid point, when one of them (or the time) does not."""
        good: dict[str, FieldValue] = {}
        for name, value in fields.items():
            try:
                Point(self.measurement, {name: value}, tags, timestamp_ms * _NS_PER_MS)
            except PointError as exc:
                self.counters["invalid_metrics"] += 1
                self.log.warning("metric %r not stored: %s", name, exc)
            else:
                good[name] = value
        return [Point(self.measurement, good, tags, timestamp_ms * _NS_PER_MS)] if good else []

    # --- what the status shows -------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """Every edge node heard and its devices: online, since when, bdSeq (the connector's status detail)."""
        return {
            f"{node.group}/{node.node}": {
                "online": node.online,
                "since": node.since or None,
                "bdSeq": node.bdseq,
                "rebirth_requested": node.episode is not None,
                "devices": {
                    device_id: {"online": device.online, "since": device.since or None}
                    for device_id, device in sorted(node.devices.items())
                },
            }
            for node in sorted(self.nodes.values(), key=lambda n: (n.group, n.node))
        }


def _bdseq(payload: pb.Payload) -> int | None:
    for metric in payload.metrics:
        if metric.name == "bdSeq":
            kind = metric.WhichOneof("value")
            if kind == "long_value" or kind == "int_value":
                return int(getattr(metric, kind))
    return None
