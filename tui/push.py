"""The console's change watcher: one thread long-polls the agent's ``changes.wait`` and posts
which topics moved, so the app refreshes only the pane that shows them (no re-fetch on a timer).

It reconnects on its own: while the agent is away it retries with a growing pause, and an agent
that restarted (a new epoch) counts as every topic moved. An agent without the call (an older
one) ends the watcher: the app then polls as before.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from textual.message import Message

from lightkeeper.client import AgentError, AgentUnavailable
from lightkeeper.contracts.changes import TOPICS

WAIT_S = 25.0  # one long poll; the agent answers sooner when a topic moves
RETRY_S = (0.5, 1.0, 2.0, 5.0, 10.0)  # pauses between attempts while the agent is away


class TopicsMoved(Message):
    """Topics moved in the agent (``restarted``: a new agent run, everything may have)."""

    def __init__(self, moved: frozenset[str], restarted: bool = False) -> None:
        super().__init__()
        self.moved = moved
        self.restarted = restarted


class PushState(Message):
    """The watcher follows the agent (``live``), or lost it / gave up (polling takes over)."""

    def __init__(self, live: bool, reason: str = "") -> None:
        super().__init__()
        self.live = live
        self.reason = reason


class ChangeWatcher:
    """Long-polls ``client.wait_changes`` in a daemon thread and calls ``post`` with
    :class:`TopicsMoved` and :class:`PushState` messages (``post_message`` is thread-safe).

    It follows only the topics :meth:`follow` names (the shown pane's and the status line's),
    so an idle Tuning screen is not woken by every collection round. Following more topics
    than the poll under way asks about starts a fresh poll (a new thread; the old one's answer
    is dropped when it comes) from the versions of the last answer, so nothing that moved
    meanwhile is missed."""

    def __init__(self, client: Any, post: Callable[[Message], Any],
                 wait_s: float = WAIT_S) -> None:
        self.client = client
        self.post = post
        self.wait_s = wait_s
        self.stop_event = threading.Event()
        self.topics: frozenset[str] = frozenset(TOPICS)
        self.versions: dict[str, int] = {}  # every topic's version at the last answer
        self.epoch: str | None = None
        self.live = False
        self._gen = 0
        self._lock = threading.Lock()

    def start(self) -> None:
        self._spawn(self._gen)

    def stop(self) -> None:
        """Stop after the long poll under way (at most ``wait_s``; the threads are daemons)."""
        self.stop_event.set()

    def follow(self, topics: frozenset[str]) -> None:
        with self._lock:
            grows = not topics <= self.topics
            self.topics = frozenset(topics)
            if not grows or not self.versions or self.stop_event.is_set():
                return  # the poll under way already covers them (or has not answered yet)
            self._gen += 1
            gen = self._gen
        self._spawn(gen)

    def _spawn(self, gen: int) -> None:
        threading.Thread(target=self._run, args=(gen,), name=f"lightkeeper-push-{gen}",
                         daemon=True).start()

    def _current(self, gen: int) -> bool:
        return gen == self._gen and not self.stop_event.is_set()

    def _run(self, gen: int) -> None:
        failures = 0
        while self._current(gen):
            with self._lock:
                since = {t: self.versions[t] for t in self.topics if t in self.versions}
                epoch = self.epoch
            try:
                answer = self.client.wait_changes(since, epoch,
                                                  timeout=self.wait_s if since else 0.0)
            except AgentError as exc:
                if exc.status in (400, 404):  # no such call: an older agent
                    if self._current(gen):
                        self.post(PushState(False, f"the agent does not push changes: {exc}"))
                    return
                failures += 1
            except (AgentUnavailable, OSError) as exc:
                failures += 1
                with self._lock:
                    lost, self.live = self.live and gen == self._gen, False
                if lost:
                    self.post(PushState(False, str(exc)))
            else:
                failures = 0
                self._answered(gen, answer)
                continue
            self.stop_event.wait(RETRY_S[min(failures, len(RETRY_S)) - 1])

    def _answered(self, gen: int, answer: dict[str, Any]) -> None:
        new_epoch = str(answer.get("epoch") or "")
        with self._lock:
            if gen != self._gen:
                return  # a newer poll follows other topics; it answers for them
            restarted = self.epoch is not None and new_epoch != self.epoch
            back = not self.live and self.epoch is not None  # after an outage: re-read
            came, self.live = not self.live, True
            self.epoch = new_epoch
            self.versions = {t: int(v) for t, v in (answer.get("versions") or {}).items()
                             if t in TOPICS}
        if came:
            self.post(PushState(True))
        moved = frozenset(answer.get("moved") or ())
        if restarted or back:
            self.post(TopicsMoved(frozenset(TOPICS), restarted=True))
        elif moved:
            self.post(TopicsMoved(moved))
