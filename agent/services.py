"""The agent's implementation of :class:`lightkeeper.services.Services`."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lightkeeper.agent.changes import TopicFeed
from lightkeeper.agent.derived import with_derived
from lightkeeper.agent.store.db import Store
from lightkeeper.config import Config
from lightkeeper.logs import get_logger

if TYPE_CHECKING:
    from lightkeeper.agent.jobs import JobManager

log = get_logger("agent")


class AgentServices:
    def __init__(self, cfg: Config, store: Store) -> None:
        self.cfg = cfg
        self._store = store
        self.jobs: JobManager | None = None
        # newest value per (metric, label): (ts, value); what alerts and endpoints read
        self.current: dict[tuple[str, str], tuple[float, float]] = {}
        # the process collector's newest table (``processes.list``); set by the daemon
        self.process_table: Callable[[], list[dict[str, Any]]] | None = None
        # what the console follows instead of re-fetching (the ``changes.wait`` call)
        self.changes = TopicFeed()

    @property
    def store(self) -> Store:
        return self._store

    def audit(self, event: str, actor: str | None = None, level: str = "info",
              component: str = "agent", log_only: Mapping[str, Any] | None = None,
              **context: Any) -> None:
        getattr(log, level if level in ("debug", "info", "warning", "error") else "info")(
            event, actor=actor, **context, **(log_only or {}))
        kind = "alert" if event.startswith("alert.") else "audit"
        try:
            self._store.add_event(kind, event, level=level, component=component, actor=actor,
                                  context=context)
        except Exception as exc:  # noqa: BLE001  the log line above still records it
            log.error("audit.store_failed", audit_event=event, error=str(exc))
        self.changes.notify(*event_topics(event))

    def add_samples(self, samples: Iterable[tuple[float, str, str, float]]) -> None:
        batch = list(samples)
        for ts, metric, label, value in batch:
            self.current[(metric, label)] = (ts, value)
        self._store.add_samples(batch)

    def set_current(self, metric: str, label: str, value: float, ts: float | None = None,
                    record: bool = True) -> None:
        ts = time.time() if ts is None else ts
        if record:
            self.add_samples([(ts, metric, label, value)])
        else:
            self.current[(metric, label)] = (ts, value)

    def current_values(self, now: float | None = None, only: Collection[str] | None = None
                       ) -> dict[tuple[str, str], tuple[float, float]]:
        """The newest values with ages and lags computed now from their timestamps
        (``agent.derived``): what alerts, ``/metrics`` and ``metrics.latest`` read; with
        ``only``, those metrics' alone."""
        return with_derived(dict(self.current), now, only)

    def drop_current(self, metric: str, label: str) -> None:
        self.current.pop((metric, label), None)

    def metrics_snapshot(self, dest: Path) -> Path:
        """A consistent copy: flush, checkpoint, copy, all while holding the store's lock."""
        dest = Path(dest)
        if dest.is_dir():
            dest = dest / self._store.path.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        with self._store.lock, self._store.readers.exclusive():
            self._store.flush()
            self._store.con.execute("CHECKPOINT")
            tmp = dest.with_name(dest.name + ".tmp")
            shutil.copyfile(self._store.path, tmp)
            tmp.replace(dest)
        return dest

    def start_job(self, kind: str, params: dict[str, Any], actor: str | None = None) -> str:
        assert self.jobs is not None
        return self.jobs.start(kind, params, actor).id

    def repository_lock_holder(self) -> str | None:
        if self.jobs is None:
            return None
        for job in self.jobs.running():
            if job.resource == "repository":
                return job.id
        return None


# An audit event also moves the topic of what it reports (``agent.changes.TOPICS``).
_EVENT_TOPICS = {"alert": "alerts", "tuning": "tuning", "config": "config", "backup": "backups",
                 "zone": "zones", "zones": "zones"}


def event_topics(event: str) -> tuple[str, ...]:
    topic = _EVENT_TOPICS.get(event.split(".", 1)[0])
    return ("events", topic) if topic else ("events",)
