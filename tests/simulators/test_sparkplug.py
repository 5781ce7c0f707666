"""``gateway simulate sparkplug`` decoded by an independent host (Tahu's JavaScript library over
MQTT.js): births with units, DDATA per press with aliases, births again on an NCMD rebirth, and the
NDEATH at a clean stop with the NBIRTH's bdSeq."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

from tests.fixtures.mosquitto import Mosquitto
from tests.fixtures.sparkplug import PeerProcess
from tests.helpers import stop_process, wait_until


def test_the_simulator_is_born_publishes_and_is_born_again_when_asked(
    mosquitto: Mosquitto, sparkplug_host: Callable[..., PeerProcess]
) -> None:
    host = sparkplug_host(mosquitto)
    command = [sys.executable, "-m", "gateway.cli", "simulate", "sparkplug", "--broker", mosquitto.url]
    simulator = subprocess.Popen([*command, "--interval", "100ms", "--seed", "1"], stderr=subprocess.PIPE)
    try:
        wait_until(lambda: len(host.messages("DDATA")) >= 4, timeout=60, message="DDATA from both presses")
        (nbirth,) = host.messages("NBIRTH")
        assert nbirth["topic"] == "spBv1.0/Plant/NBIRTH/Line-1"
        births = host.messages("DBIRTH")
        assert [b["topic"].rsplit("/", 1)[1] for b in births] == ["Press-1", "Press-2"]
        metrics = {m["name"]: m for m in births[0]["payload"]["metrics"]}
        assert metrics["Nozzle/Temp"]["properties"] == {"engUnit": {"type": "String", "value": "°C"}}
        assert {name: m["type"] for name, m in metrics.items()} == {
            "Nozzle/Temp": "Double",
            "Clamp/Pressure": "Double",
            "Cycle/Count": "Int64",
            "Status/Running": "Boolean",
            "Status/Mode": "String",
        }
        aliases = {m["alias"] for m in births[0]["payload"]["metrics"]}
        data = [d for d in host.messages("DDATA") if d["topic"].endswith("/Press-1")]
        assert {m["alias"] for m in data[0]["payload"]["raw"]["metrics"]} == aliases
        ncmd = {"timestamp": 1, "metrics": [{"name": "Node Control/Rebirth", "type": "Boolean", "value": True}]}
        host.command({"cmd": "publish", "topic": "spBv1.0/Plant/NCMD/Line-1", "payload": ncmd})
        wait_until(lambda: len(host.messages("NBIRTH")) == 2, timeout=30, message="births again")
        assert host.messages("NBIRTH")[1]["payload"]["seq"] == "0"
    finally:
        stop_process(simulator)  # SIGTERM ends the process: the broker publishes its will, the NDEATH
        assert simulator.stderr is not None
        simulator.stderr.close()
    death = host.wait_for(lambda e: e.get("event") == "message" and "/NDEATH/" in e["topic"], 30)
    assert [m["value"] for m in death["payload"]["metrics"] if m["name"] == "bdSeq"] == ["0"]
