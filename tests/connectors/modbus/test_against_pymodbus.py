"""The Modbus connector against pymodbus's own server: values, requests, isolation, faults."""

from __future__ import annotations

import itertools
import logging
import time
from pathlib import Path
from typing import Any

import pytest

from connectors.modbus.config import ModbusField
from connectors.modbus.plan import plan
from connectors.modbus.source import ModbusSource
from gateway.config import load_config
from gateway.runtime import Gateway
from tests.connectors.modbus.cases import NUMBERS, SIZES, all_types
from tests.connectors.polling.outage import off_for
from tests.fixtures.modbus import StartServer, modbus_connector
from tests.fixtures.opcua import TcpProxy, gateway_config, stored
from tests.helpers import async_wait_until


def _latest(folder: Path, measurement: str) -> dict[str, Any]:
    return {v.field: v.value for v in stored(folder, measurement)}


async def test_every_type_and_byte_order_round_trips_exactly_with_the_fewest_requests(
    modbus_server: StartServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = await modbus_server()
    fields, expected = all_types(server.unit(3))
    await server.start()
    device = {"unit": 3, "name": "plc", "measurement": "plc", "tags": {"line": "A"}, "fields": fields}
    config = gateway_config(tmp_path, [modbus_connector(server.port, [device], interval="300ms")])
    caplog.set_level(logging.INFO)
    async with Gateway(load_config(config)) as gateway:
        source = gateway.sources[0]
        await async_wait_until(lambda: len(_latest(tmp_path, "plc")) == len(expected), timeout=30, message="values")
        await async_wait_until(
            lambda: source.status.detail["devices"]["plc"]["counters"]["scans"] >= 3, timeout=30, message="3 scans"
        )
        # Every device answers: the second connection (for silent ones) is closed, not kept idle.
        assert isinstance(source, ModbusSource)
        assert source.link.separate.connected is False and source.link.shared.connected
    values = _latest(tmp_path, "plc")
    for name, value in expected.items():
        assert values[name] == value and type(values[name]) is type(value), name
    # The requests: every scan read the same planned set, which is the fewest the limits allow.
    planned = plan([ModbusField.model_validate(f) for f in fields])
    scans = source.status.detail["devices"]["plc"]["counters"]["scans"]
    assert server.total_requests(3) == scans * len(planned)
    holding = sum(SIZES[k] for k, _ in NUMBERS) * 4 + 6 * 4
    assert len(planned) == -(-holding // 125) + 1 + 1 + 1 + 1  # holding 0…, holding 300, input, coil, discrete
    assert len(planned) < len(fields) / 5
    assert source.status.detail["devices"]["plc"]["field_errors"] == {}
    assert {v.tags["line"] for v in stored(tmp_path, "plc")} == {"A"}
    # A stop is not a gap: the connection closes only after the last scan ended.
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


async def test_a_silent_unit_does_not_delay_another_units_scans(modbus_server: StartServer, tmp_path: Path) -> None:
    server = await modbus_server()
    server.unit(1).set("holding", 0, "uint16", 7)
    server.unit(2)
    server.silent.add(2)  # switched off: never answers
    server.unit(9)
    server.gateway_fail.add(9)  # behind a TCP gateway that reports "target did not respond"
    await server.start()
    timeout = 2.0
    one_field = [{"name": "v", "area": "holding", "address": 0}]
    devices = [
        {"unit": 1, "name": "live", "measurement": "m", "fields": one_field},
        {"unit": 2, "name": "silent", "measurement": "m", "fields": one_field},
        {"unit": 9, "name": "behind-gw", "measurement": "m", "fields": one_field},
    ]
    config = gateway_config(tmp_path, [modbus_connector(server.port, devices, interval="250ms", timeout=f"{timeout}s")])
    async with Gateway(load_config(config)) as gateway:
        view = gateway.sources[0].status.detail["devices"]
        await async_wait_until(lambda: view["live"]["counters"]["scans"] >= 25, timeout=60, message="25 scans")
        starts = [t for t, unit, *_ in server.log if unit == 1]
        assert view["silent"]["state"] == "down" and "does not answer" in view["silent"]["last_error"]
        assert view["behind-gw"]["state"] == "down" and "exception 11" in view["behind-gw"]["last_error"]
        assert view["silent"]["counters"]["read_errors"] >= 2  # it was retried
        assert view["live"]["state"] == "running" and view["live"]["counters"]["read_errors"] == 0
        assert (view["live"]["connection"], view["silent"]["connection"]) == ("shared", "separate")
    intervals = [b - a for a, b in itertools.pairwise(starts)]
    # Were the live unit's reads queued behind the silent one's, some would wait a whole timeout.
    assert max(intervals) < 0.25 + timeout / 2, intervals
    assert view["live"]["counters"]["gaps"] == 0


async def test_an_illegal_address_is_an_error_for_that_field_only(
    modbus_server: StartServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = await modbus_server()
    unit = server.unit(1)
    for address in range(4):
        unit.set("holding", address, "uint16", 100 + address)
    unit.illegal.add(("holding", 2))
    await server.start()
    fields = [{"name": f"r{a}", "area": "holding", "address": a} for a in range(4)]
    fields.append({"name": "far", "area": "holding", "address": 5000})  # beyond the device's memory
    device = {"unit": 1, "name": "meter", "measurement": "m", "fields": fields}
    config = gateway_config(tmp_path, [modbus_connector(server.port, [device])])
    with caplog.at_level(logging.WARNING):
        async with Gateway(load_config(config)) as gateway:
            view = gateway.sources[0].status.detail["devices"]["meter"]
            await async_wait_until(lambda: view["counters"]["scans"] >= 3, timeout=30, message="3 scans")
    assert _latest(tmp_path, "m") == {"r0": 100, "r1": 101, "r3": 103}
    assert set(view["field_errors"]) == {"r2", "far"}
    assert "exception 2" in view["field_errors"]["r2"]
    assert view["counters"]["read_errors"] >= 2 * 3
    assert sum("reading its 4 fields separately" in r.getMessage() for r in caplog.records) == 1
    # The error is reported once per field, not at every scan.
    assert sum("field r2 cannot be read" in r.getMessage() for r in caplog.records) == 1


async def test_rtu_framing_over_tcp(modbus_server: StartServer, tmp_path: Path) -> None:
    server = await modbus_server(framing="rtu")
    server.unit(4).set("input", 10, "float32", 21.5, "CDAB")
    await server.start()
    device = {
        "unit": 4,
        "measurement": "m",
        "fields": [{"name": "t", "area": "input", "address": 10, "type": "float32", "byte_order": "CDAB"}],
    }
    config = gateway_config(tmp_path, [modbus_connector(server.port, [device], framing="rtu")])
    async with Gateway(load_config(config)):
        await async_wait_until(lambda: _latest(tmp_path, "m").get("t") == 21.5, timeout=30, message="value over RTU")


@pytest.mark.slow
async def test_server_stopped_10s_then_restarted_data_resumes_and_the_gap_is_reported(
    modbus_server: StartServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = await modbus_server()
    server.unit(1).set("holding", 0, "uint16", 1)
    await server.start()
    fields = [{"name": "v", "area": "holding", "address": 0}]
    device = {"unit": 1, "name": "meter", "measurement": "m", "fields": fields}
    config = gateway_config(tmp_path, [modbus_connector(server.port, [device])])
    with caplog.at_level(logging.INFO):
        async with Gateway(load_config(config)) as gateway:
            source = gateway.sources[0]
            view = source.status.detail["devices"]["meter"]
            await async_wait_until(lambda: stored(tmp_path, "m"), timeout=30, message="first data")
            await server.stop()
            stopped = time.monotonic()
            await off_for(source.status, view, stopped, 10)  # the scenario: the device is off for 10 s
            server.unit(1).set("holding", 0, "uint16", 2)
            await server.start()
            await async_wait_until(
                lambda: _latest(tmp_path, "m").get("v") == 2, timeout=30, message="data after the restart"
            )
            assert source.status.state.value == "running"
            assert source.status.counters["reconnects"] >= 1
            assert view["counters"]["gaps"] == 1 and view["last_gap_seconds"] >= 10
    messages = [r.getMessage() for r in caplog.records]
    assert sum("meter: no data since" in m for m in messages) == 1
    assert sum("meter: data again after a gap of" in m for m in messages) == 1


async def test_a_serial_line_through_pyserials_socket_url(modbus_server: StartServer, tmp_path: Path) -> None:
    """The serial RTU path (pymodbus's serial client and transport) end to end: pyserial opens
    ``socket://host:port`` as it opens /dev/ttyUSB0, here an RTU server over TCP."""
    server = await modbus_server(framing="rtu")
    server.unit(5).set("holding", 0, "int32", -42)
    await server.start()
    device = {
        "unit": 5,
        "measurement": "m",
        "fields": [{"name": "v", "area": "holding", "address": 0, "type": "int32"}],
    }
    connector = modbus_connector(server.port, [device], serial={"port": f"socket://127.0.0.1:{server.port}"})
    del connector["host"]
    config = gateway_config(tmp_path, [connector])
    async with Gateway(load_config(config)) as gateway:
        await async_wait_until(lambda: _latest(tmp_path, "m").get("v") == -42, timeout=30, message="value over serial")
        assert gateway.sources[0].status.detail["endpoint"].startswith("socket://127.0.0.1")


async def test_a_link_that_dies_without_a_reset_is_replaced(modbus_server: StartServer, tmp_path: Path) -> None:
    """A black-holed connection (no RST, no FIN: a switch that lost the route): its requests time
    out; the connection is dropped and a new one made, and data resumes on it."""
    server = await modbus_server()
    server.unit(1).set("holding", 0, "uint16", 1)
    await server.start()
    fields = [{"name": "v", "area": "holding", "address": 0}]
    device = {"unit": 1, "name": "meter", "measurement": "m", "fields": fields}
    async with TcpProxy(server.port) as proxy:
        config = gateway_config(tmp_path, [modbus_connector(proxy.port, [device], timeout="500ms")])
        async with Gateway(load_config(config)) as gateway:
            view = gateway.sources[0].status.detail["devices"]["meter"]
            await async_wait_until(lambda: view["connection"] == "shared", timeout=30, message="on the shared one")
            connections = proxy.connections
            proxy.freeze()
            frozen_at = time.time_ns()
            server.unit(1).set("holding", 0, "uint16", 2)
            await async_wait_until(
                lambda: any(v.value == 2 and v.time > frozen_at for v in stored(tmp_path, "m")),
                timeout=30,
                message="data through a new connection",
            )
            assert proxy.connections > connections
            assert view["counters"]["read_errors"] >= 1
