"""A simulated Modbus TCP server: an energy meter (unit 1) and a chiller (unit 2), on pymodbus.

``gateway simulate modbus`` runs it; the tests and the benchmark use :class:`ModbusServer`
directly (any unit ids and register values, silent units, illegal addresses, a request log).

Energy meter — unit 1 (the register map of the connector's contract example)::

    input   0  voltage_l1 … 4 voltage_l3   float32 ABCD   V      ~230
    input   6  current_l1 … 10 current_l3  float32 ABCD   A
    input  12  active_power_w              float32 ABCD   W
    input  14  power_factor                float32 ABCD
    input  16  frequency_hz                float32 ABCD   Hz
    holding 10 status word: bit 3 alarm_overtemp, bit 0 comms_ok
    holding 100 energy_kwh                 uint32  CDAB   0.01 kWh (scale 0.01)
    holding 200 tariff (8 registers)       string         "DAY" / "NIGHT"
    coil    5  running (the breaker is closed)

Chiller — unit 2::

    input   0  supply_temp_c               int16          0.1 °C (scale 0.1)
    input   1  return_temp_c               int16          0.1 °C
    input   2  condenser_pressure_bar      uint16         0.01 bar
    input   3  compressor_current_a        uint16         0.1 A
    input  10  cooling_power_kw            float32 CDAB   kW
    holding 0  setpoint_c                  int16          0.1 °C (writable: the supply water follows it)
    holding 20 run_hours                   uint32 ABCD    h
    holding 22 compressor_starts           uint32 ABCD
    discrete 0 compressor_on, 1 alarm_high_pressure
    coil    0  remote_enable

Every unit has 1,000 registers and 1,024 coils / discrete inputs per area; addresses beyond
are refused with exception 2 (illegal data address), as a real device does. Holding registers
and coils take writes (functions 5, 6, 15, 16, 22); :attr:`ModbusServer.written` logs each.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import random
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerType
from pymodbus.pdu import ModbusPDU
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice
from pymodbus.simulator.simutils import SimUtils

from connectors.modbus._client import quiet_pymodbus
from connectors.modbus.decode import Value, encode

__all__ = ["CHILLER_UNIT", "METER_UNIT", "ModbusServer", "Unit", "modbus_simulator", "run_modbus_simulator"]

log = logging.LoggerAdapter(logging.getLogger("gateway.simulator.modbus"), {"component": "simulator=modbus"})

METER_UNIT = 1
CHILLER_UNIT = 2
REGISTERS = 1000
BITS = 1024
_AREA_OF_FUNCTION = {1: "coil", 2: "discrete", 3: "holding", 4: "input"}
#: The area each write function writes (22: mask write, 23: read/write registers).
_AREA_OF_WRITE = {5: "coil", 15: "coil", 6: "holding", 16: "holding", 22: "holding", 23: "holding"}


@dataclass
class Unit:
    """The memory of one unit id: registers and bits by address (absent = 0 / False)."""

    coil: dict[int, bool] = field(default_factory=dict)
    discrete: dict[int, bool] = field(default_factory=dict)
    holding: dict[int, int] = field(default_factory=dict)
    input: dict[int, int] = field(default_factory=dict)
    illegal: set[tuple[str, int]] = field(default_factory=set)  # (area, address) refused with exception 2

    def set(self, area: str, address: int, kind: str, value: Value, order: str = "ABCD", **options: Any) -> None:
        """Store ``value`` as ``kind`` (``bool`` for coils/discrete inputs) at ``address``."""
        if area in ("coil", "discrete"):
            getattr(self, area)[address] = bool(value)
            return
        registers = getattr(self, area)
        if kind == "bit":
            bit = int(options["bit"])
            word = registers.get(address, 0) & ~(1 << bit)
            registers[address] = word | ((1 << bit) if value else 0)
            return
        for offset, word in enumerate(encode(kind, value, order, **options)):  # type: ignore[arg-type]
            registers[address + offset] = word


class ModbusServer:
    """A pymodbus TCP server in this event loop, with units the caller fills and controls.

    ``silent`` unit ids never answer (a device that is off); ``gateway_fail`` unit ids answer
    exception 11 (what a TCP gateway says for a serial device that does not answer), and
    ``gateway_fail_writes`` unit ids only to writes (a device that went silent after a read); any
    unit id not in ``units`` is silent. ``requests`` counts the requests received per
    (unit, area); ``log`` keeps (monotonic time, unit, area, address, count) of each;
    ``written`` keeps (unit, function, area, address, values) of each write taken.
    """

    def __init__(self, port: int, host: str = "127.0.0.1", framing: str = "tcp") -> None:
        self.host = host
        self.port = port
        self.framing = framing
        self.units: dict[int, Unit] = {}
        self.silent: set[int] = set()
        self.gateway_fail: set[int] = set()
        self.gateway_fail_writes: set[int] = set()
        self.requests: Counter[tuple[int, str]] = Counter()
        self.log: list[tuple[float, int, str, int, int]] = []
        self.written: list[tuple[int, int, str, int, list[int] | list[bool]]] = []
        self.keep_log = True
        self._server: ModbusTcpServer | None = None
        self._closing = asyncio.Event()
        quiet_pymodbus()

    def unit(self, unit_id: int) -> Unit:
        return self.units.setdefault(unit_id, Unit())

    def total_requests(self, unit_id: int | None = None) -> int:
        return sum(n for (u, _), n in self.requests.items() if unit_id is None or u == unit_id)

    def _device(self, unit_id: int) -> SimDevice:
        bits = [SimData(0, count=BITS, values=False, datatype=DataType.BITS)]
        words = [SimData(0, count=REGISTERS, values=0, datatype=DataType.REGISTERS)]
        return SimDevice(
            id=unit_id,
            simdata=(list(bits), list(bits), list(words), list(words)),
            action=functools.partial(self._action, unit_id),
        )

    def _trace(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        area = _AREA_OF_FUNCTION.get(pdu.function_code)
        if not sending and area is not None:
            self.requests[(pdu.dev_id, area)] += 1
            if self.keep_log:
                self.log.append((time.monotonic(), pdu.dev_id, area, pdu.address, pdu.count))
        return pdu

    async def _action(
        self,
        unit_id: int,
        function_code: int,
        start: int,
        address: int,
        count: int,
        registers: list[int],
        values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        unit = self.units.get(unit_id) if unit_id else None
        if unit_id in self.gateway_fail or (values is not None and unit_id in self.gateway_fail_writes):
            return ExcCodes.GATEWAY_NO_RESPONSE
        if unit is None or unit_id in self.silent:
            await self._closing.wait()  # never answers; returns when the server stops
            return ExcCodes.GATEWAY_NO_RESPONSE
        area = _AREA_OF_FUNCTION.get(function_code) or _AREA_OF_WRITE.get(function_code, "holding")
        if area in ("coil", "discrete"):
            first = address - address % 16
            if any((area, a) in unit.illegal for a in range(address, address + count * 16)):
                return ExcCodes.ILLEGAL_ADDRESS
            memory: dict[int, bool] = getattr(unit, area)
            if values is not None:  # a write: the unit's memory takes it (pymodbus then answers from it)
                for i, bit in enumerate(values):
                    memory[address + i] = bool(bit)
                self.written.append((unit_id, function_code, area, address, [bool(v) for v in values]))
            bits = [memory.get(first + i, False) for i in range(count * 16)]
            registers[first // 16 - start : first // 16 - start + count] = SimUtils.bitsToRegisters(bits)
            return None
        if any((area, a) in unit.illegal for a in range(address, address + count)):
            return ExcCodes.ILLEGAL_ADDRESS
        words: dict[int, int] = getattr(unit, area)
        if values is not None:
            for i, word in enumerate(values):
                words[address + i] = int(word)
            self.written.append((unit_id, function_code, area, address, [int(v) for v in values]))
        for i in range(count):
            registers[address - start + i] = words.get(address + i, 0)
        return None

    async def start(self) -> ModbusServer:
        self._closing.clear()
        devices = [self._device(0)] + [self._device(u) for u in sorted(self.units) if u]
        self._server = ModbusTcpServer(
            devices,
            address=(self.host, self.port),
            framer=FramerType.RTU if self.framing == "rtu" else FramerType.SOCKET,
            trace_pdu=self._trace,
        )
        await self._server.serve_forever(background=True)
        return self

    async def stop(self) -> None:
        self._closing.set()
        server, self._server = self._server, None
        if server is not None:
            await server.shutdown()  # type: ignore[no-untyped-call]
        await asyncio.sleep(0)  # let the silent units' pending answers finish


# --- the simulated machines -----------------------------------------------------------------


class _Meter:
    """A three-phase energy meter on a machine that runs in shifts."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.energy = 12_345.67
        self.t = 0.0
        self.load = 0.6

    def step(self, unit: Unit, dt: float) -> None:
        rng = self.rng
        self.t += dt
        self.load = min(1.0, max(0.05, self.load + rng.gauss(0, 0.02) * math.sqrt(dt)))
        running = (self.t % 600) < 480  # 8 minutes running, 2 stopped
        for phase in range(3):
            unit.set("input", 2 * phase, "float32", 230.0 + 3 * math.sin(self.t / 30 + phase) + rng.gauss(0, 0.3))
            current = (32.0 * self.load + rng.gauss(0, 0.4)) if running else 0.4
            unit.set("input", 6 + 2 * phase, "float32", max(0.0, current))
        power = (3 * 230.0 * 32.0 * self.load * 0.92) if running else 90.0
        unit.set("input", 12, "float32", power)
        unit.set("input", 14, "float32", 0.92 if running else 0.35)
        unit.set("input", 16, "float32", 50.0 + rng.gauss(0, 0.01))
        self.energy += power * dt / 3_600_000
        unit.set("holding", 100, "uint32", round(self.energy * 100), "CDAB")
        hot = self.load > 0.95
        unit.set("holding", 10, "uint16", (1 << 0) | ((1 << 3) if hot else 0))
        unit.set("holding", 200, "string", "DAY" if (self.t // 300) % 2 == 0 else "NIGHT", length=8)
        unit.set("coil", 5, "bool", running)


class _Chiller:
    """A process chiller holding 7 °C, cycling its compressor."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.supply = 9.0
        self.on = True
        self.hours = 8_765.0
        self.starts = 1_234
        self.t = 0.0

    def step(self, unit: Unit, dt: float) -> None:
        rng = self.rng
        self.t += dt
        if 0 not in unit.holding:
            unit.set("holding", 0, "int16", 70)  # 7.0 °C until a client writes another setpoint
        word = unit.holding[0]
        setpoint = (word - 0x10000 if word >= 0x8000 else word) / 10  # int16, 0.1 °C
        if self.on and self.supply < setpoint - 1.0:
            self.on = False
        elif not self.on and self.supply > setpoint + 1.0:
            self.on, self.starts = True, self.starts + 1
        self.supply += (-0.05 if self.on else 0.06) * dt + rng.gauss(0, 0.01)  # °C/s: a small loop, quick to show
        ret = self.supply + (5.0 if self.on else 1.5) + rng.gauss(0, 0.05)
        unit.set("input", 0, "int16", round(self.supply * 10))
        unit.set("input", 1, "int16", round(ret * 10))
        unit.set("input", 2, "uint16", round((14.5 if self.on else 9.0) * 100 + rng.gauss(0, 5)))
        unit.set("input", 3, "uint16", round((38.0 if self.on else 0.0) * 10 + (rng.gauss(0, 3) if self.on else 0)))
        unit.set("input", 10, "float32", (ret - self.supply) * 4.18 * 2.5 if self.on else 0.0, "CDAB")
        if self.on:
            self.hours += dt / 3600
        unit.set("holding", 20, "uint32", int(self.hours))
        unit.set("holding", 22, "uint32", self.starts)
        unit.set("discrete", 0, "bool", self.on)
        unit.set("discrete", 1, "bool", False)
        unit.set("coil", 0, "bool", True)


@contextlib.asynccontextmanager
async def modbus_simulator(
    port: int, host: str = "127.0.0.1", seed: int | None = None, interval: float = 1.0
) -> AsyncIterator[ModbusServer]:
    """The energy meter (unit 1) and the chiller (unit 2) on one server, values updated every ``interval``."""
    rng = random.Random(seed)
    server = ModbusServer(port, host)
    server.keep_log = False
    models = ((server.unit(METER_UNIT), _Meter(rng)), (server.unit(CHILLER_UNIT), _Chiller(rng)))
    for unit, model in models:
        model.step(unit, interval)

    async def update() -> None:
        while True:
            await asyncio.sleep(interval)
            for unit, model in models:
                model.step(unit, interval)

    await server.start()
    task = asyncio.create_task(update(), name="simulator:modbus")
    try:
        yield server
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await server.stop()


async def run_modbus_simulator(port: int, host: str, seed: int | None, stop: asyncio.Event | None = None) -> None:
    """The body of ``gateway simulate modbus``: run until ``stop`` or SIGINT/SIGTERM."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    handlers: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
            handlers.append(sig)
    try:
        async with modbus_simulator(port, host, seed):
            log.info("energy meter on unit %d, chiller on unit %d", METER_UNIT, CHILLER_UNIT)
            print(f"ready modbus://{host}:{port} (units {METER_UNIT} and {CHILLER_UNIT})", flush=True)
            await stop.wait()
    finally:
        for sig in handlers:
            loop.remove_signal_handler(sig)
