"""What the agent's servers (the Unix-socket API and the TCP endpoints) need of the agent.

The servers depend on this protocol, not on :class:`lightkeeper.agent.daemon.Agent`: the daemon
composes the servers, so they must not import it back (the agent's layers, checked by
import-linter, forbid it).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from lightkeeper.agent.histograms import RagHistograms
from lightkeeper.agent.jobs import JobManager
from lightkeeper.agent.services import AgentServices
from lightkeeper.agent.store.db import Store
from lightkeeper.agent.store.rollup import Retention
from lightkeeper.services import CallFn


class AgentView(Protocol):
    host: str
    started: float
    retention: Retention
    store: Store | None  # open while the servers run
    services: AgentServices
    calls: dict[str, CallFn]
    jobs: JobManager
    rag_histograms: RagHistograms

    def run_blocking(self, fn: Callable[..., Any], *args: Any) -> Awaitable[Any]:
        """Run ``fn`` in a worker thread (the store and the calls block)."""
        ...

    def status(self) -> dict[str, Any]:
        """The agent's status document (``/v1/status``)."""
        ...

    def reload(self, actor: str | None = None) -> dict[str, Any]:
        """Re-read the configuration (``agent.reload``): ``{ok, changed}`` or ``{ok, error}``."""
        ...

    def readiness_problems(self) -> list[str]:
        """Why the agent is not ready (empty when ready)."""
        ...
