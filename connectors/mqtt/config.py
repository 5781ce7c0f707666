"""The MQTT connector's configuration (``type: mqtt``): broker, session, and one entry per topic filter.

Every option is described here once; ``gateway schema``, the README and the error messages
all come from these models.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BeforeValidator, Field, SecretStr, field_validator, model_validator

from gateway.settings import ConnectorConfig, DeclaredField, StrictModel
from gateway.units import Duration, Size
from gateway.writes import WriteLimits

__all__ = [
    "CommandConfig",
    "FieldSpec",
    "MqttConfig",
    "TimeSpec",
    "TlsConfig",
    "TopicConfig",
    "check_filter",
    "split_share",
]

Qos = Literal[0, 1, 2]
TimeUnit = Literal["s", "ms", "us", "ns", "iso8601"]
FieldType = Literal["auto", "float", "int", "bool", "string"]

#: Largest MQTT topic (and filter), in UTF-8 bytes.
MAX_TOPIC_BYTES = 65535


def split_share(filter_: str) -> tuple[str | None, str]:
    """``$share/group/a/+`` → (``group``, ``a/+``); a plain filter → (None, filter)."""
    if filter_.startswith("$share/"):
        _, group, rest = [*filter_.split("/", 2), "", ""][:3]
        return group, rest
    return None, filter_


def check_filter(filter_: str) -> str:
    """Raise ValueError saying what is wrong with an MQTT topic filter; return it unchanged if valid."""
    if not filter_:
        raise ValueError("a topic filter cannot be empty")
    if "\x00" in filter_:
        raise ValueError(f"topic filter {filter_!r} contains a NUL character")
    if len(filter_.encode()) > MAX_TOPIC_BYTES:
        raise ValueError(f"topic filter is longer than {MAX_TOPIC_BYTES} bytes")
    group, inner = split_share(filter_)
    if group is not None:
        if not group or "+" in group or "#" in group:
            raise ValueError(
                f"shared subscription {filter_!r} needs a group name without '+' or '#': "
                "write $share/<group>/<filter>, e.g. $share/gateways/factory/#"
            )
        if not inner:
            raise ValueError(f"shared subscription {filter_!r} has no filter after the group: $share/<group>/<filter>")
    segments = inner.split("/")
    for index, segment in enumerate(segments):
        if "#" in segment and (segment != "#" or index != len(segments) - 1):
            raise ValueError(
                f"topic filter {filter_!r}: '#' must be a whole segment and the last one (e.g. factory/#), "
                f"found in segment {index} {segment!r}"
            )
        if "+" in segment and segment != "+":
            raise ValueError(
                f"topic filter {filter_!r}: '+' must be a whole segment (e.g. factory/+/energy), "
                f"found in segment {index} {segment!r}"
            )
    return filter_


class TlsConfig(StrictModel):
    """TLS for ``mqtts://`` brokers."""

    ca_file: Path | None = Field(
        default=None,
        description="PEM file of the certificate authority that signed the broker's certificate "
        "(default: the system's trusted authorities).",
    )
    cert_file: Path | None = Field(default=None, description="PEM client certificate, if the broker asks for one.")
    key_file: Path | None = Field(default=None, description="PEM private key of the client certificate.")
    key_password: SecretStr | None = Field(default=None, description="Password of key_file, if it is encrypted.")
    insecure: bool = Field(
        default=False,
        description="Accept any broker certificate and host name (encryption without authentication). "
        "Only for tests on a lab network; never the default.",
    )

    @model_validator(mode="after")
    def _pair(self) -> TlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together: give both (client certificate and its key) or none")
        return self


class TimeSpec(StrictModel):
    """Where a point's time comes from in the payload (without ``time``: the time of receipt)."""

    path: str = Field(
        description="Key path of the timestamp in the JSON payload: 'ts', 'meta.time', 'samples.0.t'.",
        examples=["ts"],
    )
    unit: TimeUnit = Field(
        default="ms",
        description="s, ms, us or ns since 1970-01-01 UTC (a number, or a string of digits), or iso8601 "
        "text such as 2024-05-01T12:00:00.250Z (without an offset it is read as UTC).",
    )

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        return _check_path(value)


class FieldSpec(StrictModel):
    """One field picked from a JSON payload, with the type to store it as."""

    path: str = Field(description="Key path in the JSON payload: 'p', 'power.total', 'phases.0.voltage'.")
    type: FieldType = Field(
        default="auto",
        description="auto keeps the JSON type (numbers per the topic's `numbers` option); float, int, bool "
        "and string convert (a numeric string to a number, 0/1 to a bool) and make anything else malformed.",
    )

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        return _check_path(value)


def _check_path(value: str) -> str:
    if not value or any(not part for part in value.split(".")):
        raise ValueError(f"{value!r} is not a key path: write keys separated by dots, e.g. ts, meta.time, phases.0.v")
    return value


def _field_spec(value: Any) -> Any:
    return {"path": value} if isinstance(value, str) else value


#: A field is a key path (``power_w: p``) or a FieldSpec (``{path: p, type: float}``); the JSON
#: Schema says both, so editors accept the short form too.
FieldEntry = Annotated[FieldSpec, BeforeValidator(_field_spec, json_schema_input_type=str | FieldSpec)]


class TopicConfig(StrictModel):
    """One topic filter and how to turn its messages into points."""

    filter: str = Field(
        description="MQTT topic filter; '+' matches one segment, '#' the rest (last segment only). "
        "$share/<group>/<filter> is an MQTT 5 shared subscription (several gateways split the messages).",
        examples=["factory/+/energy/+", "plant/#", "$share/gateways/factory/#"],
    )
    qos: Qos | None = Field(default=None, description="QoS of this subscription (default: the connector's qos).")
    format: Literal["json", "value", "influx"] = Field(
        default="json",
        description="json: fields picked from a JSON object (or one point per object of a JSON array); "
        "value: the payload is one number, true/false or text; influx: the payload is line protocol.",
    )
    measurement: str | None = Field(
        default=None,
        description="Measurement of the points (default: the connector's measurement, else the connector's "
        "name). With format influx, replaces the measurement written in the payload.",
    )
    tags_from_topic: dict[str, int] = Field(
        default_factory=dict,
        description="Tag name → topic segment index (0 is the first segment; -1 the last). With the filter "
        "factory/+/energy/+ and topic factory/A/energy/m7, {line: 1, meter: 3} gives line=A, meter=m7. "
        "An empty segment (a//b) gives no tag.",
    )
    tags: dict[str, str] = Field(default_factory=dict, description="Static tags added to every point of this filter.")
    tags_from_payload: dict[str, str] = Field(
        default_factory=dict,
        description="json only: tag name → key path of a value in the payload (e.g. {machine: id}).",
    )
    time: TimeSpec | None = Field(
        default=None,
        description="json only: where the timestamp is in the payload. Without it, the time of receipt is used "
        "(format influx: the line's own timestamp when it has one).",
    )
    fields: dict[str, FieldEntry] | None = Field(
        default=None,
        description="json only: field name → key path ('p', 'power.total', 'phases.0.v'), or "
        "{path: ..., type: float|int|bool|string}. Omitted: every number, boolean and text at the top level "
        "(every leaf, with flatten).",
    )
    flatten: bool = Field(
        default=False,
        description="json only: nested objects become fields named by their path joined with '_' "
        "(axes.x.pos → axes_x_pos); a picked field that is an object is flattened under its name.",
    )
    records: str | None = Field(
        default=None,
        description="json only: key path of a list of objects inside the payload, one point each "
        "(a payload that is itself a JSON array always gives one point per element).",
    )
    numbers: Literal["float", "auto"] = Field(
        default="float",
        description="json and value: float stores every number as a float (a sensor sending 21 then 21.5 would "
        "otherwise create two field types, which InfluxDB refuses); auto keeps integers as integers.",
    )
    field: str = Field(default="value", description="value only: the name of the field.")

    @field_validator("filter")
    @classmethod
    def _filter(cls, value: str) -> str:
        return check_filter(value)

    @field_validator("tags_from_payload")
    @classmethod
    def _payload_tags(cls, value: dict[str, str]) -> dict[str, str]:
        for path in value.values():
            _check_path(path)
        return value

    @field_validator("records")
    @classmethod
    def _records(cls, value: str | None) -> str | None:
        return None if value is None else _check_path(value)

    @model_validator(mode="after")
    def _consistent(self) -> TopicConfig:
        if self.format != "json":
            used = [
                key
                for key in ("time", "fields", "records", "tags_from_payload")
                if getattr(self, key) not in (None, {}, [])
            ] + (["flatten"] if self.flatten else [])
            if used:
                raise ValueError(f"{', '.join(used)}: only for format json (this filter has format {self.format})")
        if self.fields is not None and not self.fields:
            raise ValueError("fields is empty: name at least one field, or leave fields out to take every value")
        segments = split_share(self.filter)[1].split("/")
        fixed = "#" not in segments
        for tag, index in self.tags_from_topic.items():
            if fixed and not -len(segments) <= index < len(segments):
                raise ValueError(
                    f"tags_from_topic.{tag}: segment {index} does not exist in {self.filter!r}, which has "
                    f"{len(segments)} segments (0 to {len(segments) - 1})"
                )
        return self

    @property
    def topic_filter(self) -> str:
        """The filter without its ``$share/<group>/`` prefix (what topics are matched against)."""
        return split_share(self.filter)[1]


def topic_matches(filter_: str, topic: str) -> bool:
    """MQTT's rule: does ``topic`` match ``filter_`` (``+`` one level, ``#`` the rest)."""
    parts, levels = split_share(filter_)[1].split("/"), topic.split("/")
    for index, part in enumerate(parts):
        if part == "#":
            return not (index == 0 and topic.startswith("$"))
        if index >= len(levels) or (part != "+" and part != levels[index]):
            return False
        if part == "+" and index == 0 and topic.startswith("$"):
            return False
    return len(parts) == len(levels)


class CommandConfig(StrictModel):
    """A command topic: a value written through the API is published there (``commands:``)."""

    name: str = Field(description="The field name writes use (POST /api/write, gateway write).", examples=["order"])
    topic: str = Field(
        description="The topic the value is published to (no wildcards).", examples=["plant/L1/press-02/cmd/order"]
    )
    qos: Qos = Field(
        default=1,
        description="1 or 2: the write is confirmed by the broker's acknowledgement (PUBACK, PUBCOMP); 0: sent, "
        "never confirmed.",
    )
    retain: bool = Field(
        default=False,
        description="Publish retained (a machine that connects later still gets the last command). Off by default: "
        "a restarted machine would act on an old command again.",
    )
    format: Literal["text", "json"] = Field(
        default="text",
        description='text: the payload is the value as text (O1002, 42, 12.5, true); json: {"value": <value>}.',
    )
    type: Literal["string", "number", "integer", "boolean"] | None = Field(
        default=None,
        description="What the command takes (default: what write implies: the allowed values' type, text for a "
        "pattern, a number for min/max, else text).",
    )
    expiry: Duration | None = Field(
        default=None,
        gt=0,
        description="MQTT 5 message expiry: the broker drops the command if no subscriber took it within this "
        "time (a machine that was off does not act on it hours later).",
    )
    measurement: str | None = Field(
        default=None,
        description="The measurement of the machine this command belongs to, so the web page offers it on that "
        "machine's card (default: the connector's measurement).",
    )
    tags: dict[str, str] = Field(
        default_factory=dict, description="The machine's tags (e.g. {machine: press-02}), with the connector's tags."
    )
    write: WriteLimits = Field(
        description="The limits a value must meet before it is published: {pattern: ...}, {allowed: [...]}, "
        "{min: 0, max: 100}; write: {} for none."
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_.-]*$", value):
            raise ValueError(f"{value!r} is not a usable name: use letters, digits, '_', '.' and '-'")
        return value

    @field_validator("topic")
    @classmethod
    def _topic(cls, value: str) -> str:
        if not value or "+" in value or "#" in value or "\x00" in value:
            raise ValueError(f"{value!r} is not a topic to publish to: no wildcards (+, #), not empty")
        if len(value.encode()) > MAX_TOPIC_BYTES:
            raise ValueError(f"the topic is longer than {MAX_TOPIC_BYTES} bytes")
        return value


class MqttConfig(ConnectorConfig):
    """An MQTT connector: one broker connection, one session, several topic filters."""

    type: Literal["mqtt"]
    broker: str = Field(
        description="mqtt://host[:port] (default port 1883) or mqtts://host[:port] for TLS (default 8883).",
        examples=["mqtt://localhost:1883", "mqtts://broker.plant.local:8883"],
    )
    client_id: str | None = Field(
        default=None,
        description="MQTT client id. With qos 1 or 2 the broker keeps a persistent session under this id and "
        "queues messages while the gateway is away. Default: '<gateway name>-<connector name>'. Two clients "
        "with the same id throw each other off the broker: give every gateway instance its own.",
        examples=["gw-lab-cell-1"],
    )
    qos: Qos = Field(
        default=1,
        description="0: at most once (lost while the gateway is away); 1: at least once, acknowledged only after "
        "the points are stored (the no-loss setting); 2: exactly once between broker and gateway.",
    )
    protocol: Literal["5", "3.1.1"] = Field(
        default="5",
        description="MQTT protocol version. With 5 the gateway's receive_maximum sets how many unacknowledged "
        "QoS 1/2 messages the broker sends at once; with 3.1.1 the broker's own limit applies (mosquitto: "
        "max_inflight_messages, 20 by default), which caps throughput when acknowledging after storage.",
    )
    username: str | None = Field(default=None, description="User name, e.g. ${MQTT_USER}.")
    password: SecretStr | None = Field(default=None, description="Password, e.g. ${MQTT_PASSWORD} (never logged).")
    tls: TlsConfig | None = Field(default=None, description="TLS options for mqtts:// (default: system CAs).")
    keepalive: Duration = Field(default=30.0, description="MQTT keep-alive: how soon a dead connection is noticed.")
    clean_start: bool | None = Field(
        default=None,
        description="Start a new session at every connection, forgetting what the broker queued. Default: false "
        "with qos 1 or 2 (persistent session), true with qos 0.",
    )
    session_expiry: Duration = Field(
        default=7 * 86400.0,
        description="MQTT 5: how long the broker keeps the session (and queues messages) while the gateway is "
        "away. The broker may cap it.",
    )
    receive_maximum: int = Field(
        default=65535,
        ge=1,
        le=65535,
        description="MQTT 5: most QoS 1/2 messages the broker sends before the gateway acknowledges them. "
        "Acknowledgements wait for storage, so a large window keeps the stream flowing.",
    )
    reconnect_min: Duration = Field(default=1.0, description="First delay before reconnecting to the broker.")
    reconnect_max: Duration = Field(default=60.0, description="Longest delay between reconnection attempts.")
    max_payload_size: Size = Field(
        default=256 * 1024,
        description="Larger payloads are counted as malformed and skipped (e.g. 256KiB).",
    )
    max_buffered: int = Field(
        default=200_000,
        ge=1000,
        description="QoS 0 only: most messages held while the stores are slower than the broker; beyond it "
        "QoS 0 messages are dropped and counted (QoS 1/2 are bounded by the broker's window instead).",
    )
    measurement: str | None = Field(
        default=None, description="Default measurement of every filter (default: the connector's name)."
    )
    tags: dict[str, str] = Field(default_factory=dict, description="Static tags added to every point.")
    topics: list[TopicConfig] = Field(min_length=1, description="The topic filters to subscribe to.")
    commands: list[CommandConfig] = Field(
        default_factory=list,
        description="Command topics: a value written through the API (POST /api/write, gateway write) is published "
        "there, within its limits, and confirmed by the broker's acknowledgement; every attempt is audited.",
    )

    @field_validator("protocol", mode="before")
    @classmethod
    def _protocol(cls, value: Any) -> Any:
        # YAML reads `protocol: 5` as a number and `protocol: 3.1.1` as text.
        if value in (5, 5.0):
            return "5"
        if value in ("311", 311, "3"):
            return "3.1.1"
        return value

    @field_validator("username", "password", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        # `username: ${MQTT_USER:-}` with the variable unset means: no user name.
        return None if value == "" else value

    @field_validator("broker")
    @classmethod
    def _broker(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError(f"{value!r} is not a broker URL: write mqtt://host:1883, or mqtts://host:8883 for TLS")
        try:
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError:
            raise ValueError(f"{value!r} has an invalid port: write mqtt://host:1883") from None
        if parts.username or parts.password:
            raise ValueError(f"{value!r}: put credentials in username and password (from ${{ENV}}), not in the URL")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError(f"{value!r}: a broker URL has no path or query: write mqtt://host:1883")
        return value

    @field_validator("client_id")
    @classmethod
    def _client_id(cls, value: str | None) -> str | None:
        if value is not None and (not value or len(value.encode()) > 65535):
            raise ValueError("client_id must be 1 to 65535 bytes")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> MqttConfig:
        if self.tls is not None and not self.broker.startswith("mqtts://"):
            raise ValueError(f"tls options are set but broker {self.broker!r} is not mqtts://")
        if self.reconnect_min <= 0 or self.reconnect_max < self.reconnect_min:
            raise ValueError("reconnect_min must be above 0 and at most reconnect_max")
        filters = [topic.filter for topic in self.topics]
        for filter_ in filters:
            if filters.count(filter_) > 1:
                raise ValueError(f"topic filter {filter_!r} is listed twice")
        names = [command.name for command in self.commands]
        for index, command in enumerate(self.commands):
            if names.count(command.name) > 1:
                raise ValueError(f"commands[{index}]: the name {command.name!r} is used by two commands")
            if command.expiry is not None and self.protocol != "5":
                raise ValueError(f"commands[{index}].expiry needs MQTT 5 (protocol: 5): 3.1.1 has no message expiry")
            clash = next((f for f in filters if topic_matches(f, command.topic)), None)
            if clash is not None:
                raise ValueError(
                    f"commands[{index}]: topic {command.topic!r} matches the topic filter {clash!r} of this connector: "
                    "the gateway would read its own commands back as data; publish commands under another topic"
                )
        return self

    # --- derived values -------------------------------------------------------------------

    @property
    def tls_enabled(self) -> bool:
        return self.broker.startswith("mqtts://")

    @property
    def host(self) -> str:
        return urlsplit(self.broker).hostname or "localhost"

    @property
    def port(self) -> int:
        return urlsplit(self.broker).port or (8883 if self.tls_enabled else 1883)

    @property
    def persistent(self) -> bool:
        """True when the broker keeps the session (and queues messages) between connections."""
        if self.clean_start is not None:
            return not self.clean_start
        return max([self.qos, *(t.qos for t in self.topics if t.qos is not None)]) >= 1

    def declared_fields(self) -> Iterator[DeclaredField]:
        """JSON fields given a type (``{path: state, type: string}``), for checks of other sections."""
        kinds: dict[str, Literal["number", "bool", "text"]] = {
            "float": "number",
            "int": "number",
            "bool": "bool",
            "string": "text",
        }
        for index, topic in enumerate(self.topics):
            measurement = topic.measurement or self.measurement or self.name
            for name, spec in (topic.fields or {}).items():
                kind = kinds.get(spec.type)
                if kind is not None:
                    yield DeclaredField(
                        measurement, name, kind, ("topics", index, "fields", name), {**self.tags, **topic.tags}
                    )
