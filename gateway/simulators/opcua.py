"""Simulated machines with OPC UA servers: a CNC machining centre and an injection-molding press.

Each machine is its own OPC UA server (one endpoint per machine, as on a shop floor): with
``--machines N`` machine *k* listens on ``port + k`` and machines alternate CNC, press, CNC …

CNC machining centre — namespace ``urn:lab:cnc``, everything below ``Objects/Machine``::

    Identification/{Name, Manufacturer, Model, SerialNumber}                       String
    State/{Mode (MachineStateEnum), Running, AlarmActive, AlarmCode, AlarmText,
           StateChangedAt (DateTime), OperatingHours}
    Spindle/{Speed, SpeedSetpoint (Double), Load, Temperature (Float), Override (Byte),
             Direction (Int16), SpeedRange (Range: a structure)}
    Feed/{Rate (Double), Override (Byte, writable: the rate follows it)}
    Axes/{X,Y,Z}/{Position (Double), Load (Float)}, Axes/Position (Double[3])
    Coolant/{Temperature, Pressure, Level (Float), PumpOn (Boolean)}, ns=<cnc>;i=1005 (Int16, 0.1 °C)
    Program/{Name (String), Selected (String, writable), BlockNumber (UInt32), ToolNumber (UInt16), ToolLife (Int32)}
    Counters/{PartsProduced, PartsGood, PartsScrap (UInt32), CycleCount (UInt64), SpindleRevolutions (Int64)}
    Energy/{Power (Float), Energy (Double)}
    Sensors/{Vibration (Float), AmbientTemperature (Float), SensorNode (SByte)}

Injection-molding press — namespace ``urn:lab:press``: State, Cycle/{CycleTime, Cushion,
InjectionPressure, HoldPressure, ClampForce, DosingTime}, Barrel/Zone1…Zone5 and
Barrel/Temperatures (Float[5]), Mold/{Temperature, Name}, Counters/{ShotCounter, GoodParts,
RejectedParts}, Energy/….

Physical quantities are AnalogItems in spirit: each has an ``EngineeringUnits`` property
(rpm, °C, bar, mm, kN, kW …), which ``gateway browse`` and the web page show.

Two CNC variables are writable (as on a real controller, where the operator selects a program
and turns the feed override): ``Program.Selected`` — the program loaded (``Program/Name`` shows
its full name from the next update on) — and ``Feed.Override`` in % (``Feed/Rate`` follows it). Every other
variable is read-only: a client's write is refused with BadUserAccessDenied, as a controller
refuses writes to what it measures.

Values move smoothly and plausibly; states go idle → running → idle / alarm with realistic
dwell times; a few sensors fail now and then (``BadSensorFailure`` for some seconds, with the
time of the failure as source timestamp). ``--seed`` makes a run reproducible.

For tests and benchmarks: ``--static`` (values never change), ``--extra-namespaces K``
(shifts every namespace index: a "restarted server with another namespace order"),
``--bench-items N`` (N Double variables under Objects/Bench/GroupNN/, all changing every interval),
operation limits that are published *and enforced* (``--max-nodes-per-read``,
``--max-monitored-items-per-call``), users (``--user name:password``) and a status file
with the live session / subscription / monitored item counts.
"""

# asyncua's signatures (Int16, String, DateTime … as its own types, names re-exported
# implicitly) cannot be met without a cast at every call, so this module leaves out these checks.
# mypy: disable-error-code="arg-type,attr-defined,method-assign"
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import random
import signal
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from asyncua import Server, ua
from asyncua.common.node import Node
from asyncua.common.structures104 import new_enum
from asyncua.common.utils import ServiceError
from asyncua.crypto import cert_gen
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.monitored_item_service import MonitoredItemService, MonitoredItemValues
from cryptography.x509.oid import ExtendedKeyUsageOID

__all__ = [
    "CNC_NAMESPACE",
    "PRESS_NAMESPACE",
    "OpcUaSimulatorSettings",
    "opcua_simulator",
    "run_opcua_simulator",
]

log = logging.LoggerAdapter(logging.getLogger("gateway.simulator.opcua"), {"component": "simulator=opcua"})

CNC_NAMESPACE = "urn:lab:cnc"
PRESS_NAMESPACE = "urn:lab:press"
BENCH_NAMESPACE = "urn:lab:bench"
BENCH_GROUP = 500  # bench variables per folder: Objects/Bench/Group00/Tag00000 …
SECURITY_CHOICES = ("none", "sign", "encrypt", "all")
MACHINE_STATES = ("Idle", "Running", "Alarm", "Setup")


@dataclass
class OpcUaSimulatorSettings:
    host: str = "127.0.0.1"
    port: int = 4840
    machines: int = 1
    security: str = "none"  # none | sign | encrypt | all
    users: dict[str, str] = field(default_factory=dict)
    anonymous: bool | None = None  # None: allowed only when no users are given
    user_certificates: list[Path] = field(default_factory=list)  # X.509 users (DER or PEM files)
    seed: int | None = None
    interval: float = 1.0
    static: bool = False
    extra_namespaces: int = 0
    bench_items: int = 0
    max_nodes_per_read: int = 0
    max_monitored_items_per_call: int = 0
    bad_rate: float = 0.01
    data_dir: Path = Path("data/opcua-simulator")
    status_file: Path | None = None


# --- machine models ------------------------------------------------------------------------

BAD = object()  # a value whose sensor has failed


@dataclass
class Var:
    path: str  # "Spindle/Speed" below Objects/Machine
    vtype: ua.VariantType
    value: Any
    numeric_id: int | None = None  # a numeric node id instead of the path as string id
    data_type: str | None = None  # "enum" or "range" for special types
    array: bool = False
    unit: str = ""  # published as the variable's EngineeringUnits property (an AnalogItem's unit)
    writable: bool = False  # clients may write it (the model reads it at every step instead of setting it)


class _Smooth:
    """A first-order lag towards a target, with a little noise: values that look measured."""

    def __init__(self, value: float, tau: float, noise: float) -> None:
        self.value = value
        self.tau = tau
        self.noise = noise

    def step(self, target: float, dt: float, rng: random.Random) -> float:
        alpha = 1.0 - math.exp(-dt / self.tau)
        self.value += (target - self.value) * alpha + rng.gauss(0.0, self.noise) * math.sqrt(dt)
        return self.value


class _StateMachine:
    """idle → setup → running → idle/alarm, with exponential dwell times."""

    DWELL: ClassVar[dict[str, float]] = {"Idle": 30.0, "Setup": 15.0, "Running": 90.0, "Alarm": 12.0}
    NEXT: ClassVar[dict[str, tuple[tuple[str, float], ...]]] = {
        "Idle": (("Setup", 0.5), ("Running", 0.5)),
        "Setup": (("Running", 0.9), ("Alarm", 0.1)),
        "Running": (("Idle", 0.8), ("Alarm", 0.2)),
        "Alarm": (("Idle", 0.8), ("Setup", 0.2)),
    }

    def __init__(self, rng: random.Random) -> None:
        self.state = "Running"
        self.changed = datetime.now(UTC)
        self.left = rng.expovariate(1.0 / self.DWELL["Running"])

    def step(self, dt: float, rng: random.Random) -> bool:
        self.left -= dt
        if self.left > 0:
            return False
        options = self.NEXT[self.state]
        self.state = rng.choices([name for name, _ in options], [weight for _, weight in options])[0]
        self.changed = datetime.now(UTC)
        self.left = rng.expovariate(1.0 / self.DWELL[self.state])
        return True


_ALARMS = ((1101, "Spindle overload"), (2204, "Coolant level low"), (3310, "Door open"), (4415, "Tool breakage"))
_PROGRAMS = ("O1001 FLANGE-A", "O1002 HOUSING-B", "O1003 COVER-E", "O2040 SHAFT-C", "O3100 BRACKET-D")


class CncModel:
    kind = "cnc"
    namespace = CNC_NAMESPACE
    manufacturer = "Lab Machine Tools"
    model = "VMC-850"

    def __init__(self, name: str, rng: random.Random, bad_rate: float = 0.01) -> None:
        self.name = name
        self.rng = rng
        self.bad_rate = bad_rate  # sensor failures per fragile sensor and second
        self.state = _StateMachine(rng)
        self.speed = _Smooth(8000.0, 2.0, 5.0)
        self.load = _Smooth(45.0, 3.0, 1.5)
        self.spindle_temp = _Smooth(38.0, 120.0, 0.05)
        self.coolant = _Smooth(22.0, 300.0, 0.03)
        self.pressure = _Smooth(6.0, 5.0, 0.05)
        self.level = 92.0
        self.power = _Smooth(12.0, 3.0, 0.2)
        self.vibration = _Smooth(1.8, 2.0, 0.08)
        self.ambient = _Smooth(21.0, 600.0, 0.02)
        self.t = 0.0
        self.parts = 0
        self.scrap = 0
        self.cycles = 0
        self.revolutions = 0
        self.energy = 0.0
        self.hours = 1234.5
        self.program = _PROGRAMS[0]
        self.feed_override = 100  # % (Feed.Override, written by clients)
        self.cycle_left = 45.0
        self.tool_life = 5000
        self.alarm = (0, "")
        self.failed: dict[str, float] = {}

    def variables(self) -> list[Var]:
        D, F, B = ua.VariantType.Double, ua.VariantType.Float, ua.VariantType.Boolean
        return [
            Var("Identification/Name", ua.VariantType.String, self.name),
            Var("Identification/Manufacturer", ua.VariantType.String, self.manufacturer),
            Var("Identification/Model", ua.VariantType.String, self.model),
            Var("Identification/SerialNumber", ua.VariantType.String, f"SN-{self.rng.randint(100000, 999999)}"),
            Var("State/Mode", ua.VariantType.Int32, 1, data_type="enum"),
            Var("State/Running", B, True),
            Var("State/AlarmActive", B, False),
            Var("State/AlarmCode", ua.VariantType.UInt16, 0),
            Var("State/AlarmText", ua.VariantType.String, ""),
            Var("State/StateChangedAt", ua.VariantType.DateTime, datetime.now(UTC)),
            Var("State/OperatingHours", D, self.hours, unit="h"),
            Var("Spindle/Speed", D, 8000.0, unit="rpm"),
            Var("Spindle/SpeedSetpoint", D, 8000.0, unit="rpm"),
            Var("Spindle/Load", F, 45.0, unit="%"),
            Var("Spindle/Temperature", F, 38.0, unit="°C"),
            Var("Spindle/Override", ua.VariantType.Byte, 100),
            Var("Spindle/Direction", ua.VariantType.Int16, 1),
            Var("Spindle/SpeedRange", ua.VariantType.ExtensionObject, ua.Range(0.0, 12000.0), data_type="range"),
            Var("Feed/Rate", D, 1500.0, unit="mm/min"),
            Var("Feed/Override", ua.VariantType.Byte, 100, unit="%", writable=True),
            Var("Axes/X/Position", D, 0.0, unit="mm"),
            Var("Axes/Y/Position", D, 0.0, unit="mm"),
            Var("Axes/Z/Position", D, -50.0, unit="mm"),
            Var("Axes/X/Load", F, 20.0, unit="%"),
            Var("Axes/Y/Load", F, 20.0, unit="%"),
            Var("Axes/Z/Load", F, 25.0, unit="%"),
            Var("Axes/Position", D, [0.0, 0.0, -50.0], array=True),
            Var("Coolant/Temperature", F, 22.0, unit="°C"),
            Var("Coolant/Pressure", F, 6.0, unit="bar"),
            Var("Coolant/Level", F, 92.0, unit="%"),
            Var("Coolant/PumpOn", B, True),
            Var("Coolant/TemperatureRaw", ua.VariantType.Int16, 220, numeric_id=1005),
            Var("Program/Name", ua.VariantType.String, self.program),
            Var("Program/Selected", ua.VariantType.String, self.program.split()[0], writable=True),
            Var("Program/BlockNumber", ua.VariantType.UInt32, 10),
            Var("Program/ToolNumber", ua.VariantType.UInt16, 1),
            Var("Program/ToolLife", ua.VariantType.Int32, self.tool_life),
            Var("Counters/PartsProduced", ua.VariantType.UInt32, 0),
            Var("Counters/PartsGood", ua.VariantType.UInt32, 0),
            Var("Counters/PartsScrap", ua.VariantType.UInt32, 0),
            Var("Counters/CycleCount", ua.VariantType.UInt64, 0),
            Var("Counters/SpindleRevolutions", ua.VariantType.Int64, 0),
            Var("Energy/Power", F, 12.0, unit="kW"),
            Var("Energy/Energy", D, 0.0, unit="kWh"),
            Var("Sensors/Vibration", F, 1.8, unit="mm/s"),
            Var("Sensors/AmbientTemperature", F, 21.0, unit="°C"),
            Var("Sensors/SensorNode", ua.VariantType.SByte, -3),
        ]

    def step(self, dt: float) -> dict[str, Any]:
        rng = self.rng
        self.t += dt
        if self.state.step(dt, rng) and self.state.state == "Alarm":
            self.alarm = rng.choice(_ALARMS)
        running = self.state.state == "Running"
        setpoint = 8000.0 + 1500.0 * math.sin(self.t / 40.0) if running else 0.0
        speed = max(0.0, self.speed.step(setpoint, dt, rng))
        load = max(0.0, self.load.step(45.0 + 15.0 * math.sin(self.t / 7.0) if running else 2.0, dt, rng))
        self.revolutions += int(speed / 60.0 * dt)
        power = max(0.5, self.power.step(4.0 + speed / 600.0 + load / 10.0 if running else 1.2, dt, rng))
        self.energy += power * dt / 3600.0
        self.hours += dt / 3600.0
        if running:
            self.cycle_left -= dt
            if self.cycle_left <= 0:
                self.cycle_left = rng.uniform(40.0, 50.0)
                self.cycles += 1
                self.parts += 1
                if rng.random() < 0.03:
                    self.scrap += 1
                self.tool_life = self.tool_life - 1 if self.tool_life > 0 else 5000
        self.level = self.level - 0.01 * dt if self.level > 60 else 95.0
        x = 200.0 * math.sin(self.t / 5.0) if running else 0.0
        y = 150.0 * math.cos(self.t / 5.0) if running else 0.0
        z = -50.0 + 10.0 * math.sin(self.t / 2.0) if running else 0.0
        coolant = self.coolant.step(26.0 if running else 21.0, dt, rng)
        values: dict[str, Any] = {
            "State/Mode": MACHINE_STATES.index(self.state.state),
            "State/Running": running,
            "State/AlarmActive": self.state.state == "Alarm",
            "State/AlarmCode": self.alarm[0] if self.state.state == "Alarm" else 0,
            "State/AlarmText": self.alarm[1] if self.state.state == "Alarm" else "",
            "State/StateChangedAt": self.state.changed,
            "State/OperatingHours": round(self.hours, 4),
            "Spindle/Speed": round(speed, 1),
            "Spindle/SpeedSetpoint": round(setpoint, 0),
            "Spindle/Load": round(load, 2),
            "Spindle/Temperature": round(self.spindle_temp.step(52.0 if running else 30.0, dt, rng), 2),
            "Feed/Rate": round((1500.0 + 300.0 * math.sin(self.t / 11.0)) * self.feed_override / 100, 1)
            if running
            else 0.0,
            "Axes/X/Position": round(x, 3),
            "Axes/Y/Position": round(y, 3),
            "Axes/Z/Position": round(z, 3),
            "Axes/X/Load": round(20.0 + abs(x) / 20.0, 2),
            "Axes/Y/Load": round(20.0 + abs(y) / 20.0, 2),
            "Axes/Z/Load": round(25.0 + abs(z) / 10.0, 2),
            "Axes/Position": [round(x, 3), round(y, 3), round(z, 3)],
            "Coolant/Temperature": round(coolant, 2),
            "Coolant/TemperatureRaw": round(coolant * 10),
            "Coolant/Pressure": round(max(0.0, self.pressure.step(6.0 if running else 0.2, dt, rng)), 2),
            "Coolant/Level": round(self.level, 2),
            "Coolant/PumpOn": running,
            "Program/Name": self.program,
            "Program/BlockNumber": int(self.t * 3) % 4000 + 10 if running else 10,
            "Program/ToolNumber": (self.cycles % 12) + 1,
            "Program/ToolLife": self.tool_life,
            "Counters/PartsProduced": self.parts,
            "Counters/PartsGood": self.parts - self.scrap,
            "Counters/PartsScrap": self.scrap,
            "Counters/CycleCount": self.cycles,
            "Counters/SpindleRevolutions": self.revolutions,
            "Energy/Power": round(power, 2),
            "Energy/Energy": round(self.energy, 4),
            "Sensors/Vibration": round(max(0.1, self.vibration.step(2.5 if running else 0.3, dt, rng)), 3),
            "Sensors/AmbientTemperature": round(self.ambient.step(21.0, dt, rng), 2),
        }
        return _with_failures(values, self.failed, ("Sensors/Vibration", "Coolant/Level"), dt, rng, self.bad_rate)

    def written(self, path: str, value: Any) -> None:
        """A writable variable's value (a client may have written it): the machine acts on it."""
        if path == "Program/Selected" and isinstance(value, str) and value:
            known = next((p for p in _PROGRAMS if p.split()[0] == value), None)
            self.program = known or value  # an unknown program number is loaded as it is (no name to show)
        elif path == "Feed/Override" and isinstance(value, int):
            self.feed_override = value


class PressModel:
    kind = "press"
    namespace = PRESS_NAMESPACE
    manufacturer = "Lab Plastics Machinery"
    model = "IMP-1500"
    ZONES = (215.0, 225.0, 235.0, 240.0, 245.0)

    def __init__(self, name: str, rng: random.Random, bad_rate: float = 0.01) -> None:
        self.name = name
        self.rng = rng
        self.bad_rate = bad_rate  # sensor failures per fragile sensor and second
        self.state = _StateMachine(rng)
        self.zones = [_Smooth(z, 60.0, 0.15) for z in self.ZONES]
        self.mold = _Smooth(60.0, 90.0, 0.1)
        self.cushion = _Smooth(5.2, 4.0, 0.03)
        self.power = _Smooth(18.0, 3.0, 0.3)
        self.t = 0.0
        self.cycle_left = 28.5
        self.shots = 0
        self.rejects = 0
        self.energy = 0.0
        self.last_cycle = 28.5
        self.failed: dict[str, float] = {}

    def variables(self) -> list[Var]:
        D, F = ua.VariantType.Double, ua.VariantType.Float
        return [
            Var("Identification/Name", ua.VariantType.String, self.name),
            Var("Identification/Manufacturer", ua.VariantType.String, self.manufacturer),
            Var("Identification/Model", ua.VariantType.String, self.model),
            Var("State/Mode", ua.VariantType.Int32, 1, data_type="enum"),
            Var("State/Running", ua.VariantType.Boolean, True),
            Var("State/StateChangedAt", ua.VariantType.DateTime, datetime.now(UTC)),
            Var("Cycle/CycleTime", D, 28.5, unit="s"),
            Var("Cycle/Cushion", F, 5.2, unit="mm"),
            Var("Cycle/InjectionPressure", F, 850.0, unit="bar"),
            Var("Cycle/HoldPressure", F, 600.0, unit="bar"),
            Var("Cycle/ClampForce", F, 1450.0, unit="kN"),
            Var("Cycle/DosingTime", D, 6.2, unit="s"),
            *(Var(f"Barrel/Zone{i + 1}", F, z, unit="°C") for i, z in enumerate(self.ZONES)),
            Var("Barrel/Temperatures", F, list(self.ZONES), array=True, unit="°C"),
            Var("Mold/Temperature", F, 60.0, unit="°C"),
            Var("Mold/Name", ua.VariantType.String, "M-4711 Cap 28mm 8-cavity"),
            Var("Counters/ShotCounter", ua.VariantType.UInt32, 0),
            Var("Counters/GoodParts", ua.VariantType.UInt32, 0),
            Var("Counters/RejectedParts", ua.VariantType.UInt32, 0),
            Var("Energy/Power", F, 18.0, unit="kW"),
            Var("Energy/Energy", D, 0.0, unit="kWh"),
        ]

    def step(self, dt: float) -> dict[str, Any]:
        rng = self.rng
        self.t += dt
        self.state.step(dt, rng)
        running = self.state.state == "Running"
        zones = [
            round(z.step(t if running else t - 40.0, dt, rng), 2) for z, t in zip(self.zones, self.ZONES, strict=True)
        ]
        if running:
            self.cycle_left -= dt
            if self.cycle_left <= 0:
                self.last_cycle = round(rng.gauss(28.5, 0.25), 3)
                self.cycle_left = self.last_cycle
                self.shots += 1
                if rng.random() < 0.02:
                    self.rejects += 1
        power = max(1.0, self.power.step(18.0 + 6.0 * math.sin(self.t) if running else 4.0, dt, rng))
        self.energy += power * dt / 3600.0
        phase = (self.t % max(self.last_cycle, 1.0)) / max(self.last_cycle, 1.0)
        values: dict[str, Any] = {
            "State/Mode": MACHINE_STATES.index(self.state.state),
            "State/Running": running,
            "State/StateChangedAt": self.state.changed,
            "Cycle/CycleTime": self.last_cycle,
            "Cycle/Cushion": round(self.cushion.step(5.2, dt, rng), 3),
            "Cycle/InjectionPressure": round(850.0 * math.exp(-((phase - 0.15) ** 2) / 0.005) + 30.0, 1)
            if running
            else 0.0,
            "Cycle/HoldPressure": round(600.0 + rng.gauss(0, 3), 1) if running else 0.0,
            "Cycle/ClampForce": round(1450.0 + rng.gauss(0, 5), 1) if running else 0.0,
            "Cycle/DosingTime": round(6.2 + rng.gauss(0, 0.05), 3),
            **{f"Barrel/Zone{i + 1}": z for i, z in enumerate(zones)},
            "Barrel/Temperatures": zones,
            "Mold/Temperature": round(self.mold.step(60.0 if running else 45.0, dt, rng), 2),
            "Counters/ShotCounter": self.shots,
            "Counters/GoodParts": self.shots - self.rejects,
            "Counters/RejectedParts": self.rejects,
            "Energy/Power": round(power, 2),
            "Energy/Energy": round(self.energy, 4),
        }
        return _with_failures(values, self.failed, ("Barrel/Zone3", "Mold/Temperature"), dt, rng, self.bad_rate)

    def written(self, path: str, value: Any) -> None:
        """The press has no writable variable."""


def _with_failures(
    values: dict[str, Any],
    failed: dict[str, float],
    fragile: tuple[str, ...],
    dt: float,
    rng: random.Random,
    rate: float,
) -> dict[str, Any]:
    """Sensors fail now and then: ``rate`` failures per sensor and second, BadSensorFailure for 3–10 s."""
    for path in fragile:
        if path in failed:
            failed[path] -= dt
            if failed[path] <= 0:
                del failed[path]
        elif rng.random() < rate * dt:
            failed[path] = rng.uniform(3.0, 10.0)
        if path in failed:
            values[path] = BAD
    return values


Model = CncModel | PressModel


# --- one server per machine ---------------------------------------------------------------


class _Users:
    """Who may connect. Every session is a plain user (never asyncua's admin, who may write
    anything): a write to a variable that is not writable is refused with BadUserAccessDenied.
    ``accept_any``: no accounts are configured, any user name and password is let in."""

    def __init__(
        self, users: dict[str, str], anonymous: bool, certificates: list[bytes], accept_any: bool = False
    ) -> None:
        self.users = users
        self.anonymous = anonymous
        self.certificates = certificates  # DER of the accepted X.509 user certificates
        self.accept_any = accept_any

    def get_user(
        self, iserver: Any, username: str | None = None, password: str | None = None, certificate: Any = None
    ) -> User | None:
        if username is not None and (self.accept_any or self.users.get(username) == password):
            return User(role=UserRole.User, name=username)
        if username is None and certificate is not None and _der(certificate) in self.certificates:
            return User(role=UserRole.User, name="x509")
        if username is None and self.anonymous:
            return User(role=UserRole.User)
        return None


def _der(certificate: Any) -> bytes:
    if isinstance(certificate, bytes):
        return certificate
    from cryptography.hazmat.primitives.serialization import Encoding

    return bytes(certificate.public_bytes(Encoding.DER))


def _load_der(path: Path) -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    data = path.read_bytes()
    cert = (
        x509.load_pem_x509_certificate(data)
        if data.lstrip().startswith(b"-----")
        else x509.load_der_x509_certificate(data)
    )
    return cert.public_bytes(Encoding.DER)


@dataclass
class _Machine:
    model: Model
    server: Server
    nodes: dict[str, Node]
    sessions_created: list[int]
    types: dict[str, tuple[ua.VariantType, bool]]
    writable: list[str]


def _policies(security: str) -> list[ua.SecurityPolicyType]:
    P = ua.SecurityPolicyType
    if security == "none":
        return [P.NoSecurity]
    if security == "sign":
        return [P.Basic256Sha256_Sign]
    if security == "encrypt":
        return [P.Basic256Sha256_SignAndEncrypt]
    return [
        P.NoSecurity,
        P.Basic256Sha256_Sign,
        P.Basic256Sha256_SignAndEncrypt,
        P.Aes128Sha256RsaOaep_Sign,
        P.Aes128Sha256RsaOaep_SignAndEncrypt,
        P.Aes256Sha256RsaPss_Sign,
        P.Aes256Sha256RsaPss_SignAndEncrypt,
    ]


async def _enforce_limits(server: Server, settings: OpcUaSimulatorSettings, counter: list[int]) -> None:
    """Publish the operation limits and make each new session refuse calls above them, as PLCs do."""
    ids = ua.ObjectIds
    limits = {
        ids.Server_ServerCapabilities_OperationLimits_MaxNodesPerRead: settings.max_nodes_per_read,
        ids.Server_ServerCapabilities_OperationLimits_MaxMonitoredItemsPerCall: settings.max_monitored_items_per_call,
    }
    for node_id, value in limits.items():
        with contextlib.suppress(Exception):
            await server.get_node(ua.NodeId(node_id, 0)).write_value(ua.Variant(value, ua.VariantType.UInt32))
    iserver = server.iserver
    create = iserver.create_session

    def create_session(*args: Any, **kwargs: Any) -> Any:
        session = create(*args, **kwargs)
        if kwargs.get("external") or (len(args) > 1 and args[1]):
            counter[0] += 1
        read, create_items = session.read, session.create_monitored_items

        async def limited_read(params: ua.ReadParameters) -> Any:
            if settings.max_nodes_per_read and len(params.NodesToRead) > settings.max_nodes_per_read:
                raise ServiceError(ua.StatusCodes.BadTooManyOperations)
            return await read(params)

        async def limited_create(params: ua.CreateMonitoredItemsParameters) -> Any:
            limit = settings.max_monitored_items_per_call
            if limit and len(params.ItemsToCreate) > limit:
                raise ServiceError(ua.StatusCodes.BadTooManyOperations)
            return await create_items(params)

        session.read = limited_read
        session.create_monitored_items = limited_create
        return session

    iserver.create_session = create_session


async def _certificate(settings: OpcUaSimulatorSettings, name: str, app_uri: str) -> tuple[Path, Path]:
    folder = settings.data_dir / name
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / "cert.der", folder / "key.pem"
    if not (cert.exists() and key.exists()):
        await cert_gen.setup_self_signed_certificate(
            key,
            cert,
            app_uri,
            socket.gethostname(),
            [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
            {"organizationName": "shopfloor-gateway simulator"},
        )
    return cert, key


async def _start_machine(settings: OpcUaSimulatorSettings, index: int, rng: random.Random) -> _Machine:
    kind = CncModel if index % 2 == 0 else PressModel
    name = f"{kind.kind}-{index // 2 + 1:02d}"
    model: Model = kind(name, rng, bad_rate=settings.bad_rate)
    anonymous = settings.anonymous if settings.anonymous is not None else not settings.users
    restricted = bool(settings.users or settings.user_certificates)
    certificates = [_load_der(path) for path in settings.user_certificates]
    server = Server(user_manager=_Users(settings.users, anonymous, certificates, accept_any=not restricted))
    await server.init()
    port = settings.port + index
    app_uri = f"urn:lab:simulator:{name}"
    server.set_endpoint(f"opc.tcp://{settings.host}:{port}/")
    server.set_server_name(f"Simulated {model.model} {name}")
    await server.set_application_uri(app_uri)
    server.product_uri = "urn:shopfloor-gateway:simulator"
    server.set_security_policy(_policies(settings.security))
    tokens: list[type] = [ua.UserNameIdentityToken] + ([ua.AnonymousIdentityToken] if anonymous else [])
    if settings.user_certificates:
        tokens.append(ua.X509IdentityToken)
    server.set_identity_tokens(tokens)
    if settings.security != "none":
        cert, key = await _certificate(settings, name, app_uri)
        await server.load_certificate(str(cert))
        await server.load_private_key(str(key))
    for k in range(settings.extra_namespaces):
        await server.register_namespace(f"urn:lab:simulator:padding:{k}")
    idx = await server.register_namespace(model.namespace)
    sessions_created = [0]
    await _enforce_limits(server, settings, sessions_created)
    variables = model.variables()
    nodes = await _build_address_space(server, idx, variables)
    if index == 0 and settings.bench_items:
        nodes.update(await _build_bench(server, settings.bench_items, settings.extra_namespaces))
    await server.start()
    log.info(
        "%s (%s) listening on opc.tcp://%s:%d/, namespace %s = ns=%d",
        name,
        model.model,
        settings.host,
        port,
        model.namespace,
        idx,
    )
    return _Machine(
        model,
        server,
        nodes,
        sessions_created,
        {v.path: (v.vtype, v.array) for v in variables},
        [v.path for v in variables if v.writable],
    )


async def _build_address_space(server: Server, idx: int, variables: list[Var]) -> dict[str, Node]:
    objects = server.nodes.objects
    machine = await objects.add_object(ua.NodeId("Machine", idx), ua.QualifiedName("Machine", idx))
    enum_type = await new_enum(server, idx, "MachineStateEnum", list(MACHINE_STATES))
    await enum_type.add_property(
        ua.NodeId("MachineStateEnum.EnumStrings", idx),
        ua.QualifiedName("EnumStrings", 0),
        ua.Variant([ua.LocalizedText(s) for s in MACHINE_STATES], ua.VariantType.LocalizedText),
    )
    folders: dict[str, Node] = {"": machine}
    nodes: dict[str, Node] = {}
    for var in variables:
        parent_path, _, leaf = var.path.rpartition("/")
        parent = await _folder(folders, parent_path, idx)
        node_id = ua.NodeId(var.numeric_id, idx) if var.numeric_id else ua.NodeId(var.path.replace("/", "."), idx)
        if var.data_type == "range":
            node = await parent.add_variable(
                node_id, ua.QualifiedName(leaf, idx), var.value, datatype=ua.NodeId(ua.ObjectIds.Range)
            )
        elif var.data_type == "enum":
            node = await parent.add_variable(
                node_id,
                ua.QualifiedName(leaf, idx),
                ua.Variant(var.value, ua.VariantType.Int32),
                datatype=enum_type.nodeid,
            )
        else:
            node = await parent.add_variable(node_id, ua.QualifiedName(leaf, idx), ua.Variant(var.value, var.vtype))
            if var.array:
                await node.write_value_rank(1)
                await node.write_array_dimensions([len(var.value)])
        if var.writable:
            await node.set_writable()
        if var.unit:
            await node.add_property(
                ua.NodeId(f"{var.path.replace('/', '.')}.EngineeringUnits", idx),
                ua.QualifiedName("EngineeringUnits", 0),
                ua.Variant(_eu_information(var.unit), ua.VariantType.ExtensionObject),
                datatype=ua.NodeId(ua.ObjectIds.EUInformation),
            )
        nodes[var.path] = node
    return nodes


def _eu_information(unit: str) -> ua.EUInformation:
    """An EUInformation as OPC UA servers publish it (the UNECE namespace; the unit's code unknown)."""
    return ua.EUInformation(
        NamespaceUri="http://www.opcfoundation.org/UA/units/un/cefact",
        UnitId=-1,
        DisplayName=ua.LocalizedText(unit),
        Description=ua.LocalizedText(unit),
    )


async def _folder(folders: dict[str, Node], path: str, idx: int) -> Node:
    if path in folders:
        return folders[path]
    parent_path, _, leaf = path.rpartition("/")
    parent = await _folder(folders, parent_path, idx)
    node = await parent.add_object(ua.NodeId(path.replace("/", ".") or "Machine", idx), ua.QualifiedName(leaf, idx))
    folders[path] = node
    return node


async def _build_bench(server: Server, count: int, shift: int) -> dict[str, Node]:
    """N Double variables under Objects/Bench, added in a few batched AddNodes calls (fast)."""
    idx = await server.register_namespace(BENCH_NAMESPACE)
    folder = await server.nodes.objects.add_folder(ua.NodeId("Bench", idx), ua.QualifiedName("Bench", idx))
    nodes: dict[str, Node] = {}
    items = []
    groups: dict[int, Node] = {}
    for i in range(count):
        name = f"Tag{i:05d}"
        group = i // BENCH_GROUP  # asyncua checks sibling references one by one: keep folders small
        if group not in groups:
            groups[group] = await folder.add_folder(
                ua.NodeId(f"Bench.Group{group:02d}", idx), ua.QualifiedName(f"Group{group:02d}", idx)
            )
        item = ua.AddNodesItem()
        item.RequestedNewNodeId = ua.NodeId(f"Bench.{name}", idx)
        item.BrowseName = ua.QualifiedName(name, idx)
        item.NodeClass = ua.NodeClass.Variable
        item.ParentNodeId = groups[group].nodeid
        item.ReferenceTypeId = ua.NodeId(ua.ObjectIds.HasComponent)
        item.TypeDefinition = ua.NodeId(ua.ObjectIds.BaseDataVariableType)
        attrs = ua.VariableAttributes()
        attrs.DisplayName = ua.LocalizedText(name)
        attrs.DataType = ua.NodeId(ua.ObjectIds.Double)
        attrs.Value = ua.Variant(0.0, ua.VariantType.Double)
        attrs.ValueRank = ua.ValueRank.Scalar
        attrs.AccessLevel = ua.AccessLevel.CurrentRead.mask
        attrs.UserAccessLevel = ua.AccessLevel.CurrentRead.mask
        item.NodeAttributes = attrs
        items.append(item)
        nodes[f"Bench/{name}"] = server.get_node(item.RequestedNewNodeId)
    for start in range(0, len(items), 1000):
        for result in await server.iserver.isession.add_nodes(items[start : start + 1000]):
            result.StatusCode.check()
    return nodes


# --- running --------------------------------------------------------------------------------


def _deadband_against_last_reported(
    service: MonitoredItemService, values: MonitoredItemValues, flt: ua.DataChangeFilter
) -> bool:
    """An absolute deadband compared with the last value REPORTED, as OPC UA Part 4 says.

    asyncua 2.1's server compares each sample with the previous sample, so a value that moves
    by less than the deadband at every sample is never reported however far it drifts (a
    slow ramp freezes). Gateway tests need a server that behaves like a real one.
    """
    current = values.get_current_datavalue()
    reported: ua.DataValue | None = getattr(values, "last_reported", None)
    passed = True
    if flt.DeadbandType == ua.DeadbandType.Absolute and reported is not None and current is not None:
        now = current.Value.Value if current.Value is not None else None
        then = reported.Value.Value if reported.Value is not None else None
        if isinstance(now, int | float) and isinstance(then, int | float):
            passed = abs(now - then) > flt.DeadbandValue
    if passed:
        values.last_reported = current
    return passed


def _use_spec_deadband() -> None:
    # setattr: asyncua annotates the method with a signature no plain function matches, so mypy
    # refuses a direct assignment; replacing it is the point here.
    setattr(MonitoredItemService, "_is_deadband_exceeded", _deadband_against_last_reported)  # noqa: B010 - see above


def _data_value(value: Any, vtype: ua.VariantType, now: datetime, is_array: bool = False) -> ua.DataValue:
    if value is BAD:
        return ua.DataValue(
            StatusCode=ua.StatusCode(ua.StatusCodes.BadSensorFailure), SourceTimestamp=now, ServerTimestamp=now
        )
    return ua.DataValue(ua.Variant(value, vtype, is_array=is_array), SourceTimestamp=now, ServerTimestamp=now)


async def _tick(machine: _Machine, dt: float, bench: int, tick: int) -> None:
    now = datetime.now(UTC)
    read = machine.server.iserver.aspace.read_attribute_value
    for path in machine.writable:  # what clients wrote: the machine acts on it in this step
        current = read(machine.nodes[path].nodeid, ua.AttributeIds.Value)
        machine.model.written(path, current.Value.Value if current.Value is not None else None)
    values = machine.model.step(dt)
    types = machine.types
    write = machine.server.write_attribute_value
    for path, value in values.items():
        vtype, is_array = types[path]
        await write(machine.nodes[path].nodeid, _data_value(value, vtype, now, is_array))
    for i in range(bench):
        node = machine.nodes[f"Bench/Tag{i:05d}"]
        await write(
            node.nodeid,
            ua.DataValue(
                ua.Variant(float(tick) + i / 100000.0, ua.VariantType.Double), SourceTimestamp=now, ServerTimestamp=now
            ),
        )


def _status(machines: list[_Machine]) -> dict[str, Any]:
    result = {}
    for m in machines:
        iserver = m.server.iserver
        subs = iserver.subscription_service.subscriptions
        result[m.model.name] = {
            "sessions": len(getattr(iserver, "_external_sessions", {})),
            "sessions_created": m.sessions_created[0],
            "subscriptions": len(subs),
            "monitored_items": sum(len(s.monitored_item_srv._monitored_items) for s in subs.values()),
        }
    return result


@contextlib.asynccontextmanager
async def opcua_simulator(settings: OpcUaSimulatorSettings) -> AsyncIterator[list[str]]:
    """Start every machine's server and its value loop; yields the endpoint URLs."""
    rng = random.Random(settings.seed)
    _use_spec_deadband()
    machines: list[_Machine] = []
    try:
        for index in range(settings.machines):
            machines.append(await _start_machine(settings, index, rng))
        tasks = [asyncio.create_task(_loop(machines, settings), name="simulator:opcua")]
        if settings.status_file is not None:
            tasks.append(asyncio.create_task(_status_loop(machines, settings.status_file), name="simulator:status"))
        try:
            yield [f"opc.tcp://{settings.host}:{settings.port + i}/" for i in range(len(machines))]
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    finally:
        for machine in machines:
            with contextlib.suppress(Exception):
                await machine.server.stop()


async def _loop(machines: list[_Machine], settings: OpcUaSimulatorSettings) -> None:
    """One update of every machine per interval, on a fixed schedule (no drift when a tick is late)."""
    tick = 0
    last = time.monotonic()
    next_at = last
    while True:
        started = time.monotonic()
        if not settings.static:
            dt = started - last if tick else settings.interval
            for index, machine in enumerate(machines):
                try:
                    await _tick(machine, dt, settings.bench_items if index == 0 else 0, tick)
                except Exception:  # a bug in a model must not freeze every value silently
                    log.exception("updating %s failed", machine.model.name)
        last = started
        tick += 1
        next_at += settings.interval
        delay = next_at - time.monotonic()
        if delay < -settings.interval:  # far behind (an overloaded machine): start the schedule again
            next_at = time.monotonic()
            delay = 0.0
        await asyncio.sleep(max(0.0, delay))


async def _status_loop(machines: list[_Machine], path: Path) -> None:
    while True:
        _write_status(path, _status(machines))
        await asyncio.sleep(0.2)


def _write_status(path: Path, status: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(status))
    os.replace(tmp, path)


async def run_opcua_simulator(settings: OpcUaSimulatorSettings, stop: asyncio.Event | None = None) -> None:
    """Run until ``stop`` is set, or SIGINT/SIGTERM (the body of ``gateway simulate opcua``)."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    handlers: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
            handlers.append(sig)
    try:
        async with opcua_simulator(settings) as endpoints:
            print("\n".join(f"ready {e}" for e in endpoints), flush=True)
            await stop.wait()
    finally:
        for sig in handlers:
            loop.remove_signal_handler(sig)


def parse_users(values: list[str]) -> dict[str, str]:
    users = {}
    for value in values:
        name, sep, password = value.partition(":")
        if not sep or not name:
            raise ValueError(f"--user {value!r}: write name:password")
        users[name] = password
    return users
