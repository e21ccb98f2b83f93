"""What the agent offers to the calls and jobs that other packages register with it.

Packages (``backup``, ``tuning``, ``rag``...) never import the agent. Each may expose, in a
module named ``calls`` (for example ``backup/calls.py``):

- ``CALLS: dict[str, Callable[[Services, dict], Any]]``: request/response functions served at
  ``POST /v1/call/<name>`` and reached with ``AgentClient.call(name, **params)``. They return
  JSON-serialisable data and raise ``CallError`` (or ``ValueError``) for bad input.
- ``JOBS: dict[str, Callable[[JobContext, Services, dict], dict]]``: long-running work run by the
  agent in a worker thread with progress, cancellation and a record in the job history. The
  returned dict is the job's summary.
- ``SCHEDULES: Callable[[Services], list[tuple[str, str, dict]]]`` (optional): returns
  ``(kind, schedule_text, params)`` triples the agent's scheduler runs.

The agent lists these modules in ``agent/registry.py``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

from lightkeeper.config import Config


class CallError(Exception):
    """A request that cannot be served; ``status`` is the HTTP status the API answers with."""

    def __init__(self, message: str, status: int = 400, code: str = "bad_request") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def int_param(params: Mapping[str, Any], name: str, default: int, lo: int, hi: int) -> int:
    """An integer request parameter within [lo, hi], or CallError (400) saying what is allowed.
    Every numeric parameter of the API goes through here or :func:`float_param`."""
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        if isinstance(raw, bool) or isinstance(raw, float):
            raise ValueError
        value = int(raw.strip()) if isinstance(raw, str) else int(raw)
    except (TypeError, ValueError):
        raise CallError(f"{name} must be an integer, got {raw!r:.60}") from None
    if not lo <= value <= hi:
        raise CallError(f"{name} must be between {lo} and {hi}, got {value}")
    return value


def float_param(params: Mapping[str, Any], name: str, default: float | None, lo: float,
                hi: float) -> float | None:
    """A finite number within [lo, hi] (NaN and infinities refused), or CallError (400)."""
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        if isinstance(raw, bool):
            raise ValueError
        value = float(raw.strip()) if isinstance(raw, str) else float(raw)
    except (TypeError, ValueError):
        raise CallError(f"{name} must be a number, got {raw!r:.60}") from None
    if not math.isfinite(value) or not lo <= value <= hi:
        raise CallError(f"{name} must be a number between {lo:g} and {hi:g}, got {raw!r:.60}")
    return value


class Services(Protocol):
    cfg: Config

    @property
    def store(self) -> Any:
        """The agent's ``agent.store.db.Store`` (DuckDB). Use ``execute``/``query_dicts``/
        ``transaction``; never keep a cursor across calls."""

    def audit(self, event: str, actor: str | None = None, level: str = "info",
              component: str = "agent", log_only: Mapping[str, Any] | None = None,
              **context: Any) -> None:
        """Record a critical operation: an audit event in the store and a log line.
        ``log_only``: more context for the log line alone (a finished job's summary, which the
        job's record in the store already holds)."""

    def add_samples(self, samples: Iterable[tuple[float, str, str, float]]) -> None:
        """Queue (ts, metric, label, value) samples for the store."""

    def set_current(self, metric: str, label: str, value: float, ts: float | None = None,
                    record: bool = True) -> None:
        """Set the newest value of a series (what alerts and /metrics read); with ``record``
        it is also stored as a sample."""

    def metrics_snapshot(self, dest: Path) -> Path:
        """Write a consistent copy of the metrics store to ``dest`` and return its path."""

    def start_job(self, kind: str, params: dict[str, Any], actor: str | None = None) -> str:
        """Start another job (for schedules and chained work); returns its id."""

    def repository_lock_holder(self) -> str | None:
        """The id of the running job that holds the backup repository, if any."""


# A handler's params arrive as a JSON object; each handler declares the request and response
# types it serves (lightkeeper/contracts), which tests/test_contracts.py checks. The registry
# holds them all, so it types the params as Any.
JobFn = Callable[[Any, Services, Any], Any]
CallFn = Callable[[Services, Any], Any]
