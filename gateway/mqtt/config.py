"""The options of a connection to an MQTT broker, offered the same way by every MQTT component.

:class:`BrokerConnection` is a config model to inherit from (the MQTT sink does): broker URL,
client id, protocol version, user name and password, TLS (:class:`TlsConfig`), keep-alive,
session and reconnection; :meth:`BrokerConnection.link_options` turns them into the
:class:`~gateway.mqtt.link.LinkOptions` of a link. Descriptions here are what ``gateway schema``
and the error messages show.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from gateway.mqtt.link import LinkOptions, Will, tls_context
from gateway.settings import StrictModel
from gateway.units import Duration

__all__ = ["BrokerConnection", "TlsConfig", "check_broker_url"]


def check_broker_url(value: str) -> str:
    """Raise ValueError saying what is wrong with a broker URL; return it unchanged if valid."""
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


class BrokerConnection(StrictModel):
    """One connection to an MQTT broker, with its session."""

    broker: str = Field(
        description="mqtt://host[:port] (default port 1883) or mqtts://host[:port] for TLS (default 8883).",
        examples=["mqtt://localhost:1883", "mqtts://uns.lab.local:8883"],
    )
    client_id: str | None = Field(
        default=None,
        description="MQTT client id; fixed, so that the broker keeps this client's session between connections. "
        "Two clients with the same id throw each other off the broker: give every gateway instance, and every "
        "MQTT connector and sink of one gateway, its own.",
        examples=["gw-lab-uns"],
    )
    protocol: Literal["5", "3.1.1"] = Field(
        default="5",
        description="MQTT protocol version: 5 (reason codes for refused messages, message expiry) or 3.1.1.",
    )
    username: str | None = Field(default=None, description="User name, e.g. ${MQTT_USER}.")
    password: SecretStr | None = Field(default=None, description="Password, e.g. ${MQTT_PASSWORD} (never logged).")
    tls: TlsConfig | None = Field(default=None, description="TLS options for mqtts:// (default: system CAs).")
    keepalive: Duration = Field(default=30.0, description="MQTT keep-alive: how soon a dead connection is noticed.")
    clean_start: bool | None = Field(
        default=None,
        description="Start a new session at every connection. Default: false with qos 1 or 2 (persistent "
        "session), true with qos 0.",
    )
    session_expiry: Duration = Field(
        default=7 * 86400.0,
        description="MQTT 5: how long the broker keeps the session while the gateway is away. The broker may "
        "cap it.",
    )
    reconnect_min: Duration = Field(default=1.0, description="First delay before reconnecting to the broker.")
    reconnect_max: Duration = Field(default=60.0, description="Longest delay between reconnection attempts.")
    connect_timeout: Duration = Field(
        default=10.0, description="Longest wait for the broker to accept a connection (TCP, TLS and CONNACK)."
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
        return check_broker_url(value)

    @field_validator("client_id")
    @classmethod
    def _client_id(cls, value: str | None) -> str | None:
        if value is not None and (not value or len(value.encode()) > 65535):
            raise ValueError("client_id must be 1 to 65535 bytes")
        return value

    @model_validator(mode="after")
    def _check_connection(self) -> BrokerConnection:
        if self.tls is not None and not self.broker.startswith("mqtts://"):
            raise ValueError(f"tls options are set but broker {self.broker!r} is not mqtts://")
        if self.reconnect_min <= 0 or self.reconnect_max < self.reconnect_min:
            raise ValueError("reconnect_min must be above 0 and at most reconnect_max")
        if self.connect_timeout <= 0:
            raise ValueError("connect_timeout must be above 0")
        return self

    @property
    def tls_enabled(self) -> bool:
        return self.broker.startswith("mqtts://")

    @property
    def host(self) -> str:
        return urlsplit(self.broker).hostname or "localhost"

    @property
    def port(self) -> int:
        return urlsplit(self.broker).port or (8883 if self.tls_enabled else 1883)

    def link_options(
        self, client_id: str, *, persistent: bool, max_inflight: int = 65535, will: Will | None = None
    ) -> LinkOptions:
        """The link's options (raises SourceError for TLS files that cannot be used).

        ``persistent``: the session the component wants when ``clean_start`` is not given.
        """
        keep = not self.clean_start if self.clean_start is not None else persistent
        return LinkOptions(
            host=self.host,
            port=self.port,
            client_id=client_id,
            protocol=self.protocol,
            ssl=tls_context(self.tls) if self.tls_enabled else None,
            username=self.username,
            password=self.password.get_secret_value() if self.password is not None else None,
            keepalive=self.keepalive,
            clean_start=not keep,
            session_expiry=min(int(self.session_expiry), 0xFFFFFFFF) if keep else 0,
            max_inflight=max_inflight,
            reconnect_min=self.reconnect_min,
            reconnect_max=self.reconnect_max,
            connect_timeout=self.connect_timeout,
            will=will,
        )
