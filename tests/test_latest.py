"""Latest values (gateway/latest.py): what the web page and the KPI engine read for each series."""

from __future__ import annotations

from gateway.latest import LatestValues
from gateway.point import Point


def test_one_tags_object_shared_by_two_measurements_makes_two_series() -> None:
    tags = {"line": "L1"}  # a decoder hands one cached tags object to every point of a topic
    latest = LatestValues()
    latest.update([Point("energy", {"kwh": 1.0}, tags, 10), Point("press", {"force": 2.0}, tags, 10)], "c")
    latest.update([Point("energy", {"kwh": 3.0}, tags, 20)], "c")
    energy, press = latest.get("energy", tags), latest.get("press", tags)
    assert energy is not None and press is not None
    assert (energy.fields["kwh"].value, press.fields["force"].value) == (3.0, 2.0)
    assert len(latest) == 2


def test_an_older_value_never_replaces_a_newer_one_and_a_newer_good_one_clears_a_status() -> None:
    tags = {"machine": "m1"}
    latest = LatestValues()
    latest.update([Point("m", {"v": 5.0}, tags, 200)])
    latest.update([Point("m", {"v": 4.0}, tags, 100)])  # late: kept out
    bad = {"machine": "m1", "quality": "bad"}
    latest.update([Point("m", {"v_status": "BadSensorFailure"}, bad, 300)])  # a status, no value
    series = latest.get("m", tags)
    assert series is not None
    field = series.fields["v"]
    assert (field.value, field.quality, field.status) == (5.0, "bad", "BadSensorFailure")
    latest.update([Point("m", {"v": 7.0}, tags, 250)])  # good, newer than the value, older than the status
    assert (field.value, field.quality, field.status) == (7.0, "bad", "BadSensorFailure")
    latest.update([Point("m", {"v": 8.0}, tags, 400)])
    assert (field.value, field.time, field.quality, field.status) == (8.0, 400, "good", None)
    assert len(latest) == 1  # the quality tag is not part of the series
