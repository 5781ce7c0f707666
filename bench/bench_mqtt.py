"""MQTT ingestion figures (docs/PERFORMANCE.md): ``python -m bench.bench_mqtt [--quick]``.

Three measurements against a real Mosquitto started in a temp folder:

1. **QoS 1 backlog drain**: N JSON messages (two fields, 100 topics) are published while the
   subscribers are away (the publisher keeps ≤ 1,000 QoS 1 messages unacknowledged), then each
   persistent session is drained alone: the gateway into the historian, acknowledging after
   storage, beside ``mosquitto_sub`` and a bare paho subscriber as ceilings, and paho's
   network thread with one ``ack()`` per message (the design the connector did not take).
   Loss and duplicates of the gateway are counted from the historian against what was published.
2. **QoS 0 live stream**: a publisher process paced at R msg/s for S seconds; the rate the
   gateway stored at, and the loss counted from the historian.
3. **Steady 1,000 msg/s** (QoS 1): ``gateway run`` as its own process; CPU % of one core and RSS.
4. **Publishing** (QoS 1, what the MQTT sink will do): N messages of one point each through the
   link (``gateway/mqtt/link.py``) to the broker, as ``publish_many`` batches, as
   concurrent ``publish`` calls and as one awaited ``publish`` at a time; beside a bare paho
   publisher (its network thread, ≤ 1,000 in flight) and the raw publisher below.

The publisher is a small raw MQTT 3.1.1 client in its own process (paho's publisher is slower
than the subscribers it has to feed). Figures go to stdout; docs/PERFORMANCE.md records them.

Every wait has a deadline. A figure taken after one ran out says so where the figure would be
("TIMED OUT after 600 s: 9,812 of 10,000 stored — not a throughput figure"), its loss still counted
against what was published, and the run ends with a list of them and exit status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import psutil
import yaml

from gateway.config import load_config
from gateway.runtime import Gateway
from gateway.sinks.historian.store import HistorianStore
from tests.fixtures.mosquitto import Mosquitto

BASE_MS = 1_714_564_800_000
PYTHON = sys.executable
TIMED_OUT: list[str] = []  # every figure of this run taken after a wait ran out


def timed_out(seconds: float, done: int | None, of: int, what: str) -> str:
    """The text that stands where a figure would: the wait ran out, so it is no figure."""
    counted = f"{done:,} of {of:,} {what}" if done is not None else f"not all {of:,} {what} (not counted)"
    text = f"TIMED OUT after {seconds:g} s: {counted} — not a throughput figure"
    TIMED_OUT.append(text)
    return text


def rate_cell(rate: float | str) -> str:
    return rate if isinstance(rate, str) else f"{rate:,.0f}"


# --- a raw MQTT 3.1.1 publisher (runs in its own process) -------------------------------------------


def _remaining_length(length: int) -> bytes:
    out = bytearray()
    while True:
        byte, length = length % 128, length // 128
        out.append(byte | (0x80 if length else 0))
        if not length:
            return bytes(out)


def _connect_packet(client_id: str) -> bytes:
    cid = client_id.encode()
    body = b"\x00\x04MQTT\x04\x02\x00\x3c" + struct.pack("!H", len(cid)) + cid
    return b"\x10" + _remaining_length(len(body)) + body


def _publish_packet(topic: bytes, payload: bytes, qos: int, mid: int) -> bytes:
    head = struct.pack("!H", len(topic)) + topic + (struct.pack("!H", mid) if qos else b"")
    return bytes([0x30 | (qos << 1)]) + _remaining_length(len(head) + len(payload)) + head + payload


def payload(i: int) -> bytes:
    return orjson.dumps({"p": round(i * 0.5, 1), "e": i, "ts": BASE_MS + i})


def topic(i: int, topics: int) -> bytes:
    return f"bench/meter-{i % topics:03d}".encode()


def _open(port: int, client_id: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(_connect_packet(client_id))
    connack = sock.recv(4)
    if connack[:1] != b"\x20" or connack[3:4] != b"\x00":
        raise RuntimeError(f"publisher: broker refused the connection: {connack!r}")
    return sock


def publish_qos1(port: int, start: int, count: int, topics: int, window: int = 1000) -> float:
    """Publish ``count`` QoS 1 messages with at most ``window`` unacknowledged; returns msg/s."""
    sock = _open(port, f"bench-pub-{os.getpid()}")
    began = time.perf_counter()
    sent = acked = 0
    buffer = b""
    while acked < count:
        burst = []
        while sent < count and sent - acked < window:
            i = start + sent
            burst.append(_publish_packet(topic(i, topics), payload(i), 1, sent % 65535 + 1))
            sent += 1
        if burst:
            sock.sendall(b"".join(burst))
        buffer += sock.recv(65536)
        packets = len(buffer) // 4
        if packets and buffer[0] != 0x40:
            raise RuntimeError(f"publisher: unexpected packet {buffer[:8]!r}")
        acked += packets
        buffer = buffer[packets * 4 :]
    elapsed = time.perf_counter() - began
    sock.sendall(b"\xe0\x00")
    sock.close()
    return count / elapsed


def publish_paced(
    port: int, start: int, rate: float, seconds: float, topics: int, qos: int, out: Any, progress: Any = None
) -> None:
    """Publish at ``rate`` msg/s for ``seconds`` (QoS 0, or QoS 1 acknowledged in the background).

    ``progress`` (a shared integer) follows the count handed to the socket, for a caller whose wait
    for the end runs out."""
    sock = _open(port, f"bench-paced-{os.getpid()}")
    sock.setblocking(True)
    started_at = time.time()
    began = time.perf_counter()
    sent = 0
    total = int(rate * seconds)
    while sent < total:
        due = min(total, int((time.perf_counter() - began) * rate)) - sent
        if due > 0:
            packets = []
            for k in range(due):
                i = start + sent + k
                packets.append(_publish_packet(topic(i, topics), payload(i), qos, (sent + k) % 65535 + 1))
            sock.sendall(b"".join(packets))
            sent += due
            if progress is not None:
                progress.value = sent
            if qos:  # keep the PUBACKs drained (no window needed at a paced rate)
                sock.setblocking(False)
                try:
                    while sock.recv(65536):
                        pass
                except BlockingIOError:
                    pass
                sock.setblocking(True)
        time.sleep(0.002)
    elapsed = time.perf_counter() - began
    sock.sendall(b"\xe0\x00")
    sock.close()
    out.put((sent, sent / elapsed, started_at))


# --- ceilings: other subscribers draining the same backlog ------------------------------------------

BARE_PAHO = r"""
import sys, time
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
import threading
port, client_id, count, mode = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
deadline = float(sys.argv[5])
got = 0
def on_message(client, userdata, message):
    global got
    got += 1
    if mode == "ack":
        client.ack(message.mid, message.qos)
    if got >= count:
        client.disconnect()
client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False,
                     protocol=mqtt.MQTTv311, manual_ack=(mode == "ack"))
client.on_message = on_message
began = time.perf_counter()
client.connect("127.0.0.1", port)
if mode == "ack":
    client.loop_start()
    while got < count and time.perf_counter() - began < deadline:
        time.sleep(0.01)
    client.loop_stop()
else:
    timer = threading.Timer(deadline, client.disconnect)  # the deadline: loop_forever returns
    timer.daemon = True
    timer.start()
    client.loop_forever()
    timer.cancel()
print(time.perf_counter() - began, got)
"""


def prime_v311_session(port: int, client_id: str, topic_filter: str) -> None:
    """Create a persistent 3.1.1 session subscribed to ``topic_filter`` (then go away)."""
    import threading

    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    subscribed = threading.Event()
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
    client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic_filter, qos=1)
    client.on_subscribe = lambda c, u, mid, codes, p: subscribed.set()
    client.connect("127.0.0.1", port)
    client.loop_start()
    if not subscribed.wait(30):
        raise RuntimeError(f"{client_id}: no SUBACK")
    client.disconnect()
    client.loop_stop()


DRAIN_TIMEOUT = 600.0  # seconds any one drain or publisher may take


def drain_mosquitto_sub(port: int, client_id: str, count: int) -> float | str:
    binary = shutil.which("mosquitto_sub")
    if binary is None:
        return float("nan")
    args = [binary, "-h", "127.0.0.1", "-p", str(port), "-i", client_id, "-c", "-q", "1"]
    args += ["-t", "bench/#", "-C", str(count)]
    began = time.perf_counter()
    try:
        subprocess.run(args, stdout=subprocess.DEVNULL, check=True, timeout=DRAIN_TIMEOUT)
    except subprocess.TimeoutExpired:  # its output goes to /dev/null: how many it had is not known
        return timed_out(DRAIN_TIMEOUT, None, count, "received")
    return count / (time.perf_counter() - began)


def drain_paho(port: int, client_id: str, count: int, mode: str) -> float | str:
    result = subprocess.run(
        [PYTHON, "-c", BARE_PAHO, str(port), client_id, str(count), mode, str(DRAIN_TIMEOUT)],
        capture_output=True,
        text=True,
        check=True,
        timeout=DRAIN_TIMEOUT + 60,
    )
    elapsed, got = result.stdout.strip().splitlines()[-1].split()
    if int(got) < count:
        return timed_out(DRAIN_TIMEOUT, int(got), count, "received")
    return count / float(elapsed)


# --- the gateway ----------------------------------------------------------------------------------


def gateway_config(folder: Path, port: int, *, qos: int, client_id: str, flush: str = "100ms") -> Path:
    config = {
        "gateway": {"name": "bench", "data_dir": str(folder / "data"), "http": {"enabled": False}},
        "sinks": [
            {
                "name": "local",
                "type": "historian",
                "path": str(folder / "history.db"),
                "batch_size": 10_000,
                "flush_interval": flush,
            }
        ],
        "connectors": [
            {
                "name": "meters",
                "type": "mqtt",
                "broker": f"mqtt://127.0.0.1:{port}",
                "client_id": client_id,
                "qos": qos,
                "topics": [
                    {
                        "filter": "bench/+",
                        "tags_from_topic": {"meter": 1},
                        "measurement": "energy",
                        "time": {"path": "ts", "unit": "ms"},
                        "fields": {"power_w": "p", "energy_kwh": "e"},
                    }
                ],
            }
        ],
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "gateway.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


async def _until(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.005)
    return True


async def prime_gateway(config_path: Path) -> None:
    async with Gateway(load_config(config_path)) as gateway:
        status = gateway.sources[0].status
        if not await _until(lambda: status.detail.get("subscribed"), 30):
            raise RuntimeError(f"the gateway did not subscribe: {status.as_dict()}")


async def drain_gateway(config_path: Path, count: int) -> tuple[float | None, dict[str, int]]:
    """msg/s and the connector's counters; None for the rate when the drain's wait ran out."""
    began = time.perf_counter()
    async with Gateway(load_config(config_path)) as gateway:
        status = gateway.sources[0].status
        done = await _until(lambda: status.counters["stored"] >= count, DRAIN_TIMEOUT)
        elapsed = time.perf_counter() - began
        counters = dict(status.counters)
    return (count / elapsed if done else None), counters


def loss_and_duplicates(folder: Path, start: int, count: int, topics: int) -> tuple[int, int, int]:
    """(messages missing, messages wrong, rows beyond 2 per message) from the historian file."""
    store = HistorianStore(folder / "history.db", readonly=True)
    try:
        rows = store.read(measurement="energy")
    finally:
        store.close()
    seen: dict[int, set[str]] = {}
    wrong = 0
    for row in rows:
        i = row.time // 1_000_000 - BASE_MS
        expected = {"power_w": round(i * 0.5, 1), "energy_kwh": float(i)}[row.field]
        if row.value != expected or row.tags.get("meter") != f"meter-{i % topics:03d}":
            wrong += 1
        seen.setdefault(i, set()).add(row.field)
    complete = sum(1 for i in range(start, start + count) if seen.get(i) == {"power_w", "energy_kwh"})
    return count - complete, wrong, len(rows) - 2 * len(seen)


# --- the three measurements --------------------------------------------------------------------------


def backlog(root: Path, count: int, topics: int) -> None:
    print(f"\n## QoS 1 backlog drain: {count:,} JSON messages (2 fields), {topics} topics")
    broker = Mosquitto(root / "broker-backlog")
    broker.start()
    try:
        config = gateway_config(root / "gw-backlog", broker.port, qos=1, client_id="bench-gateway")
        asyncio.run(prime_gateway(config))
        for client_id in ("bench-mosquitto-sub", "bench-paho", "bench-paho-thread-ack"):
            prime_v311_session(broker.port, client_id, "bench/#")
        rate = publish_qos1(broker.port, 0, count, topics)
        print(f"published {count:,} QoS 1 messages at {rate:,.0f} msg/s (≤ 1,000 unacknowledged), 4 sessions queued")
        print("Mosquitto 2.0.11, max_inflight_messages 0 (no limit), max_queued_messages 0 (no limit)")
        print()
        print("| subscriber (draining its own persistent session alone) | msg/s |")
        print("|---|---|")
        rate_c = drain_mosquitto_sub(broker.port, "bench-mosquitto-sub", count)
        print(f"| mosquitto_sub (C, QoS 1, output to /dev/null) | {rate_cell(rate_c)} |")
        rate_auto = drain_paho(broker.port, "bench-paho", count, "auto")
        print(f"| bare paho subscriber (loop_forever, automatic acks, no decoding) | {rate_cell(rate_auto)} |")
        rate_ack = drain_paho(broker.port, "bench-paho-thread-ack", count, "ack")
        print(f"| paho loop_start + one ack() per message (no decoding, no storage) | {rate_cell(rate_ack)} |")
        drained, counters = asyncio.run(drain_gateway(config, count))
        # Counted against the messages published (and acknowledged by the broker), not what arrived.
        missing, wrong, extra = loss_and_duplicates(config.parent, 0, count, topics)
        figure = (
            rate_cell(drained) if drained is not None else timed_out(DRAIN_TIMEOUT, count - missing, count, "stored")
        )
        print(f"| **gateway → historian, acknowledged after storage** | **{figure}** |")
        print()
        print(
            f"gateway: received {counters['received']:,}, stored {counters['stored']:,}, malformed "
            f"{counters['malformed']}; historian: {missing:,} of {count:,} published messages missing, "
            f"{wrong} wrong values, {extra} duplicate rows, "
            f"{max(0, counters['received'] - count)} redelivered duplicates received"
        )
    finally:
        broker.stop()


def live_qos0(root: Path, rates: list[int], seconds: float, topics: int) -> None:
    print(f"\n## QoS 0 live stream: publisher paced for {seconds:g} s, {topics} topics")
    broker = Mosquitto(root / "broker-live")
    broker.start()
    try:
        print()
        print(
            "| offered msg/s | published | stored | loss | gateway stored at msg/s | caught up after the last publish |"
        )
        print("|---|---|---|---|---|---|")
        start = 0
        for rate in rates:
            folder = root / f"gw-live-{rate}"
            config = gateway_config(folder, broker.port, qos=0, client_id=f"bench-live-{rate}")
            result = asyncio.run(_live_run(config, broker.port, start, rate, seconds, topics))
            sent, offered, elapsed, lag, stored, caught_up = result
            missing, wrong, extra = loss_and_duplicates(folder, start, sent, topics)  # against `sent`
            assert wrong == 0 and extra == 0, (wrong, extra)
            if caught_up:
                figures = f"{stored / elapsed:,.0f} | {lag:.2f} s"
            else:
                figures = f"{timed_out(LIVE_CATCH_UP, sent - missing, sent, 'stored')} | not caught up"
            print(f"| {rate:,} (achieved {offered:,.0f}) | {sent:,} | {stored:,} | {missing:,} | {figures} |")
            start += sent
    finally:
        broker.stop()


LIVE_CATCH_UP = 30.0  # seconds the gateway has to store the stream after its last message


async def _live_run(
    config: Path, port: int, start: int, rate: int, seconds: float, topics: int
) -> tuple[int, float, float, float, int, bool]:
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    async with Gateway(load_config(config)) as gateway:
        status = gateway.sources[0].status
        if not await _until(lambda: status.detail.get("subscribed"), 30):  # QoS 0: it would all be lost
            raise RuntimeError(f"the gateway did not subscribe: {status.as_dict()}")
        publisher = context.Process(target=publish_paced, args=(port, start, rate, seconds, topics, 0, out))
        publisher.start()
        while publisher.is_alive() or out.empty():
            await asyncio.sleep(0.05)
            if not publisher.is_alive() and out.empty():
                raise RuntimeError("the publisher died")
            if not out.empty():
                break
        sent, offered, started_at = out.get()
        published_at = time.time()
        caught_up = await _until(lambda: status.counters["stored"] + status.counters["dropped"] >= sent, LIVE_CATCH_UP)
        finished = time.time()
        publisher.join(10)
        stored = status.counters["stored"]
    # From the publisher's first message to the last one stored (clocks of one machine).
    return sent, offered, finished - started_at, finished - published_at, stored, caught_up


def steady(root: Path, rate: int, seconds: float, topics: int) -> None:
    print(f"\n## Steady {rate:,} msg/s, QoS 1, `gateway run` as its own process ({seconds:g} s measured)")
    broker = Mosquitto(root / "broker-steady")
    broker.start()
    folder = root / "gw-steady"
    config = gateway_config(folder, broker.port, qos=1, client_id="bench-steady", flush="1s")
    log = (folder / "gateway.log").open("wb")
    gateway_bin = Path(PYTHON).parent / "gateway"
    process = subprocess.Popen([str(gateway_bin), "run", str(config)], stderr=log, cwd=folder)
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    progress = context.Value("q", 0)
    try:
        deadline = time.monotonic() + 60
        while b"subscribed to" not in (folder / "gateway.log").read_bytes():
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError((folder / "gateway.log").read_text()[-2000:])
            time.sleep(0.05)
        warmup = 5.0
        publisher = context.Process(
            target=publish_paced, args=(broker.port, 0, rate, seconds + warmup, topics, 1, out, progress)
        )
        publisher.start()
        proc = psutil.Process(process.pid)
        time.sleep(warmup)
        cpu0, wall0 = sum(proc.cpu_times()[:2]), time.perf_counter()
        rss_max = 0
        while time.perf_counter() - wall0 < seconds:
            rss_max = max(rss_max, proc.memory_info().rss)
            time.sleep(0.5)
        cpu1, wall1 = sum(proc.cpu_times()[:2]), time.perf_counter()
        late: list[str] = []  # the waits below that ran out
        publisher.join(60)
        if publisher.is_alive():  # still publishing a minute after its schedule: what it sent so far
            publisher.kill()
            publisher.join(10)
            sent, offered = progress.value, float("nan")
            late.append(timed_out(60, sent, int(rate * (seconds + warmup)), "published"))
        else:
            sent, offered, _ = out.get(timeout=10)
        process.terminate()
        try:
            code: int | str = process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
            code = "none, killed"
            late.append(timed_out(60, None, sent, "stored before SIGTERM ended the gateway"))
        # Counted against what the publisher sent, from the historian file.
        missing, wrong, extra = loss_and_duplicates(folder, 0, sent, topics)
        print()
        for text in late:
            print(text)
        print(f"offered {offered:,.0f} msg/s; gateway CPU {(cpu1 - cpu0) / (wall1 - wall0) * 100:.1f} % of one core, ")
        print(f"RSS max {rss_max / 2**20:.0f} MiB; after SIGTERM: exit code {code}, {sent:,} published, ")
        print(f"{missing:,} missing, {wrong} wrong, {extra} duplicate rows in the historian")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        log.close()
        broker.stop()


BARE_PAHO_PUBLISHER = r"""
import sys, threading, time
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
port, count = int(sys.argv[1]), int(sys.argv[2])
# At most 1,000 in flight, and no more queued inside paho: it rescans its whole queue at every
# acknowledgement, so handing it 100,000 messages at once takes minutes.
window = threading.Semaphore(1000)
done = threading.Event()
acked = 0
def on_publish(client, userdata, mid, reason_code, properties):
    global acked
    acked += 1
    window.release()
    if acked >= count:
        done.set()
client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-paho-pub", protocol=mqtt.MQTTv5)
client.max_inflight_messages_set(1000)
client.max_queued_messages_set(0)
client.on_publish = on_publish
deadline = float(sys.argv[3])
client.connect("127.0.0.1", port)
client.loop_start()
payloads = [
    (f"bench/out/{i % 100:03d}", b'{"p":%.1f,"e":%d,"ts":%d}' % (i * 0.5, i, 1714564800000 + i)) for i in range(count)
]
began = time.perf_counter()
for topic, payload in payloads:
    if not window.acquire(timeout=max(0.0, deadline - (time.perf_counter() - began))):
        break
    client.publish(topic, payload, qos=1)
done.wait(max(0.0, deadline - (time.perf_counter() - began)))
print(time.perf_counter() - began, acked)
client.disconnect()
client.loop_stop()
"""


def paho_publisher(port: int, count: int) -> float | str:
    result = subprocess.run(
        [PYTHON, "-c", BARE_PAHO_PUBLISHER, str(port), str(count), str(DRAIN_TIMEOUT)],
        capture_output=True,
        text=True,
        check=True,
        timeout=DRAIN_TIMEOUT + 60,
    )
    elapsed, acked = result.stdout.strip().splitlines()[-1].split()
    if int(acked) < count:
        return timed_out(DRAIN_TIMEOUT, int(acked), count, "acknowledged")
    return count / float(elapsed)


async def link_publisher(port: int, count: int, mode: str, batch: int = 5000) -> float:
    from gateway.mqtt.link import LinkOptions, MqttLink

    messages = [(f"bench/out/{i % 100:03d}", payload(i)) for i in range(count)]
    async with MqttLink(LinkOptions("127.0.0.1", port, f"bench-link-{mode}", clean_start=True)) as link:
        if not await _until(lambda: link.connected, 30):
            raise RuntimeError("the link did not connect")
        began = time.perf_counter()
        if mode == "publish_many":
            for start in range(0, count, batch):
                await link.publish_many(messages[start : start + batch], qos=1)
        elif mode == "concurrent":
            for start in range(0, count, batch):
                await asyncio.gather(*(link.publish(t, p, qos=1) for t, p in messages[start : start + batch]))
        else:
            for t, p in messages:
                await link.publish(t, p, qos=1)
        elapsed = time.perf_counter() - began
    return count / elapsed


def publishing(root: Path, count: int) -> None:
    print(f"\n## QoS 1 publishing: {count:,} messages of one point each (JSON, 2 fields), 100 topics, no subscriber")
    broker = Mosquitto(root / "broker-publish")
    broker.start()
    try:
        print()
        print("| publisher | msg/s (= points/s) |")
        print("|---|---|")
        one_by_one = min(count, 20_000)
        rows: list[tuple[str, Callable[[], float | str]]] = [
            (
                "link `publish_many`, batches of 5,000",
                lambda: asyncio.run(link_publisher(broker.port, count, "publish_many")),
            ),
            (
                "link `publish`, 5,000 concurrent calls per batch",
                lambda: asyncio.run(link_publisher(broker.port, count, "concurrent")),
            ),
            (
                f"link `publish`, one awaited at a time ({one_by_one:,} messages)",
                lambda: asyncio.run(link_publisher(broker.port, one_by_one, "sequential")),
            ),
            ("bare paho publisher (network thread, ≤ 1,000 in flight)", lambda: paho_publisher(broker.port, count)),
            ("raw socket publisher (bench's own, ≤ 1,000 in flight)", lambda: publish_qos1(broker.port, 0, count, 100)),
        ]
        for name, run in rows:
            print(f"| {name} | {rate_cell(run())} |")
    finally:
        broker.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=100_000, help="backlog size (default 100,000)")
    parser.add_argument("--topics", type=int, default=100)
    parser.add_argument("--rates", default="20000,40000,60000", help="QoS 0 offered rates, msg/s")
    parser.add_argument("--seconds", type=float, default=5.0, help="QoS 0 stream length per rate")
    parser.add_argument("--steady-rate", type=int, default=1000)
    parser.add_argument("--steady-seconds", type=float, default=30.0)
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument(
        "--publish-messages", type=int, default=100_000, help="messages per publisher (default 100,000)"
    )
    parser.add_argument("--only", choices=["backlog", "live", "steady", "publish"], action="append")
    args = parser.parse_args(argv)
    if args.quick:
        args.messages, args.rates, args.seconds, args.steady_seconds = 10_000, "10000", 2.0, 2.0
        args.publish_messages = 10_000
    only = set(args.only or ["backlog", "live", "steady", "publish"])
    print("# MQTT ingestion benchmark")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start")
    with tempfile.TemporaryDirectory(prefix="bench-mqtt-") as tmp:
        root = Path(tmp)
        if "backlog" in only:
            backlog(root, args.messages, args.topics)
        if "live" in only:
            live_qos0(root, [int(r) for r in args.rates.split(",")], args.seconds, args.topics)
        if "steady" in only:
            steady(root, args.steady_rate, args.steady_seconds, args.topics)
        if "publish" in only:
            publishing(root, args.publish_messages)
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end")
    if TIMED_OUT:
        print(f"\n{len(TIMED_OUT)} figure(s) above were taken after a wait ran out:")
        for text in TIMED_OUT:
            print(f"- {text}")
        sys.exit(1)


if __name__ == "__main__":
    main()
