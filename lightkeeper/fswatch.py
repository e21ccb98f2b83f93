"""How lightkeeper's file watchers (watchfiles) wake up, and how the agent's event loop watches.

A watcher's thread looks at its stop event every ``STEP_MS`` milliseconds. watchfiles' default,
50 ms, woke every watcher twenty times a second: most of an idle agent's CPU, and a steady cost in
every served LightRAG process. A stop waits at most this long, which is why the agent does not
join the user-directory watcher's thread.

:func:`watch_from_loop` is the event loop's watcher. watchfiles' own ``awatch`` runs the same
blocking watch through anyio's worker threads: it loaded anyio's asyncio backend into the agent
(about 60 ms of CPU at every start, and its memory for the agent's life), and a cancelled
``awatch`` waited out the running step, so every agent stop took half a second longer.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

STEP_MS = 500

_END = object()


async def watch_from_loop(path: Path, *, debounce_ms: int, recursive: bool = False,
                          timeout_ms: int = 0) -> AsyncGenerator[set[tuple[Any, str]], None]:
    """Yields batches of changes under ``path`` (watchfiles' default filter), watched in a daemon
    thread that starts with the iteration (the first ``anext``). With ``timeout_ms`` an empty batch comes when nothing changed for that long. Batches
    that arrive while the consumer is busy are merged into one. Errors of the watch (the path
    is missing, the inotify limit) are raised here. Closing the iterator (the consumer's task
    cancelled, ``contextlib.aclosing``) stops the thread within ``STEP_MS`` without waiting."""
    import watchfiles  # noqa: PLC0415  only the processes that watch load it

    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()
    stop = threading.Event()

    def hand_over(item: Any) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, item)
        except RuntimeError:  # the loop closed first: nobody is waiting
            stop.set()

    def run() -> None:
        try:
            for changes in watchfiles.watch(
                    path, debounce=debounce_ms, step=STEP_MS, stop_event=stop,
                    rust_timeout=timeout_ms, yield_on_timeout=bool(timeout_ms),
                    recursive=recursive, raise_interrupt=False):
                if stop.is_set():
                    return
                hand_over(changes)
        except BaseException as exc:  # noqa: BLE001  handed to the consumer, raised there
            hand_over(exc)
        else:
            hand_over(_END)

    threading.Thread(target=run, name=f"watch:{Path(path).name}", daemon=True).start()
    try:
        while True:
            item = await queue.get()
            batch: set[tuple[Any, str]] = set()
            while True:
                if item is _END:
                    if batch:
                        yield batch
                    return
                if isinstance(item, BaseException):
                    raise item
                batch |= item
                if queue.empty():
                    break
                item = queue.get_nowait()
            yield batch
    finally:
        stop.set()
