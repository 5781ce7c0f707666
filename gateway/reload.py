"""What a reload changes: components matched by name between the running and the new config.

:func:`plan_reload` is pure (configs in, a :class:`ReloadPlan` out), so what a reload will
touch can be tested and logged before anything is touched:

- a sink or connector only in the new config is **added**, one only in the old is **removed**;
- a connector whose settings differ is **restarted** (its durable state is kept by the
  connector itself: an MQTT persistent session lives on the broker, an OPC UA certificate in
  ``data_dir``);
- a sink whose settings differ is **reconfigured** in place: its route and queue stay, every
  point waiting in them is kept, only the sink object is replaced — unless its type changed
  or its buffer folder moved, then it is **replaced** (the new one takes over the old buffer's
  files);
- everything else is **unchanged** and not touched: same connection, same session, same
  counters; a connector whose list of sinks changed (a sink added to "all sinks") is not
  restarted either, its fan-out is switched;
- ``gateway.http`` changes restart the web server; ``gateway.name`` and ``gateway.data_dir``
  name the process's files and client identities, so changing them needs a restart of the
  gateway: refused with that message, while the rest applies;
- ``machines:`` changes add, remove or restart the built-in kpi component (``kpi``: "added",
  "removed", "restarted"); unchanged, it is not touched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel

from gateway.config import GatewayConfig
from gateway.kpi import machines_of
from gateway.settings import BufferedSinkConfig, BufferSettings, ConnectorConfig, SinkConfig

__all__ = ["ReloadPlan", "buffer_settings", "plan_reload", "same", "sink_buffer_folder"]

#: gateway.* keys that only a restart of the process can change.
RESTART_KEYS = ("name", "data_dir")


def buffer_settings(config: GatewayConfig, sink: SinkConfig) -> BufferSettings | None:
    """The effective buffer settings of a buffered sink (its own ``buffer:`` keys win), else None."""
    if not isinstance(sink, BufferedSinkConfig):
        return None
    base = config.gateway.buffer
    override = sink.buffer
    if override is None:
        return base
    return base.model_copy(update={key: getattr(override, key) for key in override.model_fields_set})


def sink_buffer_folder(config: GatewayConfig, sink: SinkConfig) -> Path | None:
    settings = buffer_settings(config, sink)
    if settings is None:
        return None
    return settings.folder(config.gateway.data_dir) / sink.name


@dataclass
class ReloadPlan:
    """What a reload does, component by component (names), and the config that will run."""

    config: GatewayConfig
    sinks_added: list[str] = field(default_factory=list)
    sinks_removed: list[str] = field(default_factory=list)
    sinks_reconfigured: list[str] = field(default_factory=list)
    sinks_replaced: list[str] = field(default_factory=list)
    connectors_added: list[str] = field(default_factory=list)
    connectors_removed: list[str] = field(default_factory=list)
    connectors_restarted: list[str] = field(default_factory=list)
    #: connectors not restarted whose set of sinks changed (their fan-out is switched)
    connectors_rerouted: list[str] = field(default_factory=list)
    http_restart: bool = False
    #: what happens to the kpi component: "added", "removed", "restarted" (machines changed), or None
    kpi: str | None = None
    gateway_changed: list[str] = field(default_factory=list)
    restart_required: list[str] = field(default_factory=list)

    @property
    def changes(self) -> dict[str, str]:
        """``kind:name`` → what happens to it (for the log, the status and the API)."""
        out: dict[str, str] = {}
        for names, kind, what in (
            (self.sinks_added, "sink", "added"),
            (self.sinks_removed, "sink", "removed"),
            (self.sinks_reconfigured, "sink", "reconfigured"),
            (self.sinks_replaced, "sink", "replaced"),
            (self.connectors_added, "connector", "added"),
            (self.connectors_removed, "connector", "removed"),
            (self.connectors_restarted, "connector", "restarted"),
            (self.connectors_rerouted, "connector", "rerouted"),
        ):
            out.update({f"{kind}:{name}": what for name in names})
        if self.http_restart:
            out["http"] = "restarted"
        if self.kpi is not None:
            out["kpi"] = self.kpi
        for key in self.gateway_changed:
            out[f"gateway.{key}"] = "applied"
        return out

    @property
    def empty(self) -> bool:
        return not self.changes


def same(a: BaseModel | None, b: BaseModel | None) -> bool:
    """Equal settings (by value: derived private state such as caches does not count; secrets do)."""
    if a is None or b is None:
        return a is b
    return type(a) is type(b) and a.model_dump() == b.model_dump()


def _by_name(items: Sequence[SinkConfig] | Sequence[ConnectorConfig]) -> dict[str, SinkConfig | ConnectorConfig]:
    return {item.name: item for item in items}


def _targets(config: GatewayConfig, connector: ConnectorConfig) -> tuple[str, ...]:
    return tuple(connector.sinks or [sink.name for sink in config.sinks])


def plan_reload(old: GatewayConfig, new: GatewayConfig) -> ReloadPlan:
    """Match components by name and say what changes (see the module docstring)."""
    gateway = new.gateway
    kept: dict[str, object] = {}
    restart_required = []
    for key in RESTART_KEYS:
        before, after = getattr(old.gateway, key), getattr(gateway, key)
        if before != after:
            kept[key] = before
            restart_required.append(
                f"gateway.{key}: changing it from {str(before)!r} to {str(after)!r} needs a restart of the "
                f"gateway (it names the gateway's files and identities); the rest of the change was applied"
            )
    if kept:
        gateway = gateway.model_copy(update=kept)
        new = new.model_copy(update={"gateway": gateway})
    plan = ReloadPlan(config=new, restart_required=restart_required)
    plan.http_restart = not same(old.gateway.http, gateway.http)
    if old.gateway.shutdown_timeout != gateway.shutdown_timeout:
        plan.gateway_changed.append("shutdown_timeout")
    if not same(old.gateway.audit, gateway.audit):
        plan.gateway_changed.append("audit")  # the audit trail's folder and rotation: applied in place

    old_sinks, new_sinks = _by_name(old.sinks), _by_name(new.sinks)
    for name, sink in new_sinks.items():
        before = old_sinks.get(name)
        if before is None:
            plan.sinks_added.append(name)
            continue
        assert isinstance(before, SinkConfig) and isinstance(sink, SinkConfig)
        old_folder, new_folder = sink_buffer_folder(old, before), sink_buffer_folder(new, sink)
        if before.type != sink.type or old_folder != new_folder:
            plan.sinks_replaced.append(name)
        elif not same(before, sink) or not same(buffer_settings(old, before), buffer_settings(new, sink)):
            plan.sinks_reconfigured.append(name)
    plan.sinks_removed = [name for name in old_sinks if name not in new_sinks]

    old_connectors, new_connectors = _by_name(old.connectors), _by_name(new.connectors)
    for name, connector in new_connectors.items():
        before = old_connectors.get(name)
        if before is None:
            plan.connectors_added.append(name)
            continue
        assert isinstance(before, ConnectorConfig) and isinstance(connector, ConnectorConfig)
        if not same(before, connector):
            plan.connectors_restarted.append(name)
        elif _targets(old, before) != _targets(new, connector):
            plan.connectors_rerouted.append(name)
    plan.connectors_removed = [name for name in old_connectors if name not in new_connectors]
    plan.kpi = _kpi_change(old, new)
    return plan


def _kpi_change(old: GatewayConfig, new: GatewayConfig) -> str | None:
    before, after = machines_of(old), machines_of(new)
    if not before and not after:
        return None
    if not before:
        return "added"
    if not after:
        return "removed"
    same_machines = len(before) == len(after) and all(same(a, b) for a, b in zip(before, after, strict=True))
    return None if same_machines else "restarted"
