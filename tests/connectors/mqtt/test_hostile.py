"""Thousands of hostile MQTT payloads among good ones, through a real Mosquitto and ``gateway run``.

Published with QoS 1, in a random (seeded) interleaving: random bytes, invalid UTF-8, 1 MB
JSON documents, 10,000 levels of nesting, NaN and Infinity, integers past 64 bits, duplicate
keys, line protocol with 5,000-digit numbers, and topics of 65,535 bytes — the longest an MQTT
topic can be (its length is a 16-bit number: paho refuses 65,536 before sending, and Mosquitto
delivers 65,535) — good and bad payloads on those too, each topic different.

What must hold: every good message is in the historian (exact values and timestamps), every
bad one is counted in the connector's ``malformed`` counter (exact counts, per topic filter
too), the gateway's memory stays bounded, and its log holds no traceback and no line longer
than a few KiB (a 64 KiB topic is cut in log lines).
"""

from __future__ import annotations

import random
import threading
from pathlib import Path
from typing import Any

import orjson
import psutil
import pytest
import yaml

from connectors.mqtt.config import TopicConfig
from connectors.mqtt.decode import TopicDecoder
from gateway.errors import DecodeError
from tests.fixtures.gateway import GatewayRun
from tests.fixtures.mosquitto import Mosquitto, Publisher, read_history
from tests.helpers import free_port, wait_until

T0 = 1_700_000_000_000_000_000
GOOD = 3000
#: The largest MQTT topic: its length is a 16-bit number.
MAX_TOPIC = 65_535
#: Memory the gateway may gain from its warmed-up size while the hostile run goes on (measured:
#: about 30 MiB; a batch of the link holds up to 5,000 messages, and 1 MB payloads are decoded).
#: With the decoder caching its topics (as it did before), the 2,500 long topics added 142 MiB.
RSS_BOUND = 120 * 2**20

TOPICS: list[dict[str, Any]] = [
    {
        "filter": "hostile/json/#",
        "format": "json",
        "measurement": "hj",
        "numbers": "auto",
        "time": {"path": "ts", "unit": "ns"},
        "fields": {"seq": {"path": "seq", "type": "int"}, "v": {"path": "v", "type": "float"}},
    },
    {"filter": "hostile/value/#", "format": "value", "measurement": "hv", "field": "v"},
    {"filter": "hostile/influx/#", "format": "influx", "measurement": "hi"},
]
MAX_PAYLOAD = 4 * 2**20  # 1 MB payloads are parsed (and found wrong), not only refused by size


def long_topic(prefix: str, index: int) -> str:
    head = f"{prefix}/{index}/"
    return head + "x" * (MAX_TOPIC - len(head.encode()))


def hostile_messages(rng: random.Random) -> list[tuple[str, bytes]]:
    """(topic, payload) of every bad message, by kind."""
    bad: list[tuple[str, bytes]] = []
    json_t, value_t, influx_t = "hostile/json/bad", "hostile/value/bad", "hostile/influx/bad"
    for _ in range(800):  # random bytes
        size = rng.choice([0, 1, 5, 50, 500, 5000])
        data = rng.randbytes(size)
        bad.append((rng.choice([json_t, influx_t]), data))
    for _ in range(300):  # invalid UTF-8
        junk = rng.choice([b"\xff", b"\xc3\x28", b"\xe2\x82", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"])
        bad.append((json_t, b'{"seq": 1, "v": "' + junk + b'"}'))
        bad.append((value_t, b"21." + junk))
        bad.append((influx_t, b'm v=1,s="' + junk + b'"'))
    for i in range(10):  # 1 MB JSON: a text where a number is expected, an array of numbers
        bad.append((json_t, orjson.dumps({"seq": i, "v": "x" * 1_000_000, "ts": T0})))
        bad.append((json_t, orjson.dumps(list(range(200_000)))))
    for _ in range(50):  # 10,000 levels of nesting
        bad.append((json_t, b'{"a":' * 10_000 + b"1" + b"}" * 10_000))
        bad.append((json_t, b"[" * 10_000 + b"]" * 10_000))
    for literal in (b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e999") * 60:  # NaN and infinity
        bad.append((json_t, b'{"seq": 1, "v": ' + literal + b', "ts": 1}'))
        bad.append((value_t, literal.lower()))
        bad.append((influx_t, b"m v=" + literal.lower()))
    for literal in (b"9223372036854775808", b"18446744073709551616", b"9" * 30, b"-9" * 1) * 50:
        if literal == b"-9":
            literal = b"-9223372036854775809"
        bad.append((json_t, b'{"seq": ' + literal + b', "v": 1.5, "ts": 1}'))  # seq is an int field
        bad.append((influx_t, b"m v=" + literal + b"i"))
    for _ in range(100):  # thousands of digits
        bad.append((influx_t, b"m v=" + b"9" * 5000 + b"i"))
        bad.append((influx_t, b"m v=1i " + b"9" * 5000))
    for _ in range(150):  # duplicate keys
        bad.append((json_t, b'{"seq": 1, "v": 1.5, "seq": 2, "ts": 1}'))
        bad.append((json_t, b'{"seq": 1, "v": 1.5, "ts": 1, "ts" : 2}'))
    for _ in range(100):  # empty and blank
        bad.append((json_t, b""))
        bad.append((value_t, b"   "))
        bad.append((influx_t, b"# only a comment\n"))
    for index in range(1500):  # the longest topic, a bad payload
        bad.append((long_topic("hostile/json/long-bad", index), b'{"seq": 1, "v": NaN}'))
    return bad


def good_messages() -> tuple[list[tuple[str, bytes]], dict[str, set[Any]]]:
    """(topic, payload) of every good message, and what the historian must hold for them."""
    good: list[tuple[str, bytes]] = []
    expected: dict[str, set[Any]] = {"hj": set(), "hv": set(), "hi": set()}
    for i in range(GOOD):
        kind = i % 3
        if kind == 0:
            topic = long_topic("hostile/json/long-good", i) if i % 6 == 0 else "hostile/json/good"
            good.append((topic, orjson.dumps({"seq": i, "v": i + 0.5, "ts": T0 + i})))
            expected["hj"].add((T0 + i, "seq", i))
            expected["hj"].add((T0 + i, "v", i + 0.5))
        elif kind == 1:
            good.append(("hostile/value/good", f"{i}.25".encode()))
            expected["hv"].add(i + 0.25)
        else:
            good.append(("hostile/influx/good", f"anything,kind=good seq={i}i,v={i}.75 {T0 + i}".encode()))
            expected["hi"].add((T0 + i, "seq", i))
            expected["hi"].add((T0 + i, "v", i + 0.75))
    return good, expected


DECODERS = [TopicDecoder(TopicConfig.model_validate(t), measurement="x", max_payload_size=MAX_PAYLOAD) for t in TOPICS]


def classify(topic: str, payload: bytes) -> bool:
    """True if the decoder takes the message (what the test's own lists claim, checked offline)."""
    index = ["hostile/json/", "hostile/value/", "hostile/influx/"].index(topic[: topic.index("/", 8) + 1])
    try:
        DECODERS[index].decode(topic, payload, T0)
    except DecodeError:
        return False
    return True


class RssSampler(threading.Thread):
    """The peak RSS of a process, sampled every 0.1 s until stopped."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.peak = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.1):
            try:
                self.peak = max(self.peak, self.process.memory_info().rss)
            except psutil.Error:
                return


def write_gateway_config(folder: Path, broker: Mosquitto, http_port: int) -> Path:
    config = {
        "gateway": {"name": "hostile", "data_dir": str(folder / "data"), "http": {"listen": f"127.0.0.1:{http_port}"}},
        "sinks": [
            {"name": "local", "type": "historian", "path": str(folder / "history.db"), "flush_interval": "100ms"}
        ],
        "connectors": [
            {
                "name": "plant",
                "type": "mqtt",
                "broker": broker.url,
                "client_id": "gw-hostile",
                "qos": 1,
                "max_payload_size": MAX_PAYLOAD,
                "topics": TOPICS,
            }
        ],
    }
    path = folder / "gateway.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.mark.slow
def test_thousands_of_hostile_payloads_cost_nothing_but_their_count(
    mosquitto: Mosquitto, tmp_path: Path, gateway_run: list[GatewayRun]
) -> None:
    rng = random.Random(20261207)
    bad = hostile_messages(rng)
    good, expected = good_messages()
    # The test's own claims, checked against the decoder offline (random bytes are almost never JSON).
    bad = [(topic, payload) for topic, payload in bad if not classify(topic, payload)]
    assert len(bad) > 3000
    assert all(classify(topic, payload) for topic, payload in good)
    messages = [(topic, payload, False) for topic, payload in bad] + [(t, p, True) for t, p in good]
    rng.shuffle(messages)
    warm_up = [("hostile/json/good", orjson.dumps({"seq": -1 - i, "v": 0.5, "ts": T0 - 1 - i})) for i in range(300)]
    expected["hj"] |= {(T0 - 1 - i, f, v) for i in range(300) for f, v in (("seq", -1 - i), ("v", 0.5))}

    http_port = free_port()
    gateway = GatewayRun(write_gateway_config(tmp_path, mosquitto, http_port), http_port, tmp_path / "gateway.log")
    gateway_run.append(gateway)
    gateway.start()
    # Subscribed, not only connected: what is published before the SUBACK never reaches a new session.
    wait_until(
        lambda: len((gateway.component("plant") or {}).get("detail", {}).get("subscribed", [])) == len(TOPICS),
        timeout=60,
        message="the connector subscribed to its three filters",
    )

    with Publisher(mosquitto, max_inflight=200) as publisher:
        for topic, payload in warm_up:
            publisher.publish(topic, payload)
        publisher.wait()
        wait_until(lambda: gateway.counter("plant", "stored") == len(warm_up), timeout=60, message="warm-up stored")
        baseline = psutil.Process(gateway.pid).memory_info().rss
        sampler = RssSampler(gateway.pid)
        sampler.start()
        for topic, payload, _ in messages:
            publisher.publish(topic, payload)
        publisher.wait(timeout=300)

    total = len(warm_up) + len(messages)
    wait_until(
        lambda: gateway.counter("plant", "stored") + gateway.counter("plant", "malformed") >= total,
        timeout=240,
        message=f"{total} messages received and settled",
    )
    sampler.done.set()
    sampler.join()
    component = gateway.component("plant")
    assert component is not None
    counters = component["counters"]
    assert counters["received"] == total
    assert counters["malformed"] == len(bad)
    assert counters["stored"] == len(warm_up) + len(good)
    assert counters["unmatched"] == 0
    per_filter = component["detail"]["topics"]
    for topic_config in TOPICS:
        prefix = topic_config["filter"].removesuffix("#")
        bad_here = sum(1 for topic, _ in bad if topic.startswith(prefix))
        assert per_filter[topic_config["filter"]]["malformed"] == bad_here, prefix
    growth = sampler.peak - baseline
    mib = 2**20
    print(f"hostile: {len(bad)} bad, {len(good)} good; RSS {baseline / mib:.0f} MiB +{growth / mib:.0f} MiB at peak")
    assert growth < RSS_BOUND, f"the gateway grew by {growth / 2**20:.0f} MiB (from {baseline / 2**20:.0f} MiB)"

    assert gateway.stop() == 0
    stored_json = {(v.time, v.field, v.value) for v in read_history(tmp_path, "hj")}
    assert stored_json == expected["hj"]
    assert {v.value for v in read_history(tmp_path, "hv")} == expected["hv"]
    assert {(v.time, v.field, v.value) for v in read_history(tmp_path, "hi")} == expected["hi"]
    log = gateway.log_text()
    assert "Traceback" not in log, log[-5000:]
    assert max(len(line) for line in log.splitlines()) < 4096
    assert "malformed message on topic 'hostile/" in log
    assert f"{len(bad)} malformed" in log  # the connector's closing line


@pytest.mark.parametrize("format_", ["value", "json"])
async def test_messages_of_one_read_stamped_at_receipt_get_distinct_times(format_: str) -> None:
    """Found by the run above: the link stamps a whole socket read with one time, so a series' values
    stamped at receipt overwrote each other in the store (counted stored, one value left)."""
    from connectors.mqtt._client import Incoming
    from connectors.mqtt.config import MqttConfig
    from connectors.mqtt.source import MqttSource
    from gateway.component import RuntimeContext
    from gateway.logs import component_logger

    topic: dict[str, Any] = {"filter": "a/+", "measurement": "m", "format": format_}
    config = MqttConfig.model_validate({"name": "t", "type": "mqtt", "broker": "mqtt://127.0.0.1:1", "topics": [topic]})
    source = MqttSource(config, RuntimeContext("gw", Path("."), component_logger("connector", "t")))
    batches: list[Any] = []

    async def emit(points: Any, on_stored: Any = None) -> None:
        batches.append(points)

    payload = b"21.5" if format_ == "value" else b'{"v": 21.5}'
    await source._emit(emit, [Incoming("a/x", payload, 0, 0, 1_000, 1) for _ in range(5)])
    await source._emit(emit, [Incoming("a/x", payload, 0, 0, 1_002, 1) for _ in range(2)])
    times = [p.time for batch in batches for p in batch]
    assert times == [1_000, 1_001, 1_002, 1_003, 1_004, 1_005, 1_006]
