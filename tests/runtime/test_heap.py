"""The collector settings of ``gateway run`` (gateway/heap.py): the started gateway's objects are
frozen out of the collector's walks, and a reload lets it free what the old configuration held."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway import heap
from gateway.config import load_config_source
from gateway.reloads import ReloadResult, ReloadTrigger
from gateway.runtime import Gateway
from tests.helpers import async_wait_until
from tests.runtime.fakes import SOURCES
from tests.runtime.test_reload import document, seqs, write


class Node:
    """An object only the cyclic collector can free once it refers to itself."""

    def __init__(self) -> None:
        self.me = self


@pytest.fixture(autouse=True)
def _unfrozen() -> Iterator[None]:
    yield
    gc.unfreeze()  # the test process's own heap goes back to normal


def test_freeze_collects_the_garbage_first_and_leaves_live_objects_out_of_collections() -> None:
    garbage, live = Node(), Node()
    garbage_ref, live_ref = weakref.ref(garbage), weakref.ref(live)
    del garbage
    heap.freeze()
    assert gc.get_freeze_count() > 0
    assert garbage_ref() is None  # collected before freezing, not frozen with the rest
    del live  # garbage now, but frozen: collections leave it alone...
    gc.collect()
    assert live_ref() is not None
    heap.unfreeze()  # ...until the heap is unfrozen and collected (what a reload does)
    heap.freeze()
    assert live_ref() is None
    assert gc.get_freeze_count() > 0


@pytest.mark.usefixtures("fake_types")
async def test_a_reload_lets_the_collector_free_a_removed_connector(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Gateway, "REFREEZE_DELAY", 0.2)
    path = write(tmp_path / "gw.yaml", document(tmp_path, [{"name": "store"}], [{"name": "keep"}, {"name": "leave"}]))
    async with Gateway(load_config_source(path)) as gw:
        await async_wait_until(lambda: len(seqs("store", "leave")) >= 5, 10)
        gw.freeze_heap()
        leave = SOURCES.pop("leave")
        leave.me = leave  # type: ignore[attr-defined]
        gone = weakref.ref(leave)
        del leave
        write(path, document(tmp_path, [{"name": "store"}], [{"name": "keep"}]))
        assert (await gw.reload(ReloadTrigger.CALL)).result is ReloadResult.APPLIED
        assert gc.get_freeze_count() == 0  # unfrozen at once...
        await async_wait_until(lambda: gone() is None, timeout=10, message="the removed connector collected")
        await async_wait_until(gc.get_freeze_count, timeout=10, message="the heap frozen again")
