"""A simulated Siemens S7 PLC: a packaging line, on python-snap7's own server.

``gateway simulate s7`` runs it; the tests and the benchmark use :class:`S7Server` directly
(any data blocks, merkers, inputs and outputs; a PDU size cap; a PLC that refuses reads as
one without PUT/GET does; a log of every read request it answers).

The packaging line (a flow-wrapper with its infeed conveyor)::

    DB1  "Line"
      DBD0    speed            REAL    packs/min (follows the setpoint while running)
      DBD4    count            DINT    good packs since the shift started
      DBW8    temp             INT     sealing jaw temperature in 0.1 °C (scale 0.1)
      DBX10.0 running          BOOL
      DBX10.1 fault            BOOL    a film jam stops the line for a while
      DBD12   rejects          DINT    rejected packs
      DBW16   state            INT     0 stopped, 1 running, 2 fault, 3 changeover
      DBB18   energy_kwh       LREAL   the line's energy meter
    DB2  "Recipe"
      DBB0    recipe           STRING[20]
      DBW22   pack_weight_g    INT
    M    M10.1 motor_on (BOOL), MW20 setpoint (WORD, packs/min; the speed setpoint)
    I    I0.0 estop_ok, I0.1 guard_closed (BOOL), IW64 film_tension (INT, raw 0–27648)
    Q    Q0.0 conveyor, Q0.1 alarm_lamp (BOOL)

The line reads its speed setpoint from MW20 at every step, so a value written there by a
client changes the line's speed, as on the real machine (it ramps to it in about 4 s).

Writes: python-snap7's server takes byte writes; a bit write (the S7 bit transport, ``M10.1``)
sets that one bit here, as a PLC does, instead of the whole byte. :attr:`S7Server.written` logs
each write the server took (area, db, byte, data).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import signal
import struct
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from snap7.datatypes import S7WordLen
from snap7.server import Server
from snap7.type import SrvArea

from connectors.s7.address import Area, parse
from connectors.s7.decode import Value, decode_type, encode

__all__ = ["LINE_DB", "RECIPE_DB", "S7Server", "ServedRead", "run_s7_simulator", "s7_simulator"]

log = logging.LoggerAdapter(logging.getLogger("gateway.simulator.s7"), {"component": "simulator=s7"})

LINE_DB = 1
RECIPE_DB = 2
_SRV_AREA: dict[Area, SrvArea] = {"DB": SrvArea.DB, "M": SrvArea.MK, "I": SrvArea.PE, "Q": SrvArea.PA}
#: python-snap7's server names areas by their S7 codes in a request.
_AREA_OF_CODE: dict[int, Area] = {0x84: "DB", 0x83: "M", 0x81: "I", 0x82: "Q"}


@dataclass(frozen=True)
class ServedRead:
    """One read request the server answered: when, its items (area, db, start, size), and the
    sizes of the request and of the answer in bytes (the S7 PDUs, without ISO-on-TCP framing)."""

    at: float
    items: tuple[tuple[Area, int, int, int], ...]
    request_bytes: int
    answer_bytes: int


class _Server(Server):
    """python-snap7's server, with two things a real PLC has: a PDU size of its own (the library's
    server grants up to 480 bytes) and refusing reads when PUT/GET is not permitted. It also logs
    each read request. The two handlers overridden are python-snap7 3.x's (pinned <4)."""

    def __init__(self, owner: S7Server) -> None:
        super().__init__(log=False)
        self.owner = owner

    def _handle_setup_communication(self, request: dict[str, Any]) -> bytes:
        answer: bytes = super()._handle_setup_communication(request)
        granted = min(struct.unpack_from(">H", answer, len(answer) - 2)[0], self.owner.max_pdu)
        return answer[:-2] + struct.pack(">H", granted)

    def _handle_read_area(self, request: dict[str, Any], client_address: tuple[str, int]) -> bytes:
        params = request.get("parameters") or {}
        specs = params.get("address_specs") or [params.get("address_spec") or {}]
        items = tuple(
            (_AREA_OF_CODE.get(int(s.get("area", 0)), "DB"), int(s.get("db_number", 0)), int(s.get("start", 0)),
             int(s.get("count", 0)))
            for s in specs
        )
        if self.owner.refuse_reads:
            answer: bytes = self._build_error_response(request, 0x8104)  # what a CPU without PUT/GET answers
        else:
            answer = super()._handle_read_area(request, client_address)
        self.owner.served(ServedRead(time.monotonic(), items, 12 + 12 * len(items), len(answer)))
        return answer

    def _handle_write_area(self, request: dict[str, Any], client_address: tuple[str, int]) -> bytes:
        # python-snap7's server writes a bit write's data byte over the whole byte; a PLC sets the bit.
        raw = bytes(request.get("raw_parameters") or b"")
        spec = raw[2:14]
        data = request.get("data")
        area = _AREA_OF_CODE.get(spec[8], "DB") if len(spec) == 12 else "DB"
        db = int.from_bytes(spec[6:8], "big") if len(spec) == 12 and area == "DB" else 0
        address = int.from_bytes(spec[9:12], "big") if len(spec) == 12 else 0
        bit: int | None = None
        if len(spec) == 12 and spec[3] == int(S7WordLen.BIT) and isinstance(data, dict) and data.get("data"):
            bit = address & 7
            memory = self.owner.memory.get((area, db))
            if memory is not None and address >> 3 < len(memory):
                current = memory[address >> 3]
                on = bool(bytes(data["data"])[0])
                data["data"] = bytes([(current | (1 << bit)) if on else (current & ~(1 << bit) & 0xFF)])
        answer: bytes = super()._handle_write_area(request, client_address)
        if isinstance(data, dict):
            self.owner.written.append((area, db, address >> 3, bit, bytes(data.get("data") or b"")))
        return answer


class S7Server:
    """An S7 PLC on ``host:port``: memory areas the caller registers and fills; python-snap7's
    server answers from them (in its own threads). The memory outlives :meth:`stop`, so a
    restarted server holds what it held, as a PLC's retentive data blocks do."""

    def __init__(self, port: int, host: str = "127.0.0.1", max_pdu: int = 480) -> None:
        self.host = host
        self.port = port
        self.max_pdu = max_pdu
        self.refuse_reads = False
        self.memory: dict[tuple[Area, int], bytearray] = {}
        self.reads: list[ServedRead] = []
        #: writes the server was sent: (area, db, byte, bit or None, the bytes written)
        self.written: list[tuple[Area, int, int, int | None, bytes]] = []
        self.keep_log = True
        self._lock = threading.Lock()
        self._server: _Server | None = None
        logging.getLogger("snap7.server").setLevel(logging.ERROR)  # "area not registered" at every refused read

    def area(self, area: Area, size: int, db: int = 0) -> bytearray:
        """Register ``size`` bytes of ``area`` (a data block when ``area`` is DB); → its memory."""
        key = (area, db if area == "DB" else 0)
        memory = self.memory.get(key)
        if memory is None or len(memory) < size:
            memory = self.memory[key] = bytearray(size) if memory is None else memory + bytearray(size - len(memory))
            if self._server is not None:
                self._server.register_area(_SRV_AREA[area], key[1], memory)
        return memory

    def set(self, address: str, value: Value, type_: str | None = None, length: int | None = None) -> None:
        """Store ``value`` at ``address`` (STEP 7 notation, e.g. DB1.DBD0 with type_="real")."""
        variable = parse(address, type_, length)
        memory = self.memory[(variable.area, variable.db)]
        with self._lock:
            current = memory[variable.start]
            data = encode(variable.type, value, variable.length or 0, variable.bit or 0, current)
            memory[variable.start : variable.start + len(data)] = data

    def get(self, address: str, type_: str | None = None, length: int | None = None) -> Value:
        variable = parse(address, type_, length)
        memory = self.memory[(variable.area, variable.db)]
        data = bytes(memory[variable.start : variable.end])
        return decode_type(variable.type, data, variable.length or 0, variable.bit or 0)

    def served(self, read: ServedRead) -> None:
        if self.keep_log:
            self.reads.append(read)

    def _start(self) -> None:
        server = _Server(self)
        server.host = self.host
        for (area, db), memory in self.memory.items():
            server.register_area(_SRV_AREA[area], db, memory)
        server.start(tcp_port=self.port)
        self._server = server

    def _stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.stop()

    async def start(self) -> S7Server:
        # python-snap7's server binds and joins threads synchronously: off the event loop.
        await asyncio.to_thread(self._start)
        return self

    async def stop(self) -> None:
        await asyncio.to_thread(self._stop)

    @property
    def clients(self) -> int:
        return self._server.client_count if self._server is not None else 0


# --- the simulated machine ------------------------------------------------------------------


class _PackagingLine:
    """A flow-wrapper: ramps to its setpoint, counts packs, jams now and then, changes recipe."""

    RECIPES = (("MUESLI-500G", 500), ("CRACKERS-250G", 250), ("COOKIES-300G", 300))

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.t = 20.0  # past the first changeover: the line runs from the start
        self.speed = 120.0
        self.count = 18_250.0
        self.rejects = 184.0
        self.energy = 1_520.25
        self.temp = 160.0
        self.jam_until = -1.0
        self.recipe = 0

    def setup(self, server: S7Server) -> None:
        server.area("DB", 32, LINE_DB)
        server.area("DB", 32, RECIPE_DB)
        server.area("M", 64)
        server.area("I", 128)
        server.area("Q", 16)
        server.set("MW20", 120)  # packs/min
        server.set("M10.1", True)
        server.set("I0.0", True)
        server.set("I0.1", True)

    def step(self, server: S7Server, dt: float) -> None:
        rng = self.rng
        self.t += dt
        setpoint = float(server.get("MW20"))
        if self.jam_until < self.t and rng.random() < dt / 180:  # a film jam every ~3 minutes
            self.jam_until = self.t + rng.uniform(10, 25)
        fault = self.t < self.jam_until
        changeover = (self.t % 600) < 15  # 15 s of changeover every 10 minutes
        if changeover and (self.t - dt) % 600 >= 15 - dt:
            self.recipe = (self.recipe + 1) % len(self.RECIPES)
        running = not fault and not changeover and bool(server.get("M10.1"))
        target = setpoint if running else 0.0
        self.speed += (target - self.speed) * min(1.0, dt / 4.0)  # a 4 s ramp
        if self.speed < 0.5 and not running:
            self.speed = 0.0
        packs = self.speed * dt / 60
        self.count += packs * 0.99
        self.rejects += packs * 0.01
        self.energy += (3.5 + 0.04 * self.speed) * dt / 3600
        self.temp += (165.0 - self.temp) * min(1.0, dt / 30) + rng.gauss(0, 0.2)
        state = 2 if fault else 3 if changeover else 1 if running else 0
        name, weight = self.RECIPES[self.recipe]
        server.set("DB1.DBD0", round(self.speed + (rng.gauss(0, 0.3) if running else 0.0), 2), "real")
        server.set("DB1.DBD4", int(self.count), "dint")
        server.set("DB1.DBW8", round(self.temp * 10), "int")
        server.set("DB1.DBX10.0", running)
        server.set("DB1.DBX10.1", fault)
        server.set("DB1.DBD12", int(self.rejects), "dint")
        server.set("DB1.DBW16", state, "int")
        server.set("DB1.DBB18", self.energy, "lreal")
        server.set("DB2.DBB0", name, "string", 20)
        server.set("DB2.DBW22", weight, "int")
        server.set("IW64", round(13_800 + 1_500 * math.sin(self.t / 7) + rng.gauss(0, 80)), "int")
        server.set("Q0.0", running)
        server.set("Q0.1", fault)


@contextlib.asynccontextmanager
async def s7_simulator(
    port: int, host: str = "127.0.0.1", seed: int | None = None, interval: float = 0.5
) -> AsyncIterator[S7Server]:
    """The packaging line's PLC, values updated every ``interval``."""
    rng = random.Random(seed)
    server = S7Server(port, host)
    server.keep_log = False
    line = _PackagingLine(rng)
    line.setup(server)
    line.step(server, interval)

    async def update() -> None:
        while True:
            await asyncio.sleep(interval)
            line.step(server, interval)

    await server.start()
    task = asyncio.create_task(update(), name="simulator:s7")
    try:
        yield server
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await server.stop()


async def run_s7_simulator(port: int, host: str, seed: int | None, stop: asyncio.Event | None = None) -> None:
    """The body of ``gateway simulate s7``: run until ``stop`` or SIGINT/SIGTERM."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    handlers: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
            handlers.append(sig)
    try:
        async with s7_simulator(port, host, seed):
            log.info("packaging line PLC: DB1 (line), DB2 (recipe), merkers, inputs, outputs; rack 0, slot 1")
            print(f"ready s7://{host}:{port} (rack 0, slot 1)", flush=True)
            await stop.wait()
    finally:
        for sig in handlers:
            loop.remove_signal_handler(sig)
