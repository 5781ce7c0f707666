"""S7 benchmark: 500 variables at 100 ms from one PLC (python-snap7's server, PDU 480).

    .venv/bin/python -m bench.bench_s7                 # 500 variables, 30 s per phase
    .venv/bin/python -m bench.bench_s7 --quick         # 100 variables, 3 s per phase

Two processes at a time: the PLC (python-snap7's server: 10 data blocks of 50 variables each —
REALs, INTs, DINTs and bits, as a line PLC's DBs hold them — recording when each read request
arrives) and, one after the other, (1) a bare python-snap7 async client sending the same
multi-variable requests every 100 ms and unpacking the values — the ceiling: the least any
Python S7 client can spend on these reads — and (2) the gateway (``type: s7``, the embedded
historian as the store). Each phase prints, side by side:

- CPU of the reading process (% of one core; the gateway's includes storing the values);
- requests per scan (counted at the PLC);
- scan jitter: how far the interval between two scans' first requests strays from 100 ms,
  p50/p99 (the PLC's arrival times; one monotonic clock for every process on the machine);
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
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import yaml

ROOT = Path(__file__).resolve().parent.parent
INTERVAL = 0.1
PER_DB = 50
#: One data block's layout: (type, bytes) for 50 variables; bits share bytes at the end.
_LAYOUT = [("real", 4)] * 20 + [("int", 2)] * 15 + [("dint", 4)] * 10


def _fields(count: int) -> list[dict[str, Any]]:
    fields: list[dict[str, Any]] = []
    db = 0
    while len(fields) < count:
        db += 1
        offset = 0
        for index, (kind, size) in enumerate(_LAYOUT):
            width = {2: "W", 4: "D"}[size]
            fields.append({"name": f"db{db}_v{index:02d}", "address": f"DB{db}.DB{width}{offset}", "type": kind})
            offset += size
        for bit in range(PER_DB - len(_LAYOUT)):
            fields.append({"name": f"db{db}_b{bit}", "address": f"DB{db}.DBX{offset}.{bit}"})
    return fields[:count]


# --- the PLC process ------------------------------------------------------------------------


async def _serve(port: int, variables: int, log_path: Path) -> None:
    from gateway.simulators.s7 import S7Server

    server = S7Server(port, max_pdu=480)
    for item in _fields(variables):
        db = int(item["address"].split(".")[0][2:])
        server.area("DB", 200, db)
        kind = item.get("type", "bool")
        server.set(item["address"], 1.5 if kind == "real" else 1 if kind != "bool" else True, kind)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await server.start()
    print("ready", flush=True)
    await stop.wait()
    await server.stop()
    log_path.write_text(json.dumps([r.at for r in server.reads]))


# --- the measuring side --------------------------------------------------------------------


def _start_server(port: int, variables: int, folder: Path) -> tuple[subprocess.Popen[bytes], Path]:
    log_path = folder / f"requests-{port}.json"
    serve = ["--serve", str(port), "--variables", str(variables), "--log", str(log_path)]
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.bench_s7", *serve],
        cwd=ROOT,
        stdout=subprocess.PIPE,
    )
    assert process.stdout is not None
    if b"ready" not in process.stdout.readline():
        raise SystemExit("the benchmark's S7 server did not start")
    return process, log_path


def _stop_server(process: subprocess.Popen[bytes], log_path: Path) -> list[float]:
    process.send_signal(signal.SIGTERM)
    process.wait(30)
    return [float(t) for t in json.loads(log_path.read_text())]


def _figures(arrivals: list[float], since: float, until: float) -> dict[str, Any]:
    """Requests per scan and scan jitter from the PLC's arrival times: a scan's requests follow
    each other within milliseconds; a new scan starts after a pause of at least half the interval."""
    times = [t for t in arrivals if since <= t <= until]
    starts = [t for i, t in enumerate(times) if i == 0 or t - times[i - 1] > INTERVAL / 2]
    deviations = sorted(abs((b - a) - INTERVAL) for a, b in itertools.pairwise(starts))

    def pct(p: float) -> float:
        return deviations[min(len(deviations) - 1, int(p * len(deviations)))] * 1000 if deviations else float("nan")

    return {
        "scans": len(starts),
        "requests_per_scan": len(times) / len(starts) if starts else float("nan"),
        "jitter_p50_ms": pct(0.50),
        "jitter_p99_ms": pct(0.99),
        "jitter_max_ms": deviations[-1] * 1000 if deviations else float("nan"),
    }


async def _bare_client(port: int, variables: int, seconds: float) -> tuple[float, float, float]:
    """The ceiling: python-snap7's async client, the gateway's planned requests, every 100 ms,
    the values unpacked with struct, nothing stored. → (CPU %, start and end of the measured
    window), measured after a second of warm-up as the gateway's is."""
    from snap7 import AsyncClient

    from connectors.s7.config import S7Config
    from connectors.s7.plan import plan

    config = S7Config.model_validate({"name": "bare", "type": "s7", "host": "127.0.0.1", "fields": _fields(variables)})
    client = AsyncClient()
    await client.connect("127.0.0.1", 0, 1, port)
    planned = plan(config.variables, client.pdu_length)
    areas = {"DB": 0x84, "M": 0x83, "I": 0x81, "Q": 0x82}
    specs = [[(areas[i.area], i.db, i.start, i.size) for i in r.items] for r in planned.requests]
    formats = {"real": ">f", "int": ">h", "dint": ">i"}
    process = psutil.Process()
    started = time.monotonic()
    tick = started
    cpu0 = wall0 = None
    while time.monotonic() - started < seconds + 1.0:
        if cpu0 is None and time.monotonic() - started >= 1.0:
            cpu0, wall0 = process.cpu_times(), time.monotonic()
        for spec in specs:
            request = client.protocol.build_multi_read_request(spec)
            answer = client.protocol.parse_response(bytes(await client.iso_exchange_buffer(bytearray(request))))
            data = answer["raw_data"]
            offset = 0
            for _, _, _, size in spec:  # unpack like the gateway does, to compare like with like
                item = data[offset + 4 : offset + 4 + size]
                for position in range(0, size - 3, 4):
                    struct.unpack_from(formats["real"], item, position)
                offset += 4 + size + (size & 1)
        tick += INTERVAL
        await asyncio.sleep(max(0.0, tick - time.monotonic()))
    cpu1, wall1 = process.cpu_times(), time.monotonic()
    await client.disconnect()
    assert cpu0 is not None and wall0 is not None
    return 100 * ((cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)) / (wall1 - wall0), wall0, wall1


def _gateway_config(folder: Path, port: int, variables: int) -> Path:
    config = {
        "gateway": {"name": "bench", "data_dir": str(folder / "data"), "http": {"listen": "127.0.0.1:0"}},
        "sinks": [{"name": "local", "type": "historian", "path": str(folder / "history.db")}],
        "connectors": [
            {
                "name": "line-plc",
                "type": "s7",
                "host": "127.0.0.1",
                "port": port,
                "interval": "100ms",
                "timeout": "2s",
                "measurement": "bench",
                "fields": _fields(variables),
            }
        ],
    }
    path = folder / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


async def _gateway(config_path: Path, seconds: float, variables: int) -> dict[str, Any]:
    from gateway.config import load_config
    from gateway.runtime import Gateway

    async with Gateway(load_config(config_path)) as gateway:
        source = gateway.sources[0]
        sink = gateway.sinks[0]
        while not source.status.detail.get("devices_running"):
            await asyncio.sleep(0.1)
        await asyncio.sleep(2.0)  # the historian warm
        view = source.status.detail["devices"]["line-plc"]
        process = psutil.Process()
        written0 = sink.status.counters.get("points_written", 0)
        overruns0 = view["counters"]["scan_overruns"]
        cpu0, wall0 = process.cpu_times(), time.monotonic()
        await asyncio.sleep(seconds)
        cpu1, wall1 = process.cpu_times(), time.monotonic()
        written1 = sink.status.counters.get("points_written", 0)
        return {
            "cpu_percent": 100 * ((cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)) / (wall1 - wall0),
            "points_per_s": (written1 - written0) / (wall1 - wall0),
            "values_per_s": (written1 - written0) * variables / max(1, view["requests_per_scan"]) / (wall1 - wall0),
            "overruns": view["counters"]["scan_overruns"] - overruns0,
            "read_errors": view["counters"]["read_errors"],
            "planned_requests_per_scan": view["requests_per_scan"],
            "items_per_scan": view["items_per_scan"],
            "pdu_size": view["pdu_size"],
            "window": (wall0, wall1),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variables", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--quick", action="store_true", help="100 variables, 3 s per phase (a smoke run)")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--log", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(_serve(args.serve, args.variables, args.log))
        return
    if args.quick:
        args.variables, args.seconds = 100, 3.0
    from gateway.ports import free_ports

    with tempfile.TemporaryDirectory(prefix="bench-s7-") as tmp:
        folder = Path(tmp)
        # 1. the ceiling: a bare python-snap7 client
        port = free_ports(1)
        server, log_path = _start_server(port, args.variables, folder)
        try:
            cpu_percent, since, until = asyncio.run(_bare_client(port, args.variables, args.seconds))
        finally:
            arrivals = _stop_server(server, log_path)
        bare = {**_figures(arrivals, since, until), "cpu_percent": cpu_percent}
        # 2. the gateway
        port = free_ports(1)
        server, log_path = _start_server(port, args.variables, folder)
        try:
            result = asyncio.run(_gateway(_gateway_config(folder, port, args.variables), args.seconds, args.variables))
        finally:
            arrivals = _stop_server(server, log_path)
        since, until = result.pop("window")
        gateway = {**_figures(arrivals, since, until), **result}
    print(
        f"\nS7: {args.variables} variables (REAL, INT, DINT, BOOL in {-(-args.variables // PER_DB)} DBs) at 100 ms "
        f"from one PLC (python-snap7's server, PDU {gateway['pdu_size']}), {args.seconds:g} s per phase, "
        f"{os.cpu_count()} CPUs"
    )
    rows = [
        ("CPU (% of one core)", "cpu_percent", "{:.1f}"),
        ("requests per scan", "requests_per_scan", "{:.2f}"),
        ("scan jitter p50 (ms)", "jitter_p50_ms", "{:.1f}"),
        ("scan jitter p99 (ms)", "jitter_p99_ms", "{:.1f}"),
        ("scan jitter max (ms)", "jitter_max_ms", "{:.1f}"),
    ]
    print(f"{'':28}{'bare python-snap7 client':>26}{'gateway':>12}")
    for label, key, fmt in rows:
        left, right = fmt.format(bare[key]), fmt.format(gateway[key])
        print(f"{label:28}{left:>26}{right:>12}")
    print(
        f"gateway: {gateway['values_per_s']:.0f} values/s stored ({gateway['points_per_s']:.0f} points/s), "
        f"planned {gateway['planned_requests_per_scan']} requests ({gateway['items_per_scan']} items) per scan, "
        f"{gateway['overruns']} overruns, {gateway['read_errors']} read errors"
    )
    print(json.dumps({"bare": bare, "gateway": gateway}, default=str))


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
