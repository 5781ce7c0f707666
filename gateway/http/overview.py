"""Machine cards for the overview page: series grouped by tags, with a state badge.

A card is one machine: every series whose ``group_by`` tags (default ``line`` and ``machine``)
have the same values. Series with none of those tags get a card per measurement, so a plant
with only energy meters still sees something. The badge is one of:

- ``running`` / ``idle`` / ``alarm`` — from the machine's state field (``state``, or
  ``state_name`` / ``mode_name`` as the OPC UA connector names an enumeration's text; words
  such as ``setup``, ``stopped``, ``fault`` are mapped to the nearest of the three);
- ``offline`` — nothing new arrived for ``offline_after`` seconds (``offline_reason``
  ``no_data``), or the machine's source said it is gone: a Sparkplug B death certificate
  (NDEATH / DDEATH), which the connector records as the field ``sparkplug_online`` = false
  (``offline_reason`` ``death``, ``offline_since`` when it arrived). Such a card is offline at
  once, whatever arrived just before, and until a birth sets the field true again. A card is
  offline by death when every series on it that carries the field says false; on a card that
  mixes the dead with the living (an edge node's card holding its devices), the values of the
  dead series carry ``offline_since`` and the card stays as it is. The field itself is not one
  of the card's values: the badge says it;
- ``unknown`` — data arrives but no state field says what the machine does.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from gateway.http.config import OverviewSettings
from gateway.latest import Quality, SeriesLatest
from gateway.point import FieldValue
from gateway.sparkplug.host import ONLINE_FIELD

__all__ = ["Card", "build_cards", "machine_state"]

Badge = Literal["running", "idle", "alarm", "offline", "unknown"]
OfflineReason = Literal["no_data", "death"]

_RUNNING = {"running", "run", "production", "producing", "active", "auto", "automatic", "working", "busy", "cycle"}
_IDLE = {"idle", "setup", "stopped", "stop", "standby", "ready", "paused", "pause", "waiting", "off", "manual"}
_ALARM = {"alarm", "fault", "error", "emergency", "estop", "failure", "failed", "down", "blocked", "warning"}
_WORDS: tuple[tuple[set[str], Badge], ...] = ((_ALARM, "alarm"), (_RUNNING, "running"), (_IDLE, "idle"))
#: Numeric states as many PLCs publish them (0 stopped, 1 running, 2 alarm); anything else is unknown.
_NUMERIC: dict[int, Badge] = {0: "idle", 1: "running", 2: "alarm"}


def machine_state(value: FieldValue | None) -> Badge:
    """Map a machine's state value to running / idle / alarm (``unknown`` if it says nothing known)."""
    if value is None:
        return "unknown"
    if isinstance(value, bool):
        return "running" if value else "idle"
    if isinstance(value, int | float):
        return _NUMERIC.get(int(value), "unknown") if float(value).is_integer() else "unknown"
    word = value.strip().lower().replace("-", "").replace("_", "").replace(" ", "")
    for names, badge in _WORDS:
        if word in names:
            return badge
    return "unknown"


@dataclass
class CardValue:
    label: str
    measurement: str
    field: str
    tags: dict[str, str]
    value: FieldValue | None
    time_ms: int
    quality: Quality = "good"
    status: str | None = None
    labels: dict[str, str] = dataclasses.field(default_factory=dict)  # (`field` is an attribute here)
    unit: str = ""
    decimals: int | None = None
    key_rank: int | None = None  # position in overview.key_fields, None if not a key field
    offline_since: float | None = None  # unix s of the death certificate of the value's series, if dead

    def as_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "labels": self.labels,
            "unit": self.unit,
            "decimals": self.decimals,
            "key": self.key_rank is not None,
            "measurement": self.measurement,
            "field": self.field,
            "tags": self.tags,
            "value": self.value,
            "time": self.time_ms,
            "quality": self.quality,
            "status": self.status,
            "offline_since": self.offline_since,
        }


@dataclass
class Card:
    id: str
    title: str
    tags: dict[str, str]
    state: Badge = "unknown"
    state_value: FieldValue | None = None
    seen: float = 0.0
    values: list[CardValue] = field(default_factory=list)
    offline_reason: OfflineReason | None = None
    #: unix s: the death certificate that made the card offline (death), the last update (no_data)
    offline_since: float | None = None
    #: per series that says whether it is online (``sparkplug_online``): None if online, else since when dead
    deaths: list[float | None] = field(default_factory=list)

    def as_dict(self, now: float) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "tags": self.tags,
            "state": self.state,
            "offline_reason": self.offline_reason,
            "offline_since": self.offline_since,
            "state_value": self.state_value,
            "last_update": self.seen,
            "age_seconds": round(max(0.0, now - self.seen), 3),
            "values": [v.as_dict() for v in self.values],
        }


def _card_identity(entry: SeriesLatest, group_by: list[str]) -> tuple[str, str, dict[str, str]]:
    tags = {key: entry.tags[key] for key in group_by if key in entry.tags}
    if not tags:
        return f"measurement={entry.measurement}", entry.measurement, {}
    card_id = ",".join(f"{key}={value}" for key, value in tags.items())
    key, value = list(tags.items())[-1]
    # A machine is named by its own tag; a card of a whole line (meters, sensors) says "line A".
    return card_id, value if key == group_by[-1] else f"{key} {value}", tags


def build_cards(
    entries: Iterable[SeriesLatest],
    settings: OverviewSettings,
    now: float | None = None,
    units: Mapping[tuple[str, str], str] | None = None,
) -> list[Card]:
    """Group the latest values into machine cards, sorted by their tags.

    A card's values come in ``key_fields`` order first, then by label; each carries its label
    (per language when configured), unit and decimals from ``overview.fields``; ``units`` are
    the units the sources found (OPC UA EngineeringUnits), used where the config sets none.
    """
    now = time.time() if now is None else now
    catalogue = settings.catalogue
    cards: dict[str, Card] = {}
    state_ranks: dict[str, tuple[int, int]] = {}  # card → (preference of the state field, its time)
    preference = {name: len(settings.state_fields) - i for i, name in enumerate(settings.state_fields)}
    for entry in entries:
        card_id, title, tags = _card_identity(entry, settings.group_by)
        card = cards.get(card_id)
        if card is None:
            card = cards[card_id] = Card(card_id, title, tags)
        card.seen = max(card.seen, entry.seen)
        extra = {k: v for k, v in sorted(entry.tags.items()) if k not in tags}
        suffix = " · ".join(extra.values())
        dead_since = _dead_since(entry)
        if ONLINE_FIELD in entry.fields:
            card.deaths.append(dead_since)
        for name, latest in sorted(entry.fields.items()):
            value, time_ns = latest.value, latest.time
            if name == ONLINE_FIELD:
                continue  # the badge says it
            if name in preference:
                rank = (preference[name], time_ns)
                if value is not None and rank >= state_ranks.get(card_id, (-1, -1)):
                    state_ranks[card_id] = rank
                    card.state_value = value
                continue
            if f"{name}_name" in entry.fields:  # an enumeration: show its name in place of its code
                latest = entry.fields[f"{name}_name"]
                value, time_ns = latest.value, latest.time
            elif name.endswith("_name") and name[: -len("_name")] in entry.fields:
                continue  # shown in place of the code, above
            display = catalogue.display(entry.measurement, name, units)
            card.values.append(
                CardValue(
                    f"{display.label} · {suffix}" if suffix else display.label,
                    entry.measurement,
                    name,
                    dict(entry.tags),
                    value,
                    time_ns // 1_000_000,
                    latest.quality,
                    latest.status,
                    {lang: f"{text} · {suffix}" if suffix else text for lang, text in display.labels.items()},
                    display.unit,
                    display.decimals,
                    catalogue.key_rank(entry.measurement, name),
                    dead_since,
                )
            )
    for card in cards.values():
        card.values.sort(key=lambda v: (v.key_rank is None, v.key_rank or 0, v.label))
        deaths = card.deaths
        if deaths and all(since is not None for since in deaths):
            card.state, card.offline_reason = "offline", "death"
            card.offline_since = max(since for since in deaths if since is not None)
        elif now - card.seen > settings.offline_after:
            card.state, card.offline_reason, card.offline_since = "offline", "no_data", card.seen
        else:
            card.state = machine_state(card.state_value)
    return sorted(cards.values(), key=lambda c: (not c.tags, sorted(c.tags.items()), c.title))


def _dead_since(entry: SeriesLatest) -> float | None:
    """When a death certificate said this series' source is gone (unix s), or None while it is online.

    ``sparkplug_online`` is false from an NDEATH / DDEATH until the next birth sets it true; its time
    is when the gateway received the certificate.
    """
    online = entry.fields.get(ONLINE_FIELD)
    if online is None or online.value is None or isinstance(online.value, str) or online.value:
        return None
    return online.time / 1e9
