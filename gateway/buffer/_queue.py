"""The disk queue of a network sink's route: points → group commit to segment files → batches.

``put`` encodes a source's points to line protocol and queues them in memory; the committer
writes everything queued in one append + one ``fdatasync`` and only then calls each batch's
``done`` (the MQTT connector acknowledges QoS ≥ 1 messages there). The route reads batches
of up to ``batch_size`` points, writes them to the sink, and confirms them here only once
the store has them: a crash at any moment resends, never loses.

A store that is down does not slow collection: points go on queuing on disk up to
``max_size``; then ``drop_oldest`` drops whole oldest segment files (counted exactly, logged
once per episode) or ``block`` makes ``put`` wait (back-pressure to the sources).

A disk that cannot be written never stops the gateway, and never costs an acknowledged point:

- the files are opened by :meth:`DiskQueue.run`, not when the queue is built, and that is
  retried with backoff while it fails (a gateway started on a full disk comes up and waits);
  until then ``put`` waits, so nothing is acknowledged to the sources (MQTT QoS 1/2 messages
  stay with the broker). Only the folder's lock is taken at once: a second gateway on the
  same folder is refused at its start;
- a group commit that fails keeps its points in memory, not acknowledged, and is retried with
  backoff; beyond ``MAX_PENDING_BYTES`` ``put`` waits.

While either lasts the sink shows the condition ``disk_full`` (the filesystem has no room:
ENOSPC, EDQUOT) or ``backoff`` (another error), one log line per episode says how many points
wait unacknowledged, and one more says when the buffer is written again. A full disk is not
``max_size``: nothing is dropped for it, the points wait at their sources instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from gateway.buffer._migrate import adopt_buffer
from gateway.buffer._segments import HEADER_SIZE, Batch, BufferInUse, SegmentLog, is_disk_full
from gateway.component import OnStored, State, Status
from gateway.errors import GatewayError
from gateway.lineprotocol import encode_batch, parse
from gateway.pipeline import Backoff
from gateway.point import Point
from gateway.settings import BufferSettings

__all__ = ["DiskQueue", "format_size", "resolve_buffer_settings"]

T = TypeVar("T")


def resolve_buffer_settings(gateway: BufferSettings, override: BufferSettings | None) -> BufferSettings:
    """A sink's ``buffer:`` keys override the ``gateway.buffer`` ones they name."""
    if override is None:
        return gateway
    return gateway.model_copy(update={key: getattr(override, key) for key in override.model_fields_set})


def format_size(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f}{unit}" if unit == "B" else f"{size:.1f}{unit}"
        size /= 1024
    return f"{size:.1f}GiB"


class _DiskBatch:
    __slots__ = ("batch",)

    def __init__(self, batch: Batch) -> None:
        self.batch = batch

    @property
    def count(self) -> int:
        return self.batch.count

    @property
    def lines(self) -> bytes:
        return self.batch.body

    def points(self) -> Sequence[Point]:
        return parse(self.batch.body.decode())


class DiskQueue:
    """A sink's durable buffer as the route's queue (see the module docstring)."""

    durable = True

    #: Most encoded bytes waiting in memory for the next group commit (back-pressure beyond).
    MAX_PENDING_BYTES = 16 << 20
    #: Shortest time between two disk syncs: points arriving meanwhile share the next one, so a
    #: trickle of single messages costs at most 1/COMMIT_INTERVAL syncs per second, not one each.
    COMMIT_INTERVAL = 0.01

    def __init__(
        self,
        directory: Path,
        settings: BufferSettings,
        batch_size: int,
        log: logging.LoggerAdapter[logging.Logger],
        *,
        segment_size: int | None = None,
        adopt: Sequence[Path] = (),
    ) -> None:
        self.directory = directory
        self.settings = settings
        self.batch_size = batch_size
        self.log = log
        self.status = Status(name=directory.name, kind="sink", type="buffer")
        #: folders whose files this queue takes over when it opens (a buffer moved by the config)
        self._adopt = [previous for previous in adopt if previous.resolve() != directory.resolve()]
        self.store = SegmentLog(
            directory,
            max_size=settings.max_size,
            overflow=settings.overflow,
            segment_size=segment_size,
            log=log,
        )
        #: the files were opened here, so status shows what waits from the first moment
        self._opened_early = False
        try:
            self.store.lock()
        except BufferInUse:
            raise  # another gateway's buffer: refuse to start rather than share it
        except (OSError, GatewayError):
            pass  # a full or read-only disk: run() opens the folder once it can
        else:
            if not self._adopt:  # moving folders is slow: it waits for run() and its thread
                try:
                    self.store.open()
                    self._opened_early = True
                except (OSError, GatewayError):
                    pass  # run() retries with backoff and shows why
        self.data = asyncio.Event()
        self.wake_at = 1
        self._pending: list[tuple[bytes, int]] = []
        self._pending_done: list[OnStored] = []
        self._pending_bytes = 0
        self._pending_points = 0
        self._wake_committer = asyncio.Event()
        self._space = asyncio.Event()
        self._space.set()
        self._closing = False
        self._close_requested = asyncio.Event()  # cuts a wait for the disk short (a stop)
        self._committer_done = False
        self._disk_work: set[asyncio.Future[Any]] = set()  # segment-file work running in worker threads
        self._deadline = float("inf")
        self._disk_backoff = Backoff(initial=0.5, cap=10.0)
        self._unsent_since: float | None = None
        self._drop_episode: int | None = None  # points dropped in the current full-buffer episode
        self._blocked = False
        self._opened = False
        #: what keeps the files from being written now (None: nothing), and since when
        self._trouble: str | None = None
        self._trouble_since = 0.0
        self._condition: State | None = None

    def attach(self, status: Status, log: logging.LoggerAdapter[logging.Logger]) -> None:
        self.status = status
        self.log = log
        for counter in ("points_buffered", "points_retried", "points_dropped"):
            status.counters.setdefault(counter, 0)
        status.detail.update(
            buffer_path=str(self.directory),
            max_size=self.settings.max_size,
            overflow=self.settings.overflow,
        )
        status.set_condition(self._condition)  # (a new sink's status after a reconfiguration)
        self.update_gauges()

    def reconfigure(self, settings: BufferSettings, batch_size: int) -> None:
        """New bounds for the same folder (a reload changed ``max_size`` or ``overflow``)."""
        self.settings = settings
        self.batch_size = batch_size
        self.store.max_size = settings.max_size
        self.store.overflow = settings.overflow
        self.status.detail.update(max_size=settings.max_size, overflow=settings.overflow)
        self._space.set()

    @property
    def unread_points(self) -> int:
        return self.store.unread_points

    @property
    def queued_points(self) -> int:
        """Points queued in memory for the next group commit (not yet durable)."""
        return self._pending_points

    def oldest_unread(self) -> float | None:
        return self._unsent_since

    # --- in: put and the group committer ----------------------------------------------------

    async def put(self, points: Sequence[Point], done: OnStored) -> None:
        """Queue ``points``; ``done`` is called once they are durably in the buffer."""
        if not points:
            done()
            return
        size = self.batch_size
        chunks = [(encode_batch(points[i : i + size]), len(points[i : i + size])) for i in range(0, len(points), size)]
        # What they take on disk at most: each chunk a record with its header (the committer
        # may join chunks into fewer records), so that ``block`` keeps the files under max_size.
        nbytes = sum(len(body) + HEADER_SIZE for body, _ in chunks)
        # Until the files are open nothing can be made durable: the sources wait, unacknowledged.
        while not self._closing and (not self._opened or self._must_wait(nbytes)):
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
                format_size(self.store.disk_bytes),
                format_size(self.settings.max_size),
            )
        return True

    async def run(self) -> None:
        """Open the files (retried while the disk refuses), then the group committer until the
        queue is closed and everything queued is on disk."""
        try:
            if await self._open():
                await self._commit_forever()
            elif self._pending_points:
                self._lost_at_stop()
        finally:
            self._committer_done = True
            self.data.set()  # the route watches for the committer's end during a stop

    async def _open(self) -> bool:
        """Take over moved folders and open the files, retrying with backoff; False if a stop came first."""
        if self._opened_early:
            self._opened_now()
            return True
        while not self._closing:
            try:
                await self._on_disk(self._open_files)
            except (OSError, GatewayError) as exc:
                self._disk_trouble(exc, "cannot open")
                await self._retry_wait()
                continue
            self._opened_now()
            return True
        return False

    def _open_files(self) -> None:  # (in a worker thread)
        for previous in self._adopt:
            adopt_buffer(previous, self.directory, self.log)
        self._adopt = []
        self.store.open()

    def _opened_now(self) -> None:
        self._opened = True
        store = self.store
        for damage in store.damage:
            self.status.record_error(damage.describe())
            self.status.count("buffer_damaged_bytes", damage.end - damage.start)
        if store.depth_points:
            self._unsent_since = time.monotonic() - 3600  # a resumed backlog is sent at once
            self.log.info(
                "resuming: %d points (%s) were waiting in the buffer %s",
                store.depth_points,
                format_size(store.depth_bytes),
                self.directory,
            )
        self._disk_recovered()
        self._space.set()
        self.data.set()
        self.update_gauges()

    def settled(self) -> bool:
        return self._committer_done

    async def _commit_forever(self) -> None:
        last_commit = 0.0
        while True:
            if not self._pending:
                if self._closing:
                    return
                self._wake_committer.clear()
                await self._wake_committer.wait()
                continue
            wait = last_commit + self.COMMIT_INTERVAL - time.monotonic()
            if wait > 0 and not self._closing and self._pending_bytes < self.MAX_PENDING_BYTES // 4:
                await asyncio.sleep(wait)
            last_commit = time.monotonic()
            chunks, dones = self._pending, self._pending_done
            nbytes, npoints = self._pending_bytes, self._pending_points
            self._pending, self._pending_done = [], []
            records = _merge(chunks, self.batch_size)
            try:
                dropped = await self._on_disk(self.store.append, records)
            except OSError as exc:
                self._pending[:0], self._pending_done[:0] = chunks, dones
                if not await self._disk_failed(exc):
                    return
                continue
            self._disk_recovered()
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
            if self.store.unread_points >= self.wake_at:
                self.data.set()
            self.update_gauges()

    async def _disk_failed(self, exc: OSError) -> bool:
        """The buffer file cannot be written: keep the points in memory and retry (False: give up)."""
        self._disk_trouble(exc, "cannot write")
        self.status.count("buffer_write_errors")
        delay = self._disk_backoff.next_delay()
        if self._closing and time.monotonic() + delay > self._deadline:
            self._lost_at_stop()
            return False
        if self._closing:
            await asyncio.sleep(delay)  # (the retry comes before the deadline)
        else:  # a stop cuts the wait short: one more try at once, then the deadline decides
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._close_requested.wait(), delay)
        return True

    async def _retry_wait(self) -> None:
        """Wait out the disk's backoff, or until a stop is requested."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._close_requested.wait(), self._disk_backoff.next_delay())

    def _lost_at_stop(self) -> None:
        self.status.count("points_lost_on_shutdown", self._pending_points)
        self.log.error(
            "stopping with %d points that could not be written to the buffer (their sources were not "
            "acknowledged: MQTT QoS 1/2 messages are redelivered)",
            self._pending_points,
        )

    def _disk_trouble(self, exc: BaseException, doing: str) -> None:
        """Show why the files cannot be written (disk_full or backoff); log once per episode."""
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        full = is_disk_full(exc)
        if full:
            message = f"the disk holding the buffer {self.directory} is full ({reason})"
        elif isinstance(exc, OSError):
            message = f"{doing} the buffer in {self.directory}: {reason}"
        else:
            message = reason  # a GatewayError names the folder already
        self._condition = State.DISK_FULL if full else State.BACKOFF
        self.status.record_error(message)
        self.status.set_condition(self._condition)
        if self._trouble == message:
            return
        if self._trouble is None:
            self._trouble_since = time.monotonic()
        self._trouble = message
        if self._opened:
            waiting = (
                f"{self._pending_points} points ({format_size(self._pending_bytes)}) wait in memory, not "
                "acknowledged to their sources (MQTT QoS 1/2 messages stay with the broker), and what comes next "
                "waits at the sources"
            )
        else:
            waiting = "points wait at their sources, not acknowledged (MQTT QoS 1/2 messages stay with the broker)"
        self.log.error(
            "%s; %s%s; retrying until it works", message, waiting, ": free some space on that disk" if full else ""
        )

    def _disk_recovered(self) -> None:
        self._disk_backoff.reset()
        if self._trouble is None:
            return
        self.log.info(
            "the buffer %s is written again after %.0fs (%s)",
            self.directory,
            time.monotonic() - self._trouble_since,
            self._trouble,
        )
        self._trouble = None
        self._condition = None
        self.status.set_condition(None)

    def _dropped(self, count: int) -> None:
        self.status.count("points_dropped", count)
        if self._drop_episode is None:
            self._drop_episode = 0
            self.status.count("buffer_full_episodes")
            self.status.record_error(f"buffer full: dropping the oldest points (max_size {self.settings.max_size})")
            self.log.warning(
                "buffer full (max_size %s): dropping the oldest points to keep collecting (overflow: drop_oldest); "
                "the count is in points_dropped. Check the store, or raise max_size",
                format_size(self.settings.max_size),
            )
        self._drop_episode += count

    def _check_drop_episode(self) -> None:
        if self._drop_episode is not None and self.store.disk_bytes < self.settings.max_size // 2:
            self.log.info("buffer has room again: %d points were dropped while it was full", self._drop_episode)
            self._drop_episode = None

    async def _on_disk(self, work: Callable[..., T], *args: Any) -> T:
        """Run ``work`` in a worker thread (the loop never waits on the disk), remembering it until done."""
        future = asyncio.get_running_loop().run_in_executor(None, work, *args)
        self._disk_work.add(future)
        future.add_done_callback(self._disk_work.discard)
        return await future

    # --- out: batches for the route ----------------------------------------------------------

    async def read(self, max_points: int) -> _DiskBatch | None:
        batch = await self._on_disk(self.store.read, max_points)
        if self.store.unread_points <= 0:
            self._unsent_since = None
        return None if batch is None else _DiskBatch(batch)

    async def confirm(self, batch: object) -> None:
        assert isinstance(batch, _DiskBatch)
        await self._on_disk(self.store.ack, batch.batch)
        if self.store.unread_points <= 0:
            self._unsent_since = None
        self._space.set()
        self._check_drop_episode()
        self.update_gauges()

    def release(self, batch: object) -> int:
        assert isinstance(batch, _DiskBatch)
        lost = self.store.release(batch.batch)
        if self.store.unread_points > 0 and self._unsent_since is None:
            self._unsent_since = time.monotonic()
        return lost

    # --- status and stop ---------------------------------------------------------------------------

    def begin_close(self, deadline: float | None = None) -> None:
        if deadline is not None:
            self._deadline = deadline
        self._closing = True
        self._close_requested.set()
        self._wake_committer.set()
        self.data.set()
        self._space.set()

    def discard(self, *, acknowledge: bool) -> int:
        return 0  # everything the committer wrote stays on disk; what it could not write was counted

    def update_gauges(self) -> None:
        oldest = self.store.oldest_ns() if self.store.opened and not self.store.closed else None
        self.status.detail.update(
            depth_points=self.store.depth_points,
            depth_bytes=self.store.depth_bytes,
            disk_bytes=self.store.disk_bytes,
            oldest_age_seconds=round(max(0.0, (time.time_ns() - oldest) / 1e9), 3) if oldest else 0.0,
            queued_points=self._pending_points,
        )
        self._check_drop_episode()

    async def aclose(self) -> None:
        """Release the buffer files once no disk work is running in a thread; what the store did
        not take stays there for the next start."""
        if self._disk_work:
            # A cancelled await does not stop the thread: wait for it, so the files are never
            # closed under a write (or reopened by a new route on the same folder meanwhile).
            await asyncio.shield(asyncio.gather(*self._disk_work, return_exceptions=True))
        self.close()

    def close(self) -> None:
        """Release the buffer files now (see :meth:`aclose`)."""
        if self.store.closed:
            return
        if self.store.depth_points:
            self.log.info(
                "%d points (%s) stay in the buffer %s; they are sent when the gateway (or this sink) starts again",
                self.store.depth_points,
                format_size(self.store.depth_bytes),
                self.directory,
            )
        self.store.close()


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
