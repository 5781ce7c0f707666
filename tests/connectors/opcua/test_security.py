"""Security: Basic256Sha256 SignAndEncrypt with a user name and password against the simulator.

Certificate trust is where OPC UA gateways hurt engineers: a new client certificate at every
restart (to be trusted again on every server), servers that cannot be trusted explicitly,
"accept all certificates" as the default. Here: generated once and kept; an
untrusted server certificate is refused with the exact file to copy; a wrong password is one
clear error and a retry, never a crash, and never a leaked session.
"""

from __future__ import annotations

import functools
import logging
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from gateway.config import load_config
from gateway.runtime import Gateway
from tests.fixtures.opcua import gateway_config, stored
from tests.helpers import async_wait_until


def _connector(name: str, endpoint: str, password: str) -> dict[str, Any]:
    return {
        "name": name,
        "type": "opcua",
        "endpoint": endpoint,
        "security": {"policy": "Basic256Sha256", "mode": "SignAndEncrypt"},
        "auth": {"username": "operator", "password": password},
        "measurement": "machine",
        "tags": {"machine": "cnc-01"},
        "subscription": {"publishing_interval": "200ms"},
        "reconnect": {"max_delay": "1s"},
        "nodes": [{"node": "nsu=urn:lab:cnc;s=Spindle.Speed", "field": f"spindle_rpm_{name}"}],
    }


def _errors(caplog: pytest.LogCaptureFixture, connector: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.ERROR and r.name == f"gateway.connector.{connector}"
    ]


async def test_sign_and_encrypt_with_password_untrusted_server_and_wrong_password(
    opcua_simulator: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sim = opcua_simulator(machines=1, security="encrypt", user=["operator:s3cret"], bad_rate=0, interval=0.5)
    config = gateway_config(
        tmp_path, [_connector("good", sim.endpoint(), "s3cret"), _connector("wrong", sim.endpoint(), "guess")]
    )
    pki = tmp_path / "data" / "opcua" / "pki"
    with caplog.at_level(logging.INFO):
        async with Gateway(load_config(config)) as gateway:
            good, wrong = gateway.sources

            # 1. The server's certificate is not trusted yet: refused, saved, and the message says what to do.
            await async_wait_until(
                lambda: good.status.counters.get("connect_failures", 0) >= 3, timeout=60, message="retries"
            )
            assert good.status.state.value == "backoff"
            message = good.status.last_error or ""
            assert "is not trusted" in message, message
            command = re.search(r"cp (\S+) (\S+)/$", message)
            assert command is not None, message
            rejected, trusted = Path(command.group(1)), Path(command.group(2))
            assert rejected.parent == pki / "rejected" and trusted == pki / "trusted"
            assert rejected.exists()
            assert len([m for m in _errors(caplog, "good") if "is not trusted" in m]) == 1  # once, not per attempt

            # The operator trusts it, as told: the next retry connects, encrypted, with the password.
            shutil.copy(rejected, trusted)
            await async_wait_until(
                lambda: stored(tmp_path, fields=["spindle_rpm_good"]), timeout=60, message="data after trusting"
            )
            assert good.status.state.value == "running"

            # 2. The wrong password: one clear error, retried, the connector alive, no session left behind.
            await async_wait_until(
                lambda: wrong.status.state.value == "unauthorized", timeout=60, message="wrong password noticed"
            )
            failures = wrong.status.counters["connect_failures"]
            await async_wait_until(
                lambda: wrong.status.counters["connect_failures"] >= failures + 2, timeout=60, message="retried"
            )
            assert "refused user 'operator'" in (wrong.status.last_error or "")
            assert "check auth.username and auth.password" in (wrong.status.last_error or "")
            refused = [m for m in _errors(caplog, "wrong") if "refused user" in m]
            assert len(refused) == 1, refused
            assert not stored(tmp_path, fields=["spindle_rpm_wrong"])
            # Only the good connector's session: failed activations are closed. (A retry's session
            # exists between CreateSession and the refused ActivateSession, so one snapshot can
            # catch two; a leaked session would never go away.)
            await async_wait_until(
                lambda: sim.status()["sessions"] == 1, timeout=10, message="only the good connector's session"
            )

    # 3. The client certificate was generated once and is kept: a restart uses the same one.
    own = pki / "own" / "cert.der"
    first = own.read_bytes()
    trusted_count = len(list((pki / "trusted").iterdir()))
    async with Gateway(load_config(config)) as gateway:
        good = gateway.sources[0]
        before = len(stored(tmp_path, fields=["spindle_rpm_good"]))
        await async_wait_until(
            lambda: len(stored(tmp_path, fields=["spindle_rpm_good"])) > before + 2, timeout=60, message="data again"
        )
        assert good.status.counters.get("connect_failures", 0) == 0  # trusted already: connects at once
    assert own.read_bytes() == first
    assert len(list((pki / "trusted").iterdir())) == trusted_count


async def test_every_policy_and_mode_asyncua_supports(opcua_simulator: Any, tmp_path: Path) -> None:
    sim = opcua_simulator(machines=1, security="all", bad_rate=0, interval=0.5)
    trusted = tmp_path / "data" / "opcua" / "pki" / "trusted"
    trusted.mkdir(parents=True)
    shutil.copy(sim.folder / "pki" / "cnc-01" / "cert.der", trusted / "simulator.der")
    choices = [
        ("Basic256Sha256", "Sign"),
        ("Aes128_Sha256_RsaOaep", "SignAndEncrypt"),
        ("Aes256_Sha256_RsaPss", "Sign"),
        ("Aes256_Sha256_RsaPss", "SignAndEncrypt"),
    ]
    connectors = []
    for index, (policy, mode) in enumerate(choices):
        connector = _connector(f"c{index}", sim.endpoint(), "")
        del connector["auth"]  # anonymous: the simulator has no users here
        connector["security"] = {"policy": policy, "mode": mode}
        connectors.append(connector)
    async with Gateway(load_config(gateway_config(tmp_path, connectors))) as gateway:
        for index in range(len(choices)):
            await async_wait_until(
                functools.partial(stored, tmp_path, fields=[f"spindle_rpm_c{index}"]),
                timeout=60,
                message=f"data over {choices[index]}",
            )
        assert all(s.status.counters.get("connect_failures", 0) == 0 for s in gateway.sources)


async def test_an_x509_user(opcua_simulator: Any, tmp_path: Path) -> None:
    from connectors.opcua.pki import Pki

    allowed = Pki(tmp_path / "users" / "allowed").own_certificate("urn:lab:users:maintenance")
    other = Pki(tmp_path / "users" / "other").own_certificate("urn:lab:users:someone")
    sim = opcua_simulator(
        machines=1, security="encrypt", user=["operator:x"], user_certificate=[allowed.certificate], interval=0.5
    )
    trusted = tmp_path / "data" / "opcua" / "pki" / "trusted"
    trusted.mkdir(parents=True)
    shutil.copy(sim.folder / "pki" / "cnc-01" / "cert.der", trusted / "simulator.der")
    connectors = []
    for name, user in (("allowed", allowed), ("other", other)):
        connector = _connector(name, sim.endpoint(), "")
        connector["auth"] = {"certificate": str(user.certificate), "private_key": str(user.private_key)}
        connectors.append(connector)
    async with Gateway(load_config(gateway_config(tmp_path, connectors))) as gateway:
        allowed_source, other_source = gateway.sources
        await async_wait_until(
            lambda: stored(tmp_path, fields=["spindle_rpm_allowed"]), timeout=60, message="data as the X.509 user"
        )
        await async_wait_until(
            lambda: other_source.status.state.value == "unauthorized", timeout=60, message="an unknown X.509 user"
        )
        assert f"refused the X.509 user {other.certificate}" in (other_source.status.last_error or "")
        assert allowed_source.status.state.value == "running"
