"""The ``machines:`` section: what validates, and each mistake as one ``file:line: key`` line."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gateway.config import json_schema, load_config
from gateway.errors import ConfigError
from gateway.kpi import machines_of

HEAD = """\
sinks:
  - {name: local, type: historian}
connectors:
  - name: imm
    type: mqtt
    broker: mqtt://localhost:1883
    topics:
      - filter: plant/+/state
        measurement: machine
        fields:
          state: {path: state, type: string}
          cycle_count: {path: count, type: int}
          order: {path: order, type: string}
machines:
"""

MACHINE = """\
  - name: imm-07
    tags: {machine: imm-07}
    state:
      measurement: machine
      field: state
      map:
        running: [PRODUCING, 2]
        idle: [IDLE, WAITING]
        down: [ALARM, FAULT]
        setup: [SETUP]
        planned_stop: [BREAK, NO_ORDER]
      timeout: 5m
    parts: {measurement: machine, field: cycle_count}
    scrap: {measurement: machine, field: scrap_count, kind: delta}
    ideal_cycle_time: 10s
    shifts:
      - {name: A, days: [mon, tue, wed, thu, fri], from: "06:00", to: "14:00"}
      - {name: B, days: [mon, tue, wed, thu, fri], from: "14:00", to: "22:00"}
    timezone: Europe/Rome
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "plant.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    return [str(p) for p in info.value.problems]


def test_the_issue_example_validates(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, HEAD + MACHINE))
    [machine] = machines_of(config)
    assert machine.name == "imm-07" and machine.state.timeout == 300.0 and machine.ideal_cycle_time == 10.0
    assert machine.state.categories["producing"] == "running" and machine.state.categories["2"] == "running"
    assert [(s.name, s.start, s.end) for s in machine.shifts] == [("A", "06:00", "14:00"), ("B", "14:00", "22:00")]
    assert machine.scrap is not None and machine.scrap.kind == "delta"


def test_unquoted_times_are_read_as_times(tmp_path: Path) -> None:
    # YAML 1.1 reads 14:00 as the number 840 (base 60); a plant engineer means 14:00.
    text = MACHINE.replace('from: "14:00", to: "22:00"', "from: 14:00, to: 22:00")
    [machine] = machines_of(load_config(write(tmp_path, HEAD + text)))
    assert (machine.shifts[1].start, machine.shifts[1].end) == ("14:00", "22:00")


@pytest.mark.parametrize(
    ("change", "line", "key", "message"),
    [
        (
            ("down: [ALARM, FAULT]", "down: [ALARM, FAULT, waiting]"),
            23,
            "machines[0].state.map.down[2]",
            "state 'waiting' is in two categories: 'idle' (map.idle[1]) and 'down'",
        ),
        (
            ("planned_stop:", "planed_stop:"),
            25,
            "machines[0].state.map.planed_stop",
            "unknown category 'planed_stop' (did you mean 'planned_stop'?)",
        ),
        (
            ("field: cycle_count}", "field: order}"),
            27,
            "machines[0].parts.field",
            "machine.order is not a number: connector 'imm' stores it as text (connectors[0].topics[0].fields.order)",
        ),
        (
            ('from: "14:00", to: "22:00"', 'from: "13:00", to: "22:00"'),
            32,
            "machines[0].shifts[1]",
            "shift 'B' (mon 13:00–22:00) overlaps shift 'A'",
        ),
        (("Europe/Rome", "Europe/Roma"), 33, "machines[0].timezone", "did you mean 'Europe/Rome'?"),
        (("timeout: 5m", "timeout: 5 minutes"), 26, "machines[0].state.timeout", "is not a duration"),
    ],
    ids=[
        "state-in-two-categories",
        "unknown-category",
        "counter-not-numeric",
        "overlapping-shifts",
        "time-zone",
        "timeout",
    ],
)
def test_each_mistake_is_one_line_with_file_line_and_key(
    tmp_path: Path, change: tuple[str, str], line: int, key: str, message: str
) -> None:
    old, new = change
    assert old in MACHINE
    [problem] = problems(tmp_path, HEAD + MACHINE.replace(old, new))
    path = tmp_path / "plant.yaml"
    assert problem.startswith(f"{path}:{line}: {key}: "), problem
    assert message in problem
    assert "\n" not in problem


def test_names_are_unique_and_gateway_validate_says_so(tmp_path: Path) -> None:
    path = write(tmp_path, HEAD + MACHINE + MACHINE.replace("tags: {machine: imm-07}", "tags: {machine: imm-08}"))
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "validate", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert f"{path}:34: machines[1].name: name 'imm-07' is already used by machines[0]" in result.stderr
    assert "1 problem found" in result.stderr


def test_shifts_need_a_time_zone_and_scrap_needs_parts(tmp_path: Path) -> None:
    text = MACHINE.replace("    timezone: Europe/Rome\n", "").replace(
        "    parts: {measurement: machine, field: cycle_count}\n", ""
    )
    found = problems(tmp_path, HEAD + text)
    assert any("machines[0].shifts: shifts are local times: give the machine's timezone" in p for p in found)
    assert any("machines[0].scrap: scrap needs a parts counter too" in p for p in found)
    assert any("machines[0].ideal_cycle_time: an ideal cycle time needs a parts counter" in p for p in found)


def test_a_folder_of_files_adds_up_its_machines_and_the_schema_describes_them(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(HEAD + MACHINE)
    (tmp_path / "b.yaml").write_text("machines:\n" + MACHINE.replace("imm-07", "imm-08"))
    assert [m.name for m in machines_of(load_config(tmp_path))] == ["imm-07", "imm-08"]
    schema = json_schema()
    assert "machines" in schema["properties"]
    text = json.dumps(schema)
    assert "ideal_cycle_time" in text and "planned_stop" in text
