"""The Sparkplug B connector's configuration (``type: sparkplug`` under ``connectors:``).

The broker connection's options (URL, client id, protocol, credentials, TLS, keep-alive,
reconnection) are the shared :class:`~gateway.mqtt.config.BrokerConnection`, written as for the
MQTT connector. Every option is described here once; ``gateway schema``, the README and the
error messages come from it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from gateway.mqtt.config import BrokerConnection
from gateway.settings import ConnectorConfig
from gateway.sparkplug.topics import NAMESPACE, check_id
from gateway.units import Duration

__all__ = ["SparkplugConfig"]


class SparkplugConfig(ConnectorConfig, BrokerConnection):
    """A Sparkplug B host application: the edge nodes of one group (or of every group) → points."""

    type: Literal["sparkplug"]
    group: str = Field(
        default="+",
        description="The Sparkplug group id whose edge nodes are read, or + for every group. The connector "
        f"subscribes to {NAMESPACE}/<group>/#.",
        examples=["Plant-A", "+"],
    )
    host_id: str | None = Field(
        default=None,
        description=f"This host application's id: its STATE ({NAMESPACE}/STATE/<host_id>, online true/false, "
        "retained) tells edge nodes configured with it as their primary host whether the gateway is there. "
        "Default: the client id.",
        examples=["gateway-historian"],
    )
    measurement: str = Field(default="sparkplug", description="Measurement of every point.")
    qos: Literal[0, 1] = Field(
        default=1,
        description="QoS of the subscription. Edge nodes publish births and data at QoS 0 (the specification), "
        "deaths at QoS 1; a message is delivered at the lower of the two.",
    )
    max_held: int = Field(
        default=1000,
        ge=0,
        le=1_000_000,
        description="Most data messages held per edge node while its birth is missing (the gateway started "
        "after it, or a DBIRTH was lost); beyond, the oldest are dropped and counted (held_dropped). They are "
        "decoded once the birth arrives.",
    )
    rebirth_interval: Duration = Field(
        default=30.0,
        description="A rebirth request (NCMD Node Control/Rebirth) goes out once per episode of trouble "
        "(data before its birth, a sequence gap, an unknown alias); if no birth follows, it is repeated at "
        "most this often.",
    )

    @field_validator("group")
    @classmethod
    def _group(cls, value: str) -> str:
        return value if value == "+" else check_id(value, "group")

    @field_validator("host_id")
    @classmethod
    def _host_id(cls, value: str | None) -> str | None:
        return None if value is None else check_id(value, "host_id")

    @field_validator("rebirth_interval")
    @classmethod
    def _interval(cls, value: float) -> float:
        if value < 1.0:
            raise ValueError("rebirth_interval must be at least 1s (an edge node is not to be flooded with requests)")
        return value
