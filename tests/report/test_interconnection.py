"""The interconnection report over a simulated quarter (Q1 2026, written with past timestamps).

A historian holding three months of a CNC (and of a press beside it), a link journal with known
outages (a lost connection, a clean stop, an unclean stop, one still going on at the end), and
an audit trail with known writes: the report must count every sample, give the availability to
the second, list the outages and the writes, and render in Chromium in both languages.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from gateway.audit import AuditTrail
from gateway.config import load_config_source
from gateway.linkjournal import LINK_FOLDER, LinkRecord
from gateway.point import Point
from gateway.report.command import ReportOptions, build_report, parse_bound
from gateway.report.pdf import find_chromium
from gateway.report.render import render_html
from gateway.sinks.historian.store import HistorianStore
from tests.fixtures.browser import screenshot_path
from tests.helpers import ARTIFACTS

ROME = ZoneInfo("Europe/Rome")
SECOND = 1_000_000_000
PROGRAMS = ("O1001 FLANGE-A", "O1002 HOUSING-B", "O2040 SHAFT-C")
CNC = {"line": "A", "machine": "cnc-01"}
PASSWORD = "very-secret-password-0123"
TOKEN = "influx-secret-token-0123456789"


def rome(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> int:
    """A wall-clock time in Rome → Unix ns."""
    return int(datetime(year, month, day, hour, minute, second, tzinfo=ROME).timestamp()) * SECOND


START = rome(2026, 1, 1)  # 2025-12-31T23:00:00Z
END = rome(2026, 4, 1)  # 2026-03-31T22:00:00Z (summer time since 29 March)
NOW = rome(2026, 12, 1)


@dataclass
class Quarter:
    config: Path
    data: Path
    expected: dict[str, list[int]]  # field → the sample times in the quarter


def write_config(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    config = {
        "gateway": {
            "name": "plant-gw",
            "data_dir": str(data),
            "http": {
                "enabled": False,
                "overview": {
                    "fields": {
                        "spindle_rpm": {"label": {"en": "Spindle speed", "it": "Velocità mandrino"}, "unit": "rpm"},
                        "program": {"label": {"en": "Program", "it": "Programma"}},
                    }
                },
            },
        },
        "sinks": [
            {"name": "local", "type": "historian", "path": str(data / "history.db")},
            {
                "name": "cloud",
                "type": "influxdb",
                "url": "http://10.0.0.5:8086",
                "org": "plant",
                "bucket": "machines",
                "token": TOKEN,
            },
        ],
        "connectors": [
            {
                "name": "cnc-01",
                "type": "opcua",
                "endpoint": "opc.tcp://10.0.0.20:4840",
                "security": {"policy": "Basic256Sha256", "mode": "SignAndEncrypt"},
                "auth": {"username": "gateway", "password": PASSWORD},
                "measurement": "machine",
                "tags": CNC,
                "subscription": {"publishing_interval": "1s", "sampling_interval": "500ms"},
                "nodes": [
                    {"node": "ns=2;s=Spindle.Speed", "field": "spindle_rpm"},
                    {"node": "ns=2;s=Program.Name", "field": "program", "write": {"allowed": list(PROGRAMS)}},
                    {"node": "ns=2;s=Feed.Override", "field": "feed_override", "write": {"min": 0, "max": 120}},
                ],
            },
            {
                "name": "press-01",
                "type": "opcua",
                "endpoint": "opc.tcp://10.0.0.21:4840",
                "measurement": "press",
                "tags": {"line": "A", "machine": "press-01"},
                "nodes": [{"node": "ns=2;s=Shots", "field": "shots"}],
            },
        ],
    }
    path = tmp_path / "plant.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    return path


def write_history(path: Path) -> dict[str, list[int]]:
    """Samples from before the quarter to after it; the machine is off (silent) on 14 February."""
    off = (rome(2026, 2, 14), rome(2026, 2, 15))
    store = HistorianStore(path)
    expected: dict[str, list[int]] = {"spindle_rpm": [], "program": [], "alarm": [], "axis_load": [], "parts": []}
    points: list[Point] = []
    first = START - 3 * 3600 * SECOND + 7 * SECOND
    t = first
    i = 0
    while t < END + 3 * 3600 * SECOND:
        if not off[0] <= t < off[1]:
            fields: dict[str, float | int | str | bool] = {"spindle_rpm": 8000.0 + (i % 40) * 25, "parts": i // 3}
            if i % 2 == 0:
                fields["program"] = PROGRAMS[(t // (86400 * SECOND)) % len(PROGRAMS)]
            if i % 12 == 0:
                fields["alarm"] = i % 24 == 0
            points.append(Point("machine", fields, CNC, t))
            points.append(Point("machine", {"axis_load": 20.0 + i % 7}, {**CNC, "axis": "X"}, t + SECOND))
            points.append(Point("press", {"shots": i}, {"line": "A", "machine": "press-01"}, t))
            if START <= t < END:
                for name in fields:
                    expected[name].append(t)
            if START <= t + SECOND < END:
                expected["axis_load"].append(t + SECOND)
        t += 300 * SECOND
        i += 1
        if len(points) > 20_000:
            store.write(points)
            points = []
    store.write(points)
    store.close()
    return expected


# The link journal: (Rome wall clock, event, connector, state)
JOURNAL: list[tuple[tuple[int, ...], str, str | None, str | None]] = [
    ((2025, 12, 30, 8, 0, 0), "gateway_start", None, None),
    ((2025, 12, 30, 8, 0, 0), "state", "cnc-01", "starting"),
    ((2025, 12, 30, 8, 0, 1), "state", "cnc-01", "running"),
    ((2025, 12, 30, 8, 0, 1), "state", "press-01", "running"),
    # 1: the connection drops for exactly 300 s
    ((2026, 1, 15, 10, 0, 0), "state", "cnc-01", "reconnecting"),
    ((2026, 1, 15, 10, 2, 30), "state", "cnc-01", "backoff"),
    ((2026, 1, 15, 10, 5, 0), "state", "cnc-01", "running"),
    ((2026, 1, 20, 9, 0, 0), "state", "press-01", "reconnecting"),  # the press's: not the CNC's
    # 2: the gateway is stopped cleanly for half an hour: 1,802 s without the CNC
    ((2026, 2, 1, 2, 0, 0), "state", "cnc-01", "stopping"),
    ((2026, 2, 1, 2, 0, 0), "state", "cnc-01", "stopped"),
    ((2026, 2, 1, 2, 0, 1), "gateway_stop", None, None),
    ((2026, 2, 1, 2, 30, 0), "gateway_start", None, None),
    ((2026, 2, 1, 2, 30, 0), "state", "cnc-01", "starting"),
    ((2026, 2, 1, 2, 30, 2), "state", "cnc-01", "running"),
    # 3: the gateway dies (last sign of life 12:00:00) and starts again at 12:20: 1,205 s
    ((2026, 3, 10, 12, 0, 0), "gateway_lost", None, None),
    ((2026, 3, 10, 12, 20, 0), "gateway_start", None, None),
    ((2026, 3, 10, 12, 20, 0), "state", "cnc-01", "starting"),
    ((2026, 3, 10, 12, 20, 5), "state", "cnc-01", "running"),
    # 4: lost at 23:00 on the last day and still lost at the end: 3,600 s in the quarter
    ((2026, 3, 31, 23, 0, 0), "state", "cnc-01", "reconnecting"),
    ((2026, 4, 1, 0, 30, 0), "state", "cnc-01", "running"),
]
OUTAGES = [  # (start, end, cause, seconds)
    (rome(2026, 1, 15, 10, 0, 0), rome(2026, 1, 15, 10, 5, 0), "connection", 300),
    (rome(2026, 2, 1, 2, 0, 0), rome(2026, 2, 1, 2, 30, 2), "gateway_stopped", 1802),
    (rome(2026, 3, 10, 12, 0, 0), rome(2026, 3, 10, 12, 20, 5), "gateway_lost", 1205),
    (rome(2026, 3, 31, 23, 0, 0), END, "connection", 3600),
]
RANGE_SECONDS = 90 * 86400 - 3600  # the quarter in Rome, one hour short for summer time
CONNECTED_SECONDS = RANGE_SECONDS - sum(o[3] for o in OUTAGES)


def write_journal(folder: Path) -> None:
    folder.mkdir(parents=True)
    for clock, event, connector, state in JOURNAL:
        at = rome(*clock)
        record = LinkRecord(
            at,
            event,  # type: ignore[arg-type]
            connector,
            "opcua" if connector else None,
            state,
            state == "running" if state else None,
            estimated=event == "gateway_lost",
        )
        name = folder / f"link-{datetime.fromtimestamp(at / 1e9).astimezone(ZoneInfo('UTC')):%Y-%m}.jsonl"
        with name.open("a") as file:
            file.write(json.dumps(record.as_json()) + "\n")


# Writes: (Rome clock, connector, field, old, requested, read_back, result, user)
WRITES: list[tuple[tuple[int, ...], str, str, Any, Any, Any, str, str]] = [
    (
        (2025, 12, 31, 23, 59, 59),
        "cnc-01",
        "program",
        "O1001 FLANGE-A",
        "O1002 HOUSING-B",
        "O1002 HOUSING-B",
        "written",
        "anna",
    ),  # before the quarter
    (
        (2026, 1, 8, 7, 15, 2),
        "cnc-01",
        "program",
        "O1001 FLANGE-A",
        "O2040 SHAFT-C",
        "O2040 SHAFT-C",
        "written",
        "anna",
    ),
    ((2026, 2, 3, 14, 0, 0), "cnc-01", "feed_override", 100, 140, None, "refused_limits", "marco"),
    ((2026, 2, 3, 14, 1, 0), "cnc-01", "feed_override", 100, 110, 110, "written", "marco"),
    ((2026, 3, 20, 6, 30, 0), "press-01", "mold_recipe", "R7", "R8", "R8", "written", "anna"),  # another machine
    (
        (2026, 3, 31, 23, 59, 59),
        "cnc-01",
        "program",
        "O2040 SHAFT-C",
        "O1001 FLANGE-A",
        "O1001 FLANGE-A",
        "written",
        "luca",
    ),
]


def write_audit(folder: Path) -> None:
    trail = AuditTrail(folder)
    trail.open()
    for n, (clock, connector, field, old, requested, read_back, result, user) in enumerate(WRITES):
        at = rome(*clock)
        entry = {
            "id": f"{at:x}-{n:08x}",
            "at": datetime.fromtimestamp(at / 1e9, ZoneInfo("UTC")).isoformat(),
            "at_ms": at // 1_000_000,
            "gateway": "plant-gw",
            "user": user,
            "role": "operator",
            "client": "10.0.0.31",
            "connector": connector,
            "field": field,
            "requested": requested,
            "old": old,
            "read_back": read_back,
            "target": f"ns=2;s={field}",
        }
        if result != "written":
            trail.append({**entry, "result": result, "message": "140 is above max 120"})
        else:
            trail.append({**entry, "result": "pending", "message": "sending"})
            trail.append({**entry, "result": result, "message": "written and read back"})
    trail.close()


@pytest.fixture(scope="module")
def quarter(tmp_path_factory: pytest.TempPathFactory) -> Quarter:
    tmp_path = tmp_path_factory.mktemp("quarter")
    config = write_config(tmp_path)
    data = tmp_path / "data"
    expected = write_history(data / "history.db")
    write_journal(data / LINK_FOLDER)
    write_audit(data / "audit")
    return Quarter(config, data, expected)


def options(**changes: Any) -> ReportOptions:
    base = {
        "machine": "cnc-01",
        "start": "2026-01-01",
        "end": "2026-03-31",
        "out": Path("unused.html"),
        "timezone": "Europe/Rome",
    }
    return ReportOptions(**{**base, **changes})


async def test_the_quarter_has_the_right_counts_availability_and_writes(quarter: Quarter) -> None:
    report = await build_report(load_config_source(quarter.config), options(), now_ns=NOW)
    assert (report.start_ns, report.end_ns) == (START, END)
    assert report.tags == CNC
    assert [c.name for c in report.connections] == ["cnc-01"]

    # Every series of the machine (the axis series too: its tags include the machine's), none of the press.
    found = {s.field: s for s in report.signals}
    assert set(found) == {"spindle_rpm", "program", "alarm", "axis_load", "parts"}
    for name, times in quarter.expected.items():
        signal = found[name]
        assert signal.count == len(times), name
        assert (signal.first_ns, signal.last_ns) == (times[0], times[-1]), name
    assert found["axis_load"].tags == {**CNC, "axis": "X"}
    assert found["spindle_rpm"].display("it") == "Velocità mandrino" and found["spindle_rpm"].unit == "rpm"
    assert (found["spindle_rpm"].minimum, found["spindle_rpm"].maximum) == (8000.0, 8975.0)

    # The link, to the second.
    [link] = report.availability
    assert link.range_ns == RANGE_SECONDS * SECOND
    assert link.connected_ns == CONNECTED_SECONDS * SECOND
    assert link.down_ns == sum(o[3] for o in OUTAGES) * SECOND
    assert link.unknown_ns == 0
    got = [(o.start_ns, o.end_ns, o.cause, round(o.seconds)) for o in link.outages]
    assert got == OUTAGES
    assert link.outages[2].estimated and link.outages[2].gateway_down
    assert link.outages[1].gateway_down and not link.outages[1].estimated
    assert link.outages[-1].open_end and not link.outages[0].open_end
    assert link.outages[0].states == ["reconnecting", "backoff"]

    # The writes to this machine in the quarter, oldest first; the press's and the one before are not.
    writes = [(w["field"], w["requested"], w["result"], w["user"]) for w in report.writes]
    assert writes == [
        ("program", "O2040 SHAFT-C", "written", "anna"),
        ("feed_override", 140, "refused_limits", "marco"),
        ("feed_override", 110, "written", "marco"),
        ("program", "O1001 FLANGE-A", "written", "luca"),
    ]

    # Where the data goes, and the config's identity.
    assert [(s.name, s.type, s.fed) for s in report.sinks] == [
        ("local", "historian", True),
        ("cloud", "influxdb", True),
    ]
    assert report.config_sha256 == load_config_source(quarter.config).sha256 and len(report.config_sha256) == 64
    connection = report.connections[0]
    assert connection.endpoint == "opc.tcp://10.0.0.20:4840"
    assert connection.security == ("sec.opcua", {"policy": "Basic256Sha256", "mode": "SignAndEncrypt"})
    assert connection.identity == ("id.user", {"user": "gateway"})
    assert connection.writable == [
        ("program", {"allowed": ", ".join(PROGRAMS)}),
        ("feed_override", {"min": "0", "max": "120"}),
    ]


async def test_a_journal_that_starts_inside_the_range_leaves_the_time_before_unknown(quarter: Quarter) -> None:
    # From 29 December: the journal starts on the 30th at 08:00, so 24 h + 8 h are unknown.
    report = await build_report(
        load_config_source(quarter.config), options(start="2025-12-29", end="2025-12-31"), now_ns=NOW
    )
    [link] = report.availability
    assert link.unknown_ns == 32 * 3600 * SECOND
    assert link.connected_ns == (3 * 86400 - 32 * 3600 - 1) * SECOND  # starting for the first second
    assert link.known_ratio is not None and link.ratio is not None and link.known_ratio > link.ratio
    html = render_html(report, "en")
    assert "no record of the link before 30/12/2025" not in html  # (English writes dates as ISO)
    assert "no record of the link before 2025-12-30 08:00:00" in html


async def test_without_any_journal_the_link_is_unknown_not_zero(quarter: Quarter, tmp_path: Path) -> None:
    text = quarter.config.read_text().replace(str(quarter.data), str(tmp_path / "elsewhere"))
    assert str(tmp_path / "elsewhere") in text
    moved = tmp_path / "plant-moved.yaml"
    moved.write_text(text)
    report = await build_report(load_config_source(moved), options(), now_ns=NOW)
    [link] = report.availability
    assert (link.connected_ns, link.down_ns, link.unknown_ns) == (0, 0, RANGE_SECONDS * SECOND)
    html = render_html(report, "en")
    assert "0.00 %" not in html
    assert "the link journal holds nothing for this period: the availability is unknown" in html


async def test_a_range_reaching_into_the_future_stops_at_now(quarter: Quarter) -> None:
    now = rome(2026, 3, 15, 12)
    report = await build_report(load_config_source(quarter.config), options(), now_ns=now)
    assert report.end_ns == now and report.asked_end_ns == END
    assert "the report stops at the time it was generated" in render_html(report, "en")


async def test_a_historian_keeping_less_than_the_period_says_so(quarter: Quarter, tmp_path: Path) -> None:
    text = quarter.config.read_text().replace("history.db\n", "history.db\n  retention: 30d\n", 1)
    assert "retention: 30d" in text
    shorter = tmp_path / "plant-30d.yaml"
    shorter.write_text(text)
    now = rome(2026, 4, 15)
    report = await build_report(load_config_source(shorter), options(), now_ns=now)
    assert report.retention_cutoff_ns == now - 30 * 86400 * SECOND
    # (30 days of 86,400 s before midnight on 15 April is 23:00 on 15 March: summer time came between)
    assert "The historian keeps data for 30 d: samples before 2026-03-15 23:00:00 were deleted" in render_html(
        report, "en"
    )
    assert [s.retention for s in report.sinks] == [30 * 86400.0, None]


def test_dates_are_local_midnights_and_the_last_day_is_included() -> None:
    assert parse_bound("2026-01-01", ROME, end=False) == START
    assert parse_bound("2026-03-31", ROME, end=True) == END
    assert parse_bound("2026-03-31T23:00", ROME, end=True) == rome(2026, 3, 31, 23)
    assert parse_bound("2026-03-31T21:00:00Z", ROME, end=True) == rome(2026, 3, 31, 23)
    with pytest.raises(ValueError, match="not a date or a time"):
        parse_bound("31/03/2026", ROME, end=False)


class _Checker(HTMLParser):
    """HTML basics: every element closed in order, ids unique, nothing loaded from outside."""

    VOID = frozenset({"meta", "link", "br", "col", "img", "input", "hr", "rect", "line", "polyline", "polygon"})

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.ids: list[str] = []
        self.problems: list[str] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        for name, value in attrs:
            if name == "id" and value:
                self.ids.append(value)
            if name in ("src", "href") or (value and "url(" in value):
                self.problems.append(f"<{tag} {name}={value}>: an external resource")
        if tag in ("script", "iframe", "object", "embed"):
            self.problems.append(f"<{tag}>")
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in self.VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"</{tag}> closes <{self.stack[-1] if self.stack else None}>")
        else:
            self.stack.pop()


@pytest.mark.parametrize("lang", ["it", "en"])
async def test_the_html_is_self_contained_well_formed_and_hides_every_secret(quarter: Quarter, lang: str) -> None:
    report = await build_report(load_config_source(quarter.config), options(), now_ns=NOW)
    text = render_html(report, lang)  # type: ignore[arg-type]
    assert text.startswith("<!doctype html>") and f'<html lang="{lang}">' in text and '<meta charset="utf-8">' in text
    checker = _Checker()
    checker.feed(text)
    checker.close()
    assert checker.problems == [] and checker.stack == []
    assert len(checker.ids) == len(set(checker.ids))
    assert {"svg", "table", "title", "style"} <= checker.tags
    assert PASSWORD not in text and TOKEN not in text
    assert report.config_sha256 in text
    scope = {"it": "Non è una perizia tecnica né un attestato di conformità", "en": "It is not a technical appraisal"}
    assert scope[lang] in text
    assert {"it": "99,91 %", "en": "99.91 %"}[lang] in text  # 7,765,493 s of 7,772,400 s
    assert {"it": "7.765.493 s", "en": "7,765,493 s"}[lang] in text
    assert {"it": "utente e password (gateway)", "en": "user name and password (gateway)"}[lang] in text
    assert {"it": "01/01/2026 – 31/03/2026", "en": "2026-01-01 – 2026-03-31"}[lang] in text
    assert {
        "it": "<strong>feed_override</strong>: min 0; max 120",
        "en": "<strong>feed_override</strong>: min 0; max 120",
    }[lang] in text


async def test_both_languages_render_in_chromium_and_print(quarter: Quarter, page_factory: Any) -> None:
    report = await build_report(load_config_source(quarter.config), options(), now_ns=NOW)
    folder = ARTIFACTS / "report"
    folder.mkdir(parents=True, exist_ok=True)
    for lang in ("it", "en"):
        path = folder / f"interconnection-{lang}.html"
        path.write_text(render_html(report, lang), encoding="utf-8")
        page = await page_factory(locale="it-IT" if lang == "it" else "en-GB", width=820, height=1160)
        await page.goto(path.as_uri())
        rows = await page.evaluate(
            """() => ({
                outages: document.querySelectorAll('table.outages tbody tr').length,
                signals: [...document.querySelectorAll('table.signals tbody tr')]
                    .map((r) => [r.dataset.field, Number(r.dataset.count)]),
                writes: document.querySelectorAll('table.writes tbody tr').length,
                sparks: document.querySelectorAll('svg.spark').length,
                overflow: document.documentElement.scrollWidth > document.documentElement.clientWidth,
            })"""
        )
        assert rows["outages"] == 4 and rows["writes"] == 4 and rows["sparks"] == 5
        assert dict(rows["signals"]) == {name: len(times) for name, times in quarter.expected.items()}
        assert not rows["overflow"], "the report is wider than the page"
        await page.screenshot(path=str(screenshot_path("report", f"interconnection-{lang}")), full_page=True)
        await page.emulate_media(media="print")
        await page.screenshot(path=str(screenshot_path("report", f"interconnection-{lang}-print")), full_page=True)
        if lang == "it":
            assert await page.locator("h1").inner_text() == "Rapporto di interconnessione — cnc-01"
        else:
            assert await page.locator("h1").inner_text() == "Interconnection report — cnc-01"


def test_the_command_writes_the_html_and_prints_the_pdf(quarter: Quarter, tmp_path: Path) -> None:
    if find_chromium() is None:
        pytest.skip("no Chromium: the PDF cannot be printed (Debian package chromium)")
    out = tmp_path / "report.html"
    command = [
        sys.executable,
        "-m",
        "gateway.cli",
        "report",
        "interconnection",
        str(quarter.config),
        "--machine",
        "cnc-01",
        "--from",
        "2026-01-01",
        "--to",
        "2026-03-31",
        "--out",
        str(out),
        "--lang",
        "en",
        "--pdf",
        "--tz",
        "Europe/Rome",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr
    assert f"{out}: machine cnc-01, 5 signals" in done.stdout and "cnc-01 99.91% connected" in done.stdout
    pdf = out.with_suffix(".pdf").read_bytes()
    assert pdf.startswith(b"%PDF-")
    pages = len(re.findall(rb"/Type\s*/Page\b(?!s)", pdf))
    assert pages >= 2, pages
    (ARTIFACTS / "report").mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "report" / "interconnection-en.pdf").write_bytes(pdf)


def test_an_unknown_machine_is_one_line_naming_the_connectors(quarter: Quarter, tmp_path: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "gateway.cli",
        "report",
        "interconnection",
        str(quarter.config),
        "--machine",
        "lathe-9",
        "--from",
        "2026-01-01",
        "--to",
        "2026-03-31",
        "--out",
        str(tmp_path / "r.html"),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "error: no connector of the config collects machine 'lathe-9' (its points carry machine=lathe-9); "
        "name it with --connector (connectors: cnc-01, press-01)"
    ]
    assert not (tmp_path / "r.html").exists()
