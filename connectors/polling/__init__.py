"""The polling core shared by connectors that read devices on a schedule (Modbus, S7, …).

See :mod:`connectors.polling.poller` for how a connector plugs in.
"""

from __future__ import annotations

from connectors.polling.health import DEVICE_COUNTERS, DeviceHealth, DeviceState
from connectors.polling.poller import Device, DeviceDown, Link, LinkDown, Poller, Reconnect, ScanResult
from connectors.polling.schedule import Schedule

__all__ = [
    "DEVICE_COUNTERS",
    "Device",
    "DeviceDown",
    "DeviceHealth",
    "DeviceState",
    "Link",
    "LinkDown",
    "Poller",
    "Reconnect",
    "ScanResult",
    "Schedule",
]
