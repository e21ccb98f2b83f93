"""Fetching from the agent for the console, run in worker threads.

Every read goes through :class:`lightkeeper.client.AgentClient`; :func:`call` hands each
answer on with the type its call declares. An agent error (an unknown
call included: the agent and the console come from one install, so that is a version mismatch
to show, not to hide) becomes :class:`Failed`, so a panel shows the error instead of failing.
Losing the agent (:class:`AgentUnavailable`) is not caught here: the poll loop turns it into
the connection banner.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, overload

from lightkeeper.client import AgentError
from lightkeeper.contracts import agent as a
from lightkeeper.contracts import backup as b
from lightkeeper.contracts import rag as r
from lightkeeper.contracts import tuning as t
from lightkeeper.contracts import zones as z


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


# The answer of each call the console reads, as the package that serves it declares it
# (lightkeeper.contracts; tests/test_contracts.py checks real answers against these types). A
# name the console does not list here is a type error, not an untyped answer.
@overload
def call(client: Any, name: Literal["backup.snapshots"], **params: Any) -> b.SnapshotsResponse | Failed: ...
@overload
def call(client: Any, name: Literal["backup.stats"], **params: Any) -> b.StatsResponse | Failed: ...
@overload
def call(client: Any, name: Literal["backup.show"], **params: Any) -> b.ShowResponse | Failed: ...
@overload
def call(client: Any, name: Literal["metrics.latest"], **params: Any) -> dict[str, dict[str, float]] | Failed: ...
@overload
def call(client: Any, name: Literal["processes.list"], **params: Any) -> a.ProcessesResponse | Failed: ...
@overload
def call(client: Any, name: Literal["rag.latency"], **params: Any) -> a.LatencyResponse | Failed: ...
@overload
def call(client: Any, name: Literal["rag.summary"], **params: Any) -> list[a.OpsSummaryRow] | Failed: ...
@overload
def call(client: Any, name: Literal["rag.slowest"], **params: Any) -> list[a.SlowOp] | Failed: ...
@overload
def call(client: Any, name: Literal["rag.version_marks"], **params: Any) -> list[a.VersionMark] | Failed: ...
@overload
def call(client: Any, name: Literal["rag.top_users"], **params: Any) -> list[a.TopUser] | Failed: ...
@overload
def call(client: Any, name: Literal["rag.users"], **params: Any) -> r.UsersResponse | Failed: ...
@overload
def call(client: Any, name: Literal["tuning.params"], **params: Any) -> t.ParamsResponse | Failed: ...
@overload
def call(client: Any, name: Literal["tuning.show"], **params: Any) -> t.ShowResponse | Failed: ...
@overload
def call(client: Any, name: Literal["tuning.history"], **params: Any) -> t.HistoryResponse | Failed: ...
@overload
def call(client: Any, name: Literal["tuning.servers"], **params: Any) -> t.ServersResponse | Failed: ...
@overload
def call(client: Any, name: Literal["zones.list"], **params: Any) -> list[z.ZoneStatus] | Failed: ...


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
