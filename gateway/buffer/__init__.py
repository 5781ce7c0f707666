"""The durable store-and-forward buffer between the pipeline and every network sink.

One buffer per sink (a dead store never stalls another), on disk under
``<gateway.buffer.path>/<sink name>`` (by default ``<gateway.data_dir>/buffer``): append-only
segment files with checksummed records, written in group commits, bounded by ``max_size`` with
``drop_oldest`` (default) or ``block``, resumed after a restart, and emptied only as the store
confirms each batch.

- :class:`SegmentLog`: the files (format, bounds, damage handling), synchronous.
- :class:`DiskQueue`: the route's queue built on it (asyncio): group commit with
  acknowledgements to the sources, batches for the route (:mod:`gateway.route`).
- :func:`adopt_buffer`: moves a buffer folder left where the configuration no longer puts it.
"""

from gateway.buffer._migrate import adopt_buffer
from gateway.buffer._queue import DiskQueue, format_size, resolve_buffer_settings
from gateway.buffer._segments import Batch, BufferDamage, BufferInUse, RecordRef, SegmentLog, is_disk_full

__all__ = [
    "Batch",
    "BufferDamage",
    "BufferInUse",
    "DiskQueue",
    "RecordRef",
    "SegmentLog",
    "adopt_buffer",
    "format_size",
    "is_disk_full",
    "resolve_buffer_settings",
]
