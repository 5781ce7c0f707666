"""Reloading the configuration while data flows, with fake connectors and sinks.

What an engineer expects of a reload: an invalid edit changes nothing and says exactly what is
wrong (the same lines as ``gateway validate``); a valid one starts what was added, stops what
was removed (after what it emitted is stored), restarts what changed and leaves everything
else alone — same objects, same connections, same counters — and no point is lost on the way.
The real-broker version of this (Mosquitto, SIGHUP, --watch, the API) is test_reload_live.py.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from gateway.config import load_config, load_config_source
from gateway.errors import ConfigError, GatewayError
from gateway.http.metrics import GatewayCollector, render_metrics
from gateway.reload import plan_reload
from gateway.reloads import ReloadResult, ReloadTrigger
from gateway.runtime import Gateway
from tests.helpers import async_wait_until
from tests.runtime.fakes import EVENTS, SINKS, SOURCES

pytestmark = pytest.mark.usefixtures("fake_types")


def document(
    tmp_path: Path,
    sinks: list[dict[str, Any]],
    connectors: list[dict[str, Any]],
    **gateway: Any,
) -> dict[str, Any]:
    return {
        "gateway": {
            "name": "test",
            "data_dir": str(tmp_path / "data"),
            "http": {"enabled": False},
            "shutdown_timeout": "10s",
            **gateway,
        },
        "sinks": [{"type": "fakesink", "flush_interval": "10ms", **s} for s in sinks],
        "connectors": [{"type": "fake", "interval": 0.01, **c} for c in connectors],
    }


def write(path: Path, data: dict[str, Any] | str) -> Path:
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def seqs(sink: str, source: str) -> list[int]:
    return [int(p.fields["seq"]) for p in SINKS[sink].stored if p.tags["source"] == source]


def no_gaps(values: list[int]) -> bool:
    return values == list(range(values[0], values[0] + len(values))) if values else True


async def test_an_invalid_edit_changes_nothing_and_reports_what_validate_reports(tmp_path: Path) -> None:
    path = write(tmp_path / "gw.yaml", document(tmp_path, [{"name": "store"}], [{"name": "a"}]))
    async with Gateway(load_config_source(path)) as gw:
        await async_wait_until(lambda: len(SINKS["store"].stored) >= 5, timeout=10)
        source, route = SOURCES["a"], gw.routes["store"]
        text = path.read_text().replace(" interval: 0.01", " intervall: 0.01")
        write(path, text)
        with pytest.raises(ConfigError) as validate:
            load_config(path)
        attempt = await gw.reload()
        assert attempt.result is ReloadResult.FAILED
        assert attempt.errors == tuple(str(p) for p in validate.value.problems)
        assert attempt.errors and attempt.errors[0].startswith(f"{path}:")
        assert "intervall: unknown key 'intervall' (did you mean 'interval'?)" in attempt.errors[0]
        # Nothing changed and collection goes on.
        assert SOURCES["a"] is source and gw.routes["store"] is route and source.runs == 1
        stored = len(SINKS["store"].stored)
        await async_wait_until(lambda: len(SINKS["store"].stored) > stored + 5, timeout=10)
        state = gw.config_state()
        assert state["generation"] == 1
        assert state["reloads"] == {"applied": 0, "unchanged": 0, "failed": 1}
        assert state["last_reload"]["result"] == "failed"
        assert state["last_reload"]["errors"] == list(attempt.errors)
        metrics = render_metrics(GatewayCollector("test", gw.statuses, gw.started_at, config_state=gw.config_state))
        assert b'gateway_config_reloads_total{result="failed"} 1.0' in metrics
        assert b"gateway_config_last_reload_failed 1.0" in metrics
        # The fix applies, and the failure is no longer the last word.
        write(path, text.replace("intervall", "interval").replace("interval: 0.01", "interval: 0.02"))
        fixed = await gw.reload()
        assert fixed.result is ReloadResult.APPLIED and fixed.changes == {"connector:a": "restarted"}
        assert gw.config_state()["generation"] == 2


async def test_added_removed_changed_and_unchanged_components(tmp_path: Path) -> None:
    path = write(
        tmp_path / "gw.yaml",
        document(tmp_path, [{"name": "store"}], [{"name": "keep"}, {"name": "change"}, {"name": "leave"}]),
    )
    async with Gateway(load_config_source(path)) as gw:
        await async_wait_until(lambda: all(len(seqs("store", n)) >= 5 for n in ("keep", "change", "leave")), 10)
        keep, change, leave = SOURCES["keep"], SOURCES["change"], SOURCES["leave"]
        store_route = gw.routes["store"]
        counters_before = dict(change.status.counters)
        write(
            path,
            document(
                tmp_path,
                [{"name": "store"}, {"name": "extra"}],
                [{"name": "keep"}, {"name": "change", "interval": 0.02}, {"name": "new"}],
            ),
        )
        attempt = await gw.reload(ReloadTrigger.CALL)
        assert attempt.result is ReloadResult.APPLIED
        assert attempt.changes == {
            "sink:extra": "added",
            "connector:change": "restarted",
            "connector:leave": "removed",
            "connector:new": "added",
            "connector:keep": "rerouted",  # it feeds every sink, now two: its fan-out switched
        }
        # Unchanged: the same objects, never asked to stop, still on their first run.
        assert SOURCES["keep"] is keep and keep.runs == 1
        assert ("request_stop", "keep") not in EVENTS
        assert gw.routes["store"] is store_route
        # Removed: asked to stop, and everything it emitted was stored and acknowledged first.
        assert ("request_stop", "leave") in EVENTS and ("aclose", "leave") in EVENTS
        assert seqs("store", "leave") == [int(p.fields["seq"]) for p in leave.emitted]
        assert leave.acked == list(range(len(leave.emitted)))
        # Changed: a new object; its counters carry on from the old one's.
        assert SOURCES["change"] is not change
        assert change.acked == list(range(len(change.emitted)))
        await async_wait_until(lambda: len(SINKS["extra"].stored) >= 10, timeout=10)
        for name, value in counters_before.items():
            assert SOURCES["change"].status.counters.get(name, 0) >= value
        # The added sink gets every batch of the unchanged connector from the moment it was added.
        kept_in_extra = seqs("extra", "keep")
        assert kept_in_extra and no_gaps(kept_in_extra)
        assert set(kept_in_extra) <= set(seqs("store", "keep"))
        assert {s.name for s in gw.statuses()} == {"keep", "change", "new", "store", "extra"}
        assert gw.config_state()["generation"] == 2
    # After the stop, the unchanged connector's stream is whole in the first sink.
    assert seqs("store", "keep") == list(range(len(keep.emitted)))


async def test_a_removed_sink_stops_receiving_and_its_connectors_are_not_held_back(tmp_path: Path) -> None:
    path = write(tmp_path / "gw.yaml", document(tmp_path, [{"name": "one"}, {"name": "two"}], [{"name": "a"}]))
    async with Gateway(load_config_source(path)) as gw:
        await async_wait_until(lambda: len(SINKS["two"].stored) >= 5, timeout=10)
        write(path, document(tmp_path, [{"name": "one"}], [{"name": "a"}]))
        attempt = await gw.reload()
        assert attempt.changes == {"sink:two": "removed", "connector:a": "rerouted"}
        assert ("sink_close", "two") in EVENTS
        in_two = len(SINKS["two"].stored)
        acked = len(SOURCES["a"].acked)
        await async_wait_until(lambda: len(SOURCES["a"].acked) > acked + 10, timeout=10)
        assert len(SINKS["two"].stored) == in_two, "a removed sink receives nothing more"
        assert "two" not in gw.routes
    source = SOURCES["a"]
    assert seqs("one", "a") == list(range(len(source.emitted)))
    assert source.acked == list(range(len(source.emitted)))


async def test_a_changed_sink_keeps_its_route_and_every_point(tmp_path: Path) -> None:
    path = write(tmp_path / "gw.yaml", document(tmp_path, [{"name": "store", "down": True}], [{"name": "a"}]))
    async with Gateway(load_config_source(path)) as gw:
        route = gw.routes["store"]
        old_sink = route.sink
        await async_wait_until(lambda: route.status.counters.get("write_errors", 0) >= 1, timeout=10)
        errors = route.status.counters["write_errors"]
        assert SOURCES["a"].acked == []
        # The engineer fixes the store's settings: the route stays, only the sink is replaced.
        write(path, document(tmp_path, [{"name": "store", "flush_interval": "20ms"}], [{"name": "a"}]))
        attempt = await gw.reload()
        assert attempt.changes == {"sink:store": "reconfigured"}
        assert gw.routes["store"] is route and route.sink is not old_sink
        await async_wait_until(lambda: len(SOURCES["a"].acked) >= 20, timeout=10)
        assert route.status.counters["write_errors"] >= errors, "counters carry over"
    source = SOURCES["a"]
    assert seqs("store", "a") == list(range(len(source.emitted)))
    assert source.acked == list(range(len(source.emitted)))


async def test_unchanged_text_and_changes_that_need_a_restart(tmp_path: Path) -> None:
    path = write(tmp_path / "gw.yaml", document(tmp_path, [{"name": "store"}], [{"name": "a"}]))
    async with Gateway(load_config_source(path)) as gw:
        first_hash = gw.generation.sha256
        same = await gw.reload()
        assert same.result is ReloadResult.UNCHANGED and gw.generation.number == 1
        write(path, path.read_text() + "# a comment changes the text, not the gateway\n")
        comment = await gw.reload()
        assert comment.result is ReloadResult.UNCHANGED and gw.generation.number == 1
        assert gw.generation.sha256 != first_hash
        moved = document(tmp_path, [{"name": "store"}], [{"name": "a", "interval": 0.02}])
        moved["gateway"]["data_dir"] = str(tmp_path / "elsewhere")
        write(path, moved)
        attempt = await gw.reload()
        assert attempt.result is ReloadResult.APPLIED
        assert attempt.changes == {"connector:a": "restarted"}
        assert len(attempt.restart_required) == 1
        assert attempt.restart_required[0].startswith("gateway.data_dir: changing it from")
        assert "needs a restart of the gateway" in attempt.restart_required[0]
        assert gw.config.gateway.data_dir == tmp_path / "data", "the running data_dir is kept"
        assert gw.config_state()["restart_required"] == list(attempt.restart_required)


async def test_a_gateway_started_from_a_config_object_cannot_reload(tmp_path: Path) -> None:
    path = write(tmp_path / "gw.yaml", document(tmp_path, [{"name": "store"}], [{"name": "a"}]))
    async with Gateway(load_config(path)) as gw:
        with pytest.raises(GatewayError, match="nothing to reload"):
            await gw.reload()
        assert gw.config_state()["reloadable"] is False


async def test_reloads_are_serialized_and_a_stop_waits_for_one_in_progress(tmp_path: Path) -> None:
    path = write(tmp_path / "gw.yaml", document(tmp_path, [{"name": "store"}], [{"name": "a"}]))
    gw = Gateway(load_config_source(path))
    async with gw:
        await async_wait_until(lambda: len(SINKS["store"].stored) >= 3, timeout=10)
        write(path, document(tmp_path, [{"name": "store"}], [{"name": "a"}, {"name": "b"}]))
        results = await asyncio.gather(gw.reload(), gw.reload())
        assert sorted(r.result.value for r in results) == ["applied", "unchanged"]
        gw.request_reload(ReloadTrigger.SIGNAL)  # in the background, then the stop
    assert gw.reloads.counts[ReloadResult.UNCHANGED] >= 1
    for name in ("a", "b"):
        assert seqs("store", name) == list(range(len(SOURCES[name].emitted)))


async def test_the_api_reload_is_for_the_admin_and_answers_422_when_invalid(tmp_path: Path) -> None:
    auth = {"viewer": {"token": "viewer-token-0123456789"}, "admin": {"token": "admin-token-0123456789"}}
    doc = document(tmp_path, [{"name": "store"}], [{"name": "a"}], http={"listen": "127.0.0.1:0", "auth": auth})
    path = write(tmp_path / "gw.yaml", doc)
    async with Gateway(load_config_source(path)) as gw:
        assert gw.http is not None
        admin = {"Authorization": "Bearer admin-token-0123456789"}
        viewer = {"Authorization": "Bearer viewer-token-0123456789"}
        async with httpx.AsyncClient(base_url=gw.http.url, timeout=20) as client:
            refused = await client.post("/api/reload", headers=viewer)
            assert refused.status_code == 403
            write(path, path.read_text().replace("name: a", "name: a\n  qos: 1"))
            bad = await client.post("/api/reload", headers=admin)
            assert bad.status_code == 422
            assert bad.json()["result"] == "failed"
            assert "unknown key 'qos'" in bad.json()["errors"][0]
            status = (await client.get("/api/status", headers=viewer)).json()
            assert status["gateway"]["config"]["last_reload"]["result"] == "failed"
            assert status["gateway"]["config"]["generation"] == 1
            [seen] = status["gateway"]["config"]["recent_reloads"]
            assert seen["errors"] == [] and seen["error_count"] == 1, "a viewer sees how many problems, not their text"
            [seen] = (await client.get("/api/status", headers=admin)).json()["gateway"]["config"]["recent_reloads"]
            assert "unknown key 'qos'" in seen["errors"][0]
            doc["connectors"].append({"type": "fake", "name": "b"})
            write(path, doc)
            good = await client.post("/api/reload", headers=admin)
            assert good.status_code == 200
            assert good.json()["changes"] == {"connector:b": "added"}
            assert good.json()["trigger"] == "api"
            same = await client.post("/api/reload", headers=admin)
            assert same.json()["result"] == "unchanged"
            config = (await client.get("/api/status", headers=viewer)).json()["gateway"]["config"]
            assert config["last_reload"]["result"] == "unchanged"
            # the applied reload is still there to read, after the later attempt
            assert [(r["result"], r["generation"]) for r in config["recent_reloads"]] == [
                ("failed", None),
                ("applied", 2),
                ("unchanged", 2),
            ]
            assert config["recent_reloads"][1]["changes"] == {"connector:b": "added"}
            metrics = (await client.get("/metrics", headers=viewer)).text
            assert "gateway_config_generation 2.0" in metrics
            assert 'gateway_config_reloads_total{result="applied"} 1.0' in metrics
            assert f'gateway_config_info{{sha256="{gw.generation.sha256}"}} 1.0' in metrics


async def test_an_http_change_restarts_only_the_web_server(tmp_path: Path) -> None:
    doc = document(tmp_path, [{"name": "store"}], [{"name": "a"}], http={"listen": "127.0.0.1:0"})
    path = write(tmp_path / "gw.yaml", doc)
    async with Gateway(load_config_source(path)) as gw:
        assert gw.http is not None
        old_url = gw.http.url
        doc["gateway"]["http"]["overview"] = {"offline_after": "45s"}
        write(path, doc)
        attempt = await gw.reload()
        assert attempt.changes == {"http": "restarted"}
        assert SOURCES["a"].runs == 1
        assert gw.http is not None
        async with httpx.AsyncClient(base_url=gw.http.url, timeout=20) as client:
            overview = (await client.get("/api/overview")).json()
            assert overview["offline_after"] == 45.0
        with pytest.raises(httpx.HTTPError):
            async with httpx.AsyncClient(base_url=old_url, timeout=2) as client:
                await client.get("/healthz")


async def test_removing_a_component_leaves_none_of_its_tasks_behind(tmp_path: Path) -> None:
    path = write(tmp_path / "gw.yaml", document(tmp_path, [{"name": "store"}, {"name": "gone"}], [{"name": "a"}]))
    async with Gateway(load_config_source(path)) as gw:
        await async_wait_until(lambda: len(SINKS["gone"].stored) >= 3, timeout=10)

        def tasks_of(name: str) -> list[str]:
            return [t.get_name() for t in asyncio.all_tasks() if not t.done() and name in t.get_name()]

        assert tasks_of("gone"), "the sink's route has tasks while it runs"
        write(path, document(tmp_path, [{"name": "store"}], [{"name": "b"}]))
        await gw.reload()
        assert tasks_of("gone") == [] and tasks_of("connector:a") == []
        assert tasks_of("connector:b")


def test_the_plan_matches_components_by_name(tmp_path: Path) -> None:
    base = document(tmp_path, [{"name": "s1"}, {"name": "s2"}], [{"name": "a", "sinks": ["s1"]}, {"name": "b"}])
    old = load_config(write(tmp_path / "old.yaml", base))
    changed = document(
        tmp_path,
        [{"name": "s1", "batch_size": 10}, {"name": "s3"}],
        [{"name": "a", "sinks": ["s1"]}, {"name": "c"}],
        http={"listen": "127.0.0.1:9999"},
        shutdown_timeout="20s",
        name="renamed",
    )
    new = load_config(write(tmp_path / "new.yaml", changed))
    plan = plan_reload(old, new)
    assert plan.sinks_added == ["s3"] and plan.sinks_removed == ["s2"] and plan.sinks_reconfigured == ["s1"]
    assert plan.connectors_added == ["c"] and plan.connectors_removed == ["b"]
    assert plan.connectors_restarted == [] and plan.connectors_rerouted == []  # a feeds only s1
    assert plan.http_restart and plan.gateway_changed == ["shutdown_timeout"]
    assert plan.config.gateway.name == "test" and len(plan.restart_required) == 1
    assert plan_reload(old, old).empty


async def test_the_connections_page_shows_a_refused_reload(tmp_path: Path, page_factory: Any) -> None:
    auth = {"viewer": {"username": "officina", "password": "viewer-password-0123"}}
    doc = document(tmp_path, [{"name": "store"}], [{"name": "a"}], http={"listen": "127.0.0.1:0", "auth": auth})
    doc["gateway"]["http"]["auth"]["admin"] = {"username": "admin", "password": "admin-password-0123"}
    path = write(tmp_path / "gw.yaml", doc)
    async with Gateway(load_config_source(path)) as gw:
        assert gw.http is not None
        write(path, path.read_text().replace("name: a", "name: a\n  qos: 1"))
        attempt = await gw.reload()
        [error] = attempt.errors
        admin = await page_factory(http_credentials={"username": "admin", "password": "admin-password-0123"})
        await admin.goto(gw.http.url + "/#/connections")
        box = admin.locator("#config-failed")
        await box.wait_for()
        text = await box.inner_text()
        assert "The last reload" in text and "1 problem(s)" in text and "generation 1" in text
        assert error in text, "the admin reads the problem as gateway validate prints it"
        assert "generation 1" in await admin.locator("#config-state").inner_text()
        viewer = await page_factory(
            locale="it-IT", http_credentials={"username": "officina", "password": "viewer-password-0123"}
        )
        await viewer.goto(gw.http.url + "/#/connections")
        italian = viewer.locator("#config-failed")
        await italian.wait_for()
        shown = await italian.inner_text()
        assert "rifiutato" in shown and "1 problema" in shown
        assert "qos" not in shown, "a viewer sees how many problems, not their text"
