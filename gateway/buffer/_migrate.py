"""Taking over a buffer folder that is no longer where the configuration puts it.

A sink's buffer moves when ``gateway.data_dir`` or ``buffer.path`` changes, or when an older
version of the gateway wrote it under ``./data/buffer`` whatever ``data_dir`` said. Points
left there were acknowledged to their sources: they must be sent, never silently abandoned.
:func:`adopt_buffer` moves the old folder's segment files into the new one, numbered after the
new folder's own, so the sink's queue finds and sends them like its own.

Each file arrives whole or not at all (across filesystems it is copied under a ``.tmp`` name
and renamed), so a disk that fills up during the move leaves the rest in the old folder, to be
moved at the next try, never a half file that would look damaged.

The old folder's ``ack`` offset is not carried over: the part of its first segment that was
already confirmed is sent again (writes are idempotent: the same series and timestamp
overwrite), which re-sends a little and never loses anything.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import shutil
from pathlib import Path

from gateway.buffer._segments import segment_name

__all__ = ["adopt_buffer"]

_PREFIX = "seg-"
_SUFFIX = ".log"

Logger = logging.Logger | logging.LoggerAdapter[logging.Logger]


def _segments(folder: Path) -> list[tuple[int, Path]]:
    found = []
    for path in folder.glob(f"{_PREFIX}*{_SUFFIX}"):
        with contextlib.suppress(ValueError):
            found.append((int(path.name[len(_PREFIX) : -len(_SUFFIX)]), path))
    return sorted(found)


def _first_unconfirmed(folder: Path) -> int | None:
    try:
        return int((folder / "ack").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _move(path: Path, target: Path) -> None:
    """A rename on the same filesystem; across filesystems a synced copy renamed into place, then
    the original deleted."""
    try:
        os.rename(path, target)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
    else:
        return
    partial = target.with_name(target.name + ".tmp")  # (SegmentLog.open deletes *.tmp leftovers)
    try:
        shutil.copyfile(path, partial)
        with open(partial, "rb+") as file:
            os.fsync(file.fileno())
        os.replace(partial, target)
    except BaseException:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
        raise
    path.unlink()


def adopt_buffer(old: Path, new: Path, log: Logger) -> int:
    """Move the unconfirmed segment files of ``old`` into ``new``; returns how many files moved."""
    if not old.is_dir():
        return 0
    segments = _segments(old)
    first = _first_unconfirmed(old)
    if first is not None:
        for seq, path in segments:
            if seq < first:  # confirmed before the last stop; its deletion had not happened yet
                path.unlink(missing_ok=True)
        segments = [(seq, path) for seq, path in segments if seq >= first]
    segments = [(seq, path) for seq, path in segments if path.stat().st_size > 0]
    if not segments:
        return 0
    lock = os.open(old / "lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                log.warning(
                    "the old buffer folder %s holds unsent points but another running gateway uses it: "
                    "left there (stop that gateway, then restart this one to send them)",
                    old,
                )
                return 0
            raise
        new.mkdir(parents=True, exist_ok=True)
        existing = _segments(new)
        next_seq = max([seq + 1 for seq, _ in existing] + [(_first_unconfirmed(new) or 0) + 1, 1])
        size = 0
        for _, path in segments:
            target = new / segment_name(next_seq)
            next_seq += 1
            size += path.stat().st_size
            _move(path, target)
        for leftover in ("ack", "ack.tmp"):
            (old / leftover).unlink(missing_ok=True)
    finally:
        os.close(lock)
    (old / "lock").unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # (only if empty: damaged files kept for inspection stay)
        (old / "quarantine").rmdir()
    with contextlib.suppress(OSError):
        old.rmdir()
    log.warning(
        "found %d buffer file(s) (%d bytes of points not sent yet) in the old buffer folder %s: moved them to %s, "
        "where they are sent like the rest",
        len(segments),
        size,
        old,
        new,
    )
    return len(segments)
