"""Command topics (``commands:``): a value written through the API, published on the connector's link.

The payload is the value as text (``format: text``: ``O1002``, ``42``, ``12.5``, ``true``) or
``{"value": <value>}`` (``format: json``). There is nothing to read back on a broker: the
confirmation of a write is the broker's acknowledgement — PUBACK for QoS 1, PUBCOMP for QoS 2
(QoS 0 is sent and never confirmed, and says so). A write is only sent while the connector is
connected: a command queued for a broker that is away could reach the machine much later.
A broker's refusal (an ACL, MQTT 5 reason code ≥ 0x80) is the machine side's refusal, in words.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import orjson

from connectors.mqtt._client import LinkClosed, MqttLink, PublishError, PublishRefused
from connectors.mqtt.config import CommandConfig, MqttConfig
from gateway.mqtt.wire import Properties
from gateway.writes import DEFAULT_TIMEOUT, Value, WritableField, WriteOutcome, WriteResult, describe, infer_type

__all__ = ["CommandWriter", "payload"]


def payload(command: CommandConfig, value: Value) -> bytes:
    """The message a command's value is published as."""
    if command.format == "json":
        return orjson.dumps({"value": value})
    return describe(value).encode() if not isinstance(value, str) else value.encode()


class CommandWriter:
    """The writing ability of one MQTT connector: its command topics (:meth:`MqttSource.writer`)."""

    def __init__(self, config: MqttConfig, link: Callable[[], MqttLink | None]) -> None:
        self.config = config
        self._link = link
        self._commands = {command.name: command for command in config.commands}
        measurement = config.measurement or config.name
        self._fields = [
            WritableField(
                connector=config.name,
                field=command.name,
                measurement=command.measurement or measurement,
                tags={**config.tags, **command.tags},
                type=command.type or infer_type(command.write),
                limits=command.write,
                target=command.topic,
                timeout=command.write.timeout or DEFAULT_TIMEOUT,
                machine_type="MQTT command",
            )
            for command in config.commands
        ]

    @property
    def empty(self) -> bool:
        return not self._fields

    def writable_fields(self) -> Sequence[WritableField]:
        return self._fields

    async def write(self, field: WritableField, value: Value) -> WriteOutcome:
        command = self._commands[field.field]
        link = self._link()
        if link is None or not link.connected:
            return WriteOutcome(
                WriteResult.ERROR,
                "not connected to the broker now: nothing was sent (a command is never queued for later)",
                sent=False,
            )
        properties: Properties | None = None
        if command.expiry is not None:
            properties = {"message_expiry_interval": max(1, round(command.expiry))}
        try:
            await link.publish(
                command.topic, payload(command, value), qos=command.qos, retain=command.retain, properties=properties
            )
        except PublishRefused as exc:
            return WriteOutcome(
                WriteResult.REFUSED_BY_MACHINE,
                f"refused by the broker: {exc.reason} (reason code {exc.reason_code:#04x}; an ACL that does not let "
                "the gateway publish there?); nothing was delivered",
                code=exc.reason,
            )
        except LinkClosed:
            return WriteOutcome(
                WriteResult.ERROR,
                "the connection to the broker closed before it acknowledged the command: whether it was delivered "
                "is unknown",
            )
        except PublishError as exc:
            return WriteOutcome(WriteResult.ERROR, f"{exc}: whether the command was delivered is unknown")
        confirmation = {
            0: "sent at QoS 0 (a broker does not acknowledge QoS 0: not confirmed)",
            1: "published; the broker acknowledged it (PUBACK)",
            2: "published; the broker acknowledged it (PUBCOMP)",
        }[command.qos]
        return WriteOutcome(WriteResult.WRITTEN, confirmation)
