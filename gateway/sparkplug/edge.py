"""A Sparkplug B edge node's memory and the payloads it publishes (no I/O): the sink
(``gateway/sinks/sparkplug``) owns the MQTT connection and decides when each is sent.

- **Metrics** are declared per device, each with an alias unique in the whole edge node (node
  metrics included, as the specification requires), a datatype and an optional unit. A device
  that gains a metric, or whose metric changes type, needs a new DBIRTH (:meth:`EdgeNode.learn`
  says which devices); aliases never change while the process lives.
- **seq** runs 0–255 and wraps, one counter across NBIRTH (always 0), DBIRTH, NDATA, DDATA and
  DDEATH; NDEATH has none. **bdSeq** is the sink's (one per MQTT connection, persisted): the
  NDEATH registered as the will and the NBIRTH that follows carry the same number.
- **Births** carry every declared metric with its name, alias, datatype, unit (the ``engUnit``
  property, as Ignition reads it) and last value (``is_null`` before the first one). **DDATA**
  carries aliases only, each metric with the point's own timestamp.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from gateway.point import FieldValue
from gateway.sparkplug import sparkplug_b_pb2 as pb
from gateway.sparkplug.payload import DataType

__all__ = ["BDSEQ", "QUALITY_CODES", "REBIRTH", "EdgeNode", "MetricSpec", "datatype_of", "ndeath"]

#: The metric of the NBIRTH and NDEATH that ties a death to its birth.
BDSEQ: Final = "bdSeq"
#: The node control metric a host sets to true to ask for births again.
REBIRTH: Final = "Node Control/Rebirth"
#: The Quality property's codes for the ``quality`` tag the connectors write (OPC DA / Ignition).
QUALITY_CODES: Final = {"uncertain": 64, "bad": 0}
_UINT64: Final = 0xFFFFFFFFFFFFFFFF


def datatype_of(value: FieldValue) -> DataType:
    """The Sparkplug datatype a stored value is published as."""
    kind = type(value)
    if kind is float:
        return DataType.Double
    if kind is bool:
        return DataType.Boolean
    if kind is int:
        return DataType.Int64
    return DataType.String


def _set(metric: pb.Payload.Metric, datatype: int, value: FieldValue) -> None:
    if datatype == DataType.Double:
        metric.double_value = float(value)
    elif datatype == DataType.Int64:
        metric.long_value = int(value) & _UINT64
    elif datatype == DataType.Boolean:
        metric.boolean_value = bool(value)
    else:
        metric.string_value = str(value)


@dataclass(slots=True)
class MetricSpec:
    """One declared metric of a device."""

    name: str
    alias: int
    datatype: DataType
    unit: str = ""
    value: FieldValue | None = None
    timestamp: int = 0  # ms of the last value


@dataclass(slots=True)
class _Device:
    metrics: dict[str, MetricSpec] = field(default_factory=dict)


class EdgeNode:
    """The metrics an edge node declared, its seq counter, and the payloads of its messages."""

    def __init__(self) -> None:
        self.devices: dict[str, _Device] = {}
        self._next_alias = 2  # 0 and 1 are the node's bdSeq and Node Control/Rebirth
        self._seq = 0

    # --- metrics -------------------------------------------------------------------------------------

    def learn(self, device: str, values: Mapping[str, FieldValue], unit: Callable[[str], str] | None = None) -> bool:
        """Declare the metrics of ``values`` on ``device``; True when the device needs a (new) DBIRTH.

        ``unit`` gives a new metric's unit from its name. A new device, a new metric or a metric
        whose datatype changed needs one; a metric's last
        value is not recorded here (:meth:`ddata` does: the births after it carry it).
        """
        known = self.devices.get(device)
        if known is None:
            known = self.devices[device] = _Device()
        metrics = known.metrics
        changed = False
        for name, value in values.items():
            datatype = datatype_of(value)
            spec = metrics.get(name)
            if spec is None:
                metrics[name] = MetricSpec(name, self._next_alias, datatype, unit(name) if unit is not None else "")
                self._next_alias += 1
                changed = True
            elif spec.datatype != datatype and not (spec.datatype == DataType.Double and datatype == DataType.Int64):
                # An integer goes out as a Double where the metric is one (a source sending 21 then
                # 21.5 must not make the device reborn at every change); any other change is a new type.
                spec.datatype = datatype
                spec.value = None
                changed = True
        return changed

    def spec(self, device: str, name: str) -> MetricSpec:
        return self.devices[device].metrics[name]

    # --- payloads ------------------------------------------------------------------------------------

    def next_seq(self) -> int:
        seq = self._seq
        self._seq = (seq + 1) & 0xFF
        return seq

    def nbirth(self, bdseq: int, now_ms: int) -> bytes:
        """The NBIRTH (seq 0: it starts the counter again)."""
        self._seq = 0
        payload = pb.Payload(timestamp=now_ms, seq=self.next_seq())
        payload.metrics.add(name=BDSEQ, alias=0, timestamp=now_ms, datatype=DataType.Int64, long_value=bdseq)
        payload.metrics.add(name=REBIRTH, alias=1, timestamp=now_ms, datatype=DataType.Boolean, boolean_value=False)
        return payload.SerializeToString()

    def dbirth(self, device: str, now_ms: int) -> bytes:
        """A DBIRTH declaring every metric of ``device``, with its last value (null before the first)."""
        payload = pb.Payload(timestamp=now_ms, seq=self.next_seq())
        for spec in self.devices[device].metrics.values():
            metric = payload.metrics.add(
                name=spec.name, alias=spec.alias, datatype=spec.datatype, timestamp=spec.timestamp or now_ms
            )
            if spec.value is None:
                metric.is_null = True
            else:
                _set(metric, spec.datatype, spec.value)
            if spec.unit:
                metric.properties.keys.append("engUnit")
                metric.properties.values.add(type=DataType.String, string_value=spec.unit)
        return payload.SerializeToString()

    def ddata(self, device: str, values: Iterable[tuple[str, FieldValue]], ts_ms: int, quality: str | None) -> bytes:
        """A DDATA of one point: aliases and values, every metric stamped with the point's time."""
        metrics = self.devices[device].metrics
        payload = pb.Payload(timestamp=ts_ms, seq=self.next_seq())
        add = payload.metrics.add
        code = QUALITY_CODES.get(quality) if quality is not None else None
        for name, value in values:
            spec = metrics[name]
            datatype = spec.datatype
            metric = add(alias=spec.alias, timestamp=ts_ms)
            if datatype == DataType.Double:
                metric.double_value = float(value)
            else:
                _set(metric, datatype, value)
            if code is not None:
                metric.properties.keys.append("Quality")
                metric.properties.values.add(type=DataType.Int32, int_value=code)
            if ts_ms >= spec.timestamp:
                spec.value = value
                spec.timestamp = ts_ms
        return payload.SerializeToString()

    def ddeath(self, now_ms: int) -> bytes:
        return pb.Payload(timestamp=now_ms, seq=self.next_seq()).SerializeToString()


def ndeath(bdseq: int, now_ms: int) -> bytes:
    """The NDEATH (the will): its bdSeq ties it to the NBIRTH of the same connection; no seq."""
    payload = pb.Payload(timestamp=now_ms)
    payload.metrics.add(name=BDSEQ, timestamp=now_ms, datatype=DataType.Int64, long_value=bdseq)
    return payload.SerializeToString()
