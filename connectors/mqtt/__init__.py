"""MQTT connector (``type: mqtt``): topic filters on one broker → points, acknowledged after storage.

See README.md in this folder for every option and sample.yaml for a commented example.
"""

from __future__ import annotations

from pydantic import BaseModel

from connectors.mqtt.config import MqttConfig, TopicConfig
from gateway.component import RuntimeContext, Source
from gateway.registry import register

__all__ = ["MqttConfig", "TopicConfig", "create"]


def create(config: BaseModel, context: RuntimeContext) -> Source:
    """Build the connector from its validated config (the registry's factory)."""
    from connectors.mqtt.source import MqttSource

    assert isinstance(config, MqttConfig)
    return MqttSource(config, context)


register("connector", "mqtt", MqttConfig, create)
