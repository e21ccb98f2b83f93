"""A change counter that wakes asyncio waiters from any thread (long polls instead of polling).

Jobs run in worker threads; API handlers run on the event loop. A thread calls :meth:`notify`;
every handler waiting in :meth:`wait` for a version newer than the one it has seen wakes within
one loop iteration, so a client learns that a job ended as soon as it ends.
"""

from __future__ import annotations

import asyncio
import threading


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class ChangeFeed:
    def __init__(self) -> None:
        self.version = 0
        self._lock = threading.Lock()
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = set()

    def notify(self) -> int:
        with self._lock:
            self.version += 1
            version = self.version
            waiters, self._waiters = self._waiters, set()
        for loop, fut in waiters:
            if not loop.is_closed():
                loop.call_soon_threadsafe(_wake, fut)
        return version

    async def wait(self, since: int, timeout: float) -> bool:
        """True as soon as the version is newer than ``since``; False after ``timeout``."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        entry = (loop, fut)
        with self._lock:
            if self.version > since:
                return True
            self._waiters.add(entry)
        try:
            await asyncio.wait_for(fut, timeout)
            return True
        except TimeoutError:
            return False
        finally:
            with self._lock:
                self._waiters.discard(entry)
