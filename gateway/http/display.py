"""How the web page names and formats a field: label (English / Italian), unit, decimals.

Field names come from the machines (``spindle_speed``, ``zone3_temp``, ``power_w``); a
production manager reads "Spindle speed 12,000 rpm". The hub's engineer writes that once, in
``gateway.http.overview.fields``; the cards, the machine page's charts and the CSV use it::

    gateway:
      http:
        overview:
          key_fields: [spindle_speed, spindle_load, part_count]
          fields:
            spindle_speed: {label: {en: Spindle speed, it: Velocità mandrino}, unit: rpm, decimals: 0}
            "zone*_temp": {unit: °C, decimals: 1}
            energy.power_w: {label: Power, unit: W}

A unit the source itself publishes (an OPC UA AnalogItem's EngineeringUnits) is shown when
the entry gives none.

A key is a field name, or ``measurement.field`` for one measurement only, and may hold
shell-style wildcards (``*``, ``?``, ``[…]``). The most specific key wins: an exact
``measurement.field``, then an exact field name, then the first wildcard key (in file order)
that matches.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from fnmatch import fnmatchcase
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["Display", "DisplayCatalogue", "FieldDisplay", "Language"]

Language = Literal["en", "it"]
#: The page's languages (static/js/i18n.js).
LANGUAGES: tuple[str, ...] = get_args(Language)


class FieldDisplay(BaseModel):
    """One entry of ``overview.fields``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    label: str | dict[str, str] = Field(
        default="",
        description="What the page calls the field: one text, or one per language ({en: Power, it: Potenza}). "
        "Empty: the field name.",
    )
    unit: str = Field(default="", max_length=16, description="Unit shown after the value and on the chart, e.g. °C.")
    decimals: int | None = Field(
        default=None, ge=0, le=9, description="Digits after the decimal point. Empty: chosen by the size of the value."
    )

    @field_validator("label", mode="before")
    @classmethod
    def _check_label(cls, value: object) -> object:
        example = "e.g. label: Power, or label: {en: Power, it: Potenza}"
        if isinstance(value, str):
            return value
        if not isinstance(value, dict):
            # pydantic turns a ValueError into a located config error; a TypeError would escape it.
            raise ValueError(f"a text, or one text per language ({example}); got {value!r}")  # noqa: TRY004 - see above
        if not value:
            raise ValueError(f"give at least one language ({example})")
        for lang, text in value.items():
            if lang not in LANGUAGES:
                raise ValueError(f"unknown language {lang!r}: the page speaks {' and '.join(LANGUAGES)} ({example})")
            if not isinstance(text, str):
                raise ValueError(f"the {lang} label must be a text; got {text!r}")  # noqa: TRY004 - as above
        return value


@dataclass(frozen=True, slots=True)
class Display:
    """A field's resolved display: ``label`` in English (or the only text), ``labels`` per language."""

    label: str
    labels: dict[str, str]
    unit: str = ""
    decimals: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"label": self.label, "labels": self.labels, "unit": self.unit, "decimals": self.decimals}


def _is_pattern(key: str) -> bool:
    return any(c in key for c in "*?[")


class DisplayCatalogue:
    """Resolves (measurement, field) to its :class:`Display`; fields with no entry show their name."""

    def __init__(self, fields: dict[str, FieldDisplay], key_fields: list[str] | None = None) -> None:
        self._exact = {key: entry for key, entry in fields.items() if not _is_pattern(key)}
        self._patterns = [(key, entry) for key, entry in fields.items() if _is_pattern(key)]
        self._key_fields = list(key_fields or [])
        self._cache: dict[tuple[str, str], Display] = {}
        self._rank_cache: dict[tuple[str, str], int | None] = {}

    def entry(self, measurement: str, field: str) -> FieldDisplay | None:
        """The configured entry for this field, the most specific key first."""
        qualified = f"{measurement}.{field}"
        found = self._exact.get(qualified) or self._exact.get(field)
        if found is not None:
            return found
        for key, entry in self._patterns:
            if fnmatchcase(field, key) or fnmatchcase(qualified, key):
                return entry
        return None

    def display(self, measurement: str, field: str, units: Mapping[tuple[str, str], str] | None = None) -> Display:
        """The field's display; a unit the source found (``units``, e.g. OPC UA EngineeringUnits)
        is used when the configuration gives none."""
        display = self._configured(measurement, field)
        if not display.unit and units:
            found = units.get((measurement, field))
            if found:
                return replace(display, unit=found)
        return display

    def _configured(self, measurement: str, field: str) -> Display:
        cached = self._cache.get((measurement, field))
        if cached is not None:
            return cached
        entry = self.entry(measurement, field)
        if entry is None or not entry.label:
            labels: dict[str, str] = {}
            label = field
        elif isinstance(entry.label, str):
            labels, label = {}, entry.label
        else:
            labels = dict(entry.label)
            label = labels.get("en") or next(iter(labels.values()))
        display = Display(label, labels, entry.unit if entry else "", entry.decimals if entry else None)
        if len(self._cache) < 100_000:  # bounded: field names come from the machines
            self._cache[(measurement, field)] = display
        return display

    def key_rank(self, measurement: str, field: str) -> int | None:
        """The field's position in ``key_fields`` (matched like ``fields``' keys), or None."""
        cached = self._rank_cache.get((measurement, field), -1)
        if cached != -1:
            return cached
        qualified = f"{measurement}.{field}"
        rank: int | None = None
        for i, key in enumerate(self._key_fields):
            if key in (field, qualified) or fnmatchcase(field, key) or fnmatchcase(qualified, key):
                rank = i
                break
        if len(self._rank_cache) < 100_000:
            self._rank_cache[(measurement, field)] = rank
        return rank
