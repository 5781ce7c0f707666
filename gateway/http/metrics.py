"""/metrics: the gateway's statuses and counters in the Prometheus text format.

Read at scrape time from the live :class:`~gateway.component.Status` of every connector and
sink, so nothing is counted twice and nothing can drift from what the API shows:

- ``gateway_info{gateway}`` and ``gateway_uptime_seconds``;
- ``gateway_component_up{kind,name,type}`` (1 while running) and
  ``gateway_component_state{kind,name,type,state}`` (1 for the current state);
- every counter of a connector as ``gateway_connector_<counter>_total{connector,type}`` and of
  a sink as ``gateway_sink_<counter>_total{sink,type}`` (e.g. ``gateway_sink_points_written_total``).
  One name per meaning: a connector's ``emitted`` is left out (``points_emitted_total`` below counts
  the same for every connector); ``stored`` is exported as ``points_stored`` when the connector
  counts points (OPC UA), and as ``messages_stored`` when it also has ``points_stored`` (MQTT:
  messages and the points decoded from them);
- every numeric detail as a gauge ``gateway_<kind>_<detail>`` (e.g. ``gateway_sink_pending_points``,
  the buffer depth);
- ``gateway_connector_points_emitted_total{connector}``: points handed to the sinks;
- histograms such as ``gateway_sink_write_seconds{sink}`` (write latency);
- ``gateway_connector_last_error_timestamp_seconds`` and ``gateway_component_state_since_seconds``;
- for polling connectors (Modbus …), per device (``status.detail["devices"]``), with a ``device``
  label: every device counter (``gateway_connector_read_errors_total``,
  ``gateway_connector_scan_overruns_total``, ``scans``, ``points``, ``gaps``), the histogram
  ``gateway_connector_scan_duration_seconds`` and ``gateway_connector_device_up``. A connector-level
  counter of the same name (OPC UA's ``read_errors``) is in the same family with ``device=""``;
- the configuration: ``gateway_config_generation``, ``gateway_config_applied_timestamp_seconds``,
  ``gateway_config_info{sha256}``, ``gateway_config_reloads_total{result}`` and
  ``gateway_config_last_reload_failed``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.component import State, Status

__all__ = ["CONTENT_TYPE", "GatewayCollector", "render_metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_UNSAFE = re.compile(r"[^a-zA-Z0-9_]")


def _metric_name(text: str) -> str:
    name = _UNSAFE.sub("_", text).strip("_").lower()
    return name if name and not name[0].isdigit() else f"_{name}"


def _counter_metric(status: Status, counter: str) -> str | None:
    """The metric name of a counter (None: exported under another name already)."""
    if status.kind != "connector":
        return counter
    if counter == "emitted":
        return None  # the same as gateway_connector_points_emitted_total
    if counter == "stored":
        return "messages_stored" if "points_stored" in status.counters else "points_stored"
    return counter


class GatewayCollector(Collector):
    """Builds every metric family from the current statuses on each scrape."""

    def __init__(
        self,
        gateway_name: str,
        statuses: Callable[[], Sequence[Status]],
        started_at: float,
        points_emitted: Callable[[], dict[str, int]] | None = None,
        *,
        config_state: Callable[[], Mapping[str, Any]] | None = None,
    ) -> None:
        self.gateway_name = gateway_name
        self.statuses = statuses
        self.started_at = started_at
        self.points_emitted = points_emitted or dict
        self.config_state = config_state

    def collect(self) -> Iterator[Metric]:
        statuses = list(self.statuses())
        info = GaugeMetricFamily("gateway_info", "This gateway (value always 1).", labels=["gateway"])
        info.add_metric([self.gateway_name], 1)
        yield info
        yield GaugeMetricFamily(
            "gateway_uptime_seconds", "Seconds since the gateway started.", value=time.time() - self.started_at
        )
        up = GaugeMetricFamily(
            "gateway_component_up", "1 while the connector or sink is running.", labels=["kind", "name", "type"]
        )
        state = GaugeMetricFamily(
            "gateway_component_state",
            "1 for the component's current state, 0 for the others.",
            labels=["kind", "name", "type", "state"],
        )
        since = GaugeMetricFamily(
            "gateway_component_state_since_seconds",
            "Unix time when the component entered its current state.",
            labels=["kind", "name", "type"],
        )
        errors = GaugeMetricFamily(
            "gateway_component_last_error_timestamp_seconds",
            "Unix time of the component's last error (absent if none).",
            labels=["kind", "name", "type"],
        )
        for status in statuses:
            labels = [status.kind, status.name, status.type]
            up.add_metric(labels, 1 if status.state is State.RUNNING else 0)
            for candidate in State:
                state.add_metric([*labels, candidate.value], 1 if status.state is candidate else 0)
            since.add_metric(labels, status.since)
            if status.last_error_at is not None:
                errors.add_metric(labels, status.last_error_at)
        yield from (up, state, since, errors)
        devices = _device_counters(statuses)
        yield from self._counters(statuses, devices)
        yield from devices.values()
        yield from _device_metrics(statuses)
        yield from self._gauges(statuses)
        yield from self._histograms(statuses)
        emitted = CounterMetricFamily(
            "gateway_connector_points_emitted",
            "Points the connector handed to the sinks (after decoding; before storage).",
            labels=["connector"],
        )
        for name, count in sorted(self.points_emitted().items()):
            emitted.add_metric([name], count)
        yield emitted
        if self.config_state is not None:
            yield from self._config(self.config_state())

    @staticmethod
    def _config(state: Mapping[str, Any]) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "gateway_config_generation",
            "The configuration generation in force: 1 at start, one more per reload that changed something.",
            value=state["generation"],
        )
        yield GaugeMetricFamily(
            "gateway_config_applied_timestamp_seconds",
            "Unix time when the configuration in force was applied.",
            value=state["applied_at"],
        )
        info = GaugeMetricFamily(
            "gateway_config_info", "The configuration in force (value always 1).", labels=["sha256"]
        )
        info.add_metric([state["sha256"]], 1)
        yield info
        reloads = CounterMetricFamily(
            "gateway_config_reloads",
            "Reload attempts by result: applied, unchanged, or failed (invalid config: nothing changed).",
            labels=["result"],
        )
        for result, count in sorted(state["reloads"].items()):
            reloads.add_metric([result], count)
        yield reloads
        last = state.get("last_reload")
        yield GaugeMetricFamily(
            "gateway_config_last_reload_failed",
            "1 while the last reload attempt failed (the gateway runs on the previous configuration).",
            value=1 if last is not None and last["result"] == "failed" else 0,
        )

    @staticmethod
    def _counters(statuses: Sequence[Status], devices: dict[str, CounterMetricFamily]) -> Iterator[Metric]:
        families: dict[str, CounterMetricFamily] = {}
        for status in statuses:
            for counter, value in sorted(status.counters.items()):
                metric = _counter_metric(status, counter)
                if metric is None:
                    continue
                name = f"gateway_{_metric_name(status.kind)}_{_metric_name(metric)}"
                name = name.removesuffix("_total")
                if name in devices:  # one family per name: the connector's own value has device=""
                    devices[name].add_metric([status.name, status.type, ""], value)
                    continue
                family = families.get(name)
                if family is None:
                    family = families[name] = CounterMetricFamily(
                        name, f"The {status.kind}'s {metric.replace('_', ' ')} counter.", labels=[status.kind, "type"]
                    )
                family.add_metric([status.name, status.type], value)
        yield from families.values()

    @staticmethod
    def _gauges(statuses: Sequence[Status]) -> Iterator[Metric]:
        families: dict[str, GaugeMetricFamily] = {}
        for status in statuses:
            for key, value in sorted(status.detail.items()):
                if isinstance(value, bool) or not isinstance(value, int | float):
                    continue
                name = f"gateway_{_metric_name(status.kind)}_{_metric_name(key)}"
                family = families.get(name)
                if family is None:
                    family = families[name] = GaugeMetricFamily(
                        name, f"The {status.kind}'s {key.replace('_', ' ')}.", labels=[status.kind, "type"]
                    )
                family.add_metric([status.name, status.type], float(value))
        yield from families.values()

    @staticmethod
    def _histograms(statuses: Sequence[Status]) -> Iterator[Metric]:
        families: dict[str, HistogramMetricFamily] = {}
        for status in statuses:
            for key, histogram in sorted(status.histograms.items()):
                name = f"gateway_{_metric_name(status.kind)}_{_metric_name(key)}"
                family = families.get(name)
                if family is None:
                    family = families[name] = HistogramMetricFamily(
                        name, f"The {status.kind}'s {key.replace('_', ' ')}.", labels=[status.kind, "type"]
                    )
                cumulative = 0
                buckets: list[tuple[str, float]] = []
                for bound, count in zip((*histogram.buckets, float("inf")), histogram.counts, strict=True):
                    cumulative += count
                    buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
                family.add_metric([status.name, status.type], buckets, histogram.sum)
        yield from families.values()


def _devices(status: Status) -> dict[str, dict[str, Any]]:
    devices = status.detail.get("devices") if status.kind == "connector" else None
    return devices if isinstance(devices, dict) else {}


def _device_counters(statuses: Sequence[Status]) -> dict[str, CounterMetricFamily]:
    """Per-device counters of polling connectors, one family per counter, labelled by device."""
    families: dict[str, CounterMetricFamily] = {}
    for status in statuses:
        for device, view in sorted(_devices(status).items()):
            for counter, value in sorted((view.get("counters") or {}).items()):
                name = f"gateway_connector_{_metric_name(counter)}"
                family = families.get(name)
                if family is None:
                    family = families[name] = CounterMetricFamily(
                        name,
                        f"The connector's {counter.replace('_', ' ')} counter, per device.",
                        labels=["connector", "type", "device"],
                    )
                family.add_metric([status.name, status.type, device], value)
    return families


def _device_metrics(statuses: Sequence[Status]) -> Iterator[Metric]:
    """Each polled device's up gauge and scan-duration histogram."""
    labels = ["connector", "type", "device"]
    up = GaugeMetricFamily("gateway_connector_device_up", "1 while the device delivers data.", labels=labels)
    durations = HistogramMetricFamily(
        "gateway_connector_scan_duration_seconds", "How long one scan of the device took (seconds).", labels=labels
    )
    for status in statuses:
        for device, view in sorted(_devices(status).items()):
            key = [status.name, status.type, device]
            up.add_metric(key, 1 if view.get("state") == "running" else 0)
            histogram = view.get("scan_seconds")
            if isinstance(histogram, dict):
                cumulative = 0
                buckets: list[tuple[str, float]] = []
                for bound, count in zip((*histogram["buckets"], float("inf")), histogram["counts"], strict=True):
                    cumulative += count
                    buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
                durations.add_metric(key, buckets, histogram["sum"])
    yield from (up, durations)


def render_metrics(collector: GatewayCollector) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return generate_latest(registry)
