"""The S7 connector against python-snap7's server: values, planned requests, per-field errors,
a PLC that refuses reads, a restart; status and metrics as an operator sees them."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from connectors.s7.config import S7Config
from connectors.s7.plan import max_items, plan
from gateway.config import load_config
from gateway.runtime import Gateway
from gateway.simulators.s7 import S7Server
from tests.connectors.polling.outage import off_for
from tests.fixtures.opcua import gateway_config, stored
from tests.fixtures.s7 import StartS7, s7_connector
from tests.helpers import async_wait_until


def _latest(folder: Path, measurement: str = "plc") -> dict[str, Any]:
    return {v.field: v.value for v in stored(folder, measurement)}


#: (address, type, length, value) in every area, every type; floats exactly representable.
VALUES: list[tuple[str, str | None, int | None, Any]] = [
    ("DB1.DBD0", "real", None, -1234.5),
    ("DB1.DBD4", "dint", None, -2_000_000_123),
    ("DB1.DBW8", "int", None, -12345),
    ("DB1.DBX10.0", None, None, True),
    ("DB1.DBX10.1", None, None, False),
    ("DB1.DBX10.7", "bool", None, True),
    ("DB1.DBB11", "byte", None, 0xA5),
    ("DB1.DBB12", "char", None, "Z"),
    ("DB1.DBB13", "sint", None, -100),
    ("DB1.DBB14", "usint", None, 250),
    ("DB1.DBW16", "word", None, 0xBEEF),
    ("DB1.DBW18", "uint", None, 65000),
    ("DB1.DBD20", "dword", None, 0xDEADBEEF),
    ("DB1.DBD24", "udint", None, 4_000_000_123),
    ("DB1.DBB28", "lreal", None, 2.718281828459045),
    ("DB1.DBB36", "lint", None, -(2**62) - 12345),
    ("DB1.DBB44", "ulint", None, 2**62 + 98765),
    ("DB1.DBB52", "lword", None, 2**40 + 3),
    ("DB2.DBB0", "string", 20, "Müsli 500g"),
    ("DB2.DBB22", "string", 8, ""),
    ("M10.1", None, None, True),
    ("MW20", "word", None, 120),
    ("MD24", "real", None, 0.25),
    ("MB30", "sint", None, -1),
    ("I0.0", None, None, True),
    ("I0.1", None, None, False),
    ("IW64", "int", None, 27648),
    ("EB70", "byte", None, 7),  # German mnemonic for an input
    ("Q0.0", None, None, True),
    ("QD4", "dint", None, 1_000_000),
    ("A8.3", None, None, True),  # German mnemonic for an output
]


def _fill(server: S7Server) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    server.area("DB", 64, 1)
    server.area("DB", 32, 2)
    server.area("M", 64)
    server.area("I", 128)
    server.area("Q", 16)
    fields: list[dict[str, Any]] = []
    expected: dict[str, Any] = {}
    for index, (address, kind, length, value) in enumerate(VALUES):
        server.set(address, value, kind, length)
        name = f"v{index:02d}_{(kind or 'bool')}"
        field: dict[str, Any] = {"name": name, "address": address}
        if kind:
            field["type"] = kind
        if length:
            field["length"] = length
        fields.append(field)
        expected[name] = value
    return fields, expected


async def test_every_type_in_every_area_arrives_exactly_with_the_planned_requests(
    s7_server: StartS7, tmp_path: Path
) -> None:
    server = s7_server()
    fields, expected = _fill(server)
    await server.start()
    config = gateway_config(tmp_path, [s7_connector(server.port, fields, tags={"line": "L1"})])
    async with Gateway(load_config(config)) as gateway:
        source = gateway.sources[0]
        view = source.status.detail["devices"]["line-plc"]
        await async_wait_until(lambda: len(_latest(tmp_path)) == len(expected), timeout=30, message="every value")
        await async_wait_until(lambda: view["counters"]["scans"] >= 3, timeout=30, message="3 scans")
    values = _latest(tmp_path)
    for name, value in expected.items():
        assert values[name] == value and type(values[name]) is type(value), name
    assert view["field_errors"] == {} and view["counters"]["read_errors"] == 0
    assert {v.tags["line"] for v in stored(tmp_path, "plc")} == {"L1"}
    # One request per scan, counted at the server: DB1, DB2, the merkers, the inputs at byte 0 and
    # at bytes 64–70 (further apart than max_gap), the outputs: six items of one request.
    planned = plan(S7Config.model_validate(s7_connector(server.port, fields)).variables, 480)
    assert len(planned.requests) == 1 and len(planned.requests[0].items) == 6
    assert view["requests_per_scan"] == 1 and view["pdu_size"] == 480
    assert len(server.reads) == view["counters"]["scans"]
    assert {len(r.items) for r in server.reads} == {6}


async def test_a_small_pdu_is_respected_and_packed_full(s7_server: StartS7, tmp_path: Path) -> None:
    """60 REALs in 60 data blocks and a STRING[254], at a PDU of 240 bytes: 19 items per request at
    most, no request or answer beyond 240 bytes, the string in pieces, the fewest requests."""
    server = s7_server(max_pdu=240)
    fields: list[dict[str, Any]] = []
    for db in range(1, 61):
        server.area("DB", 8, db)
        server.set(f"DB{db}.DBD4", db + 0.5, "real")
        fields.append({"name": f"t{db:02d}", "address": f"DB{db}.DBD4", "type": "real"})
    server.area("DB", 256, 100)
    text = "S7 " * 84  # 252 characters
    server.set("DB100.DBB0", text, "string", 254)
    fields.append({"name": "long_text", "address": "DB100.DBB0", "type": "string", "length": 254})
    await server.start()
    config = gateway_config(tmp_path, [s7_connector(server.port, fields, interval="300ms")])
    async with Gateway(load_config(config)) as gateway:
        view = gateway.sources[0].status.detail["devices"]["line-plc"]
        await async_wait_until(lambda: len(_latest(tmp_path)) == 61, timeout=30, message="every value")
        await async_wait_until(lambda: view["counters"]["scans"] >= 3, timeout=30, message="3 scans")
    values = _latest(tmp_path)
    assert values["long_text"] == text and all(values[f"t{db:02d}"] == db + 0.5 for db in range(1, 61))
    assert view["pdu_size"] == 240
    # 62 items (60 REALs, the string's two halves); 19 per request at most: 4 requests, counted at the server.
    requests = view["requests_per_scan"]
    assert requests == 4 == -(-62 // max_items(240))
    assert len(server.reads) == view["counters"]["scans"] * requests
    assert max(len(r.items) for r in server.reads) == 19
    assert max(r.request_bytes for r in server.reads) <= 240 and max(r.answer_bytes for r in server.reads) <= 240
    pieces = sorted(size for r in server.reads[:requests] for area, db, _, size in r.items if db == 100)
    assert pieces == [128, 128]


async def test_a_missing_db_and_an_address_beyond_a_dbs_end_fail_only_their_fields(
    s7_server: StartS7, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = s7_server()
    server.area("DB", 12, 1)
    for byte in range(0, 12, 2):
        server.set(f"DB1.DBW{byte}", 100 + byte, "int")
    server.area("M", 16)
    server.set("MW0", 7, "word")
    await server.start()
    fields = [{"name": f"w{b}", "address": f"DB1.DBW{b}", "type": "int"} for b in range(0, 12, 2)]
    fields.append({"name": "beyond", "address": "DB1.DBW14", "type": "int"})  # DB1 is 12 bytes long
    fields.append({"name": "unregistered", "address": "DB7.DBD0", "type": "real"})  # no DB7 in the PLC
    fields.append({"name": "merker", "address": "MW0", "type": "word"})
    data = {
        "gateway": {"name": "gw", "data_dir": str(tmp_path / "data"), "http": {"listen": "127.0.0.1:0"}},
        "sinks": [
            {"name": "local", "type": "historian", "path": str(tmp_path / "history.db"), "flush_interval": "200ms"}
        ],
        "connectors": [s7_connector(server.port, fields)],
    }
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(data))
    with caplog.at_level(logging.INFO):
        async with Gateway(load_config(path)) as gateway, aiohttp.ClientSession() as http:
            assert gateway.http is not None
            view = gateway.sources[0].status.detail["devices"]["line-plc"]
            await async_wait_until(lambda: view["counters"]["scans"] >= 4, timeout=30, message="4 scans")
            async with http.get(f"{gateway.http.url}/api/status") as response:
                status = await response.json()
            async with http.get(f"{gateway.http.url}/metrics") as response:
                metrics = await response.text()
    assert _latest(tmp_path) == {**{f"w{b}": 100 + b for b in range(0, 12, 2)}, "merker": 7}
    assert set(view["field_errors"]) == {"beyond", "unregistered"}
    assert view["field_errors"]["unregistered"].startswith("DB7 does not exist in the PLC (S7 item error 0x0a")
    assert view["field_errors"]["beyond"].startswith("DB1 has no bytes 14–15 (S7 item error 0x05")
    assert "Optimized block access" in view["field_errors"]["beyond"] and "PUT/GET" in view["field_errors"]["beyond"]
    assert view["counters"]["gaps"] == 0
    messages = [r.getMessage() for r in caplog.records]
    # The merged DB1 item was refused once, then read field by field; each error is logged once.
    assert sum("reading its 7 fields one item each" in m for m in messages) == 1
    assert sum("field beyond cannot be read" in m for m in messages) == 1
    assert sum("field unregistered cannot be read" in m for m in messages) == 1
    assert not any("field w0 cannot be read" in m for m in messages)
    # What the operator sees: the device in /api/status, its counters in /metrics.
    (component,) = [c for c in status["components"] if c["name"] == "line-plc"]
    device = component["devices"]["line-plc"]
    assert device["state"] == "running" and set(device["field_errors"]) == {"beyond", "unregistered"}
    assert device["last_error"].startswith(("beyond: DB1 has no", "unregistered: DB7 does not exist"))
    samples = {
        (s.name, s.labels.get("device", "")): s.value
        for family in text_string_to_metric_families(metrics)
        for s in family.samples
        if s.labels.get("connector") == "line-plc"
    }
    assert samples[("gateway_connector_read_errors_total", "line-plc")] >= 2 * 4
    assert samples[("gateway_connector_scan_overruns_total", "line-plc")] == 0
    assert samples[("gateway_connector_scan_duration_seconds_count", "line-plc")] >= 4
    assert samples[("gateway_connector_device_up", "line-plc")] == 1


async def test_a_plc_that_refuses_put_get_is_down_with_what_to_change_then_resumes(
    s7_server: StartS7, tmp_path: Path
) -> None:
    server = s7_server()
    server.area("DB", 4, 1)
    server.set("DB1.DBD0", 42.0, "real")
    server.refuse_reads = True
    await server.start()
    fields = [{"name": "speed", "address": "DB1.DBD0", "type": "real"}]
    config = gateway_config(tmp_path, [s7_connector(server.port, fields)])
    async with Gateway(load_config(config)) as gateway:
        view = gateway.sources[0].status.detail["devices"]["line-plc"]
        await async_wait_until(lambda: view["state"] == "down", timeout=30, message="the device down")
        assert "Permit access with PUT/GET" in view["last_error"] and "Optimized block access" in view["last_error"]
        assert "S7comm error 0x8104" in view["last_error"]
        assert not stored(tmp_path, "plc")
        server.refuse_reads = False  # the engineer ticked the box and downloaded
        await async_wait_until(lambda: _latest(tmp_path).get("speed") == 42.0, timeout=30, message="data")
        assert view["state"] == "running" and view["counters"]["gaps"] == 1


@pytest.mark.slow
async def test_plc_off_for_10s_then_back_data_resumes_and_the_gap_is_reported(
    s7_server: StartS7, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = s7_server()
    server.area("DB", 4, 1)
    server.set("DB1.DBD0", 1, "dint")
    await server.start()
    fields = [{"name": "count", "address": "DB1.DBD0", "type": "dint"}]
    config = gateway_config(tmp_path, [s7_connector(server.port, fields)])
    with caplog.at_level(logging.INFO):
        async with Gateway(load_config(config)) as gateway:
            source = gateway.sources[0]
            view = source.status.detail["devices"]["line-plc"]
            await async_wait_until(lambda: stored(tmp_path, "plc"), timeout=30, message="first data")
            await server.stop()
            stopped = time.monotonic()
            await off_for(source.status, view, stopped, 10)  # the scenario: the PLC is off for 10 s
            server.set("DB1.DBD0", 2, "dint")
            await server.start()
            await async_wait_until(lambda: _latest(tmp_path).get("count") == 2, timeout=30, message="data again")
            assert source.status.state.value == "running"
            assert source.status.counters["reconnects"] >= 1
            assert view["counters"]["gaps"] == 1 and view["last_gap_seconds"] >= 10
            assert server.clients == 1  # one session: failed attempts left none behind
    messages = [r.getMessage() for r in caplog.records]
    assert sum("line-plc: no data since" in m for m in messages) == 1
    assert sum("line-plc: data again after a gap of" in m for m in messages) == 1


DATA = Path(__file__).resolve().parent / "data"

#: What the tag files in data/ declare, as (address, type, length, value) per stored field name.
TAG_FILE_VALUES: dict[str, dict[str, tuple[str, str, int | None, Any]]] = {
    "LineData_DB10.xml": {
        "Motor.Temperature": ("DB10.DBD0", "real", None, 71.25),
        "Motor.Speed": ("DB10.DBW4", "int", None, -1500),
        "Motor.Running": ("DB10.DBX6.0", "bool", None, True),
        "Motor.Fault": ("DB10.DBX6.1", "bool", None, False),
        "Counter": ("DB10.DBD8", "dint", None, 123_456_789),
        "Energy": ("DB10.DBB12", "lreal", None, 2_500_000.125),
        "Recipe": ("DB10.DBB20", "string", 16, "Brot 750g"),
        "Line_Speed": ("DB10.DBW38", "word", None, 0xBEEF),  # exported as "Line Speed"
        "Reject.Count": ("DB10.DBD40", "udint", None, 4_000_000_001),
    },
    "oven_DB11.csv": {
        "Oven.Zone1": ("DB11.DBD0", "real", None, 182.5),
        "Oven.Door": ("DB11.DBX4.2", "bool", None, True),
        "Oven.Batch": ("DB11.DBD6", "udint", None, 987_654),
        "Oven.Status": ("DB11.DBB10", "byte", None, 0x5A),
        "Oven.Mode": ("DB11.DBB11", "char", None, "A"),
        "Oven.Setpoint": ("DB11.DBW12", "int", None, -40),
        "Oven.Lot": ("DB11.DBB14", "string", 8, "L-2405"),
    },
}


async def test_the_variables_of_a_tia_export_and_a_csv_file_arrive_exactly(s7_server: StartS7, tmp_path: Path) -> None:
    server = s7_server()
    server.area("DB", 48, 10)
    server.area("DB", 24, 11)
    server.set("DB10.DBB6", 0xFF, "byte")  # the bits around Motor.Fault (false) are set
    for values in TAG_FILE_VALUES.values():
        for address, kind, length, value in values.values():
            server.set(address, value, kind, length)
    await server.start()
    connectors = [
        s7_connector(server.port, [], name="line-plc", measurement="line", tags_file=str(DATA / "LineData_DB10.xml")),
        s7_connector(server.port, [], name="oven-plc", measurement="oven", tags_file=str(DATA / "oven_DB11.csv")),
    ]
    config = load_config(gateway_config(tmp_path, connectors))
    for connector, file in zip(config.connectors, TAG_FILE_VALUES, strict=True):
        assert isinstance(connector, S7Config)
        assert {f.name: (f.variable.describe(), f.variable.type, f.variable.length) for f in connector.fields} == {
            name: (address, kind, length) for name, (address, kind, length, _) in TAG_FILE_VALUES[file].items()
        }
    files = (("line", "LineData_DB10.xml"), ("oven", "oven_DB11.csv"))
    async with Gateway(config):
        await async_wait_until(
            lambda: all(len(_latest(tmp_path, m)) == len(TAG_FILE_VALUES[f]) for m, f in files),
            timeout=30,
            message="every value of both files",
        )
    for measurement, file in files:
        values = _latest(tmp_path, measurement)
        for name, (*_, value) in TAG_FILE_VALUES[file].items():
            assert values[name] == value and type(values[name]) is type(value), name
