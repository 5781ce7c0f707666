"""The web page in headless Chromium against a live gateway (real Mosquitto, the MQTT simulator).

Screenshots of each step are saved under ``ARTIFACTS/browser/``.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from playwright.async_api import Error as PlaywrightError

from gateway.http.app import AppContext
from gateway.http.config import HttpSettings
from gateway.http.server import HttpServer
from gateway.latest import LatestValues
from tests.fixtures.browser import screenshot_path
from tests.http.live import ADMIN_TOKEN, VIEWER_TOKEN, live_gateway
from tests.http.test_quality import BAD, Machine

MACHINES = ["line=A,machine=cnc-A1", "line=A,machine=cnc-A2", "line=B,machine=cnc-B1", "line=B,machine=cnc-B2"]


def card(card_id: str) -> str:
    return f'.card[data-id="{card_id}"]'


async def refused(page: Any, url: str) -> bool:
    """The browser got 401 (shown as such, or given up on with nothing to answer the challenge)."""
    try:
        response = await page.goto(url)
    except PlaywrightError as exc:
        return "ERR_INVALID_AUTH_CREDENTIALS" in str(exc)
    return response is not None and response.status == 401 and await page.locator(".card").count() == 0


def broker_url(mosquitto: Any) -> str:
    return f"mqtt://{mosquitto.host}:{mosquitto.port}"


async def test_overview_has_a_card_per_machine_and_live_values_change(
    tmp_path: Path, mosquitto: Any, page_factory: Any
) -> None:
    async with live_gateway(tmp_path, broker_url(mosquitto), rate=40) as live:
        page = await page_factory(locale="en-GB")
        await page.goto(live.url + "/")
        for card_id in MACHINES:
            await page.wait_for_selector(card(card_id))
        # + an energy/temperature card per line (its first message may come just after the machines')
        await page.wait_for_function("(n) => document.querySelectorAll('.card').length === n", arg=len(MACHINES) + 2)
        cnc = page.locator(card("line=A,machine=cnc-A1"))
        assert await cnc.locator(".card-title").inner_text() == "cnc-A1"
        assert await cnc.locator(".badge").inner_text() in {"running", "idle", "alarm"}
        assert set(await cnc.locator("dt").all_inner_texts()) == {"spindle_rpm", "spindle_load", "parts"}
        assert "updated" in await cnc.locator(".age").inner_text()
        # A line's meters and sensors: no state, so no badge (only "offline" would show).
        line = page.locator(card("line=A"))
        assert await line.locator(".card-title").inner_text() == "line A"
        assert await line.locator(".badge").is_hidden()
        await page.screenshot(path=str(screenshot_path("overview", "en")), full_page=True)

        # The energy meters' power moves with every message: a shown value changes by itself.
        values = page.locator(card("line=A") + " dd")
        before = await values.all_inner_texts()
        await page.wait_for_function(
            """([selector, before]) => {
                const now = [...document.querySelectorAll(selector)].map((e) => e.textContent);
                return now.length > 0 && now.join("|") !== before.join("|");
            }""",
            arg=[card("line=A") + " dd", before],
            timeout=8_000,
        )
        # The connections page shows the connector and the sink running, with rates.
        await page.click("#nav-connections")
        row = page.locator('#conn-rows tr[data-name="sensors"]')
        await row.wait_for()
        await page.wait_for_selector('#conn-rows tr[data-name="local"][data-state="running"]')
        await page.wait_for_function(
            "() => document.querySelector('#conn-rows tr[data-name=\"sensors\"]').innerText.includes('/s')"
        )
        assert "running" in await row.inner_text()
        await page.screenshot(path=str(screenshot_path("connections", "en")), full_page=True)


async def test_machine_page_draws_a_chart_with_data_and_downloads_csv(
    tmp_path: Path, mosquitto: Any, page_factory: Any
) -> None:
    async with live_gateway(tmp_path, broker_url(mosquitto), rate=60) as live:
        page = await page_factory(locale="en-GB")
        await page.goto(live.url + "/")
        await page.click(card("line=A,machine=cnc-A1"))
        await page.wait_for_url("**/#/machine/*")
        chart = page.locator('.chart:has(h3:text-is("spindle_rpm"))')
        await chart.locator("canvas").wait_for()
        # A few seconds of data: the page opens on them ("since start"), refreshing while data lands.
        await page.wait_for_function(
            """() => [...document.querySelectorAll('.chart')].some((c) => Number(c.dataset.points) > 0)"""
        )
        assert await page.locator('[data-range="fit"]').get_attribute("aria-pressed") == "true"
        await page.click('[data-range="15m"]')
        assert await page.locator('[data-range="15m"]').get_attribute("aria-pressed") == "true"
        await page.wait_for_function(
            "() => Number(document.querySelector('.chart[data-field=\"spindle_rpm\"]').dataset.points) > 0"
        )
        # Hover: the readout above the chart shows the time and the value under the cursor.
        await chart.scroll_into_view_if_needed()
        box = await chart.locator(".u-over").bounding_box()
        assert box is not None
        await page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] / 2)
        await page.mouse.move(box["x"] + box["width"] * 0.999, box["y"] + box["height"] / 2, steps=5)
        readout = chart.locator(".readout")
        await page.wait_for_function(
            "(el) => el.dataset.cursor === 'true' && el.textContent.includes(':')",
            arg=await readout.element_handle(),
            timeout=15_000,
        )
        assert any(ch.isdigit() for ch in (await readout.inner_text()).split(" · ")[1])  # the value
        await page.screenshot(path=str(screenshot_path("machine", "en")), full_page=True)

        # CSV of what is shown: one row per bucket of every chart and state band. Counted and
        # clicked in one task of the page, so a refresh of the charts cannot come in between.
        async with page.expect_download() as download_info:
            shown = await page.evaluate(
                """() => {
                    const n = [...document.querySelectorAll('.chart, .tl-row')]
                        .reduce((n, c) => n + Number(c.dataset.buckets || 0), 0);
                    document.querySelector('#csv').click();
                    return n;
                }"""
            )
        download = await download_info.value
        rows = list(csv.DictReader(io.StringIO(Path(await download.path()).read_text())))
        assert download.suggested_filename.startswith("cnc-A1-") and download.suggested_filename.endswith(".csv")
        assert len(rows) == shown
        assert {row["field"] for row in rows} >= {"spindle_rpm", "state", "parts"}
        assert {row["last"] for row in rows if row["field"] == "state"} <= {"idle", "setup", "running", "alarm"}
        assert all(row["tags"] == "line=A;machine=cnc-A1" for row in rows)


DISPLAY: dict[str, object] = {
    "key_fields": ["spindle_rpm", "parts", "energy.power_w"],
    "fields": {
        "spindle_rpm": {"label": {"en": "Spindle speed", "it": "Velocità mandrino"}, "unit": "rpm", "decimals": 0},
        "parts": {"label": {"en": "Parts", "it": "Pezzi"}},
        "power_w": {"label": {"en": "Power", "it": "Potenza"}, "unit": "W", "decimals": 1},
    },
}


async def test_labels_units_and_key_fields_from_the_config_show_on_cards_and_charts(
    tmp_path: Path, mosquitto: Any, page_factory: Any
) -> None:
    async with live_gateway(tmp_path, broker_url(mosquitto), rate=60, overview=DISPLAY) as live:
        page = await page_factory(locale="en-GB")
        await page.goto(live.url + "/")
        cnc = page.locator(card("line=A,machine=cnc-A1"))
        await cnc.wait_for()
        await page.wait_for_function(
            "(el) => el.querySelectorAll('dt').length === 2", arg=await cnc.element_handle(), timeout=10_000
        )
        # Only the key fields, in their order, under their labels; spindle_load is on the machine page.
        assert await cnc.locator("dt").all_inner_texts() == ["Spindle speed", "Parts"]
        assert await cnc.locator(".more").inner_text() == "+1 more on the machine page"
        rpm = await cnc.locator('dd[data-field="spindle_rpm"]').inner_text()
        assert rpm.endswith(" rpm") and "." not in rpm, rpm  # no decimals (en-GB groups with commas)
        parts = await cnc.locator('dd[data-field="parts"]').inner_text()
        assert parts.isdigit(), parts
        # The line card: each meter's power with one decimal and its unit, told apart by the meter tag.
        line = page.locator(card("line=A"))
        await line.locator('dd[data-field="power_w"]').nth(1).wait_for()
        assert await line.locator("dt").all_inner_texts() == ["Power · meter-A1", "Power · meter-A2"]
        for power in await line.locator('dd[data-field="power_w"]').all_inner_texts():
            number = power.removesuffix(" W")
            assert power.endswith(" W") and len(number.rpartition(".")[2]) == 1, power
        await page.screenshot(path=str(screenshot_path("overview-labels", "en")), full_page=True)

        # Italian: the Italian labels, the decimal comma.
        await page.click('[data-lang="it"]')
        await page.wait_for_function(
            "(el) => el.querySelector('dt')?.textContent === 'Velocità mandrino'", arg=await cnc.element_handle()
        )
        assert await cnc.locator("dt").all_inner_texts() == ["Velocità mandrino", "Pezzi"]
        assert await cnc.locator(".more").inner_text() == "+1 nella pagina della macchina"
        for power in await line.locator('dd[data-field="power_w"]').all_inner_texts():
            assert power.endswith(" W") and len(power.removesuffix(" W").rpartition(",")[2]) == 1, power
        await page.screenshot(path=str(screenshot_path("overview-labels", "it")), full_page=True)

        # The machine page: every field (spindle_load too), charts titled by label and unit,
        # hover values with the unit, and the label and unit in the CSV.
        await page.click('[data-lang="en"]')
        await page.click(card("line=A,machine=cnc-A1"))
        await page.wait_for_url("**/#/machine/*")
        current = page.locator("#machine-values")
        await page.wait_for_function("() => document.querySelectorAll('#machine-values dt').length >= 3")
        assert {"Spindle speed", "Parts", "spindle_load"} <= set(await current.locator("dt").all_inner_texts())
        chart = page.locator('.chart:has(h3:text-is("Spindle speed · rpm"))')
        await chart.locator("canvas").wait_for()
        await page.wait_for_function(
            "(el) => Number(el.dataset.points) > 0", arg=await chart.element_handle(), timeout=15_000
        )
        await page.wait_for_function("() => document.querySelectorAll('.chart canvas').length === 3")
        # Charts in the card's order: the key fields first; the parts counter as a rate.
        assert await page.locator(".chart h3").all_inner_texts() == [
            "Spindle speed · rpm",
            "Parts per hour",
            "spindle_load",
        ]
        await chart.scroll_into_view_if_needed()
        box = await chart.locator(".u-over").bounding_box()
        assert box is not None
        await page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] / 2)
        await page.mouse.move(box["x"] + box["width"] * 0.999, box["y"] + box["height"] / 2, steps=5)
        await page.wait_for_function(
            "(el) => el.dataset.cursor === 'true' && / rpm( \\(|$)/.test(el.textContent)",
            arg=await chart.locator(".readout").element_handle(),
            timeout=15_000,
        )
        await page.screenshot(path=str(screenshot_path("machine-labels", "en")), full_page=True)
        async with page.expect_download() as download_info:
            await page.click("#csv")
        download = await download_info.value
        rows = list(csv.DictReader(io.StringIO(Path(await download.path()).read_text())))
        rpm_rows = [row for row in rows if row["field"] == "spindle_rpm"]
        assert rpm_rows and all((row["label"], row["unit"]) == ("Spindle speed", "rpm") for row in rpm_rows)
        assert {row["unit"] for row in rows if row["field"] == "spindle_load"} == {""}


async def test_language_follows_the_browser_and_the_switch_changes_it(
    tmp_path: Path, mosquitto: Any, page_factory: Any
) -> None:
    async with live_gateway(tmp_path, broker_url(mosquitto), rate=20) as live:
        italian = await page_factory(locale="it-IT")
        await italian.goto(live.url + "/")
        await italian.wait_for_selector(card(MACHINES[0]))
        assert await italian.locator("html").get_attribute("lang") == "it"
        assert await italian.locator("#nav-overview").inner_text() == "Panoramica"
        assert await italian.locator("h1").inner_text() == "Macchine"
        assert "aggiornata" in await italian.locator(card(MACHINES[0]) + " .age").inner_text()
        assert await italian.locator(card(MACHINES[0]) + " .badge").inner_text() in {"in lavoro", "ferma", "allarme"}
        await italian.screenshot(path=str(screenshot_path("overview", "it")), full_page=True)

        await italian.click("#lang-en")
        assert await italian.locator("#nav-overview").inner_text() == "Overview"
        assert await italian.locator("h1").inner_text() == "Machines"
        await italian.wait_for_selector(card(MACHINES[0]) + " .age:text-matches('updated')")
        assert await italian.locator("#lang-en").get_attribute("aria-pressed") == "true"
        await italian.reload()  # the choice is remembered
        await italian.wait_for_selector(card(MACHINES[0]))
        assert await italian.locator("#nav-connections").inner_text() == "Connections"

        english = await page_factory(locale="en-US")
        await english.goto(live.url + "/#/connections")
        await english.wait_for_selector("#conn-rows tr")
        assert await english.locator("h1").inner_text() == "Connections"
        await english.click("#lang-it")
        assert await english.locator("h1").inner_text() == "Connessioni"


async def test_page_behind_credentials_when_listening_beyond_loopback(
    tmp_path: Path, mosquitto: Any, page_factory: Any
) -> None:
    async with live_gateway(tmp_path, broker_url(mosquitto), listen="0.0.0.0:0", auth=True, rate=20) as live:
        assert await refused(await page_factory(), live.url + "/")
        wrong = await page_factory(http_credentials={"username": "officina", "password": "not-the-password-1"})
        assert await refused(wrong, live.url + "/")

        # The browser's login prompt with the viewer token as password: the page and its live
        # stream work (EventSource reuses the credentials), but no connector details.
        viewer = await page_factory(http_credentials={"username": "officina", "password": VIEWER_TOKEN})
        await viewer.goto(live.url + "/")
        await viewer.wait_for_selector(card(MACHINES[0]))
        await viewer.wait_for_selector('#live[data-state="open"]')
        await viewer.click("#nav-connections")
        await viewer.wait_for_selector('#conn-rows tr[data-name="sensors"]')
        assert await viewer.locator("#conn-rows button").count() == 0

        admin = await page_factory(http_credentials={"username": "capo", "password": ADMIN_TOKEN})
        await admin.goto(live.url + "/#/connections")
        await admin.click('#conn-rows tr[data-name="sensors"] button')
        detail = admin.locator("#detail-sensors")
        await admin.wait_for_function("() => document.querySelector('#detail-sensors')?.textContent.includes('broker')")
        assert broker_url(mosquitto) in await detail.inner_text()
        await admin.screenshot(path=str(screenshot_path("connections-admin", "en")), full_page=True)


async def test_a_bad_opc_ua_value_is_struck_out_with_its_status_until_a_good_one_arrives(page_factory: Any) -> None:
    machine, latest = Machine(), LatestValues()
    ctx = AppContext(name="gw", settings=HttpSettings(listen="127.0.0.1:0"), statuses=list, latest=latest)
    ctx.overview_interval = 0.05
    latest.update(machine.sample(1, 21.5))
    latest.update(machine.sample(2, None, BAD, "BadSensorFailure"))
    cell = card("line=A,machine=cnc-1") + ' dd[data-field="temp"]'
    async with HttpServer(ctx) as server:
        for locale, label, shown in (("en-GB", "bad value", "21.5"), ("it-IT", "valore non valido", "21,5")):
            page = await page_factory(locale=locale)
            await page.goto(server.url + "/")
            await page.wait_for_selector(cell + '[data-quality="bad"]')
            assert await page.locator(cell + " s").inner_text() == shown  # the last good value, struck out
            assert "BadSensorFailure" in await page.locator(cell).inner_text()
            assert await page.locator(cell).get_attribute("title") == f"{label}: BadSensorFailure"
            assert await page.locator(card("line=A,machine=cnc-1") + " dt").all_inner_texts() == ["temp"]
        await page.screenshot(path=str(screenshot_path("quality", "it")), full_page=True)
        # The sensor recovers: the live update clears the mark.
        latest.update(machine.sample(3, 22.25))
        await page.wait_for_selector(cell + '[data-quality="good"]', timeout=8_000)
        assert await page.locator(cell + " s").count() == 0
        assert "BadSensorFailure" not in await page.locator(cell).inner_text()
