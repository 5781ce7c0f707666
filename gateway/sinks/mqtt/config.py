"""Config of the MQTT sink (``type: mqtt`` under ``sinks:``): the broker, the topic template, QoS.

The broker connection's options (URL, client id, protocol, credentials, TLS, session,
reconnection) are the shared :class:`~gateway.mqtt.config.BrokerConnection`, written the same
way as the MQTT connector's.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from gateway.mqtt.config import BrokerConnection, TlsConfig
from gateway.settings import BufferedSinkConfig
from gateway.sinks.mqtt.topic import TopicTemplate
from gateway.units import Duration

__all__ = ["MqttSinkConfig", "TlsConfig"]


class MqttSinkConfig(BufferedSinkConfig, BrokerConnection):
    """Publishes points to an MQTT broker (a unified namespace), from a durable buffer, acknowledged."""

    type: Literal["mqtt"]
    topic: str = Field(
        description="Topic template: {measurement}, {field} and tag names in braces, e.g. "
        "lab/{line}/{machine}/{measurement}/{field}. With {field}, one message per field "
        '({"timestamp_ms": …, "value": …}); without, one message per point with every field. '
        "{machine|meter} takes the first tag the point has; {{ and }} are literal braces. Values are made "
        "safe topic levels ('/', '+', '#' and control characters become '_'). A point without a tag the "
        "template needs is skipped and counted (points_missing_tag).",
        examples=["lab/{line}/{machine}/{measurement}/{field}", "plant/{site}/{line}/{machine|meter}/{measurement}"],
    )
    qos: Literal[0, 1, 2] = Field(
        default=1,
        description="1: a point leaves the buffer once the broker acknowledged it (PUBACK), at least once; "
        "2: at the end of the QoS 2 handshake (PUBCOMP), exactly once between the gateway and the broker; "
        "0: as soon as it is written to the network, with no acknowledgement (lost if the connection drops).",
    )
    retain: bool = Field(
        default=False,
        description="Publish retained messages: the broker keeps the last one of each topic and hands it to "
        "every new subscriber at once (the current value of each tag in a UNS).",
    )
    timestamp_ns: bool = Field(
        default=False,
        description='Also put the exact time in integer nanoseconds ("timestamp_ns") beside "timestamp_ms", '
        "which drops precision finer than a millisecond.",
    )
    message_expiry: Duration | None = Field(
        default=None,
        description="MQTT 5: the broker discards a message not delivered within this long (e.g. 1h), so a "
        "subscriber that was away for a week does not get a week of stale values. Default: never.",
    )
    max_inflight: int = Field(
        default=1000,
        ge=1,
        le=65535,
        description="Most QoS 1/2 messages sent and not yet acknowledged; the broker's own receive maximum "
        "applies too (MQTT 5). Lower it for brokers that limit unacknowledged messages per client over MQTT "
        "3.1.1 (EMQX's max_awaiting_rel, 100 by default, for QoS 2).",
    )
    timeout: Duration = Field(
        default=30.0,
        description="Longest wait for the broker to acknowledge a batch while connected; then the write is "
        "retried (the points stay in the buffer).",
    )
    flush_interval: Duration = Field(
        default=0.1,
        description="Longest time a point waits for its batch to fill (short: UNS consumers expect live values).",
    )

    @field_validator("topic")
    @classmethod
    def _topic(cls, value: str) -> str:
        TopicTemplate(value)  # raises ValueError saying what is wrong
        return value

    @model_validator(mode="after")
    def _check_sink(self) -> MqttSinkConfig:
        if self.message_expiry is not None:
            if self.protocol != "5":
                raise ValueError("message_expiry needs protocol 5 (MQTT 3.1.1 has no message expiry)")
            if not 1 <= self.message_expiry <= 0xFFFFFFFF:
                raise ValueError("message_expiry must be between 1s and about 136 years")
        if self.timeout <= 0:
            raise ValueError("timeout must be above 0")
        return self

    @property
    def persistent(self) -> bool:
        """True when the broker keeps the session between connections."""
        if self.clean_start is not None:
            return not self.clean_start
        return self.qos >= 1
