"""Runtime figures: ``python -m bench.bench_runtime [--quick]``.

What a pilot firm's small gateway box pays for the runtime, measured on ``gateway run`` as
its own process (the web server on, as in production), against a real Mosquitto:

1. **Steady 1,000 msg/s, QoS 1** (two fields per message, 100 topics), into the embedded
   historian, and into an InfluxDB-protocol store (VictoriaMetrics) through the durable disk
   buffer: the gateway's CPU in % of one core, median and range of ``--repeat`` runs. Beside it,
   in the same run, the ceiling: a bare paho subscriber receiving the same stream (automatic
   acknowledgements, no decoding, nothing stored) — what merely receiving costs in Python.
2. **Idle**: connected, subscribed, nothing arriving.
3. **Reload** while 1,000 msg/s flow: SIGHUP (a) adding a second connector, (b) changing the
   streaming connector itself (it restarts and resumes its persistent session). The time from
   the signal to "applied" (the gateway's own figure, and seen from outside through the API),
   the longest pause in the streaming connector's stored-message counter around the reload (the
   counter is polled every 50 ms, so ~0.1 s is the resolution), and loss: every published
   message must be in the historian.

Figures go to stdout; docs/PERFORMANCE.md records them with the command and the machine's load.
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import yaml

from bench.bench_mqtt import loss_and_duplicates, publish_paced
from tests.fixtures.mosquitto import Mosquitto
from tests.fixtures.victoriametrics import VictoriaMetrics
from tests.helpers import free_port

PYTHON = sys.executable
TOPICS = 100


def connector(name: str, port: int, client_id: str, topic_filter: str = "bench/+") -> dict[str, Any]:
    return {
        "name": name,
        "type": "mqtt",
        "broker": f"mqtt://127.0.0.1:{port}",
        "client_id": client_id,
        "qos": 1,
        "topics": [
            {
                "filter": topic_filter,
                "tags_from_topic": {"meter": 1},
                "measurement": "energy",
                "time": {"path": "ts", "unit": "ms"},
                "fields": {"power_w": "p", "energy_kwh": "e"},
            }
        ],
    }


def write_config(folder: Path, port: int, http_port: int, sinks: list[dict[str, Any]]) -> Path:
    config = {
        "gateway": {
            "name": "bench-runtime",
            "data_dir": str(folder / "data"),
            "http": {"listen": f"127.0.0.1:{http_port}"},
            "shutdown_timeout": "20s",
        },
        "sinks": sinks,
        "connectors": [connector("meters", port, "bench-runtime")],
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "gateway.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def historian(folder: Path) -> dict[str, Any]:
    return {"name": "local", "type": "historian", "path": str(folder / "history.db"), "flush_interval": "1s"}


def influx(store: VictoriaMetrics) -> dict[str, Any]:
    return {"name": "vm", "type": "influxdb", "url": store.url, "org": "o", "bucket": "b", "token": "t"}


class GatewayProcess:
    def __init__(self, config: Path, http_port: int) -> None:
        self.config, self.http_port = config, http_port
        self.log = config.parent / "gateway.log"
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [PYTHON, "-m", "gateway.cli", "run", str(config)], stderr=log, cwd=config.parent
            )
        deadline = time.monotonic() + 60
        while b"subscribed to" not in self.log.read_bytes():
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(self.log.read_text()[-2000:])
            time.sleep(0.05)
        self.ps = psutil.Process(self.process.pid)

    def api(self, path: str) -> Any:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=10) as response:
            return json.loads(response.read())

    def cpu_seconds(self) -> float:
        times = self.ps.cpu_times()
        return float(times.user + times.system)

    def stop(self) -> int:
        self.process.terminate()
        return self.process.wait(60)


def cpu_percent(cpu: Callable[[], float], seconds: float) -> float:
    c0, w0 = cpu(), time.perf_counter()
    time.sleep(seconds)
    return (cpu() - c0) / (time.perf_counter() - w0) * 100


BARE_SUBSCRIBER = r"""
import sys, time
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
port = int(sys.argv[1])
client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-bare", clean_session=False)
client.on_connect = lambda c, u, f, rc, p: c.subscribe("bench/+", qos=1)
client.connect("127.0.0.1", port)
client.loop_forever()
"""


def start_stream(port: int, seconds: float, rate: int) -> Any:
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    publisher = context.Process(target=publish_paced, args=(port, 0, rate, seconds, TOPICS, 1, out))
    publisher.start()
    return publisher, out


def steady(
    root: Path, sink: str, rate: int, seconds: float, repeat: int, warmup: float = 5.0
) -> tuple[list[float], list[float]]:
    gateway_cpu: list[float] = []
    bare_cpu: list[float] = []
    for run in range(repeat):
        folder = root / f"steady-{sink}-{run}"
        broker = Mosquitto(folder / "broker")
        broker.start()
        store = VictoriaMetrics(folder / "vm") if sink == "influx" else None
        if store is not None:
            store.start()
        http_port = free_port()
        sinks = [influx(store)] if store is not None else [historian(folder)]
        gateway = GatewayProcess(write_config(folder, broker.port, http_port, sinks), http_port)
        bare = subprocess.Popen([PYTHON, "-c", BARE_SUBSCRIBER, str(broker.port)])
        try:
            publisher, _ = start_stream(broker.port, seconds + warmup, rate)
            time.sleep(warmup)  # connections, first batches, the store's first writes
            bare_ps = psutil.Process(bare.pid)
            c0, b0, w0 = gateway.cpu_seconds(), sum(bare_ps.cpu_times()[:2]), time.perf_counter()
            time.sleep(seconds)
            wall = time.perf_counter() - w0
            gateway_cpu.append((gateway.cpu_seconds() - c0) / wall * 100)
            bare_cpu.append((sum(bare_ps.cpu_times()[:2]) - b0) / wall * 100)
            publisher.join(60)
        finally:
            bare.terminate()
            bare.wait(10)
            gateway.stop()
            if store is not None:
                store.stop()
            broker.stop()
    return gateway_cpu, bare_cpu


def idle(root: Path, seconds: float) -> float:
    folder = root / "idle"
    broker = Mosquitto(folder / "broker")
    broker.start()
    store = VictoriaMetrics(folder / "vm")
    store.start()
    http_port = free_port()
    gateway = GatewayProcess(
        write_config(folder, broker.port, http_port, [historian(folder), influx(store)]), http_port
    )
    try:
        time.sleep(3)
        return cpu_percent(gateway.cpu_seconds, seconds)
    finally:
        gateway.stop()
        store.stop()
        broker.stop()


def reload(root: Path, rate: int, seconds: float) -> None:
    folder = root / "reload"
    broker = Mosquitto(folder / "broker")
    broker.start()
    http_port = free_port()
    path = write_config(folder, broker.port, http_port, [historian(folder)])
    gateway = GatewayProcess(path, http_port)
    samples: list[tuple[float, int]] = []
    try:
        publisher, out = start_stream(broker.port, seconds, rate)
        started = time.monotonic()

        def stored() -> int:
            return int(gateway.api("/api/components/meters")[0]["counters"]["stored"])

        def poll_until(until: float) -> None:
            while time.monotonic() < until:
                samples.append((time.monotonic(), stored()))
                time.sleep(0.05)

        config = yaml.safe_load(path.read_text())

        def add_connector(config: dict[str, Any]) -> None:
            config["connectors"].append(connector("spare", broker.port, "bench-spare", "x/#"))

        def change_streaming_connector(config: dict[str, Any]) -> None:
            config["connectors"][0]["tags"] = {"site": "lab"}

        results = []
        for label, change in (
            ("a connector added", add_connector),
            ("the streaming connector changed (restarted)", change_streaming_connector),
        ):
            poll_until(time.monotonic() + seconds / 4)
            generation = gateway.api("/api/status")["gateway"]["config"]["generation"]
            change(config)
            path.write_text(yaml.safe_dump(config, sort_keys=False))
            signalled = time.monotonic()
            gateway.process.send_signal(signal.SIGHUP)
            while gateway.api("/api/status")["gateway"]["config"]["generation"] == generation:
                samples.append((time.monotonic(), stored()))
                time.sleep(0.01)
            seen = time.monotonic() - signalled
            last = gateway.api("/api/status")["gateway"]["config"]["last_reload"]
            poll_until(time.monotonic() + seconds / 4)
            window = [s for s in samples if signalled - 1.0 <= s[0] <= signalled + 3.0]
            pause = max((b[0] - a[0] for a, b in itertools.pairwise(window) if b[1] == a[1]), default=0.0)
            results.append((label, last["duration_seconds"], seen, last["changes"], pause))
        poll_until(started + seconds + 2)
        publisher.join(60)
        sent, _, _ = out.get(timeout=10)
        deadline = time.monotonic() + 60
        while stored() < sent and time.monotonic() < deadline:
            time.sleep(0.2)
        code = gateway.stop()
        missing, wrong, extra = loss_and_duplicates(folder, 0, sent, TOPICS)
        for label, applied, seen, changes, pause in results:
            print(
                f"SIGHUP, {label}: applied in {applied * 1000:.0f} ms by the gateway's count "
                f"({seen * 1000:.0f} ms until the API showed it); changes {changes}; longest pause of the "
                f"stored-message counter around it {pause * 1000:.0f} ms (a counter polled every 50 ms)"
            )
        print(f"stream: {sent:,} published at {rate:,} msg/s; {missing} missing, {wrong} wrong, {extra} duplicate rows")
        print(f"exit code after SIGTERM: {code}")
    finally:
        if gateway.process.poll() is None:
            gateway.process.kill()
        broker.stop()


def summary(values: list[float]) -> str:
    return f"median {statistics.median(values):.2f} % (runs: {', '.join(f'{v:.2f}' for v in values)})"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short runs (a smoke test, not figures)")
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", choices=["steady", "idle", "reload"], action="append")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.repeat = 2.0, 1
    only = set(args.only or ["steady", "idle", "reload"])
    print(f"load average at start: {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores)")
    with tempfile.TemporaryDirectory(prefix="bench-runtime-") as tmp:
        root = Path(tmp)
        if "steady" in only:
            for sink in ("historian", "influx"):
                print(f"\n## Steady {args.rate:,} msg/s QoS 1 into the {sink} ({args.seconds:g} s, {args.repeat} runs)")
                gateway, bare = steady(root, sink, args.rate, args.seconds, args.repeat, 1.0 if args.quick else 5.0)
                print(f"gateway CPU: {summary(gateway)} of one core")
                print(f"ceiling, a bare paho subscriber on the same stream: {summary(bare)} of one core")
        if "idle" in only:
            print(f"\n## Idle: connected and subscribed, nothing arriving ({args.seconds:g} s)")
            print(f"gateway CPU: {idle(root, args.seconds):.2f} % of one core")
        if "reload" in only:
            print(f"\n## Reload by SIGHUP while {args.rate:,} msg/s flow")
            reload(root, args.rate, max(args.seconds, 8.0))
    print(f"\nload average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
