"""The durable store-and-forward buffer between the pipeline and every network sink.

One buffer per sink (a dead store never stalls another), on disk under
``gateway.buffer.path/<sink name>``: append-only segment files with checksummed records,
written in group commits, bounded by ``max_size`` with ``drop_oldest`` (default) or ``block``,
resumed after a restart, and emptied only as the store confirms each batch.

- :class:`SegmentLog`: the files (format, bounds, damage handling), synchronous.
- :class:`BufferedRoute`: the pipeline ``Route`` built on it (asyncio): group commit with
  acknowledgements to the sources, batching, retries, metrics.
"""

from gateway.buffer._route import BufferedRoute, LineProtocolSink, resolve_buffer_settings
from gateway.buffer._segments import Batch, BufferDamage, RecordRef, SegmentLog

__all__ = [
    "Batch",
    "BufferDamage",
    "BufferedRoute",
    "LineProtocolSink",
    "RecordRef",
    "SegmentLog",
    "resolve_buffer_settings",
]
