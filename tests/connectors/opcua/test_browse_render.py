"""What ``gateway browse`` prints and writes, from a browsed tree (no server needed)."""

from __future__ import annotations

import io
from pathlib import Path

import yaml
from asyncua import ua

from connectors.opcua._client import VariableInfo
from connectors.opcua.browse import BrowsedNode, BrowseOptions, render_tree, render_yaml
from connectors.opcua.config import OpcUaConfig

STATES = {0: "Idle", 1: "Running", 2: "Alarm", 3: "Setup"}


def _var(
    name: str, path: tuple[str, ...], type_name: str, value: object, enum: dict[int, str] | None = None
) -> BrowsedNode:
    info = VariableInfo(name, ua.NodeId(ua.Int32(1), ua.Int16(2)), type_name, -1, "read", value, "Good", True)
    return BrowsedNode(f"nsu=urn:m;s={'.'.join(path)}", name, "Variable", path, info, enum)


def _tree() -> BrowsedNode:
    root = BrowsedNode("nsu=urn:m;s=Machine", "Machine", "Object", ())
    cycle = BrowsedNode("nsu=urn:m;s=Cycle", "Cycle", "Object", ("Cycle",))
    cycle.children = [
        _var("CycleTime", ("Cycle", "CycleTime"), "Double", 28.5),
        _var("Cushion", ("Cycle", "Cushion"), "Float", 52.560001373291016),
    ]
    energy = BrowsedNode("nsu=urn:m;s=Energy", "Energy", "Object", ("Energy",))
    energy.children = [_var("Energy", ("Energy", "Energy"), "Double", 1.25)]
    state = BrowsedNode("nsu=urn:m;s=State", "State", "Object", ("State",))
    state.children = [_var("Mode", ("State", "Mode"), "MachineStateEnum", 1, STATES)]
    root.children = [cycle, energy, state]
    return root


def test_floats_have_7_significant_digits_and_enums_their_name() -> None:
    out = io.StringIO()
    assert render_tree(_tree(), out) == 4
    text = out.getvalue()
    assert "Cushion  nsu=urn:m;s=Cycle.Cushion  Variable  Float = 52.56  [read]" in text, text
    assert "CycleTime  nsu=urn:m;s=Cycle.CycleTime  Variable  Double = 28.5  [read]" in text, text
    assert "Mode  nsu=urn:m;s=State.Mode  Variable  MachineStateEnum = 1 (Running)  [read]" in text, text


def _yaml(endpoint: str, name: str | None = None) -> dict[str, object]:
    out = io.StringIO()
    render_yaml(_tree(), BrowseOptions(endpoint=endpoint, start="Objects/Machine", yaml=True, name=name), out)
    connector = yaml.safe_load(out.getvalue())["connectors"][0]
    assert isinstance(connector, dict)
    return connector


def test_yaml_names_the_connector_after_the_host_and_tags_the_machine() -> None:
    first = _yaml("opc.tcp://cnc-01.plant.local:4840/")
    second = _yaml("opc.tcp://10.0.0.21:4841")
    assert first["name"] == "cnc-01.plant.local" and first["tags"] == {"machine": "cnc-01.plant.local"}
    assert second["name"] == "10.0.0.21-4841" and second["tags"] == {"machine": "10.0.0.21-4841"}
    assert _yaml("opc.tcp://h:4840", name="press-07")["tags"] == {"machine": "press-07"}
    # Both connectors together are a valid config: distinct names, and distinct series (the tag).
    for connector in (first, second):
        OpcUaConfig.model_validate(connector)


def test_yaml_field_names_do_not_repeat_the_folder_and_enums_store_their_name() -> None:
    listed = _yaml("opc.tcp://h:4840")["nodes"]
    assert isinstance(listed, list)
    nodes = {n["field"]: n for n in listed}
    assert set(nodes) == {"cycle_time", "cycle_cushion", "energy", "state_mode"}
    assert nodes["state_mode"].get("enum_names") is True
    assert "enum_names" not in nodes["cycle_time"]


def test_the_yaml_is_accepted_by_validate(tmp_path: Path) -> None:
    out = io.StringIO()
    render_yaml(_tree(), BrowseOptions(endpoint="opc.tcp://10.0.0.20:4840", start="Objects/Machine"), out)
    (tmp_path / "machine.yaml").write_text(out.getvalue())
    from gateway.config import load_config

    config = load_config(tmp_path / "machine.yaml")
    assert [c.name for c in config.connectors] == ["10.0.0.20"]
