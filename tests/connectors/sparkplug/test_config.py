"""The Sparkplug B connector's config: the issue's keys validate as written, the sample validates,
and each mistake is one clear line with the file, the line and the key."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from connectors.sparkplug.config import SparkplugConfig
from gateway.config import load_config
from gateway.errors import ConfigError

ROOT = Path(__file__).resolve().parents[3]

CONTRACT = """
sinks:
  - name: local
    type: historian
connectors:
  - name: plant-spb
    type: sparkplug
    broker: mqtt://broker.plant.local:1883
    client_id: gw-lab-spb
    group: Plant-A
    host_id: gateway-historian
    measurement: machines
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "plant.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_the_issues_keys_validate_as_written(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, CONTRACT))
    (spb,) = config.connectors
    assert isinstance(spb, SparkplugConfig)
    assert (spb.host, spb.port, spb.client_id) == ("broker.plant.local", 1883, "gw-lab-spb")
    assert (spb.group, spb.host_id, spb.measurement) == ("Plant-A", "gateway-historian", "machines")
    assert (spb.qos, spb.max_held, spb.rebirth_interval) == (1, 1000, 30.0)


def test_defaults_every_group_and_the_sparkplug_measurement(tmp_path: Path) -> None:
    config = load_config(
        _write(tmp_path, CONTRACT.replace("    group: Plant-A\n", "").replace("    measurement: machines\n", ""))
    )
    (spb,) = config.connectors
    assert isinstance(spb, SparkplugConfig)
    assert (spb.group, spb.measurement) == ("+", "sparkplug")


def test_the_sample_validates() -> None:
    config = load_config(ROOT / "connectors" / "sparkplug" / "sample.yaml")
    (spb,) = [c for c in config.connectors if isinstance(c, SparkplugConfig)]
    assert (spb.group, spb.host_id) == ("+", "gateway-historian")


@pytest.mark.parametrize(
    ("old", "new", "key", "message"),
    [
        ("group: Plant-A", "group: Plant/A", "connectors[0].group", "group 'Plant/A' contains '/'"),
        ("group: Plant-A", "group: '#'", "connectors[0].group", "without '/', '+' or '#'"),
        ("host_id: gateway-historian", "host_id: gw+1", "connectors[0].host_id", "host_id 'gw+1' contains '+'"),
        ("broker: mqtt://broker.plant.local:1883", "broker: http://x", "connectors[0].broker", "is not a broker URL"),
        ("measurement: machines", "rebirth_interval: 100ms", "connectors[0].rebirth_interval", "at least 1s"),
        ("measurement: machines", "topics: []", "connectors[0].topics", "unknown key 'topics'"),
    ],
)
def test_each_mistake_is_one_line_naming_file_line_and_key(
    tmp_path: Path, old: str, new: str, key: str, message: str
) -> None:
    text = CONTRACT.replace(old, new)
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    (problem,) = info.value.problems
    assert problem.key == key
    line = next(n for n, row in enumerate(textwrap.dedent(text).splitlines(), start=1) if new in row)
    assert problem.line == line, str(problem)
    assert message in problem.message, str(problem)
