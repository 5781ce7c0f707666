"""What the gateway says about its configuration: the generation in force and the reload attempts.

The runtime fills these records; ``/api/status``, ``/metrics`` and the logs read them. A
*generation* is one configuration applied: 1 at start, one more for every reload that changed
something. Its hash is the SHA-256 of the files' text, so an engineer can tell which version
of the file a gateway runs (``sha256sum`` of a one-file config gives a different number: the
hash also covers the file names, so that a folder of files is covered as a whole).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ConfigGeneration", "ReloadAttempt", "ReloadHistory", "ReloadResult", "ReloadTrigger"]


class ReloadResult(enum.StrEnum):
    APPLIED = "applied"  # valid, and something changed
    UNCHANGED = "unchanged"  # valid, and the same as what runs
    FAILED = "failed"  # invalid: nothing changed, the gateway runs on the last good config


class ReloadTrigger(enum.StrEnum):
    SIGNAL = "sighup"
    WATCH = "watch"
    API = "api"
    CALL = "call"  # a direct call (tests, embedding programs)


@dataclass(frozen=True)
class ConfigGeneration:
    """The configuration in force."""

    number: int
    applied_at: float
    sha256: str
    files: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "generation": self.number,
            "applied_at": self.applied_at,
            "sha256": self.sha256,
            "files": list(self.files),
        }


@dataclass(frozen=True)
class ReloadAttempt:
    """One reload: when, why, what came of it."""

    at: float
    trigger: ReloadTrigger
    result: ReloadResult
    duration_seconds: float
    #: every problem of an invalid config, as ``file:line: key: message`` (what ``gateway validate`` prints)
    errors: tuple[str, ...] = ()
    #: component → what happened to it ("added", "removed", "restarted", "reconfigured")
    changes: dict[str, str] = field(default_factory=dict)
    #: changes that need a restart of the gateway: refused, while the rest was applied
    restart_required: tuple[str, ...] = ()
    generation: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "trigger": self.trigger.value,
            "result": self.result.value,
            "duration_seconds": round(self.duration_seconds, 4),
            "errors": list(self.errors),
            "error_count": len(self.errors),
            "changes": dict(self.changes),
            "restart_required": list(self.restart_required),
            "generation": self.generation,
        }


@dataclass
class ReloadHistory:
    """Counts per result and the last attempts (the newest last)."""

    KEEP = 10

    counts: dict[ReloadResult, int] = field(default_factory=lambda: dict.fromkeys(ReloadResult, 0))
    attempts: list[ReloadAttempt] = field(default_factory=list)

    def record(self, attempt: ReloadAttempt) -> None:
        self.counts[attempt.result] += 1
        self.attempts.append(attempt)
        del self.attempts[: -self.KEEP]

    @property
    def last(self) -> ReloadAttempt | None:
        return self.attempts[-1] if self.attempts else None

    @property
    def last_failure(self) -> ReloadAttempt | None:
        """The last attempt, if it failed (a later good one clears it)."""
        last = self.last
        return last if last is not None and last.result is ReloadResult.FAILED else None
