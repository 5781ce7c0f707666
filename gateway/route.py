"""The one route from the pipeline to a sink: queue → batches → writes with retries → acknowledgements.

Every sink gets one :class:`Route`, whatever holds its points while they wait:

- a :class:`MemoryQueue` for a sink whose own write is durable (the embedded historian): a
  source's batch is acknowledged (its ``done`` called) once the sink has written it;
- a :class:`~gateway.buffer.DiskQueue` for a sink behind a network (``needs_durable_buffer``):
  a batch is acknowledged once it is synced to the sink's buffer files, and the route removes
  it from there only after the store confirmed it.

What is written once, here, for both: the sink's life cycle (``open`` retried with backoff
while it fails, ``close`` at the end or when the sink is reconfigured), batching
(``batch_size`` points, or whatever waits once the oldest point has waited
``flush_interval``), what each sink error means (:class:`~gateway.pipeline.SinkWriter`),
retries with capped backoff, the stop (:meth:`Route.drain`): a memory queue writes what it
holds until the deadline, a disk queue keeps what the store did not take on disk for the next
start), and a live change of the sink's configuration (:meth:`Route.reconfigure`) that keeps
every point waiting in the queue.

One test suite runs against both queues (``tests/route/``).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections import deque
from collections.abc import Awaitable, Sequence
from typing import Protocol

from gateway.component import OnStored, Sink, State, Status
from gateway.errors import GatewayError, SinkUnauthorized
from gateway.lineprotocol import parse
from gateway.pipeline import Backoff, SinkWriter
from gateway.point import Point
from gateway.settings import BatchPolicy

__all__ = ["MemoryQueue", "PointQueue", "QueueBatch", "Route", "first_of"]


class QueueBatch(Protocol):
    """Points a queue hands out for one write."""

    @property
    def count(self) -> int: ...

    @property
    def lines(self) -> bytes | None:
        """The points as line protocol, when the queue holds them that way (else None)."""
        ...

    def points(self) -> Sequence[Point]: ...


class PointQueue(Protocol):
    """Where a route's points wait between ``put`` and a confirmed write."""

    #: Points left in the queue survive a stop (on disk): a stop does not wait for the store.
    durable: bool
    #: The queue sets this when ``unread_points`` reaches ``wake_at`` (and when it settles).
    data: asyncio.Event
    wake_at: int

    @property
    def unread_points(self) -> int:
        """Points waiting, not handed out for a write yet."""
        ...

    def attach(self, status: Status, log: logging.LoggerAdapter[logging.Logger]) -> None:
        """Report into ``status`` (the route's) from now on."""

    def oldest_unread(self) -> float | None:
        """Monotonic time since when the oldest unread point waits (None: none waits)."""

    async def put(self, points: Sequence[Point], done: OnStored) -> None:
        """Queue ``points`` (waits while the queue is full); ``done`` follows the queue's promise."""

    async def run(self) -> None:
        """Background work until the queue is closed and settled (the disk queue's group commits)."""

    def settled(self) -> bool:
        """Closing, and nothing more will become unread (a disk queue has committed everything)."""

    async def read(self, max_points: int) -> QueueBatch | None:
        """Up to ``max_points`` unread points (at least one stored record), or None."""

    async def confirm(self, batch: QueueBatch) -> None:
        """The sink has ``batch``: forget it (and acknowledge its sources, for a memory queue)."""

    def release(self, batch: QueueBatch) -> int:
        """``batch`` was not stored: hand it out again; returns points dropped meanwhile (counted)."""

    def begin_close(self, deadline: float | None = None) -> None:
        """Stop making ``put`` wait; commit whatever is pending (until ``deadline``, monotonic)."""

    def discard(self, *, acknowledge: bool) -> int:
        """Give up what only memory holds (a disk queue keeps everything); returns how many points.

        ``acknowledge``: call their sources' ``done`` anyway — for a sink the configuration
        removed, so its sources are not held back by points nobody wants any more. At a stop
        they are not acknowledged: MQTT QoS 1/2 messages among them are redelivered.
        """

    def update_gauges(self) -> None:
        """Refresh depth and age in the status."""

    async def aclose(self) -> None:
        """Release files once no disk work is running (after ``run`` returned)."""


class _Delivery(enum.Enum):
    STORED = "stored"
    STOPPED = "stopped"  # a stop ended the retries
    INTERRUPTED = "interrupted"  # a reconfiguration ended the retries


class Route:
    """Feeds one sink from its queue (see the module docstring)."""

    #: Delay between retries while the store refuses the credentials.
    UNAUTHORIZED_RETRY = 30.0
    #: Longest wait between retries of an unreachable store (a refused connection costs nothing,
    #: and a backlog should start draining soon after the store is back).
    MAX_RETRY_DELAY = 15.0
    #: How often depth and age are refreshed in the status.
    GAUGE_INTERVAL = 1.0

    def __init__(
        self,
        sink: Sink,
        policy: BatchPolicy,
        queue: PointQueue,
        *,
        backoff: Backoff | None = None,
        sink_open: bool = False,
    ) -> None:
        """``sink_open``: the caller opened the sink already (the route then only closes it)."""
        self.sink = sink
        self.status = sink.status
        self.log: logging.LoggerAdapter[logging.Logger] = sink.log
        self.queue = queue
        self.batch_size = policy.batch_size
        self.flush_interval = policy.flush_interval
        self._backoff = backoff or Backoff(initial=1.0, cap=self.MAX_RETRY_DELAY)
        self._closing = asyncio.Event()
        self._interrupt = asyncio.Event()  # cuts a retry wait short (a stop or a reconfiguration)
        self._deadline = float("inf")
        self._sending = asyncio.Lock()  # held while a batch is being delivered
        self._sink_open = sink_open
        self._flush_now = False  # write what waits without waiting out the flush interval (once)
        self._replacing = False
        self._removed = False
        self._writer = self._make_writer()
        queue.attach(self.status, self.log)
        for counter in ("points_written", "points_rejected", "write_errors", "batches_written"):
            self.status.counters.setdefault(counter, 0)

    def _make_writer(self) -> SinkWriter:
        return SinkWriter(
            self.status,
            self.log,
            self._backoff,
            stopping=self._closing.is_set,
            unauthorized_retry=lambda: self.UNAUTHORIZED_RETRY,
        )

    @property
    def name(self) -> str:
        return self.sink.name

    @property
    def closing(self) -> bool:
        return self._closing.is_set()

    # --- in ---------------------------------------------------------------------------------------

    async def put(self, points: Sequence[Point], done: OnStored) -> None:
        """Hand ``points`` to the queue; ``done`` is called once they are safe (see the module docstring)."""
        await self.queue.put(points, done)

    # --- the sender -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Open the sink, send until drained, close the sink; the queue's background work beside it."""
        self.status.set_state(State.STARTING)
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self.queue.run(), name=f"queue:{self.name}")
                gauges = tasks.create_task(self._gauge_loop(), name=f"gauges:{self.name}")
                try:
                    await self._send_loop()
                finally:
                    self.queue.begin_close()
                    gauges.cancel()
        except asyncio.CancelledError:
            # Cancelled by the runtime when a write outlived the stop's deadline.
            self._give_up()
            raise
        finally:
            self.queue.update_gauges()
            await self.queue.aclose()
            await self._close_sink()
            self.status.set_state(State.STOPPED)

    async def _gauge_loop(self) -> None:
        while True:
            await asyncio.sleep(self.GAUGE_INTERVAL)
            self.queue.update_gauges()

    async def _send_loop(self) -> None:
        queue = self.queue
        while True:
            if not self._sink_open and not await self._open_sink():
                self._give_up()  # stopping before the sink opened: kept on disk, or counted in memory
                return
            if queue.unread_points <= 0:
                if self._closing.is_set() and queue.settled():
                    return
                queue.wake_at = 1
                queue.data.clear()
                if queue.unread_points <= 0 and not (self._closing.is_set() and queue.settled()):
                    # While stopping, the interrupt stays set: wait for the queue alone (a disk
                    # queue sets ``data`` as it commits and once it has settled).
                    waits = [queue.data.wait()]
                    if not self._closing.is_set():
                        waits.append(self._interrupt.wait())
                    await first_of(waits, None)
                    self._clear_interrupt()
                continue
            if not self._closing.is_set() and queue.unread_points < self.batch_size and not self._flush_now:
                since = queue.oldest_unread()
                remaining = (since if since is not None else time.monotonic()) + self.flush_interval - time.monotonic()
                if remaining > 0:
                    queue.wake_at = self.batch_size
                    queue.data.clear()
                    try:
                        await first_of([queue.data.wait(), self._interrupt.wait()], remaining)
                    finally:
                        queue.wake_at = 1
                    self._clear_interrupt()
                    continue
            if self._closing.is_set() and time.monotonic() >= self._deadline:
                self._give_up()
                return
            self._flush_now = False
            async with self._sending:
                if not self._sink_open:
                    continue
                batch = await queue.read(self.batch_size)
                if batch is None:
                    continue  # nothing readable after all (a damaged record skipped)
                try:
                    outcome = await self._deliver(batch)
                except asyncio.CancelledError:
                    queue.release(batch)  # counted by the stop that cancelled the write
                    raise
                if outcome is _Delivery.STORED:
                    await queue.confirm(batch)
                    continue
                dropped = queue.release(batch)
                if dropped:
                    self.status.count("points_dropped", dropped)
            if outcome is _Delivery.STOPPED:
                self._give_up()
                return

    def _clear_interrupt(self) -> None:
        if not self._closing.is_set():
            self._interrupt.clear()

    async def _open_sink(self) -> bool:
        """Open the sink, retrying with backoff while it fails; False if a stop came first.

        While stopping, it is tried like a write: a disk queue once (its points are safe), a
        memory queue until the deadline.
        """
        backoff = Backoff(initial=self._backoff.initial, cap=self._backoff.cap)
        while True:
            if self._closing.is_set() and time.monotonic() >= self._deadline:
                return False
            sink = self.sink
            try:
                await sink.open()
            except Exception as exc:
                if sink is not self.sink:
                    continue  # replaced while it was opening: open the new one
                delay = backoff.next_delay()
                message = str(exc) or type(exc).__name__
                if self.status.last_error != message:
                    self.log.error(
                        "cannot open: %s; points wait in the queue, retrying in %.1fs",
                        message,
                        delay,
                        exc_info=not isinstance(exc, GatewayError),
                    )
                self.status.record_error(message)
                if self._closing.is_set():
                    if self.queue.durable or time.monotonic() + delay > self._deadline:
                        return False
                    await asyncio.sleep(delay)  # (the interrupt stays set while stopping)
                    continue
                self.status.set_state(State.UNAUTHORIZED if isinstance(exc, SinkUnauthorized) else State.BACKOFF)
                await first_of([self._interrupt.wait()], delay)
                self._clear_interrupt()
                continue
            if sink is not self.sink:  # replaced (reconfigure) while it was opening
                await self._close(sink)
                continue
            self._sink_open = True
            if not self._closing.is_set():
                self.status.set_state(State.RUNNING)
            return True

    async def _deliver(self, batch: QueueBatch) -> _Delivery:
        """Write ``batch`` until the store has it, a stop ends the retries, or a reconfiguration does."""
        if batch.count == 0:
            return _Delivery.STORED
        while True:
            if self._closing.is_set() and time.monotonic() >= self._deadline:
                return _Delivery.STOPPED
            delay = await self._writer.attempt(lambda: self._write(batch), batch.count)
            if delay is None:
                return _Delivery.STORED
            if self._replacing:
                return _Delivery.INTERRUPTED
            if self._closing.is_set():
                if self.queue.durable or time.monotonic() + delay > self._deadline:
                    return _Delivery.STOPPED  # on disk the points are safe: a stop does not wait for the store
                await asyncio.sleep(delay)  # a memory queue retries until the deadline
                continue
            await first_of([self._interrupt.wait()], delay)
            if self._replacing:
                return _Delivery.INTERRUPTED
            if self._closing.is_set() and self.queue.durable:
                return _Delivery.STOPPED
            # (a memory queue that is stopping tries once more right away instead of sleeping out the backoff)
            self.status.count("points_retried", batch.count)

    async def _write(self, batch: QueueBatch) -> None:
        sink = self.sink
        lines = batch.lines
        if lines is not None and sink.takes_line_protocol:
            await sink.write_lines(lines, batch.count)
        elif lines is not None:
            await sink.write(parse(lines.decode()))
        else:
            await sink.write(batch.points())

    def _give_up(self) -> None:
        """Stopping with points the store did not take: a memory queue gives them up (counted)."""
        lost = self.queue.discard(acknowledge=self._removed)
        if not lost:
            return
        if self._removed:
            self.status.count("points_discarded_on_removal", lost)
            self.log.warning(
                "removed from the configuration with %d points the store did not take in time: discarded "
                "(the other sinks of their connectors have them)",
                lost,
            )
            return
        self.status.count("points_lost_on_shutdown", lost)
        self.log.error(
            "stopping with %d points not stored: the store did not accept them in time "
            "(MQTT QoS 1/2 messages among them were not acknowledged and will be redelivered)",
            lost,
        )

    async def _close_sink(self) -> None:
        if not self._sink_open:
            return
        self._sink_open = False
        await self._close(self.sink)

    async def _close(self, sink: Sink) -> None:
        try:
            await sink.close()
        except Exception as exc:  # noqa: BLE001 - a failing close must not hide the stop's own outcome
            sink.log.warning("error while closing: %s", exc)

    # --- stop and reconfiguration -----------------------------------------------------------------

    def flush_soon(self) -> None:
        """Write what waits now rather than at the end of the flush interval (once).

        A connector restarted or removed by a reload waits for its last batches to be stored (so
        they are acknowledged before it disconnects): this keeps that wait short.
        """
        self._flush_now = True
        self._interrupt.set()

    async def drain(self, deadline: float, *, removed: bool = False) -> None:
        """Stop: write what waits until ``deadline`` (monotonic) — a disk queue keeps on disk what
        the store did not take — then :meth:`run` returns. Returns at once; await ``run`` to wait.

        ``removed``: the sink left the configuration; points a memory queue could not write by
        the deadline are acknowledged to their sources anyway (see :meth:`PointQueue.discard`).
        """
        self._deadline = deadline
        self._removed = removed
        self._closing.set()
        self._interrupt.set()
        self.status.set_state(State.STOPPING)
        self.queue.begin_close(deadline)
        self.queue.data.set()

    async def reconfigure(self, sink: Sink, policy: BatchPolicy) -> None:
        """Replace the sink (a changed configuration) without losing a queued point.

        A write in flight finishes with the old sink first; a retry wait is cut short and its
        batch goes back to the queue; the old sink is closed and the new one opened by the sender
        (with backoff while it fails). Counters and histograms carry over, so /metrics never
        sees a counter go back.
        """
        self._replacing = True
        self._interrupt.set()
        try:
            async with self._sending:
                await self._close_sink()
                sink.status.counters.update(
                    {k: v + sink.status.counters.get(k, 0) for k, v in self.status.counters.items()}
                )
                sink.status.histograms.update(self.status.histograms)
                for key in ("pending_points", "oldest_age_seconds", "buffer_path", "max_size", "overflow"):
                    if key in self.status.detail and key not in sink.status.detail:
                        sink.status.detail[key] = self.status.detail[key]
                self.sink = sink
                self.status = sink.status
                self.log = sink.log
                self.batch_size = policy.batch_size
                self.flush_interval = policy.flush_interval
                self._writer = self._make_writer()
                self.queue.attach(self.status, self.log)
                self.status.set_state(State.STARTING)
        finally:
            self._replacing = False
            self._clear_interrupt()
        self.queue.data.set()  # wake the sender: it opens the new sink


async def first_of(awaitables: Sequence[Awaitable[object]], timeout: float | None) -> None:
    """Wait until one of ``awaitables`` finishes or ``timeout`` passes; cancel the waits made here."""
    futures = [asyncio.ensure_future(a) for a in awaitables]
    try:
        await asyncio.wait(futures, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for future, awaitable in zip(futures, awaitables, strict=True):
            if future is not awaitable:
                future.cancel()


# --- the memory queue ----------------------------------------------------------------------------


class _Item:
    __slots__ = ("arrived", "done", "points")

    def __init__(self, points: Sequence[Point], done: OnStored, arrived: float) -> None:
        self.points = points
        self.done = done
        self.arrived = arrived


class _MemoryBatch:
    __slots__ = ("count", "items")

    lines = None

    def __init__(self, items: list[_Item]) -> None:
        self.items = items
        self.count = sum(len(item.points) for item in items)

    def points(self) -> Sequence[Point]:
        if len(self.items) == 1:
            return self.items[0].points
        return [point for item in self.items for point in item.points]


class MemoryQueue:
    """A bounded in-memory queue: a full queue makes ``put`` wait, which slows the sources
    instead of growing memory; a batch's ``done`` is called once the sink has written it."""

    durable = False

    def __init__(self, batch_size: int, *, max_pending: int | None = None) -> None:
        self.batch_size = batch_size
        self.max_pending = max_pending or max(4 * batch_size, 50_000)
        self.data = asyncio.Event()
        self.wake_at = 1
        self.status: Status | None = None
        self.log: logging.LoggerAdapter[logging.Logger] | None = None
        self._items: deque[_Item] = deque()
        self._unread = 0
        self._pending = 0  # unread + handed out, not confirmed
        self._writing_since: float | None = None
        self._space = asyncio.Event()
        self._space.set()
        self._closing = False
        self._closed = asyncio.Event()

    @property
    def unread_points(self) -> int:
        return self._unread

    @property
    def pending_points(self) -> int:
        return self._pending

    def attach(self, status: Status, log: logging.LoggerAdapter[logging.Logger]) -> None:
        self.status = status
        self.log = log
        self.update_gauges()

    def oldest_unread(self) -> float | None:
        return self._items[0].arrived if self._items else None

    @property
    def oldest_age_seconds(self) -> float:
        """Seconds the oldest point not yet stored has waited (0 when none waits)."""
        since = self._writing_since
        if since is None and self._items:
            since = self._items[0].arrived
        return round(time.monotonic() - since, 3) if since is not None else 0.0

    async def put(self, points: Sequence[Point], done: OnStored) -> None:
        if not points:
            done()
            return
        while self._pending >= self.max_pending and not self._closing:
            self._space.clear()
            await self._space.wait()
        now = time.monotonic()
        if len(points) <= self.batch_size:
            self._items.append(_Item(points, done, now))
        else:  # every item fits in one write; the source's done waits for all of its parts
            parts = [points[i : i + self.batch_size] for i in range(0, len(points), self.batch_size)]
            remaining = len(parts)

            def part_done() -> None:
                nonlocal remaining
                remaining -= 1
                if remaining == 0:
                    done()

            self._items.extend(_Item(part, part_done, now) for part in parts)
        self._unread += len(points)
        self._pending += len(points)
        if self.status is not None:
            self.status.detail["pending_points"] = self._pending
        if self._unread >= self.wake_at:
            self.data.set()

    async def run(self) -> None:
        await self._closed.wait()

    def settled(self) -> bool:
        return self._closing

    async def read(self, max_points: int) -> _MemoryBatch | None:
        if not self._items:
            return None
        items = [self._items.popleft()]
        size = len(items[0].points)
        while self._items and size + len(self._items[0].points) <= max_points:
            item = self._items.popleft()
            items.append(item)
            size += len(item.points)
        self._unread -= size
        self._writing_since = items[0].arrived
        return _MemoryBatch(items)

    async def confirm(self, batch: QueueBatch) -> None:
        assert isinstance(batch, _MemoryBatch)
        self._settle(batch)
        for item in batch.items:
            try:
                item.done()
            except Exception:  # a source's callback must not stop the route
                if self.log is not None:
                    self.log.exception("error in a source's acknowledgement callback")

    def release(self, batch: QueueBatch) -> int:
        assert isinstance(batch, _MemoryBatch)
        self._items.extendleft(reversed(batch.items))
        self._unread += batch.count
        self._writing_since = None
        return 0

    def _settle(self, batch: _MemoryBatch) -> None:
        self._pending -= batch.count
        self._writing_since = None
        self._space.set()
        self.update_gauges()

    def begin_close(self, deadline: float | None = None) -> None:
        self._closing = True
        self._space.set()
        self._closed.set()

    def discard(self, *, acknowledge: bool) -> int:
        items, self._items = list(self._items), deque()
        count = sum(len(item.points) for item in items)
        self._unread -= count
        self._pending -= count
        if acknowledge:
            for item in items:
                with contextlib.suppress(Exception):
                    item.done()
        self._space.set()
        self.update_gauges()
        return count

    def update_gauges(self) -> None:
        if self.status is not None:
            self.status.detail["pending_points"] = self._pending
            self.status.detail["oldest_age_seconds"] = self.oldest_age_seconds

    async def aclose(self) -> None:
        self._closed.set()
