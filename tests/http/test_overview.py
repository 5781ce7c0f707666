"""Machine cards and state badges, and the latest-values tap that feeds them."""

from __future__ import annotations

import pytest

from gateway.http.config import OverviewSettings
from gateway.http.overview import Card, build_cards, machine_state
from gateway.latest import LatestValues
from gateway.point import FieldValue, Point
from gateway.sparkplug.host import ONLINE_FIELD
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


SPARKPLUG = OverviewSettings(group_by=["edge_node", "device"])
NODE = {"group": "Plant", "edge_node": "Line-1"}
PRESS_1 = {**NODE, "device": "Press-1"}
PRESS_2 = {**NODE, "device": "Press-2"}


def sparkplug_cards(latest: LatestValues, settings: OverviewSettings = SPARKPLUG) -> dict[str, Card]:
    return {c.id: c for c in build_cards(latest.all(), settings, now=max(e.seen for e in latest.all()) + 1)}


def test_a_death_certificate_makes_the_card_offline_at_once_until_the_next_birth() -> None:
    """``sparkplug_online`` (the Sparkplug B connector's births and deaths) decides before the age does."""
    latest = LatestValues()
    latest.update(
        [
            Point("sparkplug", {ONLINE_FIELD: True}, PRESS_1, 100 * S),  # DBIRTH
            Point("sparkplug", {"Nozzle/Temp": 200.5, "state": "running"}, PRESS_1, 101 * S),
            Point("sparkplug", {ONLINE_FIELD: True}, PRESS_2, 100 * S),
            Point("sparkplug", {"Nozzle/Temp": 201.0}, PRESS_2, 101 * S),
        ]
    )
    cards = sparkplug_cards(latest)
    press = cards["edge_node=Line-1,device=Press-1"]
    assert press.state == "running" and press.offline_reason is None and press.offline_since is None
    assert [v.field for v in press.values] == ["Nozzle/Temp"]  # the online mark is the badge, not a value
    assert press.values[0].offline_since is None

    # DDEATH of Press-1, received just now: its card is offline at once (it was "updated 0 s ago").
    latest.update([Point("sparkplug", {ONLINE_FIELD: False}, PRESS_1, 102 * S + 500_000_000)])
    cards = sparkplug_cards(latest)
    press = cards["edge_node=Line-1,device=Press-1"]
    assert press.state == "offline" and press.offline_reason == "death" and press.offline_since == 102.5
    assert press.state_value == "running"  # as received; the badge says offline
    assert [(v.value, v.offline_since) for v in press.values] == [(200.5, 102.5)]  # the last value, marked
    out = press.as_dict(now=103.0)
    assert (out["state"], out["offline_reason"], out["offline_since"]) == ("offline", "death", 102.5)
    assert out["values"][0]["offline_since"] == 102.5
    other = cards["edge_node=Line-1,device=Press-2"]
    assert other.state == "unknown" and other.offline_reason is None  # its neighbour lives on

    # A value with a later timestamp (an edge clock ahead) does not bring it back: only a birth does.
    latest.update([Point("sparkplug", {"Nozzle/Temp": 199.0}, PRESS_1, 200 * S)])
    assert sparkplug_cards(latest)["edge_node=Line-1,device=Press-1"].offline_reason == "death"
    latest.update([Point("sparkplug", {ONLINE_FIELD: True}, PRESS_1, 103 * S)])  # DBIRTH
    press = sparkplug_cards(latest)["edge_node=Line-1,device=Press-1"]
    assert press.state == "running" and press.offline_reason is None
    assert [v.offline_since for v in press.values] == [None]


def test_an_edge_node_card_holding_its_devices_is_offline_only_when_all_are_dead() -> None:
    """Grouped by the edge node: a device's death marks its values; the node's death (NDEATH: the node
    and every device false) makes the card offline, since the last of them."""
    latest = LatestValues()
    latest.update(
        [
            Point("sparkplug", {ONLINE_FIELD: True, "Node/Uptime": 5}, NODE, 100 * S),
            Point("sparkplug", {ONLINE_FIELD: True, "Nozzle/Temp": 200.5}, PRESS_1, 100 * S),
            Point("sparkplug", {ONLINE_FIELD: False}, PRESS_1, 110 * S),  # DDEATH
        ]
    )
    by_node = OverviewSettings(group_by=["edge_node"])
    [card] = sparkplug_cards(latest, by_node).values()
    assert card.state == "unknown" and card.offline_reason is None
    marks = {(v.field, v.tags.get("device")): v.offline_since for v in card.values}
    assert marks == {("Node/Uptime", None): None, ("Nozzle/Temp", "Press-1"): 110.0}
    latest.update([Point("sparkplug", {ONLINE_FIELD: False}, NODE, 120 * S)])  # NDEATH
    [card] = sparkplug_cards(latest, by_node).values()
    assert (card.state, card.offline_reason, card.offline_since) == ("offline", "death", 120.0)


def test_a_silent_card_is_offline_for_want_of_data() -> None:
    latest = LatestValues()
    latest.update([Point("machine", {"state": "running"}, {"line": "A", "machine": "cnc-1"}, 10 * S)])
    seen = latest.all()[0].seen
    [card] = build_cards(latest.all(), OverviewSettings(offline_after=30), now=seen + 31)
    assert (card.state, card.offline_reason, card.offline_since) == ("offline", "no_data", seen)
