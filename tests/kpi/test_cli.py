"""``gateway kpi``: the API's numbers as a table, JSON or CSV, from the config's historian; mistakes in words."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from gateway.history import ThreadedHistory
from gateway.http.app import AppContext, create_app
from gateway.http.config import HttpSettings
from gateway.kpi.config import MachineConfig
from gateway.kpi.engine import KpiEngine
from gateway.sinks.historian.store import HistorianStore
from tests.kpi.scenarios import EXPECTED_IMM07, MACHINES, write_scenarios

RANGE = ["--from", "2026-03-02T06:00:00Z", "--to", "2026-03-02T08:30:00Z"]


@pytest.fixture(scope="module")
def plant(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("plant")
    write_scenarios(folder / "history.db")
    config = {
        "gateway": {"name": "plant", "data_dir": str(folder)},
        "sinks": [{"name": "local", "type": "historian", "path": str(folder / "history.db")}],
        "machines": MACHINES,
    }
    path = folder / "plant.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def gateway_kpi(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", "kpi", *args], capture_output=True, text=True, timeout=120
    )


@pytest.fixture
async def api(plant: Path) -> AsyncIterator[httpx.AsyncClient]:
    reader = ThreadedHistory(lambda: HistorianStore(plant.parent / "history.db", readonly=True), "local")
    engine = KpiEngine([MachineConfig.model_validate(m) for m in MACHINES], lambda: reader)
    ctx = AppContext(name="plant", settings=HttpSettings(), statuses=list, kpi=lambda: engine)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(ctx)), base_url="http://gw") as client:
        yield client
    await reader.aclose()


async def test_json_gives_exactly_what_the_api_gives(plant: Path, api: httpx.AsyncClient) -> None:
    result = gateway_kpi(str(plant), "--machine", "imm-07", *RANGE, "--format", "json")
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    assert {key: printed[key] for key in EXPECTED_IMM07} == EXPECTED_IMM07
    answer = await api.get("/api/machines/imm-07/kpi", params={"from": RANGE[1], "to": RANGE[3]})
    assert printed == answer.json()
    by_shift = gateway_kpi(str(plant), "-m", "cnc-09", "--from", "2026-03-28T12:00:00+01:00", "--by", "shift")
    by_shift_json = gateway_kpi(
        str(plant), "-m", "cnc-09", "--from", "2026-03-28T12:00:00+01:00", "--to", "2026-03-29T12:00:00+02:00",
        "--by", "shift", "--format", "json",
    )  # fmt: skip
    answer = await api.get(
        "/api/machines/cnc-09/kpi",
        params={"from": "2026-03-28T12:00:00+01:00", "to": "2026-03-29T12:00:00+02:00", "by": "shift"},
    )
    assert json.loads(by_shift_json.stdout) == answer.json()
    assert by_shift.returncode == 0 and "cnc-09   N " in by_shift.stdout


def test_a_table_for_people_and_csv_for_spreadsheets(plant: Path) -> None:
    table = gateway_kpi(str(plant), *RANGE)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split()[:4] == ["machine", "from", "to", "running"]
    [imm07] = [line for line in lines if line.startswith("imm-07")]
    assert "1:25:00" in imm07 and "424" in imm07 and "68.1 %" in imm07 and "56.1 %" in imm07
    assert any(line.startswith("imm-08") for line in lines) and any(line.startswith("cnc-09") for line in lines)
    rows = list(csv.DictReader(io.StringIO(gateway_kpi(str(plant), "-m", "imm-07", *RANGE, "--format", "csv").stdout)))
    [row] = rows
    assert (row["running_s"], row["no_data_s"], row["parts"], row["oee"]) == ("5100", "910", "424", "0.5607")
    hourly = gateway_kpi(str(plant), "-m", "imm-07", *RANGE, "--format", "csv", "--by", "hour").stdout
    hours = list(csv.DictReader(io.StringIO(hourly)))
    assert [h["bucket"] for h in hours] == [
        "2026-03-02T06:00+00:00",
        "2026-03-02T07:00+00:00",
        "2026-03-02T08:00+00:00",
    ]
    assert sum(int(h["parts"]) for h in hours) == 424


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-m", "imm-99"], "--machine 'imm-99': no such machine (machines: cnc-09, imm-07, imm-08)"),
        (["--since", "8h", "--from", "-2h"], "give --since or --from, not both"),
        (["--since", "eight hours"], "is not a duration"),
        (["-m", "imm-07", "--by", "shift", *RANGE], "'imm-07' has no shifts configured"),
        (["--sink", "influx"], "no sink named 'influx' (sinks: local)"),
    ],
)
def test_mistakes_are_one_line_in_words(plant: Path, args: list[str], message: str) -> None:
    result = gateway_kpi(str(plant), *args)
    assert result.returncode == 1
    assert message in result.stderr and "Traceback" not in result.stderr


def test_a_config_without_machines_or_history(tmp_path: Path) -> None:
    config: dict[str, Any] = {"gateway": {"data_dir": str(tmp_path)}, "sinks": [{"name": "local", "type": "historian"}]}
    path = tmp_path / "plain.yaml"
    path.write_text(yaml.safe_dump(config))
    assert "defines no machines" in gateway_kpi(str(path)).stderr
    config["machines"] = MACHINES[:1]
    path.write_text(yaml.safe_dump(config))
    result = gateway_kpi(str(path))
    assert result.returncode == 1
    assert "cannot be read now: there is no historian file at" in result.stderr
