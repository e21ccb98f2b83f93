"""The contract between long-running work (backup, restore, replication) and whoever runs it.

Jobs are plain functions that receive a :class:`JobContext`. They report progress through
``ctx.progress(...)`` and check ``ctx.cancelled`` (or call ``ctx.check_cancelled()``) between
units of work. The agent supplies a context that streams progress to clients and records the
job; tests and the CLI's ``--local`` paths can use :class:`LocalContext`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol


class JobCancelled(Exception):
    """Raised inside a job when cancellation was requested; the job cleans up and stops."""


@dataclass
class ProgressState:
    """A snapshot of a job's progress, as streamed to clients (restic's ``status`` line)."""

    phase: str = ""
    files_done: int = 0
    files_total: int | None = None
    bytes_done: int = 0
    bytes_total: int | None = None
    current: str = ""
    started: float = field(default_factory=time.time)
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        elapsed = max(time.time() - self.started, 1e-9)
        rate = self.bytes_done / elapsed
        eta = None
        if self.bytes_total and rate > 0 and self.bytes_done <= self.bytes_total:
            eta = (self.bytes_total - self.bytes_done) / rate
        percent = None
        if self.bytes_total:
            percent = min(100.0, 100.0 * self.bytes_done / self.bytes_total)
        elif self.files_total:
            percent = min(100.0, 100.0 * self.files_done / self.files_total)
        return {
            "phase": self.phase,
            "files_done": self.files_done,
            "files_total": self.files_total,
            "bytes_done": self.bytes_done,
            "bytes_total": self.bytes_total,
            "current": self.current,
            "elapsed_s": round(elapsed, 3),
            "rate_bytes_s": round(rate, 1),
            "eta_s": None if eta is None else round(eta, 1),
            "percent": None if percent is None else round(percent, 2),
            **self.extra,
        }


class JobContext(Protocol):
    """What a job may use: progress reporting, cancellation and a logger-like ``log``."""

    job_id: str

    @property
    def cancelled(self) -> bool: ...

    def check_cancelled(self) -> None: ...

    def progress(self, **fields: Any) -> None: ...

    def log(self, event: str, level: str = "info", **context: Any) -> None: ...


class LocalContext:
    """A job context for running a job in-process (tests, ``--local`` CLI paths)."""

    def __init__(
        self,
        job_id: str = "local",
        on_progress: Callable[[dict[str, Any]], None] | None = None,
        on_log: Callable[[str, str, dict[str, Any]], None] | None = None,
    ) -> None:
        self.job_id = job_id
        self.state = ProgressState()
        self._cancel = threading.Event()
        self._on_progress = on_progress
        self._on_log = on_log
        self.logs: list[tuple[str, str, dict[str, Any]]] = []

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def cancel(self) -> None:
        self._cancel.set()

    def check_cancelled(self) -> None:
        if self._cancel.is_set():
            raise JobCancelled(self.job_id)

    def progress(self, **fields: Any) -> None:
        for key, value in fields.items():
            if hasattr(self.state, key) and key != "extra":
                setattr(self.state, key, value)
            else:
                self.state.extra[key] = value
        if self._on_progress is not None:
            self._on_progress(self.state.as_dict())

    def log(self, event: str, level: str = "info", **context: Any) -> None:
        self.logs.append((event, level, context))
        if self._on_log is not None:
            self._on_log(event, level, context)
