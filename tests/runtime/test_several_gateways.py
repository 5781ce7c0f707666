"""Several gateways sharing one MQTT stream (MQTT 5 shared subscriptions), one of them killed.

Three ``gateway run`` processes, gw-1 … gw-3, subscribe to ``$share/gw/factory/#``: the broker
hands each message to one member of the group. Each gateway has its own name (and so its own
client id, ``<name>-<connector>``), its own data_dir (buffer, historian) and they share one
VictoriaMetrics. gw-2 is SIGKILLed in the middle of a QoS 1 stream of 24,000 messages.

What Mosquitto 2.0 does then, and what these tests prove (docs/SCALING.md):

- The members have persistent sessions (the gateway's default with QoS 1). Mosquitto keeps the
  dead member in the group: it goes on giving it every third message, which it queues in the
  member's session, and keeps the messages the member had not acknowledged there too. The
  survivors never get them. Nothing is lost: when gw-2 comes back under the same name (the
  same client id) the broker delivers all of it, and every message is stored, a duplicate only
  ever an exact overwrite.
- With sessions that end with the connection (``session_expiry: 0``) the survivors do get every
  message published after the death, but the messages the dead member had received and not
  acknowledged are dropped by Mosquitto, not handed to another member: lost. That is why the
  gateway keeps persistent sessions, and why a dead gateway must come back.
"""

from __future__ import annotations

import functools
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import orjson
import pytest
import yaml

from tests.fixtures.gateway import GatewayRun
from tests.fixtures.mosquitto import Mosquitto, Publisher, read_history
from tests.fixtures.victoriametrics import Sample, VictoriaMetrics
from tests.helpers import contract_energy_connector, free_port, stop_process, wait_until

BASE_MS = 1_714_564_800_000
GROUP_FILTER = "$share/gw/factory/#"


def topic(i: int) -> str:
    return f"factory/L{i % 4}/energy/m{i % 20:02d}"


def payload(i: int) -> bytes:
    return orjson.dumps({"p": i * 0.5, "e": i, "ts": BASE_MS + i})


def expected_samples(indexes: range) -> set[Sample]:
    samples: set[Sample] = set()
    for i in indexes:
        tags = (("line", f"L{i % 4}"), ("meter", f"m{i % 20:02d}"))
        samples.add(Sample("energy_power_w", tags, BASE_MS + i, i * 0.5))
        samples.add(Sample("energy_energy_kwh", tags, BASE_MS + i, float(i)))
    return samples


def stored_indexes(store: VictoriaMetrics) -> set[int]:
    return {s.time_ms - BASE_MS for s in store.samples('{__name__="energy_power_w"}')}


def history_indexes(folder: Path) -> set[int]:
    return {v.time // 1_000_000 - BASE_MS for v in read_history(folder, "energy") if v.field == "power_w"}


def write_gateway(folder: Path, name: str, broker: Mosquitto, store: VictoriaMetrics, http_port: int) -> Path:
    """One member of the group: its own name (its client id follows) and its own data_dir."""
    connector = contract_energy_connector(broker.url)
    del connector["client_id"]  # the default, '<gateway name>-<connector name>': unique per gateway
    connector["topics"][0]["filter"] = GROUP_FILTER  # type: ignore[index]
    config = {
        "gateway": {
            "name": name,
            "data_dir": str(folder / "data"),
            "shutdown_timeout": "20s",
            "http": {"listen": f"127.0.0.1:{http_port}"},
        },
        "sinks": [
            {"name": "local", "type": "historian", "path": str(folder / "history.db"), "flush_interval": "100ms"},
            {
                "name": "influx",
                "type": "influxdb",
                "url": store.url,
                "org": "lab",
                "bucket": "machines",
                "token": "t",
                "batch_size": 5000,
                "flush_interval": "100ms",
            },
        ],
        "connectors": [connector],
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "gateway.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def subscribed(gateway: GatewayRun) -> bool:
    return gateway.alive() and bool(((gateway.component("energy") or {}).get("detail") or {}).get("subscribed"))


@pytest.mark.slow
def test_three_gateways_share_the_stream_and_the_one_killed_gets_its_share_back_when_it_returns(
    mosquitto: Mosquitto, victoriametrics: VictoriaMetrics, tmp_path: Path, gateway_run: list[GatewayRun]
) -> None:
    count, rate = 24_000, 2_000.0
    kill_at = count // 3
    names = ["gw-1", "gw-2", "gw-3"]
    ports = {name: free_port() for name in names}
    configs = {name: write_gateway(tmp_path / name, name, mosquitto, victoriametrics, ports[name]) for name in names}
    gateways = {name: GatewayRun(configs[name], ports[name], tmp_path / name / "gateway.log") for name in names}
    for gateway in gateways.values():
        gateway_run.append(gateway)
        gateway.start()
    for name, gateway in gateways.items():
        wait_until(functools.partial(subscribed, gateway), timeout=60, message=f"{name} subscribed")
        assert f"as client id '{name}-energy'" in gateway.log_text()

    with Publisher(mosquitto, max_inflight=5000) as publisher:
        started = time.monotonic()
        for i in range(count):
            publisher.publish(topic(i), payload(i))
            if i == kill_at:
                # gw-2 has its share flowing and unacknowledged messages in flight when it dies.
                wait_until(lambda: gateways["gw-2"].counter("energy", "stored") >= 1_000, timeout=60)
                gateways["gw-2"].signal(signal.SIGKILL)
                assert gateways["gw-2"].process is not None
                gateways["gw-2"].process.wait(10)
                started = time.monotonic() - (i + 1) / rate  # keep the pace, not catch up
            if i % 50 == 49:
                time.sleep(max(0.0, started + (i + 1) / rate - time.monotonic()))
        assert publisher.wait(timeout=180) == count  # the broker accepted every message

    survivors = [gateways["gw-1"], gateways["gw-3"]]
    seen: dict[str, int] = {}

    def survivors_settled() -> bool:
        """Every message the survivors received is stored, and no new one came since the last look."""
        now = {g.config.parent.name: g.counter("energy", "received") for g in survivors}
        done = all(g.counter("energy", "stored") == now[g.config.parent.name] for g in survivors)
        quiet = now == seen
        seen.clear()
        seen.update(now)
        return done and quiet

    wait_until(survivors_settled, timeout=120, interval=1.5, message="the survivors idle with all they got stored")
    wait_until(
        lambda: (
            stored_indexes(victoriametrics) >= history_indexes(tmp_path / "gw-1") | history_indexes(tmp_path / "gw-3")
        ),
        timeout=60,
        interval=0.5,
        message="what the survivors stored is in VictoriaMetrics",
    )
    while_dead = stored_indexes(victoriametrics)
    missing = set(range(count)) - while_dead
    # Mosquitto kept the dead member in the group: its share waits in its session.
    assert missing, "the survivors got everything: Mosquitto would have handed them the dead member's share"
    later = range(kill_at + 2_000, count)  # well after the kill: no message of these was in flight then
    share = sum(1 for i in later if i in missing) / len(later)
    assert abs(share - 1 / 3) < 0.02, share  # strict round robin over the three members, dead or alive
    survivors_share = sum(g.counter("energy", "received") for g in survivors)
    print(
        f"gw-2 dead: {len(missing)} of {count} messages wait in its session at the broker "
        f"({share:.3f} of those published later); the survivors received {survivors_share}"
    )

    # gw-2 comes back: the same name, so the same client id and the same data_dir.
    returned = GatewayRun(configs["gw-2"], ports["gw-2"], tmp_path / "gw-2" / "gateway.log")
    gateway_run.append(returned)
    returned.start()
    wait_until(
        lambda: len(stored_indexes(victoriametrics)) >= count,
        timeout=120,
        interval=0.5,
        message="every message stored once gw-2 is back",
    )
    assert "connected to mqtt://" in returned.log_text() and "(session resumed)" in returned.log_text()
    for gateway in [*survivors, returned]:
        assert gateway.stop() == 0
    samples = victoriametrics.samples('{__name__=~"energy_.*"}')
    assert set(samples) == expected_samples(range(count))
    values: dict[tuple[str, tuple[tuple[str, str], ...], int], set[float]] = {}
    for sample in samples:  # redelivered messages stored twice are exact overwrites
        values.setdefault((sample.name, sample.tags, sample.time_ms), set()).add(sample.value)
    assert all(len(v) == 1 for v in values.values())
    histories = {name: history_indexes(tmp_path / name) for name in names}
    assert set().union(*histories.values()) == set(range(count))
    assert missing <= histories["gw-2"]  # its share came back to it, to no one else
    assert not missing & (histories["gw-1"] | histories["gw-3"])


# --- what Mosquitto does with a dead member whose session ends with its connection ----------------------

MEMBER = textwrap.dedent(
    """
    import sys

    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    port, client_id, acknowledge, out = int(sys.argv[1]), sys.argv[2], sys.argv[3] == "ack", sys.argv[4]
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    client.manual_ack_set(not acknowledge)  # the member that dies acknowledges nothing
    received = open(out, "a", buffering=1)
    client.on_message = lambda c, u, message: received.write(message.payload.decode() + "\\n")
    client.on_subscribe = lambda c, u, mid, codes, props: received.write("subscribed\\n")
    properties = Properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = 0  # the session ends with the connection
    client.connect("127.0.0.1", port, clean_start=True, properties=properties)
    client.subscribe("$share/gw/factory/#", qos=1)
    client.loop_forever()
    """
)


def test_mosquitto_drops_what_a_dead_member_without_a_session_had_not_acknowledged(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    script = tmp_path / "member.py"
    script.write_text(MEMBER)
    outputs = {name: tmp_path / f"{name}.txt" for name in ("m1", "m2", "m3")}
    members = {
        name: subprocess.Popen(
            [sys.executable, str(script), str(mosquitto.port), name, "noack" if name == "m2" else "ack", str(out)]
        )
        for name, out in outputs.items()
    }

    def lines(name: str) -> list[str]:
        for member in members.values():
            assert member.poll() is None or member.returncode == -signal.SIGKILL, "a member exited on its own"
        return outputs[name].read_text().split() if outputs[name].exists() else []

    def received(name: str) -> set[int]:
        return {int(x) for x in lines(name) if x.isdigit()}

    try:
        wait_until(lambda: all("subscribed" in lines(n) for n in outputs), timeout=30, message="members subscribed")
        with Publisher(mosquitto) as publisher:
            for i in range(300):
                publisher.publish("factory/L0/energy/m00", str(i))
            publisher.wait()
            wait_until(lambda: len(received("m2")) == 100, timeout=30, message="m2 holds its 100, unacknowledged")
            members["m2"].send_signal(signal.SIGKILL)  # dies with 100 messages unacknowledged
            members["m2"].wait(10)
            wait_until(lambda: "m2" not in broker_clients(mosquitto), timeout=30, message="the broker saw m2 go")
            for i in range(300, 600):
                publisher.publish("factory/L0/energy/m00", str(i))
            publisher.wait()
        def survivors() -> set[int]:
            return received("m1") | received("m3")

        wait_until(lambda: set(range(300, 600)) <= survivors(), timeout=30, message="the survivors got it all")
        # The messages m2 held unacknowledged went to no one: they would have come before the later ones.
        time.sleep(1.0)  # a last chance for a late redelivery, which must not come
        lost = received("m2") - survivors()
        assert len(lost) == 100, sorted(lost)
    finally:
        for member in members.values():
            stop_process(member)


def broker_clients(broker: Mosquitto) -> set[str]:
    """Client ids connected now, from the broker's log (connection_messages true)."""
    connected: set[str] = set()
    for line in broker.log_path.read_text(errors="replace").splitlines():
        if "New client connected" in line and " as " in line:
            connected.add(line.split(" as ")[1].split(" ")[0])
        elif "closed its connection" in line or "disconnect" in line:
            for word in line.split():
                connected.discard(word.rstrip(",."))
    return connected
