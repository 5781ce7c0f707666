"""MQTT faults with a real Mosquitto: broker restart, gateway restart, SIGTERM, refused connection, store down.

The promise checked here: a QoS 1 message published to the broker ends up in the historian,
whatever stops in between — the broker, the gateway (cleanly or by signal), or the store —
because the gateway acknowledges a message only once its points are stored and keeps a
persistent session.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

import orjson
import pytest
import yaml
from pydantic import BaseModel

from gateway.component import RuntimeContext, Sink, State
from gateway.config import config_model, load_config
from gateway.errors import SinkUnavailable
from gateway.point import Point
from gateway.registry import register
from gateway.runtime import Gateway
from gateway.settings import SinkConfig
from tests.fixtures.mosquitto import Mosquitto, Publisher, read_history, write_config
from tests.helpers import async_wait_until, stop_process, wait_until

BASE_MS = 1_714_564_800_000
OUTAGE_SECONDS = 5.0


def connector(broker: Mosquitto, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "name": "energy",
        "type": "mqtt",
        "broker": broker.url,
        "client_id": "gw-fault-test",
        "qos": 1,
        "reconnect_max": "2s",
        "topics": [
            {
                "filter": "factory/+/energy/+",
                "tags_from_topic": {"line": 1, "meter": 3},
                "measurement": "energy",
                "time": {"path": "ts", "unit": "ms"},
                "fields": {"power_w": "p", "energy_kwh": "e"},
            }
        ],
    }
    config.update(overrides)
    return config


def payload(i: int) -> bytes:
    return orjson.dumps({"p": i * 0.5, "e": i, "ts": BASE_MS + i})


def topic(i: int) -> str:
    return f"factory/L{i % 2}/energy/m{i % 10}"


def landed(folder: Path) -> set[int]:
    """Message numbers whose two fields are both in the historian."""
    fields: dict[int, set[str]] = {}
    for value in read_history(folder, "energy"):
        i = value.time // 1_000_000 - BASE_MS
        assert value.tags == {"line": f"L{i % 2}", "meter": f"m{i % 10}"}
        assert value.value == (i * 0.5 if value.field == "power_w" else float(i))
        fields.setdefault(i, set()).add(value.field)
    return {i for i, names in fields.items() if names == {"power_w", "energy_kwh"}}


def source_status(gateway: Gateway) -> Any:
    return gateway.sources[0].status


async def running(gateway: Gateway) -> None:
    status = source_status(gateway)
    await async_wait_until(
        lambda: status.state is State.RUNNING and status.detail.get("subscribed"),
        timeout=30,
        message="connector connected and subscribed",
    )


class Stream:
    """Publishes numbered QoS 1 messages at a steady rate on a thread until stopped."""

    def __init__(self, broker: Mosquitto, rate: float = 200.0, start: int = 0) -> None:
        self.publisher = Publisher(broker, client_id="test-stream")
        self.rate = rate
        self.next = start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mqtt-test-stream", daemon=True)

    def _run(self) -> None:
        began = time.monotonic()
        sent = 0
        while not self._stop.is_set():
            due = int((time.monotonic() - began) * self.rate) - sent
            for _ in range(max(0, due)):
                self.publisher.publish(topic(self.next), payload(self.next))
                self.next += 1
                sent += 1
            self._stop.wait(0.01)

    def start(self) -> None:
        self._thread.start()

    def __enter__(self) -> Self:
        return self

    def stop(self) -> int:
        """Stop publishing, wait until the broker has acknowledged everything; return how many were sent."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)
        self.publisher.wait()
        return self.next

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)
        self.publisher.close()


def observe(seconds: float, check: Any) -> None:
    """Assert ``check()`` stays true for ``seconds`` (the length of an outage scenario)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        assert check()
        time.sleep(0.1)


async def aobserve(seconds: float, check: Any) -> None:
    import asyncio

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        assert check()
        await asyncio.sleep(0.1)


# --- broker down at start, broker restart ----------------------------------------------------------


async def test_broker_down_at_start_is_retried_and_shown(tmp_path: Path, mosquitto_factory: Any) -> None:
    broker = mosquitto_factory()
    broker.stop()
    config = load_config(write_config(tmp_path, [connector(broker)]))
    async with Gateway(config) as gateway:
        status = source_status(gateway)
        await async_wait_until(
            lambda: status.state is State.RECONNECTING and status.last_error, timeout=30, message="reconnecting"
        )
        assert status.last_error.startswith(f"connection refused: broker at 127.0.0.1:{broker.port} unreachable")
        assert status.as_dict()["state"] == "reconnecting"
        broker.start()
        await running(gateway)
        with Publisher(broker) as publisher:
            for i in range(20):
                publisher.publish(topic(i), payload(i))
            publisher.wait()
        await async_wait_until(lambda: landed(tmp_path) == set(range(20)), timeout=30, message="20 messages landed")


@pytest.mark.slow
async def test_broker_restart_reconnects_and_resumes(mosquitto: Mosquitto, tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, [connector(mosquitto)]))
    async with Gateway(config) as gateway:
        await running(gateway)
        status = source_status(gateway)
        with Publisher(mosquitto) as publisher:
            for i in range(200):
                publisher.publish(topic(i), payload(i))
            publisher.wait()
        await async_wait_until(lambda: status.counters["stored"] >= 200, timeout=30)

        mosquitto.stop()
        down_since = time.monotonic()
        await async_wait_until(
            lambda: status.state is State.RECONNECTING and "refused" in (status.last_error or ""),
            timeout=15,
            message="state reconnecting with the refused connection as last_error",
        )
        assert status.last_error.startswith(f"connection refused: broker at 127.0.0.1:{mosquitto.port}")
        await aobserve(OUTAGE_SECONDS - (time.monotonic() - down_since), lambda: status.state is State.RECONNECTING)

        mosquitto.start()
        await running(gateway)
        assert status.counters["reconnects"] == 1
        with Publisher(mosquitto) as publisher:
            for i in range(200, 400):
                publisher.publish(topic(i), payload(i))
            publisher.wait()
        # Wait on what landed: messages stored just before the stop whose PUBACK never left are
        # redelivered after it, so the stored counter can reach 400 with duplicates first.
        await async_wait_until(
            lambda: landed(tmp_path) == set(range(400)), timeout=30, interval=0.2, message="400 messages landed"
        )
    assert landed(tmp_path) == set(range(400))


# --- gateway restart: the persistent session keeps what was published meanwhile ---------------------


@pytest.mark.slow
async def test_gateway_stopped_while_publishing_gets_everything_after_restart(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    config = load_config(write_config(tmp_path, [connector(mosquitto)]))
    with Stream(mosquitto, rate=300) as stream:
        async with Gateway(config) as gateway:
            await running(gateway)  # the session and its subscription exist from here on
            stream.start()
            await async_wait_until(lambda: source_status(gateway).counters["stored"] >= 300, timeout=30)
        before_restart = len(landed(tmp_path))
        await aobserve(OUTAGE_SECONDS, lambda: stream._thread.is_alive())  # the gateway is away for 5 s
        published_while_away = stream.next - before_restart
        async with Gateway(config) as gateway:
            await running(gateway)
            status = source_status(gateway)
            await async_wait_until(lambda: status.counters["stored"] >= published_while_away, timeout=60)
            total = stream.stop()
            await async_wait_until(lambda: len(landed(tmp_path)) >= total, timeout=60, message=f"{total} landed")
    assert published_while_away >= 500
    assert landed(tmp_path) == set(range(total))


# --- SIGTERM: exit 0 after flushing; nothing received is lost ---------------------------------------


@pytest.mark.slow
def test_sigterm_during_ingestion_flushes_and_exits_0(mosquitto: Mosquitto, tmp_path: Path) -> None:
    config_path = write_config(tmp_path, [connector(mosquitto)], flush_interval="1s")
    log_path = tmp_path / "gateway.log"
    gateway_bin = Path(sys.executable).parent / "gateway"
    with Stream(mosquitto, rate=1000) as stream, log_path.open("wb") as log:
        process = subprocess.Popen([str(gateway_bin), "run", str(config_path)], stderr=log, cwd=tmp_path)
        try:
            wait_until(lambda: "subscribed to 'factory/+/energy/+'" in log_path.read_text(), timeout=60)
            stream.start()
            wait_until(lambda: len(landed(tmp_path)) >= 2000, timeout=60, message="ingestion under way")
            process.terminate()  # SIGTERM
            try:
                assert process.wait(60) == 0, log_path.read_text()[-3000:]
            except subprocess.TimeoutExpired:
                pytest.fail(f"the gateway did not exit within 60s after SIGTERM:\n{log_path.read_text()[-3000:]}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\ngateway log:\n{log_path.read_text()[-3000:]}") from None
        finally:
            stop_process(process)
        text = log_path.read_text()
        match = re.search(r"disconnected: (\d+) messages received, (\d+) stored, 0 malformed", text)
        assert match, text[-3000:]
        received, stored = int(match.group(1)), int(match.group(2))
        # Everything received before the signal was stored before the gateway exited.
        assert received == stored and stored >= 2000
        assert len(landed(tmp_path)) == stored
        total = stream.stop()
    # What was published after the signal waited in the broker for the next start.
    config = load_config(config_path)
    import asyncio

    async def drain() -> None:
        async with Gateway(config) as gateway:
            await running(gateway)
            await async_wait_until(
                lambda: len(landed(tmp_path)) >= total,
                timeout=60,
                message=f"{total} landed; status {gateway.sources[0].status.as_dict()}",
            )

    asyncio.run(drain())
    assert landed(tmp_path) == set(range(total))


# --- the store is down: nothing is acknowledged, so nothing is lost -----------------------------------


class DownConfig(SinkConfig):
    type: Literal["test-down"]


class DownSink(Sink):
    """A store that is never reachable."""

    async def write(self, points: Sequence[Point]) -> None:
        raise SinkUnavailable("test store is down")


def _down_factory(config: BaseModel, context: RuntimeContext) -> Sink:
    assert isinstance(config, DownConfig)
    return DownSink(config.name, "test-down", context)


async def test_messages_are_acknowledged_only_after_storage(mosquitto: Mosquitto, tmp_path: Path) -> None:
    register("sink", "test-down", DownConfig, _down_factory)
    config_model.cache_clear()
    down_path = tmp_path / "down.yaml"
    down_path.write_text(
        yaml.safe_dump(
            {
                "gateway": {"name": "mqtt-test", "data_dir": str(tmp_path / "data"), "shutdown_timeout": "1s"},
                "sinks": [{"name": "down", "type": "test-down"}],
                "connectors": [connector(mosquitto)],
            }
        )
    )
    async with Gateway(load_config(down_path)) as gateway:
        await running(gateway)
        with Publisher(mosquitto) as publisher:
            for i in range(100):
                publisher.publish(topic(i), payload(i))
            publisher.wait()
        status = source_status(gateway)
        await async_wait_until(lambda: status.counters["received"] >= 100, timeout=30)
        assert status.counters["stored"] == 0
    # The store never took them: the broker still holds all 100 for the same client id.
    async with Gateway(load_config(write_config(tmp_path, [connector(mosquitto)]))) as gateway:
        await running(gateway)
        await async_wait_until(lambda: landed(tmp_path) == set(range(100)), timeout=30, message="100 landed")


@pytest.mark.slow
async def test_broker_that_lost_its_sessions_gets_the_subscriptions_again(
    mosquitto: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A broker restarted without its persistence file must not leave the gateway silent (no session to resume)."""
    config = load_config(write_config(tmp_path, [connector(mosquitto)]))
    async with Gateway(config) as gateway:
        await running(gateway)
        status = source_status(gateway)
        mosquitto.stop()
        (mosquitto.root / "mosquitto.db").unlink()
        await async_wait_until(lambda: status.state is State.RECONNECTING, timeout=15)
        mosquitto.start()
        await running(gateway)
        with Publisher(mosquitto) as publisher:
            for i in range(50):
                publisher.publish(topic(i), payload(i))
            publisher.wait()
        await async_wait_until(lambda: landed(tmp_path) == set(range(50)), timeout=30, message="50 landed")
    assert "the broker had no session for client id 'gw-fault-test'" in caplog.text
