"""Writes to Modbus registers and coils through the API, against pymodbus's server: the registers
on the device after each write (function 6/16, 5, 22), the value read back through scale and
byte order, and each refusal (limits, an address the device does not have, a device that does
not answer) audited with its reason and nothing sent to the device."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.fixtures.modbus import StartServer, modbus_connector
from tests.writes.helpers import VIEWER, running

UNIT = 2


def chiller(port: int) -> dict[str, Any]:
    fields = [
        {
            "name": "setpoint_c",
            "area": "holding",
            "address": 0,
            "type": "int16",
            "scale": 0.1,
            "unit": "°C",
            "write": {"min": 4, "max": 15},
        },
        {
            "name": "flow_target",
            "area": "holding",
            "address": 40,
            "type": "float32",
            "byte_order": "CDAB",
            "write": {"min": 0, "max": 100},
        },
        {
            "name": "mode_word",
            "area": "holding",
            "address": 50,
            "type": "uint16",
            "write": {"allowed": [1, 2, 3]},
            "write_function": 16,
        },
        {"name": "defrost", "area": "holding", "address": 60, "type": "bit", "bit": 3, "write": {}},
        {"name": "remote_enable", "area": "coil", "address": 0, "write": {}},
        {"name": "label", "area": "holding", "address": 70, "type": "string", "length": 4, "write": {}},
        {"name": "missing", "area": "holding", "address": 900, "write": {"min": 0, "max": 10}},
    ]
    return modbus_connector(port, [{"unit": UNIT, "name": "chiller", "measurement": "chiller", "fields": fields}])


async def test_registers_and_coils_written_read_back_and_audited(modbus_server: StartServer, tmp_path: Path) -> None:
    server = await modbus_server()
    unit = server.unit(UNIT)
    unit.set("holding", 0, "int16", 70)
    unit.set("holding", 60, "uint16", 0b1000_0001)  # other bits of the register the device uses
    unit.set("coil", 0, "bool", True)
    unit.illegal.add(("holding", 900))
    await server.start()
    async with running(tmp_path, [chiller(server.port)]) as gw:
        answer = await gw.write("meters", "setpoint_c", 9.5)
        assert (answer["status"], answer["result"], answer["old"], answer["read_back"]) == (200, "written", 7.0, 9.5)
        assert unit.holding[0] == 95  # int16 in 0.1 °C
        assert server.written[-1] == (UNIT, 6, "holding", 0, [95])  # function 6: one register
        rounded = await gw.write("meters", "setpoint_c", 9.55)
        assert rounded["read_back"] == 9.6 and "the register's resolution" in rounded["message"]

        flow = await gw.write("meters", "flow_target", 12.25)
        assert flow["result"] == "written" and flow["read_back"] == 12.25
        assert [unit.holding[40], unit.holding[41]] == [0x0000, 0x4144]  # 12.25 = 0x41440000, words swapped
        mode = await gw.write("meters", "mode_word", 2)
        assert mode["result"] == "written" and server.written[-1][:2] == (UNIT, 16)  # as the device asks

        defrost = await gw.write("meters", "defrost", True)
        assert defrost["result"] == "written" and unit.holding[60] == 0b1000_1001  # only bit 3 changed
        assert server.written[-1][:2] == (UNIT, 22)  # mask write: the device changes the bit itself

        enable = await gw.write("meters", "remote_enable", False)
        assert (enable["result"], enable["old"], enable["read_back"]) == ("written", True, False)
        assert unit.coil[0] is False and server.written[-1][:2] == (UNIT, 5)

        label = await gw.write("meters", "label", "AB12")
        assert label["result"] == "written" and label["read_back"] == "AB12"
        too_long = await gw.write("meters", "label", "ABCDEFGHI")
        assert too_long["result"] == "refused_limits" and "holds at most 8" in too_long["message"]

        writes = len(server.written)
        limits = await gw.write("meters", "setpoint_c", 30)
        assert (limits["status"], limits["result"]) == (422, "refused_limits")
        wrong = await gw.write("meters", "remote_enable", "yes")
        assert (wrong["status"], wrong["result"]) == (422, "refused_type")
        viewer = await gw.write("meters", "setpoint_c", 8, headers=VIEWER)
        assert (viewer["status"], viewer["result"]) == (403, "forbidden")
        missing = await gw.write("meters", "missing", 3)
        assert (missing["status"], missing["result"], missing["code"]) == (
            502,
            "refused_by_machine",
            "Modbus exception 2",
        )
        assert "illegal data address" in missing["message"] and "nothing was written" in missing["message"]
        assert len(server.written) == writes  # none of them reached the device
        assert unit.holding[0] == 96

        audited = {e["id"]: e for e in gw.audit()}
        for record in (answer, limits, wrong, viewer, missing):
            assert audited[record["id"]]["result"] == record["result"]
            assert audited[record["id"]]["message"] == record["message"]


async def test_a_device_that_does_not_answer_times_out_and_is_not_written(
    modbus_server: StartServer, tmp_path: Path
) -> None:
    server = await modbus_server()
    unit = server.unit(UNIT)
    unit.set("holding", 0, "int16", 70)
    await server.start()
    async with running(tmp_path, [chiller(server.port)]) as gw:
        server.silent.add(UNIT)  # the chiller's controller stops answering
        answer = await gw.write("meters", "setpoint_c", 9.0)
        assert (answer["status"], answer["result"]) == (504, "timeout")
        assert "does not answer" in answer["message"] and "nothing was written" in answer["message"]
        assert gw.outcome(answer["id"])["result"] == "timeout"
        assert unit.holding[0] == 70 and server.written == []


async def test_a_device_silent_behind_a_modbus_gateway_is_a_timeout_not_a_refusal(
    modbus_server: StartServer, tmp_path: Path
) -> None:
    # Exception 11 (gateway target device failed to respond) says nothing of what the device did:
    # at the read of the old value nothing was sent; at the write the value may have been taken.
    server = await modbus_server()
    unit = server.unit(UNIT)
    unit.set("holding", 0, "int16", 70)
    await server.start()
    async with running(tmp_path, [chiller(server.port)]) as gw:
        server.gateway_fail.add(UNIT)
        at_read = await gw.write("meters", "setpoint_c", 9.0)
        assert (at_read["status"], at_read["result"], at_read["code"]) == (504, "timeout", "Modbus exception 11")
        assert "behind the Modbus gateway" in at_read["message"] and "nothing was written" in at_read["message"]
        assert server.written == []

        server.gateway_fail.clear()
        server.gateway_fail_writes.add(UNIT)
        at_write = await gw.write("meters", "setpoint_c", 9.0)
        assert (at_write["status"], at_write["result"], at_write["old"]) == (504, "timeout", 7.0)
        assert "whether it took the value is unknown" in at_write["message"]
        audited = {e["id"]: e for e in gw.audit()}
        assert audited[at_read["id"]]["result"] == audited[at_write["id"]]["result"] == "timeout"
