"""Sparkplug B connector (``type: sparkplug``): a host application; edge nodes' metrics → points.

See README.md in this folder for every option and sample.yaml for a commented example.
"""

from __future__ import annotations

from pydantic import BaseModel

from connectors.sparkplug.config import SparkplugConfig
from gateway.component import RuntimeContext, Source
from gateway.registry import register

__all__ = ["SparkplugConfig", "create"]


def create(config: BaseModel, context: RuntimeContext) -> Source:
    """Build the connector from its validated config (the registry's factory)."""
    from connectors.sparkplug.source import SparkplugSource

    assert isinstance(config, SparkplugConfig)
    return SparkplugSource(config, context)


register("connector", "sparkplug", SparkplugConfig, create)
