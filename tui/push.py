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
    :class:`TopicsMoved` and :class:`PushState` messages (``post_message`` is thread-safe)."""

    def __init__(self, client: Any, post: Callable[[Message], Any],
                 wait_s: float = WAIT_S) -> None:
        self.client = client
        self.post = post
        self.wait_s = wait_s
        self.stop_event = threading.Event()
        self.calls = 0  # long polls made (the bench counts them)
        self._thread = threading.Thread(target=self._run, name="lightkeeper-push", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop after the long poll under way (at most ``wait_s``; the thread is a daemon)."""
        self.stop_event.set()

    def _run(self) -> None:
        versions: dict[str, int] = {}
        epoch: str | None = None
        live = False
        failures = 0
        while not self.stop_event.is_set():
            try:
                self.calls += 1
                answer = self.client.wait_changes(versions, epoch,
                                                  timeout=self.wait_s if versions else 0.0)
            except AgentError as exc:
                if exc.status == 404 or exc.status == 400:  # no such call: an older agent
                    self.post(PushState(False, f"the agent does not push changes: {exc}"))
                    return
                failures += 1
            except (AgentUnavailable, OSError) as exc:
                failures += 1
                if live:
                    live = False
                    self.post(PushState(False, str(exc)))
            else:
                failures = 0
                new_epoch = str(answer.get("epoch") or "")
                restarted = epoch is not None and new_epoch != epoch
                first = epoch is None
                epoch = new_epoch
                versions = {t: int(v) for t, v in (answer.get("versions") or {}).items()
                            if t in TOPICS}
                if not live:
                    live = True
                    self.post(PushState(True))
                    restarted = restarted or not first  # back after an outage: re-read
                moved = frozenset(answer.get("moved") or ())
                if restarted:
                    self.post(TopicsMoved(frozenset(TOPICS), restarted=True))
                elif moved:
                    self.post(TopicsMoved(moved))
                continue
            self.stop_event.wait(RETRY_S[min(failures, len(RETRY_S)) - 1])
