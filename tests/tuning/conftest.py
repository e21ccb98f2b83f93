"""Fixtures for the tuning tests: a real DuckDB store and a small Services of our own."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.store.db import Store
from lightkeeper.config import Config

sys.path.insert(0, str(Path(__file__).parent))


class LocalServices:
    """What tuning.calls uses from the agent: cfg, a real store, audit, set_current."""

    def __init__(self, cfg: Config, store: Store) -> None:
        self.cfg = cfg
        self.store = store
        self.audits: list[dict[str, Any]] = []
        self.current: dict[tuple[str, str], float] = {}

    def audit(self, event: str, actor: str | None = None, level: str = "info",
              component: str = "agent", **context: Any) -> None:
        self.audits.append({"event": event, "actor": actor, "level": level, **context})
        self.store.add_event("audit", event, level=level, component=component, actor=actor,
                             **context)

    def set_current(self, metric: str, label: str, value: float, ts: float | None = None,
                    record: bool = True) -> None:
        self.current[(metric, label)] = value


@pytest.fixture
def services(lk_cfg: Config, tmp_path: Path) -> Iterator[LocalServices]:
    import tuning.calls as calls

    calls._refused.clear()
    store = Store(tmp_path / "metrics.duckdb")
    yield LocalServices(lk_cfg, store)
    store.close()
