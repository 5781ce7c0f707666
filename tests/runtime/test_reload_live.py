"""Reloading a running ``gateway run --watch`` while a QoS 1 stream flows through real Mosquitto.

The engineer's day: the gateway runs, data flows, and the config is changed six times — by
SIGHUP, by saving the file (``--watch``) and through ``POST /api/reload`` — adding a connector,
adding a VictoriaMetrics sink, widening another connector's topic filter, saving a typo and
then its fix, and removing the VictoriaMetrics sink again. At the end every published message
is in the historian, the added sink has everything published while it was configured, and the
connector nobody touched kept its one broker session the whole time (Mosquitto's own log).
"""

from __future__ import annotations

import re
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from gateway.sinks.historian.store import HistorianStore
from tests.fixtures.gateway import GatewayRun
from tests.fixtures.mosquitto import Mosquitto, Publisher
from tests.fixtures.victoriametrics import VictoriaMetrics
from tests.helpers import contract_energy_connector, free_port, wait_until

BASE_MS = 1_714_564_800_000
RATE = 800  # messages per second, all connectors together
ENERGY_CLIENT = "gw-lab-cell-1"  # the connector nobody touches


class Stream:
    """A paced QoS 1 publisher on its own thread; what it published, with when, is kept."""

    def __init__(self, broker: Mosquitto) -> None:
        self.publisher = Publisher(broker, client_id="reload-test-publisher", max_inflight=2000)
        self.published: list[tuple[float, str, int]] = []  # (monotonic time, kind, index)
        self.press_lines = ["L0"]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stream", daemon=True)
        self._lock = threading.Lock()

    def _run(self) -> None:
        started = time.monotonic()
        n = 0
        while not self._stop.is_set():
            kind = ("energy", "energy", "energy", "press", "temp")[n % 5]
            index = n
            if kind == "energy":
                topic = f"factory/L{n % 3}/energy/m{n % 7:02d}"
                payload = orjson.dumps({"p": n * 0.5, "e": n, "ts": BASE_MS + n})
            elif kind == "press":
                line = self.press_lines[(n // 5) % len(self.press_lines)]
                topic = f"factory/{line}/press/p1"
                payload = orjson.dumps({"force": n, "ts": BASE_MS + n})
            else:
                topic = f"factory/L0/temperature/t{n % 4}"
                payload = f"{n / 10:.1f}".encode()
            with self._lock:
                self.publisher.publish(topic, payload)
                self.published.append((time.monotonic(), kind, index))
            n += 1
            if n % 20 == 0:
                time.sleep(max(0.0, started + n / RATE - time.monotonic()))

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)
        self.publisher.wait(120)
        self.publisher.close()

    def count(self) -> int:
        return len(self.published)

    def indexes(self, kind: str, after: float = 0.0, before: float = float("inf")) -> set[int]:
        with self._lock:
            return {i for t, k, i in self.published if k == kind and after <= t <= before}


def config(folder: Path, broker: Mosquitto, http_port: int) -> dict[str, Any]:
    return {
        "gateway": {
            "name": "reload-live",
            "data_dir": str(folder / "data"),
            "shutdown_timeout": "20s",
            "http": {"listen": f"127.0.0.1:{http_port}"},
        },
        "sinks": [
            {"name": "local", "type": "historian", "path": str(folder / "history.db"), "flush_interval": "100ms"}
        ],
        "connectors": [
            contract_energy_connector(broker.url),
            {
                "name": "press",
                "type": "mqtt",
                "broker": broker.url,
                "client_id": "gw-press",
                "qos": 1,
                "topics": [
                    {
                        "filter": "factory/L0/press/+",
                        "tags_from_topic": {"line": 1, "press": 3},
                        "measurement": "press",
                        "time": {"path": "ts", "unit": "ms"},
                        "fields": {"force": "force"},
                    }
                ],
            },
        ],
    }


def temperatures(broker: Mosquitto) -> dict[str, Any]:
    return {
        "name": "temps",
        "type": "mqtt",
        "broker": broker.url,
        "client_id": "gw-temps",
        "qos": 1,
        "topics": [
            {
                "filter": "factory/+/temperature/+",
                "tags_from_topic": {"line": 1, "sensor": 3},
                "format": "value",
                "measurement": "temperature",
                "field": "celsius",
            }
        ],
    }


def vm_sink(store: VictoriaMetrics) -> dict[str, Any]:
    return {"name": "vm", "type": "influxdb", "url": store.url, "org": "lab", "bucket": "m", "token": "t"}


def stored_indexes(folder: Path) -> dict[str, set[int]]:
    found: dict[str, set[int]] = {"energy": set(), "press": set(), "temp": set()}
    path = folder / "history.db"
    if not path.exists():
        return found
    with HistorianStore(path, readonly=True) as store:
        for value in store.read("energy", fields=["energy_kwh"]):
            found["energy"].add(round(float(value.value)))
        for value in store.read("press", fields=["force"]):
            found["press"].add(round(float(value.value)))
        for value in store.read("temperature"):
            found["temp"].add(round(float(value.value) * 10))
    return found


def missing_report(
    stream: Stream, stored: dict[str, set[int]], temps_from: float, steps: list[tuple[float, str]]
) -> str:
    """Which messages never reached the historian, each placed after the reload step it followed."""
    lines = ["not every published message is in the historian:"]
    with stream._lock:
        published = list(stream.published)
    for kind in ("energy", "press", "temp"):
        missing = [
            (t, i)
            for t, k, i in published
            if k == kind and i not in stored[kind] and (kind != "temp" or t >= temps_from)
        ]
        lines.append(f"  {kind}: {len(missing)} missing")
        for t, i in missing[:15]:
            when, step = max(((w, label) for w, label in steps if w <= t), default=(steps[0][0], steps[0][1]))
            lines.append(f"    index {i}, published {t - when:.3f} s after '{step}'")
    return "\n".join(lines)


def apply(gateway: GatewayRun, generation: int, how: Callable[[], None]) -> dict[str, Any]:
    """Change the config with ``how``, wait until the gateway runs generation ``generation``, and
    return the reload attempt that applied it."""
    how()
    state = wait_until(
        lambda: (s := gateway.config_state())["generation"] >= generation and s,
        timeout=60,
        message=f"config generation {generation} applied\n{gateway.log_tail()}",
    )
    assert state["generation"] == generation, state
    # The attempt that applied it: with --watch on, a save followed by SIGHUP or an API call is
    # seen by the watcher too, whose attempt ("unchanged") may already be the last one.
    [applied] = [r for r in state["recent_reloads"] if r["generation"] == generation and r["result"] == "applied"]
    return dict(applied)


@pytest.mark.slow
@pytest.mark.alone
@pytest.mark.timeout(400)
def test_six_reloads_by_signal_watch_and_api_lose_nothing_and_touch_nothing_else(
    mosquitto: Mosquitto, victoriametrics: VictoriaMetrics, gateway_run: list[GatewayRun], tmp_path: Path
) -> None:
    port = free_port()
    path = tmp_path / "gateway.yaml"
    document = config(tmp_path, mosquitto, port)

    def save(data: dict[str, Any] | str) -> None:
        text = data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False)
        path.write_text(text)

    save(document)
    # The SIGHUP and API steps save the file too, and the watcher sees it: its quiet second lets
    # the signal or the request be the one that applies it, even on a loaded machine.
    gateway = GatewayRun(path, port, tmp_path / "gateway.log", ["--watch", "--watch-debounce", "1s"])
    gateway_run.append(gateway)
    gateway.start()
    wait_until(
        lambda: all((gateway.component(n) or {}).get("detail", {}).get("subscribed") for n in ("energy", "press")),
        timeout=60,
        message="both connectors subscribed",
    )
    stream = Stream(mosquitto)
    stream.start()
    steps: list[tuple[float, str]] = [(time.monotonic(), "stream started")]
    wait_until(lambda: stream.count() >= 2000, timeout=60)

    # 1. SIGHUP: a connector is added (temperatures were published all along, unsubscribed).
    document["connectors"].append(temperatures(mosquitto))

    def save_and_signal() -> None:
        save(document)
        gateway.signal(signal.SIGHUP)

    steps.append((time.monotonic(), "1. SIGHUP, connector temps added"))
    applied = apply(gateway, 2, save_and_signal)
    assert applied["trigger"] == "sighup"
    assert applied["changes"] == {"connector:temps": "added"}
    wait_until(lambda: (gateway.component("temps") or {}).get("detail", {}).get("subscribed"), timeout=30)
    temps_from = time.monotonic()
    wait_until(lambda: stream.count() >= 6000, timeout=60)

    # 2. --watch: a VictoriaMetrics sink is added (every connector feeds it from now on).
    document["sinks"].append(vm_sink(victoriametrics))
    steps.append((time.monotonic(), "2. --watch, sink vm added"))
    applied = apply(gateway, 3, lambda: save(document))
    assert applied["trigger"] == "watch"
    assert applied["changes"]["sink:vm"] == "added"
    vm_from = time.monotonic()
    wait_until(lambda: stream.count() >= 10_000, timeout=60)

    # 3. The API: the press connector's filter is widened to every line.
    document["connectors"][1]["topics"][0]["filter"] = "factory/+/press/+"
    save(document)
    steps.append((time.monotonic(), "3. API, connector press restarted"))
    code, body = gateway.request("POST", "/api/reload")
    assert code == 200, body
    assert body["changes"] == {"connector:press": "restarted"} and body["generation"] == 4
    wait_until(lambda: (gateway.component("press") or {}).get("detail", {}).get("subscribed"), timeout=30)
    stream.press_lines = ["L0", "L1"]  # L1 presses exist only once the filter covers them
    wait_until(lambda: stream.count() >= 14_000, timeout=60)

    # 4. --watch: a typo. Nothing changes, one error line names the file, line and key.
    stored_before = stored_indexes(tmp_path)["energy"]
    steps.append((time.monotonic(), "4. --watch, a typo"))
    save(path.read_text().replace("  qos: 1\n", "  qoss: 1\n", 1))
    failed = wait_until(
        lambda: (s := gateway.config_state())["last_reload"]["result"] == "failed" and s,
        timeout=60,
        message="the typo reported",
    )
    assert failed["generation"] == 4
    [error] = failed["last_reload"]["errors"]
    assert re.match(
        rf"{re.escape(str(path))}:\d+: connectors\[0\]\.qoss: unknown key 'qoss' \(did you mean 'qos'\?\)", error
    )
    log_lines = [line for line in gateway.log_text().splitlines() if "unknown key 'qoss'" in line]
    assert len(log_lines) == 1 and error in log_lines[0], log_lines
    wait_until(lambda: len(stored_indexes(tmp_path)["energy"]) > len(stored_before) + 500, timeout=60)

    # 5. --watch: the fix (the same config as generation 4: nothing to apply).
    steps.append((time.monotonic(), "5. --watch, the fix"))
    save(document)
    wait_until(lambda: gateway.config_state()["last_reload"]["result"] == "unchanged", timeout=60)
    wait_until(lambda: stream.count() >= 18_000, timeout=60)

    # 6. SIGHUP: the VictoriaMetrics sink is removed.
    vm_until = time.monotonic()
    document["sinks"].pop()
    steps.append((time.monotonic(), "6. SIGHUP, sink vm removed"))
    applied = apply(gateway, 5, save_and_signal)
    assert applied["changes"]["sink:vm"] == "removed"
    wait_until(lambda: stream.count() >= 21_000, timeout=60)
    stream.stop()

    # Every published message is in the historian.
    def all_stored() -> bool:
        stored = stored_indexes(tmp_path)
        return (
            all(stream.indexes(kind) <= stored[kind] for kind in ("energy", "press"))
            and stream.indexes("temp", after=temps_from) <= stored["temp"]
        )

    try:
        wait_until(all_stored, timeout=120, message="every published message in the historian")
    except AssertionError:
        raise AssertionError(
            missing_report(stream, stored_indexes(tmp_path), temps_from, steps) + "\n" + gateway.log_tail()
        ) from None
    assert stream.count() >= 20_000
    # The added sink has everything from the moment it was added, without a gap, until it was
    # removed (what was still on its way to the gateway at that moment went to the historian only).
    in_vm = {round(s.value) for s in victoriametrics.samples('{__name__="energy_energy_kwh"}')}
    first, last = min(stream.indexes("energy", after=vm_from)), max(in_vm)
    wanted = {i for i in stream.indexes("energy") if first <= i <= last}
    assert wanted <= in_vm, f"{len(wanted - in_vm)} of {len(wanted)} missing in VictoriaMetrics"
    assert last >= max(stream.indexes("energy", before=vm_until - 2.0)), "it received until it was removed"
    # The connector nobody touched kept its one broker session: connected once, never again.
    status = gateway.component("energy")
    assert status is not None and status["counters"]["reconnects"] == 0
    broker_log = mosquitto.log_path.read_text()
    assert len(re.findall(rf"New client connected from .* as {ENERGY_CLIENT}\b", broker_log)) == 1
    assert len(re.findall(r"New client connected from .* as gw-press\b", broker_log)) == 2  # restarted once
    # The restarted connector's acknowledgements reached the broker before its new connection
    # took the session over: nothing it had stored was delivered to it again.
    assert gateway.counter("press", "received") == len(stream.indexes("press"))
    # Saving the file also wakes the watcher when SIGHUP or the API applied it first: "unchanged".
    reloads = gateway.config_state()["reloads"]
    assert reloads["applied"] == 4 and reloads["failed"] == 1 and reloads["unchanged"] >= 1, reloads
    assert gateway.stop() == 0
