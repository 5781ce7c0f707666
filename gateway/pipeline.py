"""From sources to sinks: batching, retries and acknowledgements, written once for every sink.

Each sink gets a :class:`SinkRunner`: a bounded queue (a full queue makes ``emit`` wait, which
slows the sources instead of growing memory), a writer task that groups points by the sink's
:class:`~gateway.settings.BatchPolicy`, retries with capped exponential backoff and jitter, and
calls each batch's ``done`` once the sink has stored it. A source's batch that goes to several
sinks is acknowledged when all of them have it (:func:`fan_out`).

What each sink error means here (the sink says what to do next):

- ``SinkUnavailable``: retry with backoff (or after the Retry-After the store asked for);
- ``SinkUnauthorized``: state ``unauthorized``, retry slowly, keep everything;
- ``SinkRejected``: those points are dropped and counted, the batch is done;
- anything else is a bug in the sink: logged with its traceback, retried like ``SinkUnavailable``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from gateway.component import OnStored, Sink, State, Status
from gateway.errors import SinkRejected, SinkUnauthorized, SinkUnavailable
from gateway.point import Point
from gateway.settings import BatchPolicy

__all__ = ["Backoff", "Route", "SinkRunner", "fan_out"]


def _noop() -> None:
    pass


class Route(Protocol):
    """Where a source's batches go: one per sink (the in-memory runner, or a durable buffer)."""

    status: Status

    async def put(self, points: Sequence[Point], done: OnStored) -> None: ...

    async def run(self) -> None: ...

    async def drain(self, deadline: float) -> None: ...


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


def fan_out(routes: Sequence[Route]) -> Callable[[Sequence[Point], OnStored | None], asyncio.Future[None] | object]:
    """An ``emit`` for one source: every batch goes to every route; ``on_stored`` runs once all have it."""

    if len(routes) == 1:
        route = routes[0]

        async def emit_one(points: Sequence[Point], on_stored: OnStored | None = None) -> None:
            await route.put(points, on_stored or _noop)

        return emit_one

    async def emit(points: Sequence[Point], on_stored: OnStored | None = None) -> None:
        remaining = len(routes)

        def done() -> None:
            nonlocal remaining
            remaining -= 1
            if remaining == 0 and on_stored is not None:
                on_stored()

        for route in routes:
            await route.put(points, done)

    return emit


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

    async def attempt(self, write: Callable[[], Awaitable[None]], count: int) -> float | None:
        started = time.perf_counter()
        try:
            await write()
        except SinkRejected as exc:
            self.status.count("points_rejected", exc.rejected)
            self.status.count("points_written", max(0, count - exc.rejected))  # the rest was stored
            self.status.count("batches_written")
            self.status.record_error(str(exc))
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
        self.status.count("write_errors")
        self.status.record_error(message)
        if self.status.state is not state:
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
        if self.status.state in (State.BACKOFF, State.UNAUTHORIZED):
            self.log.info("writing again after: %s", self.status.last_error)
            self.status.set_state(State.STOPPING if self._stopping() else State.RUNNING)


class _Item:
    __slots__ = ("arrived", "done", "points")

    def __init__(self, points: Sequence[Point], done: OnStored) -> None:
        self.points = points
        self.done = done
        self.arrived = time.monotonic()


class SinkRunner:
    """Feeds one sink: bounded in-memory queue → batches → writes with retries → ``done`` calls."""

    #: Delay between retries while the store refuses the credentials.
    UNAUTHORIZED_RETRY = 30.0

    def __init__(
        self, sink: Sink, policy: BatchPolicy, *, max_pending: int | None = None, backoff: Backoff | None = None
    ) -> None:
        self.sink = sink
        self.status = sink.status
        self.log: logging.LoggerAdapter[logging.Logger] = sink.log
        self.batch_size = policy.batch_size
        self.flush_interval = policy.flush_interval
        self.max_pending = max_pending or max(4 * policy.batch_size, 50_000)
        self._queue: deque[_Item] = deque()
        self._pending = 0
        self._writing_since: float | None = None  # when the oldest point of the batch being written arrived
        self._wakeup = asyncio.Event()
        self._space = asyncio.Event()
        self._space.set()
        self._closing = False
        self._drain_requested = asyncio.Event()
        self._deadline = float("inf")
        self._writer = SinkWriter(
            self.status,
            self.log,
            backoff or Backoff(),
            stopping=lambda: self._closing,
            unauthorized_retry=lambda: self.UNAUTHORIZED_RETRY,
        )
        for counter in ("points_written", "points_rejected", "write_errors", "batches_written"):
            self.status.counters.setdefault(counter, 0)

    @property
    def pending_points(self) -> int:
        return self._pending

    @property
    def oldest_age_seconds(self) -> float:
        """Seconds the oldest point not yet stored has waited (0 when none waits)."""
        since = self._writing_since
        if since is None and self._queue:
            since = self._queue[0].arrived
        return round(time.monotonic() - since, 3) if since is not None else 0.0

    def _update_detail(self) -> None:
        self.status.detail["pending_points"] = self._pending
        self.status.detail["oldest_age_seconds"] = self.oldest_age_seconds

    async def put(self, points: Sequence[Point], done: OnStored) -> None:
        while self._pending >= self.max_pending and not self._closing:
            self._space.clear()
            await self._space.wait()
        self._queue.append(_Item(points, done))
        self._pending += len(points)
        self._update_detail()
        self._wakeup.set()

    async def run(self) -> None:
        """Write batches until drained and closed."""
        self.status.set_state(State.RUNNING)
        try:
            await self._run()
        except asyncio.CancelledError:
            # Cancelled by the runtime when a write outlived the shutdown deadline.
            if self._pending:
                self._lost(self._pending)
                self._queue.clear()
                self._pending = 0
            raise

    def _lost(self, count: int) -> None:
        self.status.count("points_lost_on_shutdown", count)
        self.log.error(
            "stopping with %d points not stored: the store did not accept them in time "
            "(MQTT QoS 1/2 messages among them were not acknowledged and will be redelivered)",
            count,
        )

    async def _run(self) -> None:
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            await self._wait_for_batch()
            items = self._take_batch()
            self._writing_since = items[0].arrived
            stored = await self._write([p for item in items for p in item.points])
            self._writing_since = None
            count = sum(len(item.points) for item in items)
            self._pending -= count
            self._update_detail()
            self._space.set()
            if not stored:
                self._lost(count)
                continue
            for item in items:
                item.done()

    async def _wait_for_batch(self) -> None:
        first = self._queue[0].arrived
        while self._pending < self.batch_size and not self._closing:
            remaining = first + self.flush_interval - time.monotonic()
            if remaining <= 0:
                return
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except TimeoutError:
                return

    def _take_batch(self) -> list[_Item]:
        items = [self._queue.popleft()]
        size = len(items[0].points)
        while self._queue and size + len(self._queue[0].points) <= self.batch_size:
            item = self._queue.popleft()
            items.append(item)
            size += len(item.points)
        return items

    async def _write(self, points: list[Point]) -> bool:
        """Write in chunks of batch_size; True once stored (or rejected), False if shutdown cut it short."""
        for start in range(0, len(points), self.batch_size):
            if not await self._write_chunk(points[start : start + self.batch_size]):
                return False
        return True

    async def _write_chunk(self, chunk: list[Point]) -> bool:
        if not chunk:
            return True
        while True:
            if time.monotonic() > self._deadline:
                return False  # stopping, and the time to flush is over
            delay = await self._writer.attempt(lambda: self.sink.write(chunk), len(chunk))
            if delay is None:
                return True
            if time.monotonic() + delay > self._deadline:
                return False
            self._update_detail()  # the age grows while the store refuses
            await self._sleep(delay)

    async def _sleep(self, delay: float) -> None:
        """Wait before a retry; a stop (drain) cuts the wait short for one more try right away."""
        self._wakeup.clear()
        if self._closing:
            await asyncio.sleep(delay)  # (the caller checked that the retry comes before the deadline)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._drain_requested.wait(), delay)

    async def drain(self, deadline: float) -> None:
        """Stop accepting waits, write what is queued until ``deadline`` (monotonic), then return."""
        self._closing = True
        self._drain_requested.set()
        self._deadline = deadline
        self._wakeup.set()
        self._space.set()
