"""The MQTT sink's configuration: the hub's contract as written, the sample, mistakes explained, the schema."""

from __future__ import annotations

import textwrap
from pathlib import Path

import jsonschema
import pytest
import yaml

from connectors.mqtt.config import MqttConfig
from gateway.buffer import DiskQueue
from gateway.component import State
from gateway.config import json_schema, load_config, validate_data
from gateway.errors import ConfigError
from gateway.runtime import Gateway
from gateway.sinks.mqtt.config import MqttSinkConfig
from tests.helpers import async_wait_until

ROOT = Path(__file__).resolve().parents[3]

CONTRACT = """\
sinks:
  - name: uns
    type: mqtt
    broker: mqtts://uns.lab.local:8883
    client_id: gw-lab-uns
    qos: 1
    topic: "lab/{line}/{machine}/{measurement}/{field}"   # tags, measurement, field
    retain: false
"""


def load(tmp_path: Path, text: str) -> MqttSinkConfig:
    path = tmp_path / "gateway.yaml"
    path.write_text(text)
    [sink] = load_config(path).sinks
    assert isinstance(sink, MqttSinkConfig)
    return sink


def test_the_contract_validates_as_written(tmp_path: Path) -> None:
    sink = load(tmp_path, CONTRACT)
    assert (sink.host, sink.port, sink.tls_enabled) == ("uns.lab.local", 8883, True)
    assert (sink.client_id, sink.qos, sink.retain, sink.topic) == (
        "gw-lab-uns",
        1,
        False,
        "lab/{line}/{machine}/{measurement}/{field}",
    )
    assert sink.persistent and sink.protocol == "5" and sink.flush_interval == 0.1


def test_the_sample_validates(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("UNS_USER", raising=False)
    monkeypatch.delenv("UNS_PASSWORD", raising=False)
    [sink] = load_config(ROOT / "gateway" / "sinks" / "mqtt" / "sample.yaml").sinks
    assert isinstance(sink, MqttSinkConfig)
    assert sink.username is None and sink.password is None  # empty means no authentication
    assert sink.max_inflight == 1000 and sink.timeout == 30.0


def test_a_connector_and_a_sink_may_both_be_type_mqtt(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(
        CONTRACT
        + textwrap.dedent(
            """\
            connectors:
              - name: uns
                type: mqtt
                broker: mqtt://localhost:1883
                topics: [{filter: "factory/#"}]
            """
        )
    )
    config = load_config(path)
    assert isinstance(config.sinks[0], MqttSinkConfig) and isinstance(config.connectors[0], MqttConfig)
    # The same name in both sections: each defaults to a client id of its own.
    assert config.connectors[0].client_id is None and config.sinks[0].client_id == "gw-lab-uns"


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ('topic: "lab/+/{field}"', "contains '+': it is a topic name to publish to, not a subscription filter"),
        ('topic: "lab//{field}"', "has an empty level"),
        ('topic: "lab/{line"', "is never closed"),
        ('topic: "$SYS/{field}"', "begins with '$'"),
        ('topic: "lab/{field}"\n    topics: [x]', "unknown key 'topics' (did you mean 'topic'?)"),
        ('topic: "lab/{field}"\n    qos: 3', "qos"),
        ('topic: "lab/{field}"\n    protocol: "3.1.1"\n    message_expiry: 1h', "message_expiry needs protocol 5"),
        ('topic: "lab/{field}"\n    tls: {ca_file: ca.pem}', "is not mqtts://"),
        ('topic: "lab/{field}"\n    tls: {cert_file: c.pem}', "cert_file and key_file go together"),
        ('topic: "lab/{field}"\n    max_inflight: 0', "max_inflight"),
        ("retain: true", "topic"),  # the template is required
    ],
)
def test_config_mistakes_are_explained_with_file_and_line(tmp_path: Path, item: str, message: str) -> None:
    path = tmp_path / "gateway.yaml"
    broker = "mqtts://uns.lab.local:8883" if "cert_file" in item else "mqtt://uns.lab.local"
    path.write_text(f"sinks:\n  - name: uns\n    type: mqtt\n    broker: {broker}\n    {item}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    text = str(caught.value)
    assert message in text and f"{path}:" in text and "sinks[0]" in text, text


def test_the_schema_offers_the_sink_under_sinks_and_the_connector_under_connectors() -> None:
    schema = json_schema()
    definitions = schema["$defs"]
    assert "topic" in definitions["MqttSinkConfig"]["properties"]
    assert "topics" in definitions["MqttConfig"]["properties"]
    document = yaml.safe_load(CONTRACT)
    jsonschema.validate(document, schema)  # an editor's YAML plug-in accepts the contract


async def test_the_runtime_gives_the_mqtt_sink_its_own_durable_buffer(tmp_path: Path) -> None:
    config = validate_data(
        {
            "gateway": {"name": "lab", "data_dir": str(tmp_path / "data"), "http": {"enabled": False}},
            "sinks": [{"name": "uns", "type": "mqtt", "broker": "mqtt://127.0.0.1:9", "topic": "lab/{field}"}],
        }
    )
    async with Gateway(config) as gateway:
        route = gateway.routes["uns"]
        assert isinstance(route.queue, DiskQueue)
        assert route.queue.directory == tmp_path / "data" / "buffer" / "uns"
        await async_wait_until(lambda: route.status.state is State.BACKOFF, timeout=30, message="backoff")
        assert "connection refused" in (route.status.last_error or "")
        assert route.status.detail["client_id"] == "lab-sink-uns"
