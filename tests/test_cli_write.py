"""``gateway write``: a write to a machine through the running gateway's API, as an operator at a
terminal does it — the gateway (``gateway run``) and the machine (``gateway simulate modbus``,
the chiller on unit 2) run as their own processes.

Checked as the operator and the auditor check it: the exit status and the line printed, the
register on the chiller (read by a Modbus client of our own), the audit file — also after a
SIGKILL right after the answer — and that neither the audit nor the log holds a token or password.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pymodbus.client import ModbusTcpClient

from gateway.ports import free_ports
from tests.fixtures.gateway import GatewayRun
from tests.helpers import port_open, stop_process, wait_until

ROOT = Path(__file__).parents[1]
VIEWER_TOKEN = "viewer-token-cli-0123456789"
OPERATOR_TOKEN = "operator-token-cli-0123456789"
OPERATOR_PASSWORD = "chiller shift pw 77"
SECRETS = (VIEWER_TOKEN, OPERATOR_TOKEN, OPERATOR_PASSWORD)


class AuthorizedRun(GatewayRun):
    """``gateway run`` whose API needs credentials: every request carries the viewer's token."""

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, Any]:
        url = f"http://127.0.0.1:{self.http_port}{path}"
        request = urllib.request.Request(url, data=body, method=method)
        request.add_header("Authorization", f"Bearer {VIEWER_TOKEN}")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, None
        except (OSError, ValueError):
            return 0, None


@dataclass
class Plant:
    config: Path
    gateway: AuthorizedRun
    modbus_port: int
    audit: Path

    def write(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
        return subprocess.run(
            [sys.executable, "-m", "gateway.cli", "write", str(self.config), *args],
            env={**environ, **(env or {}), "PYTHONUNBUFFERED": "1"},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def setpoint_register(self) -> int:
        """Holding register 0 of unit 2 as a Modbus client of our own reads it (int16, 0.1 °C)."""
        client = ModbusTcpClient("127.0.0.1", port=self.modbus_port, timeout=5)
        try:
            assert client.connect()  # type: ignore[no-untyped-call]
            response = client.read_holding_registers(0, count=1, device_id=2)
            assert not response.isError(), response
            return int(response.registers[0])
        finally:
            client.close()  # type: ignore[no-untyped-call]

    def entries(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.audit.read_text().splitlines()]


@pytest.fixture
def plant(tmp_path: Path) -> Iterator[Plant]:
    modbus_port, http_port = free_ports(1), free_ports(1)
    simulator = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "simulate", "modbus", "--port", str(modbus_port), "--seed", "1"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    gateway: AuthorizedRun | None = None
    try:
        wait_until(lambda: port_open(modbus_port), timeout=60, message="the Modbus simulator listening")
        config = tmp_path / "gateway.yaml"
        config.write_text(
            textwrap.dedent(
                f"""\
                gateway:
                  name: cli-write
                  data_dir: {tmp_path / "data"}
                  http:
                    listen: 127.0.0.1:{http_port}
                    auth:
                      viewer: {{token: {VIEWER_TOKEN}}}
                      operator: {{token: {OPERATOR_TOKEN}, username: mario, password: "{OPERATOR_PASSWORD}"}}
                sinks:
                  - {{name: local, type: historian, path: {tmp_path / "history.db"}, flush_interval: 200ms}}
                connectors:
                  - name: utilities
                    type: modbus
                    host: 127.0.0.1
                    port: {modbus_port}
                    interval: 500ms
                    devices:
                      - unit: 2
                        name: chiller
                        measurement: chiller
                        tags: {{machine: chiller-1}}
                        fields:
                          - {{name: supply_temp_c, area: input, address: 0, type: int16, scale: 0.1}}
                          - {{name: setpoint_c, area: holding, address: 0, type: int16, scale: 0.1, unit: °C,
                              write: {{min: 4, max: 15}}}}
                """
            )
        )
        gateway = AuthorizedRun(config, http_port, tmp_path / "gateway.log")
        gateway.start()
        yield Plant(config, gateway, modbus_port, tmp_path / "data" / "audit" / "audit.jsonl")
    finally:
        if gateway is not None:
            gateway.stop()
        stop_process(simulator)


def test_gateway_write_through_the_api_with_its_answer_in_words(plant: Plant, tmp_path: Path) -> None:
    operator = {"GATEWAY_TOKEN": OPERATOR_TOKEN}
    done = plant.write("--connector", "utilities", "--field", "setpoint_c", "--value", "9.5", env=operator)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        "written: utilities.setpoint_c = 9.5 °C (before: 7.0, read back: 9.5): written and read back"
    )
    assert plant.setpoint_register() == 95

    by_password = plant.write(
        "--connector", "utilities", "--field", "setpoint_c", "--value", "10",
        env={"GATEWAY_USER": "mario", "GATEWAY_PASSWORD": OPERATOR_PASSWORD},
    )  # fmt: skip
    assert by_password.returncode == 0, by_password.stderr
    as_json = plant.write(
        "--connector", "utilities", "--field", "setpoint_c", "--value", "10.5", "--json", env=operator
    )
    assert json.loads(as_json.stdout)["read_back"] == 10.5

    too_warm = plant.write("--connector", "utilities", "--field", "setpoint_c", "--value", "30", env=operator)
    assert too_warm.returncode == 1
    assert too_warm.stderr.strip() == (
        "not written (refused_limits): utilities.setpoint_c = 30 °C: 30 °C is above the highest value allowed for "
        "setpoint_c (15 °C)"
    )
    not_a_number = plant.write("--connector", "utilities", "--field", "setpoint_c", "--value", "warm", env=operator)
    assert not_a_number.returncode == 1 and "refused_type" in not_a_number.stderr
    undeclared = plant.write("--connector", "utilities", "--field", "supply_temp_c", "--value", "5", env=operator)
    assert undeclared.returncode == 1 and "not_writable" in undeclared.stderr

    token_file = tmp_path / "viewer.token"
    token_file.write_text(VIEWER_TOKEN + "\n")
    viewer = plant.write(
        "--connector", "utilities", "--field", "setpoint_c", "--value", "5", "--token-file", str(token_file)
    )
    assert viewer.returncode == 1 and "forbidden" in viewer.stderr and "operator or admin role" in viewer.stderr
    wrong = plant.write("--connector", "utilities", "--field", "setpoint_c", "--value", "5",
                        env={"GATEWAY_TOKEN": "not-the-token-at-all-00"})  # fmt: skip
    assert wrong.returncode == 2 and "refused the credentials" in wrong.stderr
    nobody = plant.write("--connector", "utilities", "--field", "setpoint_c", "--value", "5",
                         "--url", f"http://127.0.0.1:{free_ports(1)}")  # fmt: skip
    assert nobody.returncode == 2 and "does not answer" in nobody.stderr

    assert plant.setpoint_register() == 105  # none of the refused values reached the chiller
    outcomes = [e for e in plant.entries() if e["result"] != "pending"]
    assert [(e["result"], e["user"], e["requested"]) for e in outcomes] == [
        ("written", "operator token", 9.5),
        ("written", "mario", 10),
        ("written", "operator token", 10.5),
        ("refused_limits", "operator token", 30),
        ("refused_type", "operator token", "warm"),
        ("not_writable", "operator token", "5"),  # no such writable field: no type to convert to
        ("forbidden", "viewer token", 5),
    ]
    assert all(e["client"] == "127.0.0.1" for e in outcomes)


@pytest.mark.slow
def test_the_audit_entry_survives_a_sigkill_right_after_the_answer_and_holds_no_secret(plant: Plant) -> None:
    done = plant.write(
        "--connector", "utilities", "--field", "setpoint_c", "--value", "8.5", env={"GATEWAY_TOKEN": OPERATOR_TOKEN}
    )
    assert done.returncode == 0, done.stderr
    assert plant.gateway.process is not None
    plant.gateway.process.send_signal(signal.SIGKILL)  # no shutdown, no flush: only what was on disk stays
    plant.gateway.process.wait(10)
    [entry] = [e for e in plant.entries() if e["result"] == "written"]
    assert (entry["requested"], entry["old"], entry["read_back"], entry["user"]) == (8.5, 7.0, 8.5, "operator token")
    assert plant.setpoint_register() == 85

    # A password or token in the audit files or in the log would be a secret handed to whoever reads them.
    audit_text = "".join(path.read_text() for path in plant.audit.parent.iterdir())
    log_text = plant.gateway.log_text()
    for secret in SECRETS:
        assert secret not in audit_text
        assert secret not in log_text
