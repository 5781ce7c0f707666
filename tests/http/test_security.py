"""The web page beyond loopback: HTTPS with gateway.http.tls, the plain-HTTP warning and the
admin's banner, the limit on failed logins (429 + Retry-After), and the security headers —
with a plain HTTP client (httpx, verifying against the test CA) and in real Chromium.
"""

from __future__ import annotations

import base64
import ipaddress
import logging
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.component import Status
from gateway.errors import GatewayError
from gateway.http.app import AppContext, create_app
from gateway.http.config import HttpSettings
from gateway.http.security import (
    CONTENT_SECURITY_POLICY,
    MAX_FAILURES,
    LoginLimiter,
    client_key,
)
from gateway.http.server import HttpServer
from tests.http.tls import Pki, make_pki

VIEWER_PASSWORD = "viewer-password-4f2a9c"
ADMIN_TOKEN = "admin-token-8b1d7e3c0a"
KEY_PASSWORD = "server-key-password-6e0d"


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
VIEWER = basic("officina", VIEWER_PASSWORD)
WRONG = basic("officina", "not-the-password")


def settings(listen: str = "0.0.0.0:0", tls: Pki | None = None, **extra: Any) -> HttpSettings:
    data: dict[str, Any] = {
        "listen": listen,
        "auth": {"viewer": {"username": "officina", "password": VIEWER_PASSWORD}, "admin": {"token": ADMIN_TOKEN}},
        **extra,
    }
    if tls is not None:
        data["tls"] = {"cert": str(tls.cert), "key": str(tls.key), "key_password": KEY_PASSWORD}
    return HttpSettings.model_validate(data)


def context(http: HttpSettings) -> AppContext:
    statuses = [Status("energy", "connector", "mqtt")]
    return AppContext(name="gw", settings=http, statuses=lambda: statuses)


def asgi_client(http: HttpSettings, address: str = "10.0.0.7") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_app(context(http)), client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://gateway")


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki", key_password=KEY_PASSWORD)


@pytest.fixture
def ca_context(pki: Pki) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(pki.ca))


# --- security headers --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        ("/", VIEWER, 200),
        ("/static/app.css", VIEWER, 200),
        ("/static/js/main.js", VIEWER, 200),
        ("/api/status", ADMIN, 200),
        ("/api/components/nope", ADMIN, 404),
        ("/api/components/energy", VIEWER, 403),
        ("/api/status", {}, 401),
        ("/api/status", WRONG, 401),
        ("/healthz", {}, 200),
        ("/metrics", VIEWER, 200),
    ],
)
async def test_every_answer_carries_the_security_headers(path: str, headers: dict[str, str], status: int) -> None:
    async with asgi_client(settings()) as client:
        response = await client.get(path, headers=headers)
    assert response.status_code == status
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "frame-ancestors 'none'" in CONTENT_SECURITY_POLICY and "default-src 'self'" in CONTENT_SECURITY_POLICY
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert "strict-transport-security" not in response.headers  # plain HTTP: browsers would ignore it anyway
    if path.startswith("/api/"):
        assert response.headers["cache-control"] == "no-store"


# --- failed logins -----------------------------------------------------------------------------


async def test_failed_logins_are_limited_per_address_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    http = settings()
    app = create_app(context(http))
    attacker = httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=("10.0.0.66", 1)), base_url="http://g")
    colleague = httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=("10.0.0.8", 1)), base_url="http://g")
    async with attacker, colleague:
        # Successful logins are not failures: many of them lock nothing.
        for _ in range(3 * MAX_FAILURES):
            assert (await attacker.get("/api/whoami", headers=VIEWER)).status_code == 200
        # Requests without credentials are no guesses either.
        for _ in range(2 * MAX_FAILURES):
            assert (await attacker.get("/api/status")).status_code == 401
        with caplog.at_level(logging.WARNING, logger="gateway.http"):
            for attempt in range(MAX_FAILURES):
                wrong = basic("officina", f"guess-{attempt}-Guessed-pw")
                assert (await attacker.get("/api/status", headers=wrong)).status_code == 401
            locked = await attacker.get("/api/status", headers=WRONG)
            assert locked.status_code == 429
            assert 1 <= int(locked.headers["retry-after"]) <= 60
            assert "www-authenticate" not in locked.headers  # no login prompt: the browser shows the 429
            assert locked.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
            assert "too many failed logins" in locked.json()["detail"]
            # Locked means not checked: the right password gets no different answer (no oracle).
            assert (await attacker.get("/api/status", headers=VIEWER)).status_code == 429
            assert (await attacker.get("/api/status", headers=ADMIN)).status_code == 429
            for _ in range(5):
                assert (await attacker.get("/api/status", headers=WRONG)).status_code == 429
            # Another address is not affected; probes stay open.
            assert (await colleague.get("/api/status", headers=VIEWER)).status_code == 200
            assert (await attacker.get("/healthz")).status_code == 200
        warnings = [r for r in caplog.records if "failed logins" in r.getMessage()]
        assert len(warnings) == 1, [r.getMessage() for r in warnings]
        assert "10.0.0.66" in warnings[0].getMessage()
        assert "Guessed-pw" not in caplog.text and VIEWER_PASSWORD not in caplog.text


def test_the_limiter_window_lockout_and_memory_bound() -> None:
    now = [1000.0]
    limiter = LoginLimiter(max_failures=3, window=60.0, lockout=30.0, clock=lambda: now[0])
    assert not limiter.failed("a") and not limiter.failed("a")
    now[0] += 61  # the first two fell out of the window
    assert not limiter.failed("a") and not limiter.failed("a")
    assert limiter.retry_after("a") == 0
    assert limiter.failed("a")  # third within the window: the episode starts
    assert limiter.retry_after("a") == 30.0 and limiter.retry_after("b") == 0
    now[0] += 29.5
    assert limiter.retry_after("a") == pytest.approx(0.5)
    now[0] += 1
    assert limiter.retry_after("a") == 0  # over: tries are checked again, counted afresh
    assert not limiter.failed("a")


def test_the_client_is_the_peer_unless_a_trusted_proxy_forwarded_it() -> None:
    def scope(peer: str, forwarded: str | None = None) -> dict[str, Any]:
        headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded else []
        return {"client": (peer, 5000), "headers": headers}

    assert client_key(scope("192.0.2.10", "198.51.100.1")) == "192.0.2.10"  # not trusted: header ignored
    trusted = [ipaddress.ip_network("192.0.2.0/24")]
    assert client_key(scope("192.0.2.10", "198.51.100.1"), trusted) == "198.51.100.1"
    # The client may write its own header: only the right-most untrusted hop counts.
    assert client_key(scope("192.0.2.10", "203.0.113.9, 198.51.100.1"), trusted) == "198.51.100.1"
    assert client_key(scope("192.0.2.10", "198.51.100.1, 192.0.2.11"), trusted) == "198.51.100.1"
    assert client_key(scope("192.0.2.10", "junk, 198.51.100.1"), trusted) == "198.51.100.1"
    assert client_key(scope("2001:db8:0:1:2:3:4:5")) == "2001:db8:0:1::/64"  # one IPv6 host holds a /64
    assert client_key(scope("::ffff:192.0.2.10")) == "192.0.2.10"


# --- plain HTTP beyond loopback: the warning and the admin's banner --------------------------------


async def test_plain_http_beyond_loopback_warns_once_and_tells_the_page(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="gateway.http"):
        async with (
            HttpServer(context(settings("0.0.0.0:0"))) as server,
            httpx.AsyncClient(base_url=server.url, timeout=10) as client,
        ):
            who = (await client.get("/api/whoami", headers=ADMIN)).json()
            assert who == {"role": "admin", "auth": True, "plain_http": True}
    warnings = [r.getMessage() for r in caplog.records if "plain HTTP" in r.getMessage()]
    assert len(warnings) == 1
    assert "0.0.0.0:0" in warnings[0] and "gateway.http.tls" in warnings[0]
    # Loopback, or credentials under TLS: nothing to warn about.
    for quiet in (HttpSettings(listen="127.0.0.1:0"), settings("127.0.0.1:0")):
        assert not quiet.plain_credentials


# --- HTTPS ----------------------------------------------------------------------------------------


async def test_https_with_the_configured_certificate(
    pki: Pki, ca_context: ssl.SSLContext, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="gateway.http"):
        async with HttpServer(context(settings("0.0.0.0:0", tls=pki))) as server:
            assert server.url.startswith("https://127.0.0.1:")
            async with httpx.AsyncClient(base_url=server.url, verify=ca_context, timeout=10) as client:
                page = await client.get("/", headers=VIEWER)
                assert page.status_code == 200 and "<title>Gateway</title>" in page.text
                assert page.headers["strict-transport-security"] == "max-age=31536000"
                who = await client.get("/api/whoami", headers=ADMIN)
                assert who.json() == {"role": "admin", "auth": True, "plain_http": False}
                assert (await client.get("/api/status", headers=WRONG)).status_code == 401
            # Plain HTTP to the HTTPS port gets no page.
            async with httpx.AsyncClient(base_url=server.url.replace("https", "http"), timeout=5) as plain:
                with pytest.raises(httpx.HTTPError):
                    await plain.get("/healthz")
            # A client that does not trust the CA refuses the certificate.
            async with httpx.AsyncClient(base_url=server.url, timeout=5) as untrusting:
                with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                    await untrusting.get("/healthz")
    assert not [r for r in caplog.records if "plain HTTP" in r.getMessage()]
    assert KEY_PASSWORD not in caplog.text


async def test_an_unusable_certificate_or_key_password_is_a_clear_error(pki: Pki, tmp_path: Path) -> None:
    wrong = HttpSettings.model_validate(
        {
            "listen": "127.0.0.1:0",
            "tls": {"cert": str(pki.cert), "key": str(pki.key), "key_password": "Wrong-key-pw-3c9d"},
        }
    )
    with pytest.raises(GatewayError, match="wrong key_password") as info:
        async with HttpServer(context(wrong)):
            pass
    assert "Wrong-key-pw-3c9d" not in str(info.value)
    without = HttpSettings.model_validate(
        {"listen": "127.0.0.1:0", "tls": {"cert": str(pki.cert), "key": str(pki.key)}}
    )
    with pytest.raises(GatewayError, match="is the key encrypted"):  # never a prompt on the terminal
        async with HttpServer(context(without)):
            pass
    missing = HttpSettings.model_validate(
        {"listen": "127.0.0.1:0", "tls": {"cert": str(tmp_path / "none.crt"), "key": str(pki.key)}}
    )
    with pytest.raises(GatewayError, match=r"gateway.http.tls.cert: .*none.crt is not a readable file"):
        async with HttpServer(context(missing)):
            pass


# --- in Chromium ----------------------------------------------------------------------------------


async def test_the_page_over_https_in_chromium_without_csp_violations(
    pki: Pki, page_factory: Callable[..., Awaitable[Any]]
) -> None:
    async with HttpServer(context(settings("0.0.0.0:0", tls=pki))) as server:
        # The test CA is not in Chromium's store: its errors are ignored for this context only.
        page = await page_factory(
            ignore_https_errors=True, http_credentials={"username": "any", "password": ADMIN_TOKEN}
        )
        violations: list[str] = []
        page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
        response = await page.goto(server.url + "/")
        assert response.status == 200 and response.url.startswith("https://")
        assert response.headers["strict-transport-security"] == "max-age=31536000"
        await page.wait_for_selector("#brand:text('gw')")
        await page.goto(server.url + "/#/connections")
        await page.wait_for_selector("text=energy")
        assert await page.locator("#plain-http-banner").count() == 0  # HTTPS: no warning
        assert violations == []
        # page_factory fails the test on any console error, a refused inline style included.


async def test_the_admin_sees_the_plain_http_banner_the_viewer_does_not(
    page_factory: Callable[..., Awaitable[Any]],
) -> None:
    async with HttpServer(context(settings("0.0.0.0:0"))) as server:
        admin = await page_factory(http_credentials={"username": "any", "password": ADMIN_TOKEN})
        await admin.goto(server.url + "/")
        banner = admin.locator("#plain-http-banner")
        await banner.wait_for()
        assert "gateway.http.tls" in await banner.inner_text()
        await admin.click("#lang-it")
        await admin.wait_for_function("document.getElementById('plain-http-banner').lang === 'it'")
        assert "in chiaro" in await banner.inner_text()
        viewer = await page_factory(http_credentials={"username": "officina", "password": VIEWER_PASSWORD})
        await viewer.goto(server.url + "/")
        await viewer.wait_for_selector("#brand:text('gw')")
        await viewer.wait_for_load_state("networkidle")
        assert await viewer.locator("#plain-http-banner").count() == 0


async def test_chromium_is_locked_out_after_failed_logins(browser: Any) -> None:
    async with HttpServer(context(settings("0.0.0.0:0"))) as server:
        guesser = await browser.new_context(http_credentials={"username": "officina", "password": "wrong-guess"})
        try:
            page = await guesser.new_page()
            # Each navigation is one or two tries (Chromium may answer a challenge more than once):
            # within MAX_FAILURES navigations the address is locked, and stays locked.
            statuses = [(await page.goto(server.url + "/")).status for _ in range(MAX_FAILURES + 1)]
            assert statuses[0] == 401 and statuses[-1] == 429, statuses
            first = statuses.index(429)
            assert set(statuses[:first]) == {401} and set(statuses[first:]) == {429}, statuses
            locked = await page.goto(server.url + "/")
            assert locked.status == 429 and int(locked.headers["retry-after"]) > 0
            assert "too many failed logins" in await page.content()
        finally:
            await guesser.close()
        # The same address (127.0.0.1) with the right password: refused too while locked (unchecked).
        right = await browser.new_context(http_credentials={"username": "officina", "password": VIEWER_PASSWORD})
        try:
            page = await right.new_page()
            assert (await page.goto(server.url + "/")).status == 429
        finally:
            await right.close()


async def test_chromium_enforces_the_csp_an_inline_style_attribute_is_refused(browser: Any) -> None:
    """What makes the page tests' "no console error" meaningful: the policy is live in Chromium."""
    async with HttpServer(context(settings("0.0.0.0:0"))) as server:
        ctx = await browser.new_context(http_credentials={"username": "any", "password": ADMIN_TOKEN})
        try:
            page = await ctx.new_page()
            messages: list[str] = []
            page.on("console", lambda m: messages.append(m.text))
            await page.goto(server.url + "/")
            await page.wait_for_selector("#brand:text('gw')")
            refused = await page.evaluate(
                """() => new Promise((resolve) => {
                    document.addEventListener("securitypolicyviolation", (e) => resolve(e.violatedDirective));
                    document.body.setAttribute("style", "outline: 1px solid red");
                    setTimeout(() => resolve(null), 3000);
                })"""
            )
            assert refused is not None and refused.startswith("style-src")
            framed = await page.evaluate("() => fetch('/').then((r) => r.headers.get('content-security-policy'))")
            assert "frame-ancestors 'none'" in framed
        finally:
            await ctx.close()
