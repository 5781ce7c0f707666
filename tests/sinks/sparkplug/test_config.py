"""The Sparkplug B sink's config: the issue's keys validate as written, the sample validates, and a
mistake is one line naming the file, the line and the key."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.errors import ConfigError
from gateway.sinks.sparkplug.config import SparkplugSinkConfig

ROOT = Path(__file__).resolve().parents[3]

CONTRACT = """
sinks:
  - name: ignition
    type: sparkplug
    broker: mqtt://broker.plant.local:1883
    client_id: gw-lab-edge
    group: Plant-A
    edge_node: gateway-cell-1
    device_tag: machine
connectors: []
"""


def test_the_issues_keys_validate_as_written(tmp_path: Path) -> None:
    path = tmp_path / "plant.yaml"
    path.write_text(textwrap.dedent(CONTRACT))
    (sink,) = load_config(path).sinks
    assert isinstance(sink, SparkplugSinkConfig)
    assert (sink.host, sink.port, sink.client_id) == ("broker.plant.local", 1883, "gw-lab-edge")
    assert (sink.group, sink.edge_node, sink.device_tag, sink.qos, sink.primary_host) == (
        "Plant-A",
        "gateway-cell-1",
        "machine",
        1,
        None,
    )


def test_the_sample_validates() -> None:
    config = load_config(ROOT / "gateway" / "sinks" / "sparkplug" / "sample.yaml")
    (sink,) = [s for s in config.sinks if isinstance(s, SparkplugSinkConfig)]
    assert (sink.group, sink.edge_node) == ("Plant-A", "gateway-cell-1")


@pytest.mark.parametrize(
    ("old", "new", "key", "message"),
    [
        ("group: Plant-A", "group: Plant/A", "sinks[0].group", "group 'Plant/A' contains '/'"),
        ("edge_node: gateway-cell-1", "edge_node: gw+1", "sinks[0].edge_node", "edge_node 'gw+1' contains '+'"),
        ("device_tag: machine", "qos: 2", "sinks[0].qos", "1"),
    ],
)
def test_a_mistake_is_one_line_naming_file_line_and_key(
    tmp_path: Path, old: str, new: str, key: str, message: str
) -> None:
    text = textwrap.dedent(CONTRACT.replace(old, new))
    path = tmp_path / "plant.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    (problem,) = info.value.problems
    assert problem.key == key and message in problem.message, str(problem)
    assert problem.line == next(n for n, row in enumerate(text.splitlines(), start=1) if new in row)
