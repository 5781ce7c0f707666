"""``gateway validate`` and ``gateway schema`` (``gateway query`` is tested with the historian)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gateway.cli import app
from gateway.config import config_model, json_schema
from tests.test_config import GOOD, PROBLEM_LINE, SECOND, _contract, write

runner = CliRunner()


def test_validate_exits_0_on_a_good_file(tmp_path: Path) -> None:
    result = runner.invoke(app, ["validate", str(write(tmp_path, GOOD))])
    assert result.exit_code == 0, result.output
    assert "OK (1 connector, 1 sink)" in result.stdout


def test_validate_exits_1_and_prints_every_problem(tmp_path: Path) -> None:
    text = GOOD.replace("    qos: 1", "    qos: high").replace("    retention: 30d", "    retension: 30d")
    path = write(tmp_path, text)
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[:-1] == [
        f"{path}:9: sinks[0].retension: unknown key 'retension' (did you mean 'retention'?)",
        f"{path}:15: connectors[0].qos: Input should be 0, 1 or 2 (got 'high')",
    ]
    assert lines[-1].startswith("2 problems found")


def test_validate_as_a_command_prints_no_traceback(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        GOOD.replace("    qos: 1", "    qos: [1, 2]").replace("shutdown_timeout: 1m30s", "shutdown_timeout: true"),
    )
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    problem_lines = result.stderr.splitlines()[:-1]
    assert len(problem_lines) == 2
    for line in problem_lines:
        assert PROBLEM_LINE.match(line), line


def test_validate_a_folder(tmp_path: Path) -> None:
    write(tmp_path, GOOD, "a.yaml")
    write(tmp_path, SECOND, "b.yaml")
    result = runner.invoke(app, ["validate", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "OK (2 connectors, 2 sinks)" in result.stdout


def test_schema_prints_json_schema_of_the_whole_file() -> None:
    result = runner.invoke(app, ["schema"])
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) == {"gateway", "sinks", "connectors", "machines"}
    assert schema == json_schema()


def test_schema_accepts_the_contract_gateway_and_sinks_and_flags_typos() -> None:
    import jsonschema

    schema = json_schema()
    validator_class = jsonschema.Draft202012Validator
    validator_class.check_schema(schema)
    validator = validator_class(schema)
    contract = _contract()
    assert [e.message for e in validator.iter_errors(contract)] == []
    part = {"gateway": contract["gateway"], "sinks": contract["sinks"]}
    broken = json.loads(json.dumps(part))
    broken["gateway"]["buffer"]["max_sise"] = "1GiB"
    broken["sinks"][0]["retention"] = "30 days"
    assert len(list(validator.iter_errors(broken))) >= 2


@pytest.mark.parametrize("example", sorted((Path(__file__).parent.parent / "configs").glob("*.y*ml")), ids=str)
def test_every_example_config_passes_the_exported_schema(example: Path) -> None:
    """What an editor checks with `gateway schema` agrees with `gateway validate` on every example."""
    import jsonschema
    import yaml

    # ${VAR} references are substituted by the gateway before validation: stand in a plain token
    document = yaml.safe_load(re.sub(r"\$\{[^}]*\}", "ENVREF", example.read_text()))
    validator = jsonschema.Draft202012Validator(json_schema())
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(document)]
    # only a token standing where a number or a choice is expected may fail the schema
    assert [e for e in errors if "'ENVREF'" not in e] == []


def test_schema_describes_every_key() -> None:
    schema = json_schema()
    gateway = schema["$defs"]["GatewaySettings"]["properties"]
    for key, spec in gateway.items():
        if key not in ("http", "buffer"):
            assert spec.get("description"), key


def test_the_model_plugs_in_every_registered_type() -> None:
    from gateway.registry import component_types

    schema = json.dumps(config_model().model_json_schema())
    for name in [*component_types("sink"), *component_types("connector")]:
        assert f'"{name}"' in schema


EXAMPLES = sorted((Path(__file__).parent.parent / "configs").glob("*.y*ml"))


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_example_config_validates(example: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import re

    # Variables without a default are secrets the example expects from the environment.
    for name in re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", example.read_text()):
        monkeypatch.setenv(name, "example-secret")
    result = runner.invoke(app, ["validate", str(example)])
    assert result.exit_code == 0, result.output
