"""Small helpers for tests: free ports, waiting on conditions with deadlines, processes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar, overload

T = TypeVar("T")

#: The hypothesis profile in force (registered in tests/conftest.py): "ci" for `make test`, else "quick".
HYPOTHESIS_PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "quick")
if HYPOTHESIS_PROFILE not in ("quick", "ci"):
    raise RuntimeError(f"HYPOTHESIS_PROFILE={HYPOTHESIS_PROFILE!r}: use quick or ci")


def examples(quick: int, ci: int) -> int:
    """A property test's number of examples in the profile in force (quick while developing, ci in CI)."""
    return ci if HYPOTHESIS_PROFILE == "ci" else quick


ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS", Path(__file__).parent.parent / "test-artifacts"))


def free_port() -> int:
    """A TCP port nobody listens on right now (bind to 0 and let the kernel choose)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def wait_until(predicate: Callable[[], T], timeout: float = 30.0, interval: float = 0.05, message: str = "") -> T:
    """Poll ``predicate`` until it returns something truthy; fail with ``message`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for: {message or predicate}")
        time.sleep(interval)


@overload
async def async_wait_until(
    predicate: Callable[[], Awaitable[T]], timeout: float = ..., interval: float = ..., message: str = ...
) -> T: ...


@overload
async def async_wait_until(
    predicate: Callable[[], T], timeout: float = ..., interval: float = ..., message: str = ...
) -> T: ...


async def async_wait_until(
    predicate: Callable[[], object], timeout: float = 30.0, interval: float = 0.05, message: str = ""
) -> object:
    """The asyncio twin of :func:`wait_until` (``predicate`` may be sync or async)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value) or isinstance(value, Awaitable):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for: {message or predicate}")
        await asyncio.sleep(interval)


def stop_process(process: subprocess.Popen[bytes] | subprocess.Popen[str], timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout``; always reaps the process."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def contract_energy_connector(broker_url: str, **overrides: object) -> dict[str, object]:
    """The energy-meter MQTT connector of the reference config (tests/test_config.py), on ``broker_url``."""
    connector: dict[str, object] = {
        "name": "energy",
        "type": "mqtt",
        "broker": broker_url,
        "client_id": "gw-lab-cell-1",
        "qos": 1,
        "topics": [
            {
                "filter": "factory/+/energy/+",
                "tags_from_topic": {"line": 1, "meter": 3},
                "format": "json",
                "measurement": "energy",
                "time": {"path": "ts", "unit": "ms"},
                "fields": {"power_w": "p", "energy_kwh": "e"},
            }
        ],
    }
    connector.update(overrides)
    return connector
