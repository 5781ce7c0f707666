"""Access control: credentials are required beyond loopback; viewer and admin see different things."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from gateway.component import Status
from gateway.errors import ConfigError
from gateway.http.app import AppContext, create_app
from gateway.http.auth import Role, authenticate
from gateway.http.config import AuthSettings, HttpSettings, is_loopback

VIEWER_TOKEN = "viewer-token-0123456789"
ADMIN_TOKEN = "admin-token-0123456789ab"
ADMIN_PASSWORD = "correct horse battery"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture
def settings() -> HttpSettings:
    return HttpSettings.model_validate(
        {
            "listen": "0.0.0.0:8080",
            "auth": {
                "viewer": {"token": VIEWER_TOKEN},
                "admin": {"token": ADMIN_TOKEN, "username": "capo", "password": ADMIN_PASSWORD},
            },
        }
    )


@pytest.fixture
async def client(settings: HttpSettings) -> AsyncIterator[httpx.AsyncClient]:
    statuses = [Status("energy", "connector", "mqtt")]
    from connectors.mqtt.config import MqttConfig  # the real model, with a password to mask

    config = MqttConfig.model_validate(
        {
            "name": "energy",
            "type": "mqtt",
            "broker": "mqtt://localhost:1883",
            "username": "gw",
            "password": "s3cret-broker-password",
            "topics": [{"filter": "a/#", "format": "value", "measurement": "m", "field": "v"}],
        }
    )
    ctx = AppContext(
        name="gw", settings=settings, statuses=lambda: statuses, configs=lambda: {"connector:energy": config}
    )
    transport = httpx.ASGITransport(app=create_app(ctx))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        yield client


def test_listening_beyond_loopback_without_credentials_is_a_config_error(tmp_path: Path) -> None:
    from gateway.config import load_config

    path = tmp_path / "gw.yaml"
    path.write_text("gateway:\n  http:\n    listen: 0.0.0.0:8080\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert f"{path}:2: gateway.http: listen 0.0.0.0:8080" in message and "http.auth needs a credential" in message


def test_loopback_needs_no_credentials_and_short_secrets_are_refused() -> None:
    assert HttpSettings(listen="127.0.0.1:8080").auth.configured is False
    assert HttpSettings(listen="[::1]:8080").host == "::1"
    assert is_loopback("localhost") and is_loopback("127.0.0.5") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.10") and not is_loopback("gateway.local")
    with pytest.raises(ValidationError, match="too short"):
        AuthSettings.model_validate({"viewer": {"token": "changeme"}})
    with pytest.raises(ValidationError, match="both username and password"):
        AuthSettings.model_validate({"viewer": {"username": "officina"}})


def test_authenticate_roles() -> None:
    auth = AuthSettings.model_validate(
        {"viewer": {"username": "officina", "password": "viewer-password-1"}, "admin": {"token": ADMIN_TOKEN}}
    )
    assert authenticate(auth, None) is Role.NONE
    assert authenticate(auth, "Bearer nope") is Role.NONE
    assert authenticate(auth, basic("officina", "viewer-password-1")) is Role.VIEWER
    assert authenticate(auth, basic("officina", "wrong-password-1")) is Role.NONE
    assert authenticate(auth, f"Bearer {ADMIN_TOKEN}") is Role.ADMIN
    assert authenticate(auth, basic("anyone", ADMIN_TOKEN)) is Role.ADMIN  # token as the browser password
    assert authenticate(auth, "Basic !!!not-base64") is Role.NONE
    assert authenticate(AuthSettings(), None) is Role.ADMIN  # nothing configured: loopback only


@pytest.mark.parametrize("path", ["/", "/api/status", "/api/overview", "/api/series", "/metrics", "/api/openapi.json"])
async def test_missing_or_wrong_credentials_are_refused(client: httpx.AsyncClient, path: str) -> None:
    missing = await client.get(path)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"].startswith("Basic")
    wrong = await client.get(path, headers={"Authorization": "Bearer not-the-token-at-all"})
    assert wrong.status_code == 401
    wrong_password = await client.get(path, headers={"Authorization": basic("capo", "not the password")})
    assert wrong_password.status_code == 401
    ok = await client.get(path, headers={"Authorization": f"Bearer {VIEWER_TOKEN}"})
    assert ok.status_code == 200


async def test_health_endpoints_need_no_credentials(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    assert (await client.get("/readyz")).status_code == 503  # the connector is still starting


async def test_viewer_cannot_see_connector_details_admin_can_with_secrets_masked(client: httpx.AsyncClient) -> None:
    viewer = {"Authorization": f"Bearer {VIEWER_TOKEN}"}
    assert (await client.get("/api/whoami", headers=viewer)).json() == {
        "role": "viewer",
        "auth": True,
        "plain_http": True,
    }
    assert (await client.get("/api/components/energy", headers=viewer)).status_code == 403

    admin = {"Authorization": basic("capo", ADMIN_PASSWORD)}
    assert (await client.get("/api/whoami", headers=admin)).json()["role"] == "admin"
    response = await client.get("/api/components/energy", headers=admin)
    assert response.status_code == 200
    [detail] = response.json()
    assert detail["config"]["broker"] == "mqtt://localhost:1883"
    assert detail["config"]["username"] == "gw"
    assert detail["config"]["password"] == "***"
    assert "s3cret-broker-password" not in response.text
    assert (await client.get("/api/components/nope", headers=admin)).status_code == 404
