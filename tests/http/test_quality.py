"""OPC UA quality on the page: a Bad status marks the last value, a newer good value clears it.

The points come from the OPC UA connector's own PointMaker (what it really emits for Good, Bad
and Uncertain samples); the answers are read from the HTTP API, as the page reads them.
"""

from __future__ import annotations

from typing import Any

import httpx
from asyncua.ua.status_codes import StatusCodes

from connectors.opcua.values import Item, PointMaker, Sample
from gateway.component import Status
from gateway.http.app import AppContext, create_app
from gateway.http.config import HttpSettings
from gateway.latest import LatestValues
from gateway.logs import component_logger
from gateway.point import Point

S = 1_000_000_000
T0 = 1_700_000_000 * S
BAD = StatusCodes.BadSensorFailure
UNCERTAIN = StatusCodes.UncertainLastUsableValue


class Machine:
    """One OPC UA machine with a temperature sensor, as the connector turns its samples into points."""

    def __init__(self) -> None:
        self.maker = PointMaker(
            measurement="machine",
            tags={"line": "A", "machine": "cnc-1"},
            timestamps="source",
            bad_values="store",
            status=Status("cnc", "connector", "opcua"),
            log=component_logger("connector", "cnc"),
            clock=lambda: T0,
        )
        self.maker.items[1] = Item(handle=1, node="ns=2;s=Temp", field="temp")

    def sample(self, seconds: int, value: Any, status: int = 0, name: str = "Good") -> list[Point]:
        return self.maker.convert([Sample(1, value, "Double", status, name, source_ns=T0 + seconds * S)])


async def _values(latest: LatestValues) -> dict[str, dict[str, Any]]:
    ctx = AppContext(name="gw", settings=HttpSettings(), statuses=list, latest=latest)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(ctx)), base_url="http://gw") as c:
        response = await c.get("/api/overview")
    assert response.status_code == 200
    cards = response.json()["cards"]
    assert len(cards) == 1, cards  # the quality tag does not split the machine into two cards
    return {v["field"]: v for v in cards[0]["values"]}


async def test_bad_marks_the_last_value_and_a_newer_good_value_clears_it() -> None:
    machine, latest = Machine(), LatestValues()
    latest.update(machine.sample(1, 21.5))
    values = await _values(latest)
    assert values["temp"]["value"] == 21.5 and values["temp"]["quality"] == "good"
    assert values["temp"]["status"] is None

    bad = machine.sample(2, None, BAD, "BadSensorFailure")
    assert bad[0].tags["quality"] == "bad" and "temp_status" in bad[0].fields  # what the connector sends
    latest.update(bad)
    values = await _values(latest)
    assert set(values) == {"temp"}  # no separate temp_status value
    assert values["temp"]["quality"] == "bad" and values["temp"]["status"] == "BadSensorFailure"
    assert values["temp"]["value"] == 21.5  # the last good value, shown marked (struck out)

    latest.update(machine.sample(3, 22.0))
    values = await _values(latest)
    assert set(values) == {"temp"}
    assert values["temp"] == {**values["temp"], "value": 22.0, "quality": "good", "status": None}


async def test_an_older_good_value_arriving_late_does_not_clear_a_newer_bad_status() -> None:
    machine, latest = Machine(), LatestValues()
    latest.update(machine.sample(1, 20.0))
    latest.update(machine.sample(5, None, BAD, "BadSensorFailure"))
    latest.update(machine.sample(3, 20.5))  # sent before the failure, delivered after it
    values = await _values(latest)
    assert values["temp"]["value"] == 20.5 and values["temp"]["quality"] == "bad"
    assert values["temp"]["status"] == "BadSensorFailure"


async def test_bad_before_any_good_value_and_uncertain_values() -> None:
    machine, latest = Machine(), LatestValues()
    latest.update(machine.sample(1, None, BAD, "BadSensorFailure"))
    values = await _values(latest)
    assert values["temp"]["value"] is None and values["temp"]["quality"] == "bad"
    # Uncertain: the value is usable, but marked as such.
    latest.update(machine.sample(2, 19.0, UNCERTAIN, "UncertainLastUsableValue"))
    values = await _values(latest)
    assert set(values) == {"temp"}
    assert values["temp"]["value"] == 19.0 and values["temp"]["quality"] == "uncertain"
    assert values["temp"]["status"] == "UncertainLastUsableValue"
    latest.update(machine.sample(3, 19.5))
    assert (await _values(latest))["temp"]["quality"] == "good"


async def test_values_stream_and_restart_seed_carry_the_quality() -> None:
    machine, latest = Machine(), LatestValues()
    # After a restart the historian gives both series back: the good value and the newer status.
    latest.seed("machine", {"line": "A", "machine": "cnc-1", "quality": "bad"}, "temp_status", "BadSensorFailure", 9)
    latest.seed("machine", {"line": "A", "machine": "cnc-1"}, "temp", 21.0, 5)
    (entry,) = latest.all()
    assert entry.tags == {"line": "A", "machine": "cnc-1"}
    assert entry.as_dict()["fields"] == {
        "temp": {"value": 21.0, "time": 0, "quality": "bad", "status": "BadSensorFailure"}
    }
    latest.update(machine.sample(1, 23.0))
    assert latest.all()[0].as_dict()["fields"]["temp"]["quality"] == "good"


async def test_a_quality_tag_without_a_status_field_keeps_other_fields_as_they_are() -> None:
    latest = LatestValues()
    tags = {"line": "A", "machine": "cnc-1"}
    latest.update([Point("machine", {"door_status": "open"}, tags, T0)])  # an ordinary field named *_status
    latest.update([Point("machine", {"rpm": 10.0}, {**tags, "quality": "uncertain"}, T0)])
    values = await _values(latest)
    assert values["door_status"]["value"] == "open" and values["door_status"]["quality"] == "good"
    assert values["rpm"]["quality"] == "uncertain" and values["rpm"]["status"] is None
