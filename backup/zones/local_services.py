"""The part of the agent's Services that zone jobs use, for running them in-process
(``--local`` on the CLI, tests): audit events go to the log, samples are kept in memory."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from lightkeeper.config import Config
from lightkeeper.logs import get_logger

log = get_logger("zones")


class LocalServices:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.samples: list[tuple[float, str, str, float]] = []

    @property
    def store(self) -> Any:
        return None

    def audit(self, event: str, actor: str | None = None, level: str = "info",
              component: str = "zones", log_only: Mapping[str, Any] | None = None,
              **context: Any) -> None:
        self.events.append((event, {"actor": actor, "level": level, **context}))
        getattr(log, level if level in ("debug", "info", "warning", "error") else "info")(
            event, actor=actor, **context, **(log_only or {}))

    def add_samples(self, samples: Iterable[tuple[float, str, str, float]]) -> None:
        self.samples.extend(samples)

    def metrics_snapshot(self, dest: Path) -> Path:
        raise RuntimeError("no metrics store in a local run")

    def start_job(self, kind: str, params: dict[str, Any], actor: str | None = None) -> str:
        raise RuntimeError("jobs cannot start other jobs in a local run")

    def repository_lock_holder(self) -> str | None:
        return None

    def latest(self, metric: str, label: str) -> float | None:
        for _ts, m, lab, value in reversed(self.samples):
            if m == metric and lab == label:
                return value
        return None
