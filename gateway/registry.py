"""Component types by name: each connector and sink module registers its config model and class.

``type: mqtt`` in a config file resolves here to the MQTT connector's config model (used to
validate that item) and to its class (used by the runtime to build it). Plug-in modules are
found in :data:`PLUGIN_MODULES` and imported on first use.

Top-level sections other than ``gateway``, ``sinks`` and ``connectors`` register here too
(:func:`register_section`: ``machines:`` by :mod:`gateway.kpi`), so the whole-file model, its
JSON Schema and its ``file:line: key`` errors cover them while the core never imports the
modules above it that define them.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel

from gateway.component import RuntimeContext, Sink, Source

__all__ = [
    "PLUGIN_MODULES",
    "ComponentType",
    "Section",
    "component_types",
    "register",
    "register_section",
    "sections",
]

Kind = Literal["connector", "sink"]

#: Modules that register components when imported; a module not (yet) present is skipped.
PLUGIN_MODULES: tuple[str, ...] = (
    "connectors.mqtt",
    "connectors.opcua",
    "connectors.modbus",
    "connectors.s7",
    "connectors.sparkplug",
    "gateway.sinks.historian",
    "gateway.sinks.influxdb",
    "gateway.sinks.mqtt",
    "gateway.sinks.sparkplug",
    "gateway.kpi",
)


@dataclass(frozen=True)
class ComponentType:
    kind: Kind
    name: str
    config_model: type[BaseModel]
    factory: Callable[[BaseModel, RuntimeContext], Source | Sink]


#: A problem found by a section's check of the whole config: key path from the file's root, message.
SectionProblem = tuple[tuple[str | int, ...], str]


@dataclass(frozen=True)
class Section:
    """A top-level list section of the config file (``machines:``) defined above the core.

    ``model`` validates one item of the list (``annotation`` the whole list, with its own checks);
    ``check`` looks at the whole validated config (e.g. a machine's counter against what the
    connectors declare) and returns its problems located from the file's root.
    """

    name: str
    annotation: Any
    description: str
    check: Callable[[Any], Iterable[SectionProblem]] | None = None


_registry: dict[tuple[Kind, str], ComponentType] = {}
_sections: dict[str, Section] = {}
_loaded = False


def register(
    kind: Kind,
    type_: str,
    config_model: type[BaseModel],
    factory: Callable[[BaseModel, RuntimeContext], Source | Sink],
) -> None:
    """Make ``type: <type_>`` available under ``connectors:`` or ``sinks:``."""
    _registry[(kind, type_)] = ComponentType(kind, type_, config_model, factory)


def register_section(section: Section) -> None:
    """Make a top-level list section (``machines:``) part of the whole file's model."""
    _sections[section.name] = section


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


def sections() -> dict[str, Section]:
    """Every registered top-level section, by name, in a stable order."""
    _load_plugins()
    return dict(sorted(_sections.items()))
