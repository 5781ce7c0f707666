"""The route of a network sink: points → durable buffer (group commit) → batches → the store.

``put`` encodes a source's points to line protocol and queues them in memory; the committer
writes everything queued in one append + one ``fdatasync`` and only then calls each batch's
``done`` (the MQTT connector acknowledges QoS ≥ 1 messages there). The sender reads batches
of up to ``batch_size`` points from the buffer, writes them to the sink, and confirms them in
the buffer only once the store has them: a crash at any moment resends, never loses.

A store that is down does not slow collection: points go on queuing on disk up to
``max_size``; then ``drop_oldest`` drops whole oldest segment files (counted exactly, logged
once per episode) or ``block`` makes ``put`` wait (back-pressure to the sources).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

from gateway.buffer._segments import Batch, SegmentLog
from gateway.component import OnStored, Sink, State
from gateway.lineprotocol import encode_batch, parse
from gateway.pipeline import Backoff, SinkWriter
from gateway.point import Point
from gateway.settings import BatchPolicy, BufferSettings, SinkConfig

__all__ = ["BufferedRoute", "LineProtocolSink", "resolve_buffer_settings"]


@runtime_checkable
class LineProtocolSink(Protocol):
    """A sink that takes line protocol as is (no decoding back into points)."""

    async def write_lines(self, body: bytes, count: int) -> None: ...


def resolve_buffer_settings(gateway: BufferSettings, override: BufferSettings | None) -> BufferSettings:
    """A sink's ``buffer:`` keys override the ``gateway.buffer`` ones they name."""
    if override is None:
        return gateway
    return gateway.model_copy(update={key: getattr(override, key) for key in override.model_fields_set})


def _format_size(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f}{unit}" if unit == "B" else f"{size:.1f}{unit}"
        size /= 1024
    return f"{size:.1f}GiB"


class BufferedRoute:
    """Feeds one network sink through its own durable buffer (see the module docstring)."""

    #: Delay between retries while the store refuses the credentials.
    UNAUTHORIZED_RETRY = 30.0
    #: Most encoded bytes waiting in memory for the next group commit (back-pressure beyond).
    MAX_PENDING_BYTES = 16 << 20
    #: Shortest time between two disk syncs: points arriving meanwhile share the next one, so a
    #: trickle of single messages costs at most 1/COMMIT_INTERVAL syncs per second, not one each.
    COMMIT_INTERVAL = 0.01
    #: Longest wait between retries of an unreachable store (a refused connection costs nothing,
    #: and the backlog should start draining soon after the store is back).
    MAX_RETRY_DELAY = 15.0
    #: How often depth and age are refreshed in the status.
    GAUGE_INTERVAL = 1.0

    def __init__(
        self,
        sink: Sink,
        policy: BatchPolicy,
        settings: BufferSettings,
        *,
        directory: Path | None = None,
        segment_size: int | None = None,
    ) -> None:
        self.sink = sink
        self.status = sink.status
        self.log = sink.log
        self.batch_size = policy.batch_size
        self.flush_interval = policy.flush_interval
        self.settings = settings
        self.directory = directory if directory is not None else settings.path / sink.name
        self.store = SegmentLog(
            self.directory,
            max_size=settings.max_size,
            overflow=settings.overflow,
            segment_size=segment_size,
            log=sink.log,
        )
        self.store.open()
        self._pending: list[tuple[bytes, int]] = []
        self._pending_done: list[OnStored] = []
        self._pending_bytes = 0
        self._pending_points = 0
        self._wake_committer = asyncio.Event()
        self._data = asyncio.Event()
        self._space = asyncio.Event()
        self._space.set()
        self._closing = asyncio.Event()
        self._wake_at = 1  # unread points that wake the sender (a full batch while it waits to flush)
        self._deadline = float("inf")
        self._writer = SinkWriter(
            self.status,
            self.log,
            Backoff(initial=1.0, cap=self.MAX_RETRY_DELAY),
            stopping=self._closing.is_set,
            unauthorized_retry=lambda: self.UNAUTHORIZED_RETRY,
        )
        self._disk_backoff = Backoff(initial=0.5, cap=10.0)
        self._unsent_since: float | None = time.monotonic() - policy.flush_interval if self.store.depth_points else None
        self._drop_episode: int | None = None  # points dropped in the current full-buffer episode
        self._blocked = False
        for counter in (
            "points_buffered",
            "points_written",
            "points_rejected",
            "points_retried",
            "points_dropped",
            "batches_written",
            "write_errors",
        ):
            self.status.counters.setdefault(counter, 0)
        self.status.detail.update(
            buffer_path=str(self.directory),
            max_size=settings.max_size,
            overflow=settings.overflow,
        )
        for damage in self.store.damage:
            self.status.record_error(damage.describe())
            self.status.count("buffer_damaged_bytes", damage.end - damage.start)
        if self.store.depth_points:
            self.log.info(
                "resuming: %d points (%s) were waiting in the buffer %s",
                self.store.depth_points,
                _format_size(self.store.depth_bytes),
                self.directory,
            )
        self._update_gauges()

    @classmethod
    def for_sink(cls, sink: Sink, config: SinkConfig, gateway_buffer: BufferSettings) -> BufferedRoute:
        """The route the runtime builds for a network sink (per-sink ``buffer:`` keys win)."""
        override = getattr(config, "buffer", None)
        settings = resolve_buffer_settings(gateway_buffer, override if isinstance(override, BufferSettings) else None)
        return cls(sink, config, settings)

    # --- in: put and the group committer ----------------------------------------------------

    @property
    def queued_points(self) -> int:
        """Points queued in memory for the next group commit (not yet durable)."""
        return self._pending_points

    async def put(self, points: Sequence[Point], done: OnStored) -> None:
        """Queue ``points``; ``done`` is called once they are durably in the buffer."""
        if not points:
            done()
            return
        size = self.batch_size
        chunks = [(encode_batch(points[i : i + size]), len(points[i : i + size])) for i in range(0, len(points), size)]
        nbytes = sum(len(body) for body, _ in chunks)
        while not self._closing.is_set() and self._must_wait(nbytes):
            self._space.clear()
            await self._space.wait()
        self._pending.extend(chunks)
        self._pending_done.append(done)
        self._pending_bytes += nbytes
        self._pending_points += len(points)
        self._wake_committer.set()

    def _must_wait(self, nbytes: int) -> bool:
        if self._pending_bytes and self._pending_bytes + nbytes > self.MAX_PENDING_BYTES:
            return True
        if self.settings.overflow != "block":
            return False
        if self.store.room_for(self._pending_bytes + nbytes) or not (self.store.disk_bytes or self._pending_bytes):
            if self._blocked:
                self._blocked = False
                self.log.info("buffer has room again: sources resume")
            return False
        if not self._blocked:
            self._blocked = True
            self.status.count("buffer_full_episodes")
            self.log.warning(
                "buffer full (%s, max_size %s) and overflow is 'block': slowing the sources until the store "
                "takes data again",
                _format_size(self.store.disk_bytes),
                _format_size(self.settings.max_size),
            )
        return True

    async def _commit_loop(self) -> None:
        try:
            await self._commit_forever()
        finally:
            self._data.set()  # the sender watches for the committer's end during a stop

    async def _commit_forever(self) -> None:
        last_commit = 0.0
        while True:
            if not self._pending:
                if self._closing.is_set():
                    return
                self._wake_committer.clear()
                await self._wake_committer.wait()
                continue
            wait = last_commit + self.COMMIT_INTERVAL - time.monotonic()
            if wait > 0 and not self._closing.is_set() and self._pending_bytes < self.MAX_PENDING_BYTES // 4:
                await asyncio.sleep(wait)
            last_commit = time.monotonic()
            chunks, dones = self._pending, self._pending_done
            nbytes, npoints = self._pending_bytes, self._pending_points
            self._pending, self._pending_done = [], []
            records = _merge(chunks, self.batch_size)
            try:
                dropped = await asyncio.to_thread(self.store.append, records)
            except OSError as exc:
                self._pending[:0], self._pending_done[:0] = chunks, dones
                if not await self._disk_failed(exc, npoints):
                    return
                continue
            self._disk_backoff.reset()
            self._pending_bytes -= nbytes
            self._pending_points -= npoints
            self._space.set()
            self.status.count("points_buffered", npoints)
            if dropped:
                self._dropped(dropped)
            for done in dones:
                try:
                    done()
                except Exception:  # a source's callback must not stop the buffer
                    self.log.exception("error in a source's acknowledgement callback")
            if self._unsent_since is None:
                self._unsent_since = time.monotonic()
            if self.store.unread_points >= self._wake_at:
                self._data.set()
            self._update_gauges()

    async def _disk_failed(self, exc: OSError, points: int) -> bool:
        """The buffer file cannot be written: keep the points in memory and retry (False: give up)."""
        message = f"cannot write the buffer in {self.directory}: {exc.strerror or exc}"
        if self.status.last_error != message:
            self.log.error(
                "%s; %d points wait in memory (not acknowledged to their sources) and the write is retried",
                message,
                points,
            )
        self.status.record_error(message)
        self.status.count("buffer_write_errors")
        delay = self._disk_backoff.next_delay()
        if self._closing.is_set() and time.monotonic() + delay > self._deadline:
            self.status.count("points_lost_on_shutdown", self._pending_points)
            self.log.error(
                "stopping with %d points that could not be written to the buffer (their sources were not "
                "acknowledged: MQTT QoS 1/2 messages are redelivered)",
                self._pending_points,
            )
            return False
        await asyncio.sleep(delay)
        return True

    def _dropped(self, count: int) -> None:
        self.status.count("points_dropped", count)
        if self._drop_episode is None:
            self._drop_episode = 0
            self.status.count("buffer_full_episodes")
            self.status.record_error(f"buffer full: dropping the oldest points (max_size {self.settings.max_size})")
            self.log.warning(
                "buffer full (max_size %s): dropping the oldest points to keep collecting (overflow: drop_oldest); "
                "the count is in points_dropped. Check the store, or raise max_size",
                _format_size(self.settings.max_size),
            )
        self._drop_episode += count

    def _check_drop_episode(self) -> None:
        if self._drop_episode is not None and self.store.disk_bytes < self.settings.max_size // 2:
            self.log.info("buffer has room again: %d points were dropped while it was full", self._drop_episode)
            self._drop_episode = None

    # --- out: the sender ---------------------------------------------------------------------

    async def run(self) -> None:
        """Commit, send and confirm until drained; the buffer files are closed on the way out."""
        self.status.set_state(State.RUNNING)
        committer = asyncio.create_task(self._commit_loop(), name=f"buffer-commit:{self.sink.name}")
        gauges = asyncio.create_task(self._gauge_loop(), name=f"buffer-gauges:{self.sink.name}")
        try:
            await self._send_loop(committer)
            await committer
        finally:
            gauges.cancel()
            if not committer.done():
                committer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(committer, gauges, return_exceptions=True)
            self._update_gauges()
            if self.store.depth_points:
                self.log.info(
                    "%d points (%s) stay in the buffer %s; they are sent when the gateway starts again",
                    self.store.depth_points,
                    _format_size(self.store.depth_bytes),
                    self.directory,
                )
            self.store.close()

    async def _send_loop(self, committer: asyncio.Task[None]) -> None:
        while True:
            if self.store.unread_points <= 0:
                self._unsent_since = None
                self._data.clear()
                if self._closing.is_set():
                    if committer.done():
                        return
                    await _first_of([committer, self._data.wait()], None)
                else:
                    await _first_of([self._data.wait(), self._closing.wait()], None)
                continue
            if not self._closing.is_set() and self.store.unread_points < self.batch_size:
                since = self._unsent_since if self._unsent_since is not None else time.monotonic()
                remaining = since + self.flush_interval - time.monotonic()
                if remaining > 0:
                    self._data.clear()
                    self._wake_at = self.batch_size
                    try:
                        await _first_of([self._data.wait(), self._closing.wait()], remaining)
                    finally:
                        self._wake_at = 1
                    continue
            if self._closing.is_set() and time.monotonic() >= self._deadline:
                return
            batch = await asyncio.to_thread(self.store.read, self.batch_size)
            if batch is None:
                continue  # nothing was readable after all (damaged records skipped): wait for data
            if self.store.unread_points <= 0:
                self._unsent_since = None
            if await self._deliver(batch):
                await asyncio.to_thread(self.store.ack, batch)
                self._space.set()
                self._check_drop_episode()
                self._update_gauges()
            else:
                lost = self.store.release(batch)
                if lost:
                    self.status.count("points_dropped", lost)
                return

    async def _deliver(self, batch: Batch) -> bool:
        """Write ``batch`` until the store has it (True), or a shutdown interrupts the retries (False)."""
        if batch.count == 0:
            return True
        while True:
            delay = await self._writer.attempt(lambda: self._write(batch), batch.count)
            if delay is None:
                return True
            if self._closing.is_set():
                return False  # the points are safe on disk: a stop does not wait for the store
            await _first_of([self._closing.wait()], delay)
            if self._closing.is_set():
                return False
            self.status.count("points_retried", batch.count)

    async def _write(self, batch: Batch) -> None:
        if isinstance(self.sink, LineProtocolSink):
            await self.sink.write_lines(batch.body, batch.count)
        else:
            await self.sink.write(parse(batch.body.decode()))

    # --- status and shutdown -------------------------------------------------------------------

    async def _gauge_loop(self) -> None:
        while True:
            await asyncio.sleep(self.GAUGE_INTERVAL)
            self._update_gauges()
            self._check_drop_episode()

    def _update_gauges(self) -> None:
        oldest = self.store.oldest_ns() if not self.store.closed else None
        self.status.detail.update(
            depth_points=self.store.depth_points,
            depth_bytes=self.store.depth_bytes,
            disk_bytes=self.store.disk_bytes,
            oldest_age_seconds=round(max(0.0, (time.time_ns() - oldest) / 1e9), 3) if oldest else 0.0,
            queued_points=self._pending_points,
        )

    async def drain(self, deadline: float) -> None:
        """Stop: commit what is queued (sources get their acknowledgements), send until ``deadline``
        or the first failure, and leave the rest on disk for the next start."""
        self._deadline = deadline
        self._closing.set()
        self._wake_committer.set()
        self._data.set()
        self._space.set()

    def close(self) -> None:
        """Release the buffer files (``run`` does it itself; this is for a route never run)."""
        self.store.close()


async def _first_of(awaitables: Sequence[Awaitable[object]], timeout: float | None) -> None:
    """Wait until one of ``awaitables`` finishes or ``timeout`` passes; cancel the waits we made."""
    futures = [asyncio.ensure_future(a) for a in awaitables]
    try:
        await asyncio.wait(futures, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for future, awaitable in zip(futures, awaitables, strict=True):
            if future is not awaitable:
                future.cancel()


def _merge(chunks: list[tuple[bytes, int]], batch_size: int) -> list[tuple[bytes, int]]:
    """Join small chunks into records of at most ``batch_size`` points (one record per write)."""
    records: list[tuple[bytes, int]] = []
    bodies: list[bytes] = []
    count = 0
    for body, points in chunks:
        if bodies and count + points > batch_size:
            records.append((b"".join(bodies), count))
            bodies, count = [], 0
        bodies.append(body)
        count += points
    if bodies:
        records.append((b"".join(bodies), count))
    return records
