"""The Modbus connector's config: the contract validates as written; each mistake is one clear
line with the file, the line and the key."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from connectors.modbus.config import ModbusConfig
from gateway.config import load_config
from gateway.errors import ConfigError

ROOT = Path(__file__).resolve().parents[3]

CONTRACT = """
sinks:
  - name: local
    type: historian
    path: ./data/history.db
connectors:
  - name: meters
    type: modbus
    host: 10.0.0.20
    port: 502
    interval: 1s
    timeout: 1s
    devices:
      - unit: 1
        measurement: energy
        tags: {meter: main}
        fields:
          - {name: voltage_l1, area: input, address: 0, type: float32}
          - {name: energy_kwh, area: holding, address: 100, type: uint32, byte_order: CDAB, scale: 0.01}
          - {name: running, area: coil, address: 5}
          - {name: alarm_overtemp, area: holding, address: 10, type: bit, bit: 3}
          - {name: recipe, area: holding, address: 200, type: string, length: 8}
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "plant.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_the_contract_block_validates_as_written(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, CONTRACT))
    meters = config.connectors[0]
    assert isinstance(meters, ModbusConfig)
    assert (meters.host, meters.port, meters.interval, meters.timeout) == ("10.0.0.20", 502, 1.0, 1.0)
    device = meters.devices[0]
    assert (device.unit, device.measurement, device.tags, device.label) == (1, "energy", {"meter": "main"}, "unit-1")
    kinds = {f.name: (f.area, f.address, f.kind, f.size) for f in device.fields}
    assert kinds == {
        "voltage_l1": ("input", 0, "float32", 2),
        "energy_kwh": ("holding", 100, "uint32", 2),
        "running": ("coil", 5, "bool", 1),
        "alarm_overtemp": ("holding", 10, "bit", 1),
        "recipe": ("holding", 200, "string", 8),
    }
    assert device.fields[1].byte_order == "CDAB" and device.fields[1].scale == 0.01
    assert meters.byte_order == "ABCD"  # the default


def test_the_sample_validates() -> None:
    config = load_config(ROOT / "connectors" / "modbus" / "sample.yaml")
    assert any(isinstance(c, ModbusConfig) for c in config.connectors)


def _field_line(text: str, needle: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), start=1) if needle in line)


@pytest.mark.parametrize(
    ("bad", "key", "message"),
    [
        (
            "{name: energy_total, area: holding, address: 101, type: uint32}",
            "fields[5].address",
            "'energy_total' (uint32, holding registers 101–102) overlaps fields[1] 'energy_kwh' (uint32, "
            "holding registers 100–101): check the address and the type",
        ),
        (
            "{name: recipe2, area: holding, address: 300, type: string}",
            "fields[5]",
            "type string needs 'length': how many registers the text takes (two characters each)",
        ),
        (
            "{name: far, area: holding, address: 65536}",
            "fields[5].address",
            "Input should be less than or equal to 65535 (got 65536)",
        ),
        (
            "{name: far, area: holding, address: 65534, type: float64}",
            "fields[5]",
            "float64 at address 65534 takes 4 registers, up to 65537: beyond the last Modbus address 65535",
        ),
        (
            "{name: stopped, area: coil, address: 6, type: bit, bit: 2}",
            "fields[5]",
            "a coil is a single bit already: leave out 'type: bit' and 'bit' (or read a holding/input register)",
        ),
        (
            "{name: stopped, area: coil, address: 6, bit: 2}",
            "fields[5]",
            "'bit' is for a bit of a register; coil 6 is a single bit already",
        ),
        (
            "{name: alarm_again, area: holding, address: 10, bit: 3}",
            "fields[5].bit",
            "bit 3 of holding register 10 is already read by fields[3] ('alarm_overtemp')",
        ),
        (
            "{name: voltage_l1, area: input, address: 50, type: float32}",
            "fields[5].name",
            "field name 'voltage_l1' is already used by fields[0]",
        ),
        (
            "{name: v, area: holding, address: 1, type: float16}",
            "fields[5].type",
            "Input should be 'bool', 'int16', 'uint16', 'int32', 'uint32', 'int64', 'uint64', 'float32', "
            "'float64', 'bit' or 'string' (got 'float16')",
        ),
        (
            "{name: v, area: holdings, address: 1}",
            "fields[5].area",
            "Input should be 'coil', 'discrete', 'holding' or 'input' (got 'holdings')",
        ),
        (
            "{name: v, area: holding, address: 1, byte_order: ADCB}",
            "fields[5].byte_order",
            "Input should be 'ABCD', 'DCBA', 'BADC' or 'CDAB' (got 'ADCB')",
        ),
    ],
)
def test_each_mistake_is_one_line_with_file_line_and_key(tmp_path: Path, bad: str, key: str, message: str) -> None:
    text = textwrap.dedent(CONTRACT) + f"          - {bad}\n"
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    line = _field_line(text, bad)
    assert [str(p) for p in caught.value.problems] == [f"{path}:{line}: connectors[0].devices[0].{key}: {message}"]


def test_a_typo_in_a_field_key_gets_a_hint(tmp_path: Path) -> None:
    text = textwrap.dedent(CONTRACT).replace("type: float32}", "typ: float32}")
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    line = _field_line(text, "typ: float32")
    assert str(caught.value.problems[0]) == (
        f"{path}:{line}: connectors[0].devices[0].fields[0].typ: unknown key 'typ' (did you mean 'type'?)"
    )


def test_connection_and_device_mistakes(tmp_path: Path) -> None:
    text = textwrap.dedent(CONTRACT).replace("    host: 10.0.0.20\n", "")
    text += "      - unit: 1\n        fields: [{name: x, area: coil, address: 0}]\n"
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    problems = [str(p) for p in caught.value.problems]
    assert problems == [
        f"{path}:{_field_line(text, 'name: meters')}: connectors[0]: give 'host' (Modbus TCP) or "
        "'serial: {port: /dev/ttyUSB0}' (Modbus RTU)"
    ]
    text = textwrap.dedent(CONTRACT) + "      - unit: 1\n        fields: [{name: x, area: coil, address: 0}]\n"
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    line = len(text.splitlines()) - 1  # the second "- unit: 1"
    assert [str(p) for p in caught.value.problems] == [
        f"{path}:{line}: connectors[0].devices[1].unit: device 'unit-1' is already defined by devices[0]: give "
        "each device its own name"
    ]


def test_a_string_longer_than_one_request_is_refused(tmp_path: Path) -> None:
    text = textwrap.dedent(CONTRACT).replace("    timeout: 1s\n", "    timeout: 1s\n    max_registers: 4\n")
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    line = _field_line(text, "name: recipe")
    assert [str(p) for p in caught.value.problems] == [
        f"{path}:{line}: connectors[0].devices[0].fields[4].length: 'recipe' takes 8 registers but one request "
        "reads at most 4 (max_registers): shorten it or split it into two fields"
    ]
