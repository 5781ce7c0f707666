"""The gateway's own exceptions.

Every error the gateway raises on purpose derives from :class:`GatewayError` and carries a
message a plant engineer can act on::

    GatewayError
    ├── ConfigError            a configuration file is wrong (carries every problem found)
    ├── PointError             a value cannot become a Point (bad name, NaN, wrong type…)
    ├── DecodeError            a payload cannot be decoded (counted as malformed, skipped)
    ├── SourceError            a connector cannot reach or read its source
    ├── WriteRefused           a write to a machine is refused before it is sent (type, limits)
    └── SinkError              a store refused or failed a write
        ├── SinkUnavailable    the store is down or overloaded: retry later (with backoff)
        ├── SinkUnauthorized   credentials were refused: keep buffering, retry slowly
        └── SinkRejected       the store rejected the points themselves: drop and count them
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class GatewayError(Exception):
    """Base class of every error raised by the gateway on purpose."""


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One problem in a configuration file, located as precisely as the file allows."""

    file: str
    line: int | None
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        key = f" {self.key}:" if self.key else ""
        return f"{where}:{key} {self.message}"


class ConfigError(GatewayError):
    """The configuration is invalid; ``problems`` lists every problem found, one per line."""

    def __init__(self, problems: Sequence[ConfigProblem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class PointError(GatewayError, ValueError):
    """A measurement, tag or field cannot be represented as a Point."""


class DecodeError(GatewayError, ValueError):
    """A payload could not be decoded into points."""


class SourceError(GatewayError):
    """A connector could not reach or read its source."""


class WriteRefused(GatewayError):
    """A write to a machine is refused before anything is sent; ``result`` says why in one word
    (``refused_type``, ``refused_limits``: :class:`gateway.writes.WriteResult`), the message in words."""

    def __init__(self, result: str, message: str) -> None:
        super().__init__(message)
        self.result = result


class SinkError(GatewayError):
    """A store failed a write."""


class SinkUnavailable(SinkError):
    """The store is down, unreachable or overloaded: the write is retried with backoff.

    ``retry_after`` is the delay the store asked for (HTTP Retry-After), if any.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class SinkUnauthorized(SinkError):
    """The store refused the credentials: points stay buffered and the write is retried slowly."""


class SinkRejected(SinkError):
    """The store rejected the points themselves (bad type, bad name): they are dropped and counted.

    ``rejected`` is how many points were dropped. ``logged``: the sink has said why in the log
    already (once per cause, not once per batch), so the route only counts them.
    """

    def __init__(self, message: str, *, rejected: int, logged: bool = False) -> None:
        super().__init__(message)
        self.rejected = rejected
        self.logged = logged
