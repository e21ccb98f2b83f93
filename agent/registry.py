"""Modules whose ``CALLS``, ``JOBS`` and ``SCHEDULES`` the agent serves."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from lightkeeper.logs import get_logger
from lightkeeper.services import CallFn, JobFn

log = get_logger("agent")

MODULES = [
    "lightkeeper.agent.calls",
    "lightkeeper.agent.watch",
    "lightkeeper.agent.alertmanager",
    "lightkeeper.rag.calls",
    "lightkeeper.tuning.calls",
    "lightkeeper.backup.calls",
    "lightkeeper.backup.zones.calls",
]


def probes() -> list[Callable[[Any], list]]:
    """``PROBES`` providers: ``(name, schedule_text, fn(services))`` entries the agent runs as
    periodic samples, with no job record."""
    return [mod.PROBES for name in MODULES
            if callable(getattr(mod := importlib.import_module(name), "PROBES", None))]


def load() -> tuple[dict[str, CallFn], dict[str, JobFn], list[Callable[[Any], list]]]:
    calls: dict[str, CallFn] = {}
    jobs: dict[str, JobFn] = {}
    schedules: list[Callable[[Any], list]] = []
    for name in MODULES:
        mod = importlib.import_module(name)  # a missing part of our own package fails loudly
        calls.update(getattr(mod, "CALLS", {}))
        jobs.update(getattr(mod, "JOBS", {}))
        if callable(getattr(mod, "SCHEDULES", None)):
            schedules.append(mod.SCHEDULES)
    return calls, jobs, schedules
