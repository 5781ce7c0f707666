"""Shared fixtures: every module in tests/fixtures/ is loaded as a pytest plugin.

Each real server (Mosquitto, influxd, VictoriaMetrics, asyncua/node-opcua servers, Chromium)
has its own fixture module there; each starts its server on a free port in a temp folder
and stops it when the test ends.
"""

from __future__ import annotations

import os
import pkgutil
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from tests.helpers import HYPOTHESIS_PROFILE

pytest_plugins = [
    f"tests.fixtures.{module.name}" for module in pkgutil.iter_modules([str(Path(__file__).parent / "fixtures")])
]


# Hypothesis profiles, chosen by the environment variable HYPOTHESIS_PROFILE (tests/helpers.py):
# "quick" (the default, `make test-quick`) keeps the loop fast; "ci" (`make test`, what CI runs)
# tries many more examples: a counting bug planted in the buffer was found by its property test
# in 1 run of 6 at 60 examples and in every run at 1,500. A test that sets its own max_examples
# gives both counts with tests.helpers.examples(quick, ci). No deadline in either: on a loaded
# 2-core machine an example's time says nothing about the code.
settings.register_profile("quick", deadline=None)
settings.register_profile(
    "ci",
    max_examples=1000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,  # a failure prints the @reproduce_failure line to replay it
)
settings.load_profile(HYPOTHESIS_PROFILE)


def _own_default_http_port() -> None:
    """Under ``pytest -n`` (how `make test` runs), each worker's gateways listen by default on a
    port of their own, below the ephemeral range so that no test server is handed it: two
    workers' gateways on the product's 127.0.0.1:8080 would refuse each other's web page."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.startswith("gw"):
        return
    from gateway import config
    from gateway.http.config import HttpSettings
    from gateway.settings import GatewaySettings

    HttpSettings.model_fields["listen"].default = f"127.0.0.1:{18080 + int(worker[2:])}"
    HttpSettings.model_rebuild(force=True)
    GatewaySettings.model_fields["http"].default = HttpSettings()
    GatewaySettings.model_rebuild(force=True)
    config.GatewayConfig.model_fields["gateway"].default = GatewaySettings()
    config.GatewayConfig.model_rebuild(force=True)


_own_default_http_port()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    """On CI a test never skips for want of a server: `make test` installs them all."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") and report.skipped and "is not installed" in str(report.longrepr):
        report.outcome = "failed"
