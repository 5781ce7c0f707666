"""``gateway browse``: the tree a user reads, and ``--yaml`` fed back into validate and run.

Nobody should have to list every node of a machine by hand, and browsing a large server
must neither fail nor crawl.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from gateway.errors import GatewayError
from gateway.sinks.historian.store import HistorianStore
from tests.fixtures.opcua import ROOT
from tests.helpers import stop_process, wait_until


def _gateway(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def test_browse_prints_the_tree_with_node_ids_types_values_and_access(opcua_simulator: Any, tmp_path: Path) -> None:
    sim = opcua_simulator(machines=1, static=True)
    done = _gateway("browse", sim.endpoint(), "--depth", "3", "--data-dir", str(tmp_path / "data"))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "Objects  i=85  Object"
    speed = next(line for line in lines if "s=Spindle.Speed " in line or line.endswith("s=Spindle.Speed"))
    # The unit is the variable's EngineeringUnits property (an AnalogItem's), after the value.
    assert "Speed  nsu=urn:lab:cnc;s=Spindle.Speed  Variable  Double = 8000.0 rpm  [read]" in speed
    assert any("Position  nsu=urn:lab:cnc;s=Axes.Position  Variable  Double[] = [0.0, 0.0, -50.0]" in x for x in lines)
    assert any("Override  nsu=urn:lab:cnc;s=Spindle.Override  Variable  Byte = 100  [read]" in x for x in lines)
    assert any("Mode  nsu=urn:lab:cnc;s=State.Mode  Variable  MachineStateEnum = 1 (Running)" in x for x in lines)
    assert any(x.endswith("Server  i=2253  Object  …") for x in lines)  # diagnostics are not expanded
    assert any("└── Machine  nsu=urn:lab:cnc;s=Machine  Object" in x for x in lines)
    assert "variables shown (depth 3 below Objects)" in done.stderr


def test_browse_from_a_node_the_server_does_not_have_fails_in_one_line(opcua_simulator: Any, tmp_path: Path) -> None:
    sim = opcua_simulator(machines=1, static=True)
    done = _gateway("browse", sim.endpoint(), "--from", "ns=9;s=x", "--data-dir", str(tmp_path / "data"))
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        f"error: ns=9;s=x: BadNodeIdUnknown: the server {sim.endpoint()} has no such node"
    ], done.stderr


def test_browse_yaml_of_two_machines_merges_into_one_config(opcua_simulator: Any, tmp_path: Path) -> None:
    sim = opcua_simulator(machines=2, static=True)
    configs = []
    for index in range(2):
        done = _gateway("browse", sim.endpoint(index), "--from", "Objects/Machine", "--yaml")
        assert done.returncode == 0, done.stderr
        configs.append(yaml.safe_load(done.stdout))
    first, second = (c["connectors"][0] for c in configs)
    assert first["name"] == f"127.0.0.1-{sim.port}" and second["name"] == f"127.0.0.1-{sim.port + 1}"
    assert first["tags"] == {"machine": first["name"]} and second["tags"] == {"machine": second["name"]}
    fields = {n["field"]: n for n in second["nodes"]}
    assert "cycle_time" in fields and "energy" in fields and "cycle_cycle_time" not in fields
    assert fields["state_mode"].get("enum_names") is True
    merged = tmp_path / "plant.yaml"
    merged.write_text(yaml.safe_dump({"sinks": configs[0]["sinks"], "connectors": [first, second]}))
    validated = _gateway("validate", str(merged))
    assert validated.returncode == 0, validated.stderr
    assert "OK (2 connectors, 1 sink)" in validated.stdout


def test_browse_yaml_validates_and_collects_every_browsed_variable(opcua_simulator: Any, tmp_path: Path) -> None:
    sim = opcua_simulator(machines=1, bad_rate=0)
    done = _gateway("browse", sim.endpoint(), "--from", "Objects/Machine", "--yaml", "--name", "cnc-01")
    assert '    tags: {machine: "cnc-01"}' in done.stdout
    assert done.returncode == 0, done.stderr
    config = tmp_path / "cnc-01.yaml"
    config.write_text(done.stdout)
    fields = [
        line.split("field: ")[1].split("}")[0].split(",")[0]
        for line in done.stdout.splitlines()
        if line.startswith("      - {")
    ]
    assert len(fields) == 46 and "spindle_speed" in fields and "axes_position" in fields  # with program_selected
    assert "energy" in fields and "energy_energy" not in fields  # the leaf repeats its folder: said once
    assert '{node: "nsu=urn:lab:cnc;s=State.Mode", field: state_mode, enum_names: true}' in done.stdout
    assert '# - {node: "nsu=urn:lab:cnc;s=Spindle.SpeedRange"' in done.stdout  # a structure: shown, not collected

    validated = _gateway("validate", str(config))
    assert validated.returncode == 0, validated.stderr
    assert "OK (1 connector, 1 sink)" in validated.stdout

    log = open(tmp_path / "gateway.log", "wb")  # noqa: SIM115 - closed below
    gateway = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "run", str(config)], cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT
    )
    history = tmp_path / "data" / "history.db"
    try:

        def collected() -> set[str]:
            if not history.exists():
                return set()
            try:
                store = HistorianStore(history, readonly=True)
            except (sqlite3.Error, GatewayError):
                return set()  # the gateway is still creating the file
            try:
                return {
                    v.field.rsplit("_", 1)[0] if v.field.startswith("axes_position_") else v.field
                    for v in store.read("machine")
                }
            finally:
                store.close()

        wait_until(lambda: set(fields) <= collected(), timeout=90, interval=0.5, message="every browsed variable")
    finally:
        stop_process(gateway)
        log.close()
    assert gateway.returncode == 0, (tmp_path / "gateway.log").read_text()


def test_browse_a_large_server_in_batches_with_progress(opcua_simulator: Any, tmp_path: Path) -> None:
    sim = opcua_simulator(machines=1, static=True, bench_items=6000, max_nodes_per_read=500)
    done = _gateway("browse", sim.endpoint(), "--from", "Objects/Bench", "--depth", "2", "--yaml", "--name", "bench")
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("      - {node: ") == 6000
    assert "browsed 5,012 nodes…" in done.stderr and "browsed 6,012 nodes." in done.stderr
