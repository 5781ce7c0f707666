"""The lab kit's Grafana dashboard: the OEE and state-category panels read the ``kpi`` measurement
exactly as the KPI engine writes it (checked without Grafana, like tests/deploy/test_compose.py).

- every panel parses, has a unique id and a place on the 24-column grid that overlaps no other;
- the KPI panels (OEE, availability/performance/quality, per shift, the category timeline, time
  per category) query measurement ``kpi`` with fields and tags the engine writes
  (:func:`gateway.kpi.source.kpi_fields`, the ``period``/``machine``/``shift`` tags);
- the category timeline names every category of the API, in the colours of the built-in page
  (``gateway/http/static/app.css``), so Grafana and the page read alike;
- the raw state timeline (the machines' state field) is still there;
- the kit's gateway config has ``machines:``, so the panels have data;
- the Flux is well formed as far as can be told without a Flux engine: brackets balance, a
  package is imported where it is used, template variables exist.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.kpi.calendar import NS
from gateway.kpi.compute import CATEGORIES, Kpi
from gateway.kpi.config import KPI_MEASUREMENT
from gateway.kpi.source import kpi_fields

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "machines.json"
PAGE_CSS = ROOT / "gateway" / "http" / "static" / "app.css"
LAB_CONFIG = ROOT / "configs" / "lab-compose.yaml"
#: The ``period`` tag values of the kpi points (gateway.kpi.source).
PERIODS = {"minute", "shift", "day"}
KPI_TAGS = {"machine", "shift", "period"}


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def kpi_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        p
        for p in dashboard["panels"]
        if any(f'r._measurement == "{KPI_MEASUREMENT}"' in t["query"] for t in p["targets"])
    ]


def written_fields() -> set[str]:
    """Every field of a kpi point, from a minute where every figure can be computed."""
    minute = 60 * NS
    ns = dict.fromkeys(CATEGORIES, 0)
    ns["running"] = minute
    kpi = Kpi(
        start=0,
        end=minute,
        ns=ns,
        window_ns=minute,
        planned_ns_by=dict(ns),
        parts=3.0,
        scrap=1.0,
        parts_planned=3.0,
        scrap_planned=1.0,
        ideal_ns=10 * NS,
    )
    return set(kpi_fields(kpi))


def test_every_panel_has_its_own_id_and_place(dashboard: dict[str, Any]) -> None:
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    cells: dict[tuple[int, int], str] = {}
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


def test_the_kpi_panels_are_there(dashboard: dict[str, Any]) -> None:
    panels = {p["title"]: p["type"] for p in kpi_panels(dashboard)}
    assert panels == {
        "OEE, current shift": "stat",
        "Availability, performance, quality (current shift)": "bargauge",
        "OEE, availability, performance, quality over the time range": "bargauge",
        "OEE and availability per shift": "timeseries",
        "State category (minute by minute)": "state-timeline",
        "Time per category, hour by hour": "timeseries",
    }
    # The OEE comes first: the top row of the dashboard.
    assert min(p["gridPos"]["y"] for p in kpi_panels(dashboard)) == 0
    raw = [p for p in dashboard["panels"] if p["title"] == "Machine state"]
    assert raw and raw[0]["type"] == "state-timeline"
    assert '"state"' in raw[0]["targets"][0]["query"] and '"mode_name"' in raw[0]["targets"][0]["query"]


def test_kpi_queries_read_what_the_engine_writes(dashboard: dict[str, Any]) -> None:
    fields = written_fields()
    assert {"oee", "availability", "performance", "quality", "running_s", "no_data_s"} <= fields
    for panel in kpi_panels(dashboard):
        for target in panel["targets"]:
            query = target["query"]
            used = set(re.findall(r'r\._field == "(\w+)"', query))
            assert used and used <= fields, f"{panel['title']}: {used - fields} are not kpi fields"
            periods = set(re.findall(r'r\.period == "(\w+)"', query))
            assert periods and periods <= PERIODS, panel["title"]
            tags = set(re.findall(r"r\.(\w+)\b", query)) - {"_measurement", "_field", "_value", "_time"}
            # (columns of a pivoted row are fields: running_s, …)
            assert tags - fields <= KPI_TAGS, f"{panel['title']} reads tags {tags - fields - KPI_TAGS}"
            assert "${kpi_machine:json}" in query, f"{panel['title']} ignores the machine choice"
    names = [v["name"] for v in dashboard["templating"]["list"]]
    assert "kpi_machine" in names
    [variable] = [v for v in dashboard["templating"]["list"] if v["name"] == "kpi_machine"]
    assert f'measurement: "{KPI_MEASUREMENT}", tag: "machine"' in variable["query"]


def test_the_lab_kit_computes_kpis_for_its_machines() -> None:
    """The kit's gateway has machines: (else the KPI panels would stay empty), named as the
    machines the dashboard's other panels show."""
    config = yaml.safe_load(LAB_CONFIG.read_text())
    names = {m["name"] for m in config.get("machines") or []}
    assert {"cnc-A1", "cnc-01", "press-01"} <= names, names


def test_the_category_timeline_names_every_category_in_the_pages_colours(dashboard: dict[str, Any]) -> None:
    [panel] = [p for p in kpi_panels(dashboard) if p["type"] == "state-timeline"]
    query = panel["targets"][0]["query"]
    # The dominant category of each minute, out of every category's seconds.
    assert {f"{c}_s" for c in CATEGORIES} <= set(re.findall(r'r\._field == "(\w+)"', query))
    assert set(re.findall(r'category: "(\w+)"', query)) == set(CATEGORIES)
    [mapping] = panel["fieldConfig"]["defaults"]["mappings"]
    css = dict(re.findall(r"--cat-(\w+):\s*(#[0-9a-f]{6})", PAGE_CSS.read_text()))
    assert set(mapping["options"]) == set(CATEGORIES)
    for category, shown in mapping["options"].items():
        assert shown["text"] == category.replace("_", " ")
        if category in css:
            assert shown["color"].lower() == css[category], category
    # The time-per-category bars use the same colours.
    [per_hour] = [p for p in kpi_panels(dashboard) if p["title"].startswith("Time per category")]
    colours = {
        o["matcher"]["options"]: next(p["value"]["fixedColor"] for p in o["properties"] if p["id"] == "color")
        for o in per_hour["fieldConfig"]["overrides"]
    }
    assert colours == {c: mapping["options"][c]["color"] for c in CATEGORIES}


def minute(running: int, idle: int, parts: float, scrap: float) -> Kpi:
    """One planned minute of a machine with a 10 s ideal cycle time."""
    ns = dict.fromkeys(CATEGORIES, 0)
    ns["running"], ns["idle"] = running * NS, idle * NS
    return Kpi(
        start=0,
        end=60 * NS,
        ns=ns,
        window_ns=60 * NS,
        planned_ns_by=dict(ns),
        parts=parts,
        scrap=scrap,
        parts_planned=parts,
        scrap_planned=scrap,
        ideal_ns=10 * NS,
    )


def test_the_range_figures_are_the_engines_from_the_sums_of_minutes(dashboard: dict[str, Any]) -> None:
    """The 'over the time range' panel's Flux arithmetic, evaluated on the kpi fields the engine
    writes for two minutes, gives the ratios the engine computes for the two together."""
    [panel] = [p for p in kpi_panels(dashboard) if p["title"].endswith("over the time range")]
    first, second = minute(40, 20, 3.0, 1.0), minute(60, 0, 4.0, 0.0)
    sums: dict[str, float] = {}
    for kpi in (first, second):
        for name, value in kpi_fields(kpi).items():
            sums[name] = sums.get(name, 0.0) + value
    both = first.merge(second)
    expected: dict[str, float | None] = {
        "oee": both.oee,
        "availability": both.availability,
        "performance": both.performance,
        "quality": both.quality,
    }
    found: dict[str, float] = {}
    for target in panel["targets"]:
        query = target["query"]
        assert 'r.shift != "none"' in query  # planned minutes only
        assert "|> sum()" in query
        [(name, formula)] = re.findall(r'_field: "(\w+)", _value: (.+?)\}\)\)', query)
        [condition] = re.findall(r"\|> filter\(fn: \(r\) => (r\.\w+ > 0\.0(?: and r\.\w+ > 0\.0)?)\)", query)
        record = type("Row", (), dict(sums))  # (the expressions are our own dashboard's, evaluated as Python)
        assert eval(condition.replace("r.", "record."), {"record": record})
        found[name] = eval(formula.replace("r.", "record."), {"record": record})
    assert set(found) == set(expected)
    for name, ratio in expected.items():
        assert ratio is not None and abs(found[name] - ratio) < 1e-9, (name, found[name], ratio)


def test_flux_is_well_formed(dashboard: dict[str, Any]) -> None:
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            query = target["query"]
            text = re.sub(r'"[^"]*"', '""', query)  # brackets inside strings do not count
            for left, right in ("()", "[]", "{}"):
                depth = 0
                for ch in text:
                    depth += (ch == left) - (ch == right)
                    assert depth >= 0, f"{panel['title']}: a {right} without its {left}"
                assert depth == 0, f"{panel['title']}: unbalanced {left}{right}"
            for package in set(re.findall(r"\b(strings|schema)\.\w+\(", query)):
                assert f'import "{"influxdata/influxdb/" if package == "schema" else ""}{package}"' in query, (
                    f"{panel['title']} uses {package}. without importing it"
                )
            assert query.startswith(("from(bucket: v.defaultBucket)", "import ")), panel["title"]
            for name in re.findall(r"\$\{(\w+)(?::\w+)?\}", query):
                assert name in variables, f"{panel['title']} reads ${{{name}}}, which the dashboard does not define"
