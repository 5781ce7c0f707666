"""The simulated machines act on what a client writes, so the demo shows a write's round trip: the
chiller follows its setpoint (Modbus), the packaging line its speed setpoint (S7). (The CNC's
program and feed override: tests/writes/test_opcua.py.) Written with the protocols' own clients."""

from __future__ import annotations

from pymodbus.client import AsyncModbusTcpClient
from snap7 import AsyncClient

from gateway.ports import free_ports
from gateway.simulators.modbus import CHILLER_UNIT, modbus_simulator
from gateway.simulators.s7 import s7_simulator
from tests.helpers import async_wait_until


async def test_the_chiller_follows_its_setpoint() -> None:
    port = free_ports(1)
    async with modbus_simulator(port, seed=3, interval=0.1) as server:
        unit = server.unit(CHILLER_UNIT)
        client = AsyncModbusTcpClient("127.0.0.1", port=port)
        await client.connect()
        try:
            supply = unit.input[0]
            # 15.0 °C, well above the water's temperature: the compressor stops and the water warms up
            answer = await client.write_register(0, 150, device_id=CHILLER_UNIT)
            assert not answer.isError()
            assert unit.holding[0] == 150
            await async_wait_until(lambda: unit.discrete.get(0) is False, timeout=10, message="compressor off")
            # (input 0: the supply water in 0.1 °C)
            await async_wait_until(lambda: unit.input[0] >= supply + 5, timeout=30, message="warmer by 0.5 °C")
            # and back to 4.0 °C: the compressor runs again
            await client.write_register(0, 40, device_id=CHILLER_UNIT)
            await async_wait_until(lambda: unit.discrete.get(0) is True, timeout=10, message="compressor on")
            assert unit.holding[0] == 40  # the machine keeps the setpoint it was given
        finally:
            client.close()


async def test_the_packaging_line_runs_at_its_speed_setpoint() -> None:
    port = free_ports(1)
    async with s7_simulator(port, seed=5, interval=0.1) as plc:
        client = AsyncClient()
        await client.connect("127.0.0.1", 0, 1, port)
        try:
            assert plc.get("MW20") == 120
            await client.mb_write(20, 2, bytearray((60).to_bytes(2, "big")))
            assert plc.get("MW20") == 60
            await async_wait_until(
                lambda: abs(float(plc.get("DB1.DBD0", "real")) - 60) < 3 or not plc.get("DB1.DBX10.0"),
                timeout=30,
                message="the line at 60 packs/min (or stopped by a jam or a changeover)",
            )
        finally:
            await client.disconnect()
