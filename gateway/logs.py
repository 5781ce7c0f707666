"""Structured logging: one line per event, the component's name in every line.

Text (default)::

    2026-11-27T08:30:00.123Z INFO  connector=energy  connected to mqtt://localhost:1883

JSON (``--log-format json``), one object per line::

    {"time": "2026-11-27T08:30:00.123Z", "level": "info", "component": "connector=energy", "message": "..."}

Components log through :func:`component_logger`; extra key/values passed as
``log.info("...", extra={"fields": {...}})`` are appended (``key=value``) or merged (JSON).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import MutableMapping
from typing import Any, Literal

__all__ = ["component_logger", "setup_logging"]

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
            line += "\n" + self.formatException(record.exc_info)
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
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def setup_logging(fmt: LogFormat = "text", level: str = "info") -> None:
    """Send the gateway's logs to stderr in the chosen format (idempotent)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Libraries speak only when it matters.
    for noisy in ("asyncua", "paho", "urllib3", "uvicorn.access", "amqtt", "transitions"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
