"""A small Services of our own for calling tuning.calls without an agent process."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lightkeeper.agent.store.db import Store
from lightkeeper.config import Config


class LocalServices:
    """What tuning.calls uses from the agent: cfg, a real store, audit, set_current."""

    def __init__(self, cfg: Config, store: Store) -> None:
        self.cfg = cfg
        self.store = store
        self.audits: list[dict[str, Any]] = []
        self.current: dict[tuple[str, str], float] = {}

    def audit(self, event: str, actor: str | None = None, level: str = "info",
              component: str = "agent", log_only: Mapping[str, Any] | None = None,
              **context: Any) -> None:
        self.audits.append({"event": event, "actor": actor, "level": level, **context})
        self.store.add_event("audit", event, level=level, component=component, actor=actor,
                             context=context)

    def set_current(self, metric: str, label: str, value: float, ts: float | None = None,
                    record: bool = True) -> None:
        self.current[(metric, label)] = value
