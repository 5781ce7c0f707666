"""Response models of the JSON API: they are the OpenAPI spec (``/api/openapi.json``).

Times are Unix **milliseconds** (what JavaScript's ``Date`` takes; nanoseconds do not fit in a
JavaScript number), except ``*_at``/``since`` fields which are Unix seconds with a fraction.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

__all__ = [
    "Bucket",
    "CardOut",
    "CardValueOut",
    "ComponentDetailOut",
    "ComponentOut",
    "ConfigOut",
    "DeviceOut",
    "GatewayOut",
    "Health",
    "OverviewOut",
    "RangeOut",
    "Readiness",
    "ReloadOut",
    "SeriesOut",
    "StatusOut",
    "WhoAmI",
]

Value = float | int | bool | str


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class NotReady(BaseModel):
    kind: str
    name: str
    state: str
    last_error: str | None = None


class Readiness(BaseModel):
    ready: bool = Field(description="True when every connector and sink is running.")
    not_ready: list[NotReady] = Field(description="Components not in their expected state.")


class WhoAmI(BaseModel):
    role: Literal["viewer", "admin"]
    auth: bool = Field(description="False when no credential is configured (loopback only).")


class ReloadOut(BaseModel):
    """One reload attempt."""

    at: float = Field(description="When it was asked for (Unix seconds).")
    trigger: Literal["sighup", "watch", "api", "call"]
    result: Literal["applied", "unchanged", "failed"]
    duration_seconds: float
    errors: list[str] = Field(
        description="Every problem of an invalid config, as file:line: key: message (for the admin only: "
        "a value written in the wrong place could be a secret)."
    )
    error_count: int = Field(description="How many problems the invalid config had.")
    changes: dict[str, str] = Field(description="kind:name → added, removed, restarted, reconfigured, replaced…")
    restart_required: list[str] = Field(description="Changes refused because they need a restart of the gateway.")
    generation: int | None = Field(description="The config generation in force after it.")


class ConfigOut(BaseModel):
    """The configuration in force."""

    generation: int = Field(description="1 at start, one more for each reload that changed something.")
    applied_at: float
    sha256: str = Field(description="SHA-256 of the config files' names and text ('' when not started from files).")
    files: list[str]
    reloads: dict[str, int] = Field(description="Reload attempts per result since the start.")
    last_reload: ReloadOut | None
    restart_required: list[str] = Field(description="Changes waiting for a restart of the gateway.")
    reloadable: bool = Field(description="False when the gateway was not started from config files.")


class GatewayOut(BaseModel):
    name: str
    version: str
    started_at: float
    uptime_seconds: float
    config: ConfigOut | None = None


class ComponentOut(BaseModel):
    name: str
    kind: Literal["connector", "sink"] | str
    type: str
    state: str = Field(description="starting, connecting, running, reconnecting, backoff, unauthorized, stopping…")
    since: float = Field(description="Unix seconds when it entered this state.")
    last_error: str | None
    last_error_at: float | None
    counters: dict[str, int]
    rates: dict[str, float] = Field(description="Per-second growth of each counter over the last ~10 s.")
    buffer_depth: int | None = Field(description="Points waiting to be written (sinks).")
    oldest_age_seconds: float | None = Field(default=None, description="Age of the oldest waiting point (sinks).")
    devices: dict[str, DeviceOut] | None = Field(
        default=None, description="Polling connectors (Modbus): each device's state, last error and counters."
    )


class DeviceOut(BaseModel):
    """One device of a polling connector (a Modbus unit id): what it is doing now."""

    state: str = Field(description="starting, running, down (does not answer), waiting (its connection is down).")
    last_error: str | None = Field(default=None, description="The last read error, e.g. a Modbus exception.")
    last_error_at: float | None = Field(default=None, description="Unix seconds of the last error.")
    last_scan_at: float | None = Field(default=None, description="Unix seconds of the last scan that gave data.")
    last_scan_seconds: float | None = Field(default=None, description="How long the last scan took.")
    interval_seconds: float | None = Field(default=None, description="The device's scan interval.")
    down_since: float | None = Field(default=None, description="Unix seconds since when no data came (in a gap).")
    last_gap_seconds: float | None = Field(default=None, description="Length of the last gap in its data.")
    field_errors: dict[str, str] = Field(default={}, description="Fields that cannot be read now, and why.")
    counters: dict[str, int] = Field(default={}, description="scans, read_errors, scan_overruns, points, gaps.")


class ComponentDetailOut(ComponentOut):
    detail: dict[str, Any] = Field(description="Everything the component reports about itself (admin only).")
    config: dict[str, Any] | None = Field(description="Its configuration, secrets masked (admin only).")


class StatusOut(BaseModel):
    gateway: GatewayOut
    components: list[ComponentOut]


class DisplayOut(BaseModel):
    """How the page names and formats a field (``gateway.http.overview.fields``)."""

    label: str = Field(description="The field's name for people (English, or the only text configured).")
    labels: dict[str, str] = Field(default={}, description="The label per language (en, it) when configured.")
    unit: str = Field(default="", description="Unit shown after the value, e.g. °C; empty if none.")
    decimals: int | None = Field(default=None, description="Digits after the point; null: by the value's size.")


class CardValueOut(DisplayOut):
    key: bool = Field(default=False, description="True for a key field (overview.key_fields): shown on the card.")
    measurement: str
    field: str
    tags: dict[str, str]
    value: Value | None = Field(description="The last value (null if the source only sent a Bad status).")
    time: int = Field(description="Unix ms of the value.")
    quality: Literal["good", "uncertain", "bad"] = Field(
        default="good", description="The source's quality of the value now (OPC UA status severity)."
    )
    status: str | None = Field(default=None, description="The status name while not good, e.g. BadSensorFailure.")


class CardOut(BaseModel):
    id: str = Field(description="The card's tags as key=value,… (or measurement=… without them).")
    title: str
    tags: dict[str, str]
    state: Literal["running", "idle", "alarm", "offline", "unknown"]
    state_value: Value | None = Field(description="The machine's state field as received.")
    last_update: float = Field(description="Unix seconds when data for this machine last arrived.")
    age_seconds: float
    values: list[CardValueOut]


class OverviewOut(BaseModel):
    server_time: float
    history: bool = Field(description="True when a historian sink stores data for the charts.")
    offline_after: float
    group_by: list[str]
    cards: list[CardOut]


class SeriesOut(DisplayOut):
    id: str | None = Field(description="Historian series id (for /api/series/{id}/range); null if not stored there.")
    measurement: str
    tags: dict[str, str]
    field: str
    kind: str | None = None
    last_value: Value | None
    last_time: int | None = Field(description="Unix ms of the last value.")


class Bucket(BaseModel):
    time: int = Field(description="Unix ms of the bucket's start.")
    min: float | None
    max: float | None
    mean: float | None
    count: int
    last: Value | None = Field(default=None, description="Last value (for text and boolean series).")


class RangeOut(BaseModel):
    series: SeriesOut
    from_: int = Field(alias="from", description="Unix ms.")
    to: int = Field(description="Unix ms.")
    points: int = Field(description="Most buckets asked for.")
    buckets: list[Bucket]

    model_config = {"populate_by_name": True}
