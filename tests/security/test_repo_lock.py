"""Low: a repository lock held by a zombie process (exited, not reaped by its parent) is
stale. Before the fix the zombie's pid and start time still matched, so the lock counted as
live and every backup was refused until the parent reaped it."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import psutil

from lightkeeper.backup.lock import RepoLock
from lightkeeper.backup.repository import Repository


def test_low_lock_held_by_zombie_is_stale(repo: Repository) -> None:
    pid = os.posix_spawn("/bin/true", ["true"], dict(os.environ))
    try:
        deadline = time.monotonic() + 10
        while psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
            assert time.monotonic() < deadline, "child never exited"
            time.sleep(0.02)
        lock = Path(repo.path) / "locks" / "0123456789abcdef.lock"
        lock.write_text(json.dumps({"host": socket.gethostname(), "pid": pid,
                                    "proc_start": psutil.Process(pid).create_time(),
                                    "exclusive": True, "purpose": "backup", "job_id": "j1",
                                    "time": time.time()}))
        with RepoLock(repo.path, exclusive=True, purpose="backup") as held:
            assert held.stale_removed == 1
        assert not lock.exists()
    finally:
        os.waitpid(pid, 0)
