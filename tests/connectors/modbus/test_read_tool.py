"""``gateway read`` shows raw registers and each decoding, and ``gateway simulate modbus`` serves
the energy meter and the chiller (both run as the user runs them: the installed command)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from connectors.modbus.decode import encode
from connectors.modbus.read import render_registers
from gateway.ports import free_ports
from tests.helpers import port_open, stop_process, wait_until


def _row(text: str, kind: str, address: int) -> list[str]:
    """The cells of ``kind``'s row for ``address`` in the rendered tables."""
    table = text.split(f"\n{kind}", 1)[1].split("\n\n", 1)[0]
    for line in table.splitlines()[1:]:
        cells = line.split()
        if cells and cells[0] == str(address):
            return cells[1:]
    raise AssertionError(f"no {kind} row for {address} in:\n{text}")


def test_every_order_is_shown_so_the_right_one_can_be_recognised() -> None:
    registers = [*encode("float32", 230.5, "CDAB"), *encode("int16", -2)]
    text = render_registers(40, registers)
    abcd, dcba, badc, cdab = _row(text, "float32", 40)
    assert cdab == "230.5" and "230.5" not in (abcd, dcba, badc)
    assert _row(text, "int16", 42) == ["-2", "-257"]  # AB, BA
    assert text.splitlines()[1].split()[:3] == ["40", str(registers[0]), f"{registers[0]:#06x}"]


def test_read_against_the_simulated_meter(tmp_path: Path) -> None:
    port = free_ports(1)
    log = tmp_path / "simulator.log"
    with open(log, "wb") as out:
        simulator = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "simulate", "modbus", "--port", str(port), "--seed", "1"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(lambda: port_open(port) and b"ready" in log.read_bytes(), timeout=60, message="simulator ready")
        url = f"modbus://127.0.0.1:{port}"
        done = subprocess.run(
            [sys.executable, "-m", "gateway.cli", "read", url, "--unit", "1", "--holding", "100:2", "--type", "uint32"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        cdab = _row(done.stdout, "uint32", 100)[3]  # columns: ABCD DCBA BADC CDAB
        assert 1_234_567 <= int(cdab) < 1_300_000  # the meter's energy in 0.01 kWh, word-swapped
        coils = subprocess.run(
            [sys.executable, "-m", "gateway.cli", "read", url, "--unit", "1", "--coils", "5"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert coils.returncode == 0 and coils.stdout.splitlines()[-1].split() in (["5", "1"], ["5", "0"])
        silent = subprocess.run(
            [sys.executable, "-m", "gateway.cli", "read", url, "--unit", "7", "--input", "0:2", "--timeout", "0.5"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert silent.returncode == 1 and "no answer within 0.5s" in silent.stderr
    finally:
        stop_process(simulator)
