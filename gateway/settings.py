"""Config models shared by every component, and the ``gateway:`` section of a config file."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gateway.http.config import HttpSettings
from gateway.units import Duration, Size

__all__ = [
    "LEGACY_BUFFER_FOLDER",
    "AuditSettings",
    "BatchPolicy",
    "BufferSettings",
    "BufferedSinkConfig",
    "ComponentConfig",
    "ConnectorConfig",
    "DeclaredField",
    "GatewaySettings",
    "HttpSettings",
    "SinkConfig",
    "StrictModel",
]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class StrictModel(BaseModel):
    """Base of every config model: unknown keys are errors (a typo must not pass silently).

    A number written where text is expected is taken as its text (``tags: {line: 1}``,
    ``password: ${PW}`` with PW=123456).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)


class ComponentConfig(StrictModel):
    """What every connector and sink has: a unique name and a type."""

    name: str = Field(description="Unique name, used in logs, status and metrics.", examples=["cnc-01"])
    type: str

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(
                f"{value!r} is not a valid name: use letters, digits, '-', '_' and '.', starting with a letter or digit"
            )
        return value


@dataclasses.dataclass(frozen=True)
class DeclaredField:
    """A field whose type a connector's config states (``type: string`` …), so other sections can
    be checked against it before anything runs (a machine's counter must be a number)."""

    measurement: str
    field: str
    kind: Literal["number", "bool", "text"]
    #: key path of the declaration below the connector, e.g. ("topics", 0, "fields", "state")
    at: tuple[str | int, ...]
    #: tags every point of that field carries (as far as the config tells)
    tags: dict[str, str] = dataclasses.field(default_factory=dict)


class ConnectorConfig(ComponentConfig):
    """Options common to every connector."""

    sinks: list[str] | None = Field(
        default=None,
        description="Names of the sinks that receive this connector's points (default: all sinks).",
    )

    def declared_fields(self) -> Iterable[DeclaredField]:
        """The fields whose type this config states (default: none; the source decides at run time)."""
        return ()


class BatchPolicy(StrictModel):
    """How a sink groups points into writes (embedded in every sink's config)."""

    batch_size: int = Field(default=5000, ge=1, le=1_000_000, description="Most points in one write.")
    flush_interval: Duration = Field(default=1.0, description="Longest time a point waits for its batch to fill.")


class SinkConfig(ComponentConfig, BatchPolicy):
    """Options common to every sink."""


class BufferSettings(StrictModel):
    path: Path | None = Field(
        default=None,
        description="Folder of the on-disk buffers, one subfolder per sink (default: <data_dir>/buffer).",
    )
    max_size: Size = Field(default=2**30, description="Most disk the buffers may use, per sink.")
    overflow: Literal["drop_oldest", "block"] = Field(
        default="drop_oldest",
        description="When a buffer is full: drop its oldest points (counted) or slow the sources.",
    )

    def folder(self, data_dir: Path) -> Path:
        """Where the buffers live: ``path``, or ``<data_dir>/buffer``."""
        return self.path if self.path is not None else data_dir / "buffer"


#: Where buffers were written before ``data_dir`` decided it (relative to the working folder):
#: a buffer found there is moved to its sink's current folder and sent, never abandoned.
LEGACY_BUFFER_FOLDER = Path("data/buffer")


class BufferedSinkConfig(SinkConfig):
    """Options of a sink that the runtime feeds through a durable on-disk buffer (a network store)."""

    buffer: BufferSettings | None = Field(
        default=None,
        description="This sink's own buffer settings; keys given here override gateway.buffer.",
    )


class AuditSettings(StrictModel):
    """Where the audit trail of writes to machines is kept, and how much of it."""

    path: Path | None = Field(
        default=None,
        description="Folder of the audit files (default: <data_dir>/audit): audit.jsonl and its rotated files.",
    )
    max_size: Size = Field(
        default=10 * 2**20, ge=4096, description="Size at which audit.jsonl is rotated (renamed audit-<time>.jsonl)."
    )
    keep: int = Field(
        default=10,
        ge=1,
        description="Rotated audit files kept; beyond this the oldest is deleted (archive them if they must be "
        "kept longer).",
    )

    def folder(self, data_dir: Path) -> Path:
        """Where the audit files live: ``path``, or ``<data_dir>/audit``."""
        return self.path if self.path is not None else data_dir / "audit"


class GatewaySettings(StrictModel):
    name: str = Field(default="gateway", description="This gateway's name, in logs and status.")
    data_dir: Path = Field(
        default=Path("data"),
        description="Root of every file the gateway writes: buffers (<data_dir>/buffer), the "
        "embedded historian (<data_dir>/history.db), certificates (<data_dir>/pki), unless a "
        "component's own path says otherwise. Relative paths in the config are relative to the "
        "working directory. Changing it needs a restart of the gateway.",
    )
    http: HttpSettings = HttpSettings()
    buffer: BufferSettings = BufferSettings()
    shutdown_timeout: Duration = Field(default=30.0, description="How long a stop may take to flush what is pending.")
    audit: AuditSettings = Field(
        default=AuditSettings(), description="The audit trail of writes to machines (POST /api/write, gateway write)."
    )
