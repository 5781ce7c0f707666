"""Component types by name: each connector and sink module registers its config model and class.

``type: mqtt`` in a config file resolves here to the MQTT connector's config model (used to
validate that item) and to its class (used by the runtime to build it). Plug-in modules are
found in :data:`PLUGIN_MODULES` and imported on first use.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel

from gateway.component import RuntimeContext, Sink, Source

__all__ = ["PLUGIN_MODULES", "ComponentType", "component_types", "register"]

Kind = Literal["connector", "sink"]

#: Modules that register components when imported; a module not (yet) present is skipped.
PLUGIN_MODULES: tuple[str, ...] = (
    "connectors.mqtt",
    "connectors.opcua",
    "connectors.modbus",
    "connectors.s7",
    "gateway.sinks.historian",
    "gateway.sinks.influxdb",
)


@dataclass(frozen=True)
class ComponentType:
    kind: Kind
    name: str
    config_model: type[BaseModel]
    factory: Callable[[BaseModel, RuntimeContext], Source | Sink]


_registry: dict[tuple[Kind, str], ComponentType] = {}
_loaded = False


def register(
    kind: Kind,
    type_: str,
    config_model: type[BaseModel],
    factory: Callable[[BaseModel, RuntimeContext], Source | Sink],
) -> None:
    """Make ``type: <type_>`` available under ``connectors:`` or ``sinks:``."""
    _registry[(kind, type_)] = ComponentType(kind, type_, config_model, factory)


def _load_plugins() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in PLUGIN_MODULES:
        if importlib.util.find_spec(module.split(".")[0]) and importlib.util.find_spec(module):
            importlib.import_module(module)


def component_types(kind: Kind) -> dict[str, ComponentType]:
    """Every registered type of one kind, by type name, in a stable order."""
    _load_plugins()
    return {t: c for (k, t), c in sorted(_registry.items()) if k == kind}
