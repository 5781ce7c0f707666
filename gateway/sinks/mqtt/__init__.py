"""MQTT sink (``type: mqtt`` under ``sinks:``): points published to a broker as a unified namespace,
from a durable buffer, each batch leaving it only once the broker acknowledged it. Registers
itself on import; see README.md and sample.yaml."""

from __future__ import annotations

from pydantic import BaseModel

from gateway.component import RuntimeContext, Sink
from gateway.registry import register
from gateway.sinks.mqtt.config import MqttSinkConfig

__all__ = ["MqttSinkConfig", "create"]


def create(config: BaseModel, context: RuntimeContext) -> Sink:
    """Build the sink from its validated config (the registry's factory)."""
    from gateway.sinks.mqtt.sink import MqttSink

    assert isinstance(config, MqttSinkConfig)
    return MqttSink(config, context)


register("sink", "mqtt", MqttSinkConfig, create)
