"""Fetching from the agent for the console, run in worker threads.

Every read goes through :class:`lightkeeper.client.AgentClient`. A call the agent does not
serve (a package not installed or not registered yet) becomes :class:`Unavailable`, so a panel
can say "not available" instead of failing; any other agent error becomes :class:`Failed`.
Losing the agent (:class:`AgentUnavailable`) is not caught here: the poll loop turns it into
the connection banner.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lightkeeper.client import AgentError


@dataclass(frozen=True)
class Unavailable:
    """The agent does not serve this call (yet)."""

    name: str

    def __str__(self) -> str:
        return f"not available: the agent does not serve {self.name}"


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
    if isinstance(value, (Unavailable, Failed)):
        return str(value)
    return None


def call(client: Any, name: str, **params: Any) -> Any:
    """``client.call`` that turns an unknown call into Unavailable and errors into Failed."""
    try:
        return client.call(name, **params)
    except AgentError as exc:
        if exc.code == "unknown_call" or exc.status == 404 and "unknown call" in str(exc):
            return Unavailable(name)
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
