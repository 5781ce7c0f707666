"""Configuration loading: YAML → validated models, ${VAR} interpolation, units, merged folders,
and error messages that name file, line and key in one line (no traceback)."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any

import pytest

from gateway.config import load_config, validate_data
from gateway.errors import ConfigError, ConfigProblem

#: file:line: key.path: message — the one shape every problem has.
PROBLEM_LINE = re.compile(r"^(?P<file>[^:\n]+):(?P<line>\d+): (?:(?P<key>[\w.\[\]-]+): )?(?P<message>\S.*)$")

GOOD = """\
gateway:
  name: lab-cell-1
  shutdown_timeout: 1m30s
  buffer: {path: ./data/buffer, max_size: 512MiB, overflow: drop_oldest}
sinks:
  - name: local
    type: historian
    path: ./data/history.db
    retention: 30d
connectors:
  - name: energy
    type: mqtt
    broker: mqtt://localhost:1883
    client_id: gw-lab-cell-1
    qos: 1
    topics:
      - filter: factory/+/energy/+
        tags_from_topic: {line: 1, meter: 3}
        format: json
        measurement: energy
        time: {path: ts, unit: ms}
        fields: {power_w: p, energy_kwh: e}
"""


def write(folder: Path, text: str, name: str = "gateway.yaml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems_of(path: Path) -> list[ConfigProblem]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return info.value.problems


def assert_one_line_each(error: ConfigError) -> None:
    for line in str(error).splitlines():
        assert PROBLEM_LINE.match(line), line
        assert "Traceback" not in line
    assert len(str(error).splitlines()) == len(error.problems)


# --- a good file -----------------------------------------------------------------------------------


def test_a_good_file_validates_into_typed_models(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD))
    assert config.gateway.name == "lab-cell-1"
    assert config.gateway.shutdown_timeout == 90.0
    assert config.gateway.buffer.max_size == 512 * 2**20
    sink: Any = config.sinks[0]
    assert sink.type == "historian"
    assert sink.retention == 30 * 86400.0
    connector: Any = config.connectors[0]
    assert connector.type == "mqtt"
    assert connector.qos == 1
    assert connector.topics[0].tags_from_topic == {"line": 1, "meter": 3}


def test_an_empty_file_gives_the_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ""))
    assert config.sinks == [] and config.connectors == []
    assert config.gateway.shutdown_timeout == 30.0


def test_validate_data_works_without_a_file() -> None:
    config = validate_data({"gateway": {"name": "x"}})
    assert config.gateway.name == "x"
    with pytest.raises(ConfigError) as info:
        validate_data({"gateway": {"nmae": "x"}})
    assert str(info.value) == "<config>: gateway.nmae: unknown key 'nmae' (did you mean 'name'?)"


# --- environment variables ---------------------------------------------------------------------


def test_env_variables_and_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GW_NAME", "from-env")
    monkeypatch.setenv("GW_EMPTY", "")
    monkeypatch.delenv("GW_UNSET", raising=False)
    config = load_config(
        write(
            tmp_path,
            """\
            gateway:
              name: ${GW_NAME}
              data_dir: ${GW_UNSET:-./data}/${GW_EMPTY:-sub}
              http: {listen: "${GW_UNSET:-127.0.0.1}:${GW_PORT:-8081}"}
            """,
        )
    )
    assert config.gateway.name == "from-env"
    assert str(config.gateway.data_dir) == "data/sub"  # the default also applies to an empty variable
    assert config.gateway.http.listen == "127.0.0.1:8081"


def test_double_dollar_is_a_literal_reference(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GW_NAME", "expanded")
    config = load_config(write(tmp_path, "gateway:\n  name: a$${GW_NAME}b\n"))
    assert config.gateway.name == "a${GW_NAME}b"


def test_a_plain_scalar_is_typed_after_substitution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QOS", raising=False)
    monkeypatch.setenv("BATCH", "2500")
    text = GOOD.replace("qos: 1", "qos: ${QOS:-1}").replace(
        "retention: 30d", "retention: 30d\n    batch_size: ${BATCH}\n    flush_interval: ${FLUSH:-2}"
    )
    config = load_config(write(tmp_path, text))
    connector: Any = config.connectors[0]
    sink: Any = config.sinks[0]
    assert connector.qos == 1 and type(connector.qos) is int
    assert sink.batch_size == 2500
    assert sink.flush_interval == 2.0


@pytest.mark.parametrize("secret", ["0123", "123456", "1e3", "0x1F", "yes", "null", "1_000", "+1", "007"])
def test_text_values_from_the_environment_stay_exactly_as_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, secret: str
) -> None:
    # YAML would read 0123 as the octal 83 and yes as true: a password must arrive as typed.
    monkeypatch.setenv("MQTT_PASSWORD", secret)
    monkeypatch.setenv("LINE", secret)
    text = GOOD.replace("qos: 1", "qos: 1\n    username: ${MQTT_PASSWORD}\n    password: ${MQTT_PASSWORD}")
    text = text.replace(
        "tags_from_topic: {line: 1, meter: 3}", "tags_from_topic: {line: 1, meter: 3}\n        tags: {line_no: ${LINE}}"
    )
    config = load_config(write(tmp_path, text))
    connector: Any = config.connectors[0]
    assert connector.username == secret
    assert connector.password.get_secret_value() == secret
    assert connector.topics[0].tags == {"line_no": secret}


def test_numbers_written_where_text_is_expected_are_taken_as_text(tmp_path: Path) -> None:
    text = GOOD.replace("client_id: gw-lab-cell-1", "client_id: 4711").replace(
        "tags_from_topic: {line: 1, meter: 3}", "tags_from_topic: {line: 1, meter: 3}\n        tags: {hall: 2}"
    )
    connector: Any = load_config(write(tmp_path, text)).connectors[0]
    assert connector.client_id == "4711"
    assert connector.topics[0].tags == {"hall": "2"}


def test_env_references_inside_flow_mappings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LISTEN", "127.0.0.2:9000")
    config = load_config(write(tmp_path, "gateway:\n  http: {listen: ${LISTEN}}\n"))
    assert config.gateway.http.listen == "127.0.0.2:9000"


def test_a_missing_env_variable_is_one_problem_at_its_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MQTT_URL", raising=False)
    path = write(tmp_path, GOOD.replace("broker: mqtt://localhost:1883", "broker: ${MQTT_URL}"))
    problems = problems_of(path)
    # Only the missing variable: not also "'' is not a broker URL" for the empty value it left.
    assert [str(p) for p in problems] == [
        f"{path}:13: connectors[0].broker: environment variable MQTT_URL is not set (set it, or write "
        + "${MQTT_URL:-default} to give a default)"
    ]


# --- durations and sizes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "seconds"),
    [("250ms", 0.25), ("5s", 5.0), ("10m", 600.0), ("30d", 2592000.0), ("1m30s", 90.0), ("7", 7.0), ("0.5", 0.5)],
)
def test_durations_in_a_file(tmp_path: Path, written: str, seconds: float) -> None:
    config = load_config(write(tmp_path, f"gateway:\n  shutdown_timeout: {written}\n"))
    assert config.gateway.shutdown_timeout == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("written", "size"), [("512MiB", 512 * 2**20), ("1GiB", 2**30), ("100MB", 10**8), ("4096", 4096)]
)
def test_sizes_in_a_file(tmp_path: Path, written: str, size: int) -> None:
    config = load_config(write(tmp_path, f"gateway:\n  buffer: {{max_size: {written}}}\n"))
    assert config.gateway.buffer.max_size == size


# --- unknown keys, duplicate keys, syntax errors -------------------------------------------------


@pytest.mark.parametrize(
    ("typo", "line", "key", "hint"),
    [
        ("gateway:", 1, "gatway", "gateway"),
        ("    retention: 30d", 9, "sinks[0].retension", "retention"),
        ("        format: json", 19, "connectors[0].topics[0].fromat", "format"),
        ("    client_id: gw-lab-cell-1", 14, "connectors[0].clientid", "client_id"),
        ("  shutdown_timeout: 1m30s", 3, "gateway.shutdown_timout", "shutdown_timeout"),
    ],
)
def test_unknown_keys_say_did_you_mean(tmp_path: Path, typo: str, line: int, key: str, hint: str) -> None:
    wrong = key.rsplit(".", 1)[-1].split("]")[-1]
    right_key = typo.strip().split(":")[0]
    path = write(tmp_path, GOOD.replace(typo, typo.replace(right_key, wrong)))
    problems = problems_of(path)
    assert [str(p) for p in problems] == [f"{path}:{line}: {key}: unknown key {wrong!r} (did you mean {hint!r}?)"]


def test_an_unknown_key_without_a_close_match_lists_the_allowed_keys(tmp_path: Path) -> None:
    path = write(tmp_path, "gateway:\n  buffer: {path: ./b, xyzzy: 1}\n")
    (problem,) = problems_of(path)
    assert problem.key == "gateway.buffer.xyzzy"
    assert problem.message.startswith("unknown key 'xyzzy'; allowed keys: ")
    assert "max_size, overflow, path" in problem.message


def test_a_key_given_twice_is_an_error_at_its_second_line(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("  name: lab-cell-1\n", "  name: lab-cell-1\n  name: other\n"))
    (problem,) = problems_of(path)
    assert str(problem) == f"{path}:3: gateway.name: key 'name' appears twice in the same mapping"


def test_a_yaml_syntax_error_names_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("    qos: 1\n", "    qos: [1\n"))
    (problem,) = problems_of(path)
    assert problem.file == str(path)
    assert problem.line is not None and 15 <= problem.line <= 17
    assert problem.message.startswith("YAML syntax error")
    assert "\n" not in str(problem)


def test_a_file_that_is_not_a_mapping(tmp_path: Path) -> None:
    (problem,) = problems_of(write(tmp_path, "- just\n- a list\n"))
    assert "expected a mapping" in problem.message


def test_a_missing_file_and_an_empty_folder(tmp_path: Path) -> None:
    (problem,) = problems_of(tmp_path / "nope.yaml")
    assert problem.message == "no such file or folder"
    (tmp_path / "empty").mkdir()
    (problem,) = problems_of(tmp_path / "empty")
    assert "no .yaml" in problem.message


# --- a folder of files ---------------------------------------------------------------------------


SECOND = """\
sinks:
  - name: archive
    type: historian
    path: ./data/archive.db
connectors:
  - name: machines
    type: mqtt
    broker: mqtt://localhost:1883
    topics:
      - filter: machines/+/state
        format: json
"""


def test_a_folder_is_merged_with_lists_concatenated(tmp_path: Path) -> None:
    write(tmp_path, GOOD, "10-main.yaml")
    write(tmp_path, SECOND, "20-more.yml")
    (tmp_path / "notes.txt").write_text("not a config")
    config = load_config(tmp_path)
    assert [s.name for s in config.sinks] == ["local", "archive"]
    assert [c.name for c in config.connectors] == ["energy", "machines"]
    assert config.gateway.name == "lab-cell-1"


def test_errors_in_the_second_file_name_its_lines_and_merged_indexes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NOT_SET", raising=False)
    write(tmp_path, GOOD, "10-main.yaml")
    second = write(
        tmp_path,
        SECOND.replace("    type: mqtt\n", "    type: mqtt\n    qos: 7\n")
        .replace("path: ./data/archive.db", "path: ${NOT_SET}")
        .replace("format: json", "format: json\n        format: value"),
        "20-more.yaml",
    )
    problems = problems_of(tmp_path)
    assert [str(p) for p in problems] == [
        f"{second}:4: sinks[1].path: environment variable NOT_SET is not set (set it, or write "
        + "${NOT_SET:-default} to give a default)",
        f"{second}:8: connectors[1].qos: Input should be 0, 1 or 2 (got 7)",
        f"{second}:13: connectors[1].topics[0].format: key 'format' appears twice in the same mapping",
    ]


def test_the_gateway_section_defined_in_two_files_is_an_error(tmp_path: Path) -> None:
    first = write(tmp_path, GOOD, "10-main.yaml")
    second = write(tmp_path, "gateway:\n  name: other\n" + SECOND, "20-more.yaml")
    (problem,) = problems_of(tmp_path)
    assert problem.file == str(second)
    assert problem.line == 1
    assert problem.key == "gateway"
    assert str(first) in problem.message


# --- typical mistakes: one clear line each, with file, line and key, so the engineer can fix it --


BROKEN = {
    "typo'd key": (
        ("    broker: mqtt://localhost:1883", "    brokr: mqtt://localhost:1883"),
        13,
        "connectors[0].brokr",
        "unknown key 'brokr' (did you mean 'broker'?)",
    ),
    "bad duration": (
        ("    retention: 30d", "    retention: 30 days"),
        9,
        "sinks[0].retention",
        "'30 days' is not a duration",
    ),
    "missing env var": (
        ("    client_id: gw-lab-cell-1", "    client_id: ${GW_TEST_CLIENT_ID}"),
        14,
        "connectors[0].client_id",
        "environment variable GW_TEST_CLIENT_ID is not set",
    ),
    "wrong type": (
        ("    qos: 1", "    qos: high"),
        15,
        "connectors[0].qos",
        "Input should be 0, 1 or 2 (got 'high')",
    ),
    "duplicate connector name": (
        ("connectors:\n", "connectors:\n  - {name: energy, type: mqtt, broker: 'mqtt://h', topics: [{filter: a}]}\n"),
        12,
        "connectors[1].name",
        "name 'energy' is already used by connectors[0]; names must be unique",
    ),
    "unknown sink type": (
        ("    type: historian", "    type: histroian"),
        7,
        "sinks[0].type",
        "unknown sink type 'histroian'; known types:",
    ),
    "connector naming an unknown sink": (
        ("    qos: 1", "    qos: 1\n    sinks: [local, influx]"),
        16,
        "connectors[0].sinks[1]",
        "sink 'influx' is not defined; defined sinks: local",
    ),
    "bad topic filter": (
        ("      - filter: factory/+/energy/+", "      - filter: factory/#/energy"),
        17,
        "connectors[0].topics[0].filter",
        "'#' must be a whole segment and the last one",
    ),
    "bad URL": (
        ("    broker: mqtt://localhost:1883", "    broker: tcp://localhost:1883"),
        13,
        "connectors[0].broker",
        "'tcp://localhost:1883' is not a broker URL",
    ),
    "bad port": (
        ("    broker: mqtt://localhost:1883", "    broker: mqtt://localhost:18830000"),
        13,
        "connectors[0].broker",
        "invalid port",
    ),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_each_broken_config_gives_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str) -> None:
    monkeypatch.delenv("GW_TEST_CLIENT_ID", raising=False)
    (old, new), line, key, message = BROKEN[case]
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert_one_line_each(info.value)
    (problem,) = info.value.problems
    assert (problem.file, problem.line, problem.key) == (str(path), line, key), str(problem)
    assert message in problem.message
    assert str(problem).startswith(f"{path}:{line}: {key}: ")


def test_all_problems_are_reported_at_once_sorted_by_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GW_TEST_CLIENT_ID", raising=False)
    text = GOOD
    for (old, new), *_ in BROKEN.values():
        if old in text and "brokr" not in new and "18830000" not in new:
            text = text.replace(old, new, 1)
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert_one_line_each(info.value)
    lines = [p.line or 0 for p in info.value.problems]
    assert lines == sorted(lines)
    # (the inserted duplicate is connectors[0]: the original one is now connectors[1])
    assert {p.key for p in info.value.problems} == {
        "sinks[0].type",
        "connectors[1].name",
        "connectors[1].client_id",
        "connectors[1].qos",
        "connectors[1].topics[0].filter",
        "connectors[1].broker",
    }


#: The reference config: the historian, InfluxDB over both APIs, an OPC UA and an MQTT connector,
#: environment references included. It must keep validating as written: files built on it never break.
CONTRACT = """\
gateway:
  name: lab-cell-1
  http: {listen: 127.0.0.1:8080}
  buffer: {path: ./data/buffer, max_size: 1GiB, overflow: drop_oldest}

sinks:
  - name: local                       # the embedded default: no server needed
    type: historian
    path: ./data/history.db
    retention: 30d
  - name: influx
    type: influxdb
    url: http://localhost:8086
    org: lab
    bucket: machines
    token: ${INFLUX_TOKEN}
    batch_size: 5000
    flush_interval: 1s
  - name: legacy                      # InfluxDB 1.x (many SMEs still run 1.8)
    type: influxdb
    api: v1
    url: http://historian.local:8086
    database: machines
    username: ${INFLUX1_USER:-}
    password: ${INFLUX1_PASSWORD:-}

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

  - name: energy
    type: mqtt
    broker: mqtt://localhost:1883      # mqtts:// for TLS
    client_id: gw-lab-cell-1           # fixed id + QoS 1 = persistent session
    qos: 1
    topics:
      - filter: factory/+/energy/+
        tags_from_topic: {line: 1, meter: 3}   # segment index → tag
        format: json
        measurement: energy
        time: {path: ts, unit: ms}
        fields: {power_w: p, energy_kwh: e}
"""


def _contract() -> dict[str, Any]:
    """The contract as plain data (the environment references replaced by text)."""
    import yaml

    data: dict[str, Any] = yaml.safe_load(re.sub(r"\$\{[^}]*\}", "env-value", CONTRACT))
    return data


def test_the_contract_validates_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("INFLUX_TOKEN", "OPC_USER", "OPC_PASSWORD"):
        monkeypatch.setenv(name, "secret")
    config = load_config(write(tmp_path, CONTRACT))
    assert [s.name for s in config.sinks] == ["local", "influx", "legacy"]
    assert [c.name for c in config.connectors] == ["cnc-01", "energy"]


def test_connectors_without_any_sink_is_an_error(tmp_path: Path) -> None:
    text = GOOD.replace(
        "sinks:\n  - name: local\n    type: historian\n    path: ./data/history.db\n    retention: 30d\n", ""
    )
    path = write(tmp_path, text)
    (problem,) = problems_of(path)
    assert problem.message == "connectors are configured but no sinks: add at least one sink"
    assert problem.file == str(path)


def test_missing_credentials_in_a_flow_mapping_are_one_problem_each(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The contract's `auth: {username: ${OPC_USER}, password: ${OPC_PASSWORD}}` with neither set."""
    monkeypatch.delenv("OPC_USER", raising=False)
    monkeypatch.delenv("OPC_PASSWORD", raising=False)
    path = tmp_path / "cnc.yaml"
    path.write_text(
        "sinks: [{name: local, type: historian, path: h.db}]\n"
        "connectors:\n"
        "  - name: cnc-01\n"
        "    type: opcua\n"
        "    endpoint: opc.tcp://127.0.0.1:4840\n"
        "    auth: {username: ${OPC_USER}, password: ${OPC_PASSWORD}}\n"
        "    nodes: [{node: 'ns=2;i=1005', field: t}]\n"
    )
    problems = [str(p) for p in problems_of(path)]
    assert problems == [
        (
            f"{path}:6: connectors[0].auth.username: environment variable OPC_USER is not set "
            "(set it, or write ${OPC_USER:-default} to give a default)"
        ),
        (
            f"{path}:6: connectors[0].auth.password: environment variable OPC_PASSWORD is not set "
            "(set it, or write ${OPC_PASSWORD:-default} to give a default)"
        ),
    ]
