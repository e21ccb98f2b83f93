"""Recorded agent answers, replayed: for snapshot tests and screenshots only.

:class:`RecordingClient` wraps a live ``AgentClient`` and keeps the last answer of every read
the console makes. :class:`RecordedReplayClient` answers those reads from the recording, with
the recording's clock, so a screen renders the same way every time. It is a recorded-data
replay for rendering, not a test of behaviour: every action (jobs, tuning changes) is refused.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from lightkeeper.client import AgentError


def _key(kind: str, *parts: Any) -> str:
    return "|".join([kind, *("" if p is None else str(p) for p in parts)])


class RecordingClient:
    """Passes reads to ``client`` and records their answers."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.answers: dict[str, Any] = {}
        self.recording = True  # False: reads pass through unrecorded (a live scene)
        self._lock = threading.Lock()

    def _keep(self, key: str, value: Any) -> Any:
        if self.recording:
            with self._lock:
                self.answers[key] = value
        return value

    def status(self) -> dict[str, Any]:
        return self._keep("status", self.client.status())

    def series(self, metric: str, label: str | None = None, window: str | float = "1h",
               step: float | None = None, agg: str = "avg") -> dict[str, Any]:
        return self._keep(_key("series", metric, label),
                          self.client.series(metric, label, window, step, agg))

    def events(self, since: int = 0, limit: int = 200, level: str | None = None,
               kind: str | None = None, q: str | None = None) -> list[dict[str, Any]]:
        out = self.client.events(since, limit, level, kind, q)
        if since == 0 and not level and not q:
            self._keep("events", out)
        return out

    def jobs(self, limit: int = 50, active: bool = False) -> list[dict[str, Any]]:
        return self._keep(_key("jobs", active), self.client.jobs(limit, active))

    def call(self, name: str, **params: Any) -> Any:
        try:
            result = self.client.call(name, **params)
        except AgentError as exc:
            self._keep(_key("call", name), {"__error__": [str(exc), exc.status, exc.code]})
            raise
        return self._keep(_key("call", name), result)

    def __getattr__(self, name: str) -> Any:  # actions pass through unrecorded
        return getattr(self.client, name)

    def save(self, path: Path, now: float) -> None:
        doc = {"now": now, "answers": self.answers}
        Path(path).write_text(json.dumps(doc, indent=1, sort_keys=True, default=str) + "\n")


class RecordedReplayClient:
    """Answers the console's reads from a recording; refuses every action."""

    def __init__(self, path: Path) -> None:
        doc = json.loads(Path(path).read_text())
        self.now: float = doc["now"]
        self.answers: dict[str, Any] = doc["answers"]

    def _get(self, key: str, default: Any = None) -> Any:
        value = self.answers.get(key, default)
        if isinstance(value, dict) and "__error__" in value:
            message, status, code = value["__error__"]
            raise AgentError(message, status, code)
        return value

    def ping(self) -> bool:
        return True

    def status(self) -> dict[str, Any]:
        return self._get("status")

    def series(self, metric: str, label: str | None = None, window: str | float = "1h",
               step: float | None = None, agg: str = "avg") -> dict[str, Any]:
        return self._get(_key("series", metric, label),
                         {"metric": metric, "step": 60, "series": {}})

    def events(self, since: int = 0, limit: int = 200, level: str | None = None,
               kind: str | None = None, q: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self._get("events", []) if e["id"] > since]

    def jobs(self, limit: int = 50, active: bool = False) -> list[dict[str, Any]]:
        return self._get(_key("jobs", active), [])

    def call(self, name: str, **params: Any) -> Any:
        key = _key("call", name)
        if key not in self.answers:
            raise AgentError(f"unknown call {name!r}", 404, "unknown_call")
        return self._get(key)

    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise AgentError("this is a recorded-data replay: actions are not available", 400,
                         "replay")

    start_job = cancel_job = job = _refuse
