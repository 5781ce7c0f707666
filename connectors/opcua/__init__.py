"""OPC UA connector (``type: opcua``): subscriptions or grouped reads from machines and PLCs.

Importing this package registers the connector type; see README.md and sample.yaml.
"""

from __future__ import annotations

from typing import Any

from connectors.opcua.config import AuthConfig, BrowseSpec, Deadband, NodeSpec, OpcUaConfig, SecurityConfig
from gateway.component import RuntimeContext, Source
from gateway.registry import register

__all__ = [
    "AuthConfig",
    "BrowseSpec",
    "Deadband",
    "NodeSpec",
    "OpcUaConfig",
    "SecurityConfig",
    "create_source",
]


def create_source(config: Any, context: RuntimeContext) -> Source:
    """The registry's factory: builds the source (asyncua is imported only here, on first use)."""
    from connectors.opcua.source import OpcUaSource

    assert isinstance(config, OpcUaConfig)
    return OpcUaSource(config, context)


register("connector", "opcua", OpcUaConfig, create_source)
