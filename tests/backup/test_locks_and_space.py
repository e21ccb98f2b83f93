"""Repository locks (no two jobs at once, stale locks removed) and a full disk."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from lightkeeper.backup import retention
from lightkeeper.backup.fsutil import NoSpace
from lightkeeper.backup.lock import RepoLock, RepositoryLocked
from lightkeeper.backup.prune import PruneError, forget, prune
from lightkeeper.backup.repository import Repository
from lightkeeper.backup.restore import RestoreOptions, restore
from lightkeeper.backup.snapshot import BackupError, BackupOptions, run_backup
from lightkeeper.backup.verify import verify
from lightkeeper.progress import LocalContext
from tests.backup.conftest import tree_digest


def test_two_jobs_never_share_the_repository(data_root: Path, repo: Repository) -> None:
    with RepoLock(repo.path, exclusive=True, purpose="backup", job_id="j1"):
        with pytest.raises(RepositoryLocked, match="locked exclusively by backup"):
            run_backup(repo, BackupOptions(data_root))
        with pytest.raises(RepositoryLocked):
            verify(repo)
    with RepoLock(repo.path, exclusive=False, purpose="verify", job_id="j2"):
        verify(repo)  # two readers are fine
        with pytest.raises(RepositoryLocked, match="shared by verify"):
            prune(repo)
    assert not list((repo.path / "locks").iterdir())


def _write_lock(repo: Repository, doc: dict, age: float = 0.0) -> Path:
    p = repo.path / "locks" / f"{os.urandom(4).hex()}.lock"
    p.write_text(json.dumps(doc))
    if age:
        t = time.time() - age
        os.utime(p, (t, t))
    return p


def test_stale_locks_are_detected(data_root: Path, repo: Repository) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    host = socket.gethostname()
    p1 = _write_lock(repo, {"host": host, "pid": int(dead), "exclusive": True,
                            "purpose": "backup"})
    # a live pid whose process started at another time is a reused pid: stale too
    p2 = _write_lock(repo, {"host": host, "pid": os.getpid(), "proc_start": 12345.0,
                            "exclusive": True, "purpose": "backup"})
    p3 = _write_lock(repo, {"host": "elsewhere", "pid": 1, "exclusive": True,
                            "purpose": "prune"}, age=7200)
    s = run_backup(repo, BackupOptions(data_root))
    assert s["snapshot_id"]
    assert not p1.exists() and not p2.exists() and not p3.exists()
    # a fresh lock from another host is respected
    _write_lock(repo, {"host": "elsewhere", "pid": 1, "exclusive": True, "purpose": "prune"})
    with pytest.raises(RepositoryLocked, match="on elsewhere"):
        run_backup(repo, BackupOptions(data_root))


@pytest.fixture
def small_fs(small_disk: Any) -> Path:
    return small_disk(24)


def test_full_disk_gives_a_clear_error_and_keeps_the_repository(
        data_root: Path, small_fs: Path, tmp_path: Path) -> None:
    repo = Repository.init(small_fs / "repo", tmp_path / "k", pack_size=256 * 1024)
    s1 = run_backup(repo, BackupOptions(data_root))
    expected = tree_digest(data_root)
    (data_root / "user00" / "big.bin").write_bytes(os.urandom(22 << 20))
    # refused up front: the estimate does not fit
    with pytest.raises(NoSpace, match="not enough free space for the backup"):
        run_backup(repo, BackupOptions(data_root))
    # the disk fills up in the middle of writing packs
    with pytest.raises(BackupError, match="file system is full.*nothing was committed"):
        run_backup(repo, BackupOptions(data_root, space_check=False))
    assert repo.snapshot_ids() == [s1["snapshot_id"]]
    assert not repo.temp_files()
    assert not list((repo.path / "locks").iterdir())
    fresh = Repository.open(repo.path, tmp_path / "k")
    assert verify(fresh, full=True)["ok"]
    out = tmp_path / "out"
    restore(fresh, s1["snapshot_id"], RestoreOptions(target=out))
    assert tree_digest(out) == expected
    (data_root / "user00" / "big.bin").unlink()
    prune(fresh)
    assert run_backup(fresh, BackupOptions(data_root))["files_unmodified"] == len(expected)


def _remove_locks_at(repo: Repository, phase: str, nth: int = 1) -> LocalContext:
    """A job context that, at the job's ``nth`` report of ``phase``, deletes every lock file:
    as another process that wrongly took the job's lock for stale, or an operator, would."""
    seen = [0]

    def on_progress(state: dict) -> None:
        if state.get("phase") == phase:
            seen[0] += 1
            if seen[0] == nth:
                for p in (Path(repo.path) / "locks").glob("*.lock"):
                    p.unlink()
    return LocalContext(on_progress=on_progress)


def test_a_backup_that_lost_its_lock_commits_nothing(data_root: Path, repo: Repository) -> None:
    first = run_backup(repo, BackupOptions(data_root))
    (next(data_root.iterdir()) / "new_file.json").write_text('{"a": 1}')
    with pytest.raises(BackupError, match="lock of this backup .* was removed while it ran.*"
                                          "nothing was committed"):
        run_backup(repo, BackupOptions(data_root), _remove_locks_at(repo, "commit"))
    assert [s.id for s in repo.snapshots()] == [first["snapshot_id"]]
    again = run_backup(repo, BackupOptions(data_root))  # the packs it wrote stay usable
    assert again["files_new"] == 1 and verify(repo, full=True)["ok"]


def test_a_prune_that_lost_its_lock_deletes_nothing(data_root: Path, repo: Repository) -> None:
    run_backup(repo, BackupOptions(data_root))
    for d in data_root.iterdir():  # the second snapshot shares nothing of these files
        for f in d.rglob("*.json"):
            f.write_text(json.dumps({"x": os.urandom(2048).hex()}))
    run_backup(repo, BackupOptions(data_root))
    forget(repo, retention.Policy(last=1))
    before = {p.name for p in Path(repo.path).rglob("*") if p.is_file()} - \
        {p.name for p in (Path(repo.path) / "locks").glob("*")}
    # the second "index" report comes after the new index is written, before any deletion
    with pytest.raises(PruneError, match="lock of this prune .* was removed.*nothing was "
                                         "deleted"):
        prune(repo, _remove_locks_at(repo, "index", nth=2))
    after = {p.name for p in Path(repo.path).rglob("*") if p.is_file()}
    assert before <= after  # every pack and index file is still there
    assert verify(repo, full=True)["ok"]
    done = prune(repo)
    assert done["packs_delete"] > 0 and verify(repo, full=True)["ok"]


def test_a_lost_lock_is_logged_when_its_refresh_finds_it_gone(repo: Repository, monkeypatch,
                                                              caplog) -> None:
    """The refresh used to stop in silence; the operator now reads the loss in the log as it
    happens, not only when the job reaches its commit."""
    import logging

    from lightkeeper.backup import lock as lock_mod

    monkeypatch.setattr(lock_mod, "REFRESH_EVERY", 0.05)
    with caplog.at_level(logging.INFO, logger="lightkeeper"):
        with RepoLock(repo.path, exclusive=False, purpose="verify", job_id="j7") as held:
            assert held.path is not None
            held.path.unlink()
            deadline = time.monotonic() + 10
            while not [r for r in caplog.records if r.getMessage() == "lock.lost"]:
                assert time.monotonic() < deadline, "the loss was not logged"
                time.sleep(0.05)
            with pytest.raises(lock_mod.LockLost, match="lock of this verify"):
                held.check()
        with RepoLock(repo.path, exclusive=True, purpose="backup"):
            time.sleep(0.2)  # refreshes of a lock that stays: nothing logged
    lost = [r for r in caplog.records if r.getMessage() == "lock.lost"]
    assert len(lost) == 1 and lost[0].levelno == logging.ERROR
