"""Repository locks: files in ``<repo>/locks/`` naming the holder's host, pid and start time.

A job that changes the repository (backup, prune, forget, in-place restore) takes an exclusive
lock; a job that only reads it (verify, restore) a shared one. Any exclusive lock excludes every
other lock. A lock whose process is gone (same host, pid not running or running a different
process, told apart by this boot's id and the start in clock ticks, which no clock step moves:
``lightkeeper.procstart``) is stale and removed. A lock from another host is stale when it has
not been refreshed for ``STALE_AFTER`` seconds; holders refresh theirs every ``REFRESH_EVERY``
seconds.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import threading
import time
from pathlib import Path
from types import TracebackType

import psutil

from lightkeeper import procstart
from lightkeeper.logs import get_logger

log = get_logger("backup.lock")

STALE_AFTER = 1800.0
REFRESH_EVERY = 300.0


class RepositoryLocked(Exception):
    """Another job holds the repository."""


class LockLost(RuntimeError):
    """The lock this job took is no longer in place: another process removed it (taking it for
    stale) or someone deleted it by hand, so another job may be changing the repository."""


def _proc_start(pid: int) -> float | None:
    """The start time of a live process ``pid``; None when there is none. A zombie (exited,
    not yet reaped by its parent) holds nothing: it counts as gone."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc.create_time()
    except (psutil.Error, ValueError):
        return None


def _is_stale(doc: dict, mtime: float, host: str) -> bool:
    if doc.get("host") != host:
        return time.time() - mtime > STALE_AFTER
    pid = int(doc.get("pid", -1))
    same = procstart.same_process(pid, doc)
    if same is not None:  # recorded by boot id and start in ticks: clock steps do not matter
        return not same
    # a lock written by an older version: its wall-clock start time, which moves with the clock
    start = _proc_start(pid)
    if start is None:
        return True
    recorded = doc.get("proc_start")
    return recorded is not None and abs(float(recorded) - start) > 1.0


class RepoLock:
    def __init__(self, repo_path: Path, exclusive: bool, purpose: str, job_id: str = "") -> None:
        self.dir = Path(repo_path) / "locks"
        self.exclusive = exclusive
        self.purpose = purpose
        self.job_id = job_id
        self.path: Path | None = None
        self.stale_removed = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def holders(self) -> list[dict]:
        """Live locks other than ours (stale ones are removed on the way)."""
        host = socket.gethostname()
        out = []
        for p in sorted(self.dir.glob("*.lock")):
            if self.path is not None and p == self.path:
                continue
            try:
                doc = json.loads(p.read_text())
                mtime = p.stat().st_mtime
            except FileNotFoundError:
                continue
            except (OSError, ValueError):
                doc, mtime = {}, p.stat().st_mtime if p.exists() else 0.0
            if _is_stale(doc, mtime, host):
                self.stale_removed += 1
                log.warning("lock.stale_removed", lock=p.name, holder_pid=doc.get("pid"),
                            holder_host=doc.get("host"))
                try:
                    p.unlink()
                except FileNotFoundError:
                    pass
                continue
            out.append(doc)
        return out

    def acquire(self) -> RepoLock:
        self.dir.mkdir(parents=True, exist_ok=True)
        pid = os.getpid()
        doc = {"host": socket.gethostname(), "pid": pid, "proc_start": _proc_start(pid),
               **procstart.identity(pid), "exclusive": self.exclusive, "purpose": self.purpose,
               "job_id": self.job_id,
               "time": time.time()}
        path = self.dir / f"{secrets.token_hex(8)}.lock"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f)
        self.path = path
        others = self.holders()
        conflict = [o for o in others if self.exclusive or o.get("exclusive")]
        if conflict:
            self.release()
            o = conflict[0]
            what = "exclusively" if o.get("exclusive") else "shared"
            raise RepositoryLocked(
                f"the backup repository is locked {what} by {o.get('purpose', '?')} "
                f"(job {o.get('job_id') or '-'}, pid {o.get('pid')} on {o.get('host')}); "
                "wait for it to finish or cancel it"
            )
        self._thread = threading.Thread(target=self._refresh, name="repo-lock-refresh",
                                        daemon=True)
        self._thread.start()
        return self

    def check(self) -> None:
        """Raise :class:`LockLost` unless this lock's file is still in place. A job calls it
        right before it changes what other jobs rely on (a backup before it commits its
        snapshot, a prune before it deletes anything): without its lock, a prune may have
        removed packs the new snapshot needs, or a backup added a snapshot the prune did not
        see. The lock's name is random and created exclusively: being there is being ours."""
        path = self.path
        try:
            if path is not None and os.stat(path, follow_symlinks=False).st_size > 0:
                return
        except FileNotFoundError:
            pass
        raise LockLost(f"the repository lock of this {self.purpose} "
                       f"({path.name if path else 'never taken'}) was removed while it ran "
                       "(another process took it for stale, or it was deleted by hand); "
                       "another job may have changed the repository meanwhile")

    def _refresh(self) -> None:
        while not self._stop.wait(REFRESH_EVERY):
            path = self.path
            if path is not None:
                try:
                    os.utime(path, follow_symlinks=False)
                except FileNotFoundError:
                    if not self._stop.is_set():  # not our own release
                        log.error("lock.lost", lock=path.name, purpose=self.purpose,
                                  job_id=self.job_id,
                                  hint="another process removed this job's repository lock "
                                       "(it took it for stale) or it was deleted by hand; a "
                                       "backup will not commit, a prune will not delete")
                    return

    def release(self) -> None:
        self._stop.set()
        if self.path is not None:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
            self.path = None

    def __enter__(self) -> RepoLock:
        return self.acquire()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
