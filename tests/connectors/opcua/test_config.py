"""The OPC UA connector's config model and node addressing (no server needed)."""

from __future__ import annotations

import base64
import textwrap
import uuid
from pathlib import Path

import pytest

from connectors.opcua.config import BrowseSpec, NodeSpec, OpcUaConfig
from connectors.opcua.nodes import (
    NodeRef,
    field_name,
    format_node_id,
    is_node_id,
    parse_browse_path,
    parse_node_id,
    unique_field_names,
)
from gateway.config import load_config
from gateway.errors import ConfigError

CONTRACT = """
sinks:
  - name: local
    type: historian
    path: ./data/history.db
connectors:
  - name: cnc-01
    type: opcua
    endpoint: opc.tcp://10.0.0.20:4840
    security: {policy: Basic256Sha256, mode: SignAndEncrypt}   # client cert created if absent
    auth: {username: ${OPC_USER}, password: ${OPC_PASSWORD}}
    measurement: machine
    tags: {line: A, machine: cnc-01}
    subscription: {publishing_interval: 500ms, sampling_interval: 250ms}
    nodes:
      - {node: "nsu=urn:lab:cnc;s=Spindle.Speed", field: spindle_rpm, deadband: {absolute: 5}}
      - {node: "ns=2;i=1005", field: temperature_c, scale: 0.1}
      - {browse: "Objects/Machine/Counters", recursive: true}   # every variable below
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_the_contract_block_validates_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPC_USER", "operator")
    monkeypatch.setenv("OPC_PASSWORD", "s3cret")
    config = load_config(_write(tmp_path, CONTRACT))
    cnc = config.connectors[0]
    assert isinstance(cnc, OpcUaConfig)
    assert cnc.security.policy == "Basic256Sha256" and cnc.security.mode == "SignAndEncrypt"
    assert (
        cnc.auth is not None
        and cnc.auth.username == "operator"
        and cnc.auth.password is not None
        and cnc.auth.password.get_secret_value() == "s3cret"
    )
    assert cnc.subscription.publishing_interval == 0.5 and cnc.subscription.sampling_interval == 0.25
    first, second, third = cnc.nodes
    assert isinstance(first, NodeSpec) and first.deadband is not None and first.deadband.absolute == 5
    assert first.ref() == NodeRef("s", "Spindle.Speed", 0, "urn:lab:cnc")
    assert isinstance(second, NodeSpec) and second.scale == 0.1 and second.ref() == NodeRef("i", 1005, 2)
    assert isinstance(third, BrowseSpec) and third.recursive and third.browse == "Objects/Machine/Counters"


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ('{node: "ns=2;x=1"}', "is not a node id"),
        ('{node: "ns=2;i=abc"}', "whole number"),
        ('{node: "ns=2;g=not-a-guid"}', "GUID"),
        ('{node: "Objects//Machine"}', "empty step"),
        ('{node: "ns=2;i=1", deadband: {absolute: 1, percent: 2}}', "exactly one"),
        ('{nod: "ns=2;i=1"}', "unknown key 'nod'"),
        ('{browse: "Objects/Machine", recursiv: true}', "unknown key 'recursiv'"),
        ('{node: "ns=2;i=1", field: "bad field"}', "not a usable field name"),
    ],
)
def test_wrong_nodes_are_reported_with_file_line_and_key(tmp_path: Path, item: str, message: str) -> None:
    text = f"""
    sinks: [{{name: local, type: historian, path: h.db}}]
    connectors:
      - name: cnc
        type: opcua
        endpoint: opc.tcp://127.0.0.1:4840
        nodes:
          - {item}
    """
    with pytest.raises(ConfigError) as caught:
        load_config(_write(tmp_path, text))
    text_error = str(caught.value)
    assert "gateway.yaml:8" in text_error and "connectors[0].nodes[0]" in text_error, text_error
    assert message in text_error, text_error


def test_endpoint_security_and_auth_mistakes_say_what_to_write(tmp_path: Path) -> None:
    base = "  - {node: 'ns=2;i=1'}"
    cases = {
        "endpoint: http://10.0.0.20:4840": "write opc.tcp://host:port",
        "endpoint: opc.tcp://h:4840\n    security: {policy: Basic256Sha256, mode: None}": "needs mode Sign",
        "endpoint: opc.tcp://h:4840\n    auth: {username: u, certificate: c.der}": "not both",
        "endpoint: opc.tcp://h:4840\n    security: {policy: Basic128}": "Basic256Sha256",
    }
    for head, message in cases.items():
        text = (
            "sinks: [{name: l, type: historian, path: h.db}]\nconnectors:\n  - name: c\n    type: opcua\n"
            f"    {head}\n    nodes:\n    {base}\n"
        )
        with pytest.raises(ConfigError) as caught:
            load_config(_write(tmp_path, text))
        assert message in str(caught.value), (head, str(caught.value))


def test_duplicate_field_names_are_refused() -> None:
    with pytest.raises(ValueError, match="already used by nodes\\[0\\]"):
        OpcUaConfig.model_validate(
            {
                "name": "c",
                "type": "opcua",
                "endpoint": "opc.tcp://h:4840",
                "nodes": [{"node": "ns=2;i=1", "field": "x"}, {"node": "ns=2;i=2", "field": "x"}],
            }
        )


@pytest.mark.parametrize(
    ("text", "ref"),
    [
        ("i=2258", NodeRef("i", 2258)),
        ("ns=2;i=1005", NodeRef("i", 1005, 2)),
        ("ns=3;s=Line;A.Motor", NodeRef("s", "Line;A.Motor", 3)),
        ("nsu=urn:lab:cnc;s=Spindle.Speed", NodeRef("s", "Spindle.Speed", 0, "urn:lab:cnc")),
        ("nsu=http://x.org/UA/Machine;i=5", NodeRef("i", 5, 0, "http://x.org/UA/Machine")),
        (
            "ns=1;g=09087e75-8e5e-499b-954f-f2a9603db28a",
            NodeRef("g", uuid.UUID("09087e75-8e5e-499b-954f-f2a9603db28a"), 1),
        ),
        ("ns=1;b=M/RbKBsRVkePCePcx24oRA==", NodeRef("b", base64.b64decode("M/RbKBsRVkePCePcx24oRA=="), 1)),
    ],
)
def test_node_ids_parse_and_format_back(text: str, ref: NodeRef) -> None:
    assert is_node_id(text)
    assert parse_node_id(text) == ref
    assert format_node_id(parse_node_id(text)) == text


def test_the_stable_text_of_a_node_uses_its_namespace_uri() -> None:
    assert format_node_id(NodeRef("s", "Spindle.Speed", 4), "urn:lab:cnc") == "nsu=urn:lab:cnc;s=Spindle.Speed"
    assert format_node_id(NodeRef("i", 85, 0), "http://opcfoundation.org/UA/") == "i=85"


def test_browse_paths() -> None:
    assert not is_node_id("Objects/Machine/Counters")
    assert parse_browse_path("Objects/Machine/Counters") == ("Objects", "Machine", "Counters")
    assert parse_browse_path("/Root/Objects/Machine/") == ("Objects", "Machine")
    with pytest.raises(ValueError, match="Root folder itself"):
        parse_browse_path("Root")


def test_field_names_from_browse_names_are_snake_case_and_readable() -> None:
    assert field_name(("Spindle", "Speed")) == "spindle_speed"
    assert field_name(("Axes", "X", "Position")) == "axes_x_position"
    assert field_name(("PartsProduced",)) == "parts_produced"
    assert field_name(("CNCState",)) == "cnc_state"
    assert field_name(("Zone 1 (°C)",)) == "zone_1_c"
    assert field_name(("1stStage",)) == "v1st_stage"
    assert field_name(("Speed",), prefix="spindle_") == "spindle_speed"


def test_derived_field_names_are_unique_and_do_not_depend_on_browse_order() -> None:
    entries = [
        ("nsu=urn:a;s=A.Speed", ("A", "Speed")),
        ("nsu=urn:a;s=A_Speed", ("A_Speed",)),
        ("nsu=urn:a;s=Temp", ("Temp",)),
    ]
    forward = unique_field_names(entries, taken={"temp"})
    backward = unique_field_names(list(reversed(entries)), taken={"temp"})
    assert forward == backward
    assert len(set(forward.values())) == 3
    assert forward["nsu=urn:a;s=A.Speed"].startswith("a_speed_")
    assert forward["nsu=urn:a;s=Temp"].startswith("temp_")  # an explicit field already has 'temp'


def test_the_sample_with_every_option_validates(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPC_USER", "operator")
    monkeypatch.setenv("OPC_PASSWORD", "s3cret")
    sample = Path(__file__).resolve().parents[3] / "connectors" / "opcua" / "sample.yaml"
    config = load_config(sample)
    cnc = config.connectors[0]
    assert isinstance(cnc, OpcUaConfig)
    assert len(cnc.nodes) == 9
    # the two writable nodes, and only they
    writable = {n.field: n.write for n in cnc.nodes if isinstance(n, NodeSpec) and n.write is not None}
    assert set(writable) == {"program", "feed_override"}
    assert writable["program"].allowed == ["O1001", "O1002", "O1003"]
    assert (writable["feed_override"].min, writable["feed_override"].max) == (0, 120)
    assert cnc.reconnect.session_timeout == 120.0
    # Every option of the model appears in the sample (commented or not).
    text = sample.read_text()
    for name in OpcUaConfig.model_fields:
        assert f"{name}:" in text, name


def test_a_percent_deadband_in_poll_mode_is_refused_with_file_and_line(tmp_path: Path) -> None:
    text = """
    sinks: [{name: local, type: historian, path: h.db}]
    connectors:
      - name: cnc
        type: opcua
        endpoint: opc.tcp://127.0.0.1:4840
        mode: poll
        nodes:
          - {node: "ns=2;i=1"}
          - {node: "ns=2;i=2", deadband: {percent: 2}}
    """
    with pytest.raises(ConfigError) as caught:
        load_config(_write(tmp_path, text))
    message = str(caught.value)
    assert "gateway.yaml:4" in message and "connectors[0]" in message, message
    assert "nodes[1].deadband: a percent deadband works only with mode: subscribe" in message, message
    # The same deadband in subscribe mode, and an absolute one in poll mode, are fine.
    load_config(_write(tmp_path, text.replace("mode: poll", "mode: subscribe")))
    load_config(_write(tmp_path, text.replace("percent: 2", "absolute: 2")))


def test_the_absolute_deadband_sent_to_the_server_is_in_raw_units() -> None:
    """The server compares raw values; the deadband is written in stored (scaled) units."""
    from connectors.opcua.config import Deadband
    from connectors.opcua.source import _server_filter

    assert _server_filter(Deadband(absolute=5), None) == ("absolute", 5)
    assert _server_filter(Deadband(absolute=5), 0.1) == pytest.approx(("absolute", 50))
    assert _server_filter(Deadband(absolute=5), -10.0) == ("absolute", 0.5)
    assert _server_filter(Deadband(absolute=5), 0.0) is None  # every stored value is the same: nothing to ask
    assert _server_filter(Deadband(percent=2), 0.1) == ("percent", 2)  # of the EURange: no unit


def test_collapsed_field_names_do_not_repeat_the_folder_and_stay_unique() -> None:
    assert field_name(("Cycle", "CycleTime"), collapse=True) == "cycle_time"
    assert field_name(("Energy", "Energy"), collapse=True) == "energy"
    assert field_name(("Axes", "X", "Position"), collapse=True) == "axes_x_position"
    assert field_name(("Spindle", "SpeedSetpoint"), collapse=True) == "spindle_speed_setpoint"
    assert field_name(("Cycle", "CycleTime")) == "cycle_cycle_time"  # browse: entries keep their names
    entries = [("nsu=u;s=Cycle.CycleTime", ("Cycle", "CycleTime")), ("nsu=u;s=CycleTime", ("CycleTime",))]
    names = unique_field_names(entries, collapse=True)
    assert names == unique_field_names(list(reversed(entries)), collapse=True)
    assert len(set(names.values())) == 2 and all(n.startswith("cycle_time_") for n in names.values())
