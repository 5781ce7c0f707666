"""No loss, end to end: MQTT (real Mosquitto) → gateway → durable buffer → real stores.

Each test compares the set of points published with the set stored (same count, same
values, same timestamps); a duplicate is only ever an exact overwrite of the same series and
timestamp. The stores: InfluxDB 1.6 (``api: v1``, exact types) and VictoriaMetrics
(``api: v2``, numbers at ms); every config also has the embedded historian (the normal pilot
fan-out), which must get everything too.

Faults: the store killed for 20 s during a steady stream; the gateway SIGKILLed in the middle
of 20,000 QoS 1 messages; the broker restarted; the disk bound hit while the store is down
(exact drop count, flat memory); a point the store rejects; wrong credentials.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Self

import orjson
import psutil
import pytest
import yaml

from gateway.component import State
from gateway.config import load_config
from gateway.point import Point
from gateway.runtime import Gateway
from tests.fixtures.influxdb import Influxd
from tests.fixtures.mosquitto import Mosquitto, Publisher, read_history
from tests.fixtures.victoriametrics import Sample, VictoriaMetrics
from tests.helpers import async_wait_until, contract_energy_connector, free_port, stop_process, wait_until

BASE_MS = 1_714_564_800_000  # 2024-05-01T12:00:00Z
TOPICS = [(f"L{k // 5}", f"m{k:02d}") for k in range(20)]


# --- what is published, what must be stored ----------------------------------------------------


def topic(i: int) -> str:
    line, meter = TOPICS[i % len(TOPICS)]
    return f"factory/{line}/energy/{meter}"


def payload(i: int) -> bytes:
    return orjson.dumps({"p": i * 0.5, "e": i, "ts": BASE_MS + i})


def expected_point(i: int) -> Point:
    line, meter = TOPICS[i % len(TOPICS)]
    return Point(
        "energy",
        {"power_w": i * 0.5, "energy_kwh": float(i)},
        {"line": line, "meter": meter},
        (BASE_MS + i) * 1_000_000,
    )


def expected_samples(indexes: range | list[int]) -> set[Sample]:
    samples = set()
    for i in indexes:
        line, meter = TOPICS[i % len(TOPICS)]
        tags = (("line", line), ("meter", meter))
        samples.add(Sample("energy_power_w", tags, BASE_MS + i, i * 0.5))
        samples.add(Sample("energy_energy_kwh", tags, BASE_MS + i, float(i)))
    return samples


def stored_samples(store: VictoriaMetrics) -> list[Sample]:
    return store.samples('{__name__=~"energy_.*"}')


def assert_exact_samples(stored: list[Sample], expected: set[Sample]) -> None:
    """Same set; a duplicate sample is allowed only with the same value (an exact overwrite)."""
    assert set(stored) == expected, f"{len(expected - set(stored))} missing, {len(set(stored) - expected)} unexpected"
    values: dict[tuple[str, tuple[tuple[str, str], ...], int], set[float]] = {}
    for sample in stored:
        values.setdefault((sample.name, sample.tags, sample.time_ms), set()).add(sample.value)
    assert all(len(v) == 1 for v in values.values())


def history_keys(folder: Path) -> set[tuple[int, str, str, str, Any]]:
    return {(v.time, v.tags["line"], v.tags["meter"], v.field, v.value) for v in read_history(folder, "energy")}


def expected_history(indexes: range | list[int]) -> set[tuple[int, str, str, str, Any]]:
    rows = set()
    for i in indexes:
        p = expected_point(i)
        for field, value in p.fields.items():
            rows.add((p.time, p.tags["line"], p.tags["meter"], field, value))
    return rows


def unique_indexes(stored: list[Sample]) -> set[int]:
    return {s.time_ms - BASE_MS for s in stored if s.name == "energy_power_w"}


# --- configuration and gateway processes ---------------------------------------------------------


def influx_v1(server: Influxd, **extra: Any) -> dict[str, Any]:
    return {"name": "influx", "type": "influxdb", "api": "v1", "url": server.url, "database": "test", **extra}


def influx_v2(server: VictoriaMetrics | str) -> dict[str, Any]:
    url = server if isinstance(server, str) else server.url
    return {"name": "influx", "type": "influxdb", "url": url, "org": "lab", "bucket": "machines", "token": "t"}


def write_gateway_config(
    folder: Path,
    broker: Mosquitto,
    influx: dict[str, Any],
    *,
    http_port: int | None = None,
    buffer: dict[str, Any] | None = None,
    batch_size: int = 5000,
    name: str = "gateway.yaml",
) -> Path:
    """The pilot set-up: the contract's MQTT connector → historian + InfluxDB, each with its buffer."""
    config = {
        "gateway": {
            "name": "no-loss",
            "data_dir": str(folder / "data"),
            "shutdown_timeout": "20s",
            "http": {"listen": f"127.0.0.1:{http_port}"} if http_port else {"enabled": False},
            "buffer": {"path": str(folder / "buffer"), **(buffer or {})},
        },
        "sinks": [
            {"name": "local", "type": "historian", "path": str(folder / "history.db"), "flush_interval": "100ms"},
            {"batch_size": batch_size, "flush_interval": "100ms", **influx},
        ],
        "connectors": [contract_energy_connector(broker.url)],
    }
    path = folder / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def source(gateway: Gateway) -> Any:
    return next(s for s in gateway.sources if s.name == "energy")


async def subscribed(gateway: Gateway) -> None:
    await async_wait_until(
        lambda: source(gateway).status.state is State.RUNNING and source(gateway).status.detail.get("subscribed"),
        timeout=30,
        message="MQTT connector connected and subscribed",
    )


def influx_status(gateway: Gateway) -> Any:
    return gateway.routes["influx"].status


class GatewayProcess:
    """``gateway run`` in its own process (so it can be SIGKILLed and its memory measured)."""

    def __init__(self, config: Path, http_port: int, log: Path) -> None:
        self.config, self.http_port, self.log_path = config, http_port, log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gateway.cli", "run", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.config.parent,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        wait_until(
            lambda: self._alive() and (self.component("energy") or {}).get("detail", {}).get("subscribed"),
            timeout=60,
            message=f"gateway running and subscribed (log: {self.log_path})",
        )

    def _alive(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"the gateway exited with {self.process.returncode}:\n{self.log_tail()}")
        return True

    def component(self, name: str) -> dict[str, Any] | None:
        try:
            url = f"http://127.0.0.1:{self.http_port}/api/components/{name}"
            with urllib.request.urlopen(url, timeout=5) as response:
                found: list[dict[str, Any]] = json.loads(response.read())
                return found[0]
        except (OSError, urllib.error.URLError, ValueError, IndexError):
            return None

    def counter(self, name: str, counter: str) -> int:
        component = self.component(name)
        return int(component["counters"].get(counter, 0)) if component else -1

    def rss(self) -> int:
        assert self.process is not None
        return int(psutil.Process(self.process.pid).memory_info().rss)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, timeout=30)

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@pytest.fixture
def gateway_process(tmp_path: Path) -> Iterator[list[GatewayProcess]]:
    """Gateway processes started by a test; each is stopped at the end."""
    processes: list[GatewayProcess] = []
    yield processes
    for process in processes:
        process.stop()


async def stream(publisher: Publisher, indexes: range, rate: float) -> None:
    """Publish at a steady ``rate`` (messages/s), as sensors do."""
    started = time.monotonic()
    for n, i in enumerate(indexes):
        publisher.publish(topic(i), payload(i))
        if n % 25 == 24:
            await asyncio.sleep(max(0.0, started + (n + 1) / rate - time.monotonic()))


class RssSampler:
    """Samples the gateway's RSS (psutil) on a thread, whatever the test is waiting for meanwhile."""

    def __init__(self, gateway: GatewayProcess, interval: float = 0.25) -> None:
        self.gateway, self.interval = gateway, interval
        self.samples: list[tuple[float, int]] = []  # (seconds since start, RSS bytes)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        started = time.monotonic()
        while True:
            self.samples.append((time.monotonic() - started, self.gateway.rss()))
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def since(self, at: float) -> list[int]:
        return [rss for t, rss in self.samples if t >= at]


async def sample_depth(status: Any, into: list[int], until: asyncio.Event, interval: float) -> None:
    """Record the buffer depth the sink reports every ``interval`` until ``until`` is set."""
    while not until.is_set():
        into.append(status.detail["depth_points"])
        await asyncio.sleep(interval)


# --- the tests ---------------------------------------------------------------------------------------


def opcua_connector(endpoint: str) -> dict[str, Any]:
    return {
        "name": "cnc-01",
        "type": "opcua",
        "endpoint": endpoint,
        "measurement": "machine",
        "tags": {"line": "A", "machine": "cnc-01"},
        # queue_size: the ~2 changes per node between two publishes are all reported, none replaced.
        "subscription": {"publishing_interval": "200ms", "sampling_interval": "100ms", "queue_size": 50},
        "nodes": [
            {"browse": "Objects/Machine", "recursive": True},
            {"browse": "Objects/Bench", "recursive": True, "field_prefix": "bench_"},
        ],
    }


BENCH_ITEMS = 20  # Objects/Bench/GroupNN/TagNNNNN: value = tick + item / 100000 on every tick


def assert_every_simulator_tick(values: list[Any]) -> None:
    """The simulator's own record: bench item k holds ``tick + k/100000`` at tick 0, 1, 2 … (one
    tick per interval, never skipped). Every tick from the first value seen to the last must be
    stored for every item, once: a value lost anywhere before the stores (server queue, client,
    connector, pipeline, fan-out) is a gap here."""
    ticks: dict[str, list[int]] = {}
    for value in values:
        if value.field.startswith("bench_"):
            ticks.setdefault(value.field, []).append(math.floor(value.value))
    assert len(ticks) == BENCH_ITEMS, sorted(ticks)
    for field, seen in ticks.items():
        assert len(seen) >= 30, (field, len(seen))
        missing = sorted(set(range(min(seen), max(seen) + 1)) - set(seen))
        assert not missing and len(seen) == len(set(seen)), (field, missing[:20], len(seen) - len(set(seen)))


def as_sample(value: Any) -> Sample:
    """A historian value as VictoriaMetrics stores it: a number (text becomes 0), at ms."""
    number = 0.0 if isinstance(value.value, str) else float(value.value)
    return Sample(
        f"{value.measurement}_{value.field}", tuple(sorted(value.tags.items())), value.time // 1_000_000, number
    )


def assert_close_samples(stored: list[Sample], expected: list[Sample]) -> None:
    """Same series, tags and ms timestamps; values equal to VictoriaMetrics' ~12 significant digits."""

    def grouped(samples: list[Sample]) -> dict[tuple[str, tuple[tuple[str, str], ...], int], list[float]]:
        result: dict[tuple[str, tuple[tuple[str, str], ...], int], set[float]] = {}
        for sample in samples:
            result.setdefault((sample.name, sample.tags, sample.time_ms), set()).add(sample.value)
        return {key: sorted(values) for key, values in result.items()}

    got, want = grouped(stored), grouped(expected)
    assert got.keys() == want.keys(), f"{len(want.keys() - got.keys())} missing, {len(got.keys() - want.keys())} extra"
    for key, values in want.items():
        assert len(got[key]) == len(values), (key, got[key], values)
        assert all(math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12) for a, b in zip(got[key], values, strict=True)), (
            key,
            got[key],
            values,
        )


@pytest.mark.slow
async def test_50000_points_from_mqtt_land_in_victoriametrics_and_the_historian(
    mosquitto: Mosquitto, victoriametrics: VictoriaMetrics, opcua_simulator: Any, tmp_path: Path
) -> None:
    count = 50_000
    path = write_gateway_config(tmp_path, mosquitto, influx_v2(victoriametrics))
    simulator = opcua_simulator(machines=1, bad_rate=0, interval=0.1, bench_items=BENCH_ITEMS)
    data = yaml.safe_load(path.read_text())
    data["connectors"].append(opcua_connector(simulator.endpoint(0)))
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    async with Gateway(load_config(path)) as gateway:
        await subscribed(gateway)

        def publish_all() -> int:
            with Publisher(mosquitto) as publisher:
                for i in range(count):
                    publisher.publish(topic(i), payload(i))
                return publisher.wait(timeout=180)

        # On a thread: the gateway's event loop (this one) keeps running meanwhile.
        assert await asyncio.to_thread(publish_all) == count
        # Every MQTT message stored (the sinks' own counters include the OPC UA points too).
        await async_wait_until(
            lambda: source(gateway).status.counters.get("stored", 0) >= count,
            timeout=180,
            message="50,000 MQTT messages stored",
        )
        await async_wait_until(
            lambda: sum(v.field.startswith("bench_") for v in read_history(tmp_path, "machine")) >= 30 * BENCH_ITEMS,
            timeout=120,
            interval=0.5,
            message="30 ticks of every simulator bench item in the historian",
        )
        assert influx_status(gateway).counters["points_dropped"] == 0
    # Stopping drained both sinks: the same MQTT points in both stores, exactly as published,
    # and the same OPC UA values in both (VictoriaMetrics: numbers at ms).
    samples = stored_samples(victoriametrics)
    assert_exact_samples(samples, expected_samples(range(count)))
    assert history_keys(tmp_path) == expected_history(range(count))
    machine = read_history(tmp_path, "machine")
    assert len(machine) >= 1_000
    assert_every_simulator_tick(machine)  # nothing lost before the fan-out
    assert_close_samples(victoriametrics.samples('{__name__=~"machine_.*"}'), [as_sample(v) for v in machine])


@pytest.mark.slow
async def test_the_store_killed_for_20s_during_a_steady_stream_loses_nothing(
    mosquitto: Mosquitto, influxd: Influxd, tmp_path: Path
) -> None:
    rate = 500.0
    config = load_config(write_gateway_config(tmp_path, mosquitto, influx_v1(influxd)))
    outage_depths: list[int] = []  # sampled while the store is down
    drain_depths: list[int] = []  # sampled from its restart until the buffer is empty
    async with Gateway(config) as gateway:
        gateway.routes["influx"].GAUGE_INTERVAL = 0.2
        await subscribed(gateway)
        status = influx_status(gateway)
        with Publisher(mosquitto) as publisher:
            await stream(publisher, range(2_500), rate)
            await async_wait_until(lambda: status.counters["points_written"] >= 2_000, timeout=30)
            influxd.kill()  # SIGKILL, like a crash or a power cut of the store's host
            outage_done = asyncio.Event()
            sampling = asyncio.create_task(sample_depth(status, outage_depths, outage_done, 0.5))
            await stream(publisher, range(2_500, 12_500), rate)  # 20 s of data
            outage_done.set()
            await sampling
            assert status.state is State.BACKOFF
            influxd.start()
            drained = asyncio.Event()
            sampling = asyncio.create_task(sample_depth(status, drain_depths, drained, 0.1))
            await stream(publisher, range(12_500, 15_000), rate)
            assert publisher.wait() == 15_000
            # Wait on what the store holds: a batch the store took but never answered before
            # its SIGKILL is sent again and counted twice in points_written.
            await async_wait_until(
                lambda: asyncio.to_thread(lambda: influxd.count("energy", "power_w") >= 15_000),
                timeout=60,
                interval=0.5,
                message="every point in the restarted store",
            )
            await async_wait_until(lambda: status.detail["depth_points"] == 0, timeout=30, message="the buffer drained")
            drained.set()
            await sampling
        drain_depths.append(status.detail["depth_points"])
        assert status.as_dict()["state"] == State.RUNNING.value  # (recovered since the BACKOFF above)
        assert status.counters["points_dropped"] == 0
    # The depth rose during the outage (one point per message per sink, none written) ...
    # (The first sample may still include a batch in flight when the store died.)
    assert outage_depths[1:] == sorted(outage_depths[1:]) and outage_depths[-1] > 8_000, outage_depths
    # ... kept rising until the sink's next retry found the store back, then fell to zero while
    # the backlog drained (new messages keep arriving meanwhile, so it may wobble near zero).
    peak = len(drain_depths) - 1 - drain_depths[::-1].index(max(drain_depths))  # the last sample at the top
    assert drain_depths[peak] >= outage_depths[-1], (outage_depths, drain_depths)
    assert drain_depths[: peak + 1] == sorted(drain_depths[: peak + 1]), drain_depths
    assert drain_depths[-1] == 0 and peak < len(drain_depths) - 1, drain_depths
    stored = influxd.read_points("energy")
    assert len(stored) == 15_000
    assert {(p.time, p.tags["meter"]): p for p in stored} == {
        (p.time, p.tags["meter"]): p for p in map(expected_point, range(15_000))
    }
    assert history_keys(tmp_path) == expected_history(range(15_000))


@pytest.mark.slow
def test_the_gateway_killed_mid_stream_loses_no_qos1_message(
    mosquitto: Mosquitto, victoriametrics: VictoriaMetrics, tmp_path: Path, gateway_process: list[GatewayProcess]
) -> None:
    count = 20_000
    port = free_port()
    config = write_gateway_config(tmp_path, mosquitto, influx_v2(victoriametrics), http_port=port)
    first = GatewayProcess(config, port, tmp_path / "gateway-1.log")
    gateway_process.append(first)
    first.start()
    with Publisher(mosquitto) as publisher:
        for i in range(count):
            publisher.publish(topic(i), payload(i))
            if i == count // 2:
                wait_until(lambda: first.counter("energy", "stored") >= 3_000, timeout=60, message="3,000 stored")
                first.kill()  # kill -9 in the middle of the stream
        assert publisher.wait(timeout=120) == count  # the broker has every message
    assert first.process is not None and first.process.returncode == -signal.SIGKILL
    second = GatewayProcess(config, port, tmp_path / "gateway-2.log")
    gateway_process.append(second)
    second.start()
    wait_until(
        lambda: len(unique_indexes(stored_samples(victoriametrics))) >= count,
        timeout=120,
        interval=0.5,
        message="every message stored after the restart",
    )
    second.stop()
    assert_exact_samples(stored_samples(victoriametrics), expected_samples(range(count)))
    assert history_keys(tmp_path) == expected_history(range(count))


@pytest.mark.slow
async def test_a_graceful_broker_restart_loses_no_accepted_message(
    mosquitto: Mosquitto, victoriametrics: VictoriaMetrics, tmp_path: Path
) -> None:
    count = 10_000
    config = load_config(write_gateway_config(tmp_path, mosquitto, influx_v2(victoriametrics)))
    async with Gateway(config) as gateway:
        await subscribed(gateway)
        with Publisher(mosquitto, client_id="sensor-gw") as publisher:
            accepted: set[int] = set()  # message ids the broker acknowledged (PUBACK)
            publisher.client.on_publish = lambda client, userdata, mid, reason, properties: accepted.add(mid)
            producing = asyncio.create_task(stream(publisher, range(count), 1_000.0))
            await async_wait_until(lambda: source(gateway).status.counters.get("stored", 0) >= 2_000, timeout=30)
            await asyncio.to_thread(mosquitto.restart)  # SIGTERM: the broker saves its sessions and queues
            await producing
            # paho keeps what was published while the broker was away and sends it on reconnecting:
            # wait until the broker has acknowledged (accepted) every message.
            await async_wait_until(
                lambda: len(accepted) == count,
                timeout=120,
                interval=0.2,
                message="every message accepted by the broker",
            )
        # Wait on what the stores hold, not on counters: the broker redelivers the messages that
        # were in flight when it stopped, so points_written passes ``count`` with duplicates
        # before the last messages have arrived.
        await async_wait_until(
            lambda: asyncio.to_thread(lambda: len(unique_indexes(stored_samples(victoriametrics))) >= count),
            timeout=120,
            interval=0.5,
            message="every accepted message stored in VictoriaMetrics",
        )
        await async_wait_until(
            lambda: asyncio.to_thread(lambda: history_keys(tmp_path) >= expected_history(range(count))),
            timeout=60,
            interval=0.5,
            message="every accepted message stored in the historian",
        )
    assert_exact_samples(stored_samples(victoriametrics), expected_samples(range(count)))
    assert history_keys(tmp_path) == expected_history(range(count))


@pytest.mark.slow
def test_the_disk_bound_drops_the_oldest_counts_exactly_and_memory_stays_flat(
    mosquitto: Mosquitto, victoriametrics: VictoriaMetrics, tmp_path: Path, gateway_process: list[GatewayProcess]
) -> None:
    count = 40_000
    victoriametrics.stop()  # the store is down for the whole stream
    port = free_port()
    config = write_gateway_config(
        tmp_path,
        mosquitto,
        influx_v2(victoriametrics),
        http_port=port,
        buffer={"max_size": "1MiB", "overflow": "drop_oldest"},
    )
    gateway = GatewayProcess(config, port, tmp_path / "gateway.log")
    gateway_process.append(gateway)
    gateway.start()

    def settled() -> bool:
        """The gateway has handled every message: in the historian, and buffered or dropped for InfluxDB."""
        sink = gateway.component("influx") or {}
        handled = sink.get("detail", {}).get("depth_points", 0) + sink.get("counters", {}).get("points_dropped", 0)
        return gateway.counter("energy", "stored") >= count and handled == count

    # RSS is sampled on a thread from the first message until the gateway has stored or dropped
    # everything: the publisher only waits for the broker, so the gateway is still catching up
    # (and dropping) after the last PUBACK, and that stretch is measured too.
    with RssSampler(gateway) as memory:
        with Publisher(mosquitto) as publisher:
            for i in range(count):
                publisher.publish(topic(i), payload(i))
                if i == count // 10:
                    publisher.wait()
                    warmed_up = memory.samples[-1][0]  # 4,000 messages in: imports and caches are done
            assert publisher.wait() == count
        published = memory.samples[-1][0]
        # Collection never stopped: every message reached the historian while InfluxDB was down.
        wait_until(settled, timeout=120, interval=0.2, message="every message stored, buffered or dropped")
        handled_at = len(memory.samples)
        wait_until(lambda: len(memory.samples) >= handled_at + 2, timeout=10, message="two samples after it")
    assert gateway.counter("influx", "points_dropped") > 0
    sink = gateway.component("influx")
    assert sink is not None and sink["state"] == "backoff"
    assert sink["detail"]["disk_bytes"] <= 2**20
    victoriametrics.start()
    wait_until(
        lambda: (gateway.component("influx") or {}).get("detail", {}).get("depth_points") == 0,
        timeout=60,
        message="the buffer drained",
    )
    dropped = gateway.counter("influx", "points_dropped")
    written = gateway.counter("influx", "points_written")
    gateway.stop()
    log = gateway.log_path.read_text(errors="replace")  # the whole log, not its tail
    stored = unique_indexes(stored_samples(victoriametrics))
    assert written == len(stored)
    assert len(stored) + dropped == count  # every point is either stored or counted as dropped
    assert set(range(count - 5_000, count)) <= stored  # the newest survive; the oldest went
    assert log.count("buffer full") == 1, log  # logged once for the episode
    assert history_keys(tmp_path) == expected_history(range(count))
    # Memory stays flat while the buffer is full and dropping, over the whole window: publishing
    # and the catching-up after it, until everything was stored or dropped (no growth with the backlog).
    window = memory.since(warmed_up)
    mib = [r // 2**20 for r in window]
    assert memory.samples[-1][0] > published and len(window) >= 8, (published, memory.samples)
    assert max(window) - window[0] < 24 * 2**20, mib
    # and no trend: the last quarter of the window is not above the first quarter.
    quarter = max(1, len(window) // 4)
    assert max(window[-quarter:]) - max(window[:quarter]) < 8 * 2**20, mib


async def test_a_point_the_store_rejects_is_reported_and_its_neighbours_land(
    mosquitto: Mosquitto, influxd: Influxd, tmp_path: Path
) -> None:
    config = load_config(write_gateway_config(tmp_path, mosquitto, influx_v1(influxd), batch_size=500))
    bad = 150  # a meter that sends text where a number was stored: a field type conflict
    async with Gateway(config) as gateway:
        await subscribed(gateway)
        status = influx_status(gateway)
        with Publisher(mosquitto) as publisher:
            for i in range(100):
                publisher.publish(topic(i), payload(i))
            publisher.wait()
            await async_wait_until(lambda: status.counters["points_written"] >= 100, timeout=30)
            for i in range(100, 300):
                body = orjson.dumps({"p": "n/a", "e": i, "ts": BASE_MS + i}) if i == bad else payload(i)
                publisher.publish(topic(i), body)
            publisher.wait()
        await async_wait_until(
            lambda: status.counters["points_written"] + status.counters["points_rejected"] >= 300,
            timeout=30,
            message="every point written or rejected",
        )
        assert status.counters["points_rejected"] == 1
        assert "field type conflict" in (status.last_error or "")
        assert 'power_w="n/a"' in (status.last_error or "")  # the first rejected line is shown
        assert status.state is State.RUNNING
    stored = {p.time: p for p in influxd.read_points("energy")}
    assert sorted(stored) == [expected_point(i).time for i in range(300) if i != bad]
    assert all(stored[expected_point(i).time] == expected_point(i) for i in range(300) if i != bad)


async def test_wrong_credentials_lose_nothing_and_the_right_ones_drain_the_buffer(
    mosquitto: Mosquitto, influxd_auth: Influxd, tmp_path: Path
) -> None:
    wrong = load_config(
        write_gateway_config(tmp_path, mosquitto, influx_v1(influxd_auth, username="admin", password="not-it"))
    )
    async with Gateway(wrong) as gateway:
        await subscribed(gateway)
        status = influx_status(gateway)
        with Publisher(mosquitto) as publisher:
            for i in range(2_000):
                publisher.publish(topic(i), payload(i))
            publisher.wait()
        await async_wait_until(lambda: status.state is State.UNAUTHORIZED, timeout=30, message="unauthorized")
        await async_wait_until(lambda: status.detail["depth_points"] == 2_000, timeout=30, message="all buffered")
        assert status.counters["points_written"] == 0
        await async_wait_until(lambda: len(history_keys(tmp_path)) == 4_000, timeout=30)  # the historian has all
    assert influxd_auth.count("energy", "power_w") == 0
    right = load_config(
        write_gateway_config(
            tmp_path,
            mosquitto,
            influx_v1(influxd_auth, username="admin", password="admin-secret"),
            name="fixed.yaml",
        )
    )
    async with Gateway(right) as gateway:
        status = influx_status(gateway)
        await async_wait_until(lambda: status.detail["depth_points"] == 0, timeout=30, message="buffer drained")
        assert status.counters["points_written"] == 2_000
    stored = influxd_auth.read_points("energy")
    assert sorted(stored, key=lambda p: p.time) == [expected_point(i) for i in range(2_000)]
