"""An outage as a plant engineer watches it: the device goes off, and for as long as it stays
off its connector never claims to be running."""

from __future__ import annotations

import time
from typing import Any

from gateway.component import Status
from tests.helpers import async_wait_until

#: what a polling connector may say while its device is off
NOT_RUNNING = ("reconnecting", "backoff", "connecting")


async def off_for(status: Status, device_view: dict[str, Any], since: float, seconds: float) -> None:
    """Wait until ``device_view`` noticed the loss, then until ``seconds`` after ``since``; assert
    ``status`` said the connector was not running the moment the device did, and all along."""
    await async_wait_until(lambda: device_view["state"] != "running", timeout=30, message="loss noticed")
    assert status.state.value in NOT_RUNNING, status.state

    def running_or_over() -> bool:
        return status.state.value == "running" or time.monotonic() - since >= seconds

    await async_wait_until(running_or_over, timeout=seconds + 30, message=f"{seconds:g} s with the device off")
    assert status.state.value in NOT_RUNNING, status.state
