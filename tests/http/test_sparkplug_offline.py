"""A Sparkplug B death certificate on the overview: the gateway (in this process, its web server on
a free port) with a Sparkplug B connector, a real Mosquitto and the independent Tahu edge node
(tests/sparkplug_peer/edge.js).

A DDEATH makes its device's card offline at once — not after ``offline_after``, which is an hour
here so that only a death can do it — with the reason ("offline: death certificate at 10:02")
in ``GET /api/overview`` and on the page; the next DBIRTH brings it back. Killing the edge node
(its will, the NDEATH) makes the node's card and every device's offline; the edge node's next
connection (NBIRTH, DBIRTHs) brings them all back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import yaml

from gateway.config import load_config
from gateway.runtime import Gateway
from tests.fixtures.browser import screenshot_path
from tests.fixtures.mosquitto import Mosquitto
from tests.fixtures.sparkplug import PeerProcess
from tests.helpers import async_wait_until

NODE = "edge_node=Line-1"
PRESS_1 = "edge_node=Line-1,device=Press-1"
PRESS_2 = "edge_node=Line-1,device=Press-2"


def card(card_id: str) -> str:
    return f'.card[data-id="{card_id}"]'


def config(tmp_path: Path, mosquitto: Mosquitto) -> Path:
    data = tmp_path / "gateway"
    overview = {"group_by": ["edge_node", "device"], "offline_after": "1h"}
    document = {
        "gateway": {
            "name": "spb-web",
            "data_dir": str(data),
            "http": {"listen": "127.0.0.1:0", "overview": overview},
            "shutdown_timeout": "10s",
        },
        "sinks": [{"name": "local", "type": "historian", "path": str(data / "history.db"), "flush_interval": "200ms"}],
        "connectors": [
            {"name": "spb", "type": "sparkplug", "broker": mosquitto.url, "group": "Plant", "host_id": "web-test"}
        ],
    }
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


async def test_a_death_certificate_shows_the_card_offline_at_once_with_its_reason_and_a_birth_brings_it_back(
    tmp_path: Path, mosquitto: Mosquitto, sparkplug_edge: Callable[..., PeerProcess], page_factory: Any
) -> None:
    async with Gateway(load_config(config(tmp_path, mosquitto))) as gateway, httpx.AsyncClient(timeout=10) as client:
        assert gateway.http is not None
        url = gateway.http.url
        await async_wait_until(
            lambda: all(s.status.detail.get("subscribed") for s in gateway.sources), timeout=30, message="SUBACK"
        )

        async def cards() -> dict[str, dict[str, Any]]:
            response = await client.get(url + "/api/overview")
            response.raise_for_status()
            return {c["id"]: c for c in response.json()["cards"]}

        async def until(
            predicate: Callable[[dict[str, dict[str, Any]]], bool], message: str
        ) -> dict[str, dict[str, Any]]:
            """The cards once ``predicate`` holds for them (AssertionError after 30 s)."""
            last: list[dict[str, dict[str, Any]]] = []

            async def check() -> bool:
                last[:] = [await cards()]
                return predicate(last[0])

            await async_wait_until(check, timeout=30, message=message)
            return last[0]

        def dead(c: dict[str, Any]) -> bool:
            return bool(c["state"] == "offline" and c["offline_reason"] == "death")

        edge = await asyncio.to_thread(sparkplug_edge, mosquitto)
        await asyncio.to_thread(edge.command, {"cmd": "data", "count": 2})
        live = await until(
            lambda c: {NODE, PRESS_1, PRESS_2} <= set(c) and any(v["value"] == 201.0 for v in c[PRESS_2]["values"]),
            "the three cards, with the last DDATA",
        )
        for card_id in (NODE, PRESS_1, PRESS_2):
            assert live[card_id]["state"] != "offline" and live[card_id]["offline_reason"] is None
            assert not any(v["offline_since"] for v in live[card_id]["values"])
            assert "sparkplug_online" not in {v["field"] for v in live[card_id]["values"]}  # the badge says it

        page = await page_factory(locale="en-GB")
        await page.goto(url + "/")
        await page.wait_for_selector(card(PRESS_2) + " dd")
        assert await page.locator(card(PRESS_2)).get_attribute("data-state") != "offline"

        # DDEATH: Press-2's card offline at once (its last data arrived a moment ago), the reason with it.
        before = time.time()
        await asyncio.to_thread(edge.command, {"cmd": "ddeath", "device": "Press-2"})
        now = await until(lambda c: dead(c[PRESS_2]), "Press-2 offline by its DDEATH")
        after = time.time()
        press = now[PRESS_2]
        assert before <= press["offline_since"] <= after  # when the gateway received the certificate
        assert press["age_seconds"] < 3600  # fresh: the age alone would say online
        assert all(v["offline_since"] == press["offline_since"] for v in press["values"])
        assert now[PRESS_1]["offline_reason"] is None and now[NODE]["offline_reason"] is None

        clock = datetime.fromtimestamp(press["offline_since"]).strftime("%H:%M")
        await page.wait_for_selector(card(PRESS_2) + '[data-state="offline"]')
        assert await page.locator(card(PRESS_2) + " .badge").inner_text() == "offline"
        reason = await page.locator(card(PRESS_2) + " .age").inner_text()
        assert reason.startswith("offline: death certificate at ") and clock in reason
        shown = await page.locator(card(PRESS_2) + " dd").count()  # its last values, each greyed with "offline"
        assert shown > 0 and await page.locator(card(PRESS_2) + " dd.v-offline").count() == shown
        assert await page.locator(card(PRESS_1)).get_attribute("data-state") != "offline"
        await page.screenshot(path=str(screenshot_path("sparkplug-death", "en")), full_page=True)

        # DBIRTH: online again.
        await asyncio.to_thread(edge.command, {"cmd": "dbirth", "device": "Press-2"})
        await until(lambda c: c[PRESS_2]["offline_reason"] is None, "Press-2 online after its DBIRTH")
        await page.wait_for_selector(card(PRESS_2) + ':not([data-state="offline"])')
        assert await page.locator(card(PRESS_2) + " .v-offline").count() == 0

        # The edge node killed: its will (NDEATH) makes the node and both devices offline, in Italian too.
        edge.kill()
        await until(lambda c: all(dead(c[i]) for i in (NODE, PRESS_1, PRESS_2)), "every card offline by the NDEATH")
        italian = await page_factory(locale="it-IT")
        await italian.goto(url + "/")
        for card_id in (NODE, PRESS_1, PRESS_2):
            await italian.wait_for_selector(card(card_id) + '[data-state="offline"]')
            assert await italian.locator(card(card_id) + " .badge").inner_text() == "non in linea"
            text = await italian.locator(card(card_id) + " .age").inner_text()
            assert text.startswith("non in linea: certificato di morte alle ")
        await italian.screenshot(path=str(screenshot_path("sparkplug-death", "it")), full_page=True)

        # Its next connection (a new bdSeq): NBIRTH and DBIRTHs bring every card back.
        await asyncio.to_thread(sparkplug_edge, mosquitto, bdseq=1)
        await until(
            lambda c: all(c[i]["offline_reason"] is None for i in (NODE, PRESS_1, PRESS_2)), "online after the NBIRTH"
        )
