"""Repository figures and the snapshot list, kept up to date by the jobs that change the
repository instead of being recomputed by every console poll.

``Repository.stats()`` walks every file and loads the whole chunk index: 100 ms for a 64 MB
repository and linear in its size. The console asks for it every few seconds, so the answer is
cached here, keyed by a signature that any change to the repository's snapshots or index moves
(the two directories' modification times: every backup, forget and prune rewrites one of them).
A job that changed the repository refreshes the cache from the repository it already has open;
a poll recomputes only when something outside the agent changed the repository. The cache is
kept in the agent's state directory (owner-only), so a restarted agent does not walk a large
repository on its first poll either.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the agent imports this at start: the repository code loads only for a job
    from lightkeeper.backup.repository import Repository


def signature(repo_path: Path) -> list[int] | None:
    """Cheap fingerprint of the repository's state: two stat calls, whatever its size."""
    try:
        return [os.stat(repo_path / "snapshots").st_mtime_ns,
                os.stat(repo_path / "index").st_mtime_ns]
    except OSError:
        return None


def compute(repo: Repository, previous: dict[str, Any] | None = None,
            index_unchanged: bool = False) -> dict[str, Any]:
    """The summary of ``repo``. With ``previous`` (the summary before a job changed the
    repository), snapshots it listed are taken from it (a snapshot file is named by the hash
    of its content, so it never changes) and only new ones are read; with
    ``index_unchanged`` too (the index directory did not change since), its chunk count is
    kept instead of loading the whole index. A no-change backup then costs a directory walk."""
    from lightkeeper.backup.crypto import IntegrityError  # noqa: PLC0415
    from lightkeeper.backup.repository import info_from_manifest  # noqa: PLC0415
    if previous is None:
        snapshots = [i.as_dict() for i in repo.snapshots()]
        refused = [{"id": sid, "short_id": sid[:8], "error": err}
                   for sid, err in sorted(repo.refused.items())]
        return {"stats": repo.stats(), "snapshots": snapshots, "refused": refused}
    known = {s["id"]: s for s in previous.get("snapshots", []) if isinstance(s, dict)}
    listed: list[Any] = []
    errors: dict[str, str] = {}
    for sid in repo.snapshot_ids():
        if sid in known:
            listed.append(known[sid])
            continue
        try:
            listed.append(info_from_manifest(repo.read_snapshot(sid, files=False)).as_dict())
        except (IntegrityError, OSError) as exc:
            errors[sid] = str(exc)
    listed.sort(key=lambda s: (s["time"], s["id"]))
    refused = [{"id": sid, "short_id": sid[:8], "error": err}
               for sid, err in sorted(errors.items())]
    chunks = (previous.get("stats") or {}).get("chunks") if index_unchanged else None
    return {"stats": repo.stats(chunks if isinstance(chunks, int) else None),
            "snapshots": listed, "refused": refused}


class SummaryCache:
    def __init__(self, file: Path) -> None:
        self.file = file
        self._lock = threading.Lock()
        self._mem: dict[str, Any] | None = None

    def _load(self) -> dict[str, Any]:
        if self._mem is None:
            try:
                doc = json.loads(self.file.read_text())
                self._mem = doc if isinstance(doc, dict) else {}
            except (OSError, ValueError):
                self._mem = {}
        return self._mem

    def get(self, repo_path: Path) -> dict[str, Any] | None:
        sig = signature(repo_path)
        with self._lock:
            entry = self._load().get(str(repo_path))
        if sig is None or not entry or entry.get("signature") != sig:
            return None
        return entry["summary"]

    def put(self, repo: Repository) -> dict[str, Any]:
        """Recompute from an open repository (a job that just changed it) and keep it: from
        the summary before the job where that is exact (see :func:`compute`)."""
        sig = signature(repo.path)
        with self._lock:
            entry = self._load().get(str(repo.path))
        previous = entry.get("summary") if isinstance(entry, dict) else None
        old_sig = entry.get("signature") if isinstance(entry, dict) else None
        if not isinstance(previous, dict) or not isinstance(old_sig, list) or sig is None:
            summary = compute(repo)
        else:
            summary = compute(repo, previous, index_unchanged=old_sig[1:] == sig[1:])
        with self._lock:
            doc = dict(self._load())
            doc[str(repo.path)] = {"signature": sig, "summary": summary}
            self._mem = doc
            self._write(doc)
        return summary

    def _write(self, doc: dict[str, Any]) -> None:
        self.file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.file.with_name(f".{self.file.name}.{os.getpid()}.{threading.get_ident()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(doc, f)
            os.replace(tmp, self.file)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
