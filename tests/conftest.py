"""Shared fixtures: every module in tests/fixtures/ is loaded as a pytest plugin.

Each real server (Mosquitto, influxd, VictoriaMetrics, asyncua/node-opcua servers, Chromium)
has its own fixture module there; each starts its server on a free port in a temp folder
and stops it when the test ends.
"""

from __future__ import annotations

import pkgutil
from pathlib import Path

pytest_plugins = [
    f"tests.fixtures.{module.name}"
    for module in pkgutil.iter_modules([str(Path(__file__).parent / "fixtures")])
]
