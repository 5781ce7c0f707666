"""Config of the Sparkplug B sink (``type: sparkplug`` under ``sinks:``): the gateway as an edge node.

The broker connection's options (URL, client id, protocol, credentials, TLS, keep-alive,
reconnection) are the shared :class:`~gateway.mqtt.config.BrokerConnection`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationInfo, field_validator

from gateway.mqtt.config import BrokerConnection
from gateway.settings import BufferedSinkConfig
from gateway.sparkplug.topics import check_id
from gateway.units import Duration

__all__ = ["SparkplugSinkConfig"]


class SparkplugSinkConfig(BufferedSinkConfig, BrokerConnection):
    """Publishes points as a Sparkplug B edge node (births, aliases, DDATA), from a durable buffer."""

    type: Literal["sparkplug"]
    group: str = Field(description="The Sparkplug group id the edge node belongs to.", examples=["Plant-A"])
    edge_node: str = Field(
        description="The edge node id: the gateway as hosts (Ignition) see it.", examples=["gateway-cell-1"]
    )
    device_tag: str = Field(
        default="machine",
        description="The tag whose value names the device (one DBIRTH and DDATA topic per device). A point "
        "without it goes to a device named after its measurement.",
        examples=["machine", "meter"],
    )
    qos: Literal[0, 1] = Field(
        default=1,
        description="1: a point leaves the buffer once the broker acknowledged its DDATA (PUBACK). 0, as the "
        "specification has it for births and data: once written to the network, lost if the connection drops.",
    )
    primary_host: str | None = Field(
        default=None,
        description="The host id of the primary host application (Ignition's, or another gateway's): births and "
        "data are published only while its STATE says online; meanwhile points wait in the buffer, and it "
        "receives the births again when it comes back. Default: publish whenever connected.",
        examples=["IgnitionTarget"],
    )
    timeout: Duration = Field(
        default=30.0,
        description="Longest wait for the broker to acknowledge a batch while connected; then the write is "
        "retried (the points stay in the buffer).",
    )

    @field_validator("group", "edge_node")
    @classmethod
    def _ids(cls, value: str, info: ValidationInfo) -> str:
        return check_id(value, str(info.field_name))

    @field_validator("primary_host")
    @classmethod
    def _primary(cls, value: str | None) -> str | None:
        return None if value is None else check_id(value, "primary_host")

    @field_validator("device_tag")
    @classmethod
    def _tag(cls, value: str) -> str:
        if not value:
            raise ValueError("device_tag cannot be empty: give the tag that names the machine, e.g. machine")
        return value
