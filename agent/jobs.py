"""Jobs run by the agent: one worker thread each, progress for any client, cancellation, history.

A job function may carry a ``resource`` attribute (a string, or a callable of the params that
returns one): two jobs with the same resource never run at once (the second is refused with a
clear error naming the running job). Backup jobs use ``"repository"``.
"""

from __future__ import annotations

import collections
import json
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lightkeeper.agent.changes import ChangeFeed
from lightkeeper.logs import get_logger, redact
from lightkeeper.progress import JobCancelled, ProgressState
from lightkeeper.services import CallError, JobFn, Services

log = get_logger("jobs")

ACTIVE = ("queued", "running")
MAX_LOGS = 500
# Finished jobs kept in memory (for their logs); older ones are read from the store.
RECENT_FINISHED = 20
# The newest job records, held for list calls (the console's panes ask for 20 on every poll):
# a list answers from memory, never from the store, once they are loaded.
HELD_RECORDS = 100
# Progress wakes long-polling clients at most this often; state changes and logs at once.
PROGRESS_NOTIFY_S = 0.2


@dataclass
class Job:
    id: str
    kind: str
    params: dict[str, Any]
    actor: str | None
    resource: str | None
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    state: str = "queued"
    summary: dict[str, Any] | None = None
    error: str | None = None
    logs: list[dict[str, Any]] = field(default_factory=list)
    progress_state: ProgressState = field(default_factory=ProgressState)
    cancel_event: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    version: int = 0  # the ChangeFeed version of this job's last change
    notify: Callable[[Job, bool], None] | None = None
    _last_progress_notify: float = 0.0

    def changed(self, progress: bool = False) -> None:
        if self.notify is None:
            return
        if progress:
            now = time.monotonic()
            if now - self._last_progress_notify < PROGRESS_NOTIFY_S:
                return
            self._last_progress_notify = now
        self.notify(self, progress)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "kind": self.kind, "params": redact(self.params), "actor": self.actor,
            "state": self.state, "created": self.created, "started": self.started,
            "finished": self.finished, "summary": self.summary, "error": self.error,
            "progress": self.progress_state.as_dict() if self.started else None,
            "logs": self.logs[-MAX_LOGS:],
            "duration_s": (self.finished or time.time()) - self.started if self.started else None,
            "version": self.version,
        }


class AgentJobContext:
    """The :class:`lightkeeper.progress.JobContext` the agent hands to job functions."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.job_id = job.id

    @property
    def cancelled(self) -> bool:
        return self.job.cancel_event.is_set()

    def check_cancelled(self) -> None:
        if self.job.cancel_event.is_set():
            raise JobCancelled(self.job.id)

    def progress(self, **fields: Any) -> None:
        state = self.job.progress_state
        for key, value in fields.items():
            if key != "extra" and hasattr(state, key):
                setattr(state, key, value)
            else:
                state.extra[key] = value
        self.job.changed(progress=True)

    def log(self, event: str, level: str = "info", **context: Any) -> None:
        entry = {"ts": time.time(), "level": level, "event": event, **redact(context)}
        self.job.logs.append(entry)
        if len(self.job.logs) > MAX_LOGS * 2:
            del self.job.logs[:MAX_LOGS]
        self.job.changed()
        getattr(log, level if level in ("debug", "info", "warning", "error") else "info")(
            event, job_id=self.job.id, kind=self.job.kind, **context)


class JobManager:
    def __init__(self, services: Services, registry: dict[str, JobFn]) -> None:
        self.services = services
        self.registry = registry
        self.jobs: dict[str, Job] = {}  # queued and running only
        self.recent: collections.OrderedDict[str, Job] = collections.OrderedDict()
        self._lock = threading.Lock()
        self.feed = ChangeFeed()
        # the newest records of the jobs table, newest first (None: not loaded); every write
        # moves the generation, so a load that overlapped one is not kept
        self._records: list[dict[str, Any]] | None = None
        self._records_gen = 0

    def _notify(self, job: Job, progress: bool = False) -> None:
        job.version = self.feed.notify()
        changes = getattr(self.services, "changes", None)  # the agent's TopicFeed
        if changes is not None:
            changes.notify(*job_topics(job, progress))

    def recover(self) -> None:
        """Jobs that were running when the agent died are marked interrupted."""
        store = self.services.store
        rows = store.execute("SELECT id, kind FROM jobs WHERE state IN ('queued', 'running')")
        for job_id, kind in rows:
            store.execute("UPDATE jobs SET state = 'interrupted', finished = ?, error = ? "
                          "WHERE id = ?", [time.time(), "the agent stopped while it ran", job_id])
            self.services.audit("job.interrupted", level="warning", component="jobs",
                                job_id=job_id, kind=kind)
        self.forget_records()  # after the updates: a list loads the records as they now are

    def _resource(self, fn: JobFn, params: dict[str, Any]) -> str | None:
        res = getattr(fn, "resource", None)
        return res(params) if callable(res) else res

    def start(self, kind: str, params: dict[str, Any], actor: str | None = None) -> Job:
        fn = self.registry.get(kind)
        if fn is None:
            raise CallError(f"unknown job kind {kind!r}; known: {', '.join(sorted(self.registry))}",
                            404, "unknown_job_kind")
        if not isinstance(params, dict):
            raise CallError("job params must be a JSON object")
        resource = self._resource(fn, params)
        with self._lock:
            if resource:
                for other in self.jobs.values():
                    if other.resource == resource and other.state in ACTIVE:
                        raise CallError(
                            f"job {other.id} ({other.kind}) is already using {resource}; "
                            f"wait for it or cancel it with 'lightkeeper jobs cancel {other.id}'",
                            409, "busy")
            job = Job(id=time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6], kind=kind,
                      params=params, actor=actor, resource=resource, notify=self._notify)
            self.jobs[job.id] = job
        record = {"id": job.id, "kind": kind, "state": job.state,
                  "params": json.dumps(redact(params), default=str), "created": job.created,
                  "started": None, "finished": None, "progress": None, "summary": None,
                  "error": None, "actor": actor}
        self.services.store.execute(
            f"INSERT INTO jobs ({', '.join(record)}) VALUES ({', '.join('?' * len(record))})",
            list(record.values()))
        self._record_written(record)
        self.services.audit("job.started", actor=actor, component="jobs", job_id=job.id,
                            kind=kind, params=params)
        job.thread = threading.Thread(target=self._run, args=(job, fn), name=f"job-{job.id}",
                                      daemon=True)
        job.thread.start()
        return job

    def _run(self, job: Job, fn: JobFn) -> None:
        ctx = AgentJobContext(job)
        job.started = time.time()
        job.progress_state.started = job.started
        job.state = "running"
        self.services.store.execute("UPDATE jobs SET state = 'running', started = ? WHERE id = ?",
                                    [job.started, job.id])
        self._record_written({"id": job.id, "state": "running", "started": job.started})
        job.changed()
        # The final state is published last, after the history row and the audit event, so
        # a client that sees the job end also finds its record.
        state = "failed"
        try:
            summary = fn(ctx, self.services, job.params) or {}
            if not isinstance(summary, dict):
                summary = {"result": summary}
            state = summary.pop("state", None) or "succeeded"
            job.summary = summary
        except JobCancelled:
            state = "cancelled"
            job.error = "cancelled by the operator"
        except CallError as exc:
            job.error = str(exc)
        except Exception as exc:  # noqa: BLE001  a failing job must never take the agent down
            job.error = f"{exc}" if str(exc) else type(exc).__name__
            log.error("job.crashed", job_id=job.id, kind=job.kind,
                      error=f"{type(exc).__name__}: {exc}",
                      trace=traceback.format_exc(limit=8))
        job.finished = time.time()
        ended = {"state": state, "finished": job.finished,
                 "summary": json.dumps(job.summary, default=str), "error": job.error,
                 "progress": json.dumps(job.progress_state.as_dict(), default=str)}
        try:
            self.services.store.execute(
                f"UPDATE jobs SET {', '.join(f'{k} = ?' for k in ended)} WHERE id = ?",
                [*ended.values(), job.id])
            self._record_written({"id": job.id, **ended})
        except Exception as exc:  # noqa: BLE001  the job's own outcome is already published; logged
            log.error("job.record_failed", job_id=job.id, error=str(exc))
        level = "info" if state == "succeeded" else "warning" if state in (
            "cancelled", "partial", "problems") else "error"
        self.services.audit(f"job.{state}", level=level, actor=job.actor, component="jobs",
                            job_id=job.id, kind=job.kind, error=job.error,
                            duration_ms=round((job.finished - job.started) * 1000),
                            log_only={"summary": job.summary})
        job.state = state
        # A finished job leaves the live table (its record is in the store); the last few stay
        # in memory for their logs. Waiters are woken after the move, so they find it.
        with self._lock:
            self.jobs.pop(job.id, None)
            self.recent[job.id] = job
            while len(self.recent) > RECENT_FINISHED:
                self.recent.popitem(last=False)
        job.thread = None
        job.changed()

    def cancel(self, job_id: str) -> Job:
        job = self.find(job_id)
        if job is None:
            raise CallError(f"no running job {job_id!r}", 404, "not_found")
        if job.state in ACTIVE:
            job.cancel_event.set()
            log.info("job.cancel_requested", job_id=job_id, kind=job.kind)
        return job

    def find(self, job_id: str) -> Job | None:
        with self._lock:
            return self.jobs.get(job_id) or self.recent.get(job_id)

    def get(self, job_id: str) -> dict[str, Any]:
        job = self.find(job_id)
        if job is not None:
            return job.as_dict()
        rows = self.services.store.read_dicts("SELECT * FROM jobs WHERE id = ?", [job_id])
        if not rows:
            raise CallError(f"no job {job_id!r}", 404, "not_found")
        return _row_to_job(rows[0])

    def list_jobs(self, limit: int = 50, active: bool = False) -> list[dict[str, Any]]:
        """The newest jobs, newest first: the running ones and the last finished as they are
        in memory, the others as their records in the store say (for the usual list, from the
        newest records held in memory: :data:`HELD_RECORDS`)."""
        with self._lock:
            live = {j.id: j for j in (*self.jobs.values(), *self.recent.values())}
        if active or limit > HELD_RECORDS:
            sql = "SELECT * FROM jobs"
            if active:
                sql += " WHERE state IN ('queued', 'running')"
            sql += " ORDER BY created DESC LIMIT ?"
            rows = self.services.store.read_dicts(sql, [limit])
        else:
            rows = self._newest(limit)
        out = []
        for row in rows:
            job = live.get(row["id"])
            doc = job.as_dict() if job is not None else _row_to_job(row)
            out.append({k: v for k, v in doc.items() if k != "logs"})
        return out

    def _newest(self, limit: int) -> list[dict[str, Any]]:
        """The newest records as the store holds them (their columns as read)."""
        with self._lock:
            if self._records is not None:
                return [dict(r) for r in self._records[:limit]]
            gen = self._records_gen
        rows = self.services.store.read_dicts(
            "SELECT * FROM jobs ORDER BY created DESC LIMIT ?", [HELD_RECORDS])
        with self._lock:
            if gen == self._records_gen:  # no write overlapped the query
                self._records = [dict(r) for r in rows]
        return rows[:limit]

    def _record_written(self, columns: dict[str, Any]) -> None:
        """A statement wrote these columns of a job's record (all of them when it inserted
        it): the held records take the values it wrote."""
        with self._lock:
            self._records_gen += 1
            if self._records is None:
                return
            held = next((r for r in self._records if r["id"] == columns["id"]), None)
            if held is not None:
                held.update(columns)
            elif "created" in columns:  # a new record (an update of one not held: older)
                self._records.append(dict(columns))
                self._records.sort(key=lambda r: r["created"] or 0.0, reverse=True)
                del self._records[HELD_RECORDS:]

    def forget_records(self) -> None:
        """Records were deleted (retention): the next list loads them again."""
        with self._lock:
            self._records_gen += 1
            self._records = None

    def held(self) -> int:
        """Jobs held in memory: the running ones and the last few finished (bounded)."""
        with self._lock:
            return len(self.jobs) + len(self.recent)

    def running(self) -> list[Job]:
        with self._lock:
            return [j for j in self.jobs.values() if j.state in ACTIVE]

    def shutdown(self, timeout: float) -> None:
        for job in self.running():
            job.cancel_event.set()
        deadline = time.monotonic() + timeout
        for job in self.running():
            thread = job.thread
            if thread is not None and thread.is_alive():
                thread.join(max(0.0, deadline - time.monotonic()))


def job_topics(job: Job, progress: bool = False) -> tuple[str, ...]:
    """The change topics a job's change moves: progress alone, or the job list; an ended job
    also moves what it changed (the repository's snapshots, the zones)."""
    if progress:
        return ("progress",)
    if job.state in ACTIVE:
        return ("jobs",)
    topics = ["jobs"]
    if job.resource == "repository":
        topics.append("backups")
    if job.kind == "replicate" or job.kind.startswith("zone"):
        topics.append("zones")
    return tuple(topics)


def _row_to_job(row: dict[str, Any]) -> dict[str, Any]:
    doc = dict(row)
    for key in ("params", "summary", "progress"):
        if isinstance(doc.get(key), str):
            doc[key] = json.loads(doc[key])
    doc["logs"] = []
    if doc.get("started"):
        doc["duration_s"] = (doc.get("finished") or time.time()) - doc["started"]
    return doc
