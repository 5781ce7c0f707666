"""Labels, units, decimals and key fields from ``gateway.http.overview``: how cards and series
name and format a field, and the errors a wrong entry gives."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from gateway.config import load_config
from gateway.errors import ConfigError
from gateway.http.app import AppContext, create_app
from gateway.http.config import HttpSettings, OverviewSettings
from gateway.http.overview import build_cards
from gateway.latest import LatestValues
from gateway.point import Point

S = 1_000_000_000
CNC = {"line": "A", "machine": "cnc-1"}


def overview(**settings: object) -> OverviewSettings:
    return OverviewSettings.model_validate(settings)


def test_the_most_specific_key_wins() -> None:
    catalogue = overview(
        fields={
            "*_temp": {"unit": "°C", "decimals": 1},
            "zone1_temp": {"label": "Zone 1"},
            "press.zone1_temp": {"label": {"en": "Barrel zone 1", "it": "Zona cilindro 1"}, "unit": "°C"},
            "zone*": {"unit": "zone"},
            "energy.*": {"unit": "kWh"},
        }
    ).catalogue
    assert catalogue.display("press", "zone1_temp").as_dict() == {
        "label": "Barrel zone 1",
        "labels": {"en": "Barrel zone 1", "it": "Zona cilindro 1"},
        "unit": "°C",
        "decimals": None,
    }
    # An exact field name beats a wildcard, and takes nothing from it.
    assert catalogue.display("oven", "zone1_temp").as_dict() == {
        "label": "Zone 1",
        "labels": {},
        "unit": "",
        "decimals": None,
    }
    # The first wildcard in file order.
    assert catalogue.display("oven", "zone2_temp").as_dict()["unit"] == "°C"
    assert catalogue.display("oven", "zone2_temp").decimals == 1
    assert catalogue.display("energy", "total").unit == "kWh"  # measurement.* wildcard
    assert catalogue.display("oven", "zone2").unit == "zone"  # *_temp does not match it
    # A field nobody described keeps its name.
    assert catalogue.display("oven", "door").as_dict() == {"label": "door", "labels": {}, "unit": "", "decimals": None}


def test_an_italian_only_label_is_the_default_too() -> None:
    display = overview(fields={"pezzi": {"label": {"it": "Pezzi buoni"}}}).catalogue.display("m", "pezzi")
    assert (display.label, display.labels) == ("Pezzi buoni", {"it": "Pezzi buoni"})


def test_cards_show_key_fields_first_in_their_order_with_labels_and_units() -> None:
    latest = LatestValues()
    latest.update(
        [
            Point("machine", {"state": "running", "rpm": 9000.0, "load": 41.5, "parts": 12, "alarm_code": 0}, CNC, S),
            Point("energy", {"power_w": 1500.25}, {"line": "A", "meter": "m1"}, S),
            Point("energy", {"power_w": 700.0}, {"line": "A", "meter": "m2"}, S),
        ]
    )
    settings = overview(
        key_fields=["parts", "rpm", "energy.power_w"],
        fields={
            "rpm": {"label": {"en": "Spindle speed", "it": "Velocità mandrino"}, "unit": "rpm", "decimals": 0},
            "power_w": {"label": {"en": "Power", "it": "Potenza"}, "unit": "W", "decimals": 1},
        },
    )
    line, cnc = build_cards(latest.all(), settings, now=2)
    values = [v.as_dict() for v in cnc.values]
    # Key fields first (parts, then rpm), then the others by label; the state is the badge.
    assert [v["field"] for v in values] == ["parts", "rpm", "alarm_code", "load"]
    assert [v["key"] for v in values] == [True, True, False, False]
    assert values[1] | {"tags": None, "time": None} == {
        "label": "Spindle speed",
        "labels": {"en": "Spindle speed", "it": "Velocità mandrino"},
        "unit": "rpm",
        "decimals": 0,
        "key": True,
        "measurement": "machine",
        "field": "rpm",
        "tags": None,
        "value": 9000.0,
        "time": None,
        "quality": "good",
        "status": None,
        "offline_since": None,
    }
    # A line's meters: the meter tag tells two values of one card apart, in every language.
    assert [(v.label, v.labels, v.unit) for v in line.values] == [
        ("Power · m1", {"en": "Power · m1", "it": "Potenza · m1"}, "W"),
        ("Power · m2", {"en": "Power · m2", "it": "Potenza · m2"}, "W"),
    ]


def test_without_key_fields_the_order_is_by_label() -> None:
    latest = LatestValues()
    latest.update([Point("machine", {"b_field": 1.0, "a_field": 2.0}, CNC, S)])
    (card,) = build_cards(latest.all(), overview(fields={"b_field": {"label": "Alpha"}}), now=2)
    assert [(v.label, v.key_rank) for v in card.values] == [("Alpha", None), ("a_field", None)]


async def test_series_api_carries_the_display_of_each_series() -> None:
    latest = LatestValues()
    latest.update([Point("press", {"zone1_temp": 221.5, "shots": 7}, CNC, S)])
    settings = HttpSettings(overview=overview(fields={"zone*_temp": {"label": "Zone", "unit": "°C", "decimals": 1}}))
    ctx = AppContext(name="gw", settings=settings, statuses=list, latest=latest)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(ctx)), base_url="http://gw") as c:
        series = (await c.get("/api/series")).json()
        cards = (await c.get("/api/overview")).json()["cards"]
    assert [(s["field"], s["label"], s["unit"], s["decimals"]) for s in series] == [
        ("shots", "shots", "", None),
        ("zone1_temp", "Zone", "°C", 1),
    ]
    assert {v["field"]: v["unit"] for v in cards[0]["values"]} == {"shots": "", "zone1_temp": "°C"}


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("{unit: rpm, colour: red}", "gateway.http.overview.fields.rpm.colour: unknown key"),
        ("{decimals: 12}", "gateway.http.overview.fields.rpm.decimals:"),
        ("{label: {}}", "gateway.http.overview.fields.rpm.label: give at least one language"),
        ("{label: {de: Drehzahl}}", "gateway.http.overview.fields.rpm.label: unknown language 'de'"),
        ("{label: 5}", "gateway.http.overview.fields.rpm.label: a text, or one text per language"),
    ],
)
def test_a_wrong_display_entry_names_file_line_and_key(tmp_path: Path, entry: str, message: str) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(
        "gateway:\n"
        "  http:\n"
        "    overview:\n"
        "      fields:\n"
        f"        rpm: {entry}\n"
        "sinks:\n"
        "  - {name: local, type: historian}\n"
    )
    with pytest.raises(ConfigError) as error:
        load_config(path)
    text = str(error.value)
    assert text.count("\n") == 0, text  # one problem, one line
    assert f"{path}:5:" in text, text
    assert message in text, text


def test_a_unit_the_source_found_is_shown_unless_the_config_sets_one() -> None:
    catalogue = overview(fields={"pressure": {"unit": "kPa"}, "temp": {"label": "Melt"}}).catalogue
    found = {("press", "pressure"): "bar", ("press", "temp"): "°C", ("press", "speed"): "rpm"}
    assert catalogue.display("press", "pressure", found).unit == "kPa"  # the engineer's word wins
    assert catalogue.display("press", "temp", found).as_dict() == {
        "label": "Melt",
        "labels": {},
        "unit": "°C",
        "decimals": None,
    }
    assert catalogue.display("press", "speed", found).unit == "rpm"
    assert catalogue.display("oven", "speed", found).unit == ""  # another measurement
    assert catalogue.display("press", "temp").unit == ""  # the cached entry was not changed
