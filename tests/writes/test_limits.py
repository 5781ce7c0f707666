"""The checks every write passes before anything reaches a machine (gateway/writes.py), and the
``write:`` key of each connector's config: refused with a reason a plant engineer reads, and a
wrong ``write:`` is a config error with file and line."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from gateway.config import load_config
from gateway.errors import ConfigError, WriteRefused
from gateway.writes import WritableField, WriteLimits, check_value, infer_type


def field(kind: str = "number", **limits: Any) -> WritableField:
    extra = {k: limits.pop(k) for k in ("range", "max_length", "unit", "machine_type") if k in limits}
    return WritableField(
        connector="cnc-01",
        field="feed_override",
        measurement="machine",
        tags={"machine": "cnc-01"},
        type=kind,  # type: ignore[arg-type]
        limits=WriteLimits.model_validate(limits),
        target="nsu=urn:cnc;s=Feed.Override",
        **extra,
    )


def refused(spec: WritableField, value: Any) -> WriteRefused:
    with pytest.raises(WriteRefused) as info:
        check_value(spec, value)
    return info.value


def test_numbers_within_min_and_max_pass_and_the_rest_say_which_limit() -> None:
    spec = field("integer", min=0, max=120, unit="%")
    assert check_value(spec, 80) == 80
    assert check_value(spec, 80.0) == 80 and isinstance(check_value(spec, 80.0), int)  # JSON 80.0 is 80
    high = refused(spec, 150)
    assert high.result == "refused_limits"
    assert str(high) == "150 % is above the highest value allowed for feed_override (120 %)"
    low = refused(spec, -1)
    assert str(low) == "-1 % is below the lowest value allowed for feed_override (0 %)"


def test_the_wrong_type_is_refused_as_such() -> None:
    number = field("number", min=0, max=120)
    for value, words in (("80", "'80' is not a number"), (True, "true is not a number"), (None, "no value given")):
        error = refused(number, value)
        assert error.result == "refused_type" and words in str(error), (value, str(error))
    assert "nan is not a finite number" in str(refused(number, float("nan")))
    integer = field("integer")
    assert str(refused(integer, 2.5)) == "2.5 is not a whole number: feed_override takes a whole number"
    switch = field("boolean")
    assert refused(switch, 1).result == "refused_type" and check_value(switch, False) is False
    text = field("string")
    assert refused(text, 1002).result == "refused_type"
    assert "at most 1000" in str(refused(text, "x" * 1001))


def test_allowed_values_in_the_fields_type() -> None:
    program = field("string", allowed=["O1001", "O1002", 1003])  # YAML reads 1003 as a number
    assert check_value(program, "O1002") == "O1002"
    assert check_value(program, "1003") == "1003"
    error = refused(program, "O9999")
    assert error.result == "refused_limits"
    assert str(error) == "'O9999' is not one of the values allowed for feed_override: O1001, O1002, 1003"
    assert program.as_dict()["allowed"] == ["O1001", "O1002", "1003"]
    switch = field("boolean", allowed=[True])
    assert refused(switch, False).result == "refused_limits"  # and 0 is not False, 1 not True
    assert refused(field("integer", allowed=[0, 1]), True).result == "refused_type"


def test_a_pattern_must_match_the_whole_text() -> None:
    order = field("string", pattern="FA-[0-9]{2}-[0-9]{4}")
    assert check_value(order, "FA-12-3456") == "FA-12-3456"
    for value in ("FA-12-34567", "xFA-12-3456", "FA-1-3456"):
        error = refused(order, value)
        assert error.result == "refused_limits" and "does not have the form required" in str(error)


def test_the_machine_types_own_range_and_length() -> None:
    setpoint = field("number", range=(-3276.8, 3276.7), machine_type="int16 register")
    assert str(refused(setpoint, 4000)) == "4000 does not fit the machine's int16 register (-3276.8 to 3276.7)"
    recipe = field("string", max_length=20)
    assert "21 characters long; feed_override holds at most 20" in str(refused(recipe, "R" * 21))
    assert "Latin-1" in str(refused(recipe, "ricetta ☕"))


def test_limits_that_contradict_themselves_are_refused() -> None:
    with pytest.raises(ValueError, match=r"min \(10\) is above max \(5\)"):
        WriteLimits(min=10, max=5)
    with pytest.raises(ValueError, match="outside min/max"):
        WriteLimits(allowed=[50, 500], max=100)
    with pytest.raises(ValueError, match="not a valid regular expression"):
        WriteLimits(pattern="FA-[0-9")
    assert WriteLimits(pattern="^A$").regex is not None  # compiled once, at config time


def test_the_type_a_field_takes_when_the_machine_does_not_say() -> None:
    assert infer_type(WriteLimits(allowed=["O1001"])) == "string"
    assert infer_type(WriteLimits(pattern="^A$")) == "string"
    assert infer_type(WriteLimits(min=0)) == "number"
    assert infer_type(WriteLimits(allowed=[1, 2])) == "integer"
    assert infer_type(WriteLimits(allowed=[True, False])) == "boolean"
    assert infer_type(WriteLimits()) == "string"


def _problems(tmp_path: Path, connectors: str) -> list[str]:
    path = tmp_path / "gw.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            sinks:
              - {name: local, type: historian, path: ./h.db}
            connectors:
            """
        )
        + textwrap.indent(textwrap.dedent(connectors), "  ")
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return [str(problem) for problem in info.value.problems]


def test_a_bad_write_key_is_a_config_error_with_file_and_line(tmp_path: Path) -> None:
    problems = _problems(
        tmp_path,
        """\
        - name: cnc-01
          type: opcua
          endpoint: opc.tcp://127.0.0.1:4840
          nodes:
            - {node: "nsu=urn:cnc;s=Feed.Override", field: feed, write: {pattern: "FA-[0-9"}}
            - {node: "nsu=urn:cnc;s=Program.Selected", write: {allowed: [O1001]}}
            - {node: "nsu=urn:cnc;s=X", field: x, write: {min: 5, max: 1, colour: red}}
        - name: utilities
          type: modbus
          host: 127.0.0.1
          devices:
            - unit: 2
              fields:
                - {name: supply, area: input, address: 0, type: int16, write: {min: 0, max: 10}}
                - {name: enable, area: coil, address: 0, write: {}, write_function: 16}
        - name: line
          type: s7
          host: 127.0.0.1
          fields:
            - {name: estop, address: I0.0, write: {}}
        - name: press-mqtt
          type: mqtt
          broker: mqtt://127.0.0.1:1883
          topics:
            - {filter: "plant/#", format: value, measurement: m}
          commands:
            - {name: speed, topic: "other/+/x", write: {}}
        """,
    )
    text = "\n".join(problems)
    path = tmp_path / "gw.yaml"
    assert f"{path}:8: connectors[0].nodes[0]" in text and "'FA-[0-9' is not a valid regular expression" in text
    assert f"{path}:9: connectors[0].nodes[1]" in text and "a writable node needs 'field: <name>'" in text
    assert "colour" in text and "unknown key" in text
    assert f"{path}:17: connectors[1].devices[0].fields[0]" in text and "input registers are read-only" in text
    assert "function 16 cannot write coil 0" in text
    assert "inputs (I, E) are the PLC's own input image" in text
    assert "'other/+/x' is not a topic to publish to" in text
    clash = _problems(
        tmp_path,
        """\
        - name: press-mqtt
          type: mqtt
          broker: mqtt://127.0.0.1:1883
          topics:
            - {filter: "plant/#", format: value, measurement: m}
          commands:
            - {name: order, topic: "plant/L1/press-02/cmd/order", write: {pattern: "^FA-[0-9]{2}-[0-9]{4}$"}}
        """,
    )
    assert "commands[0]: topic 'plant/L1/press-02/cmd/order' matches the topic filter 'plant/#'" in clash[0]
    assert "the gateway would read its own commands back as data" in clash[0]


def test_the_issues_example_is_a_valid_config(tmp_path: Path) -> None:
    path = tmp_path / "gw.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            sinks:
              - {name: local, type: historian, path: ./h.db}
            connectors:
              - name: cnc-01
                type: opcua
                endpoint: opc.tcp://127.0.0.1:4840
                nodes:
                  - {node: "nsu=urn:cnc;s=Program.Selected", field: program, write: {allowed: [O1001, O1002, O1003]}}
                  - {node: "nsu=urn:cnc;s=Feed.Override", field: feed_override, write: {min: 0, max: 120}}
              - name: press-mqtt
                type: mqtt
                broker: mqtt://127.0.0.1:1883
                topics:
                  - {filter: "plant/L1/press-02/data", format: value, measurement: press}
                commands:
                  - name: order
                    topic: "plant/L1/press-02/cmd/order"
                    qos: 1
                    write: {pattern: "^FA-[0-9]{2}-[0-9]{4}$"}
            """
        )
    )
    config = load_config(path)
    opcua, mqtt = config.connectors
    assert opcua.nodes[0].write.allowed == ["O1001", "O1002", "O1003"]  # type: ignore[attr-defined]
    assert mqtt.commands[0].write.regex.fullmatch("FA-12-3456")  # type: ignore[attr-defined]
