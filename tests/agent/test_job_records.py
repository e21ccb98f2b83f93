"""The job list answers from the newest job records held in memory (agent/jobs.py): through
job starts and ends, jobs that left memory, an interrupted job and a retention pass, it lists
what the store's own query gives."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from lightkeeper import config as config_mod
from lightkeeper.agent.jobs import HELD_RECORDS, RECENT_FINISHED, JobManager, _row_to_job
from lightkeeper.agent.services import AgentServices
from lightkeeper.agent.store.db import Store
from lightkeeper.agent.store.rollup import Retention, apply_retention


def _work(ctx: Any, services: Any, params: dict[str, Any]) -> dict[str, Any]:
    gate = params.get("gate")
    if gate:
        GATES[gate].wait(30)
    if params.get("fail"):
        raise RuntimeError("asked to fail")
    return {"n": params["n"], "files": params["n"] * 3}


GATES: dict[str, threading.Event] = {}


def _store_view(jm: JobManager, store: Store, limit: int) -> list[dict[str, Any]]:
    """What a list made from the store's own query shows: a job still in memory as it is
    there, every other one as its record (all its columns, as read)."""
    out = []
    for row in store.read_dicts("SELECT * FROM jobs ORDER BY created DESC LIMIT ?", [limit]):
        job = jm.find(row["id"])
        doc = job.as_dict() if job is not None else _row_to_job(row)
        out.append(_comparable(jm, doc))
    return out


def _comparable(jm: JobManager, doc: dict[str, Any]) -> dict[str, Any]:
    """A listed job without what moves with the clock (a live job's progress and every
    unfinished job's duration)."""
    moving = {"logs", "duration_s"} | ({"progress"} if jm.find(doc["id"]) else set())
    return {k: v for k, v in doc.items() if k not in moving}


def _listed(jm: JobManager, limit: int) -> list[dict[str, Any]]:
    return [_comparable(jm, doc) for doc in jm.list_jobs(limit)]


def _run(jm: JobManager, n: int, **params: Any) -> str:
    job = jm.start("work", {"n": n, **params}, actor="test")
    if job.thread is not None:
        job.thread.join(30)
    return job.id


def test_job_list_answers_as_the_store_does_from_held_records(tmp_path: Path) -> None:
    cfg = config_mod.load(env={"LIGHTKEEPER_PATHS__STATE_DIR": str(tmp_path / "state")},
                          read_system=False)
    store = Store(tmp_path / "m.duckdb")
    jm = JobManager(AgentServices(cfg, store), {"work": _work})
    for n in range(3):
        _run(jm, n)
    assert _listed(jm, 20) == _store_view(jm, store, 20)  # loads the held records
    assert jm._records is not None

    # more jobs than memory keeps: the older ones are listed from their held records
    for n in range(3, 3 + RECENT_FINISHED + 10):
        _run(jm, n, fail=n % 7 == 0)
        time.sleep(0.002)  # distinct creation times, as jobs started by people have
    assert not any(jm.find(d["id"]) for d in _store_view(jm, store, 50)[RECENT_FINISHED:])
    assert any(d["summary"] and "files" in d["summary"] for d in _listed(jm, 50)[RECENT_FINISHED:])
    assert _listed(jm, 20) == _store_view(jm, store, 20)
    assert _listed(jm, 50) == _store_view(jm, store, 50)
    assert len(jm.list_jobs(HELD_RECORDS + 5)) == 3 + RECENT_FINISHED + 10  # from the store

    # a running job is listed live, then as its record once it ended
    GATES["g"] = threading.Event()
    job = jm.start("work", {"n": 99, "gate": "g"})
    time.sleep(0.05)
    first = jm.list_jobs(5)[0]
    assert first["id"] == job.id and first["state"] == "running"
    GATES["g"].set()
    assert job.thread is not None
    job.thread.join(30)
    assert _listed(jm, 20) == _store_view(jm, store, 20)

    # retention deletes old records: the agent's maintenance tells the job list
    cut = jm.list_jobs(50)[10]["created"]
    deleted = apply_retention(store, Retention(jobs_days=(time.time() - cut) / 86400))
    assert deleted["jobs"] > 0
    jm.forget_records()
    assert _listed(jm, 50) == _store_view(jm, store, 50)
    assert len(_listed(jm, 50)) <= 11
    store.close()


def test_jobs_interrupted_by_a_stop_are_listed_as_the_store_now_has_them(tmp_path: Path) -> None:
    cfg = config_mod.load(env={"LIGHTKEEPER_PATHS__STATE_DIR": str(tmp_path / "state")},
                          read_system=False)
    store = Store(tmp_path / "m.duckdb")
    first = JobManager(AgentServices(cfg, store), {"work": _work})
    _run(first, 1)
    assert _listed(first, 5) == _store_view(first, store, 5)  # held by this manager
    # the agent died while a job ran: its record says running
    store.execute("INSERT INTO jobs (id, kind, state, params, created, started, actor) "
                  "VALUES ('crashed', 'work', 'running', '{}', ?, ?, 'test')",
                  [time.time(), time.time()])
    again = JobManager(AgentServices(cfg, store), {"work": _work})  # the next start
    again.recover()
    listed = again.list_jobs(5)
    assert listed[0]["id"] == "crashed" and listed[0]["state"] == "interrupted"
    assert _listed(again, 5) == _store_view(again, store, 5)
    store.close()


def test_a_finished_jobs_audit_event_leaves_its_summary_to_the_record(tmp_path: Path) -> None:
    """The stored job.succeeded event names the job; the summary is in the job's record (kept
    longer than events) and in the event's log line, not copied into the events table too."""
    import logging

    cfg = config_mod.load(env={"LIGHTKEEPER_PATHS__STATE_DIR": str(tmp_path / "state")},
                          read_system=False)
    store = Store(tmp_path / "m.duckdb")
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    root = logging.getLogger("lightkeeper")
    handler, level = Keep(), root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        jm = JobManager(AgentServices(cfg, store), {"work": _work})
        job_id = _run(jm, 4)
        store.flush()
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    [event] = store.read_dicts("SELECT context FROM events WHERE event = 'job.succeeded'")
    context = json.loads(event["context"])
    assert context["job_id"] == job_id and context["kind"] == "work"
    assert "summary" not in context
    [record] = store.read_dicts("SELECT summary FROM jobs WHERE id = ?", [job_id])
    assert json.loads(record["summary"]) == {"n": 4, "files": 12}
    [line] = [r for r in seen if r.getMessage() == "job.succeeded"]
    assert line.ctx["summary"] == {"n": 4, "files": 12} and line.ctx["job_id"] == job_id
    store.close()
