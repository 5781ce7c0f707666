"""The machine page's write controls, in headless Chromium, against a live gateway writing to the
OPC UA CNC simulator through the real API (POST /api/write, GET /api/audit).

An operator changes the program through the confirmation (keyboard only: Esc cancels, nothing is
written; Tab to "Write" and Enter writes), sees the value read back and the write listed; a value
out of the limits is stopped before the confirmation; a write the machine refuses says why. A viewer
sees the last writes but no control, and the API refuses its POST with 403.

Screenshots (both languages, a phone's width) are saved under ``ARTIFACTS/browser/``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from asyncua.client.client import Client

from gateway.component import State
from gateway.config import load_config_source
from gateway.ports import free_ports
from gateway.runtime import Gateway
from tests.fixtures.browser import screenshot_path
from tests.helpers import async_wait_until

CNC_NS = "urn:lab:cnc"
CARD = "line=A,machine=cnc-01"
OPERATOR = {"username": "mario", "password": "turno-di-notte-42"}
VIEWER = {"username": "officina", "password": "solo-guardare-2026"}


def connector(endpoint: str) -> dict[str, Any]:
    return {
        "name": "cnc-01",
        "type": "opcua",
        "endpoint": endpoint,
        "measurement": "machine",
        "tags": {"line": "A", "machine": "cnc-01"},
        "subscription": {"publishing_interval": "200ms"},
        "nodes": [
            {
                "node": f"nsu={CNC_NS};s=Program.Selected",
                "field": "program",
                "write": {"allowed": ["O1001", "O1002", "O1003"]},
            },
            {"node": f"nsu={CNC_NS};s=Feed.Override", "field": "feed_override", "write": {"min": 0, "max": 120}},
            {"node": f"nsu={CNC_NS};s=Spindle.Speed", "field": "spindle_rpm"},
            # declared writable here, but the controller measures it and refuses writes
            {
                "node": f"nsu={CNC_NS};s=Spindle.SpeedSetpoint",
                "field": "speed_setpoint",
                "write": {"min": 0, "max": 12000},
            },
        ],
    }


@dataclass
class Live:
    gateway: Gateway
    url: str
    endpoint: str


@contextlib.asynccontextmanager
async def live(tmp_path: Path, endpoint: str) -> AsyncIterator[Live]:
    port = free_ports(1)
    config = {
        "gateway": {
            "name": "controls-test",
            "data_dir": str(tmp_path / "data"),
            "shutdown_timeout": "15s",
            "http": {
                "listen": f"127.0.0.1:{port}",
                "auth": {"viewer": VIEWER, "operator": OPERATOR},
                "overview": {
                    "fields": {
                        "program": {"label": {"en": "Program", "it": "Programma"}},
                        "feed_override": {"label": {"en": "Feed override", "it": "Override avanzamento"}, "unit": "%"},
                        "speed_setpoint": {"label": {"en": "Speed setpoint", "it": "Setpoint velocità"}, "unit": "rpm"},
                    }
                },
            },
        },
        "sinks": [
            {"name": "local", "type": "historian", "path": str(tmp_path / "history.db"), "flush_interval": "200ms"}
        ],
        "connectors": [connector(endpoint)],
    }
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    async with Gateway(load_config_source(path)) as gateway:
        await async_wait_until(
            lambda: all(s.status.state is State.RUNNING for s in gateway.sources), timeout=60, message="cnc-01 running"
        )
        # the card has the program before the page opens (its control shows the machine's value)
        await async_wait_until(
            lambda: any(e.fields.get("program") for e in gateway.latest.all()), timeout=30, message="program received"
        )
        try:
            yield Live(gateway, f"http://127.0.0.1:{port}", endpoint)
        finally:
            gateway.request_stop()


async def read_node(endpoint: str, name: str) -> Any:
    """The node's value as an independent client reads it (not through the gateway)."""
    async with Client(endpoint) as client:
        index = (await client.get_namespace_array()).index(CNC_NS)
        return await client.get_node(f"ns={index};s={name}").read_value()


async def open_machine(page: Any, url: str) -> None:
    await page.goto(f"{url}/#/machine/{CARD.replace('=', '%3D').replace(',', '%2C')}")
    await page.wait_for_selector("#writes:not([hidden])")
    await page.wait_for_function("() => document.querySelector('#charts')?.dataset.to !== undefined")


async def test_an_operator_changes_the_program_through_the_confirmation(
    opcua_simulator: Any, tmp_path: Path, page_factory: Any
) -> None:
    sim = opcua_simulator(machines=1, interval=0.2)
    async with live(tmp_path, sim.endpoint()) as gw:
        page = await page_factory(locale="it-IT", http_credentials=OPERATOR)
        await open_machine(page, gw.url)
        rows = page.locator("#writes form.write-row")
        assert await rows.count() == 3
        program = page.locator('form.write-row[data-field="program"]')
        assert await program.locator("label").inner_text() == "Programma"
        select = program.locator("select")
        # the control shows the machine's value, and offers exactly the allowed ones
        await page.wait_for_function(
            """() => document.querySelector('form[data-field="program"] [data-now]').textContent === 'O1001'"""
        )
        assert await select.evaluate("(s) => s.selectedOptions[0].textContent") == "O1001"
        assert await select.locator("option:not([disabled])").all_inner_texts() == ["O1001", "O1002", "O1003"]
        assert await page.locator('form[data-field="feed_override"] input[type="number"]').get_attribute("max") == "120"
        assert await page.locator("#write-audit").count() == 0
        assert await page.locator(".write-none").inner_text() == "Ancora nessuna scrittura su questa macchina."

        # Keyboard only. The confirmation shows old → new with Cancel focused; Esc writes nothing.
        await select.focus()
        await select.select_option(label="O1002")
        await page.keyboard.press("Tab")  # to "Cambia…"
        await page.keyboard.press("Enter")
        dialog = page.locator("dialog#write-confirm")
        await dialog.wait_for(state="visible")
        assert await dialog.locator("h2").inner_text() == "Cambiare Programma?"
        assert await page.locator("#write-confirm-old").inner_text() == "O1001"
        assert await page.locator("#write-confirm-new").inner_text() == "O1002"
        assert await page.evaluate("() => document.activeElement.textContent") == "Annulla"
        await page.screenshot(path=str(screenshot_path("write_controls", "confirm-it")))
        await page.keyboard.press("Escape")
        await dialog.wait_for(state="hidden")
        assert await read_node(gw.endpoint, "Program.Selected") == "O1001"
        assert await page.locator(".write-none").count() == 1  # nothing was sent, nothing is listed

        # Again, and this time Tab to "Scrivi sulla macchina" and Enter. (The outcome's line is kept
        # free beforehand: showing it moves nothing below.)
        feed_box = await page.locator('form.write-row[data-field="feed_override"]').bounding_box()
        await program.locator("button").focus()
        await page.keyboard.press("Enter")
        await dialog.wait_for(state="visible")
        await page.keyboard.press("Tab")
        assert await page.evaluate("() => document.activeElement.id") == "write-confirm-go"
        await page.keyboard.press("Enter")
        result = program.locator(".write-result")
        await page.wait_for_function(
            """() => document.querySelector('form[data-field="program"] .write-result').dataset.state === 'written'"""
        )
        assert (await result.inner_text()).endswith("· riletto: O1002")
        assert await page.locator('form.write-row[data-field="feed_override"]').bounding_box() == feed_box
        assert await read_node(gw.endpoint, "Program.Selected") == "O1002"
        # the write is listed: who, old → new, read back; the live value follows the machine
        await page.wait_for_selector("#write-audit tbody tr")
        first = page.locator("#write-audit tbody tr").first
        cells = await first.locator("td").all_inner_texts()
        assert cells[1:] == ["Programma", "O1001 → O1002", "O1002", "scritto", "mario · operator"]
        await page.wait_for_function(
            """() => document.querySelector('form[data-field="program"] [data-now]').textContent === 'O1002'"""
        )

        # A value outside the limits is stopped before the confirmation.
        feed = page.locator('form.write-row[data-field="feed_override"]')
        await feed.locator("input").fill("150")
        await feed.locator("button").click()
        assert await dialog.is_hidden()
        assert await feed.locator(".write-result").inner_text() == "Al massimo 120"

        # A write the machine refuses says so, and why.
        setpoint = page.locator('form.write-row[data-field="speed_setpoint"]')
        await setpoint.locator("input").fill("5000")
        await setpoint.locator("button").click()
        await dialog.wait_for(state="visible")
        await page.locator("#write-confirm-go").click()
        await page.wait_for_function(
            """() => document.querySelector('form[data-field="speed_setpoint"] .write-result')
                .dataset.state === 'refused'"""
        )
        refused = await setpoint.locator(".write-result").inner_text()
        assert refused.startswith("Non scritto: rifiutato dalla macchina — "), refused
        await page.wait_for_function("() => document.querySelectorAll('#write-audit tbody tr').length === 2")
        assert await page.locator('#write-audit tbody tr[data-result="refused_by_machine"]').count() == 1

        await page.screenshot(path=str(screenshot_path("write_controls", "operator-it")), full_page=True)

        english = await page_factory(locale="en-GB", http_credentials=OPERATOR)
        await open_machine(english, gw.url)
        await english.wait_for_selector("#write-audit tbody tr")
        assert await english.locator("#writes-title").inner_text() == "Remote settings"
        assert await english.locator("#write-audit thead th").all_inner_texts() == [
            "Time",
            "Field",
            "Before → asked",
            "Read back",
            "Outcome",
            "Who",
        ]
        await english.locator('form[data-field="program"] select').select_option(label="O1003")
        await english.locator('form[data-field="program"] button').click()
        await english.locator("dialog#write-confirm").wait_for(state="visible")
        assert await english.locator("dialog#write-confirm h2").inner_text() == "Change Program?"
        await english.screenshot(path=str(screenshot_path("write_controls", "confirm-en")))
        await english.keyboard.press("Escape")

        phone = await page_factory(locale="it-IT", width=390, height=844, http_credentials=OPERATOR)
        await open_machine(phone, gw.url)
        overflow = await phone.evaluate(
            """() => [...document.querySelectorAll('#writes *')]
                .filter((e) => e.getBoundingClientRect().right > innerWidth + 1).length"""
        )
        assert overflow == 0
        await phone.locator("#writes").screenshot(path=str(screenshot_path("write_controls", "phone-it")))


async def test_a_viewer_sees_the_writes_but_no_control_and_cannot_post(
    opcua_simulator: Any, tmp_path: Path, page_factory: Any
) -> None:
    sim = opcua_simulator(machines=1, interval=0.2)
    async with live(tmp_path, sim.endpoint()) as gw:
        operator = await page_factory(locale="en-GB", http_credentials=OPERATOR)
        await open_machine(operator, gw.url)
        answer = await operator.evaluate(
            """async () => {
                const r = await fetch('/api/write', {method: 'POST', headers: {'Content-Type': 'application/json'},
                    body: JSON.stringify({connector: 'cnc-01', field: 'feed_override', value: 80})});
                return [r.status, (await r.json()).result];
            }"""
        )
        assert answer == [200, "written"]

        page = await page_factory(locale="en-GB", http_credentials=VIEWER)
        await open_machine(page, gw.url)
        await page.wait_for_selector("#write-audit tbody tr")
        assert await page.locator("#writes-title").inner_text() == "Last writes"
        assert await page.locator("#writes form, #writes input, #writes select, #writes button, dialog").count() == 0
        assert await page.locator("#write-audit tbody tr td").nth(1).inner_text() == "Feed override"
        # The page offers nothing, and the API refuses the viewer's POST all the same.
        refused = await page.evaluate(
            """async () => {
                const r = await fetch('/api/write', {method: 'POST', headers: {'Content-Type': 'application/json'},
                    body: JSON.stringify({connector: 'cnc-01', field: 'feed_override', value: 50})});
                return [r.status, (await r.json()).result];
            }"""
        )
        assert refused == [403, "forbidden"]
        assert await read_node(gw.endpoint, "Feed.Override") == 80
        await page.screenshot(path=str(screenshot_path("write_controls", "viewer-en")), full_page=True)
