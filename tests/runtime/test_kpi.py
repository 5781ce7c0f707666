"""The built-in kpi component in the runtime: started with ``machines:``, shown in status and /metrics,
restarted by a reload only when the machines change, stopped with the connectors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.component import State, Status
from gateway.config import load_config_source
from gateway.http.metrics import GatewayCollector, render_metrics
from gateway.kpi.source import KPI_COMPONENT
from gateway.reload import plan_reload
from gateway.reloads import ReloadResult
from gateway.runtime import Gateway
from tests.helpers import async_wait_until

pytestmark = pytest.mark.usefixtures("fake_types")

MACHINE = {
    "name": "press-1",
    "tags": {"source": "a"},
    "state": {"measurement": "m", "field": "mode", "map": {"running": ["RUN"], "down": ["FAULT"]}},
    "parts": {"measurement": "m", "field": "seq"},
}


def document(tmp_path: Path, machines: list[dict[str, Any]], interval: float = 0.05) -> dict[str, Any]:
    data = tmp_path / "data"
    return {
        "gateway": {"name": "test", "data_dir": str(data), "http": {"enabled": False}, "shutdown_timeout": "10s"},
        "sinks": [{"name": "local", "type": "historian", "path": str(data / "history.db"), "flush_interval": "50ms"}],
        "connectors": [{"name": "a", "type": "fake", "interval": interval}],
        **({"machines": machines} if machines else {}),
    }


def write(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def kpi_status(gw: Gateway) -> Status | None:
    return next((s for s in gw.statuses() if s.name == KPI_COMPONENT), None)


def kpi_running(gw: Gateway) -> Status | None:
    status = kpi_status(gw)
    return status if status is not None and status.state is State.RUNNING else None


async def test_the_kpi_component_runs_with_machines_and_shows_in_status_and_metrics(tmp_path: Path) -> None:
    path = write(tmp_path / "gw.yaml", document(tmp_path, [MACHINE]))
    async with Gateway(load_config_source(path)) as gw:
        status = await async_wait_until(lambda: kpi_running(gw))
        assert status is not None
        assert (status.kind, status.type) == ("kpi", "kpi")
        engine = gw.kpi()
        assert engine is not None and list(engine.machines) == ["press-1"]
        metrics = render_metrics(GatewayCollector("test", gw.statuses, gw.started_at)).decode()
        assert 'gateway_component_up{kind="kpi",name="kpi:engine",type="kpi"} 1.0' in metrics
        assert 'gateway_kpi_machines{kpi="kpi:engine",type="kpi"} 1.0' in metrics
    assert status.state is State.STOPPED


async def test_without_machines_there_is_no_kpi_component(tmp_path: Path) -> None:
    path = write(tmp_path / "gw.yaml", document(tmp_path, []))
    async with Gateway(load_config_source(path)) as gw:  # (components exist once it has started)
        assert kpi_status(gw) is None and gw.kpi() is None


async def test_a_reload_touches_the_kpi_component_only_when_the_machines_change(tmp_path: Path) -> None:
    path = write(tmp_path / "gw.yaml", document(tmp_path, [MACHINE]))
    async with Gateway(load_config_source(path)) as gw:
        await async_wait_until(lambda: kpi_running(gw))
        engine = gw.kpi()
        # A connector changes: the kpi component is left alone.
        write(path, document(tmp_path, [MACHINE], interval=0.02))
        attempt = await gw.reload()
        assert attempt.result is ReloadResult.APPLIED and attempt.changes == {"connector:a": "restarted"}
        assert gw.kpi() is engine
        # The machines change: it restarts with them (the old one stopped first).
        old_status = kpi_running(gw)
        assert old_status is not None
        changed = {**MACHINE, "ideal_cycle_time": "12s"}
        write(path, document(tmp_path, [changed], interval=0.02))
        attempt = await gw.reload()
        assert attempt.changes == {"kpi": "restarted"}
        new_engine = gw.kpi()
        assert new_engine is not None and new_engine is not engine
        assert old_status.state is State.STOPPED
        await async_wait_until(lambda: kpi_running(gw))
        # Removed, then added again.
        write(path, document(tmp_path, [], interval=0.02))
        assert (await gw.reload()).changes == {"kpi": "removed"}
        assert gw.kpi() is None and kpi_status(gw) is None
        write(path, document(tmp_path, [MACHINE], interval=0.02))
        assert (await gw.reload()).changes == {"kpi": "added"}
        await async_wait_until(lambda: kpi_running(gw))


def test_the_plan_says_what_happens_to_the_kpi_component(tmp_path: Path) -> None:
    def config(machines: list[dict[str, Any]]) -> Any:
        return load_config_source(write(tmp_path / "plan.yaml", document(tmp_path, machines))).config

    assert plan_reload(config([]), config([])).kpi is None
    assert plan_reload(config([MACHINE]), config([MACHINE])).kpi is None
    assert plan_reload(config([]), config([MACHINE])).changes == {"kpi": "added"}
    assert plan_reload(config([MACHINE]), config([])).changes == {"kpi": "removed"}
    renamed = {**MACHINE, "name": "press-2"}
    assert plan_reload(config([MACHINE]), config([MACHINE, renamed])).changes == {"kpi": "restarted"}
