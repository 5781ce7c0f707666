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
            "'DB3.DBB0': type string needs 'length' — the n of STRING[n] in the PLC (without it STRING is STRING[254])",
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


# --- tags_file: a TIA Portal export, a CSV or a JSON file of named variables -----------------

DATA = Path(__file__).resolve().parent / "data"

TAGS = """
sinks:
  - name: local
    type: historian
    path: ./data/history.db
connectors:
  - name: line-plc
    type: s7
    host: 10.0.0.30
    tags_file: {file}
"""

JSON_TAGS = """{
  "Press.Force": {"db": 12, "offset": 0, "type": "REAL"},
  "Press.Closed": {"db": 12, "offset": 4, "type": "BOOL", "bit": 3},
  "Press.Strokes": {"db": 12, "offset": 6, "type": "DINT"},
  "Press.Tool": {"db": 12, "offset": 10, "type": "String[10]"}
}
"""


def _tags_config(tmp_path: Path, file: Path | str, extra: str = "") -> tuple[Path, str]:
    text = textwrap.dedent(TAGS).format(file=file) + extra
    return _write(tmp_path, text), text


def _fields(plc: S7Config) -> dict[str, Variable]:
    return {f.name: f.variable for f in plc.fields}


def test_a_tia_portal_export_gives_a_field_per_member(tmp_path: Path) -> None:
    path, _ = _tags_config(tmp_path, DATA / "LineData_DB10.xml")
    (plc,) = load_config(path).connectors
    assert isinstance(plc, S7Config)
    assert _fields(plc) == {
        "Motor.Temperature": Variable("DB", 10, 0, "real"),
        "Motor.Speed": Variable("DB", 10, 4, "int"),
        "Motor.Running": Variable("DB", 10, 6, "bool", bit=0),
        "Motor.Fault": Variable("DB", 10, 6, "bool", bit=1),
        "Counter": Variable("DB", 10, 8, "dint"),
        "Energy": Variable("DB", 10, 12, "lreal"),
        "Recipe": Variable("DB", 10, 20, "string", length=16),
        "Line_Speed": Variable("DB", 10, 38, "word"),  # "Line Speed": a space is no field-name character
        "Reject.Count": Variable("DB", 10, 40, "udint"),
    }
    assert [d.at for d in plc.declared_fields()] == [("tags_file",)] * 9


def test_a_csv_file_with_a_byte_order_mark_gives_a_field_per_row(tmp_path: Path) -> None:
    path, _ = _tags_config(tmp_path, DATA / "oven_DB11.csv")
    (plc,) = load_config(path).connectors
    assert isinstance(plc, S7Config)
    assert _fields(plc) == {
        "Oven.Zone1": Variable("DB", 11, 0, "real"),
        "Oven.Door": Variable("DB", 11, 4, "bool", bit=2),
        "Oven.Batch": Variable("DB", 11, 6, "udint"),
        "Oven.Status": Variable("DB", 11, 10, "byte"),
        "Oven.Mode": Variable("DB", 11, 11, "char"),
        "Oven.Setpoint": Variable("DB", 11, 12, "int"),
        "Oven.Lot": Variable("DB", 11, 14, "string", length=8),
    }


def test_a_json_file_with_fields_beside_it_and_a_filter(tmp_path: Path) -> None:
    tags = tmp_path / "press.tags"
    tags.write_text(JSON_TAGS)
    extra = """\
    tags_format: json
    tags_include: ["Press.*"]
    tags_exclude: [Press.Strokes]
    fields:
      - {name: strokes, address: DB12.DBD6, type: dint, scale: 1}
"""
    path, _ = _tags_config(tmp_path, tags, extra)
    (plc,) = load_config(path).connectors
    assert isinstance(plc, S7Config)
    assert _fields(plc) == {
        "strokes": Variable("DB", 12, 6, "dint"),
        "Press.Force": Variable("DB", 12, 0, "real"),
        "Press.Closed": Variable("DB", 12, 4, "bool", bit=3),
        "Press.Tool": Variable("DB", 12, 10, "string", length=10),
    }
    assert [d.at for d in plc.declared_fields()] == [("fields", 0)] + [("tags_file",)] * 3


def test_the_file_is_read_again_only_when_the_config_is(tmp_path: Path) -> None:
    tags = tmp_path / "tags.csv"
    tags.write_text("tag,db,offset,type\nSpeed,1,0,REAL\n")
    path, _ = _tags_config(tmp_path, tags)
    first = load_config(path).connectors[0]
    tags.write_text("tag,db,offset,type\nSpeed,1,4,REAL\n")
    assert isinstance(first, S7Config) and _fields(first) == {"Speed": Variable("DB", 1, 0, "real")}
    second = load_config(path).connectors[0]
    assert isinstance(second, S7Config) and _fields(second) == {"Speed": Variable("DB", 1, 4, "real")}
    assert first.model_dump() != second.model_dump()  # what a reload compares: the connector restarts


XML_HEAD = '<?xml version="1.0" encoding="utf-8"?>\n<Document><SW.Blocks.GlobalDB><AttributeList>'


@pytest.mark.parametrize(
    ("name", "content", "extra", "message"),
    [
        ("missing.xml", None, "", "no such file: {file}"),
        (
            "garbled.xml",
            XML_HEAD + "<Number>3</Number></AttributeList><ObjectList><Member Name='A' Datatype='Real'",
            "",
            "cannot read it as a TIA Portal DB export (<Member Name=… Datatype=… Offset=…/> in a block with its "
            "<Number>): not well-formed XML (unclosed token: line 2, column 91)",
        ),
        (
            "tags.csv",
            "name;db;offset;type\nSpeed;1;0;REAL\n",
            "",
            "cannot read it as CSV with the columns tag, db, offset, type (and optionally bit): 'tag' is missing",
        ),
        (
            "tags.json",
            '{"Speed": {"db": 1, "offset": 0, "type": "REAL"}\n',
            "",
            'cannot read it as JSON {"name": {"db": 1, "offset": 0, "type": "REAL", "bit": 0}, …}: Expecting '
            "',' delimiter: line 2 column 1 (char 49)",
        ),
        (
            "tags.csv",
            "tag,db,offset,type\nSpeed,1,0,REAL\nUptime,1,4,TIME\n",
            "",
            "tag 'Uptime': type 'TIME' is not one the connector reads (bool, byte, char, sint, usint, word, int, "
            "uint, dword, dint, udint, real, lword, lint, ulint, lreal, string[n]); leave it out with tags_exclude",
        ),
        (
            "DB3.xml",
            XML_HEAD + "<MemoryLayout>Optimized</MemoryLayout><Number>3</Number></AttributeList><ObjectList>"
            '<Member Name="Speed" Datatype="Real" /></ObjectList></SW.Blocks.GlobalDB></Document>',
            "",
            "tag 'Speed' has no offset in the export (the block is 'optimized'): only non-optimized data blocks "
            "have absolute addresses; clear 'Optimized block access' in the DB's properties, compile, download and "
            "export again",
        ),
        (
            "tags.txt",
            "tag,db,offset,type\nSpeed,1,0,REAL\n",
            "",
            "tags.txt: the extension does not say the format (.xml for a TIA Portal export, .csv, .json); give "
            "tags_format: tia, csv or json",
        ),
        (
            "tags.csv",
            "tag,db,offset,type\nSpeed,1,0,REAL\n",
            "    tags_include: ['Motor.*']\n",
            "tags_include: 'Motor.*' matches no tag of the file",
        ),
        (
            "tags.csv",
            "tag,db,offset,type\nSpeed,1,0,REAL\nLine Speed,1,4,REAL\nLine_Speed,1,8,REAL\n",
            "",
            "tags 'Line Speed' and 'Line_Speed' are both stored as field 'Line_Speed'; leave one out with tags_exclude",
        ),
        (
            "tags.csv",
            "tag,db,offset,type\nSpeed,0,0,REAL\n",
            "",
            "tag 'Speed': the file gives no data block number (a TIA export holds it in <Number>, a CSV or JSON "
            "file in db)",
        ),
        (
            "tags.csv",
            "tag,db,offset,type\nSpeed,1,65534,REAL\n",
            "",
            "tag 'Speed': 'DB1.DBD65534': real at byte 65534 takes 4 bytes, up to byte 65537: beyond the last byte "
            "the connector reads (65535)",
        ),
        (
            "tags.csv",
            "tag,db,offset,type\nSpeed,1,0,REAL\nTorque,1,2,REAL\n",
            "",
            "tag 'Torque': 'Torque' (real, DB1 bytes 2–5) overlaps tag 'Speed' of tags_file (real, DB1 bytes 0–3): "
            "check the address and the type",
        ),
    ],
)
def test_each_tag_file_mistake_is_one_line_at_tags_file(
    tmp_path: Path, name: str, content: str | None, extra: str, message: str
) -> None:
    file = tmp_path / name
    if content is not None:
        file.write_text(content)
    path, text = _tags_config(tmp_path, file, extra)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    line = _line(text, "tags_file:")
    assert [str(p) for p in caught.value.problems] == [
        f"{path}:{line}: connectors[0].tags_file: {message.replace('{file}', str(file))}"
    ]


def test_a_name_in_fields_and_in_the_file_is_a_mistake(tmp_path: Path) -> None:
    tags = tmp_path / "tags.csv"
    tags.write_text("tag,db,offset,type\nspeed,1,0,REAL\n")
    extra = "    fields:\n      - {name: speed, address: DB2.DBD0, type: real}\n"
    path, text = _tags_config(tmp_path, tags, extra)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert [str(p) for p in caught.value.problems] == [
        f"{path}:{_line(text, 'name: speed')}: connectors[0].fields[0].name: field name 'speed' is also tag 'speed' "
        "of tags_file: leave the tag out (tags_exclude: ['speed']) to declare it here, or give this field another "
        "name"
    ]


def test_without_fields_or_a_tag_file_there_is_nothing_to_read(tmp_path: Path) -> None:
    text = textwrap.dedent(TAGS).replace("    tags_file: {file}\n", "    tags_include: ['Motor.*']\n")
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert [str(p) for p in caught.value.problems] == [
        f"{path}:{_line(text, 'tags_include')}: connectors[0].tags_include: tags_include is for tags_file, which "
        "is not given",
    ]
    path = _write(tmp_path, text.replace("    tags_include: ['Motor.*']\n", ""))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert [str(p) for p in caught.value.problems] == [
        f"{path}:{_line(text, 'name: line-plc')}: connectors[0].fields: give fields (the values to read), "
        "tags_file, or both",
    ]
