"""Fetching from the agent for the console, run in worker threads.

Every read goes through :class:`lightkeeper.client.AgentClient`. An agent error (an unknown
call included: the agent and the console come from one install, so that is a version mismatch
to show, not to hide) becomes :class:`Failed`, so a panel shows the error instead of failing.
Losing the agent (:class:`AgentUnavailable`) is not caught here: the poll loop turns it into
the connection banner.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lightkeeper.client import AgentError


@dataclass(frozen=True)
class Failed:
    """The agent answered with an error for this call."""

    name: str
    message: str
    code: str = "error"

    def __str__(self) -> str:
        return f"{self.name} failed: {self.message}"


def problem(value: Any) -> str | None:
    """The text to show instead of data, or None when ``value`` is real data."""
    if isinstance(value, Failed):
        return str(value)
    return None


def call(client: Any, name: str, **params: Any) -> Any:
    """``client.call`` that turns an agent error into Failed."""
    try:
        return client.call(name, **params)
    except AgentError as exc:
        return Failed(name, str(exc), exc.code)


def no_repository(value: Any) -> bool:
    """The backup package answered that no repository exists yet."""
    return isinstance(value, Failed) and value.code == "repository" and \
        "no backup repository" in value.message


def series(client: Any, metric: str, label: str | None, window: str,
           agg: str = "avg") -> Any:
    try:
        return client.series(metric, label=label, window=window, agg=agg)
    except AgentError as exc:
        return Failed(f"series {metric}", str(exc))


def job_kinds(status: dict[str, Any] | None) -> set[str]:
    if not status:
        return set()
    return set((status.get("jobs") or {}).get("kinds") or [])
