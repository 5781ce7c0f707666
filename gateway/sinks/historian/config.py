"""The embedded historian's configuration (``type: historian``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from gateway.settings import SinkConfig
from gateway.units import Duration

__all__ = ["HistorianConfig"]


class HistorianConfig(SinkConfig):
    """A local SQLite file that stores every point: the default store, no server needed."""

    type: Literal["historian"] = Field(description="The embedded historian.")
    path: Path | None = Field(
        default=None,
        description="The historian file (created with its folder if missing); default "
        "<gateway.data_dir>/history.db. A relative path is relative to the folder the gateway is "
        "started from.",
        examples=["./data/history.db"],
    )
    retention: Duration | None = Field(
        default=None,
        description="How long values are kept (e.g. 30d); older ones are deleted every "
        "retention_check. Not set: keep everything.",
        examples=["30d"],
    )
    retention_check: Duration = Field(
        default=3600.0,
        gt=0,
        description="How often old values are deleted (in small steps between writes).",
    )
    synchronous: Literal["normal", "full"] = Field(
        default="normal",
        description="normal: a stored point survives a crash or kill of the gateway; after a power "
        "loss the last seconds of writes may be missing. full: it also survives a power loss (an "
        "fsync per batch: slower, and harder on SD cards).",
    )
    batch_size: int = Field(
        default=10_000, ge=1, le=1_000_000, description="Most points in one write (one transaction)."
    )
    flush_interval: Duration = Field(
        default=0.25,
        description="Longest time a point waits for its batch to fill. Longer means fewer, larger "
        "transactions (fewer disk writes), shorter means quicker acknowledgements (MQTT QoS 1/2 "
        "messages are acknowledged once stored).",
    )

    def file(self, data_dir: Path) -> Path:
        """The historian file: ``path``, or ``<data_dir>/history.db``."""
        return self.path if self.path is not None else data_dir / "history.db"

    @field_validator("retention")
    @classmethod
    def _check_retention(cls, value: float | None) -> float | None:
        if value is not None and value < 60:
            raise ValueError("retention must be at least 1m (or left out to keep everything)")
        return value
