"""Writes to an S7 PLC through the API, against python-snap7's server: the PLC's memory after each
write (a word, a bit without touching its neighbours, a REAL through scale, a STRING with its
header), the read-back, and the PLC's refusal of a data block it does not have, with nothing written."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

from tests.fixtures.s7 import StartS7, s7_connector
from tests.writes.helpers import running


def fields() -> list[dict[str, Any]]:
    return [
        {"name": "speed_setpoint", "address": "MW20", "type": "word", "write": {"min": 0, "max": 200}},
        {"name": "motor_on", "address": "M10.1", "write": {}},
        {"name": "temp_setpoint", "address": "DB1.DBD4", "type": "real", "scale": 0.5, "write": {"min": 0, "max": 300}},
        {"name": "recipe", "address": "DB2.DBB0", "type": "string", "length": 20, "write": {"pattern": "^[A-Z0-9-]+$"}},
        {"name": "absent", "address": "DB9.DBW0", "type": "int", "write": {"min": 0, "max": 100}},
    ]


async def test_words_bits_reals_and_strings_written_and_a_missing_block_refused(
    s7_server: StartS7, tmp_path: Path
) -> None:
    plc = s7_server()
    plc.area("M", 64)
    plc.area("DB", 32, 1)
    plc.area("DB", 32, 2)
    plc.set("MW20", 120)
    plc.set("MB10", 0b1000_0001, "byte")  # M10.0 and M10.7 belong to the PLC's program
    plc.set("DB2.DBB0", "MUESLI-500G", "string", 20)
    await plc.start()
    async with running(tmp_path, [s7_connector(plc.port, fields())]) as gw:
        speed = await gw.write("line-plc", "speed_setpoint", 90)
        assert (speed["status"], speed["result"], speed["old"], speed["read_back"]) == (200, "written", 120, 90)
        assert plc.get("MW20") == 90

        motor = await gw.write("line-plc", "motor_on", True)
        assert (motor["result"], motor["old"], motor["read_back"]) == ("written", False, True)
        assert plc.get("MB10", "byte") == 0b1000_0011  # one bit set, its neighbours untouched
        assert plc.written[-1][3] == 1  # sent as a bit write (the PLC sets the bit), not a byte

        temp = await gw.write("line-plc", "temp_setpoint", 180.5)
        assert temp["result"] == "written" and temp["read_back"] == 180.5
        assert struct.unpack(">f", bytes(plc.memory[("DB", 1)][4:8]))[0] == 361.0  # 180.5 / 0.5

        recipe = await gw.write("line-plc", "recipe", "CHOCO-100G")
        assert (recipe["result"], recipe["old"], recipe["read_back"]) == ("written", "MUESLI-500G", "CHOCO-100G")
        assert plc.get("DB2.DBB0", "string", 20) == "CHOCO-100G"

        writes = len(plc.written)
        absent = await gw.write("line-plc", "absent", 5)
        assert (absent["status"], absent["result"], absent["code"]) == (502, "refused_by_machine", "S7 item error 0x0a")
        assert "DB9 does not exist in the PLC" in absent["message"] and "nothing was written" in absent["message"]
        limits = await gw.write("line-plc", "speed_setpoint", 500)
        assert limits["result"] == "refused_limits"
        pattern = await gw.write("line-plc", "recipe", "choco 100g")
        assert pattern["result"] == "refused_limits"
        assert len(plc.written) == writes and plc.get("MW20") == 90
        audited = {e["id"]: e for e in gw.audit()}
        assert audited[absent["id"]]["code"] == "S7 item error 0x0a"
        assert audited[speed["id"]]["read_back"] == 90


async def test_a_string_longer_in_the_config_than_in_the_plc_is_never_written(
    s7_server: StartS7, tmp_path: Path
) -> None:
    # The PLC holds a STRING[10] at DB2.DBB0 and an INT right after it; the config says length 20.
    # Writing 22 bytes would overwrite the INT: the write is refused, the block unchanged.
    plc = s7_server()
    plc.area("DB", 32, 2)
    plc.set("DB2.DBB0", "MUESLI", "string", 10)
    plc.set("DB2.DBW12", 777, "int")
    await plc.start()
    before = bytes(plc.memory[("DB", 2)])
    recipe = {"name": "recipe", "address": "DB2.DBB0", "type": "string", "length": 20, "write": {}}
    async with running(tmp_path, [s7_connector(plc.port, [recipe])]) as gw:
        answer = await gw.write("line-plc", "recipe", "CHOCOLATE-100G")
        assert (answer["result"], answer["code"]) == ("error", "string length differs")
        assert "STRING[10]" in answer["message"] and "set length: 10" in answer["message"]
        assert "nothing was written" in answer["message"]
        assert plc.written == [] and bytes(plc.memory[("DB", 2)]) == before
        assert plc.get("DB2.DBW12", "int") == 777
        audited = {e["id"]: e for e in gw.audit()}
        assert audited[answer["id"]]["result"] == "error"


async def test_a_variable_larger_than_one_write_request_is_refused_whole(s7_server: StartS7, tmp_path: Path) -> None:
    # At a PDU of 240 bytes one write request holds 212 bytes of data: a STRING[250] would have
    # to be split, and a cut connection would leave half a new value. Nothing is sent.
    plc = s7_server(max_pdu=240)
    plc.area("DB", 300, 3)
    plc.set("DB3.DBB0", "OLD", "string", 250)
    await plc.start()
    note = {"name": "note", "address": "DB3.DBB0", "type": "string", "length": 250, "write": {}}
    async with running(tmp_path, [s7_connector(plc.port, [note])]) as gw:
        answer = await gw.write("line-plc", "note", "NEW")
        assert (answer["result"], answer["code"]) == ("error", "larger than the PDU")
        assert "252 bytes" in answer["message"] and "PDU size of 240" in answer["message"]
        assert plc.written == [] and plc.get("DB3.DBB0", "string", 250) == "OLD"
