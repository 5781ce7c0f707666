"""What protects the web page and the API beyond credentials: the limit on failed logins, the
security headers of every response, and the TLS context of ``gateway.http.tls``.

**Failed logins** (:class:`LoginLimit`): a request that carries credentials and is refused with
401 counts as a failure of its client address. :data:`MAX_FAILURES` failures within
:data:`WINDOW_SECONDS` lock the address for :data:`LOCKOUT_SECONDS`: every request from it that
carries credentials is then answered 429 with ``Retry-After`` *without being checked*, so
guessing goes no faster than :data:`MAX_FAILURES` a minute, even with the right password among
the guesses. Requests without credentials, other addresses and the public probes are not
touched; a successful login neither counts nor clears the failures (one known viewer password
must not let an attacker keep guessing the admin's). An IPv6 client is counted by its /64 (one
host holds a whole /64). The client is the TCP peer: behind a reverse proxy that is the proxy,
unless ``gateway.http.trusted_proxies`` names it, then the right-most ``X-Forwarded-For`` address
that is not a trusted proxy.

**Headers** (:class:`SecurityHeaders`): every response — the page, the API, errors, 401 and
429 — says that the page loads only its own files (``Content-Security-Policy``), may not be
framed (``frame-ancestors 'none'``, ``X-Frame-Options: DENY``), is not content-sniffed and
sends no referrer; API answers are not stored by caches; under TLS, ``Strict-Transport-Security``.
"""

from __future__ import annotations

import ipaddress
import math
import ssl
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from starlette.datastructures import MutableHeaders
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import GatewayError
from gateway.http.config import HttpSettings, HttpTls
from gateway.logs import component_logger

__all__ = [
    "CONTENT_SECURITY_POLICY",
    "LOCKOUT_SECONDS",
    "MAX_FAILURES",
    "WINDOW_SECONDS",
    "LoginLimit",
    "LoginLimiter",
    "SecurityHeaders",
    "server_tls_context",
]

log = component_logger("http", "security")

#: Failed logins from one address within WINDOW_SECONDS that lock it for LOCKOUT_SECONDS.
MAX_FAILURES = 10
WINDOW_SECONDS = 60.0
LOCKOUT_SECONDS = 60.0
#: Most addresses remembered at once (an attacker with many addresses cannot fill the memory).
MAX_TRACKED = 10_000

#: The page is its own HTML, CSS and ES modules plus the vendored uPlot, all under /static; it
#: fetches the API and the event stream from the same origin. Styles are set through the DOM
#: (element.style), which a CSP allows; no inline script or style attribute is used. The icon is
#: the empty ``data:,`` URL.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
#: A year, as browsers' preload lists ask; sent only over HTTPS (browsers ignore it over HTTP).
HSTS = "max-age=31536000"

_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
)


class SecurityHeaders:
    """Adds the security headers to every HTTP response (outermost middleware, so 401 and 429 too)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        https = scope.get("scheme") == "https"
        api = str(scope.get("path", "")).startswith("/api/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in _HEADERS:
                    if name.decode() not in headers:
                        headers.append(name.decode(), value.decode())
                if https:
                    headers["strict-transport-security"] = HSTS
                if api and "cache-control" not in headers:
                    headers["cache-control"] = "no-store"  # status, configs: nothing for a shared cache
            await send(message)

        await self.app(scope, receive, send_with_headers)


@dataclass
class _Failures:
    times: deque[float] = field(default_factory=deque)
    locked_until: float = 0.0


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class LoginLimiter:
    """Failed logins per client address (see the module docstring); the clock can be replaced in tests."""

    def __init__(
        self,
        max_failures: int = MAX_FAILURES,
        window: float = WINDOW_SECONDS,
        lockout: float = LOCKOUT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures, self.window, self.lockout, self.clock = max_failures, window, lockout, clock
        self._clients: dict[str, _Failures] = {}

    def retry_after(self, client: str) -> float:
        """Seconds the client must still wait (0: it may try)."""
        entry = self._clients.get(client)
        if entry is None:
            return 0.0
        return max(0.0, entry.locked_until - self.clock())

    def failed(self, client: str) -> bool:
        """Count a failure; True when it locks the client (the start of an episode)."""
        now = self.clock()
        entry = self._clients.get(client)
        if entry is None:
            self._prune(now)
            entry = self._clients[client] = _Failures()
        while entry.times and entry.times[0] <= now - self.window:
            entry.times.popleft()
        entry.times.append(now)
        if len(entry.times) >= self.max_failures and entry.locked_until <= now:
            entry.locked_until = now + self.lockout
            entry.times.clear()
            return True
        return False

    def _prune(self, now: float) -> None:
        if len(self._clients) < MAX_TRACKED:
            return
        for client, entry in list(self._clients.items()):
            if entry.locked_until <= now and (not entry.times or entry.times[-1] <= now - self.window):
                del self._clients[client]
        while len(self._clients) >= MAX_TRACKED:  # still full: forget the oldest entries
            del self._clients[next(iter(self._clients))]


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def client_key(scope: Scope, trusted: Sequence[Network] = ()) -> str:
    """The address failures are counted for: the peer, or the client a trusted proxy forwarded."""
    peer = scope.get("client")
    address = _address(peer[0]) if peer else None
    if address is not None and trusted and any(address in network for network in trusted):
        forwarded = [value.decode("latin-1") for name, value in scope.get("headers", ()) if name == b"x-forwarded-for"]
        hops = [hop for line in forwarded for hop in line.split(",") if hop.strip()]
        for hop in reversed(hops):
            candidate = _address(hop)
            if candidate is None:
                break  # a malformed hop: trust nothing further left
            address = candidate
            if not any(candidate in network for network in trusted):
                break
    if address is None:
        return str(peer[0]) if peer else "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class LoginLimit:
    """ASGI middleware around the authentication: 429 for a locked client, failures counted from 401s."""

    def __init__(self, app: ASGIApp, settings: HttpSettings, limiter: LoginLimiter | None = None) -> None:
        self.app = app
        self.enabled = settings.auth.configured
        self.trusted = [ipaddress.ip_network(item, strict=False) for item in settings.trusted_proxies]
        self.limiter = limiter or LoginLimiter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.enabled:
            await self.app(scope, receive, send)
            return
        if not any(name == b"authorization" for name, _ in scope.get("headers", ())):
            await self.app(scope, receive, send)  # no credential, no guess: nothing to count
            return
        client = client_key(scope, self.trusted)
        wait = self.limiter.retry_after(client)
        if wait > 0:
            seconds = math.ceil(wait)
            response = JSONResponse(
                {"detail": f"too many failed logins from this address: try again in {seconds} s"},
                status_code=429,
                headers={"Retry-After": str(seconds)},
            )
            await response(scope, receive, send)
            return

        async def watch(message: Message) -> None:
            refused = message["type"] == "http.response.start" and message["status"] == 401
            if refused and self.limiter.failed(client):
                # Once per episode, with the address (never what was tried).
                log.warning(
                    "%d failed logins from %s within %.0f s: its logins are refused (429) for the next %.0f s",
                    self.limiter.max_failures,
                    client,
                    self.limiter.window,
                    self.limiter.lockout,
                )
            await send(message)

        await self.app(scope, receive, watch)


def server_tls_context(tls: HttpTls) -> ssl.SSLContext:
    """The HTTPS server context of ``gateway.http.tls``; a GatewayError that says what is wrong
    (never the key's password) when the files cannot be used."""
    for what, path in (("cert", tls.cert), ("key", tls.key)):
        if not Path(path).is_file():
            raise GatewayError(f"gateway.http.tls.{what}: {path} is not a readable file")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])  # what uvicorn's HTTP/1.1 protocol speaks
    password = tls.key_password.get_secret_value() if tls.key_password is not None else None
    try:
        # Always a callable: with none, OpenSSL would prompt for an encrypted key's password on the terminal.
        context.load_cert_chain(tls.cert, tls.key, password=lambda: password or "")
    except ssl.SSLError as exc:
        reason = exc.reason or exc.strerror or type(exc).__name__
        hint = (
            " (is the key encrypted? give gateway.http.tls.key_password)"
            if password is None
            else " (wrong key_password, or a key that does not match the certificate?)"
        )
        raise GatewayError(f"gateway.http.tls: cannot use {tls.cert} with {tls.key}: {reason}{hint}") from None
    except OSError as exc:
        raise GatewayError(f"gateway.http.tls: cannot read {exc.filename or tls.cert}: {exc.strerror}") from None
    return context
