"""The InfluxDB sink against a scripted HTTP store: every answer the issue lists, and the config.

The real InfluxDB 1.6 and VictoriaMetrics are in tests/sinks/influxdb/test_stores.py; this
fake store lets each status code (413, 429 with Retry-After, InfluxDB 3 partial writes…) be
produced on demand.
"""

from __future__ import annotations

import asyncio
import logging
import textwrap
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from gateway.component import RuntimeContext
from gateway.config import load_config
from gateway.errors import ConfigError, SinkRejected, SinkUnauthorized, SinkUnavailable
from gateway.lineprotocol import encode_batch, parse
from gateway.point import Point
from gateway.sinks.influxdb import InfluxDBConfig, InfluxDBSink
from gateway.sinks.influxdb.sink import split_lines
from tests.helpers import free_port

T0 = 1_700_000_000_000_000_000


@dataclass
class Request:
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    lines: list[bytes]


@dataclass
class FakeStore:
    """Answers each write with ``respond(lines) -> (status, body, headers)`` and records it."""

    url: str = ""
    requests: list[Request] = field(default_factory=list)
    stored: list[bytes] = field(default_factory=list)
    respond: Callable[[list[bytes]], tuple[int, Any, dict[str, str]]] = lambda lines: (204, "", {})


@pytest.fixture
async def fake_store() -> AsyncIterator[FakeStore]:
    store = FakeStore()

    async def handle(request: web.Request) -> web.StreamResponse:
        raw = await request.read()  # aiohttp has already undone Content-Encoding: gzip
        lines = split_lines(raw, raw.count(b"\n"))
        store.requests.append(Request(request.path, dict(request.query), dict(request.headers), lines))
        status, body, headers = store.respond(lines)
        if status == 204:
            store.stored.extend(lines)
        if isinstance(body, dict):
            return web.json_response(body, status=status, headers=headers)
        return web.Response(status=status, text=body or None, headers=headers)

    app = web.Application(client_max_size=64 << 20)
    app.router.add_post("/api/v2/write", handle)
    app.router.add_post("/write", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    store.url = f"http://127.0.0.1:{port}"
    yield store
    await runner.cleanup()


def context() -> RuntimeContext:
    return RuntimeContext("test", Path("."), logging.LoggerAdapter(logging.getLogger("test.influx"), {}))


async def open_sink(**options: Any) -> InfluxDBSink:
    config = InfluxDBConfig.model_validate({"name": "influx", "type": "influxdb", "bucket": "machines", **options})
    sink = InfluxDBSink(config, context())
    await sink.open()
    return sink


def points(count: int, start: int = 0) -> list[Point]:
    return [Point("m", {"v": float(i), "n": i}, {"line": "A"}, T0 + i) for i in range(start, start + count)]


async def test_v2_write_sends_line_protocol_with_token_org_bucket_and_ns(fake_store: FakeStore) -> None:
    sink = await open_sink(url=fake_store.url, org="lab", token="s3cret")
    await sink.write(points(2000))
    await sink.close()
    request = fake_store.requests[0]
    assert request.path == "/api/v2/write"
    assert request.query == {"org": "lab", "bucket": "machines", "precision": "ns"}
    assert request.headers["Authorization"] == "Token s3cret"
    assert request.headers["Content-Encoding"] == "gzip"
    assert parse((b"\n".join(fake_store.stored) + b"\n").decode()) == points(2000)


async def test_v1_write_uses_database_retention_policy_and_basic_auth(fake_store: FakeStore) -> None:
    config = InfluxDBConfig.model_validate(
        {
            "name": "legacy",
            "type": "influxdb",
            "api": "v1",
            "url": fake_store.url,
            "database": "machines",
            "retention_policy": "one_year",
            "username": "gw",
            "password": "pw",
            "gzip": False,
        }
    )
    sink = InfluxDBSink(config, context())
    await sink.open()
    await sink.write(points(3))
    await sink.close()
    request = fake_store.requests[0]
    assert request.path == "/write"
    assert request.query == {"db": "machines", "rp": "one_year", "precision": "ns"}
    assert request.headers["Authorization"] == "Basic Z3c6cHc="
    assert "Content-Encoding" not in request.headers


async def test_a_partial_write_drops_only_what_the_store_names(fake_store: FakeStore) -> None:
    message = (
        'partial write: field type conflict: input field "v" on measurement "m" is type integer, '
        "already exists as type float dropped=1"
    )
    batch = [*points(5), Point("m", {"v": 7}, {"line": "A"}, T0 + 99)]
    fake_store.respond = lambda lines: (400, {"error": message}, {})
    sink = await open_sink(url=fake_store.url)
    with pytest.raises(SinkRejected) as caught:
        await sink.write(batch)
    await sink.close()
    assert caught.value.rejected == 1
    assert len(fake_store.requests) == 1  # the store kept the others: nothing is resent
    assert "field type conflict" in str(caught.value)
    assert "first rejected line: 'm,line=A v=7i 1700000000000000099'" in str(caught.value)


async def test_a_rejected_batch_without_details_is_split_until_the_bad_point_is_alone(fake_store: FakeStore) -> None:
    bad = b"m,line=A v=7i"
    fake_store.respond = lambda lines: (
        (400, {"error": "field type conflict"}, {}) if any(bad in line for line in lines) else (204, "", {})
    )
    batch = [*points(20), Point("m", {"v": 7}, {"line": "A"}, T0 + 99), *points(20, start=100)]
    sink = await open_sink(url=fake_store.url)
    with pytest.raises(SinkRejected) as caught:
        await sink.write(batch)
    await sink.close()
    assert caught.value.rejected == 1
    assert len(fake_store.stored) == 40  # every neighbour landed
    assert "v=7i" in str(caught.value)


async def test_influxdb3_partial_write_counts_the_listed_lines(fake_store: FakeStore) -> None:
    body = {
        "error": "partial write of line protocol occurred",
        "data": [{"original_line": "m v=1i 5", "line_number": 2, "error_message": "invalid column type"}],
    }
    fake_store.respond = lambda lines: (400, body, {})
    sink = await open_sink(url=fake_store.url)
    with pytest.raises(SinkRejected, match="first rejected line: 'm v=1i 5'") as caught:
        await sink.write(points(4))
    await sink.close()
    assert caught.value.rejected == 1


async def test_too_large_a_batch_is_split(fake_store: FakeStore) -> None:
    fake_store.respond = lambda lines: (413, "Request Entity Too Large", {}) if len(lines) > 300 else (204, "", {})
    sink = await open_sink(url=fake_store.url)
    await sink.write(points(1000))
    await sink.close()
    assert len(fake_store.stored) == 1000
    assert parse((b"\n".join(fake_store.stored) + b"\n").decode()) == points(1000)


@pytest.mark.parametrize("status", [401, 403])
async def test_refused_credentials_raise_unauthorized(fake_store: FakeStore, status: int) -> None:
    fake_store.respond = lambda lines: (status, {"code": "unauthorized", "message": "unauthorized access"}, {})
    sink = await open_sink(url=fake_store.url, token="wrong")
    with pytest.raises(SinkUnauthorized, match=f"HTTP {status}: unauthorized access.*check token"):
        await sink.write(points(3))
    await sink.close()


@pytest.mark.parametrize(
    ("status", "headers", "retry_after"),
    [(429, {"Retry-After": "7"}, 7.0), (503, {"Retry-After": "2.5"}, 2.5), (500, {}, None), (502, {}, None)],
)
async def test_overload_and_server_errors_are_retried_with_retry_after(
    fake_store: FakeStore, status: int, headers: dict[str, str], retry_after: float | None
) -> None:
    fake_store.respond = lambda lines: (status, "busy", headers)
    sink = await open_sink(url=fake_store.url)
    with pytest.raises(SinkUnavailable) as caught:
        await sink.write(points(3))
    await sink.close()
    assert caught.value.retry_after == retry_after
    assert f"HTTP {status}" in str(caught.value)


async def test_a_missing_database_keeps_the_points(fake_store: FakeStore) -> None:
    fake_store.respond = lambda lines: (404, {"error": 'database not found: "machines"'}, {})
    sink = await open_sink(url=fake_store.url)
    with pytest.raises(SinkUnavailable, match=r"not found.*create it"):
        await sink.write(points(3))
    await sink.close()


async def test_a_store_that_is_not_listening_is_unavailable() -> None:
    sink = await open_sink(url=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(SinkUnavailable, match="cannot connect to"):
        await sink.write(points(3))
    await sink.close()


async def test_a_store_that_does_not_answer_in_time_is_unavailable(fake_store: FakeStore) -> None:
    release = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        await release.wait()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/api/v2/write", slow)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    sink = await open_sink(url=f"http://127.0.0.1:{port}", timeout="200ms")
    with pytest.raises(SinkUnavailable, match="did not answer within 200ms"):
        await sink.write(points(3))
    await sink.close()
    release.set()
    await runner.cleanup()


def test_split_lines_keeps_newlines_inside_string_values() -> None:
    batch = [
        Point("m", {"s": "two\nlines", "x": 1}, {"t": 'quote"in tag'}, T0),
        Point('a"b', {"s": 'tricky \\" \n 123'}, None, T0 + 1),
        Point("m", {"v": 1.5}, {"t": "x y,z=w"}, T0 + 2),
    ]
    body = encode_batch(batch)
    lines = split_lines(body, len(batch))
    assert len(lines) == 3
    assert [parse(line.decode() + "\n")[0] for line in lines] == batch


# --- configuration ---------------------------------------------------------------------------------

CONTRACT = """\
gateway:
  buffer: {path: ./data/buffer, max_size: 1GiB, overflow: drop_oldest}
sinks:
  - name: influx
    type: influxdb
    url: http://localhost:8086
    org: lab
    bucket: machines
    token: ${INFLUX_TOKEN}
    batch_size: 5000
    flush_interval: 1s
  - name: legacy                      # InfluxDB 1.x (many SMEs still run 1.8)
    type: influxdb
    api: v1
    url: http://historian.local:8086
    database: machines
    username: ${INFLUX1_USER:-}
    password: ${INFLUX1_PASSWORD:-}
"""


def test_the_contract_sinks_validate_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFLUX_TOKEN", "Zq8-secret-value")
    monkeypatch.delenv("INFLUX1_USER", raising=False)
    monkeypatch.delenv("INFLUX1_PASSWORD", raising=False)
    path = tmp_path / "gateway.yaml"
    path.write_text(CONTRACT)
    config = load_config(path)
    influx, legacy = config.sinks
    assert isinstance(influx, InfluxDBConfig) and isinstance(legacy, InfluxDBConfig)
    assert influx.api == "v2" and influx.token is not None and influx.token.get_secret_value() == "Zq8-secret-value"
    assert (influx.batch_size, influx.flush_interval) == (5000, 1.0)
    assert legacy.api == "v1" and legacy.database == "machines"
    assert legacy.username is None and legacy.password is None  # empty means no authentication
    assert "Zq8-secret-value" not in repr(influx)  # secrets never reach logs


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("url: http://h:8086\n    database: x", "database is for api: v1"),
        ("url: http://h:8086\n    org: lab", "bucket is required with the v2 API"),
        ("api: v1\n    url: http://h:8086\n    bucket: b", "bucket is for the v2 API"),
        ("api: v1\n    url: http://h:8086", "database is required with api: v1"),
        ("api: v1\n    url: http://h:8086\n    database: d\n    username: u", "give both username and password"),
        ("url: localhost:8086\n    bucket: b", "is not an http:// or https:// URL"),
        ("url: http://h:8086\n    bucket: b\n    tls: {verfy: false}", "did you mean 'verify'"),
        ("url: http://h:8086\n    bucket: b\n    buffer: {overflow: drop_newest}", "'drop_oldest' or 'block'"),
    ],
)
def test_config_mistakes_are_explained(tmp_path: Path, item: str, message: str) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            sinks:
              - name: influx
                type: influxdb
            """
        )
        + f"    {item}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert message in str(caught.value), str(caught.value)
    assert str(path) in str(caught.value)


async def test_the_runtime_gives_each_influxdb_sink_its_own_durable_buffer(tmp_path: Path) -> None:
    from gateway.buffer import DiskQueue
    from gateway.config import validate_data
    from gateway.runtime import Gateway

    config = validate_data(
        {
            "gateway": {"data_dir": str(tmp_path / "data"), "buffer": {"path": str(tmp_path / "buffer")}},
            "sinks": [
                {"name": "influx", "type": "influxdb", "url": "http://127.0.0.1:9", "bucket": "b"},
                {
                    "name": "legacy",
                    "type": "influxdb",
                    "api": "v1",
                    "url": "http://127.0.0.1:9",
                    "database": "d",
                    "buffer": {"max_size": "10MiB", "overflow": "block"},
                },
            ],
        }
    )
    async with Gateway(config) as gateway:
        influx, legacy = gateway.routes["influx"].queue, gateway.routes["legacy"].queue
        assert isinstance(influx, DiskQueue) and isinstance(legacy, DiskQueue)
        assert influx.directory == tmp_path / "buffer" / "influx"
        assert (influx.settings.max_size, influx.settings.overflow) == (2**30, "drop_oldest")
        assert legacy.directory == tmp_path / "buffer" / "legacy"
        assert (legacy.settings.max_size, legacy.settings.overflow) == (10 * 2**20, "block")
        assert gateway.routes["influx"].status.as_dict()["detail"]["depth_points"] == 0
    assert (tmp_path / "buffer" / "influx" / "ack").exists()


def test_the_sample_config_validates(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFLUX_TOKEN", "t")
    sample = Path(__file__).parents[3] / "gateway" / "sinks" / "influxdb" / "sample.yaml"
    config = load_config(sample)
    assert [s.name for s in config.sinks] == ["influx", "legacy"]
