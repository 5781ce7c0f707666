"""The Modbus connector against an independent server: modbus-serial's ServerTCP (Node.js).

The same checks as against pymodbus's server, so that neither side's quirks hide a bug in
the other: exact values in every type and byte order, the planned number of requests
(counted by the peer), a silent unit that does not delay another, an illegal address that
fails only its field.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from connectors.modbus.config import ModbusField
from connectors.modbus.plan import plan
from gateway.config import load_config
from gateway.runtime import Gateway
from gateway.simulators.modbus import Unit
from tests.connectors.modbus.cases import all_types
from tests.fixtures.modbus import modbus_connector
from tests.fixtures.opcua import gateway_config, stored
from tests.helpers import async_wait_until


def _spec(units: dict[int, Unit], **extra: Any) -> dict[str, Any]:
    return {
        "units": {
            str(unit_id): {
                area: {str(a): (bool(v) if area in ("coil", "discrete") else v) for a, v in getattr(u, area).items()}
                for area in ("holding", "input", "coil", "discrete")
            }
            for unit_id, u in units.items()
        },
        **extra,
    }


async def test_every_type_and_order_and_the_planned_requests(modbus_peer: Any, tmp_path: Path) -> None:
    memory = Unit()
    fields, expected = all_types(memory)
    peer = modbus_peer(_spec({3: memory}))
    device = {"unit": 3, "name": "plc", "measurement": "plc", "fields": fields}
    config = gateway_config(tmp_path, [modbus_connector(peer.port, [device], interval="300ms")])
    async with Gateway(load_config(config)) as gateway:
        view = gateway.sources[0].status.detail["devices"]["plc"]
        await async_wait_until(
            lambda: len({v.field for v in stored(tmp_path, "plc")}) == len(expected), timeout=30, message="values"
        )
        await async_wait_until(lambda: view["counters"]["scans"] >= 3, timeout=30, message="3 scans")
    values = {v.field: v.value for v in stored(tmp_path, "plc")}
    for name, value in expected.items():
        assert values[name] == value and type(values[name]) is type(value), name
    planned = plan([ModbusField.model_validate(f) for f in fields])
    requests = [r for r in peer.requests() if r["unit"] == 3]
    assert len(requests) == view["counters"]["scans"] * len(planned)
    first_scan = {(r["fc"], r["address"], r["count"]) for r in requests[: len(planned)]}
    codes = {"coil": 1, "discrete": 2, "holding": 3, "input": 4}
    assert first_scan == {(codes[r.area], r.address, r.count) for r in planned}


async def test_a_silent_unit_does_not_delay_another_and_an_illegal_address_fails_alone(
    modbus_peer: Any, tmp_path: Path
) -> None:
    live = Unit()
    for address in range(4):
        live.set("holding", address, "uint16", 10 + address)
    peer = modbus_peer(_spec({1: live}, silent=[2], illegal={"1": {"holding": [2]}}))
    timeout = 2.0
    devices = [
        {
            "unit": 1,
            "name": "live",
            "measurement": "m",
            "fields": [{"name": f"r{a}", "area": "holding", "address": a} for a in range(4)],
        },
        {"unit": 2, "name": "silent", "measurement": "m", "fields": [{"name": "x", "area": "holding", "address": 0}]},
    ]
    config = gateway_config(tmp_path, [modbus_connector(peer.port, devices, interval="250ms", timeout=f"{timeout}s")])
    async with Gateway(load_config(config)) as gateway:
        view = gateway.sources[0].status.detail["devices"]
        await async_wait_until(lambda: view["live"]["counters"]["scans"] >= 30, timeout=60, message="30 scans")
        assert view["silent"]["state"] == "down" and view["live"]["state"] == "running"
    assert {v.field: v.value for v in stored(tmp_path, "m")} == {"r0": 10, "r1": 11, "r3": 13}
    assert set(view["live"]["field_errors"]) == {"r2"}
    # Each scan of the live unit (after the split: one read per field) starts with its read of r0.
    starts = [r["t"] for r in peer.requests() if r["unit"] == 1 and r["address"] == 0 and r["count"] == 1]
    intervals = [b - a for a, b in itertools.pairwise(starts)]
    assert len(intervals) >= 20 and max(intervals) < 0.25 + timeout / 2, intervals
