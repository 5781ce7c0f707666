"""The on-disk part of the durable buffer: append-only segment files of checksummed records.

A buffer folder (one per sink) holds::

    seg-0000000000000001.log   records, appended; deleted once every record in it is confirmed
    seg-0000000000000002.log   …
    ack                        "<segment> <offset>": where the first unconfirmed record starts
    lock                       flock()ed while a gateway uses the folder
    quarantine/                copies of damaged segment files, for inspection

A record is a 24-byte header and a body of line protocol (one batch of points)::

    magic b"\\xb7\\x1e" | version u8 | kind u8 | body length u32 | points u32 | written at i64 ns | crc32 u32

The CRC covers the header (without the CRC) and the body. ``kind`` is ``DATA``, or ``SKIP``
for a region that was found damaged and overwritten so that offsets stay valid.

Writes are group commits: many records in one ``write`` and one ``fdatasync`` (never one
sync per point). The ``ack`` file is replaced (rename) after each confirmed batch without a
sync: after a power cut it may lag behind, which re-sends a few batches (writes are
idempotent: the same series and timestamp overwrite) and never loses one.

Damage (a damaged buffer file must never crash the gateway nor block what follows it): a record whose
header or CRC is wrong is skipped up to the next valid record; the file is first copied to
``quarantine/`` and the damage is reported. A partly written record at the very end of the
newest segment is what a crash during a write leaves: it was never confirmed to anyone (the
sync had not returned), so it is cut off with a warning.

Every method is synchronous and thread-safe: the route calls the slow ones (append, read,
ack) in a worker thread so the event loop never waits on the disk.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import shutil
import struct
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Final, Literal

from gateway.errors import GatewayError

__all__ = ["Batch", "BufferDamage", "BufferInUse", "RecordRef", "SegmentLog", "is_disk_full"]

HEADER: Final = struct.Struct("<2sBBIIqI")
HEADER_SIZE: Final = HEADER.size  # 24
MAGIC: Final = b"\xb7\x1e"
VERSION: Final = 1
DATA: Final = 0
SKIP: Final = 1
MAX_BODY: Final = 1 << 30
_PREFIX = "seg-"
_SUFFIX = ".log"

Overflow = Literal["drop_oldest", "block"]
Logger = logging.Logger | logging.LoggerAdapter[logging.Logger]

#: errno values that mean "no room on this filesystem" (a full disk, or the user's quota).
_DISK_FULL: Final = frozenset({errno.ENOSPC, errno.EDQUOT})


class BufferInUse(GatewayError):
    """Another running gateway holds the buffer folder (its lock file)."""


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` (or the OS error it was raised from) says the filesystem has no room left."""
    return any(isinstance(error, OSError) and error.errno in _DISK_FULL for error in (exc, exc.__cause__))


def segment_name(seq: int) -> str:
    return f"{_PREFIX}{seq:016d}{_SUFFIX}"


def _crc(header_without_crc: bytes, body: bytes | memoryview) -> int:
    return zlib.crc32(body, zlib.crc32(header_without_crc))


def pack_record(body: bytes, count: int, created_ns: int, kind: int = DATA) -> bytes:
    """One record: header + body."""
    head = HEADER.pack(MAGIC, VERSION, kind, len(body), count, created_ns, 0)[:-4]
    return head + _crc(head, body).to_bytes(4, "little") + body


def _skip_record(length: int) -> bytes:
    """A valid record that fills ``length`` bytes (a damaged region) with zeros."""
    return pack_record(bytes(length - HEADER_SIZE), 0, 0, SKIP)


@dataclass(frozen=True, slots=True)
class RecordRef:
    """Where one record of a batch lives (to confirm it once the store has it)."""

    seq: int
    offset: int
    end: int
    count: int


@dataclass(slots=True)
class Batch:
    """Records read for one write: their bodies joined, and where each came from."""

    body: bytes
    count: int
    records: list[RecordRef]
    oldest_ns: int


@dataclass(frozen=True, slots=True)
class BufferDamage:
    """A damaged region found in a segment file (reported in the status and the log)."""

    path: Path
    start: int
    end: int
    quarantined: Path | None
    points_lost: int | None
    torn_tail: bool

    def describe(self) -> str:
        lost = f"{self.end - self.start} bytes"
        if self.points_lost is not None:
            lost += f", {self.points_lost} points"
        if self.torn_tail:
            return (
                f"buffer file {self.path.name}: the last record ({lost}) was being written when the gateway "
                "stopped; it had not been confirmed to any source and was discarded"
            )
        where = f"; a copy of the damaged file is in {self.quarantined}" if self.quarantined else ""
        return (
            f"buffer file {self.path} is damaged at bytes {self.start}-{self.end} ({lost} could not be read "
            f"and were skipped){where}; the rest of the buffer is being sent"
        )


@dataclass(slots=True)
class _Segment:
    seq: int
    path: Path
    size: int = 0  # bytes written and synced
    acked: int = 0  # offset of the first record not yet confirmed
    live_points: int = 0  # points in records at offset >= acked
    sealed: bool = True
    head_created: int | None = None  # created_ns of the first unconfirmed record, when known


@dataclass(slots=True)
class _Scan:
    """One pass over a segment file."""

    records: list[tuple[int, int, int]] = field(default_factory=list)  # (offset, points, created) of data
    damaged: list[tuple[int, int]] = field(default_factory=list)  # (start, end) regions
    end: int = 0  # end of the last valid record


class SegmentLog:
    """The durable buffer of one sink: append, read in order, confirm, bound, survive restarts.

    Counts kept exact at all times: ``depth_points`` (written here, not yet confirmed by the
    store: read-and-in-flight included) and ``unread_points`` (not yet handed out).
    """

    def __init__(
        self,
        directory: Path,
        *,
        max_size: int,
        overflow: Overflow = "drop_oldest",
        segment_size: int | None = None,
        log: Logger | None = None,
    ) -> None:
        self.directory = directory
        self.max_size = max_size
        self.overflow: Overflow = overflow
        self.segment_size = segment_size or max(4096, min(64 << 20, max_size // 16))
        self.log: Logger = log or logging.getLogger("gateway.buffer")
        self._lock = threading.RLock()
        self._segments: dict[int, _Segment] = {}  # insertion order == seq order
        self._active: _Segment | None = None
        self._active_fd: int | None = None
        self._read_fds: dict[int, int] = {}
        self._read_seq = 0
        self._read_offset = 0
        self._inflight: dict[int, int] = {}  # seq → points handed out, not yet confirmed
        self._next_seq = 1
        self._lock_fd: int | None = None
        self.depth_points = 0
        self.unread_points = 0
        self.damage: list[BufferDamage] = []
        self.opened = False
        self.closed = False
        self._ack_failing = False

    # --- opening -----------------------------------------------------------------------------

    def lock(self) -> None:
        """Take the folder for this gateway (created if missing); BufferInUse if another one has it.

        Cheap and separate from :meth:`open`, so a second gateway on the same folder is refused
        at its start, while the slow part (and a full disk's errors) can wait for ``open``.
        """
        if self._lock_fd is not None:
            return
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise GatewayError(f"cannot create the buffer folder {self.directory}: {exc.strerror}") from exc
        self._take_lock()

    def open(self) -> None:
        """Take the folder (one gateway at a time), check every segment, find where to resume.

        May be called again after it failed (a full disk): it starts over from the files.
        """
        self.lock()
        self._segments.clear()
        self.depth_points = self.unread_points = 0
        self.damage.clear()
        for leftover in self.directory.glob("*.tmp"):
            leftover.unlink(missing_ok=True)
        ack_seq, ack_offset = self._read_ack()
        found: list[tuple[int, Path]] = []
        for path in self.directory.glob(f"{_PREFIX}*{_SUFFIX}"):
            try:
                found.append((int(path.name[len(_PREFIX) : -len(_SUFFIX)]), path))
            except ValueError:
                self.log.warning("ignoring %s in the buffer folder: not a buffer segment", path.name)
        found.sort()
        # Segment numbers only grow: never reuse one that the ack file may name.
        self._next_seq = max([seq + 1 for seq, _ in found] + [ack_seq or 1])
        for index, (seq, path) in enumerate(found):
            if ack_seq is not None and seq < ack_seq:
                path.unlink(missing_ok=True)  # confirmed before the last stop; its delete had not happened
                continue
            segment = _Segment(seq=seq, path=path)
            self._load(segment, last=index == len(found) - 1, ack_offset=ack_offset if seq == ack_seq else 0)
            if segment.acked >= segment.size:
                path.unlink(missing_ok=True)
                continue
            self._segments[seq] = segment
            self.depth_points += segment.live_points
        self.unread_points = self.depth_points
        first = next(iter(self._segments.values()), None)
        if first is not None:
            self._read_seq, self._read_offset = first.seq, first.acked
        self._write_ack()
        self.opened = True

    def _take_lock(self) -> None:
        fd = os.open(self.directory / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise BufferInUse(
                    f"the buffer folder {self.directory} is in use by another running gateway; "
                    "give each gateway its own gateway.buffer.path"
                ) from None
            raise
        # The pid is a note for people (the lock is the flock): a full disk must not refuse the folder.
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def _read_ack(self) -> tuple[int | None, int]:
        try:
            parts = (self.directory / "ack").read_text().split()
            return int(parts[0]), int(parts[1])
        except FileNotFoundError:
            return None, 0
        except (OSError, ValueError, IndexError):
            self.log.warning("buffer ack file is unreadable: resending the whole buffer (duplicates overwrite)")
            return None, 0

    def _load(self, segment: _Segment, *, last: bool, ack_offset: int) -> None:
        scan = _scan_file(segment.path)
        segment.size = scan.end
        if scan.damaged:
            self._repair(segment, scan, last=last)
            scan = _scan_file(segment.path)
            segment.size = scan.end
        # Resume at the last record boundary at or before the saved position: a duplicate, never a loss.
        acked = 0
        for offset, _, _ in scan.records:
            if offset > ack_offset:
                break
            acked = offset
        segment.acked = segment.size if ack_offset >= segment.size else acked
        live = [(count, created) for offset, count, created in scan.records if offset >= segment.acked]
        segment.live_points = sum(count for count, _ in live)
        segment.head_created = next((created for count, created in live if count), None)

    def _repair(self, segment: _Segment, scan: _Scan, *, last: bool) -> None:
        """Skip damaged regions (after copying the file to quarantine); cut a torn tail of the newest file."""
        file_size = segment.path.stat().st_size
        if last and len(scan.damaged) == 1 and scan.damaged[0][1] >= file_size:
            start, end = scan.damaged[0]
            _truncate(segment.path, start)
            damage = BufferDamage(segment.path, start, end, None, None, torn_tail=True)
            self.damage.append(damage)
            self.log.warning("%s", damage.describe())
            return
        quarantined = self._quarantine(segment.path)
        fd = os.open(segment.path, os.O_WRONLY)
        try:
            for start, end in scan.damaged:
                if end >= file_size or end - start < HEADER_SIZE:
                    os.ftruncate(fd, start)
                else:
                    os.pwrite(fd, _skip_record(end - start), start)
                damage = BufferDamage(segment.path, start, end, quarantined, None, torn_tail=False)
                self.damage.append(damage)
                self.log.error("%s", damage.describe())
            os.fsync(fd)
        finally:
            os.close(fd)

    def _quarantine(self, path: Path) -> Path | None:
        """A copy of a damaged file for inspection (None if the disk has no room for it: the
        damage is still reported and skipped, the gateway goes on)."""
        folder = self.directory / "quarantine"
        target = folder / f"{path.name}.{time.strftime('%Y%m%dT%H%M%S')}"
        try:
            folder.mkdir(exist_ok=True)
            shutil.copyfile(path, target)
        except OSError as exc:
            with contextlib.suppress(OSError):
                target.unlink(missing_ok=True)
            self.log.warning("cannot keep a copy of the damaged buffer file %s: %s", path, exc.strerror or exc)
            return None
        return target

    # --- state -------------------------------------------------------------------------------

    @property
    def disk_bytes(self) -> int:
        """Bytes of segment files on disk (what ``max_size`` bounds)."""
        with self._lock:
            return sum(segment.size for segment in self._segments.values())

    @property
    def depth_bytes(self) -> int:
        """Bytes of records not yet confirmed by the store."""
        with self._lock:
            return sum(segment.size - segment.acked for segment in self._segments.values())

    def oldest_ns(self) -> int | None:
        """When the oldest unconfirmed point was written here (ns since the epoch), if any."""
        with self._lock:
            for segment in self._segments.values():
                if segment.live_points <= 0:
                    continue
                if segment.head_created is None:
                    segment.head_created = self._head_created(segment)
                if segment.head_created is not None:
                    return segment.head_created
            return None

    def _head_created(self, segment: _Segment) -> int | None:
        offset = segment.acked
        fd = self._read_fd(segment)
        while offset + HEADER_SIZE <= segment.size:
            _, _, kind, length, count, created, _ = HEADER.unpack(os.pread(fd, HEADER_SIZE, offset))
            if kind == DATA and count:
                return int(created)
            offset += HEADER_SIZE + length
        return None

    # --- writing -----------------------------------------------------------------------------

    def room_for(self, size: int) -> bool:
        """Whether ``size`` more bytes fit under ``max_size`` without dropping anything."""
        return self.disk_bytes + size <= self.max_size

    def append(self, records: list[tuple[bytes, int]]) -> int:
        """Write records (body, points) durably: one write and one fdatasync for all of them
        (one per segment file when they fill more than the file being written).

        Returns how many unconfirmed points were dropped to stay under ``max_size``
        (``drop_oldest``); with ``block`` the caller waits for room before appending.
        """
        now = time.time_ns()
        packed = [(pack_record(body, count, now), count) for body, count in records]
        dropped = 0
        first = 0
        while first < len(packed):
            with self._lock:
                if self.closed:
                    raise GatewayError("the buffer is closed")
                active = self._active
                room = self.segment_size
                if active is not None and active.size < self.segment_size:
                    room -= active.size
                last, size = first, 0
                while last < len(packed) and (last == first or size + len(packed[last][0]) <= room):
                    size += len(packed[last][0])
                    last += 1
                if self.overflow == "drop_oldest":
                    dropped += self._make_room(size)
                segment, fd = self._writable_segment()
            chunk = packed[first:last]
            self._write_synced(segment, fd, b"".join(record for record, _ in chunk))
            points = sum(count for _, count in chunk)
            with self._lock:
                if segment.live_points <= 0:
                    segment.head_created = now
                segment.size += size
                segment.live_points += points
                self.depth_points += points
                self.unread_points += points
            first = last
        return dropped

    @staticmethod
    def _write_synced(segment: _Segment, fd: int, data: bytes) -> None:
        try:
            _write_all(fd, data)
            os.fdatasync(fd)
        except OSError:
            # Leave no half record behind: the next append must start on a record boundary.
            with contextlib.suppress(OSError):
                os.ftruncate(fd, segment.size)
            raise

    def _writable_segment(self) -> tuple[_Segment, int]:
        active = self._active
        if active is not None and self._active_fd is not None and active.size < self.segment_size:
            return active, self._active_fd
        self._seal_active()
        seq = self._next_seq
        path = self.directory / segment_name(seq)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            _sync_directory(self.directory)  # the new file's name must survive a power cut too
        except OSError:
            os.close(fd)  # (the empty file is reused by the next try)
            raise
        self._next_seq += 1
        segment = _Segment(seq=seq, path=path, sealed=False)
        self._segments[seq] = segment
        self._active, self._active_fd = segment, fd
        return segment, fd

    def _seal_active(self) -> None:
        if self._active is not None:
            self._active.sealed = True
            if self._active_fd is not None:
                os.close(self._active_fd)
            self._active, self._active_fd = None, None

    def _make_room(self, incoming: int) -> int:
        """Drop the oldest whole segments until ``incoming`` bytes fit; return the points dropped."""
        dropped = 0
        while self._segments and sum(s.size for s in self._segments.values()) + incoming > self.max_size:
            oldest = next(iter(self._segments.values()))
            if oldest is self._active and oldest.size == 0:
                break
            # Points already handed to the store stay counted as in flight: they are written or
            # rejected later, never counted twice. Every other live point of the file is unread.
            lost = max(0, oldest.live_points - self._inflight.pop(oldest.seq, 0))
            dropped += lost
            self.depth_points -= lost
            self.unread_points -= lost
            self._remove(oldest)
        if dropped:
            self._write_ack()
        return dropped

    def _remove(self, segment: _Segment) -> None:
        if segment is self._active:
            self._seal_active()
        fd = self._read_fds.pop(segment.seq, None)
        if fd is not None:
            os.close(fd)
        self._segments.pop(segment.seq, None)
        segment.path.unlink(missing_ok=True)

    # --- reading and confirming ----------------------------------------------------------------

    def _read_fd(self, segment: _Segment) -> int:
        fd = self._read_fds.get(segment.seq)
        if fd is None:
            fd = os.open(segment.path, os.O_RDONLY)
            self._read_fds[segment.seq] = fd
        return fd

    def _read_segment(self) -> _Segment | None:
        """The segment holding the next unread record (moving past finished sealed ones)."""
        while True:
            segment = self._segments.get(self._read_seq)
            if segment is None:
                following = next((s for s in self._segments.values() if s.seq > self._read_seq), None)
                if following is None:
                    return None
                self._read_seq, self._read_offset = following.seq, following.acked
                continue
            self._read_offset = max(self._read_offset, segment.acked)
            if self._read_offset < segment.size or not segment.sealed:
                return segment
            following = next((s for s in self._segments.values() if s.seq > segment.seq), None)
            if following is None:
                return segment
            self._read_seq, self._read_offset = following.seq, following.acked

    def read(self, max_points: int, max_bytes: int = 64 << 20) -> Batch | None:
        """The next records not yet handed out, up to ``max_points`` (at least one record)."""
        with self._lock:
            bodies: list[bytes] = []
            refs: list[RecordRef] = []
            count = size = 0
            oldest: int | None = None
            while True:
                segment = self._read_segment()
                if segment is None or self._read_offset >= segment.size:
                    break
                record = self._read_record(segment, self._read_offset)
                if record is None:
                    continue  # the damage was skipped: read again at the same place
                kind, body, points, created, end = record
                if kind == DATA and points:
                    if refs and (count + points > max_points or size + len(body) > max_bytes):
                        break
                    bodies.append(body)
                    count += points
                    size += len(body)
                    oldest = created if oldest is None else min(oldest, created)
                    self._inflight[segment.seq] = self._inflight.get(segment.seq, 0) + points
                refs.append(RecordRef(segment.seq, self._read_offset, end, points if kind == DATA else 0))
                self._read_offset = end
            if not refs:
                self.unread_points = 0  # nothing readable is left (damaged records were skipped)
                return None
            self.unread_points -= count
            return Batch(b"".join(bodies), count, refs, oldest or 0)

    def _read_record(self, segment: _Segment, offset: int) -> tuple[int, bytes, int, int, int] | None:
        fd = self._read_fd(segment)
        raw = os.pread(fd, HEADER_SIZE, offset)
        if len(raw) == HEADER_SIZE:
            magic, version, kind, length, count, created, crc = HEADER.unpack(raw)
            end = offset + HEADER_SIZE + length
            if magic == MAGIC and version == VERSION and kind in (DATA, SKIP) and end <= segment.size:
                body = os.pread(fd, length, offset + HEADER_SIZE)
                if len(body) == length and _crc(raw[:-4], body) == crc:
                    return kind, body, count, created, end
        self._repair_running(segment, offset)
        return None

    def _repair_running(self, segment: _Segment, offset: int) -> None:
        """A record went bad while the gateway ran: skip it as at start-up, and correct the counts."""
        with open(segment.path, "rb") as file:
            file.seek(offset)
            rest = file.read(segment.size - offset)
        following = _find_next_record(rest, 1, len(rest))
        end = offset + (following if following is not None else len(rest))
        quarantined = self._quarantine(segment.path)
        if end - offset >= HEADER_SIZE:
            fd = os.open(segment.path, os.O_WRONLY)
            try:
                os.pwrite(fd, _skip_record(end - offset), offset)
                os.fsync(fd)
            finally:
                os.close(fd)
        else:  # cannot happen with real records (each is at least a header long); skip in memory
            self._read_offset = end
        # The damaged headers cannot be trusted: the points committed minus those still readable
        # are the points lost.
        scan = _scan_file(segment.path, limit=segment.size)
        readable = sum(count for start, count, _ in scan.records if start >= segment.acked)
        lost = max(0, segment.live_points - readable)
        segment.live_points -= lost
        self.depth_points -= lost
        self.unread_points -= lost
        damage = BufferDamage(segment.path, offset, end, quarantined, lost, torn_tail=False)
        self.damage.append(damage)
        self.log.error("%s", damage.describe())

    def _forget_inflight(self, ref: RecordRef) -> None:
        left = self._inflight.get(ref.seq, 0) - ref.count
        if left > 0:
            self._inflight[ref.seq] = left
        else:
            self._inflight.pop(ref.seq, None)

    def ack(self, batch: Batch) -> None:
        """The store has every point of ``batch``: forget its records (delete emptied files)."""
        with self._lock:
            for ref in batch.records:
                self._forget_inflight(ref)
                self.depth_points -= ref.count
                segment = self._segments.get(ref.seq)
                if segment is None or ref.offset < segment.acked:
                    continue  # its file was dropped meanwhile: these points were written, not dropped
                segment.acked = ref.end
                segment.live_points -= ref.count
                segment.head_created = None
            for segment in list(self._segments.values()):
                if segment.acked < segment.size or segment is self._active:
                    break  # the file being written is deleted once it is sealed and confirmed
                self._remove(segment)
            self._write_ack()

    def release(self, batch: Batch) -> int:
        """``batch`` will not be written now (shutdown): its records are handed out again next time.

        Returns how many of its points can no longer be handed out because their file was
        dropped meanwhile (``drop_oldest``): those count as dropped.
        """
        lost = 0
        with self._lock:
            for ref in batch.records:
                self._forget_inflight(ref)
                if ref.seq not in self._segments:
                    lost += ref.count
            self.depth_points -= lost
            first = next(iter(self._segments.values()), None)
            if first is not None:
                self._read_seq, self._read_offset = first.seq, first.acked
            self.unread_points = self.depth_points
        return lost

    def _write_ack(self) -> None:
        """Record where the unconfirmed records start. Never raises: on a full disk the ack file
        lags behind, which after a restart re-sends batches the store has (they overwrite
        identical values) and never skips one."""
        first = next(iter(self._segments.values()), None)
        seq, offset = (first.seq, first.acked) if first is not None else (self._next_seq, 0)
        tmp = self.directory / "ack.tmp"
        try:
            tmp.write_text(f"{seq} {offset}\n")
            os.replace(tmp, self.directory / "ack")
        except OSError as exc:
            if not self._ack_failing:
                self._ack_failing = True
                self.log.warning(
                    "cannot update the buffer's ack file in %s (%s): after a restart, batches the store already has "
                    "may be sent again (they overwrite identical values)",
                    self.directory,
                    exc.strerror or exc,
                )
            return
        if self._ack_failing:
            self._ack_failing = False
            self.log.info("the buffer's ack file in %s is up to date again", self.directory)

    def close(self) -> None:
        with self._lock:
            if self.closed:
                return
            self.closed = True
            self._seal_active()
            for fd in self._read_fds.values():
                os.close(fd)
            self._read_fds.clear()
            if self.opened:  # (a buffer never opened knows nothing its files do not say already)
                self._write_ack()
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None


# --- file helpers ------------------------------------------------------------------------------


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _sync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _truncate(path: Path, size: int) -> None:
    with open(path, "r+b") as file:
        file.truncate(size)
        file.flush()
        os.fsync(file.fileno())


def _valid_at(data: bytes, offset: int, limit: int) -> bool:
    """Whether a valid record starts at ``offset`` in ``data[:limit]``."""
    if offset + HEADER_SIZE > limit:
        return False
    magic, version, kind, length, _, _, crc = HEADER.unpack_from(data, offset)
    if magic != MAGIC or version != VERSION or kind not in (DATA, SKIP) or length > MAX_BODY:
        return False
    end = offset + HEADER_SIZE + length
    if end > limit:
        return False
    return bool(_crc(data[offset : offset + HEADER_SIZE - 4], memoryview(data)[offset + HEADER_SIZE : end]) == crc)


def _find_next_record(data: bytes, start: int, limit: int) -> int | None:
    """The offset of the next valid record at or after ``start``, else None."""
    position = start
    while True:
        position = data.find(MAGIC, position, limit)
        if position < 0:
            return None
        if _valid_at(data, position, limit):
            return position
        position += 1


def _scan_file(path: Path, limit: int | None = None) -> _Scan:
    """Walk every record of a segment file, checking each CRC; locate damaged regions."""
    scan = _Scan()
    size = path.stat().st_size if limit is None else limit
    with open(path, "rb", buffering=1 << 20) as file:
        offset = 0
        while offset < size:
            record = _read_at(file, offset, size)
            if record is not None:
                kind, count, created, end = record
                if kind == DATA:
                    scan.records.append((offset, count, created))
                offset = scan.end = end
                continue
            file.seek(offset)
            rest = file.read(size - offset)
            following = _find_next_record(rest, 1, len(rest))
            if following is None:
                scan.damaged.append((offset, size))
                break
            scan.damaged.append((offset, offset + following))
            offset += following
    return scan


def _read_at(file: BinaryIO, offset: int, size: int) -> tuple[int, int, int, int] | None:
    """(kind, points, created, end) of a valid record at ``offset``, else None."""
    if file.tell() != offset:
        file.seek(offset)
    raw = file.read(HEADER_SIZE)
    if len(raw) < HEADER_SIZE:
        return None
    magic, version, kind, length, count, created, crc = HEADER.unpack(raw)
    if magic != MAGIC or version != VERSION or kind not in (DATA, SKIP) or offset + HEADER_SIZE + length > size:
        return None
    body = file.read(length)
    if len(body) != length or _crc(raw[:-4], body) != crc:
        return None
    return kind, count, created, offset + HEADER_SIZE + length
