"""Modbus benchmark: 50 devices x 40 registers at 1 s on one connection to a local server.

    .venv/bin/python -m bench.bench_modbus                     # 50 devices, 60 s per phase
    .venv/bin/python -m bench.bench_modbus --quick             # 10 devices, 3 s per phase

Three processes: a pymodbus server with one unit id per device (40 holding registers each,
read as 20 float32 fields), and, one after the other, (1) a bare pymodbus async client doing
the same reads every second — the ceiling: the least any Python client can spend on them —
and (2) the gateway (``type: modbus``, the embedded historian as the store). The server
records when each request arrives; each phase prints, side by side:

- CPU of the reading process (% of one core; the gateway's includes storing the values);
- requests per scan (counted at the server, per device);
- scan jitter: how far each device's interval between two reads strays from 1 s, p50/p99;
- values stored per second (gateway only).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import yaml

ROOT = Path(__file__).resolve().parent.parent
REGISTERS = 40


# --- the server process --------------------------------------------------------------------


async def _serve(port: int, devices: int, log_path: Path) -> None:
    from gateway.simulators.modbus import ModbusServer

    server = ModbusServer(port)
    for unit in range(1, devices + 1):
        for field in range(REGISTERS // 2):
            server.unit(unit).set("holding", 2 * field, "float32", unit + field / 100)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await server.start()
    print("ready", flush=True)
    await stop.wait()
    await server.stop()
    log_path.write_text(json.dumps([[t, unit, count] for t, unit, _, _, count in server.log]))


# --- the measuring side --------------------------------------------------------------------


def _start_server(port: int, devices: int, folder: Path) -> tuple[subprocess.Popen[bytes], Path]:
    log_path = folder / f"requests-{port}.json"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.bench_modbus",
            "--serve",
            str(port),
            "--devices",
            str(devices),
            "--log",
            str(log_path),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
    )
    assert process.stdout is not None
    if b"ready" not in process.stdout.readline():
        raise SystemExit("the benchmark's Modbus server did not start")
    return process, log_path


def _stop_server(process: subprocess.Popen[bytes], log_path: Path) -> list[list[float]]:
    process.send_signal(signal.SIGTERM)
    process.wait(30)
    return list(json.loads(log_path.read_text()))


def _figures(log: list[list[float]], devices: int, since: float, until: float, interval: float) -> dict[str, Any]:
    """Requests per scan (all devices) and interval jitter per device, from the server's arrival times
    (``time.monotonic`` is CLOCK_MONOTONIC, one clock for every process on the machine)."""
    per_unit: dict[int, list[float]] = {}
    for t, unit, _ in log:
        if since <= t <= until:
            per_unit.setdefault(int(unit), []).append(t)
    requests = sum(len(times) for times in per_unit.values())
    scans = sum(len(times) for times in per_unit.values()) / max(1, len(per_unit))  # one read per scan here
    deviations = sorted(abs((b - a) - interval) for times in per_unit.values() for a, b in itertools.pairwise(times))

    def pct(p: float) -> float:
        return deviations[min(len(deviations) - 1, int(p * len(deviations)))] * 1000 if deviations else float("nan")

    return {
        "devices_seen": len(per_unit),
        "requests_per_scan": requests / scans if scans else float("nan"),
        "jitter_p50_ms": pct(0.50),
        "jitter_p99_ms": pct(0.99),
        "jitter_max_ms": deviations[-1] * 1000 if deviations else float("nan"),
    }


async def _bare_client(port: int, devices: int, seconds: float) -> None:
    """The ceiling: one pymodbus client, the same reads, every second, nothing else."""
    from pymodbus.client import AsyncModbusTcpClient

    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=1, retries=0)
    await client.connect()
    started = time.monotonic()
    tick = started
    while time.monotonic() - started < seconds:
        for unit in range(1, devices + 1):
            response = await client.read_holding_registers(0, count=REGISTERS, device_id=unit)
            assert not response.isError()
            for field in range(REGISTERS // 2):  # decode like the gateway does, to compare like with like
                client.convert_from_registers(response.registers[2 * field : 2 * field + 2], client.DATATYPE.FLOAT32)
        tick += 1.0
        await asyncio.sleep(max(0.0, tick - time.monotonic()))
    client.close()


def _gateway_config(folder: Path, port: int, devices: int) -> Path:
    fields = [
        {"name": f"f{i:02d}", "area": "holding", "address": 2 * i, "type": "float32"} for i in range(REGISTERS // 2)
    ]
    config = {
        "gateway": {"name": "bench", "data_dir": str(folder / "data"), "http": {"listen": "127.0.0.1:0"}},
        "sinks": [{"name": "local", "type": "historian", "path": str(folder / "history.db")}],
        "connectors": [
            {
                "name": "meters",
                "type": "modbus",
                "host": "127.0.0.1",
                "port": port,
                "interval": "1s",
                "timeout": "1s",
                "devices": [
                    {"unit": u, "measurement": "bench", "tags": {"device": f"d{u:02d}"}, "fields": fields}
                    for u in range(1, devices + 1)
                ],
            }
        ],
    }
    path = folder / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


async def _gateway(config_path: Path, seconds: float) -> dict[str, Any]:
    from gateway.config import load_config
    from gateway.runtime import Gateway

    async with Gateway(load_config(config_path)) as gateway:
        source = gateway.sources[0]
        sink = gateway.sinks[0]
        while not source.status.detail.get("devices_running"):
            await asyncio.sleep(0.1)
        await asyncio.sleep(2.0)  # every device on the shared connection, the historian warm
        process = psutil.Process()
        written0 = sink.status.counters.get("points_written", 0)
        cpu0, wall0 = process.cpu_times(), time.monotonic()
        mono0 = time.monotonic()
        await asyncio.sleep(seconds)
        cpu1, wall1 = process.cpu_times(), time.monotonic()
        written1 = sink.status.counters.get("points_written", 0)
        views = source.status.detail["devices"].values()
        return {
            "cpu_percent": 100 * ((cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)) / (wall1 - wall0),
            "points_per_s": (written1 - written0) / (wall1 - wall0),
            "values_per_s": (written1 - written0) * (REGISTERS // 2) / (wall1 - wall0),
            "overruns": sum(v["counters"]["scan_overruns"] for v in views),
            "read_errors": sum(v["counters"]["read_errors"] for v in views),
            "planned_requests_per_scan": source.status.detail["requests_per_scan"],
            "window": (mono0, time.monotonic()),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--quick", action="store_true", help="10 devices, 3 s per phase (a smoke run)")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--log", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(_serve(args.serve, args.devices, args.log))
        return
    if args.quick:
        args.devices, args.seconds = 10, 3.0
    from gateway.ports import free_ports

    with tempfile.TemporaryDirectory(prefix="bench-modbus-") as tmp:
        folder = Path(tmp)
        # 1. the ceiling: a bare pymodbus client
        port = free_ports(1)
        server, log_path = _start_server(port, args.devices, folder)
        try:
            process = psutil.Process()
            cpu0, wall0, mono0 = process.cpu_times(), time.monotonic(), time.monotonic()
            asyncio.run(_bare_client(port, args.devices, args.seconds))
            cpu1, wall1 = process.cpu_times(), time.monotonic()
        finally:
            log = _stop_server(server, log_path)
        bare = _figures(log, args.devices, mono0 + 1.0, time.monotonic(), 1.0)
        bare["cpu_percent"] = 100 * ((cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)) / (wall1 - wall0)
        # 2. the gateway
        port = free_ports(1)
        server, log_path = _start_server(port, args.devices, folder)
        try:
            result = asyncio.run(_gateway(_gateway_config(folder, port, args.devices), args.seconds))
        finally:
            log = _stop_server(server, log_path)
        since, until = result.pop("window")
        gateway = {**_figures(log, args.devices, since, until, 1.0), **result}
    print(
        f"\nModbus: {args.devices} devices x {REGISTERS} registers (20 float32 each) at 1 s, one connection, "
        f"{args.seconds:g} s per phase, {os.cpu_count()} CPUs"
    )
    rows = [
        ("CPU (% of one core)", "cpu_percent", "{:.1f}"),
        ("requests per scan (all devices)", "requests_per_scan", "{:.2f}"),
        ("scan jitter p50 (ms)", "jitter_p50_ms", "{:.1f}"),
        ("scan jitter p99 (ms)", "jitter_p99_ms", "{:.1f}"),
        ("scan jitter max (ms)", "jitter_max_ms", "{:.1f}"),
    ]
    print(f"{'':34}{'bare pymodbus client':>22}{'gateway':>12}")
    for label, key, fmt in rows:
        left, right = fmt.format(bare[key]), fmt.format(gateway[key])
        print(f"{label:34}{left:>22}{right:>12}")
    print(
        f"gateway: {gateway['values_per_s']:.0f} values/s stored ({gateway['points_per_s']:.0f} points/s), "
        f"planned {gateway['planned_requests_per_scan']} requests per scan, {gateway['overruns']} overruns, "
        f"{gateway['read_errors']} read errors"
    )
    print(json.dumps({"bare": bare, "gateway": gateway}, default=str))


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
