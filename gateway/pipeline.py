"""From sources to sinks: the pieces every route shares.

- :class:`Fanout` is a connector's ``emit``: every batch goes to each route the connector
  feeds, and the connector's ``on_stored`` runs once all of them have it. Its routes can be
  changed while it runs (a sink added or removed by a reload) without the connector noticing.
- :class:`SinkWriter` makes one write attempt and says what each sink error means;
- :class:`Backoff` is the capped exponential backoff with jitter used for every retry.

The route itself (queue → batches → writes → acknowledgements) is :mod:`gateway.route`.

What each sink error means (the sink says what to do next):

- ``SinkUnavailable``: retry with backoff (or after the Retry-After the store asked for);
- ``SinkUnauthorized``: state ``unauthorized``, retry slowly, keep everything;
- ``SinkRejected``: those points are dropped and counted, the batch is done;
- anything else is a bug in the sink: logged with its traceback, retried like ``SinkUnavailable``.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from gateway.component import OnStored, State, Status
from gateway.errors import SinkRejected, SinkUnauthorized, SinkUnavailable
from gateway.point import Point

__all__ = ["Backoff", "Fanout", "RouteIn", "SinkWriter"]


def _noop() -> None:
    pass


class RouteIn(Protocol):
    """The way into a sink's route, as a connector's fan-out sees it."""

    @property
    def name(self) -> str: ...

    async def put(self, points: Sequence[Point], done: OnStored) -> None: ...


@dataclass
class Backoff:
    """Capped exponential backoff with jitter: 1s, 2s, 4s … ``cap``; ``reset()`` after success."""

    initial: float = 1.0
    cap: float = 60.0
    attempt: int = 0

    def next_delay(self) -> float:
        delay = self.initial * 2 ** min(self.attempt, 62) * random.uniform(0.8, 1.2)
        self.attempt += 1
        return float(min(self.cap, delay))

    def reset(self) -> None:
        self.attempt = 0


class Fanout:
    """A connector's ``emit``: each batch to every route it feeds; ``on_stored`` once all have it.

    :attr:`routes` may be replaced at any time (a reload added or removed a sink): a batch
    already on its way keeps the routes it started with, so its acknowledgement stays exact.
    """

    __slots__ = ("routes",)

    def __init__(self, routes: Sequence[RouteIn]) -> None:
        self.routes: tuple[RouteIn, ...] = tuple(routes)

    async def __call__(self, points: Sequence[Point], on_stored: OnStored | None = None) -> None:
        routes = self.routes
        if len(routes) == 1:
            await routes[0].put(points, on_stored or _noop)
            return
        if not routes:
            if on_stored is not None:
                on_stored()
            return
        remaining = len(routes)

        def done() -> None:
            nonlocal remaining
            remaining -= 1
            if remaining == 0 and on_stored is not None:
                on_stored()

        for route in routes:
            await route.put(points, done)


class SinkWriter:
    """One write attempt and what each sink error means, written once for every route.

    ``attempt`` returns None when the batch is done (stored, or rejected and counted) and
    otherwise the delay before the next try; the route decides whether to wait and retry.
    """

    def __init__(
        self,
        status: Status,
        log: logging.LoggerAdapter[logging.Logger],
        backoff: Backoff,
        *,
        stopping: Callable[[], bool],
        unauthorized_retry: Callable[[], float],
    ) -> None:
        self.status = status
        self.log = log
        self.backoff = backoff
        self._stopping = stopping
        self._unauthorized_retry = unauthorized_retry
        #: the last write failure (the status' last_error may name another trouble since: a full disk)
        self._failure: str | None = None

    async def attempt(self, write: Callable[[], Awaitable[None]], count: int) -> float | None:
        started = time.perf_counter()
        try:
            await write()
        except SinkRejected as exc:
            self.status.count("points_rejected", exc.rejected)
            self.status.count("points_written", max(0, count - exc.rejected))  # the rest was stored
            self.status.count("batches_written")
            self.status.record_error(str(exc))
            if not exc.logged:
                self.log.error("the store rejected %d points, dropped: %s", exc.rejected, exc)
            self._recovered()
            return None
        except SinkUnauthorized as exc:
            return self._failed(State.UNAUTHORIZED, str(exc), self._unauthorized_retry())
        except SinkUnavailable as exc:
            delay = exc.retry_after if exc.retry_after is not None else self.backoff.next_delay()
            return self._failed(State.BACKOFF, str(exc), delay)
        except Exception as exc:
            self.log.exception("unexpected error while writing (a bug: please report it)")
            return self._failed(State.BACKOFF, f"{type(exc).__name__}: {exc}", self.backoff.next_delay())
        elapsed = time.perf_counter() - started
        self.status.count("points_written", count)
        self.status.count("batches_written")
        self.status.detail["last_write_seconds"] = round(elapsed, 6)
        self.status.observe("write_seconds", elapsed)  # /metrics: gateway_sink_write_seconds
        self._recovered()
        return None

    def _failed(self, state: State, message: str, delay: float) -> float:
        self._failure = message
        self.status.count("write_errors")
        self.status.record_error(message)
        if self.status.lifecycle is not state:
            self.log.warning(
                "write failed (%s): %s; the points are kept and the write is retried", state.value, message
            )
        if not self._stopping():
            self.status.set_state(state)
        self.status.detail["retry_in_seconds"] = round(delay, 3)
        return delay

    def _recovered(self) -> None:
        self.backoff.reset()
        self.status.detail.pop("retry_in_seconds", None)
        if self.status.lifecycle in (State.BACKOFF, State.UNAUTHORIZED):
            self.log.info("writing again after: %s", self._failure or self.status.last_error)
            self.status.set_state(State.STOPPING if self._stopping() else State.RUNNING)
