"""Link availability of one connector over a range, from the link journal (:mod:`gateway.linkjournal`).

The journal says when the connector's state changed and when the gateway started and stopped.
Between two records the state of the first holds. So the range splits into:

- **connected**: the connector's state was ``running``;
- **not connected**: any other state (connecting, reconnecting, backoff, credentials refused,
  starting, stopped), or the gateway was not running (stopped cleanly, or lost: killed or
  without power, its end known to within :data:`~gateway.linkjournal.ALIVE_SECONDS`);
- **unknown**: before the journal's first record (a gateway older than the journal, or a
  connector added later): nothing says what the link was, and the report says so.

Consecutive stretches not connected make one *outage*, named by what started it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from gateway.linkjournal import LinkRecord

__all__ = ["Availability", "Cause", "Outage", "availability"]

#: What started an outage (the report names each in words).
Cause = Literal["connection", "credentials", "starting", "stopped", "gateway_stopped", "gateway_lost", "other"]

_CAUSES: dict[str, Cause] = {
    "connecting": "connection",
    "reconnecting": "connection",
    "backoff": "connection",
    "unauthorized": "credentials",
    "starting": "starting",
    "stopping": "stopped",
    "stopped": "stopped",
}


@dataclass
class Outage:
    """A stretch of time the connector was not connected."""

    start_ns: int
    end_ns: int
    cause: Cause
    #: the states and gateway events seen during it, in order, once each ("reconnecting", "backoff", …)
    states: list[str] = field(default_factory=list)
    #: the gateway was not running for part of it (stopped or lost)
    gateway_down: bool = False
    #: its start is the gateway's last sign of life (an unclean stop), not the moment it stopped
    estimated: bool = False
    #: it began before the range / goes on after it
    open_start: bool = False
    open_end: bool = False

    @property
    def seconds(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9


@dataclass
class Availability:
    """Connected, not connected and unknown time of one connector in [start, end)."""

    connector: str
    start_ns: int
    end_ns: int
    connected_ns: int = 0
    down_ns: int = 0
    unknown_ns: int = 0
    outages: list[Outage] = field(default_factory=list)
    #: the journal's records of this connector in the range (state changes)
    changes: int = 0
    #: (start, end, "up" | "down" | "unknown") stretches tiling the range, for the report's bar
    stretches: list[tuple[int, int, str]] = field(default_factory=list)

    @property
    def range_ns(self) -> int:
        return self.end_ns - self.start_ns

    @property
    def ratio(self) -> float | None:
        """Connected time / time in range (None for an empty range)."""
        return self.connected_ns / self.range_ns if self.range_ns > 0 else None

    @property
    def known_ratio(self) -> float | None:
        """Connected time / time the journal covers (None when it covers none of the range)."""
        known = self.range_ns - self.unknown_ns
        return self.connected_ns / known if known > 0 else None


def availability(records: Sequence[LinkRecord], connector: str, start_ns: int, end_ns: int) -> Availability:
    """The connector's availability in [start_ns, end_ns) from the journal's records, oldest first
    (those before ``start_ns`` say what was in force at the start: :func:`~gateway.linkjournal.read_link_journal`)."""
    result = Availability(connector, start_ns, end_ns)
    # (time, "up" | "down" | "unknown", cause, label, gateway_down, estimated) at each change
    status: tuple[str, Cause | None, bool, bool] = ("unknown", None, False, False)
    changes: list[tuple[int, tuple[str, Cause | None, bool, bool], str]] = []
    for record in records:
        if record.at_ns >= end_ns:
            break
        if record.event == "state":
            if record.connector != connector:
                continue
            if record.at_ns >= start_ns:
                result.changes += 1
            state = record.state or "unknown"
            if record.up:
                new: tuple[str, Cause | None, bool, bool] = ("up", None, False, False)
            else:
                new = ("down", _CAUSES.get(state, "other"), False, False)
            label = state
        elif record.event == "gateway_start":
            if status[0] == "unknown":
                continue  # a start says nothing of this connector until its own first record
            # (the connector's own record follows at once; until then the outage goes on)
            new = ("down", status[1] or "starting", status[2], status[3])
            label = "gateway_start"
        else:
            if status[0] == "unknown" and record.at_ns < start_ns:
                continue
            lost = record.event == "gateway_lost"
            new = ("down", "gateway_lost" if lost else "gateway_stopped", True, lost)
            label = record.event
        changes.append((max(record.at_ns, start_ns), new, label))
        status = new

    # Walk the range: the state in force before the first change inside it, then each change.
    current: tuple[str, Cause | None, bool, bool] = ("unknown", None, False, False)
    at = start_ns
    outage: Outage | None = None
    for when, new, label in [*changes, (end_ns, ("end", None, False, False), "")]:
        if when > at:
            _account(result, current[0], when - at)
            result.stretches.append((at, when, current[0]))
        at = max(at, when)
        kind = new[0]
        if kind == "end":
            break
        if kind == "down":
            if outage is None:
                outage = Outage(when, when, new[1] or "other", open_start=when <= start_ns)
                if new[3]:
                    outage.estimated = True
                result.outages.append(outage)
            elif new[2] and outage.cause in ("stopped", "starting"):
                # the connector stopped because the gateway did: that is the outage's cause
                outage.cause = new[1] or outage.cause
            if new[2]:
                outage.gateway_down = True
            if label and label not in outage.states:
                outage.states.append(label)
        elif outage is not None:
            outage.end_ns = when
            outage = None
        current = new
    if outage is not None:
        outage.end_ns = end_ns
        outage.open_end = True
    result.stretches = _merge(result.stretches)
    return result


def _account(result: Availability, kind: str, span: int) -> None:
    if kind == "up":
        result.connected_ns += span
    elif kind == "down":
        result.down_ns += span
    else:
        result.unknown_ns += span


def _merge(stretches: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    merged: list[tuple[int, int, str]] = []
    for start, end, kind in stretches:
        if merged and merged[-1][2] == kind and merged[-1][1] == start:
            merged[-1] = (merged[-1][0], end, kind)
        else:
            merged.append((start, end, kind))
    return merged
