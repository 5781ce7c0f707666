"""The process's garbage collector, set for a long-running gateway.

Python's cyclic collector walks every tracked object of the generations it collects. A running
gateway holds a large heap that never becomes garbage — the modules, the configuration models,
the web application, the connectors' and sinks' objects — and the oldest generation's
collection walked all of it: 79 ms once every ~15 s at 1,000 msg/s, a pause of the event loop
each time, and about 0.5 % of a core (measured with gc.callbacks beside bench_runtime's steady
stream). Frozen once the gateway has started (``gc.freeze``: the collector leaves those objects
alone, it does not keep anything alive), that collection takes 20 ms.

A reload replaces components, and objects frozen with the old ones would never be collected if
they end in reference cycles: an applied reload unfreezes the heap, and once the replaced
components have finished closing it is collected in full (one pause of that length) and frozen
again.

Only ``gateway run`` does this (:func:`gateway.runtime.run_gateway`); a gateway embedded in
another program (the tests) leaves that program's collector as it is.
"""

from __future__ import annotations

import gc

__all__ = ["freeze", "unfreeze"]


def freeze() -> None:
    """Collect what is garbage now, then leave everything still alive out of future collections."""
    gc.collect()
    gc.freeze()


def unfreeze() -> None:
    """Let the collector see the frozen objects again (what a reload replaced can then be freed)."""
    gc.unfreeze()
