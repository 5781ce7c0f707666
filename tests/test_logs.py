"""Structured logging: one line per event, the component's name in every line, text or JSON."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from gateway.logs import component_logger, setup_logging


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def emit_some_events() -> None:
    log = component_logger("connector", "energy")
    log.info("connected to %s", "mqtt://localhost:1883")
    log.warning("malformed payload skipped", extra={"fields": {"topic": "factory/A/energy/m1", "reason": "bad JSON"}})
    try:
        raise ValueError("unexpected byte 0xff")
    except ValueError:
        log.exception("decoder failed")
    component_logger("sink", "local").info("wrote %d points", 5000)
    logging.getLogger("gateway").info("a line from the core")
    component_logger("connector", "energy").info("first line\nsecond line of the same event")
    component_logger("connector", "energy").debug("not shown at info level")


def test_text_format_is_one_line_per_event_naming_the_component(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("text", "info")
    emit_some_events()
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 6, lines
    assert (
        "connector=energy" in lines[0]
        and "INFO" in lines[0]
        and lines[0].endswith("connected to mqtt://localhost:1883")
    )
    assert "WARNING" in lines[1] and "topic=factory/A/energy/m1" in lines[1] and "reason=bad JSON" in lines[1]
    assert "connector=energy" in lines[2] and "decoder failed" in lines[2]  # no traceback lines at info level
    assert "sink=local" in lines[3] and "wrote 5000 points" in lines[3]
    assert " gateway " in lines[4]
    assert "first line" in lines[5] and "second line" in lines[5]  # a line break inside a message stays inside
    for line in lines:
        assert line[:4].isdigit() and line[10] == "T" and line.split()[0].endswith("Z"), line


def test_json_format_is_one_object_per_line(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("json", "info")
    emit_some_events()
    entries = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert len(entries) == 6
    assert [e["component"] for e in entries] == [
        "connector=energy",
        "connector=energy",
        "connector=energy",
        "sink=local",
        "gateway",
        "connector=energy",
    ]
    assert entries[0]["level"] == "info" and entries[0]["message"] == "connected to mqtt://localhost:1883"
    assert entries[1]["topic"] == "factory/A/energy/m1" and entries[1]["reason"] == "bad JSON"
    assert "ValueError: unexpected byte 0xff" in entries[2]["error"]
    assert entries[5]["message"] == "first line\nsecond line of the same event"
    assert all(e["time"].endswith("Z") for e in entries)


def test_debug_level_shows_debug_lines_and_tracebacks(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("text", "debug")
    emit_some_events()
    err = capsys.readouterr().err
    assert "not shown at info level" in err
    assert "Traceback" in err and "ValueError: unexpected byte 0xff" in err


def test_setup_logging_is_idempotent(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("text", "info")
    setup_logging("text", "info")
    component_logger("connector", "x").info("once")
    assert capsys.readouterr().err.count("once") == 1


def test_noisy_libraries_are_quiet_below_warning(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("text", "info")
    logging.getLogger("paho").info("ping")
    logging.getLogger("asyncua").warning("session lost")
    err = capsys.readouterr().err
    assert "ping" not in err
    assert "session lost" in err


def test_json_fields_cannot_overwrite_the_standard_keys(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("json", "info")
    component_logger("connector", "energy").info("real message", extra={"fields": {"message": "x", "level": "y"}})
    entry = json.loads(capsys.readouterr().err)
    assert entry["message"] == "real message"
    assert entry["level"] == "info"
    assert entry["component"] == "connector=energy"
