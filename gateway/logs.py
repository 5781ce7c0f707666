"""Structured logging: one line per event, the component's name in every line.

Text (default)::

    2026-11-27T08:30:00.123Z INFO  connector=energy  connected to mqtt://localhost:1883

JSON (``--log-format json``), one object per line::

    {"time": "2026-11-27T08:30:00.123Z", "level": "info", "component": "connector=energy", "message": "..."}

Components log through :func:`component_logger`; extra key/values passed as
``log.info("...", extra={"fields": {...}})`` are appended (``key=value``) or merged (JSON).

The last line before a record is written: :class:`SecretFilter` (on the handler
:func:`setup_logging` installs, and on every root handler once the runtime runs:
:func:`install_secret_filter`) replaces every configured secret value (passwords, tokens: see
:mod:`gateway.secrets`) in the message, its arguments, its fields and its traceback with ``***``.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import MutableMapping
from typing import Any, Literal

from gateway.secrets import SECRETS

__all__ = ["SecretFilter", "component_logger", "install_secret_filter", "setup_logging"]

LogFormat = Literal["text", "json"]

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


_JSON_KEYS = frozenset({"time", "level", "component", "message", "error"})


def _timestamp(record: logging.LogRecord) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"


class _ComponentAdapter(logging.LoggerAdapter[logging.Logger]):
    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        extra = dict(self.extra or {})
        extra.update(kwargs.get("extra") or {})
        kwargs["extra"] = extra
        return msg, kwargs


def component_logger(kind: str, name: str) -> logging.LoggerAdapter[logging.Logger]:
    """A logger whose every line names the component: ``connector=energy``, ``sink=local``."""
    return _ComponentAdapter(logging.getLogger(f"gateway.{kind}.{name}"), {"component": f"{kind}={name}"})


class SecretFilter(logging.Filter):
    """Masks every secret value :data:`gateway.secrets.SECRETS` knows in a record about to be written.

    A handler's filter, so it sees every record that reaches the handler, whichever logger it
    came from (a library's included). Nothing is done while no secret is configured; a record
    is rewritten only when a secret is in it (its message then replaces ``msg`` and ``args``).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if not SECRETS:
            return True
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed call is the formatter's to report
            return True
        if SECRETS.found_in(message):
            record.msg, record.args = SECRETS.mask(message), None
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            masked = {key: _masked_value(value) for key, value in fields.items()}
            if masked != fields:
                record.fields = masked
        if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
            # Formatted once here (formatters reuse exc_text), so the traceback's messages are masked too.
            record.exc_text = SECRETS.mask(_PLAIN.formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = SECRETS.mask(record.exc_text)
        if record.stack_info:
            record.stack_info = SECRETS.mask(record.stack_info)
        return True


_PLAIN = logging.Formatter()


def _masked_value(value: Any) -> Any:
    if isinstance(value, str | int | float | bool) or value is None:
        return SECRETS.mask(value) if isinstance(value, str) else value
    text = str(value)
    return SECRETS.mask(text) if SECRETS.found_in(text) else value


def _exception_text(formatter: logging.Formatter, record: logging.LogRecord) -> str:
    """The record's traceback: the one SecretFilter masked when it ran, else formatted now."""
    if record.exc_text:
        return record.exc_text
    assert record.exc_info is not None
    return formatter.formatException(record.exc_info)


def install_secret_filter() -> None:
    """Put :class:`SecretFilter` on every handler of the root logger (and the last-resort one)
    that lacks it: the runtime calls this, so secrets are masked however logging was set up."""
    handlers = list(logging.getLogger().handlers)
    if logging.lastResort is not None:
        handlers.append(logging.lastResort)
    for handler in handlers:
        if not any(isinstance(f, SecretFilter) for f in handler.filters):
            handler.addFilter(SecretFilter())


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        component = getattr(record, "component", "gateway")
        message = record.getMessage()
        if "\n" in message or "\r" in message:  # one event, one line
            message = message.replace("\r", "\\r").replace("\n", "\\n")
        line = f"{_timestamp(record)} {record.levelname:<5} {component}  {message}"
        fields = getattr(record, "fields", None)
        if fields:
            line += "  " + " ".join(f"{k}={v}" for k, v in fields.items())
        if record.exc_info and record.levelno >= logging.ERROR and logging.getLogger().isEnabledFor(logging.DEBUG):
            line += "\n" + _exception_text(self, record)
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _timestamp(record),
            "level": record.levelname.lower(),
            "component": getattr(record, "component", "gateway"),
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if fields:
            entry.update({key: value for key, value in fields.items() if key not in _JSON_KEYS})
        if record.exc_info:
            entry["error"] = _exception_text(self, record)
        return json.dumps(entry, default=str, ensure_ascii=False)


def setup_logging(fmt: LogFormat = "text", level: str = "info") -> None:
    """Send the gateway's logs to stderr in the chosen format (idempotent)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(SecretFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Libraries speak only when it matters.
    for noisy in ("asyncua", "paho", "urllib3", "uvicorn.access", "amqtt", "transitions"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
