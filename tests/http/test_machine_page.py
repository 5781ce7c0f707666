"""The machine page as a production manager reads it, in headless Chromium.

Against a live gateway (real Mosquitto, the MQTT simulator, the historian): the range that
fits the data there is, state bands for text fields, counters as rates, y axes that fit the
data, readouts instead of placeholder legends, the current values as a grid, labels wrapping
between words in both languages, nothing moving while data streams, keyboard access.

Screenshots of both languages are saved under ``ARTIFACTS/browser/``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import yaml

from gateway.config import load_config
from gateway.http.app import AppContext
from gateway.http.config import HttpSettings
from gateway.http.server import HttpServer
from gateway.point import Point
from gateway.runtime import Gateway
from gateway.simulators.mqtt import SimulatorSettings, run_mqtt_simulator
from gateway.sinks.historian.store import HistorianStore
from tests.fixtures.browser import screenshot_path
from tests.helpers import async_wait_until
from tests.http.live import gateway_config, live_gateway

CNC = "line=A,machine=cnc-A1"
SECOND = 1_000_000_000
STATES = ("idle", "setup", "running", "running", "alarm")


def broker_url(mosquitto: Any) -> str:
    return f"mqtt://{mosquitto.host}:{mosquitto.port}"


def machine_url(base: str, card_id: str) -> str:
    return f"{base}/#/machine/{card_id.replace('=', '%3D').replace(',', '%2C')}"


async def open_machine(page: Any, url: str, card_id: str = CNC) -> None:
    await page.goto(machine_url(url, card_id))
    await page.wait_for_function("() => document.querySelector('#charts')?.dataset.to !== undefined")
    await page.wait_for_function(
        "() => [...document.querySelectorAll('.chart')].some((c) => Number(c.dataset.points) > 0)"
    )


# Lines a label breaks into: a break inside a word (not after a space or a hyphen) is reported,
# and so is a label wider than its box.
WRAP_CHECK = """(selector) => {
    const problems = [];
    let wrapped = 0;
    for (const el of document.querySelectorAll(selector)) {
        let lines = 1, previousTop = null, previous = null;
        const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
        for (let node = walker.nextNode(); node; node = walker.nextNode()) {
            for (let i = 0; i < node.textContent.length; i++) {
                const range = document.createRange();
                range.setStart(node, i);
                range.setEnd(node, i + 1);
                const rects = range.getClientRects();
                if (!rects.length) continue;
                const ch = node.textContent[i];
                if (previousTop !== null && rects[0].top > previousTop + 2) {
                    lines += 1;
                    if (!/\\s/.test(previous) && !/\\s/.test(ch) && previous !== "-") {
                        problems.push(`${el.textContent}: broken before "${node.textContent.slice(i)}"`);
                    }
                }
                previousTop = rects[0].top;
                previous = ch;
            }
        }
        if (lines > 1) wrapped += 1;
        if (el.scrollWidth > el.clientWidth + 1) problems.push(`${el.textContent}: wider than its box`);
    }
    return { problems, wrapped, count: document.querySelectorAll(selector).length };
}"""


# Where the elements matching SELECTOR are (to tell that nothing moved).
BOXES = """() => [...document.querySelectorAll('SELECTOR')].map((e) => {
    const r = e.getBoundingClientRect();
    return [r.x, r.y, r.width, r.height].map(Math.round);
})"""


def history(path: Path, now_ns: int) -> None:
    """Three hours of cnc-A1 (up to two minutes ago) and an offline machine last seen 5 h ago."""
    path.parent.mkdir(parents=True, exist_ok=True)
    store = HistorianStore(path)
    tags = {"line": "A", "machine": "cnc-A1"}
    points = []
    start = now_ns - 3 * 3600 * SECOND
    for i in range(0, 3 * 360 - 12):
        at = start + i * 10 * SECOND
        fields: dict[str, float | int | str] = {
            "state": STATES[(i // 30) % len(STATES)],
            "spindle_rpm": 8000.0 + (i % 50) * 10,
            "parts": 1000 + i // 3,
            "scrap": 3,  # a constant count
            "tool": 7,  # a constant integer that is not a count
            "setpoint": 3.0,  # a constant measured value
        }
        points.append(Point("machine", fields, tags, at))
    offline = {"line": "Z", "machine": "cnc-Z9"}
    gone = now_ns - 6 * 3600 * SECOND
    for i in range(360):
        fields = {"state": STATES[(i // 40) % len(STATES)], "spindle_rpm": 7000.0 + i, "parts": 50 + i // 4}
        points.append(Point("machine", fields, offline, gone + i * 10 * SECOND))
    store.write(points)
    store.close()


async def test_a_young_machine_opens_on_the_data_it_has_with_bands_rates_and_readouts(
    tmp_path: Path, mosquitto: Any, page_factory: Any
) -> None:
    async with live_gateway(tmp_path, broker_url(mosquitto), rate=40) as live:
        page = await page_factory(locale="en-GB")
        await page.goto(live.url + "/")
        await page.wait_for_selector(f'.card[data-id="{CNC}"]')
        await open_machine(page, live.url)
        # Seconds of data: "since start" is chosen, and the data fills the chart from its left edge.
        assert await page.locator('[data-range="fit"]').get_attribute("aria-pressed") == "true"
        assert (await page.locator("#range-note").inner_text()).startswith("All the data there is: since ")
        # (after a refresh: the first draw places the start within a bucket of the hour, later
        # ones with the finer buckets of the fitted window)
        drawn = await page.evaluate("() => charts.dataset.to")
        await page.wait_for_function("(w) => charts.dataset.to !== w", arg=drawn, timeout=15_000)
        window = await page.evaluate("() => ({from: Number(charts.dataset.from), to: Number(charts.dataset.to)})")
        first = await page.evaluate(
            """async () => {
                const id = document.querySelector('.chart[data-field="spindle_rpm"]').dataset.series;
                const r = await (await fetch(`/api/series/${id}/range?from=-10m&points=10000`)).json();
                return r.buckets[0].time;
            }"""
        )
        assert 0 <= first - window["from"] <= 0.1 * (window["to"] - window["from"]), (first, window)

        # The text state field is a band of named states, not a number plot.
        row = page.locator(".tl-row").first
        assert await row.locator(".tl-label").inner_text() == "Machine state"
        assert await page.locator('.chart[data-field="state"]').count() == 0
        await row.locator(".seg").first.wait_for()
        values = set(await row.locator(".seg").evaluate_all("(els) => els.map((e) => e.dataset.value)"))
        assert values and values <= {"idle", "setup", "running", "alarm"}
        legend = await row.locator(".tl-key").all_inner_texts()
        assert legend and all(text.split(" ")[0] in values and text.rstrip().endswith("s") for text in legend), legend

        # The parts counter is a rate per hour; the measured values keep mean and min–max.
        assert await page.locator('.chart[data-field="parts"]').get_attribute("data-mode") == "rate"
        assert await page.locator('.chart[data-field="parts"] h3').inner_text() == "parts per hour"
        assert await page.locator('.chart[data-field="spindle_rpm"]').get_attribute("data-mode") == "value"

        # No placeholder legend: each chart has one readout line with figures.
        assert await page.locator(".u-legend").count() == 0
        for text in await page.locator(".chart .readout").all_inner_texts():
            assert "–" not in text and any(ch.isdigit() for ch in text), text
        assert (await page.locator('.chart[data-field="spindle_rpm"] .readout').inner_text()).startswith("last ")
        # The current values: a grid of tiles, not one row stretched across the page.
        tiles = await page.locator("#machine-values .tile").evaluate_all(
            "(els) => els.map((e) => e.getBoundingClientRect().toJSON())"
        )
        assert len(tiles) == 3 and all(t["width"] < 320 for t in tiles)
        assert len({t["top"] for t in tiles}) == 1  # side by side at 1280 px
        await page.screenshot(path=str(screenshot_path("machine-young", "en")), full_page=True)

        # Hover on a chart: its readout shows the bucket under the cursor, the bands show the time.
        chart = page.locator('.chart[data-field="spindle_rpm"]')
        await chart.scroll_into_view_if_needed()
        box = await chart.locator(".u-over").bounding_box()
        assert box is not None
        await page.mouse.move(box["x"] + box["width"] * 0.1, box["y"] + box["height"] / 2)
        await page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] / 2, steps=4)
        readout = chart.locator(".readout")
        await page.wait_for_function(
            "(el) => el.dataset.cursor === 'true'", arg=await readout.element_handle(), timeout=10_000
        )
        text = await readout.inner_text()
        assert text[:2].isdigit() and text[2] == ":" and "·" in text, text
        assert await page.locator(".tl-cursor:not([hidden])").count() >= 1
        await page.screenshot(path=str(screenshot_path("machine-hover", "en")), full_page=False)

        # Hover on the band: value and duration of the segment under the pointer.
        track = row.locator(".tl-track")
        segment = row.locator(".seg").last
        await row.scroll_into_view_if_needed()
        seg_box = await segment.bounding_box()
        assert seg_box is not None
        await page.mouse.move(seg_box["x"] + seg_box["width"] / 2, seg_box["y"] + seg_box["height"] / 2)
        tip = page.locator(".tl-tip")
        await tip.wait_for(state="visible")
        tip_text = await tip.inner_text()
        assert await segment.get_attribute("data-value") in tip_text and " s" in tip_text, tip_text

        # Keyboard: the band takes the focus and the arrow keys walk its segments.
        await page.mouse.move(0, 0)
        await track.focus()
        await page.keyboard.press("Home")
        first_value = await row.locator(".seg").first.get_attribute("data-value")
        await page.wait_for_function(
            "(v) => !document.querySelector('.tl-tip').hidden && document.querySelector('.tl-tip').dataset.value === v",
            arg=first_value,
        )
        # And a chart: the arrow keys (End: the last bucket) put its cursor, the readout follows.
        await page.keyboard.press("Escape")
        await page.wait_for_function("(el) => el.dataset.cursor === 'false'", arg=await readout.element_handle())
        await chart.locator(".plot").focus()
        await page.keyboard.press("End")
        await page.keyboard.press("ArrowLeft")
        await page.wait_for_function("(el) => el.dataset.cursor === 'true'", arg=await readout.element_handle())
        # The range buttons are reachable with Tab and work with Enter.
        await page.focus('[data-range="15m"]')
        await page.keyboard.press("Enter")
        assert await page.locator('[data-range="15m"]').get_attribute("aria-pressed") == "true"
        await page.wait_for_function("() => Number(charts.dataset.to) - Number(charts.dataset.from) === 15 * 60000")

        italian = await page_factory(locale="it-IT")
        await open_machine(italian, live.url)
        assert await italian.locator(".tl-row .tl-label").first.inner_text() == "Stato macchina"
        assert await italian.locator('.chart[data-field="parts"] h3').inner_text() == "parts all'ora"
        assert (await italian.locator("#range-note").inner_text()).startswith("Tutti i dati disponibili: dalle ")
        assert (await italian.locator('.chart[data-field="spindle_rpm"] .readout').inner_text()).startswith("ultimo ")
        await italian.screenshot(path=str(screenshot_path("machine-young", "it")), full_page=True)


async def test_history_opens_on_the_last_hour_and_an_offline_machine_on_its_last_data(
    tmp_path: Path, mosquitto: Any, page_factory: Any
) -> None:
    history(tmp_path / "gateway" / "history.db", time.time_ns())
    async with live_gateway(tmp_path, broker_url(mosquitto), rate=20) as live:
        page = await page_factory(locale="en-GB")
        await open_machine(page, live.url)
        # Three hours of data: the page opens on the last hour, like before.
        await page.wait_for_selector('[data-range="1h"][aria-pressed="true"]')
        assert await page.locator('[data-range="fit"]').is_hidden()
        # Constant series get an axis around their value, not 0–100: a constant integer 7 on
        # 6–8, a constant 3.0 on 2.7–3.3; the constant scrap count is a rate of 0 per hour.
        await page.wait_for_function("() => document.querySelector('.chart[data-field=\"tool\"]')?.dataset.ymax")
        tool = await page.locator('.chart[data-field="tool"]').evaluate("(e) => [e.dataset.ymin, e.dataset.ymax]")
        assert [float(v) for v in tool] == [6, 8]
        setpoint = await page.locator('.chart[data-field="setpoint"]').evaluate(
            "(e) => [Number(e.dataset.ymin), Number(e.dataset.ymax)]"
        )
        assert abs(setpoint[0] - 2.7) < 1e-9 and abs(setpoint[1] - 3.3) < 1e-9, setpoint
        scrap = page.locator('.chart[data-field="scrap"]')
        assert await scrap.get_attribute("data-mode") == "rate"
        assert float(await scrap.get_attribute("data-ymax") or "nan") <= 1
        assert "+0 in the range" in await scrap.locator(".readout").inner_text()
        # The parts counter: one part every 30 s in the history is 120 per hour.
        parts = page.locator('.chart[data-field="parts"]')
        assert await parts.get_attribute("data-mode") == "rate"
        await parts.scroll_into_view_if_needed()
        box = await parts.locator(".u-over").bounding_box()
        assert box is not None
        await page.mouse.move(box["x"] + box["width"] * 0.4, box["y"] + box["height"] / 2)
        await page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] / 2, steps=3)
        await page.wait_for_function(
            "(el) => el.dataset.cursor === 'true'", arg=await parts.locator(".readout").element_handle()
        )
        assert (await parts.locator(".readout").inner_text()).endswith(" · 120/h")
        await page.mouse.move(0, 0)
        await page.click('[data-range="24h"]')
        await page.wait_for_function("() => Number(charts.dataset.to) - Number(charts.dataset.from) === 86400000")
        await page.wait_for_function("() => document.querySelectorAll('.tl-row .seg').length > 10")
        await page.screenshot(path=str(screenshot_path("machine-history", "en")), full_page=True)

        # An offline machine: its last hour with data, said in words, as a custom range.
        await open_machine(page, live.url, "line=Z,machine=cnc-Z9")
        await page.wait_for_selector('[data-range="custom"][aria-pressed="true"]')
        note = await page.locator("#range-note").inner_text()
        assert note.startswith("Nothing in the last hour: showing the last hour with data, up to "), note
        assert await page.locator("#custom-range").is_visible()
        window = await page.evaluate("() => [Number(charts.dataset.from), Number(charts.dataset.to)]")
        assert window[1] < time.time() * 1000 - 4.5 * 3600e3
        assert await page.locator(".tl-row .seg").count() > 3
        # Its parts rate: one every 40 s was 90 an hour (not 0 in the bucket after its last sample).
        # (89–91: where the hour's window falls on the samples moves the count by one)
        readout = await page.locator('.chart[data-field="parts"] .readout').inner_text()
        assert re.match(r"last (89|90|91)/h · \+", readout), readout
        await page.screenshot(path=str(screenshot_path("machine-offline", "en")), full_page=True)


LONG_LABELS: dict[str, object] = {
    "fields": {
        "spindle_rpm": {"label": {"en": "Spindle speed", "it": "Velocità mandrino"}, "unit": "rpm", "decimals": 0},
        "spindle_load": {"label": {"en": "Spindle load of the main axis", "it": "Carico percentuale del mandrino"}},
        "parts": {"label": {"en": "Parts produced", "it": "Pezzi prodotti dall'avanzamento"}},
    },
}


async def test_labels_wrap_between_words_in_both_languages_and_nothing_moves_while_data_streams(
    tmp_path: Path, mosquitto: Any, page_factory: Any
) -> None:
    async with live_gateway(tmp_path, broker_url(mosquitto), rate=40, overview=LONG_LABELS) as live:
        for locale, language in (("it-IT", "it"), ("en-GB", "en")):
            page = await page_factory(locale=locale, width=390, height=844)
            await page.goto(live.url + "/")
            await page.wait_for_selector(f'.card[data-id="{CNC}"] dt')
            cards = await page.evaluate(WRAP_CHECK, ".card dt, .card-title")
            assert not cards["problems"], cards
            await open_machine(page, live.url)
            await page.wait_for_function("() => document.querySelectorAll('#machine-values dt').length === 3")
            result = await page.evaluate(WRAP_CHECK, "#machine-values dt, .chart h3, .tl-label, .kpi-card h2")
            assert not result["problems"], result
            assert result["wrapped"] >= 1, result  # long labels did wrap (the check checked something)
            # Each label says which language it is in (hyphenation, screen readers).
            langs = await page.locator("#machine-values dt").evaluate_all("(els) => els.map((e) => e.lang)")
            assert langs == [language] * 3, langs
            assert await page.locator("html").get_attribute("lang") == language
            await page.screenshot(path=str(screenshot_path("machine-narrow", language)), full_page=True)

        # While data streams and the charts refresh, nothing on the page moves.
        page = await page_factory(locale="en-GB")
        await open_machine(page, live.url)
        boxes = BOXES.replace("SELECTOR", ".tile, .chart, .timeline, .tl-row, .range-bar, #charts")
        before = await page.evaluate(boxes)
        readouts = await page.locator(".chart .readout").all_inner_texts()
        window = await page.evaluate("() => charts.dataset.to")
        await page.wait_for_function("(w) => charts.dataset.to !== w", arg=window, timeout=15_000)
        await page.wait_for_function(
            "(before) => [...document.querySelectorAll('.chart .readout')].map((e) => e.textContent).join()"
            " !== before.join()",
            arg=readouts,
            timeout=15_000,
        )
        assert await page.evaluate(boxes) == before


# --- machines with KPIs (machines: config, the KPI engine's API) ----------------------------------

IMM = "line=C,machine=imm-07"
PRESS = "line=C,machine=press-09"
#: imm-07's last hour of data, minute by minute: (until minute, state)
IMM_SCHEDULE = ((20, "PRODUCING"), (30, "IDLE"), (35, "ALARM"), (40, "SETUP"), (58, "PRODUCING"), (61, "BREAK"))


def kpi_history(path: Path, last_ns: int) -> None:
    """imm-07 (states, parts, scrap) and press-09 (states only) over the hour before ``last_ns``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    store = HistorianStore(path)
    points = []
    parts = scrap = 0
    for i in range(361):  # every 10 s, the last sample at last_ns
        at = last_ns - (360 - i) * 10 * SECOND
        minute = i // 6
        state = next(name for until, name in IMM_SCHEDULE if minute < until)
        if state == "PRODUCING" and i % 2 == 0:  # a part every 20 s (the ideal is 10 s)
            parts += 1
            scrap += 1 if parts % 10 == 0 else 0
        fields: dict[str, float | int | str] = {"state": state, "cycle_count": parts, "scrap_count": scrap}
        points.append(Point("machine", fields, {"line": "C", "machine": "imm-07"}, at))
        press = "RUN" if minute < 30 else "WARMUP" if minute < 40 else "STOP"
        points.append(
            Point("machine", {"state": press, "pressure_bar": 120.0 + minute}, {"line": "C", "machine": "press-09"}, at)
        )
    # A kpi point carrying the machine's tags (as with group_by: [machine]): the engine's output,
    # for the OEE cards, not a chart of its own.
    kpi_tags = {"line": "C", "machine": "imm-07", "period": "minute", "shift": "A"}
    points.append(Point("kpi", {"running_s": 60.0, "oee": 0.5}, kpi_tags, last_ns - 60 * SECOND))
    store.write(points)
    store.close()


def machines_config(shift_from: str, shift_to: str) -> list[dict[str, object]]:
    shifts = [{"name": "A", "from": shift_from, "to": shift_to}]
    return [
        {
            "name": "cnc-A1",
            "tags": {"line": "A", "machine": "cnc-A1"},
            "state": {
                "measurement": "machine",
                "field": "state",
                "map": {"running": ["running"], "idle": ["idle"], "setup": ["setup"], "down": ["alarm"]},
            },
            "parts": {"measurement": "machine", "field": "parts"},
            "ideal_cycle_time": "25s",
            "shifts": shifts,
            "timezone": "UTC",
        },
        {
            "name": "imm-07",
            "tags": {"line": "C", "machine": "imm-07"},
            "state": {
                "measurement": "machine",
                "field": "state",
                "map": {
                    "running": ["PRODUCING"],
                    "idle": ["IDLE"],
                    "down": ["ALARM"],
                    "setup": ["SETUP"],
                    "planned_stop": ["BREAK"],
                },
            },
            "parts": {"measurement": "machine", "field": "cycle_count"},
            "scrap": {"measurement": "machine", "field": "scrap_count"},
            "ideal_cycle_time": "10s",
            "shifts": shifts,
            "timezone": "UTC",
        },
        {
            "name": "press-09",
            "tags": {"line": "C", "machine": "press-09"},
            "state": {"measurement": "machine", "field": "state", "map": {"running": ["RUN"], "idle": ["STOP"]}},
            "shifts": shifts,
            "timezone": "UTC",
        },
    ]


@contextlib.asynccontextmanager
async def kpi_gateway(tmp_path: Path, broker: str, machines: list[dict[str, object]]) -> AsyncIterator[str]:
    """A live gateway (MQTT simulator, historian) whose config also has ``machines:``."""
    data = tmp_path / "gateway"
    config = gateway_config(data, broker, "127.0.0.1:0", False)
    config["machines"] = machines
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    async with Gateway(load_config(path)) as gateway:
        assert gateway.http is not None, "the web server did not start"
        await async_wait_until(
            lambda: all(s.status.detail.get("subscribed") for s in gateway.sources if s.status.type == "mqtt"),
            timeout=30,
            message="the MQTT connector subscribed",
        )
        stop = asyncio.Event()
        settings = SimulatorSettings(broker=broker, rate=40, seed=5, lines=2, machines=2, meters=1)
        simulator = asyncio.create_task(run_mqtt_simulator(settings, stop), name="simulator")
        try:
            yield gateway.http.url
        finally:
            stop.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(simulator, 15)
            gateway.request_stop()


def percent(ratio: float | None, language: str) -> str:
    """A ratio as the page shows it: 66.7% (en), 66,7% (it), or no data."""
    if ratio is None:
        return {"en": "no data", "it": "nessun dato"}[language]
    text = f"{ratio * 100:.1f}%"
    return text.replace(".", ",") if language == "it" else text


async def api(page: Any, path: str) -> Any:
    return await page.evaluate("async (path) => (await fetch(path)).json()", path)


async def test_machines_with_kpis_show_oee_states_and_parts_per_hour_from_the_engine(
    tmp_path: Path, mosquitto: Any, page_factory: Any
) -> None:
    now = time.time_ns()
    last = (now - 2 * 3600 * SECOND) // (60 * SECOND) * 60 * SECOND
    start = time.gmtime((last - 90 * 60 * SECOND) / SECOND)
    shift_from = f"{start.tm_hour:02d}:{start.tm_min:02d}"
    shift_to = f"{(start.tm_hour + 8) % 24:02d}:{start.tm_min:02d}"
    kpi_history(tmp_path / "gateway" / "history.db", last)
    async with kpi_gateway(tmp_path, broker_url(mosquitto), machines_config(shift_from, shift_to)) as url:
        page = await page_factory(locale="en-GB")
        await page.goto(url + "/")
        # The overview: a configured machine's card shows its state category and today's OEE.
        cnc = page.locator(f'.card[data-id="{CNC}"]')
        await cnc.locator(".card-kpi").wait_for()
        await page.wait_for_function(
            "(el) => ['running', 'idle', 'setup', 'down'].includes(el.querySelector('.badge').textContent)",
            arg=await cnc.element_handle(),
        )
        machines = {m["name"]: m for m in await api(page, "/api/machines")}
        press_card = page.locator(f'.card[data-id="{PRESS}"]')
        assert await press_card.locator(".card-kpi").inner_text() == "OEE today no data"  # no parts counter
        assert await press_card.locator(".badge").inner_text() == "offline"
        imm_card = page.locator(f'.card[data-id="{IMM}"]')
        assert await imm_card.locator(".card-oee").inner_text() == percent(machines["imm-07"]["today"]["oee"], "en")
        # A machine without machines: config: its card as before.
        assert await page.locator('.card[data-id="line=A,machine=cnc-A2"] .card-kpi').count() == 0
        await page.screenshot(path=str(screenshot_path("overview-kpi", "en")), full_page=True)

        # imm-07's page: last seen two hours ago, so it opens on its last hour with data.
        await open_machine(page, url, IMM)
        await page.wait_for_selector('#kpi-range[data-state="ready"]')
        window = await page.evaluate("() => [Number(charts.dataset.from), Number(charts.dataset.to)]")
        assert window == [last // 1_000_000 - 3_600_000, last // 1_000_000 + 60_000]
        report = await api(page, f"/api/machines/imm-07/kpi?from={window[0]}&to={window[1]}")
        assert report["availability"] is not None and report["oee"] is not None
        for key in ("oee", "availability", "performance", "quality"):
            shown = await page.locator(f'#kpi-range [data-kpi="{key}"]').inner_text()
            assert shown == percent(report[key], "en"), (key, shown, report[key])
        assert await page.locator("#kpi-range .kpi-parts").inner_text() == (
            f"{report['parts']} parts · {report['good']} good · {report['scrap']} scrap"
        )
        # Time per category: every category with time, in words, with its duration.
        # (every category is listed, so that one appearing moves nothing; those without time are muted)
        assert await page.locator("#kpi-range .catlist li").count() == len(report["seconds"])
        names = await page.locator('#kpi-range .catlist li[data-zero="false"] .cat-name').all_inner_texts()
        expected = [c.replace("_", " ") for c, s in report["seconds"].items() if s > 0]
        assert names == expected, (names, report["seconds"])
        running = page.locator('#kpi-range .catlist li[data-cat="running"] .cat-time')
        assert await running.inner_text() == f"{round(report['seconds']['running'] / 60)} min"
        # The shift and today: as /api/machines gives them.
        assert await page.locator("#kpi-shift h2").inner_text() == "Shift A"
        shift = machines["imm-07"]["shift"]["kpi"]
        assert await page.locator('#kpi-shift [data-kpi="oee"]').inner_text() == percent(shift["oee"], "en")

        # The state band: the engine's intervals, by category, named; the raw value on hover.
        states = await api(page, f"/api/machines/imm-07/states?from={window[0]}&to={window[1]}")
        row = page.locator('.tl-row[data-row="kpi-states"]')
        cats = await row.locator(".seg").evaluate_all("(els) => els.map((e) => e.dataset.cat)")
        assert cats == [i["category"] for i in states["intervals"]]
        assert {"running", "idle", "down", "setup", "planned_stop"} <= set(cats)
        # The shift the window lies in, named under the axis.
        assert await page.locator(".tl-shifts .tl-shift").all_inner_texts() == ["Shift A"]
        down = row.locator('.seg[data-cat="down"]')
        await row.scroll_into_view_if_needed()
        box = await down.bounding_box()
        assert box is not None
        await page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        await page.wait_for_function("() => document.querySelector('.tl-tip').dataset.category === 'down'")
        assert "down (ALARM) · 5 min" in await page.locator(".tl-tip").inner_text()
        assert await page.locator('.chart[data-field="running_s"], .chart[data-field="oee"]').count() == 0
        # The raw state field is not drawn twice (the KPI row shows it), the counters are rates.
        assert await page.locator('.chart[data-field="cycle_count"]').get_attribute("data-mode") == "rate"
        await page.mouse.move(0, 0)
        await page.evaluate("() => window.scrollTo(0, 0)")  # (the sticky header stays on top)
        await page.screenshot(path=str(screenshot_path("machine-kpi", "en")), full_page=True)

        # Parts per hour against the ideal (10 s: 360 an hour), over a range of 3 hours or more.
        await page.click('[data-range="24h"]')
        await page.wait_for_function("() => Number(document.querySelector('#kpi-pph').dataset.points) > 0")
        assert abs(float(await page.locator("#kpi-pph").get_attribute("data-ideal") or "0") - 360) < 1
        assert await page.locator("#pph-ideal").inner_text() == "ideal 360/h"
        assert await page.locator(".tl-row .tl-edge").count() >= 1  # where shift A starts (and ends)
        await page.evaluate("() => window.scrollTo(0, 0)")
        await page.screenshot(path=str(screenshot_path("machine-kpi-24h", "en")), full_page=True)

        # press-09 has no parts counter: performance, quality and OEE are "no data", never 0 %.
        italian = await page_factory(locale="it-IT")
        await open_machine(italian, url, PRESS)
        await italian.wait_for_selector('#kpi-range[data-state="ready"]')
        for key in ("oee", "performance", "quality"):
            assert await italian.locator(f'#kpi-range [data-kpi="{key}"]').inner_text() == "nessun dato"
        availability = await italian.locator('#kpi-range [data-kpi="availability"]').inner_text()
        assert availability.endswith("%") and "," in availability, availability
        assert await italian.locator("#kpi-range .kpi-parts").inner_text() == "nessun contapezzi"
        assert await italian.locator("#kpi-pph").is_hidden()  # nothing to count
        # "no data" fits its column: one line, like the percentages
        heights = await italian.locator("#kpi-range .apq dd").evaluate_all("(els) => els.map((e) => e.clientHeight)")
        assert len(set(heights)) == 1, heights
        await italian.locator('.tl-row[data-row="kpi-states"] .seg[data-cat="unknown"]').first.wait_for()
        await italian.screenshot(path=str(screenshot_path("machine-kpi-nodata", "it")), full_page=True)
        await open_machine(italian, url, IMM)
        await italian.wait_for_selector('#kpi-range[data-state="ready"]')
        assert await italian.locator('#kpi-range [data-kpi="oee"]').inner_text() == percent(report["oee"], "it")
        assert await italian.locator("#kpi-shift h2").inner_text() == "Turno A"
        await italian.screenshot(path=str(screenshot_path("machine-kpi", "it")), full_page=True)

        # cnc-A1, live: the shift's figures follow the kpi events, and nothing moves meanwhile.
        await open_machine(page, url)
        await page.wait_for_selector('#kpi-shift[data-state="ready"]')
        assert await page.locator('.tl-row[data-row="kpi-states"]').count() == 1
        boxes = BOXES.replace("SELECTOR", ".kpi-card, #kpi-pph, .tile, .timeline, .chart")
        before = await page.evaluate(boxes)
        figures = await page.locator("#kpi-shift .catlist").inner_text()
        await page.wait_for_function(
            "(before) => document.querySelector('#kpi-shift .catlist').innerText !== before", arg=figures
        )
        assert await page.evaluate(boxes) == before
        assert await page.locator("#machine-since").inner_text() != ""
        await page.screenshot(path=str(screenshot_path("machine-kpi-live", "en")), full_page=True)

        # A machine without machines: config: plain series, as without the engine.
        await open_machine(page, url, "line=A,machine=cnc-A2")
        assert await page.locator("#kpi").count() == 0
        assert await page.locator(".tl-row .tl-label").first.inner_text() == "Machine state"


async def test_the_pages_rules_for_rates_axes_durations_and_percentages(page_factory: Any) -> None:
    """The page's own arithmetic, run in Chromium on its modules (no data needed)."""
    ctx = AppContext(name="gw", settings=HttpSettings(listen="127.0.0.1:0"), statuses=list)
    async with HttpServer(ctx) as server:
        page = await page_factory(locale="it-IT")
        await page.goto(server.url + "/")
        result = await page.evaluate(
            """async () => {
                const charts = await import('/static/js/charts.js');
                const i18n = await import('/static/js/i18n.js');
                const timeline = await import('/static/js/timeline.js');
                const minute = 60e3;
                // A counter: +2 a minute, reset to 0 in the 4th minute, then +2 again; a gap after.
                const lasts = [10, 12, 14, 1, 3, 5];
                const buckets = lasts.map((last, i) => ({ time: i * minute, last, min: i === 3 ? 0 : last - 2 }));
                buckets.push({ time: 9 * minute, last: 7, min: 5 });
                const rates = charts.counterRates(buckets, minute, 10 * minute);
                // The data ends 36 s into the last bucket: drawn, but "last" is the last full one.
                const cut = charts.counterRates(buckets.slice(0, 4), minute, 3.6 * minute);
                const it = {
                    rates: rates.rates, times: rates.times.map((t) => t / minute), total: rates.total,
                    cut: [cut.rates, cut.lastRate],
                    ranges: [[3, 3, true], [0, 0, false], [3, 3, false], [-5, -5, false], [10, 20, false],
                             [null, null, false]].map((args) => charts.yRange(...args)),
                    widths: [charts.bucketWidth(0, 3600e3, 1000), charts.bucketWidth(0, 86400e3, 1000)],
                    counterWidths: [71e3, 3600e3, 86400e3, 7 * 86400e3].map((span) => {
                        const w = charts.counterWindow(1796600000000 - span, 1796600000000);
                        return [span, w.width, w.to - w.from];
                    }),
                    decimals: [0.05, 0.1, 0.2, 0.25, 1, 2.5, 1000].map(charts.tickDecimals),
                    counters: ['parts', 'packs_good', 'cycle_count', 'shots', 'cycle_time', 'part_number', 'scrap']
                        .map((field) => charts.isCounter({ field, kind: 'int' })),
                    durations: [0.4, 45, 125, 600, 3900, 90000].map(i18n.formatDuration),
                    percents: [0.6667, null, 0, 1].map((r) => i18n.formatPercent(r)),
                    categories: ['RUNNING', 'Idle', 'e-stop', 'changeover', 2, 'warmup'].map(timeline.categoryOf),
                    segments: timeline.segmentsFromBuckets(
                        [{ time: 10, last: 'a' }, { time: 20, last: 'a' }, { time: 30, last: 'b' }], 'z', 0, 100, 50),
                };
                i18n.setLanguage('en');
                it.english = [i18n.formatDuration(90000), i18n.formatPercent(0.6667), i18n.formatPercent(null)];
                return it;
            }"""
        )
    # Rates per hour: +2 a minute is 120/h; the reset counts from zero (1 - 0 = +1: 60/h); the
    # gap leaves a hole (null); the last, partly filled bucket is in the total only.
    assert result["rates"] == [120, 120, 120, 60, 120, 120, None, 120, 120]
    assert result["times"] == [0, 1, 2, 3, 4, 5, 6, 9, 10]  # (the last point closes the last step)
    assert result["total"] == 2 + 2 + 2 + 1 + 2 + 2 + 2
    assert result["cut"] == [[120, 120, 120, 100, 100], 120]  # (+1 in 36 s: 100/h, drawn, not "last")
    assert result["ranges"] == [[2, 4], [0, 1], [2.7, 3.3], [-5.5, -4.5], [9.2, 20.8], [0, 1]]
    assert result["widths"] == [3603.603604, 120000]  # (in ns like the historian; rollups: whole minutes)
    # A counter's buckets: a whole number of minutes (just under one minute from raw samples),
    # about 60 over the window, which they cover (to the millisecond).
    assert [(round(width), asked >= span - 1) for span, width, asked in result["counterWidths"]] == [
        (60000, True),
        (60000, True),
        (24 * 60000, True),
        (168 * 60000, True),
    ]
    assert result["decimals"] == [2, 1, 1, 2, 0, 1, 0]
    assert result["counters"] == [True, True, True, True, False, False, True]
    assert result["durations"] == ["< 1 s", "45 s", "2 min 5 s", "10 min", "1 h 05 min", "1 g 1 h"]
    assert result["percents"] == ["66,7%", "nessun dato", "0,0%", "100,0%"]
    assert result["english"] == ["1 d 1 h", "66.7%", "no data"]
    assert result["categories"] == ["running", "idle", "down", "setup", "down", None]
    # A value holds until the next one; the band stops where the data stops (50), not at 100.
    assert result["segments"] == [
        {"from": 0, "to": 10, "value": "z"},
        {"from": 10, "to": 30, "value": "a"},
        {"from": 30, "to": 50, "value": "b"},
    ]
