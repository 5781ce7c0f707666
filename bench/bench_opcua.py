"""OPC UA benchmark: 10,000 monitored items changing every second on the project's simulator.

    .venv/bin/python -m bench.bench_opcua                 # 10,000 items, 30 s window
    .venv/bin/python -m bench.bench_opcua --items 2000 --seconds 10 --servers 1   # a quick run

Separate processes, as in production: the simulators (asyncua servers whose Objects/Bench/…
variables all change every second; two by default, each with half the items), the gateway
(one ``opcua`` connector per server browsing Objects/Bench recursively, the embedded
historian as the store) and this script, which
measures the gateway process with psutil and reads its status file. It prints:

- time to create every monitored item (batched to the server's MaxMonitoredItemsPerCall);
- notifications/s received by the connector and points/s written by the historian;
- the gateway's CPU (% of one core) and RSS over the window;
- loss, counted from what the simulators changed: each simulator's tick number is read from its
  first bench variable (a tick writes ``tick + i / 100000`` to every ``Tag{i}``) when the window
  opens and when it closes; every tick begun and finished in between changed all N variables, so
  the values expected are N times those ticks per server, the values stored are the (variable, tick)
  pairs the historian holds for them, and the loss is the difference: a tick that never reached
  the store at all counts N lost.

A wait that ran out (the gateway not stopping within 60 s of SIGTERM) is named under
``"timed_out"`` in the figures, and the run exits with status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import yaml

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise SystemExit(f"timed out waiting for {what}")


def _current_ticks(ports: list[int]) -> list[int]:
    """Each simulator's tick number now: the value of its first bench variable, read over OPC UA."""
    from asyncua.client.client import Client

    from gateway.simulators.opcua import BENCH_NAMESPACE

    async def read(port: int) -> int:
        client = Client(f"opc.tcp://127.0.0.1:{port}/", timeout=30)
        client.session_timeout = 60_000  # (the default asks for an hour, the server grants less and says so)
        async with client:
            index = await client.get_namespace_index(BENCH_NAMESPACE)
            return int(await client.get_node(f"ns={index};s=Bench.Tag00000").read_value())

    async def read_all() -> list[int]:
        return list(await asyncio.gather(*(read(port) for port in ports)))

    return asyncio.run(read_all())


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return None


# --- the gateway process ----------------------------------------------------------------------


async def _child(config_path: Path, status_path: Path) -> None:
    """Run the gateway, writing every component's status to a JSON file twice a second."""
    from gateway.config import load_config
    from gateway.logs import setup_logging
    from gateway.runtime import Gateway

    setup_logging("text", "warning")
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with Gateway(load_config(config_path)) as gateway:
        while not stop.is_set():
            data = {s.name: s.as_dict() for s in gateway.statuses()}
            tmp = status_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(data, default=str))
            os.replace(tmp, status_path)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)


# --- the measurement ---------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=30.0, help="Measurement window.")
    parser.add_argument(
        "--servers",
        type=int,
        default=2,
        help="Simulator processes sharing the items (one asyncua server "
        "process cannot publish 10,000 changes/s on a busy 2-core machine).",
    )
    parser.add_argument("--child", nargs=2, metavar=("CONFIG", "STATUS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        asyncio.run(_child(Path(args.child[0]), Path(args.child[1])))
        return

    folder = Path(tempfile.mkdtemp(prefix="bench-opcua-"))
    per_server = args.items // args.servers
    ports = [_free_port() for _ in range(args.servers)]
    simulators: list[subprocess.Popen[bytes]] = []
    for index, port in enumerate(ports):
        with open(folder / f"simulator-{index}.log", "wb") as sim_log:
            simulators.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "gateway.cli",
                        "simulate",
                        "opcua",
                        "--port",
                        str(port),
                        "--machines",
                        "1",
                        "--bench-items",
                        str(per_server),
                        "--bad-rate",
                        "0",
                        "--data-dir",
                        str(folder / "pki"),
                    ],
                    cwd=ROOT,
                    stdout=sim_log,
                    stderr=subprocess.STDOUT,
                )
            )
    gateway: subprocess.Popen[bytes] | None = None
    try:
        started = time.monotonic()
        for index in range(args.servers):
            log_path = folder / f"simulator-{index}.log"
            _wait(lambda log_path=log_path: b"ready" in log_path.read_bytes(), 300, "the simulator")
        print(
            f"{args.servers} simulator(s) with {per_server:,} bench variables each ready in "
            f"{time.monotonic() - started:.1f}s"
        )
        config = {
            "gateway": {
                "name": "bench",
                "data_dir": str(folder / "data"),
                "http": {"listen": f"127.0.0.1:{_free_port()}"},
            },
            "sinks": [{"name": "local", "type": "historian", "path": str(folder / "history.db"),
                       "batch_size": 20_000, "flush_interval": "1s"}],
            "connectors": [{
                "name": f"bench-{index}", "type": "opcua", "endpoint": f"opc.tcp://127.0.0.1:{port}/",
                "measurement": "bench", "tags": {"server": str(index)},
                "subscription": {"publishing_interval": "500ms", "sampling_interval": "250ms"},
                "nodes": [{"browse": "Objects/Bench", "recursive": True}],
            } for index, port in enumerate(ports)],
        }  # fmt: skip
        (folder / "gateway.yaml").write_text(yaml.safe_dump(config))
        status_path = folder / "status.json"
        gw_log = open(folder / "gateway.log", "wb")  # noqa: SIM115 - closed with the process
        launched = time.monotonic()
        gateway = subprocess.Popen(
            [sys.executable, "-m", "bench.bench_opcua", "--child", str(folder / "gateway.yaml"), str(status_path)],
            cwd=ROOT, stdout=gw_log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        gw_log.close()
        names = [f"bench-{index}" for index in range(args.servers)]

        def ready() -> dict[str, Any] | None:
            status = _read_json(status_path)
            if status and all(status[n].get("detail", {}).get("monitored_items") == per_server for n in names):
                return status
            return None

        status = _wait(ready, 600, "every monitored item")
        subscribed_after = time.monotonic() - launched
        create = max(status[n]["detail"].get("subscribe_seconds", 0.0) for n in names)
        print(
            f"{args.items:,} monitored items created in {create}s (gateway start to all items: {subscribed_after:.1f}s)"
        )
        _wait(lambda: (_read_json(status_path) or {}).get("local", {}).get("counters", {}).get("points_written"), 60,
              "first points stored")  # fmt: skip
        time.sleep(3)  # let the first (initial value) burst settle before the window opens

        process = psutil.Process(gateway.pid)
        sim_processes = [psutil.Process(sim.pid) for sim in simulators]
        ticks_at_open = _current_ticks(ports)
        before = _read_json(status_path) or {}
        cpu0, sim_cpu0, t0, t0_ns = process.cpu_times(), _cpu(sim_processes), time.monotonic(), time.time_ns()
        rss_max = 0
        while time.monotonic() - t0 < args.seconds:
            rss_max = max(rss_max, process.memory_info().rss)
            time.sleep(0.5)
        cpu1, sim_cpu1, t1, t1_ns = process.cpu_times(), _cpu(sim_processes), time.monotonic(), time.time_ns()
        after = _read_json(status_path) or {}
        ticks_at_close = _current_ticks(ports)
        wall = t1 - t0
        received = sum(after[n]["counters"]["received"] - before[n]["counters"]["received"] for n in names)
        written = after["local"]["counters"]["points_written"] - before["local"]["counters"]["points_written"]
        cpu = (cpu1.user + cpu1.system - cpu0.user - cpu0.system) / wall * 100
        sim_cpu = (sim_cpu1 - sim_cpu0) / wall * 100
        # Let the store catch up, stop the gateway (it drains), then count each tick's values.
        time.sleep(3)
        gateway.send_signal(signal.SIGTERM)
        timed_out = None
        try:
            gateway.wait(60)
        except subprocess.TimeoutExpired:
            gateway.kill()
            gateway.wait(10)
            timed_out = "the gateway did not stop within 60 s of SIGTERM (killed): loss counts what it had stored"
        # The ticks every simulator began and finished inside the window: all N variables changed.
        window = {
            str(index): range(opened + 1, closed)
            for index, (opened, closed) in enumerate(zip(ticks_at_open, ticks_at_close, strict=True))
        }
        stored = _stored(folder / "history.db", t0_ns - 10_000_000_000, t1_ns + 10_000_000_000, window)
        expected = per_server * sum(len(ticks) for ticks in window.values())
        ticks = {(server, tick): len(stored.get((server, tick), ())) for server in window for tick in window[server]}
        complete = sum(1 for count in ticks.values() if count == per_server)
        kept = sum(ticks.values())
        lost = expected - kept
        result = {
            "items": per_server * args.servers,
            "servers": args.servers,
            "window_s": round(wall, 1),
            "create_monitored_items_s": create,
            "start_to_all_items_s": round(subscribed_after, 1),
            "received_per_s": round(received / wall),
            "stored_per_s": round(written / wall),
            "server_changes_per_s": round(
                per_server
                * sum(closed - opened for opened, closed in zip(ticks_at_open, ticks_at_close, strict=True))
                / max(1e-9, wall)
            ),
            "gateway_cpu_percent_of_one_core": round(cpu, 1),
            "gateway_rss_mib": round(rss_max / 2**20, 1),
            "simulators_cpu_percent": round(sim_cpu, 1),
            "ticks_checked": len(ticks),
            "ticks_complete": complete,
            "values_expected": expected,
            "values_stored": kept,
            "values_lost": lost,
            "timed_out": timed_out,
            "load_average": os.getloadavg(),
        }
        print(json.dumps(result, indent=2))
        if timed_out:
            print(f"TIMED OUT: {timed_out}; the figures above are not a complete run")
            sys.exit(1)
    finally:
        if gateway is not None and gateway.poll() is None:
            gateway.send_signal(signal.SIGTERM)
            gateway.wait(60)
        for sim in simulators:
            sim.send_signal(signal.SIGTERM)
            sim.wait(60)


def _cpu(processes: list[psutil.Process]) -> float:
    return sum(t.user + t.system for t in (p.cpu_times() for p in processes))


def _stored(history: Path, since_ns: int, until_ns: int, window: dict[str, range]) -> dict[tuple[str, int], set[str]]:
    """The variables stored per server and tick of ``window`` (the tick is the value's integer part)."""
    from gateway.sinks.historian.store import HistorianStore

    store = HistorianStore(history, readonly=True)
    try:
        stored: dict[tuple[str, int], set[str]] = {}
        for value in store.read("bench", since_ns=since_ns, until_ns=until_ns):
            server = value.tags["server"]
            if not isinstance(value.value, float) or server not in window:
                continue
            tick = int(value.value)
            if tick in window[server]:
                stored.setdefault((server, tick), set()).add(value.field)
        return stored
    finally:
        store.close()


if __name__ == "__main__":
    main()
