"""Sparkplug B sink (``type: sparkplug``): the gateway as a Sparkplug B edge node (births, aliases,
DDATA with each point's time, NDEATH as the will), fed from the durable buffer and acknowledged
by the broker. Registers itself on import; see README.md and sample.yaml."""

from __future__ import annotations

from pydantic import BaseModel

from gateway.component import RuntimeContext
from gateway.registry import register
from gateway.sinks.sparkplug.config import SparkplugSinkConfig
from gateway.sinks.sparkplug.sink import SparkplugSink

__all__ = ["SparkplugSink", "SparkplugSinkConfig"]


def _build(config: BaseModel, context: RuntimeContext) -> SparkplugSink:
    assert isinstance(config, SparkplugSinkConfig)
    return SparkplugSink(config, context)


register("sink", "sparkplug", SparkplugSinkConfig, _build)
