"""From OPC UA samples to Points: quality, timestamps, types (pure logic, no server)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import pytest

from connectors.opcua.values import Item, PointMaker, Sample, quality_of
from gateway.component import Status
from gateway.logs import component_logger

GOOD = 0
UNCERTAIN_LAST_USABLE = 0x40900000  # UncertainLastUsableValue
BAD_SENSOR_FAILURE = 0x808C0000
RECEIVED = 1_800_000_000_000_000_000


def _maker(**options: Any) -> tuple[PointMaker, Status]:
    status = Status(name="cnc", kind="connector", type="opcua")
    maker = PointMaker(
        measurement="machine",
        tags={"line": "A"},
        timestamps=options.pop("timestamps", "source"),
        bad_values=options.pop("bad_values", "store"),
        status=status,
        log=component_logger("connector", "cnc"),
        clock=lambda: RECEIVED,
    )
    maker.items = {1: Item(handle=1, node="nsu=urn:lab:cnc;s=Spindle.Speed", field="spindle_rpm", **options)}
    return maker, status


def _sample(value: Any, *, kind: str = "Double", status: int = GOOD, name: str = "Good", **times: Any) -> Sample:
    return Sample(handle=1, value=value, kind=kind, status=status, status_name=name, **times)


def test_quality_follows_the_status_severity_bits() -> None:
    assert quality_of(0) == "good"
    assert quality_of(0x00A80000) == "good"  # GoodLocalOverride
    assert quality_of(UNCERTAIN_LAST_USABLE) == "uncertain"
    assert quality_of(BAD_SENSOR_FAILURE) == "bad"
    assert quality_of(0xC0000000) == "bad"


def test_a_good_value_is_stored_at_its_source_time_without_quality_tag() -> None:
    maker, status = _maker()
    (point,) = maker.convert([_sample(8000.5, source_ns=100, server_ns=200)])
    assert point.fields == {"spindle_rpm": 8000.5}
    assert point.tags == {"line": "A"}
    assert point.time == 100
    assert status.counters["received"] == 1


@pytest.mark.parametrize(
    ("timestamps", "source", "server", "expected"),
    [
        ("source", 100, 200, 100),
        ("source", None, 200, 200),
        ("source", None, None, RECEIVED),
        ("server", 100, 200, 200),
        ("server", 100, None, 100),
        ("gateway", 100, 200, RECEIVED),
    ],
)
def test_timestamps_fall_back_when_the_server_leaves_one_empty(
    timestamps: str, source: int | None, server: int | None, expected: int
) -> None:
    maker, _ = _maker(timestamps=timestamps)
    (point,) = maker.convert([_sample(1.0, source_ns=source, server_ns=server)])
    assert point.time == expected


def test_a_bad_value_is_stored_as_bad_never_as_the_value_and_never_over_good_data() -> None:
    maker, status = _maker()
    good = maker.convert([_sample(8000.0, source_ns=1_000, server_ns=1_000)])[0]
    # A peer's classic: Bad status, the previous value, and the previous source timestamp.
    bad = maker.convert(
        [_sample(8000.0, status=BAD_SENSOR_FAILURE, name="BadSensorFailure", source_ns=1_000, server_ns=5_000)]
    )[0]
    assert bad.tags == {"line": "A", "quality": "bad"}
    assert bad.fields == {"spindle_rpm_status": "BadSensorFailure"}  # the unusable value is not stored
    assert bad.time > good.time  # a later time (the server's), never the good value's
    assert bad.time == 5_000
    assert status.counters["bad_quality"] == 1


def test_a_bad_value_without_usable_timestamps_still_lands_after_the_last_good_one() -> None:
    maker, _ = _maker()
    maker.convert([_sample(1.0, source_ns=RECEIVED + 10)])
    (bad,) = maker.convert([_sample(None, kind="Null", status=BAD_SENSOR_FAILURE, name="BadSensorFailure")])
    assert bad.time == RECEIVED + 11


def test_an_uncertain_value_keeps_its_value_with_the_quality_tag() -> None:
    maker, _ = _maker()
    (point,) = maker.convert(
        [_sample(7999.0, status=UNCERTAIN_LAST_USABLE, name="UncertainLastUsableValue", source_ns=10)]
    )
    assert point.tags["quality"] == "uncertain"
    assert point.fields == {"spindle_rpm_status": "UncertainLastUsableValue", "spindle_rpm": 7999.0}


def test_bad_values_drop_drops_and_counts() -> None:
    maker, status = _maker(bad_values="drop")
    assert maker.convert([_sample(1.0, status=BAD_SENSOR_FAILURE, name="BadSensorFailure")]) == []
    assert status.counters["dropped_bad"] == 1 and status.counters["bad_quality"] == 1


@pytest.mark.parametrize(
    ("value", "kind", "stored"),
    [
        (True, "Boolean", True),
        (-5, "SByte", -5),
        (2**63 - 1, "Int64", 2**63 - 1),
        (2**64 - 1, "UInt64", float(2**64 - 1)),  # does not fit a 64-bit signed integer
        (0.1, "Float", 0.1),
        ("O1001 FLANGE-A", "String", "O1001 FLANGE-A"),
        (datetime(2026, 5, 4, 3, 2, 1, 123456, tzinfo=UTC), "DateTime", "2026-05-04T03:02:01.123456Z"),
    ],
)
def test_types(value: Any, kind: str, stored: Any) -> None:
    maker, _ = _maker()
    (point,) = maker.convert([_sample(value, kind=kind, source_ns=1)])
    got = point.fields["spindle_rpm"]
    assert got == stored and type(got) is type(stored)


def test_nan_is_skipped_and_counted() -> None:
    maker, status = _maker()
    assert maker.convert([_sample(float("nan"), source_ns=1)]) == []
    assert status.counters["skipped"] == 1


def test_scale_and_offset() -> None:
    maker, _ = _maker(scale=0.1, offset=-2.0)
    (point,) = maker.convert([_sample(225, kind="Int16", source_ns=1)])
    assert point.fields["spindle_rpm"] == pytest.approx(20.5)


def test_arrays_expand_or_skip() -> None:
    maker, _ = _maker()
    (point,) = maker.convert([_sample([1.5, 2.5, 3.5], source_ns=1)])
    assert point.fields == {"spindle_rpm_0": 1.5, "spindle_rpm_1": 2.5, "spindle_rpm_2": 3.5}
    maker, status = _maker(arrays="skip")
    assert maker.convert([_sample([1.5, 2.5], source_ns=1)]) == []
    assert status.counters["skipped"] == 1


def test_structures_are_skipped_with_one_warning_naming_the_node(caplog: pytest.LogCaptureFixture) -> None:
    maker, status = _maker()
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            assert maker.convert([_sample(object(), kind="ExtensionObject", source_ns=1)]) == []
    warnings = [r for r in caplog.records if "skipped" in r.getMessage()]
    assert len(warnings) == 1
    assert "nsu=urn:lab:cnc;s=Spindle.Speed" in warnings[0].getMessage()
    assert status.counters["skipped"] == 3


def test_enumerations_store_the_number_and_the_name_when_asked() -> None:
    maker, _ = _maker(enum_names={0: "Idle", 1: "Running"})
    (point,) = maker.convert([_sample(1, kind="Int32", source_ns=1)])
    assert point.fields == {"spindle_rpm": 1, "spindle_rpm_name": "Running"}


def test_absolute_deadband_on_stored_values() -> None:
    maker, status = _maker(deadband=5.0)
    values = [100.0, 103.0, 104.9, 105.5, 101.0, 99.0]
    stored = [p.fields["spindle_rpm"] for v in values for p in maker.convert([_sample(v, source_ns=1)])]
    assert stored == [100.0, 105.5, 99.0]
    assert status.counters["deadband_filtered"] == 3


def test_notifications_for_unknown_handles_are_ignored() -> None:
    maker, _ = _maker()
    assert maker.convert([Sample(handle=99, value=1.0, kind="Double")]) == []
