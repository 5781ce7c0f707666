"""A gateway in the test's event loop with its web API, for writes to real servers.

:func:`running` starts the gateway on a config of the test's connectors (the embedded historian
as its sink), waits until every connector runs, and gives an HTTP client on its API; the audit
trail is read from the file, as an auditor reads it.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from gateway.component import State
from gateway.config import load_config_source
from gateway.ports import free_ports
from gateway.runtime import Gateway
from tests.helpers import async_wait_until

OPERATOR_TOKEN = "operator-token-for-writes-0123"
VIEWER_TOKEN = "viewer-token-for-writes-0123"
OPERATOR = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
VIEWER = {"Authorization": f"Bearer {VIEWER_TOKEN}"}


@dataclass
class Running:
    gateway: Gateway
    client: httpx.AsyncClient
    folder: Path

    async def write(
        self, connector: str, field: str, value: Any, headers: dict[str, str] | None = None
    ) -> dict[str, Any]:
        response = await self.client.post(
            "/api/write",
            json={"connector": connector, "field": field, "value": value},
            headers=OPERATOR if headers is None else headers,
        )
        body: dict[str, Any] = response.json()
        body["status"] = response.status_code
        return body

    def audit(self) -> list[dict[str, Any]]:
        """Every line of the audit file, oldest first (pending lines included)."""
        path = self.folder / "data" / "audit" / "audit.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def outcome(self, record_id: str) -> dict[str, Any]:
        """The audit file's outcome line of one attempt (its last line with that id)."""
        return [e for e in self.audit() if e["id"] == record_id][-1]


def config_file(folder: Path, connectors: list[dict[str, Any]], http_port: int) -> Path:
    data = {
        "gateway": {
            "name": "write-test",
            "data_dir": str(folder / "data"),
            "shutdown_timeout": "15s",
            "http": {
                "listen": f"127.0.0.1:{http_port}",
                "auth": {"viewer": {"token": VIEWER_TOKEN}, "operator": {"token": OPERATOR_TOKEN}},
            },
        },
        "sinks": [
            {"name": "local", "type": "historian", "path": str(folder / "history.db"), "flush_interval": "200ms"}
        ],
        "connectors": connectors,
    }
    path = folder / "gateway.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@contextlib.asynccontextmanager
async def running(folder: Path, connectors: list[dict[str, Any]], *, ready: bool = True) -> AsyncIterator[Running]:
    """The gateway on these connectors, its API on a free port; ``ready``: wait until each connector runs."""
    port = free_ports(1)
    path = config_file(folder, connectors, port)
    async with Gateway(load_config_source(path)) as gateway:
        if ready:
            await async_wait_until(
                lambda: all(s.status.state is State.RUNNING for s in gateway.sources),
                timeout=60,
                message="every connector running",
            )
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            yield Running(gateway, client, folder)
