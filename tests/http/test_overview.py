"""Machine cards and state badges, and the latest-values tap that feeds them."""

from __future__ import annotations

import pytest

from gateway.http.config import OverviewSettings
from gateway.http.overview import build_cards, machine_state
from gateway.latest import LatestValues
from gateway.point import FieldValue, Point
from tests.fakes import CollectingEmit

S = 1_000_000_000


@pytest.mark.parametrize(
    ("value", "badge"),
    [
        ("running", "running"),
        ("RUNNING", "running"),
        ("Production", "running"),
        ("idle", "idle"),
        ("setup", "idle"),
        ("stand-by", "idle"),
        ("alarm", "alarm"),
        ("E-Stop", "alarm"),
        ("fault", "alarm"),
        (1, "running"),
        (0, "idle"),
        (2, "alarm"),
        (2.0, "alarm"),
        (7, "unknown"),
        (1.5, "unknown"),
        (True, "running"),
        (False, "idle"),
        ("banana", "unknown"),
        (None, "unknown"),
    ],
)
def test_machine_state(value: FieldValue | None, badge: str) -> None:
    assert machine_state(value) == badge


def test_cards_group_by_line_and_machine_with_state_and_offline() -> None:
    latest = LatestValues()
    latest.update(
        [
            Point("machine", {"state": "running", "rpm": 9000.0}, {"line": "A", "machine": "cnc-1"}, 10 * S),
            Point("machine", {"state": "alarm"}, {"line": "A", "machine": "cnc-1"}, 5 * S),  # older: ignored
            Point("temperature", {"value": 21.5}, {"line": "A", "machine": "cnc-1", "sensor": "coolant"}, 10 * S),
            Point("machine", {"state": "idle", "rpm": 0.0}, {"line": "B", "machine": "press-1"}, 10 * S),
            Point("energy", {"p": 1200.0}, {"line": "A", "meter": "m1"}, 10 * S),
            Point("energy", {"p": 800.0}, {"line": "A", "meter": "m2"}, 10 * S),
            Point("weather", {"t": 3.0}, {}, 10 * S),
        ]
    )
    seen = latest.all()[0].seen
    cards = {c.id: c for c in build_cards(latest.all(), OverviewSettings(), now=seen + 1)}
    assert set(cards) == {"line=A,machine=cnc-1", "line=B,machine=press-1", "line=A", "measurement=weather"}
    cnc = cards["line=A,machine=cnc-1"]
    assert cnc.title == "cnc-1" and cnc.state == "running" and cnc.state_value == "running"
    assert [(v.label, v.value) for v in cnc.values] == [("rpm", 9000.0), ("value · coolant", 21.5)]
    assert cards["line=B,machine=press-1"].state == "idle"
    energy = cards["line=A"]
    assert energy.title == "line A"
    assert energy.state == "unknown"  # no state field: data arrives, but nothing says what it does
    assert sorted(v.label for v in energy.values) == ["p · m1", "p · m2"]
    # Nothing new for longer than offline_after: every card is offline, whatever its last state.
    late = build_cards(latest.all(), OverviewSettings(offline_after=30), now=seen + 31)
    assert {c.state for c in late} == {"offline"}


async def test_tap_records_every_batch_and_hands_it_on_unchanged() -> None:
    emit = CollectingEmit()
    latest = LatestValues()
    tapped = latest.tap(emit, "energy")
    batch = [Point("m", {"v": float(i)}, {"k": "x"}, i) for i in range(100)]

    def ack() -> None:
        pass

    await tapped(batch, ack)
    assert emit.calls == [(batch, ack)]
    entry = latest.get("m", {"k": "x"})
    assert (
        entry is not None
        and (entry.fields["v"].value, entry.fields["v"].time) == (99.0, 99)
        and entry.source == "energy"
    )
    assert latest.emitted == {"energy": 100}
    assert latest.changed_since(0) == [entry] and latest.changed_since(latest.version) == []
    # A value known from the store does not replace a newer live one.
    latest.seed("m", {"k": "x"}, "v", -1.0, 50)
    assert (entry.fields["v"].value, entry.fields["v"].time) == (99.0, 99)


def test_state_comes_from_the_first_state_field_a_machine_has() -> None:
    latest = LatestValues()
    # An OPC UA machine: the enumeration as a number (mode) and its text (mode_name).
    latest.update([Point("machine", {"mode": 3, "mode_name": "Setup"}, {"line": "C", "machine": "cnc-01"}, 1)])
    [card] = build_cards(latest.all(), OverviewSettings(), now=latest.all()[0].seen)
    assert card.state == "idle" and card.state_value == "Setup"
    assert [v.field for v in card.values] == ["mode"]
    custom = OverviewSettings(state_fields=["mode"])
    [card] = build_cards(latest.all(), custom, now=latest.all()[0].seen)
    assert card.state == "unknown" and card.state_value == 3  # 3 is no known numeric state


def test_an_enumeration_shows_its_name_not_its_code() -> None:
    """The OPC UA connector stores an enumeration as `mode` (code) and `mode_name` (text)."""
    latest = LatestValues()
    tags = {"line": "A", "machine": "press-01"}
    fields: dict[str, FieldValue] = {
        "mode": 1,
        "mode_name": "Running",
        "heater": 2,
        "heater_name": "Zone2",
        "cushion": 5.2,
    }
    latest.update([Point("press", fields, tags, 10 * S)])
    seen = latest.all()[0].seen
    (card,) = build_cards(latest.all(), OverviewSettings(), now=seen + 1)
    shown = {v.field: v.value for v in card.values}
    assert shown == {"mode": "Running", "heater": "Zone2", "cushion": 5.2}
    assert card.state == "running"  # mode_name is a state field: it also gives the badge
