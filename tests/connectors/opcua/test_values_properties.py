"""Any sample a server can send becomes valid points or is skipped and counted: never an exception.

A whole subscription notification goes through :meth:`PointMaker.convert` at once, so one
value it cannot store (a string with a lone surrogate, a float that scaling pushes past the
largest double, a timestamp of year 9999, an integer of 400 digits) must cost that value only,
never the notification or the connector.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.opcua.values import Item, PointMaker, Sample
from gateway.component import Status
from gateway.lineprotocol import encode
from gateway.logs import component_logger
from gateway.point import TIME_MAX, TIME_MIN, Point
from tests.helpers import examples

RECEIVED = 1_800_000_000_000_000_000
KINDS = ["Double", "Float", "Int64", "UInt64", "String", "Boolean", "DateTime", "ByteString", "ExtensionObject", "Null"]

datetimes = st.one_of(
    st.datetimes(timezones=st.sampled_from([None, UTC, timezone(timedelta(hours=14)), timezone(-timedelta(hours=12))])),
    st.sampled_from([datetime.min, datetime.max, datetime.max.replace(tzinfo=UTC)]),
    st.just(datetime.min).map(lambda d: d.replace(tzinfo=timezone(timedelta(hours=5)))),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(-(2**70), 2**70),
    st.sampled_from([10**400, -(10**400), 2**64 - 1, -(2**63) - 1]),
    st.floats(),
    st.sampled_from([1.7976931348623157e308, -1.7976931348623157e308, 5e-324]),
    st.text(max_size=20),
    st.sampled_from(["\ud800", "a\udc00b", "line\nbreak", "nul\x00"]),
    st.binary(max_size=8),
    datetimes,
    st.builds(object),
)
values = st.one_of(scalars, st.lists(scalars, max_size=4), st.lists(st.lists(scalars, max_size=2), max_size=2))
times = st.one_of(st.none(), st.integers(), st.sampled_from([TIME_MIN, TIME_MAX, TIME_MIN - 1, TIME_MAX + 1, 0]))
samples = st.builds(
    Sample,
    handle=st.integers(0, 3),
    value=values,
    kind=st.sampled_from(KINDS),
    status=st.one_of(st.sampled_from([0, 0x40900000, 0x808C0000]), st.integers(0, 2**32 - 1)),
    status_name=st.sampled_from(["Good", "UncertainLastUsableValue", "BadSensorFailure"]),
    source_ns=times,
    server_ns=times,
)
items = st.builds(
    Item,
    handle=st.just(0),
    node=st.just("nsu=urn:lab:cnc;s=Spindle.Speed"),
    field=st.sampled_from(["spindle_rpm", "temp"]),
    scale=st.one_of(st.none(), st.floats(), st.sampled_from([1e300, -1e300, 0.1])),
    offset=st.one_of(st.none(), st.floats(), st.sampled_from([1e308, -1e308])),
    deadband=st.one_of(st.none(), st.floats(min_value=0, allow_nan=False)),
    enum_names=st.one_of(st.none(), st.dictionaries(st.integers(), st.text(max_size=5), max_size=3)),
    arrays=st.sampled_from(["expand", "skip"]),
)


@settings(max_examples=examples(300, 3000))
@given(
    item_list=st.lists(items, min_size=1, max_size=3),
    batch=st.lists(samples, max_size=12),
    timestamps=st.sampled_from(["source", "server", "gateway"]),
    bad_values=st.sampled_from(["store", "drop"]),
)
def test_any_samples_become_valid_points_or_are_skipped(
    item_list: list[Item], batch: list[Sample], timestamps: Any, bad_values: Any
) -> None:
    status = Status(name="cnc", kind="connector", type="opcua")
    maker = PointMaker(
        measurement="machine",
        tags={"line": "A"},
        timestamps=timestamps,
        bad_values=bad_values,
        status=status,
        log=component_logger("connector", "cnc"),
        clock=lambda: RECEIVED,
    )
    for handle, item in enumerate(item_list):
        item.handle = handle
        maker.items[handle] = item
    points = maker.convert(batch)
    assert len(points) <= len(batch)
    for point in points:
        assert isinstance(point, Point)
        encode(point)
    assert status.counters["received"] == len(batch)


def test_a_timestamp_no_store_can_hold_falls_back_to_the_next_one() -> None:
    """Year 9999 (DateTime.MaxValue, which some servers send) is outside 1677–2262: the server's time, then receipt."""
    status = Status(name="cnc", kind="connector", type="opcua")
    maker = PointMaker(
        measurement="machine",
        tags={},
        timestamps="source",
        bad_values="store",
        status=status,
        log=component_logger("connector", "cnc"),
        clock=lambda: RECEIVED,
    )
    maker.items = {1: Item(handle=1, node="n", field="v")}
    year_9999 = 253_402_300_799 * 10**9
    (point,) = maker.convert([Sample(handle=1, value=1.0, kind="Double", source_ns=year_9999, server_ns=5)])
    assert point.time == 5
    (point,) = maker.convert([Sample(handle=1, value=2.0, kind="Double", source_ns=year_9999, server_ns=year_9999)])
    assert point.time == RECEIVED


def test_one_value_that_cannot_be_stored_costs_only_itself() -> None:
    status = Status(name="cnc", kind="connector", type="opcua")
    maker = PointMaker(
        measurement="machine",
        tags={},
        timestamps="source",
        bad_values="store",
        status=status,
        log=component_logger("connector", "cnc"),
        clock=lambda: RECEIVED,
    )
    maker.items = {
        1: Item(handle=1, node="n1", field="text"),
        2: Item(handle=2, node="n2", field="big", scale=10.0),
        3: Item(handle=3, node="n3", field="ok"),
    }
    points = maker.convert(
        [
            Sample(handle=1, value="a\ud800", kind="String", source_ns=1),  # a lone surrogate
            Sample(handle=2, value=1e308, kind="Double", source_ns=1),  # 1e309 after scaling: infinity
            Sample(handle=3, value=7, kind="Int32", source_ns=1),
        ]
    )
    assert [p.fields for p in points] == [{"ok": 7}]
    assert status.counters["skipped"] == 2
