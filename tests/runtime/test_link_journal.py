"""The link journal: every connector state change, the gateway's start and stop, an unclean stop found later."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from gateway.linkjournal import LINK_FOLDER, LinkJournal, LinkRecord, read_link_journal
from gateway.runtime import Gateway
from tests.helpers import async_wait_until
from tests.runtime.fakes import SINKS, SOURCES, make_config

pytestmark = pytest.mark.usefixtures("fake_types")

SECOND = 1_000_000_000


def lines(data_dir: Path) -> list[dict[str, object]]:
    found = []
    for path in sorted((data_dir / LINK_FOLDER).glob("link-*.jsonl")):
        found += [json.loads(line) for line in path.read_text().splitlines()]
    return found


def states_of(records: list[dict[str, object]], connector: str) -> list[tuple[object, object]]:
    return [(r["state"], r["up"]) for r in records if r.get("connector") == connector]


async def test_each_state_change_start_and_stop_is_a_line_and_no_sink_gets_a_point(tmp_path: Path) -> None:
    config = make_config(
        tmp_path,
        [{"name": "store"}],
        [{"name": "cnc", "interval": 0.02}, {"name": "flaky", "mode": "fail_later"}],
    )
    async with Gateway(config) as gateway:
        flaky = SOURCES["flaky"]
        # it drops the connection, the supervisor backs off and starts it again
        await async_wait_until(lambda: flaky.runs >= 2, timeout=20)
        await async_wait_until(lambda: len(SINKS["store"].stored) > 3, timeout=20)
        gateway.request_stop()
    records = lines(tmp_path)
    assert records[0]["event"] == "gateway_start" and records[-1]["event"] == "gateway_stop"
    assert [r["event"] for r in records[1:-1]] == ["state"] * (len(records) - 2)
    assert states_of(records, "cnc") == [
        ("starting", False),
        ("running", True),
        ("stopping", False),
        ("stopped", False),
    ]
    # (this fake never says it is connected: it fails 0.1 s into each run)
    assert states_of(records, "flaky") == [
        ("starting", False),
        ("backoff", False),
        ("stopping", False),
        ("stopped", False),
    ]
    assert all(r["type"] == "fake" for r in records if "connector" in r)
    times = [int(str(r["at_ns"])) for r in records]
    assert times == sorted(times)
    assert all(str(r["at"]).endswith("Z") for r in records)
    # The record is the gateway's own: the stores get only the connectors' points.
    assert {p.measurement for p in SINKS["store"].stored} == {"m"}


async def test_a_run_that_ended_without_a_stop_gets_a_lost_line_at_its_last_sign_of_life(tmp_path: Path) -> None:
    clock = [1_772_000_000 * SECOND]
    journal = LinkJournal(tmp_path, clock=lambda: clock[0])
    journal.open()
    journal.state("cnc", "opcua", "running")
    clock[0] += 300 * SECOND
    journal.alive()
    # killed here: no close(), so no gateway_stop; the worker thread still writes what was queued
    assert journal._executor is not None
    journal._executor.shutdown(wait=True)

    clock[0] += 3600 * SECOND
    again = LinkJournal(tmp_path, clock=lambda: clock[0])
    again.open()
    again.close()
    records = [LinkRecord.from_json(r) for r in lines(tmp_path)]
    events = [(r.event, r.at_ns, r.estimated) for r in records if r is not None and r.event != "state"]
    start = 1_772_000_000 * SECOND
    assert events == [
        ("gateway_start", start, False),
        ("gateway_lost", start + 300 * SECOND, True),  # the last time it was known alive
        ("gateway_start", start + 3900 * SECOND, False),
        ("gateway_stop", start + 3900 * SECOND, False),
    ]


def test_a_reader_gets_what_was_in_force_at_the_start_and_skips_a_torn_line(tmp_path: Path) -> None:
    folder = tmp_path / LINK_FOLDER
    folder.mkdir()
    t0 = 1_767_225_600 * SECOND  # 2026-01-01T00:00:00Z
    rows = [
        LinkRecord(t0 - 50 * SECOND, "gateway_start"),
        LinkRecord(t0 - 40 * SECOND, "state", "cnc", "opcua", "running", True),
        LinkRecord(t0 - 30 * SECOND, "state", "press", "opcua", "reconnecting", False),
        LinkRecord(t0 + 10 * SECOND, "state", "cnc", "opcua", "reconnecting", False),
    ]
    text = "".join(json.dumps(r.as_json()) + "\n" for r in rows[:3]) + '{"at_ns": 17672256' + "\n"
    (folder / "link-2025-12.jsonl").write_text(text)
    (folder / "link-2026-01.jsonl").write_text(json.dumps(rows[3].as_json()) + "\n")
    assert read_link_journal(folder, t0, t0 + 60 * SECOND) == rows
    assert read_link_journal(folder, t0 + 20 * SECOND) == [rows[0], rows[2], rows[3]]  # cnc: its later state
    assert read_link_journal(tmp_path / "nowhere") == []


async def test_a_journal_that_cannot_be_written_is_logged_once_and_collection_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / LINK_FOLDER).write_text("a file where the folder should be")
    caplog.set_level(logging.WARNING, logger="gateway.linkjournal")
    async with Gateway(make_config(tmp_path, [{"name": "store"}], [{"name": "cnc"}])) as gateway:
        await async_wait_until(lambda: len(SINKS["store"].stored) > 3, timeout=20)
        gateway.request_stop()
    warnings = [r.getMessage() for r in caplog.records if "link journal" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert "collection goes on" in warnings[0]
