"""The MQTT connector's side of the link: :class:`LinkOptions` built from the connector's config.

The link itself moved to :mod:`gateway.mqtt.link`, shared by the MQTT connector, the MQTT sink
and Sparkplug B (a sink must not import a connector). This module re-exports the link's public
names for code written against the old path, and adds :meth:`LinkOptions.from_config`, which
reads the connector's own config model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.mqtt import link as _link
from gateway.mqtt.link import (
    ConnectionLost,
    Incoming,
    LinkClosed,
    LinkEvents,
    MqttLink,
    PublishError,
    PublishRefused,
    Subscription,
    TlsFiles,
    Will,
    connect_error_message,
    tls_context,
)

if TYPE_CHECKING:
    from connectors.mqtt.config import MqttConfig

__all__ = [
    "ConnectionLost",
    "Incoming",
    "LinkClosed",
    "LinkEvents",
    "LinkOptions",
    "MqttLink",
    "PublishError",
    "PublishRefused",
    "Subscription",
    "TlsFiles",
    "Will",
    "connect_error_message",
    "tls_context",
]


class LinkOptions(_link.LinkOptions):
    """:class:`gateway.mqtt.link.LinkOptions`, with :meth:`from_config` for the MQTT connector."""

    __slots__ = ()

    @classmethod
    def from_config(cls, config: MqttConfig, client_id: str) -> LinkOptions:
        """The connector's options (raises SourceError for TLS files that cannot be used)."""
        v5 = config.protocol == "5"
        subscriptions = tuple(
            # retain handling 1: retained messages only for a new subscription, not at every reconnect.
            Subscription(t.filter, t.qos if t.qos is not None else config.qos, retain_handling=1 if v5 else 0)
            for t in config.topics
        )
        return cls(
            host=config.host,
            port=config.port,
            client_id=client_id,
            protocol=config.protocol,
            ssl=tls_context(config.tls) if config.tls_enabled else None,
            username=config.username,
            password=config.password.get_secret_value() if config.password is not None else None,
            keepalive=config.keepalive,
            clean_start=not config.persistent,
            session_expiry=min(int(config.session_expiry), 0xFFFFFFFF) if config.persistent else 0,
            receive_maximum=config.receive_maximum,
            reconnect_min=config.reconnect_min,
            reconnect_max=config.reconnect_max,
            max_buffered=config.max_buffered,
            subscriptions=subscriptions,
        )
