"""Config of the InfluxDB sink (``type: influxdb``): v2 write API, or v1 (``api: v1``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from gateway.settings import BufferedSinkConfig, StrictModel
from gateway.units import Duration

__all__ = ["InfluxDBConfig", "TlsOptions"]

_V1_KEYS = ("database", "retention_policy", "username", "password")
_V2_KEYS = ("org", "bucket", "token")


class TlsOptions(StrictModel):
    """How an ``https://`` store is trusted."""

    ca_file: Path | None = Field(
        default=None,
        description="PEM file of the CA that signed the store's certificate (default: the system's CAs).",
    )
    verify: bool = Field(
        default=True,
        description="Check the store's certificate and host name. Turn off only on a test bench, never in production.",
    )


class InfluxDBConfig(BufferedSinkConfig):
    """Writes line protocol to InfluxDB 2.x, 3.x, Cloud (and compatible stores) or InfluxDB 1.x."""

    type: Literal["influxdb"]
    api: Literal["v2", "v1"] = Field(
        default="v2",
        description="v2: the /api/v2/write API of InfluxDB 2.x, 3.x, Cloud and compatible stores "
        "(VictoriaMetrics…); v1: the /write API of InfluxDB 1.x.",
    )
    url: str = Field(description="Base URL of the store.", examples=["http://localhost:8086"])
    org: str | None = Field(default=None, description="v2: organization (InfluxDB 2.x and Cloud).")
    bucket: str | None = Field(default=None, description="v2: bucket (InfluxDB 3: database) to write to.")
    token: SecretStr | None = Field(
        default=None, description="v2: API token; write it as ${INFLUX_TOKEN} to keep it out of the file."
    )
    database: str | None = Field(default=None, description="v1: database to write to.")
    retention_policy: str | None = Field(default=None, description="v1: retention policy (default: the database's).")
    username: str | None = Field(default=None, description="v1: user name, when authentication is on.")
    password: SecretStr | None = Field(default=None, description="v1: password; write it as ${INFLUX1_PASSWORD}.")
    gzip: bool = Field(default=True, description="Compress each write (about 10x less traffic, a little CPU).")
    timeout: Duration = Field(default=10.0, description="Longest wait for the store to answer one write.")
    tls: TlsOptions = Field(default_factory=TlsOptions, description="Trust settings for an https:// url.")

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{value!r} is not an http:// or https:// URL, e.g. http://localhost:8086")
        if parts.query or parts.fragment:
            raise ValueError(f"{value!r}: give the base URL only, without ?query or #fragment")
        return value.rstrip("/")

    @field_validator("org", "bucket", "database", "retention_policy", "username", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("token", "password", mode="before")
    @classmethod
    def _empty_secret_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @model_validator(mode="after")
    def _check_api_keys(self) -> InfluxDBConfig:
        if self.api == "v2":
            wrong = [key for key in _V1_KEYS if getattr(self, key) is not None]
            if wrong:
                raise ValueError(
                    f"{', '.join(wrong)} {'is' if len(wrong) == 1 else 'are'} for api: v1 (InfluxDB 1.x); "
                    "with the v2 API give org, bucket and token, or add api: v1"
                )
            if self.bucket is None:
                raise ValueError("bucket is required with the v2 API (or add api: v1 and give database)")
        else:
            wrong = [key for key in _V2_KEYS if getattr(self, key) is not None]
            if wrong:
                raise ValueError(
                    f"{', '.join(wrong)} {'is' if len(wrong) == 1 else 'are'} for the v2 API; "
                    "with api: v1 give database (and username/password when authentication is on)"
                )
            if self.database is None:
                raise ValueError("database is required with api: v1")
            if (self.username is None) != (self.password is None):
                raise ValueError("give both username and password, or neither")
        return self

    @property
    def target(self) -> str:
        """Where points go, for messages: ``http://host:8086 bucket machines``."""
        if self.api == "v2":
            return f"{self.url} bucket {self.bucket}"
        rp = f" (retention policy {self.retention_policy})" if self.retention_policy else ""
        return f"{self.url} database {self.database}{rp}"
