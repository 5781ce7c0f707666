"""Response models of the JSON API: they are the OpenAPI spec (``/api/openapi.json``).

Times are Unix **milliseconds** (what JavaScript's ``Date`` takes; nanoseconds do not fit in a
JavaScript number), except ``*_at``/``since`` fields which are Unix seconds with a fraction. The
machines' KPIs (``/api/machines``) give each time twice: ``from``/``to``/``since`` as ISO 8601 in
the machine's time zone (what a person reads, and what the shifts are written in) and
``from_ms``/``to_ms``/``since_ms`` as Unix milliseconds.
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
    "KpiOut",
    "KpiReportOut",
    "MachineOut",
    "OverviewOut",
    "RangeOut",
    "Readiness",
    "ReloadOut",
    "SeriesOut",
    "StatesOut",
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
    role: Literal["viewer", "operator", "admin"] = Field(
        description="viewer: looks; operator: also writes declared fields to machines; admin: everything."
    )
    auth: bool = Field(description="False when no credential is configured (loopback only).")
    plain_http: bool = Field(
        default=False,
        description="True when credentials cross the network unencrypted: listening beyond loopback "
        "without gateway.http.tls (the page shows the admin a warning).",
    )


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
    recent_reloads: list[ReloadOut] = Field(
        default_factory=list, description="The last ten reload attempts, the newest last (last_reload among them)."
    )
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
    offline_since: float | None = Field(
        default=None,
        description="Unix seconds when a death certificate (Sparkplug B NDEATH / DDEATH) said this value's "
        "source is gone; null while it is online. The value shown is the last one before.",
    )


class CardOut(BaseModel):
    id: str = Field(description="The card's tags as key=value,… (or measurement=… without them).")
    title: str
    tags: dict[str, str]
    state: Literal["running", "idle", "alarm", "offline", "unknown"]
    offline_reason: Literal["no_data", "death"] | None = Field(
        default=None,
        description="Why the card is offline: no_data (nothing new for offline_after), death (a Sparkplug B "
        "death certificate, NDEATH / DDEATH, for everything on the card: offline at once, until a birth).",
    )
    offline_since: float | None = Field(
        default=None,
        description="Unix seconds: when the death certificate arrived (death), the last update (no_data).",
    )
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


# --- machines: states, parts and OEE (docs/KPI.md) --------------------------------------------------

Category = Literal["running", "idle", "down", "setup", "planned_stop", "unknown", "no_data"]


class TimeRangeOut(BaseModel):
    """A span of time: ISO 8601 in the machine's time zone, and Unix ms."""

    from_: str = Field(alias="from", description="Start, ISO 8601 with the machine's UTC offset.")
    to: str = Field(description="End (excluded), ISO 8601 with the machine's UTC offset.")
    from_ms: int = Field(description="Start, Unix ms.")
    to_ms: int = Field(description="End, Unix ms.")

    model_config = {"populate_by_name": True}


class SecondsOut(BaseModel):
    """Seconds per category; they add up to the range."""

    running: float
    idle: float
    down: float
    setup: float
    planned_stop: float
    unknown: float = Field(description="A state value the machine's map does not name.")
    no_data: float = Field(description="No state: no sample, or more than the timeout after the last one.")


class InShiftsOut(BaseModel):
    """What the ratios use when the machine has shifts: the time and parts inside them."""

    shift_seconds: float = Field(description="Length of the shifts within the range.")
    seconds: SecondsOut = Field(description="Seconds per category inside the shifts.")
    parts: float | None
    scrap: float | None
    good: float | None


class KpiOut(TimeRangeOut):
    """One machine's KPIs over one range (ISO 22400-2 / Nakajima; definitions in docs/KPI.md)."""

    machine: str
    shift: str | None = Field(default=None, description="The shift of this row (by=shift).")
    bucket: str | None = Field(default=None, description="The local day or hour of this row (by=day, by=hour).")
    seconds: SecondsOut
    planned_seconds: float = Field(description="Range ∩ shifts (the range without shifts) - planned_stop - no_data.")
    parts: float | None = Field(description="Increases of the parts counter (resets handled); null: no counter.")
    scrap: float | None = Field(description="Increases of the scrap counter; null: no scrap counter.")
    good: float | None = Field(description="parts - scrap.")
    availability: float | None = Field(description="running / planned time, 0–1; null when planned time is 0.")
    performance: float | None = Field(
        description="ideal cycle time * parts / running, 0–1 (capped, with a warning); null when running is 0."
    )
    quality: float | None = Field(description="good / parts, 0–1; null when there are no parts.")
    oee: float | None = Field(description="availability * performance * quality; null when one of them is.")
    in_shifts: InShiftsOut | None = Field(default=None, description="With shifts: the time and parts in them.")
    warnings: list[str] = Field(description="What a plant engineer should know about these numbers.")


class KpiReportOut(KpiOut):
    """The KPIs of the range, and with ``by`` one row per shift, local hour or local day."""

    by: Literal["shift", "hour", "day"] | None = None
    rows: list[KpiOut] | None = None


class IntervalOut(TimeRangeOut):
    value: Value | None = Field(description="The machine's state value as received; null: no data.")
    category: Category


class ShiftWindowOut(TimeRangeOut):
    name: str


class StatesOut(TimeRangeOut):
    """A machine's states over a range: intervals tiling it (gaps as no_data), and its shifts there."""

    machine: str
    intervals: list[IntervalOut]
    shifts: list[ShiftWindowOut]
    warnings: list[str]


class CurrentShiftOut(TimeRangeOut):
    name: str
    kpi: KpiOut = Field(description="The shift's KPIs from its start until now.")


class MachineOut(BaseModel):
    """One machine now (also the ``kpi`` event of /api/events)."""

    name: str
    tags: dict[str, str]
    timezone: str = Field(description="Its time zone (IANA name): days, hours and shifts are in it.")
    ideal_cycle_time_s: float | None = Field(description="Its ideal cycle time in seconds; null: not configured.")
    value: Value | None = Field(description="Its state value now; null: no data.")
    category: Category
    since: str | None = Field(description="Since when it is in this state (ISO 8601, its time zone).")
    since_ms: int | None
    last_sample_ms: int | None = Field(description="Unix ms of the last state sample.")
    today: KpiOut = Field(description="Today's KPIs (local midnight until now).")
    shift: CurrentShiftOut | None = Field(description="The shift now, with its KPIs so far; null outside shifts.")
