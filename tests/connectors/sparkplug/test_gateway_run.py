"""``gateway run`` with a Sparkplug B connector and the embedded historian, as an engineer runs it,
against the independent Tahu edge node: the metrics land in the historian under the names the
births give (``Nozzle/Temp``), with the group, edge node and device as tags; the API shows each
edge node and device online, and offline once the edge node is killed (its NDEATH)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import yaml

from tests.fixtures.gateway import GatewayRun
from tests.fixtures.mosquitto import Mosquitto, read_history
from tests.fixtures.sparkplug import PeerProcess
from tests.helpers import free_port, wait_until


def test_sparkplug_into_the_historian_with_birth_names_and_offline_on_death(
    tmp_path: Path,
    mosquitto: Mosquitto,
    sparkplug_edge: Callable[..., PeerProcess],
    gateway_run: list[GatewayRun],
) -> None:
    http_port = free_port()
    config = {
        "gateway": {
            "name": "spb-test",
            "data_dir": str(tmp_path / "data"),
            "http": {"listen": f"127.0.0.1:{http_port}"},
        },
        "sinks": [
            {"name": "local", "type": "historian", "path": str(tmp_path / "history.db"), "flush_interval": "100ms"}
        ],
        "connectors": [
            {"name": "spb", "type": "sparkplug", "broker": mosquitto.url, "group": "Plant", "host_id": "historian"}
        ],
    }
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    gateway = GatewayRun(path, http_port, tmp_path / "gateway.log")
    gateway_run.append(gateway)
    gateway.start()
    wait_until(lambda: (gateway.component("spb") or {}).get("detail", {}).get("subscribed"), timeout=30)

    edge = sparkplug_edge(mosquitto)
    edge.command({"cmd": "data", "count": 3})
    last = [e for e in edge.of("published") if e["kind"] == "DDATA" and e["device"] == "Press-2"][-1]
    last_ns = int(last["timestamp"]) * 1_000_000

    def temperatures() -> list[tuple[int, object]]:
        return [
            (v.time, v.value)
            for v in read_history(tmp_path, "sparkplug")
            if v.field == "Nozzle/Temp" and v.tags == {"group": "Plant", "edge_node": "Line-1", "device": "Press-2"}
        ]

    wait_until(lambda: any(t == last_ns for t, _ in temperatures()), timeout=30, message="the last DDATA stored")
    assert [value for _, value in temperatures()] == [200.0, 200.5, 201.0, 201.5]  # the birth, then 3 rounds
    fields = {v.field for v in read_history(tmp_path, "sparkplug")}
    assert {"Nozzle/Temp", "Counters/Int8", "Pump/Flow", "Properties/Hardware", "sparkplug_online"} <= fields
    assert not any(field.isdigit() for field in fields)  # never an alias as a name
    node = (gateway.component("spb") or {})["detail"]["edge_nodes"]["Plant/Line-1"]
    assert node["online"] and node["devices"]["Press-1"]["online"] and node["devices"]["Press-2"]["online"]

    edge.kill()  # the broker publishes its NDEATH (the will)

    def offline() -> bool:
        detail = (gateway.component("spb") or {})["detail"]["edge_nodes"]["Plant/Line-1"]
        return not detail["online"] and not any(d["online"] for d in detail["devices"].values())

    wait_until(offline, timeout=30, message="node and devices offline in the API")
    wait_until(
        lambda: (
            {
                (v.tags.get("device"), v.value)
                for v in read_history(tmp_path, "sparkplug")
                if v.field == "sparkplug_online"
            }
            >= {(None, False), ("Press-1", False), ("Press-2", False)}
        ),
        timeout=30,
        message="the offline marks stored",
    )
