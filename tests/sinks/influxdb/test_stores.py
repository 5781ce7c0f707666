"""The InfluxDB sink and its durable buffer against the real stores (no MQTT here).

- InfluxDB 1.6 (``influxd``), the ``api: v1`` path, read back with InfluxQL: an exact round
  trip of floats, integers, booleans, strings and nanosecond timestamps; a rejected point;
  wrong credentials; the store killed and restarted.
- VictoriaMetrics, the ``api: v2`` path (``/api/v2/write``), read back with
  ``/api/v1/export``: numbers compared at millisecond precision.

End-to-end tests with MQTT are in test_no_loss.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from gateway.buffer import DiskQueue
from gateway.component import RuntimeContext, State
from gateway.point import INT64_MAX, INT64_MIN, Point
from gateway.route import Route
from gateway.settings import BufferSettings
from gateway.sinks.influxdb import InfluxDBConfig, InfluxDBSink
from tests.fixtures.influxdb import Influxd
from tests.fixtures.victoriametrics import Sample, VictoriaMetrics
from tests.helpers import async_wait_until

T0 = 1_700_000_000_123_456_789


@asynccontextmanager
async def influx_route(
    folder: Path, *, batch_size: int = 1000, flush_interval: float = 0.05, **options: Any
) -> AsyncIterator[Route]:
    """An InfluxDB sink behind its durable buffer in ``folder``, running until the block ends
    (the route opens and closes the sink)."""
    config = InfluxDBConfig.model_validate(
        {"name": "influx", "type": "influxdb", "batch_size": batch_size, "flush_interval": flush_interval, **options}
    )
    context = RuntimeContext("test", folder, logging.LoggerAdapter(logging.getLogger("test.influx"), {}))
    sink = InfluxDBSink(config, context)
    queue = DiskQueue(folder / sink.name, BufferSettings(path=folder), config.batch_size, sink.log)
    route = Route(sink, config, queue)
    route.GAUGE_INTERVAL = 0.1
    task = asyncio.create_task(route.run())
    try:
        yield route
    finally:
        await route.drain(time.monotonic() + 10)
        await asyncio.wait_for(task, 20)


def v1(server: Influxd, **extra: Any) -> dict[str, Any]:
    return {"api": "v1", "url": server.url, "database": "test", **extra}


async def put_all(route: Route, points: Sequence[Point], chunk: int = 100) -> None:
    for start in range(0, len(points), chunk):
        await route.put(points[start : start + chunk], lambda: None)


def drained(route: Route) -> bool:
    """Nothing waits in memory or on disk: the store confirmed every point put so far."""
    queue = route.queue
    assert isinstance(queue, DiskQueue)
    return queue.queued_points == 0 and queue.store.depth_points == 0


def by_time(points: Sequence[Point]) -> list[Point]:
    return sorted(points, key=lambda p: (p.time, sorted(p.tags.items())))


EXACT = [
    Point("types", {"f": 0.1, "i": 1, "b": True, "s": "plain"}, {"tag": "a"}, T0),
    Point("types", {"f": -1e-300, "i": INT64_MAX, "b": False, "s": 'quote " and back\\slash'}, {"tag": "a"}, T0 + 1),
    Point(
        "types", {"f": 1.7976931348623157e308, "i": INT64_MIN + 1, "b": True, "s": "two\nlines"}, {"tag": "a"}, T0 + 2
    ),
    Point("types", {"f": 5.0, "i": -42, "b": False, "s": "unicode: Grüße, 温度 °C"}, {"tag": "b c,d=e"}, T0 + 3),
    Point("types", {"f": 2.5e-8, "i": 0, "b": True, "s": ""}, {"tag": "a"}, -1_000_000_000_123),  # before 1970
    Point("types", {"f": 123456.789012345, "i": 7, "b": True, "s": "x"}, {"tag": "a"}, T0 + 999_999_999),
]


async def test_v1_round_trip_of_every_type_is_exact(influxd: Influxd, tmp_path: Path) -> None:
    async with influx_route(tmp_path, **v1(influxd)) as route:
        await route.put(EXACT, lambda: None)
        await async_wait_until(lambda: drained(route), timeout=20, message="buffer drained")
        assert route.status.counters["points_written"] == len(EXACT)
    stored = influxd.read_points("types")
    assert by_time(stored) == by_time(EXACT)
    for got, sent in zip(by_time(stored), by_time(EXACT), strict=True):
        assert {k: type(v) for k, v in got.fields.items()} == {k: type(v) for k, v in sent.fields.items()}


async def test_v2_write_path_into_victoriametrics_compares_at_milliseconds(
    victoriametrics: VictoriaMetrics, tmp_path: Path
) -> None:
    points = [
        Point(
            "energy", {"power_w": 1000.5 + i, "count": i, "on": i % 2 == 0}, {"meter": f"m{i % 3}"}, T0 + i * 1_000_000
        )
        for i in range(3000)
    ]
    async with influx_route(tmp_path, url=victoriametrics.url, org="lab", bucket="machines", token="unused") as route:
        await put_all(route, points)
        await async_wait_until(lambda: drained(route), timeout=30, message="buffer drained")
    expected = set()
    for p in points:
        tags = tuple(sorted(p.tags.items()))
        for field, value in p.fields.items():
            expected.add(Sample(f"energy_{field}", tags, p.time // 1_000_000, float(value)))

    def exported() -> list[Sample]:
        samples = victoriametrics.samples('{__name__=~"energy_.*"}')
        return samples if len(samples) >= len(expected) else []

    stored = await async_wait_until(exported, timeout=30, message="every sample exported")
    assert len(stored) == len(expected)
    assert set(stored) == expected


async def test_a_rejected_point_is_dropped_and_reported_and_its_neighbours_land(
    influxd: Influxd, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = [Point("press", {"force": 10.5}, {"press": "p1"}, T0 + i) for i in range(10)]
    # A sensor sends an integer where a float was stored: a field type conflict for that point only.
    bad = Point("press", {"force": 11}, {"press": "p1"}, T0 + 100)
    neighbours = [Point("press", {"force": 12.5 + i}, {"press": "p1"}, T0 + 101 + i) for i in range(10)]
    async with influx_route(tmp_path, **v1(influxd)) as route:
        await route.put(first, lambda: None)
        await async_wait_until(lambda: drained(route), timeout=20)
        with caplog.at_level(logging.ERROR):
            await route.put([*neighbours[:5], bad, *neighbours[5:]], lambda: None)
            await async_wait_until(lambda: route.status.counters["points_rejected"] == 1, timeout=20)
        await async_wait_until(lambda: drained(route), timeout=20)
        assert route.status.counters["points_written"] == 20
        assert "field type conflict" in (route.status.last_error or "")
    assert "first rejected line: 'press,press=p1 force=11i" in caplog.text
    assert by_time(influxd.read_points("press")) == by_time(first + neighbours)


async def test_conflicting_types_in_the_first_batch_are_isolated(influxd: Influxd, tmp_path: Path) -> None:
    # InfluxDB 1.6 rejects the whole first batch of a new shard without saying which point is bad.
    points = [Point("fresh", {"v": 1.5 + i}, None, T0 + i) for i in range(8)]
    points.insert(4, Point("fresh", {"v": 3}, None, T0 + 50))
    async with influx_route(tmp_path, **v1(influxd)) as route:
        await route.put(points, lambda: None)
        await async_wait_until(lambda: drained(route), timeout=20)
        assert route.status.counters["points_rejected"] == 1
    assert len(influxd.read_points("fresh")) == 8


async def test_wrong_credentials_keep_everything_and_the_right_ones_drain_it(
    influxd_auth: Influxd, tmp_path: Path
) -> None:
    points = [Point("secure", {"v": float(i)}, {"s": "x"}, T0 + i) for i in range(2000)]
    async with influx_route(tmp_path, **v1(influxd_auth, username="admin", password="wrong")) as route:
        await put_all(route, points)
        await async_wait_until(lambda: route.status.state is State.UNAUTHORIZED, timeout=20)
        await async_wait_until(lambda: route.status.detail["depth_points"] == 2000, timeout=10)
        assert "refused the credentials (HTTP 401" in (route.status.last_error or "")
        assert route.status.counters["points_written"] == 0
    assert influxd_auth.count("secure", "v") == 0
    # Restarted with the right password, the buffer left on disk drains.
    async with influx_route(tmp_path, **v1(influxd_auth, username="admin", password="admin-secret")) as route:
        assert route.status.detail["depth_points"] == 2000
        await async_wait_until(lambda: drained(route), timeout=30)
    assert by_time(influxd_auth.read_points("secure")) == points


async def test_the_store_killed_during_a_stream_loses_nothing(influxd: Influxd, tmp_path: Path) -> None:
    points = [Point("stream", {"v": float(i), "n": i}, {"line": "A"}, T0 + i * 1000) for i in range(6000)]
    depths: list[int] = []
    async with influx_route(tmp_path, **v1(influxd)) as route:
        await put_all(route, points[:2000])
        await async_wait_until(lambda: drained(route), timeout=20)
        influxd.kill()  # SIGKILL: acknowledged writes are in influxd's WAL
        for start in range(2000, 5000, 100):
            await route.put(points[start : start + 100], lambda: None)
            await asyncio.sleep(0.01)
        await async_wait_until(lambda: route.status.state is State.BACKOFF, timeout=20)
        depths.append(route.status.detail["depth_points"])
        influxd.start()
        await put_all(route, points[5000:])
        await async_wait_until(lambda: drained(route), timeout=60, message="buffer drained")
        depths.append(route.status.detail["depth_points"])
        assert route.status.state is State.RUNNING
        assert route.status.counters["points_retried"] > 0
    assert depths[0] > 0 and depths[-1] == 0
    assert by_time(influxd.read_points("stream")) == points


def make_certificates(folder: Path) -> dict[str, Path]:
    """A test CA and a server certificate for 127.0.0.1 signed by it (PEM files)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "influx test CA")])

    def builder(subject: x509.Name, key: ec.EllipticCurvePrivateKey) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
        )

    ca = (
        builder(ca_name, ca_key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    server = (
        builder(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "influxd")]), server_key)
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = {"ca": folder / "ca.pem", "cert": folder / "server.pem", "key": folder / "server.key"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )
    )
    return paths


async def test_https_is_verified_by_default_and_trusts_the_given_ca(influxd_factory: Any, tmp_path: Path) -> None:
    pki = make_certificates(tmp_path / "pki")
    server = influxd_factory(tls=(pki["cert"], pki["key"]))
    assert server.url.startswith("https://")
    points = [Point("tls", {"v": float(i)}, None, T0 + i) for i in range(100)]
    # Without the CA, the certificate is refused: nothing is written, nothing is lost.
    async with influx_route(tmp_path / "a", **v1(server)) as route:
        await route.put(points, lambda: None)
        await async_wait_until(lambda: route.status.state is State.BACKOFF, timeout=20)
        assert "TLS certificate" in (route.status.last_error or "") and "tls.ca_file" in (route.status.last_error or "")
        assert route.status.detail["depth_points"] == 100
    assert server.count("tls", "v") == 0
    # With the CA that signed it, the same buffer drains.
    async with influx_route(tmp_path / "a", **v1(server, tls={"ca_file": str(pki["ca"])})) as route:
        await async_wait_until(lambda: drained(route), timeout=20)
    assert by_time(server.read_points("tls")) == points
