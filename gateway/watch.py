"""``gateway run CONFIG --watch``: reload when the config file (or a file of the folder) changes.

Editors save in bursts (a temporary file, a rename, a second write), and an engineer may save
several times in a row: changes are gathered until the files have been quiet for ``debounce``
seconds, then one reload runs. A reload of an invalid file changes nothing (the gateway logs
every problem and goes on), so a half-finished edit is harmless; the next save is tried again.

The folder is watched rather than the file, because many editors replace the file (write a
new one, rename it over the old) and a watch on the old file would see nothing after that.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Protocol

import watchfiles

from gateway.logs import component_logger
from gateway.reloads import ReloadTrigger

__all__ = ["watch_config"]

log = component_logger("gateway", "watch")

_SUFFIXES = (".yaml", ".yml")


class Reloadable(Protocol):
    def request_reload(self, trigger: ReloadTrigger) -> None: ...


def _filter_for(path: Path) -> tuple[Path, watchfiles.BaseFilter]:
    """The folder to watch and a filter keeping only changes to the config's own files."""
    if path.is_dir():
        folder = path.resolve()

        class _Folder(watchfiles.BaseFilter):
            def __call__(self, change: watchfiles.Change, changed: str) -> bool:
                file = Path(changed)
                return file.parent == folder and file.suffix in _SUFFIXES

        return folder, _Folder()
    file = path.resolve()

    class _File(watchfiles.BaseFilter):
        def __call__(self, change: watchfiles.Change, changed: str) -> bool:
            return Path(changed) == file

    return file.parent, _File()


async def watch_config(gateway: Reloadable, path: Path, debounce: float, stop: asyncio.Event) -> None:
    """Ask ``gateway`` for a reload after each burst of changes to ``path``, until ``stop`` is set."""
    folder, keep = _filter_for(path)
    quiet_ms = max(50, int(debounce * 1000))
    log.info("watching %s for changes (reload %.1fs after the last save)", path, debounce)
    async for changes in watchfiles.awatch(
        folder,
        watch_filter=keep,
        step=quiet_ms,
        debounce=max(10 * quiet_ms, 2000),
        recursive=False,
        stop_event=stop,
    ):
        names = sorted({Path(changed).name for _, changed in changes})
        log.info("%s changed: reloading", ", ".join(names))
        gateway.request_reload(ReloadTrigger.WATCH)
