"""The ``gateway.http`` section: where the web page, API and /metrics listen, and who may see them.

On loopback (the default, ``127.0.0.1:8080``) no credential is needed: whoever is on the
gateway's own machine is trusted as admin. Listening anywhere else (``0.0.0.0:8080``, a LAN
address) requires at least one credential, so the page is never open to the plant network by
accident::

    gateway:
      http:
        listen: 0.0.0.0:8080
        auth:
          viewer: {username: officina, password: ${GATEWAY_VIEWER_PASSWORD}}
          admin: {token: ${GATEWAY_ADMIN_TOKEN}}

A **viewer** sees the overview, charts, series, the connections page and /metrics; an
**operator** also writes the fields connectors declare writable (``POST /api/write``); an
**admin** does both and also sees each connector's and sink's details and its configuration
(secrets masked).

Credentials beyond loopback should travel encrypted: ``tls: {cert: …, key: …}`` serves the page
and the API over HTTPS (without it the gateway warns at start and shows the admin a banner).
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, field_validator, model_validator

from gateway.http.display import DisplayCatalogue, FieldDisplay
from gateway.units import Duration

__all__ = ["AuthSettings", "Credential", "HttpSettings", "HttpTls", "OverviewSettings", "is_loopback"]

#: Shortest token or password accepted: guessable secrets would defeat the point of requiring one.
MIN_SECRET = 12


class _Strict(BaseModel):
    # Same policy as gateway.settings.StrictModel (imported from there it would be a cycle): a
    # number where text is expected is its text (``password: ${PW}`` with PW=918273645501234).
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)


class Credential(_Strict):
    """One role's credentials: a bearer token, a username and password, or both."""

    token: SecretStr = Field(
        default=SecretStr(""),
        description="Bearer token (Authorization: Bearer …), also accepted as the password of any username. "
        "Read it from the environment, e.g. ${GATEWAY_ADMIN_TOKEN}. Empty: no token. Never shown or logged.",
    )
    username: str = Field(default="", description="Username for the browser's login prompt (HTTP Basic).")
    password: SecretStr = Field(
        default=SecretStr(""), description="Password for that username, from the environment. Never shown or logged."
    )

    @model_validator(mode="after")
    def _check(self) -> Credential:
        if bool(self.username) != bool(self.password.get_secret_value()):
            raise ValueError("give both username and password, or neither")
        for what, value in (("token", self.token), ("password", self.password)):
            secret = value.get_secret_value()
            if secret and len(secret) < MIN_SECRET:
                raise ValueError(
                    f"the {what} is too short ({len(secret)} characters, at least {MIN_SECRET}); "
                    'make one with: python3 -c "import secrets; print(secrets.token_urlsafe(24))"'
                )
        return self

    @property
    def configured(self) -> bool:
        return bool(self.token.get_secret_value() or self.username)


class AuthSettings(_Strict):
    viewer: Credential = Field(default=Credential(), description="Read-only access: pages, series, charts, /metrics.")
    operator: Credential = Field(
        default=Credential(),
        description="Everything a viewer sees, plus writing the fields a connector declares writable "
        "(POST /api/write, gateway write), within their limits; every attempt is audited.",
    )
    admin: Credential = Field(
        default=Credential(), description="Everything a viewer sees, plus connector and sink details and config."
    )

    @property
    def configured(self) -> bool:
        return self.viewer.configured or self.operator.configured or self.admin.configured


class OverviewSettings(_Strict):
    group_by: list[str] = Field(
        default=["line", "machine"],
        min_length=1,
        description="Tags that make one card on the overview page: points sharing these tag values "
        "are one machine. Points with none of them get a card per measurement.",
    )
    state_fields: list[str] = Field(
        default=["state", "state_name", "mode_name"],
        min_length=1,
        description="Fields that carry a machine's state (running / idle / alarm, words like setup or fault, "
        "or 0 idle / 1 running / 2 alarm); the first one a machine has is used.",
    )
    offline_after: Duration = Field(
        default=60.0,
        description="A machine with no new data for this long is shown offline (one whose Sparkplug B edge "
        "node or device sent its death certificate is shown offline at once).",
    )
    key_fields: list[str] = Field(
        default=[],
        description="The fields a machine's card shows, in this order (field names, measurement.field, "
        "or wildcards such as zone*_temp); the machine page shows every field. Empty, or none of them "
        "present: the card shows the first 8 fields by name.",
    )
    fields: dict[str, FieldDisplay] = Field(
        default={},
        description="How the page names and formats fields: {spindle_speed: {label: {en: Spindle speed, "
        "it: Velocità mandrino}, unit: rpm, decimals: 0}}. Keys as in key_fields; the most specific wins.",
    )

    _catalogue: DisplayCatalogue = PrivateAttr()

    def model_post_init(self, context: Any, /) -> None:
        self._catalogue = DisplayCatalogue(self.fields, self.key_fields)

    @property
    def catalogue(self) -> DisplayCatalogue:
        """Labels, units and key-field order resolved for a (measurement, field)."""
        return self._catalogue


class HttpTls(_Strict):
    """HTTPS for the page, the API and /metrics: the server's certificate and its private key."""

    cert: Path = Field(
        description="PEM file of the server's certificate (followed by its intermediate CAs, if any).",
        examples=["/etc/gateway/tls/gateway.crt"],
    )
    key: Path = Field(
        description="PEM file of the certificate's private key.", examples=["/etc/gateway/tls/gateway.key"]
    )
    key_password: SecretStr | None = Field(
        default=None, description="Password of the key file, if it is encrypted (write ${GATEWAY_TLS_KEY_PASSWORD})."
    )

    @field_validator("key_password", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # `key_password: ${GATEWAY_TLS_KEY_PASSWORD:-}` with the variable unset: the key is not encrypted.
        return None if value == "" else value


class HttpSettings(_Strict):
    listen: str = Field(
        default="127.0.0.1:8080",
        description="host:port of the built-in web page, API and /metrics. Anything but loopback needs http.auth.",
    )
    auth: AuthSettings = Field(
        default=AuthSettings(), description="Credentials; required when listening beyond loopback."
    )
    overview: OverviewSettings = Field(default=OverviewSettings(), description="How the overview page groups cards.")
    enabled: bool = Field(default=True, description="Set to false to run without the web page, API and /metrics.")
    tls: HttpTls | None = Field(
        default=None,
        description="Serve over HTTPS with this certificate and key: {cert: server.crt, key: server.key}. "
        "Without it, credentials sent to a listen address beyond loopback travel in clear text.",
    )
    trusted_proxies: list[str] = Field(
        default=[],
        description="Addresses (or networks, 10.0.0.0/8) of reverse proxies whose X-Forwarded-For header names "
        "the real client, for the limit on failed logins. Empty (the default): the header is ignored and the "
        "client is the peer address (behind a proxy, the proxy's).",
    )

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"{value!r} is not host:port, e.g. 127.0.0.1:8080 or 0.0.0.0:8080")
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _check_proxies(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or network (e.g. 10.0.0.5 or 10.0.0.0/24)") from None
        return value

    @model_validator(mode="after")
    def _check_auth(self) -> HttpSettings:
        if self.enabled and not is_loopback(self.host) and not self.auth.configured:
            raise ValueError(
                f"listen {self.listen} is reachable from the network, so http.auth needs a credential: "
                "e.g. auth: {viewer: {token: ${GATEWAY_VIEWER_TOKEN}}} (or listen on 127.0.0.1)"
            )
        return self

    @property
    def plain_credentials(self) -> bool:
        """Credentials are required and would cross the network unencrypted (no TLS, beyond loopback)."""
        return self.enabled and self.auth.configured and self.tls is None and not is_loopback(self.host)

    @property
    def host(self) -> str:
        host = self.listen.rpartition(":")[0]
        return host[1:-1] if host.startswith("[") and host.endswith("]") else host

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``: only this machine can connect."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
