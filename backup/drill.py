"""Restore drill: prove the newest snapshot restores and opens, and measure how long it took.

A sample of users from the newest snapshot is restored into a scratch directory (every file
checked against its hash), then each restored workspace is opened by LightRAG and asked a
question through ``open_check`` (the caller supplies it: ``backup`` does not import the LightRAG
runtime). The time from start to the last answer is the measured recovery time.
"""

from __future__ import annotations

import json
import random
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from lightkeeper.backup.repository import Repository
from lightkeeper.backup.restore import RestoreOptions, restore
from lightkeeper.contracts.backup import DrillSummary, DrillUser
from lightkeeper.logs import get_logger
from lightkeeper.progress import JobContext, LocalContext

log = get_logger("backup.drill")

OpenCheck = Callable[[Path, str, str], str]  # (data root, user, question) -> answer


def question_for(user_dir: Path) -> str:
    """A question drawn from the user's own first document (falls back to a generic one)."""
    try:
        docs = json.loads((user_dir / "kv_store_full_docs.json").read_text())
        first = next(iter(docs.values()))
        words = str(first.get("content", "")).split()[:8]
        if words:
            return "What is said about " + " ".join(words) + "?"
    except (OSError, ValueError, StopIteration, AttributeError):
        pass
    return "What is this knowledge base about?"


def drill(repo: Repository, scratch_dir: Path, open_check: OpenCheck | None,
          sample: int = 3, snapshot: str = "latest", ctx: JobContext | None = None,
          seed: int | None = None, job_id: str = "", keep: bool = False) -> DrillSummary:
    ctx = ctx or LocalContext()
    started = time.time()
    info = repo.read_snapshot(snapshot, files=False)
    candidates = sorted(u for u, v in info.get("users", {}).items() if not v.get("error"))
    if not candidates:
        raise ValueError(f"snapshot {info['id'][:8]} holds no users to drill")
    users = sorted(random.Random(seed).sample(candidates, min(sample, len(candidates))))
    scratch_dir = Path(scratch_dir)
    scratch_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="drill-", dir=scratch_dir))
    problems: list[str] = []
    per_user: dict[str, DrillUser] = {}
    try:
        ctx.progress(phase="restore", current=", ".join(users))
        r = restore(repo, info["id"], RestoreOptions(target=work / "data", users=users,
                                                     job_id=job_id), ctx)
        restore_s = time.time() - started
        for path, err in (r.get("failures") or {}).items():
            problems.append(f"{path}: {err}")
        for i, u in enumerate(users):
            ctx.check_cancelled()
            ctx.progress(phase="open", files_done=i, files_total=len(users), current=u)
            q = question_for(work / "data" / u)
            t = time.time()
            answer_chars: int | None = None
            if open_check is not None:
                try:
                    answer = open_check(work / "data", u, q)
                    answer_chars = len(answer or "")
                    if not (answer or "").strip():
                        problems.append(f"user {u}: LightRAG answered nothing")
                except Exception as exc:  # noqa: BLE001 - any failure is the drill's finding
                    problems.append(f"user {u}: LightRAG could not open or query the "
                                    f"restored workspace: {exc}")
            entry: DrillUser = {"question": q, "open_s": round(time.time() - t, 3)}
            if answer_chars is not None:
                entry["answer_chars"] = answer_chars
            per_user[u] = entry
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    total = time.time() - started
    out: DrillSummary = {
        "snapshot_id": info["id"], "short_id": info["id"][:8], "users": users,
        "files": r["files"], "bytes": r["bytes"], "restore_s": round(restore_s, 3),
        "recovery_time_s": round(total, 3), "duration_s": round(total, 3),
        "snapshot_age_s": round(started - float(info.get("time", started)), 1),
        "per_user": per_user, "ok": not problems, "problems": problems,
        "opened_with_lightrag": open_check is not None}
    if problems:
        out["state"] = "problems"
    log.info("drill.finished", ok=not problems, users=len(users), recovery_time_s=out[
        "recovery_time_s"])
    return out
