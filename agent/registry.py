"""Modules whose ``CALLS``, ``JOBS`` and ``SCHEDULES`` the agent serves."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from typing import Any

from lightkeeper.logs import get_logger
from lightkeeper.services import CallFn, JobFn

log = get_logger("agent")

MODULES = [
    "agent.calls",
    "rag.calls",
    "tuning.calls",
    "backup.calls",
    "backup.zones.calls",
]


def load() -> tuple[dict[str, CallFn], dict[str, JobFn], list[Callable[[Any], list]]]:
    calls: dict[str, CallFn] = {}
    jobs: dict[str, JobFn] = {}
    schedules: list[Callable[[Any], list]] = []
    for name in MODULES:
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            continue
        mod = importlib.import_module(name)
        calls.update(getattr(mod, "CALLS", {}))
        jobs.update(getattr(mod, "JOBS", {}))
        if callable(getattr(mod, "SCHEDULES", None)):
            schedules.append(mod.SCHEDULES)
    return calls, jobs, schedules
