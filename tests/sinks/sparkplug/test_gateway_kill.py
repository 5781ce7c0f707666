"""``gateway run`` as a Sparkplug B edge node, killed with SIGKILL and started again, watched by an
independent host (Tahu's JavaScript library): the broker publishes its NDEATH (the will) with the
bdSeq of its NBIRTH; the restarted gateway is born with a new bdSeq (kept on disk). Its points
come from its own Sparkplug B connector reading Tahu's edge node on another group, so the whole
path is Sparkplug in and Sparkplug out."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fixtures.gateway import GatewayRun
from tests.fixtures.mosquitto import Mosquitto
from tests.fixtures.sparkplug import PeerProcess
from tests.helpers import free_port, wait_until


def bdseq(message: dict[str, Any]) -> str:
    (value,) = [m["value"] for m in message["payload"]["metrics"] if m["name"] == "bdSeq"]
    return str(value)


def temperatures(host: PeerProcess, device: str) -> list[float]:
    """The Nozzle/Temp values the host decoded from the gateway's DDATA of ``device`` (alias from its births)."""
    aliases = {
        m["alias"]
        for birth in host.messages("DBIRTH")
        if birth["topic"].endswith("/" + device)
        for m in birth["payload"]["metrics"]
        if m["name"].endswith("/Nozzle/Temp")
    }
    return [
        m["doubleValue"]
        for data in host.messages("DDATA")
        if data["topic"].endswith("/" + device)
        for m in data["payload"]["raw"]["metrics"]
        if m["alias"] in aliases
    ]


@pytest.mark.slow
def test_a_killed_gateways_ndeath_and_a_new_bdseq_after_the_restart(
    tmp_path: Path,
    mosquitto: Mosquitto,
    sparkplug_edge: Callable[..., PeerProcess],
    sparkplug_host: Callable[..., PeerProcess],
    gateway_run: list[GatewayRun],
) -> None:
    host = sparkplug_host(mosquitto, filter="spBv1.0/Plant/#")
    http_port = free_port()
    config = {
        "gateway": {"name": "edge", "data_dir": str(tmp_path / "data"), "http": {"listen": f"127.0.0.1:{http_port}"}},
        "sinks": [
            {
                "name": "ignition",
                "type": "sparkplug",
                "broker": mosquitto.url,
                "group": "Plant",
                "edge_node": "gw-1",
                "device_tag": "device",
                "flush_interval": "100ms",
                "reconnect_min": "100ms",
            }
        ],
        "connectors": [{"name": "field", "type": "sparkplug", "broker": mosquitto.url, "group": "Field"}],
    }
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))

    def start() -> GatewayRun:
        gateway = GatewayRun(path, http_port, tmp_path / "gateway.log")
        gateway_run.append(gateway)
        gateway.start()
        wait_until(lambda: (gateway.component("field") or {}).get("detail", {}).get("subscribed"), timeout=60)
        return gateway

    gateway = start()
    wait_until(lambda: host.messages("NBIRTH"), timeout=60, message="the gateway's NBIRTH")
    assert bdseq(host.messages("NBIRTH")[0]) == "0"
    edge = sparkplug_edge(mosquitto, group="Field")  # births: Nozzle/Temp 200.0
    edge.command({"cmd": "data", "count": 2})  # 200.5, 201.0
    wait_until(lambda: temperatures(host, "Press-1") == [200.0, 200.5, 201.0], timeout=60, message="DDATA")

    gateway.signal(signal.SIGKILL)
    gateway.stop()
    death = host.wait_for(lambda e: e.get("event") == "message" and "/NDEATH/" in e["topic"], 60)
    assert death["topic"] == "spBv1.0/Plant/NDEATH/gw-1" and bdseq(death) == "0"  # ties it to that NBIRTH

    start()
    wait_until(lambda: len(host.messages("NBIRTH")) == 2, timeout=60, message="the NBIRTH after the restart")
    assert bdseq(host.messages("NBIRTH")[1]) == "1"
    assert (tmp_path / "data" / "sparkplug" / "ignition.bdseq").read_text().strip() == "1"
    edge.command({"cmd": "data", "count": 1})  # the restarted gateway asks the edge node for a rebirth first
    wait_until(lambda: temperatures(host, "Press-1")[-1:] == [201.5], timeout=60, message="DDATA after the restart")
