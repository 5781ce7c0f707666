"""Secrets never shown: typed in every config model, masked in dumps, reprs, config errors,
component errors and every log line (the last-line filter).

The real-process sweep (every output of ``gateway validate`` and ``gateway run`` against real
servers) is tests/runtime/test_secrets_sweep.py.
"""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from gateway.component import Status
from gateway.config import config_model, load_config, validate_data
from gateway.errors import ConfigError
from gateway.logs import JsonFormatter, LogFormat, SecretFilter, TextFormatter, component_logger, setup_logging
from gateway.secrets import (
    MASK,
    SECRETS,
    SecretRegistry,
    is_secret_annotation,
    is_secret_key,
    masked_dump,
    secret_values,
)

#: One distinctive value per secret field, so that any leak names the field it came from.
SECRETS_BY_FIELD = {
    "gateway.http.auth.viewer.password": "Vw-pass-71d3e2a9b0c4",
    "gateway.http.auth.viewer.token": "Vw-tok-5f0c1e77a2b9",
    "gateway.http.auth.admin.token": "Ad-tok-0b9d2c4e6f81",
    "gateway.http.auth.admin.password": "Ad-pass-c3a1f9e2d7b5",
    "gateway.http.tls.key_password": "Tls-keypw-8e4b2d1c9a07",
    "sinks[1].token": "Influx2-tok-4c8e1a3f5b92",
    "sinks[2].password": "Influx1-pw-9a2f7c1e3d58",
    "sinks[3].password": "MqttSink-pw-2e7b9d4a1c63",
    "sinks[3].tls.key_password": "MqttSink-keypw-6d1a8c3e0f47",
    "sinks[4].password": "SpbSink-pw-1f5c9e2b7a30",
    "connectors[0].password": "MqttConn-pw-7c3e1b9d5a24",
    "connectors[0].tls.key_password": "MqttConn-keypw-3b8f0d6a2e91",
    "connectors[1].auth.password": "Opcua-pw-5e9a3c7f1b06",
    "connectors[2].password": "SpbConn-pw-8d2c6a0e4f13",
}


def full_config(tmp_path: Path) -> dict[str, Any]:
    """A config (plain data) with a distinctive value in every secret field there is."""
    s = SECRETS_BY_FIELD
    tls = {"cert_file": str(tmp_path / "c.pem"), "key_file": str(tmp_path / "k.pem")}
    return {
        "gateway": {
            "name": "sweep",
            "data_dir": str(tmp_path / "data"),
            "http": {
                "listen": "0.0.0.0:0",
                "auth": {
                    "viewer": {
                        "username": "officina",
                        "password": s["gateway.http.auth.viewer.password"],
                        "token": s["gateway.http.auth.viewer.token"],
                    },
                    "admin": {
                        "token": s["gateway.http.auth.admin.token"],
                        "username": "capo",
                        "password": s["gateway.http.auth.admin.password"],
                    },
                },
                "tls": {
                    "cert": str(tmp_path / "server.crt"),
                    "key": str(tmp_path / "server.key"),
                    "key_password": s["gateway.http.tls.key_password"],
                },
            },
        },
        "sinks": [
            {"name": "local", "type": "historian"},
            {
                "name": "influx2",
                "type": "influxdb",
                "url": "http://127.0.0.1:9",
                "org": "o",
                "bucket": "b",
                "token": s["sinks[1].token"],
            },
            {
                "name": "influx1",
                "type": "influxdb",
                "api": "v1",
                "url": "http://127.0.0.1:9",
                "database": "d",
                "username": "gw",
                "password": s["sinks[2].password"],
            },
            {
                "name": "uns",
                "type": "mqtt",
                "broker": "mqtts://127.0.0.1:8883",
                "topic": "t/{measurement}",
                "username": "gw",
                "password": s["sinks[3].password"],
                "tls": {**tls, "key_password": s["sinks[3].tls.key_password"]},
            },
            {
                "name": "edge",
                "type": "sparkplug",
                "broker": "mqtt://127.0.0.1:1883",
                "group": "G",
                "edge_node": "N",
                "username": "gw",
                "password": s["sinks[4].password"],
            },
        ],
        "connectors": [
            {
                "name": "energy",
                "type": "mqtt",
                "broker": "mqtts://127.0.0.1:8883",
                "username": "gw",
                "password": s["connectors[0].password"],
                "tls": {**tls, "key_password": s["connectors[0].tls.key_password"]},
                "topics": [{"filter": "a/#", "format": "json"}],
            },
            {
                "name": "cnc",
                "type": "opcua",
                "endpoint": "opc.tcp://127.0.0.1:4840",
                "auth": {"username": "operator", "password": s["connectors[1].auth.password"]},
                "nodes": [{"node": "ns=2;s=x", "field": "x"}],
            },
            {
                "name": "spb",
                "type": "sparkplug",
                "broker": "mqtt://127.0.0.1:1883",
                "username": "gw",
                "password": s["connectors[2].password"],
            },
        ],
    }


@pytest.fixture(autouse=True)
def keep_registry() -> Iterator[None]:
    """The registry is the process's: what a test adds is taken out again."""
    state = (set(SECRETS._values), SECRETS._pattern)
    yield
    SECRETS._values, SECRETS._pattern = state


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def _models(annotation: Any) -> Iterator[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
    for arg in typing.get_args(annotation):
        yield from _models(arg)


def test_every_secret_field_of_every_config_model_has_the_secret_type() -> None:
    """A password or token typed ``str`` would be printed by repr, dumps and type errors: every
    field named like a secret (any connector's, a new one's too) is SecretStr, or a Path to a key file."""
    seen: set[type[BaseModel]] = set()
    secret_fields: list[str] = []
    wrong: list[str] = []

    def walk(model: type[BaseModel], where: str) -> None:
        if model in seen:
            return
        seen.add(model)
        for name, field in model.model_fields.items():
            if is_secret_annotation(field.annotation):
                secret_fields.append(f"{where}.{name}")
            elif is_secret_key(name) and Path not in typing.get_args(field.annotation) and field.annotation is not Path:
                wrong.append(f"{model.__name__}.{name}: {field.annotation}")
            for sub in _models(field.annotation):
                walk(sub, f"{where}.{name}")

    walk(config_model(), "")
    assert not wrong, f"secret-named fields without the secret type: {wrong}"
    # http auth (token, password), http tls, the MQTT/Sparkplug broker connections and their TLS,
    # InfluxDB (token, password), OPC UA user password.
    for expected in ("auth.viewer.token", "auth.viewer.password", "http.tls.key_password", "auth.password"):
        assert any(field.endswith(expected) for field in secret_fields), (expected, secret_fields)
    assert sum(field.endswith(".password") for field in secret_fields) >= 6, secret_fields


def test_a_loaded_config_shows_no_secret_in_repr_str_or_dumps(tmp_path: Path) -> None:
    config = validate_data(full_config(tmp_path))
    values = set(SECRETS_BY_FIELD.values())
    assert secret_values(config) == values  # every one found, nothing else taken for a secret
    texts = [repr(config), str(config), config.model_dump_json(), json.dumps(masked_dump(config))]
    texts += [repr(item) for item in (*config.sinks, *config.connectors, config.gateway.http)]
    for text in texts:
        for value in values:
            assert value not in text
    dumped = masked_dump(config)
    assert dumped["gateway"]["http"]["auth"]["admin"] == {"token": MASK, "username": "capo", "password": MASK}
    assert dumped["connectors"][1]["auth"]["password"] == MASK
    assert dumped["sinks"][3]["tls"]["key_password"] == MASK and dumped["sinks"][3]["tls"]["key_file"].endswith("k.pem")
    assert dumped["connectors"][0]["tls"]["key_password"] == MASK
    assert dumped["gateway"]["http"]["auth"]["viewer"]["username"] == "officina"  # not a secret


def test_the_link_and_session_settings_do_not_repr_their_passwords() -> None:
    from connectors.opcua._client import ConnectionSettings
    from connectors.opcua.browse import BrowseOptions
    from gateway.mqtt.link import LinkOptions
    from gateway.mqtt.wire import Connect

    for item in (
        LinkOptions(host="h", port=1, client_id="c", username="u", password="Link-pw-0a1b2c3d"),
        ConnectionSettings(endpoint="opc.tcp://h:4840", application_uri="u", username="u", password="Link-pw-0a1b2c3d"),
        BrowseOptions(endpoint="opc.tcp://h:4840", username="u", password="Link-pw-0a1b2c3d"),
        Connect("c", 5, True, 30, username="u", password=b"Link-pw-0a1b2c3d"),
    ):
        assert "Link-pw-0a1b2c3d" not in repr(item)


def test_config_errors_never_quote_a_secret(tmp_path: Path) -> None:
    """Type errors at secret fields, validators quoting a value, numbers where text is expected."""
    data = full_config(tmp_path)
    auth = data["gateway"]["http"]["auth"]
    auth["viewer"]["password"] = 918273645501234  # unquoted digits: taken as text, not an error
    auth["admin"]["token"] = True  # a wrong type: the error says so without the value
    data["sinks"][1]["token"] = ["Influx2-list-tok-77aa"]
    data["sinks"][2]["password"] = {"nested": "Influx1-dict-pw-88bb"}
    data["connectors"][1]["auth"]["password"] = False
    data["connectors"][2]["broker"] = "mqtt://gw:Url-pw-in-broker-99cc@127.0.0.1:1883"
    data["connectors"][0]["qos"] = "Not-a-qos-but-visible"  # not a secret: still quoted
    with pytest.raises(ConfigError) as info:
        validate_data(data)
    text = str(info.value)
    for value in ("True", "False", "Influx2-list-tok-77aa", "Influx1-dict-pw-88bb", "Url-pw-in-broker-99cc"):
        assert value not in text, text
    assert "gateway.http.auth.admin.token: Input should be a valid string" in text
    assert "connectors[2].broker: 'mqtt://gw:***@127.0.0.1:1883': put credentials in username" in text
    assert "Not-a-qos-but-visible" in text  # ordinary values keep their "(got …)"
    assert "gateway.http.auth.viewer.password" not in text


def test_validate_command_never_prints_a_secret_with_a_numeric_password(tmp_path: Path) -> None:
    """The issue's case: ``password: 918273645501234`` unquoted in gateway.http.auth (and a bool)."""
    path = tmp_path / "gateway.yaml"
    path.write_text(
        "gateway:\n"
        "  http:\n"
        "    listen: 0.0.0.0:8080\n"
        "    auth:\n"
        "      viewer: {username: officina, password: 918273645501234}\n"
        "      admin: {token: 5550001112223334}\n"
        "connectors:\n"
        "  - {name: m, type: mqtt, broker: mqtt://localhost:1883, username: u, password: 66778899001122,\n"
        "     qos: 7, topics: [{filter: a/#, format: json}]}\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "validate", str(path)], capture_output=True, text=True, timeout=120
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1 and "connectors[0].qos" in output and "no sinks" in output, output
    for value in ("918273645501234", "5550001112223334", "66778899001122"):
        assert value not in output, output
    # With the mistakes fixed, the numbers are the passwords, as text.
    path.write_text(
        path.read_text()
        .replace("qos: 7, ", "")
        .replace("connectors:", "sinks: [{name: h, type: historian}]\nconnectors:")
    )
    config = load_config(path)
    assert config.gateway.http.auth.viewer.password.get_secret_value() == "918273645501234"


def test_the_registry_masks_every_spelling_of_a_value() -> None:
    registry = SecretRegistry()
    assert registry.mask("nothing to do") == "nothing to do" and not registry
    registry.add(['p@ss w"rd/1', "ab", 'longer-p@ss w"rd/1-x'])
    assert registry
    assert registry.mask('a p@ss w"rd/1 b') == f"a {MASK} b"
    assert registry.mask('longer-p@ss w"rd/1-x') == MASK  # the longest first: no "longer-***-x"
    assert registry.mask(repr('p@ss w"rd/1')) == f"'{MASK}'"
    assert registry.mask(json.dumps({"p": 'p@ss w"rd/1'})) == f'{{"p": "{MASK}"}}'
    assert registry.mask("mqtt://u:p%40ss%20w%22rd%2F1@h") == f"mqtt://u:{MASK}@h"
    assert registry.mask("ab is too short to mask") == "ab is too short to mask"


def test_component_errors_are_masked_for_the_api_and_the_page() -> None:
    SECRETS.add(["Status-pw-4d5e6f7a"])
    status = Status("energy", "connector", "mqtt")
    status.record_error("refused: connect mqtt://gw:Status-pw-4d5e6f7a@broker")
    assert status.last_error == f"refused: connect mqtt://gw:{MASK}@broker"


def _emit(log: logging.LoggerAdapter[logging.Logger]) -> None:
    log.info("connecting with Log-pw-1a2b3c4d5e")  # in the message itself
    log.warning("refused: %s (%r)", "Log-pw-1a2b3c4d5e", {"password": "Log-pw-1a2b3c4d5e"})  # in its arguments
    log.info("fields", extra={"fields": {"url": "mqtt://u:Log-pw-1a2b3c4d5e@h", "n": 3}})
    try:
        raise ValueError("bad password Log-pw-1a2b3c4d5e")
    except ValueError:
        log.exception("failed")
    logging.getLogger("asyncua.client").error("a library says Log-pw-1a2b3c4d5e")


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_the_log_filter_masks_secrets_in_every_part_of_a_record(
    fmt: LogFormat, restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    setup_logging(fmt, "debug")  # debug: the text format prints tracebacks too
    SECRETS.add(["Log-pw-1a2b3c4d5e"])
    _emit(component_logger("connector", "energy"))
    err = capsys.readouterr().err
    assert "Log-pw-1a2b3c4d5e" not in err, err
    assert err.count(MASK) >= 7, err
    assert "ValueError: bad password ***" in err and "refused: *** ({'password': '***'})" in err.replace('\\"', '"')


def test_the_runtime_installs_the_filter_on_handlers_it_did_not_make(restore_logging: None) -> None:
    from gateway.logs import install_secret_filter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(TextFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    install_secret_filter()
    install_secret_filter()  # idempotent
    assert sum(isinstance(f, SecretFilter) for f in handler.filters) == 1
    SECRETS.add(["Handler-pw-9f8e7d6c"])
    component_logger("sink", "local").info("token Handler-pw-9f8e7d6c refused")
    assert "Handler-pw-9f8e7d6c" not in stream.getvalue() and "token *** refused" in stream.getvalue()


def test_without_secrets_records_are_left_alone() -> None:
    state = (SECRETS._values, SECRETS._pattern)
    SECRETS.clear()
    try:
        record = logging.LogRecord("x", logging.INFO, __file__, 1, "value %s", ("a",), None)
        assert SecretFilter().filter(record) and record.msg == "value %s" and record.args == ("a",)
        SECRETS.add(["Other-pw-11223344"])
        assert SecretFilter().filter(record) and record.msg == "value %s"  # no secret in it: untouched
    finally:
        SECRETS._values, SECRETS._pattern = state
    assert JsonFormatter().format(record)


def test_secret_named_keys_and_url_passwords_count_in_plain_data() -> None:
    assert is_secret_key("password") and is_secret_key("key_password") and is_secret_key("api_key")
    assert is_secret_key("adminToken") and is_secret_key("client-secret") and is_secret_key("key")
    assert not is_secret_key("key_file") and not is_secret_key("key_fields") and not is_secret_key("username")
    data = yaml.safe_load("a: {password: 123456, url: 'http://u:Url-pw-5566@h', tokens: [x], api_key: [k1k2k3]}")
    assert secret_values(data) == {"123456", "Url-pw-5566", "k1k2k3"}
