"""The ``machines:`` section: which points are a machine's state and counters, its shifts, its ideal cycle.

::

    machines:
      - name: imm-07
        tags: {machine: imm-07}
        state:
          measurement: machine
          field: state
          map: {running: [PRODUCING, 2], idle: [IDLE], down: [ALARM], setup: [SETUP], planned_stop: [BREAK]}
          timeout: 5m
        parts: {measurement: machine, field: cycle_count}
        scrap: {measurement: machine, field: scrap_count, kind: total}
        ideal_cycle_time: 10s
        shifts:
          - {name: A, days: [mon, tue, wed, thu, fri], from: "06:00", to: "14:00"}
        timezone: Europe/Rome

Every mistake is one ``file:line: key`` line (a value in two categories, an unknown category,
overlapping shifts, an unknown time zone, a counter the connectors declare as text …); the
checks locate the key with the same mechanism the connectors use (a ValidationError whose
locations are relative to the model being checked).
"""

from __future__ import annotations

import difflib
import re
import zoneinfo
from collections.abc import Iterable, Sequence
from functools import cache
from typing import Annotated, Any, Literal, cast

from pydantic import BeforeValidator, Field, ValidationError, WrapValidator, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from gateway.kpi.calendar import DAYS, Calendar, Shift, parse_clock, week_overlaps
from gateway.kpi.compute import MAPPED
from gateway.point import FieldValue
from gateway.settings import StrictModel
from gateway.units import Duration

__all__ = ["KPI_MEASUREMENT", "CounterConfig", "MachineConfig", "Machines", "ShiftConfig", "StateConfig", "state_key"]

#: The measurement the gateway writes the KPIs in (so a machine cannot read it as its own input).
KPI_MEASUREMENT = "kpi"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
StateValue = str | int | float | bool


def state_key(value: FieldValue) -> str:
    """How a state value is matched against the map: text without case or surrounding spaces, and
    numbers by value (2, 2.0 and "2" are one state); booleans as true/false."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    text = value.strip().casefold()
    try:
        number = float(text)
    except ValueError:
        return text
    return state_key(number) if number == number and abs(number) != float("inf") else text


def _problem(loc: tuple[str | int, ...], message: str, value: Any) -> InitErrorDetails:
    return InitErrorDetails(type=PydanticCustomError("value_error", message), loc=loc, input=value)


def _raise(model: str, problems: list[InitErrorDetails]) -> None:
    if problems:
        raise ValidationError.from_exception_data(model, problems)


class StateConfig(StrictModel):
    """Where the machine's state is, and which of its values mean what."""

    measurement: str = Field(description="Measurement of the state's points.", examples=["machine"])
    field: str = Field(description="Field holding the machine's state (text or a number).", examples=["state"])
    map: dict[str, list[StateValue]] = Field(
        description="Category → the machine's values meaning it. Categories: running, idle, down, setup, "
        "planned_stop. Text is matched without case; numbers by value. A value not listed is 'unknown' "
        "(counted and shown).",
        examples=[{"running": ["PRODUCING", 2], "idle": ["IDLE"], "down": ["ALARM"], "planned_stop": ["BREAK"]}],
    )
    timeout: Duration = Field(
        default=300.0,
        gt=0,
        description="A state holds until the next sample, or this long after its last sample; then there is "
        "no data. Longer than the longest time the source may stay silent (an OPC UA subscription reports "
        "changes only).",
    )

    @model_validator(mode="wrap")
    @classmethod
    def _check_map(cls, data: Any, handler: Any) -> StateConfig:
        config: StateConfig = handler(data)
        problems: list[InitErrorDetails] = []
        owner: dict[str, tuple[str, int]] = {}
        for category, values in config.map.items():
            if category not in MAPPED:
                hint = difflib.get_close_matches(category, MAPPED, n=1)
                problems.append(
                    _problem(
                        ("map", category),
                        f"unknown category {category!r}"
                        + (f" (did you mean {hint[0]!r}?)" if hint else "")
                        + f"; categories: {', '.join(MAPPED)}",
                        category,
                    )
                )
                continue
            for index, value in enumerate(values):
                key = state_key(value)
                if key in owner:
                    first, at = owner[key]
                    where = "twice in" if first == category else "in two categories:"
                    problems.append(
                        _problem(
                            ("map", category, index),
                            f"state {value!r} is {where} {first!r} (map.{first}[{at}]) and {category!r}; "
                            "a state belongs to one category",
                            value,
                        )
                    )
                else:
                    owner[key] = (category, index)
        if config.measurement == KPI_MEASUREMENT:
            problems.append(
                _problem(("measurement",), f"{KPI_MEASUREMENT!r} is where the gateway writes the KPIs", KPI_MEASUREMENT)
            )
        _raise(cls.__name__, problems)
        return config

    @property
    def categories(self) -> dict[str, str]:
        """state key (:func:`state_key`) → category."""
        return {state_key(value): category for category, values in self.map.items() for value in values}


class CounterConfig(StrictModel):
    """A counter of parts (or of scrap)."""

    measurement: str = Field(description="Measurement of the counter's points.", examples=["machine"])
    field: str = Field(description="Field holding the counter (a number).", examples=["cycle_count"])
    kind: Literal["total", "delta"] = Field(
        default="total",
        description="total: a cumulative count (a decrease is a reset, the new value counts from zero); "
        "delta: each message carries the increment itself.",
    )

    @field_validator("measurement")
    @classmethod
    def _not_kpi(cls, value: str) -> str:
        if value == KPI_MEASUREMENT:
            raise ValueError(f"{KPI_MEASUREMENT!r} is where the gateway writes the KPIs")
        return value


def _clock_text(value: Any) -> Any:
    # YAML 1.1 reads an unquoted 14:00 as the base-60 number 840; it means 14:00.
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 1440:
        return f"{value // 60:02d}:{value % 60:02d}"
    return value


Clock = Annotated[str, BeforeValidator(_clock_text)]


class ShiftConfig(StrictModel):
    """One shift of the planned calendar, in the machine's local time."""

    name: str = Field(description="Its name, as reports and the kpi points' shift tag show it.", examples=["A"])
    days: list[Day] = Field(
        default_factory=lambda: cast(list[Day], list(DAYS)),
        description="Days the shift starts on (default: every day). A shift ending after midnight belongs to "
        "the day it starts.",
    )
    start: Clock = Field(alias="from", description="Start, local time HH:MM.", examples=["06:00"])
    end: Clock = Field(
        alias="to",
        description="End, local time HH:MM; earlier than 'from' for a shift that ends the next day; equal to "
        "'from' for 24 hours; 24:00 is midnight.",
        examples=["14:00"],
    )

    @field_validator("start", "end")
    @classmethod
    def _clock(cls, value: str) -> str:
        parse_clock(value)
        return value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(f"{value!r} is not a valid shift name: use letters, digits, '-', '_' and '.'")
        return value

    @property
    def shift(self) -> Shift:
        return Shift(
            self.name, frozenset(DAYS.index(d) for d in self.days), parse_clock(self.start), parse_clock(self.end)
        )


@cache
def _timezones() -> tuple[str, ...]:
    return tuple(sorted(zoneinfo.available_timezones()))


class MachineConfig(StrictModel):
    """One machine: its points (by tags), its state map, counters, ideal cycle time and shifts."""

    name: str = Field(description="Unique name (API, reports, the kpi points' machine tag).", examples=["imm-07"])
    tags: dict[str, str] = Field(
        default_factory=dict,
        description="Tags a point must carry to belong to this machine (other tags may be there too).",
        examples=[{"machine": "imm-07"}],
    )
    state: StateConfig = Field(description="The machine's state and what its values mean.")
    parts: CounterConfig | None = Field(default=None, description="Counter of parts produced (good and scrap).")
    scrap: CounterConfig | None = Field(default=None, description="Counter of scrap parts (optional).")
    ideal_cycle_time: Duration | None = Field(
        default=None, gt=0, description="Fastest time one part can take (for performance), e.g. 10s."
    )
    shifts: list[ShiftConfig] = Field(
        default_factory=list, description="Planned shifts (default: every hour is planned)."
    )
    timezone: str = Field(
        default="UTC",
        description="Time zone of the shifts and of days and hours in reports (IANA name, e.g. Europe/Rome). "
        "Required with shifts.",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(
                f"{value!r} is not a valid name: use letters, digits, '-', '_' and '.', starting with a letter or digit"
            )
        return value

    @model_validator(mode="wrap")
    @classmethod
    def _consistent(cls, data: Any, handler: Any) -> MachineConfig:
        config: MachineConfig = handler(data)
        problems: list[InitErrorDetails] = []
        if config.timezone not in _timezones():
            hint = difflib.get_close_matches(config.timezone, _timezones(), n=1)
            problems.append(
                _problem(
                    ("timezone",),
                    f"unknown time zone {config.timezone!r}"
                    + (f" (did you mean {hint[0]!r}?)" if hint else "; write an IANA name such as Europe/Rome"),
                    config.timezone,
                )
            )
        if config.shifts and "timezone" not in config.model_fields_set:
            problems.append(
                _problem(
                    ("shifts",), "shifts are local times: give the machine's timezone too (e.g. Europe/Rome)", None
                )
            )
        names: dict[str, int] = {}
        for index, shift in enumerate(config.shifts):
            if shift.name in names:
                problems.append(
                    _problem(
                        ("shifts", index, "name"),
                        f"shift name {shift.name!r} is already used by shifts[{names[shift.name]}]",
                        shift.name,
                    )
                )
            names.setdefault(shift.name, index)
        shifts = [s.shift for s in config.shifts]
        for later, earlier, day in week_overlaps(shifts):
            problems.append(
                _problem(
                    ("shifts", later),
                    f"shift {shifts[later].name!r} ({shifts[later].describe(day)}) overlaps shift "
                    f"{shifts[earlier].name!r} (shifts[{earlier}], {_days(config.shifts[earlier])} "
                    f"{config.shifts[earlier].start}–{config.shifts[earlier].end}); shifts may touch but not overlap",
                    None,
                )
            )
        if config.scrap is not None and config.parts is None:
            problems.append(
                _problem(("scrap",), "scrap needs a parts counter too (quality is good parts / parts)", None)
            )
        if config.ideal_cycle_time is not None and config.parts is None:
            problems.append(
                _problem(
                    ("ideal_cycle_time",),
                    "an ideal cycle time needs a parts counter (performance is ideal cycle time * parts / running)",
                    config.ideal_cycle_time,
                )
            )
        _raise(cls.__name__, problems)
        return config

    @property
    def calendar(self) -> Calendar:
        return Calendar(zoneinfo.ZoneInfo(self.timezone), [s.shift for s in self.shifts])

    def counters(self) -> dict[str, CounterConfig]:
        """parts and scrap, those configured."""
        return {role: spec for role, spec in (("parts", self.parts), ("scrap", self.scrap)) if spec is not None}


def _days(shift: ShiftConfig) -> str:
    return "every day" if len(shift.days) == 7 else ", ".join(shift.days)


def _unique(value: Any, handler: Any) -> list[MachineConfig]:
    machines: list[MachineConfig] = handler(value)
    problems = []
    seen: dict[str, int] = {}
    for index, machine in enumerate(machines):
        if machine.name in seen:
            problems.append(
                _problem(
                    (index, "name"),
                    f"name {machine.name!r} is already used by machines[{seen[machine.name]}]; names must be unique",
                    machine.name,
                )
            )
        seen.setdefault(machine.name, index)
    _raise("machines", problems)
    return machines


#: The section's type in the whole file's model.
Machines = Annotated[list[MachineConfig], WrapValidator(_unique)]


def machines_of(config: Any) -> list[MachineConfig]:
    """The ``machines:`` of a whole-file config (empty when the section is not there)."""
    machines = getattr(config, "machines", None) or []
    return [m for m in machines if isinstance(m, MachineConfig)]


def _compatible(a: dict[str, str], b: dict[str, str]) -> bool:
    return all(b.get(key, value) == value for key, value in a.items())


def check_counters(config: Any) -> Iterable[tuple[tuple[str | int, ...], str]]:
    """A counter must be a number: compare each machine's counters with what the connectors declare."""
    connectors: Sequence[Any] = getattr(config, "connectors", [])
    for index, machine in enumerate(machines_of(config)):
        for role, spec in machine.counters().items():
            for position, connector in enumerate(connectors):
                for declared in connector.declared_fields():
                    if (
                        declared.measurement == spec.measurement
                        and declared.field == spec.field
                        and declared.kind != "number"
                        and _compatible(declared.tags, machine.tags)
                    ):
                        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in declared.at)
                        yield (
                            ("machines", index, role, "field"),
                            f"{spec.measurement}.{spec.field} is not a number: connector {connector.name!r} stores it "
                            f"as {declared.kind} (connectors[{position}]{where}); a counter must be a number",
                        )
