"""Secrets in the configuration: which values they are, and keeping them out of every output.

A secret is a config value typed :class:`~pydantic.SecretStr` (every password, token and key
password of every config model), any value under a key whose name says it is one
(``password``, ``token``, ``secret``, ``passphrase``, ``api_key``…: a component may add such a
key before its model types it), or the password of a URL (``http://user:pw@host``). Three
defences use this module:

- :func:`masked_dump`: a config model as JSON-able data with every secret replaced by
  :data:`MASK` (``/api/components/{name}``);
- :func:`secret_values`: the plain values of a loaded config's secrets, which the runtime hands
  to :data:`SECRETS`;
- :data:`SECRETS`: the process's registry of secret values, one precompiled pattern that masks
  them in any text — the last-line log filter (:mod:`gateway.logs`) and the components' error
  texts (:meth:`gateway.component.Status.record_error`) go through it.
"""

from __future__ import annotations

import json
import re
import threading
import typing
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import quote, quote_plus, unquote, urlsplit

from pydantic import BaseModel, SecretBytes, SecretStr
from pydantic_core import to_jsonable_python

__all__ = [
    "MASK",
    "MIN_MASKED_LENGTH",
    "SECRETS",
    "SecretRegistry",
    "is_secret_annotation",
    "is_secret_key",
    "masked_dump",
    "secret_values",
]

#: What a secret is replaced with, wherever it would have been shown.
MASK = "***"

#: Shorter values are not masked in free text: masking "ab" would garble every message (and such
#: a value protects nothing). Typed secrets are masked in dumps and reprs whatever their length.
MIN_MASKED_LENGTH = 4

# A key names a secret when one of its words (split at '_', '-', '.' or a capital) is one of
# these (``password``, ``key_password``, ``api_token``, ``client-secret``), or when it is a key
# itself (``key``, ``api_key``, ``private_key``); ``key_file`` and ``key_fields`` are not.
_SECRET_WORDS = frozenset(
    {"password", "passwd", "passphrase", "pwd", "token", "secret", "secrets", "credential", "credentials", "apikey"}
)
_SECRET_NAMES = frozenset({"key", "api_key", "private_key", "access_key", "secret_key", "signing_key", "auth_key"})
_WORD = re.compile(r"[^A-Za-z0-9]+|(?<=[a-z])(?=[A-Z])")


def is_secret_key(key: object) -> bool:
    """True for a key whose name says its value is a secret (``password``, ``admin_token``, ``api_key``)."""
    if not isinstance(key, str):
        return False
    words = [word.lower() for word in _WORD.split(key) if word]
    return "_".join(words) in _SECRET_NAMES or any(word in _SECRET_WORDS for word in words)


def is_secret_annotation(annotation: Any) -> bool:
    """True when a field's type is (or may be) a pydantic secret: ``SecretStr``, ``SecretStr | None``…"""
    if annotation in (SecretStr, SecretBytes):
        return True
    return any(is_secret_annotation(arg) for arg in typing.get_args(annotation))


def _secret_text(value: SecretStr | SecretBytes) -> str:
    raw = value.get_secret_value()
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw


def _plain_texts(value: Any) -> Iterator[str]:
    """Every scalar below a secret-named key, as text (a number written there is a secret too)."""
    if isinstance(value, SecretStr | SecretBytes):
        yield _secret_text(value)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _plain_texts(item)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            yield from _plain_texts(item)
    elif isinstance(value, str | int | float) and not isinstance(value, bool):
        yield str(value)


def _url_password(text: str) -> str | None:
    """The password written in a URL (``mqtt://user:pw@host``), as written, else None."""
    if "://" not in text or "@" not in text:
        return None
    try:
        netloc = urlsplit(text.strip()).netloc
    except ValueError:
        return None
    userinfo, at, _ = netloc.rpartition("@")
    _, colon, password = userinfo.partition(":")
    return password if at and colon and password else None


def _mask_url(text: str) -> str:
    password = _url_password(text)
    if password is None:
        return text
    scheme, _, rest = text.partition("://")
    userinfo, _, host = rest.partition("@") if "@" in rest.split("/", 1)[0] else ("", "", rest)
    return f"{scheme}://{userinfo.partition(':')[0]}:{MASK}@{host}"


def secret_values(value: Any) -> set[str]:
    """The plain values of every secret in a config (a model, or plain data read from YAML).

    Typed secrets anywhere, and every value under a secret-named key; empty values are left out.
    """
    found: set[str] = set()

    def walk(item: Any, secret: bool) -> None:
        if isinstance(item, SecretStr | SecretBytes):
            found.add(_secret_text(item))
        elif isinstance(item, BaseModel):
            for name in type(item).model_fields:
                walk(getattr(item, name, None), secret or is_secret_key(name))
        elif isinstance(item, dict):
            for key, child in item.items():
                walk(child, secret or is_secret_key(key))
        elif isinstance(item, list | tuple | set | frozenset):
            for child in item:
                walk(child, secret)
        elif secret:
            found.update(_plain_texts(item))
        elif isinstance(item, str) and (password := _url_password(item)) is not None:
            found.update({password, unquote(password)})

    walk(value, False)
    found.discard("")
    return found


def masked_dump(model: BaseModel) -> Any:
    """``model`` as JSON-able data, every secret (by type or by key name) replaced by :data:`MASK`."""

    def mask(item: Any, secret: bool) -> Any:
        if isinstance(item, SecretStr | SecretBytes):
            return MASK if _secret_text(item) else ""
        if isinstance(item, dict):
            return {key: mask(child, secret or is_secret_key(key)) for key, child in item.items()}
        if isinstance(item, list | tuple):
            return [mask(child, secret) for child in item]
        if secret and item not in (None, ""):
            return MASK
        if isinstance(item, str):
            return _mask_url(item)
        return item

    # Python mode keeps SecretStr objects, so the type (not only the key name) decides.
    return to_jsonable_python(mask(model.model_dump(mode="python"), False))


def _variants(value: str) -> Iterator[str]:
    """How a value may appear in text: as is, escaped by repr() or JSON, URL-encoded."""
    yield value
    yield repr(value)[1:-1]
    yield json.dumps(value)[1:-1]
    yield json.dumps(value, ensure_ascii=False)[1:-1]
    yield quote(value, safe="")
    yield quote_plus(value, safe="")


class SecretRegistry:
    """The secret values known to this process, masked in any text by one precompiled pattern.

    Values are only ever added: a value a reload replaced stays masked (an old password may
    still open something). Without any value, :meth:`mask` costs one attribute test.
    """

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._lock = threading.Lock()

    def __bool__(self) -> bool:
        return self._pattern is not None

    def add(self, values: Iterable[str]) -> None:
        """Mask these values from now on (those shorter than :data:`MIN_MASKED_LENGTH` are not)."""
        with self._lock:
            new = {
                variant
                for value in values
                if len(value) >= MIN_MASKED_LENGTH
                for variant in _variants(value)
                if len(variant) >= MIN_MASKED_LENGTH
            }
            if new <= self._values:
                return
            self._values |= new
            # Longest first: a secret that contains another is masked whole.
            ordered = sorted(self._values, key=lambda v: (-len(v), v))
            self._pattern = re.compile("|".join(re.escape(v) for v in ordered))

    def clear(self) -> None:
        """Forget every value (tests)."""
        with self._lock:
            self._values = set()
            self._pattern = None

    def mask(self, text: str) -> str:
        """``text`` with every known secret value replaced by :data:`MASK`."""
        pattern = self._pattern
        if pattern is None:
            return text
        return pattern.sub(MASK, text)

    def found_in(self, text: str) -> bool:
        pattern = self._pattern
        return pattern is not None and pattern.search(text) is not None


#: The process's secrets: filled by the runtime from the config it loads (and reloads).
SECRETS = SecretRegistry()
