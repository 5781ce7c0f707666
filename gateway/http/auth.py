"""Who may see what: a read-only **viewer**, an **operator** (also writes declared fields to
machines: ``POST /api/write``) and an **admin** (also connector details, config, reload).

- No credential configured (only allowed on loopback): everyone who can connect is admin.
- Otherwise every request except ``/healthz`` and ``/readyz`` needs one of:
  ``Authorization: Bearer <token>``, or HTTP Basic with the role's username and password
  (the browser asks for them), or HTTP Basic with any username and the token as password.

Secrets are compared in constant time, as SHA-256 digests (so not even their length shows in the
time an answer takes). A refused request gets 401 with a ``WWW-Authenticate``
header (so the browser shows its login prompt); a viewer asking for admin data gets 403.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac

from pydantic import SecretStr

from gateway.http.config import AuthSettings, Credential

__all__ = ["Role", "authenticate", "identify"]


class Role(enum.IntEnum):
    NONE = 0
    VIEWER = 1
    OPERATOR = 2  # a viewer who may also write declared fields to machines
    ADMIN = 3


def _same(given: str, expected: str | SecretStr) -> bool:
    value = expected.get_secret_value() if isinstance(expected, SecretStr) else expected
    # Equal-length digests: compare_digest's time depends on neither value nor its length.
    given_digest = hashlib.sha256(given.encode()).digest()
    return bool(value) and hmac.compare_digest(given_digest, hashlib.sha256(value.encode()).digest())


def _matches(credential: Credential, token: str | None, user: str | None, password: str | None) -> bool:
    if token is not None and _same(token, credential.token):
        return True
    if password is not None:
        if _same(password, credential.token):
            return True
        if user is not None and _same(user, credential.username) & _same(password, credential.password):
            return True
    return False


def _parse(header: str | None) -> tuple[str | None, str | None, str | None]:
    """``Authorization`` header → (bearer token, basic user, basic password)."""
    if not header:
        return None, None, None
    scheme, _, value = header.strip().partition(" ")
    scheme = scheme.lower()
    value = value.strip()
    if scheme == "bearer" and value:
        return value, None, None
    if scheme == "basic" and value:
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None, None, None
        user, sep, password = decoded.partition(":")
        if sep:
            return None, user, password
    return None, None, None


def authenticate(settings: AuthSettings, header: str | None) -> Role:
    """The role an ``Authorization`` header grants (ADMIN for everyone when no credential is set)."""
    if not settings.configured:
        return Role.ADMIN
    token, user, password = _parse(header)
    if token is None and password is None:
        return Role.NONE
    if settings.admin.configured and _matches(settings.admin, token, user, password):
        return Role.ADMIN
    if settings.operator.configured and _matches(settings.operator, token, user, password):
        return Role.OPERATOR
    if settings.viewer.configured and _matches(settings.viewer, token, user, password):
        return Role.VIEWER
    return Role.NONE


def identify(settings: AuthSettings, header: str | None, role: Role) -> str:
    """Who the caller is, for the audit trail: the configured user name they logged in with, else
    "<role> token" (a token names no person), or "local" when no credential is configured.

    Never a secret: a user name is returned only when it is the configured one and the password
    matched it (a token typed as the password of any user name says nothing about that name).
    """
    if not settings.configured:
        return "local"
    _, user, password = _parse(header)
    credential = {Role.ADMIN: settings.admin, Role.OPERATOR: settings.operator, Role.VIEWER: settings.viewer}.get(role)
    if (
        credential is not None
        and user is not None
        and password is not None
        and credential.username
        and _same(user, credential.username)
        and _same(password, credential.password)
    ):
        return credential.username
    return f"{role.name.lower()} token"
