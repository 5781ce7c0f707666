"""The S7 connector's config: the contract validates as written; each mistake is one clear line
with the file, the line and the key."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from connectors.s7.address import Variable
from connectors.s7.config import S7Config
from gateway.config import load_config
from gateway.errors import ConfigError

ROOT = Path(__file__).resolve().parents[3]

CONTRACT = """
sinks:
  - name: local
    type: historian
    path: ./data/history.db
connectors:
  - name: line-plc
    type: s7
    host: 10.0.0.30
    rack: 0
    slot: 1
    interval: 500ms
    measurement: plc
    tags: {line: L1}
    fields:
      - {name: speed, address: DB1.DBD0, type: real}
      - {name: count, address: DB1.DBD4, type: dint}
      - {name: temp, address: DB1.DBW8, type: int, scale: 0.1}
      - {name: running, address: DB1.DBX10.0}
      - {name: recipe, address: DB2.DBB0, type: string, length: 20}
      - {name: motor_on, address: M10.1}
      - {name: setpoint, address: MW20, type: word}
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "plant.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_the_contract_block_validates_as_written(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, CONTRACT))
    plc = config.connectors[0]
    assert isinstance(plc, S7Config)
    assert (plc.host, plc.port, plc.rack, plc.slot, plc.interval) == ("10.0.0.30", 102, 0, 1, 0.5)
    assert (plc.measurement, plc.tags, plc.timeout, plc.pdu_size) == ("plc", {"line": "L1"}, 2.0, 960)
    assert {f.name: f.variable for f in plc.fields} == {
        "speed": Variable("DB", 1, 0, "real"),
        "count": Variable("DB", 1, 4, "dint"),
        "temp": Variable("DB", 1, 8, "int"),
        "running": Variable("DB", 1, 10, "bool", bit=0),
        "recipe": Variable("DB", 2, 0, "string", length=20),
        "motor_on": Variable("M", 0, 10, "bool", bit=1),
        "setpoint": Variable("M", 0, 20, "word"),
    }
    assert plc.fields[2].scale == 0.1


def test_the_sample_validates() -> None:
    config = load_config(ROOT / "connectors" / "s7" / "sample.yaml")
    (plc,) = [c for c in config.connectors if isinstance(c, S7Config)]
    assert len(plc.fields) == 15


def _line(text: str, needle: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), start=1) if needle in line)


@pytest.mark.parametrize(
    ("bad", "key", "message"),
    [
        (
            "{name: v, address: DB1.DBW30, type: real}",
            "fields[7].address",
            "'DB1.DBW30' is a word (2 bytes) but real takes 4 bytes: write DB1.DBD30 for a real",
        ),
        (
            "{name: v, address: DB1.DBD30, type: lreal}",
            "fields[7].address",
            "'DB1.DBD30': a lreal is addressed by its first byte: write DB1.DBB30",
        ),
        (
            "{name: v, address: DB1.DBX30.9}",
            "fields[7].address",
            "'DB1.DBX30.9': a bit is 0–7 (bit 9 of byte 30 does not exist)",
        ),
        (
            "{name: v, address: DB1.DBD30.1, type: real}",
            "fields[7].address",
            "'DB1.DBD30.1': only a bit address has a bit number; write DB1.DBX30.1 for the bit or DB1.DBD30 for "
            "the double word",
        ),
        (
            "{name: v, address: DB3.DBB0, type: string}",
            "fields[7].address",
            "'DB3.DBB0': type string needs 'length' — the n of STRING[n] in the PLC (without it STRING is "
            "STRING[254])",
        ),
        (
            "{name: v, address: 'DB1.DBD30:REAL', type: dint}",
            "fields[7].address",
            "'DB1.DBD30:REAL' says real but the field says type: dint; keep one of the two",
        ),
        (
            "{name: v, address: DB1.DBD2, type: real}",
            "fields[7].address",
            "'v' (real, DB1 bytes 2–5) overlaps fields[0] 'speed' (real, DB1 bytes 0–3): check the address and the "
            "type",
        ),
        (
            "{name: running2, address: DB1.DBX10.0}",
            "fields[7].address",
            "DB1.DBX10.0 is already read by fields[3] ('running')",
        ),
        (
            "{name: speed, address: DB5.DBD0, type: real}",
            "fields[7].name",
            "field name 'speed' is already used by fields[0]",
        ),
        (
            "{name: v, address: DB1.DBX30.0, scale: 2}",
            "fields[7].scale",
            "scale and offset are for numbers; this field is bool",
        ),
        (
            "{name: v, address: DB1.DBD30, type: float}",
            "fields[7].type",
            "Input should be 'bool', 'byte', 'char', 'sint', 'usint', 'word', 'int', 'uint', 'dword', 'dint', "
            "'udint', 'real', 'lword', 'lint', 'ulint', 'lreal' or 'string' (got 'float')",
        ),
    ],
)
def test_each_mistake_is_one_line_with_file_line_and_key(tmp_path: Path, bad: str, key: str, message: str) -> None:
    text = textwrap.dedent(CONTRACT) + f"      - {bad}\n"
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    line = _line(text, bad)
    assert [str(p) for p in caught.value.problems] == [f"{path}:{line}: connectors[0].{key}: {message}"]


def test_connection_mistakes(tmp_path: Path) -> None:
    text = textwrap.dedent(CONTRACT).replace("    slot: 1\n", "    slot: 32\n    pdu_size: 100\n")
    text = text.replace("    host: 10.0.0.30\n", "")
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert [str(p) for p in caught.value.problems] == [
        f"{path}:{_line(text, 'name: line-plc')}: connectors[0].host: required key 'host' is missing",
        f"{path}:{_line(text, 'slot: 32')}: connectors[0].slot: Input should be less than or equal to 31 (got 32)",
        f"{path}:{_line(text, 'pdu_size')}: connectors[0].pdu_size: Input should be greater than or equal to 240 "
        "(got 100)",
    ]
