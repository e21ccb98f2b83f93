"""A change counter that wakes asyncio waiters from any thread (long polls instead of polling).

Jobs run in worker threads; API handlers run on the event loop. A thread calls :meth:`notify`;
every handler waiting in :meth:`wait` for a version newer than the one it has seen wakes within
one loop iteration, so a client learns that a job ended as soon as it ends.

:class:`TopicFeed` adds named topics on one counter: a topic's version is the counter's value
when it last moved, and :meth:`TopicFeed.moved` waits until any topic a client follows moves.
The console follows the topics its panes show instead of re-fetching everything on a timer.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Mapping

from lightkeeper.contracts.changes import TOPICS


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class ChangeFeed:
    def __init__(self) -> None:
        self.version = 0
        self.closed = False
        self._lock = threading.Lock()
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = set()

    def close(self) -> None:
        """The agent is stopping: every waiter answers now and later waits do not block (a
        console's 25 s long poll would otherwise hold the agent's shutdown that long)."""
        with self._lock:
            self.closed = True
            waiters, self._waiters = self._waiters, set()
        for loop, fut in waiters:
            if not loop.is_closed():
                loop.call_soon_threadsafe(_wake, fut)

    def notify(self) -> int:
        return self._bump(())

    def _bump(self, topics: tuple[str, ...]) -> int:
        with self._lock:
            self.version += 1
            version = self.version
            for topic in topics:
                self._moved(topic, version)
            waiters, self._waiters = self._waiters, set()
        for loop, fut in waiters:
            if not loop.is_closed():
                loop.call_soon_threadsafe(_wake, fut)
        return version

    def _moved(self, topic: str, version: int) -> None:
        """A topic moved (TopicFeed); called under the lock."""

    async def wait(self, since: int, timeout: float) -> bool:
        """True as soon as the version is newer than ``since``; False after ``timeout``."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        entry = (loop, fut)
        with self._lock:
            if self.version > since or self.closed:
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


class TopicFeed(ChangeFeed):
    """Per-topic versions on one counter; ``epoch`` names this agent's run (a restarted agent
    starts its counters again, so a client that sees a new epoch re-reads everything)."""

    def __init__(self) -> None:
        super().__init__()
        self.epoch = uuid.uuid4().hex[:12]
        self.topics: dict[str, int] = dict.fromkeys(TOPICS, 0)

    def notify(self, *topics: str) -> int:
        unknown = set(topics) - set(self.topics)
        if unknown:
            raise ValueError(f"unknown change topics {sorted(unknown)}; known: {TOPICS}")
        return self._bump(topics)

    def _moved(self, topic: str, version: int) -> None:
        self.topics[topic] = version

    def versions(self) -> dict[str, int]:
        with self._lock:
            return dict(self.topics)

    async def moved(self, since: Mapping[str, int], timeout: float) -> list[str]:
        """The topics of ``since`` whose version differs from the one given, as soon as one
        does, or ``[]`` after ``timeout`` seconds. A version that differs either way counts as
        moved (a restarted agent's counters start again from 0)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            with self._lock:
                seen = self.version
                moved = [t for t, v in since.items() if self.topics[t] != v]
                closed = self.closed
            remaining = deadline - loop.time()
            if moved or closed or remaining <= 0:
                return moved
            await self.wait(seen, remaining)
