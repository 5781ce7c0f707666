"""``gateway demo``: simulated machines and sensors, the gateway, and the embedded historian.

Needs nothing but Python: when no MQTT broker answers on localhost:1883 it starts an
embedded one (amqtt, MQTT 3.1.1) on a free port. The gateway runs ``configs/demo.yaml``
with the historian as its store; the demo prints where to look at the data. An installed
package carries that file as ``gateway/configs/demo.yaml`` (setup.py copies configs/ in at
build time), so the demo runs from any folder and writes its data under the folder it runs in.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from gateway.config import GatewayConfig, load_config
from gateway.errors import GatewayError
from gateway.logs import component_logger
from gateway.ports import free_ports
from gateway.registry import component_types
from gateway.runtime import Gateway

__all__ = ["DEMO_CONFIG", "run_demo"]

log = component_logger("demo", "demo")


def _demo_config() -> Path:
    """The installed package's copy of configs/demo.yaml, else the repository's (editable installs)."""
    here = Path(__file__).resolve().parent
    packaged = here / "configs" / "demo.yaml"
    return packaged if packaged.exists() else here.parent / "configs" / "demo.yaml"


#: The demo's gateway config, validated by the tests like every file in configs/.
DEMO_CONFIG = _demo_config()


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@contextlib.asynccontextmanager
async def _broker() -> AsyncIterator[tuple[str, str]]:
    """(broker URL, MQTT protocol version): the local broker if one answers, else an embedded one."""
    if _reachable("127.0.0.1", 1883):
        log.info("using the MQTT broker already running on localhost:1883")
        yield "mqtt://127.0.0.1:1883", "5"
        return
    from amqtt.broker import Broker

    port = free_ports()
    config: dict[str, Any] = {
        "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
        "auth": {"allow-anonymous": True, "plugins": ["auth_anonymous"]},
        "topic-check": {"enabled": False},
    }
    broker = Broker(config)
    await broker.start()
    log.info("no broker on localhost:1883: started an embedded one (amqtt) on 127.0.0.1:%d", port)
    try:
        yield f"mqtt://127.0.0.1:{port}", "3.1.1"
    finally:
        await broker.shutdown()


#: The demo's unified namespace (``gateway demo --uns``): every point republished to the demo's
#: broker under lab/<machine, meter or sensor>/<measurement>/<field>, one message per value. (Not
#: lab/{line}/…: the KPI engine's points name the machine and the shift, not the line.)
UNS_TOPIC = "lab/{machine|meter|sensor}/{measurement}/{field}"


def _with_uns(config: GatewayConfig, broker_url: str, protocol: str) -> GatewayConfig:
    """The demo's config with an MQTT sink republishing everything to the demo's broker as a UNS.

    The same block, commented out, is in configs/demo.yaml; its topics (lab/…) match none of the
    MQTT connector's filters (factory/…), so nothing comes back in.
    """
    model = component_types("sink")["mqtt"].config_model
    uns = model.model_validate(
        {
            "name": "uns",
            "type": "mqtt",
            "broker": broker_url,
            "protocol": protocol,
            "client_id": "gw-demo-uns",
            "qos": 1,
            "retain": True,  # a dashboard opened later shows every current value at once
            "topic": UNS_TOPIC,
        }
    )
    return config.model_copy(update={"sinks": [*config.sinks, uns]})


async def run_demo(data_dir: Path, port: int = 8080, duration: float | None = None, *, uns: bool = False) -> None:
    """Run simulators and the gateway until Ctrl-C (or ``duration`` seconds); ``uns``: also
    republish every point to the demo's broker as a unified namespace."""
    from gateway.simulators.modbus import modbus_simulator
    from gateway.simulators.mqtt import SimulatorSettings, run_mqtt_simulator
    from gateway.simulators.opcua import OpcUaSimulatorSettings, opcua_simulator
    from gateway.simulators.s7 import s7_simulator

    if not DEMO_CONFIG.exists():
        raise GatewayError(
            f"the demo config {DEMO_CONFIG} is missing: the package was installed without its configs "
            "(build it with `python -m build`, which copies configs/ into it)"
        )
    data_dir.mkdir(parents=True, exist_ok=True)
    for chatty in ("amqtt", "asyncua"):  # the embedded servers' start-up chatter
        logging.getLogger(chatty).setLevel(logging.ERROR)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if _reachable("127.0.0.1", port):
        busy, port = port, free_ports()
        log.info("port %d is taken: the web page will be on port %d", busy, port)
    opcua = OpcUaSimulatorSettings(port=free_ports(2), machines=2, data_dir=data_dir / "opcua-simulator")
    async with (
        _broker() as (broker_url, protocol),
        opcua_simulator(opcua) as (cnc_url, press_url),
        modbus_simulator(free_ports()) as modbus,
        s7_simulator(free_ports()) as plc,
    ):
        log.info("OPC UA simulators: CNC machining centre on %s, injection-molding press on %s", cnc_url, press_url)
        log.info("Modbus TCP simulator on 127.0.0.1:%d: energy meter (unit 1), chiller (unit 2)", modbus.port)
        log.info("S7 simulator on 127.0.0.1:%d (rack 0, slot 1): a packaging line's PLC", plc.port)
        os.environ.update(
            DEMO_BROKER=broker_url,
            DEMO_MQTT_PROTOCOL=protocol,
            DEMO_OPCUA_CNC=cnc_url,
            DEMO_OPCUA_PRESS=press_url,
            DEMO_MODBUS_PORT=str(modbus.port),
            DEMO_S7_PORT=str(plc.port),
            DEMO_DATA=str(data_dir),
            DEMO_HTTP=f"127.0.0.1:{port}",
        )
        config = load_config(DEMO_CONFIG)
        if uns:
            config = _with_uns(config, broker_url, protocol)
        simulator = SimulatorSettings(broker=broker_url, rate=12.0, protocol=protocol, seed=None, qos=1)
        async with Gateway(config) as gateway:
            sim_task = asyncio.create_task(run_mqtt_simulator(simulator, stop), name="simulator:mqtt")
            _print_guide(data_dir, config, port)
            if uns:
                _print_uns_guide(broker_url)
            started = time.monotonic()
            while not stop.is_set():
                if duration is not None and time.monotonic() - started >= duration:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0)
                if sim_task.done() and sim_task.exception() is not None:
                    raise GatewayError(f"the simulator stopped: {sim_task.exception()}")
            stop.set()
            await sim_task
        stored = sum(s.counters.get("points_written", 0) for s in gateway.statuses() if s.kind == "sink")
        log.info("demo stopped; %d points stored in %s", stored, data_dir)
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.remove_signal_handler(sig)


def _command() -> str:
    """How the reader runs ``gateway`` from here: the project's .venv, the script that runs now, or PATH."""
    if Path(".venv/bin/gateway").exists():
        return ".venv/bin/gateway"
    script = Path(sys.argv[0])
    if script.name == "gateway":
        on_path = shutil.which("gateway")
        return "gateway" if on_path and Path(on_path).resolve() == script.resolve() else str(script)
    return "gateway"


def _config_text() -> str:
    """The demo config's path, relative to the current folder when it is below it (configs/demo.yaml)."""
    try:
        return str(DEMO_CONFIG.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(DEMO_CONFIG)


def _print_guide(data_dir: Path, config: Any, port: int) -> None:
    history = next((getattr(s, "path", None) for s in config.sinks if s.type == "historian"), None)
    env = "" if data_dir == Path("data/demo") else f"DEMO_DATA={data_dir} "
    query = f"{env}{_command()} query {_config_text()}"
    print(
        "\n"
        "  Shop-floor gateway demo is running (Ctrl-C to stop).\n"
        "  Simulated energy meters, coolant temperatures and CNC machines publish over MQTT, and a\n"
        "  CNC machining centre and an injection-molding press serve OPC UA, an energy meter and a\n"
        "  chiller answer Modbus TCP, and a packaging line's Siemens PLC answers S7;\n"
        f"  the gateway stores them in the embedded historian: {history}\n"
        "\n"
        f"  Web page: http://127.0.0.1:{port}/   (Prometheus metrics: /metrics)\n"
        "\n"
        "  See what landed, from another terminal in this folder:\n"
        f"    {query} --measurement energy --since 5m\n"
        f"    {query} --measurement machine --since 5m --format json\n"
        f"    {query} --measurement press --since 5m\n",
        flush=True,
    )


def _print_uns_guide(broker_url: str) -> None:
    host, _, port = broker_url.removeprefix("mqtt://").partition(":")
    print(
        f"  Unified namespace: every value is republished to {broker_url} under\n"
        f"    {UNS_TOPIC}\n"
        "  (retained: a new subscriber gets each current value at once). Watch it with\n"
        f"    mosquitto_sub -h {host} -p {port} -t 'lab/#' -v\n",
        flush=True,
    )
