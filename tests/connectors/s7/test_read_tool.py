"""``gateway read s7://`` shows each address's bytes and every type of its width, and
``gateway simulate s7`` serves the packaging line (both run as the user runs them)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from connectors.s7.address import parse
from connectors.s7.decode import encode
from connectors.s7.read import render
from gateway.ports import free_ports
from tests.helpers import port_open, stop_process, wait_until


def _section(text: str, address: str) -> dict[str, str]:
    """The rows (type → value) of ``address``'s block in the tool's output."""
    block = text.split(f"\n{address}  ", 1)[1].split("\n\n", 1)[0]
    rows = {}
    for line in block.splitlines()[1:]:
        cells = line.split()
        if len(cells) >= 2:
            rows[cells[0]] = cells[1]
    return rows


def test_every_type_of_the_width_is_shown_and_the_one_asked_for_marked() -> None:
    text = "\n" + render("DB1.DBD0:real", parse("DB1.DBD0:real"), encode("real", 120.0))
    rows = _section(text, "DB1.DBD0:real")
    assert rows["real"] == "120" and rows["dint"] == str(0x42F00000) and rows["dword"] == str(0x42F00000)
    assert "← type" in text.split("real      120", 1)[1].splitlines()[0]
    word = "\n" + render("DB1.DBW8", parse("DB1.DBW8"), encode("int", -2))
    assert _section(word, "DB1.DBW8") == {"bits": "11111111", "int": "-2", "word": "65534", "uint": "65534"}
    bit = render("M10.1", parse("M10.1"), bytes([0b10]))
    assert "bool      True   ← bit 1" in bit
    string = render("DB2.DBB0:string[20]", parse("DB2.DBB0:string[20]"), encode("string", "MUESLI", length=20))
    assert "'MUESLI'" in string and "max 20, 6 used" in string


def _gateway(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_read_against_the_simulated_packaging_line(tmp_path: Path) -> None:
    port = free_ports(1)
    log = tmp_path / "simulator.log"
    with open(log, "wb") as out:
        simulator = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "simulate", "s7", "--port", str(port), "--seed", "1"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(lambda: port_open(port) and b"ready" in log.read_bytes(), timeout=60, message="simulator ready")
        url = f"s7://127.0.0.1:{port}"
        done = _gateway("read", url, "--rack", "0", "--slot", "1", "DB1.DBD0:real", "DB2.DBB0:string[20]", "MW20")
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(f"s7://127.0.0.1:{port} rack 0 slot 1: PDU 480, 3 addresses in 1 request")
        assert 0 <= float(_section(done.stdout, "DB1.DBD0:real")["real"]) < 200  # packs/min
        assert _section(done.stdout, "MW20")["word"] == "120"  # the speed setpoint
        assert "'MUESLI-500G'" in done.stdout or "'CRACKERS-250G'" in done.stdout
        missing = _gateway("read", url, "DB9.DBW0", "MW20")
        assert missing.returncode == 1 and "DB9.DBW0  error: DB9 does not exist in the PLC" in missing.stdout
        wrong = _gateway("read", url, "DB1.DBW0:real")
        assert wrong.returncode == 1
        assert "'DB1.DBW0:real' is a word (2 bytes) but real takes 4 bytes: write DB1.DBD0" in wrong.stderr
        nobody = _gateway("read", f"s7://127.0.0.1:{free_ports(1)}", "MW20", "--timeout", "1")
        assert nobody.returncode == 1 and "cannot connect to the PLC at 127.0.0.1:" in nobody.stderr
    finally:
        stop_process(simulator)
