"""The audit trail's file: one JSON line per attempt, fsynced, rotated by size into files whose
names never change, read back newest first, and a write a stop interrupted given an outcome."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from gateway.audit import AuditQuery, AuditTrail, audit_point
from gateway.errors import GatewayError


def entry(number: int, at_ms: int, **extra: Any) -> dict[str, Any]:
    return {
        "id": f"id-{number}",
        "at_ms": at_ms,
        "at": f"t{at_ms}",
        "user": "mario",
        "role": "operator",
        "client": "10.0.0.7",
        "connector": "chiller" if number % 2 else "cnc-01",
        "field": "setpoint_c",
        "requested": number,
        "old": None,
        "read_back": number,
        "result": "written",
        "message": "written and read back",
        **extra,
    }


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_each_entry_is_one_line_on_disk_and_reads_back_newest_first(tmp_path: Path) -> None:
    trail = AuditTrail(tmp_path / "audit")
    assert trail.open() == []
    for number in range(5):
        trail.append(entry(number, 1_000 + number))
    assert [e["id"] for e in lines(trail.path)] == [f"id-{n}" for n in range(5)]
    assert oct(os.stat(trail.path).st_mode & 0o777) == "0o640"  # not readable by every user of the machine
    newest = trail.read(AuditQuery(limit=3))
    assert [e["id"] for e in newest] == ["id-4", "id-3", "id-2"]
    window = trail.read(AuditQuery(start=1_001 * 10**6, end=1_003 * 10**6, connector="chiller"))
    assert [e["id"] for e in window] == ["id-3", "id-1"]
    assert [e["id"] for e in trail.read(AuditQuery(field="other"))] == []
    trail.close()


def test_rotation_by_size_keeps_the_newest_files_under_names_that_never_change(tmp_path: Path) -> None:
    trail = AuditTrail(tmp_path, max_size=4096, keep=2)
    trail.open()
    for number in range(60):  # ~300 bytes each: several rotations
        trail.append(entry(number, 1_000 + number, message="m" * 100))
    rotated = sorted(tmp_path.glob("audit-*.jsonl"))
    assert len(rotated) == 2, rotated
    assert all(p.stat().st_size <= 4096 for p in [*rotated, trail.path])
    kept = [e["id"] for path in trail.files() for e in lines(path)]
    assert kept == [f"id-{n}" for n in range(60 - len(kept), 60)]  # the oldest went, nothing in between
    assert [e["id"] for e in trail.read(AuditQuery(limit=1000))] == list(reversed(kept))
    first = rotated[0].read_bytes()
    trail.append(entry(60, 2_000))
    assert (rotated[0].exists() and rotated[0].read_bytes() == first) or not rotated[0].exists()
    trail.close()


def test_a_write_interrupted_by_a_stop_gets_an_outcome_at_the_next_start(tmp_path: Path) -> None:
    trail = AuditTrail(tmp_path)
    trail.open()
    trail.append(entry(1, 1_000, result="pending", message="sending"))
    trail.append(entry(1, 1_000))  # a write that finished
    trail.append(entry(2, 2_000, result="pending", message="sending", old=7.0))  # ...and one the stop cut short
    trail.close()
    again = AuditTrail(tmp_path)
    recovered = again.open()
    assert [(e["id"], e["result"]) for e in recovered] == [("id-2", "error")]
    assert "whether the machine took the value is unknown" in recovered[0]["message"]
    assert recovered[0]["read_back"] is None and recovered[0]["old"] == 7.0
    shown = again.read(AuditQuery())
    assert [(e["id"], e["result"]) for e in shown] == [("id-2", "error"), ("id-1", "written")]
    assert AuditTrail(tmp_path).open() == []  # told once
    again.close()


def test_a_line_cut_by_a_full_disk_is_skipped_and_the_rest_read(tmp_path: Path) -> None:
    trail = AuditTrail(tmp_path)
    trail.open()
    trail.append(entry(1, 1_000))
    with trail.path.open("ab") as file:
        file.write(b'{"id": "id-2", "at_ms": 2000, "res')  # what a power cut in the middle of a write leaves
    trail.close()
    again = AuditTrail(tmp_path)
    again.open()
    again.append(entry(3, 3_000))
    assert [e["id"] for e in again.read(AuditQuery())] == ["id-3", "id-1"]
    again.close()


def test_a_trail_that_cannot_be_written_says_where(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    trail = AuditTrail(blocker / "audit")
    with pytest.raises(GatewayError, match=r"the audit trail .* cannot be written"):
        trail.open()
    with pytest.raises(GatewayError, match="cannot be written"):
        trail.append(entry(1, 1_000))


def test_the_audit_point_carries_values_as_text_and_no_machine_tags() -> None:
    point = audit_point(entry(3, 1_000, requested=9.5, old=7.0, read_back=9.5, code=None), 1_000 * 10**6)
    assert point.measurement == "audit"
    assert dict(point.tags) == {"connector": "chiller", "field": "setpoint_c", "result": "written"}
    assert point.fields["requested"] == "9.5" and point.fields["old"] == "7.0" and point.fields["user"] == "mario"
    assert "code" not in point.fields
