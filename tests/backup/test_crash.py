"""SIGKILL during backup, prune and restore: the repository verifies, every earlier snapshot
restores, and the next run cleans up what was left."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.datagen import scatter_edits
from lightkeeper.backup.fsutil import TMP_PREFIX
from lightkeeper.backup.prune import forget, prune
from lightkeeper.backup.repository import Repository
from lightkeeper.backup.restore import RestoreOptions, restore
from lightkeeper.backup.retention import Policy
from lightkeeper.backup.snapshot import BackupOptions, run_backup
from lightkeeper.backup.verify import verify
from tests.backup.conftest import kill_when_ready, run_child, stalled_restore, tree_digest

CHILD_BACKUP = """
import sys, time
from pathlib import Path
import lightkeeper.backup.snapshot as s
from lightkeeper.backup.repository import Repository
orig = s._Builder.store_fd
calls = [0]
def store_fd(self, *a, **k):
    calls[0] += 1
    if calls[0] == 25:
        print("READY", flush=True)
        time.sleep(600)
    return orig(self, *a, **k)
s._Builder.store_fd = store_fd
repo = Repository.open(Path(sys.argv[1]), Path(sys.argv[2]))
s.run_backup(repo, s.BackupOptions(Path(sys.argv[3])))
"""

CHILD_PRUNE = """
import sys, time
from pathlib import Path
from lightkeeper.backup.prune import prune
from lightkeeper.backup.repository import Repository
from lightkeeper.progress import LocalContext
phase, nth = sys.argv[3], int(sys.argv[4])
seen = [0]
def on(p):
    if p["phase"] == phase:
        seen[0] += 1
        if seen[0] == nth:
            print("READY", flush=True)
            time.sleep(600)
repo = Repository.open(Path(sys.argv[1]), Path(sys.argv[2]))
prune(repo, LocalContext(on_progress=on))
"""

CHILD_RESTORE = stalled_restore(10)


def _check_all_restore(repo: Repository, expected: dict[str, dict[str, str]],
                       tmp: Path) -> None:
    for sid, digest in expected.items():
        out = tmp / f"check-{sid[:8]}"
        r = restore(repo, sid, RestoreOptions(target=out))
        assert r.get("state") is None
        assert tree_digest(out) == digest


def _key(tmp_path: Path) -> Path:
    return tmp_path / "keys" / "repo.key"


def test_sigkill_during_backup(data_root: Path, repo: Repository, tmp_path: Path) -> None:
    s1 = run_backup(repo, BackupOptions(data_root))
    expected = {s1["snapshot_id"]: tree_digest(data_root)}
    scatter_edits(data_root, fraction=0.5, seed=2)
    (data_root / "user02" / "new.json").write_bytes(b"x" * 300_000)
    proc = run_child(CHILD_BACKUP, str(repo.path), str(_key(tmp_path)), str(data_root))
    kill_when_ready(proc)
    assert list((repo.path / "locks").iterdir()), "the killed backup left its lock behind"
    fresh = Repository.open(repo.path, _key(tmp_path))
    assert fresh.snapshot_ids() == [s1["snapshot_id"]]  # nothing half-committed
    v = verify(fresh, full=True)
    assert v["ok"], v["problems"]
    _check_all_restore(fresh, expected, tmp_path)
    # the next run succeeds (stale lock removed) and cleans temp files
    s2 = run_backup(fresh, BackupOptions(data_root))
    assert not fresh.temp_files()
    assert not list((fresh.path / "locks").iterdir())
    expected[s2["snapshot_id"]] = tree_digest(data_root)
    prune(fresh)
    v = verify(fresh, full=True)
    assert v["ok"] and v["unindexed_packs"] == 0
    _check_all_restore(fresh, expected, tmp_path / "after")


@pytest.mark.parametrize(("phase", "nth"), [("index", 2), ("delete", 1), ("delete", 3)])
def test_sigkill_during_prune(data_root: Path, repo: Repository, tmp_path: Path,
                              phase: str, nth: int) -> None:
    s1 = run_backup(repo, BackupOptions(data_root))
    scatter_edits(data_root, fraction=0.6, record_fraction=0.3, seed=4)
    s2 = run_backup(repo, BackupOptions(data_root))
    expected = {s2["snapshot_id"]: tree_digest(data_root)}
    forget(repo, Policy(last=1))
    assert repo.snapshot_ids() == [s2["snapshot_id"]]
    assert s1["snapshot_id"] not in repo.snapshot_ids()
    proc = run_child(CHILD_PRUNE, str(repo.path), str(_key(tmp_path)), phase, str(nth))
    kill_when_ready(proc)
    fresh = Repository.open(repo.path, _key(tmp_path))
    v = verify(fresh, full=True)
    assert v["ok"], v["problems"]
    _check_all_restore(fresh, expected, tmp_path)
    # the next prune finishes the job
    p = prune(fresh)
    assert p.get("state") is None
    v = verify(fresh, full=True)
    assert v["ok"] and v["unindexed_packs"] == 0, v
    assert not [f for f in fresh.path.rglob(TMP_PREFIX + "*")]
    again = prune(fresh)
    assert again["packs_delete"] == 0 and again["packs_repack"] == 0
    _check_all_restore(fresh, expected, tmp_path / "after")


def test_sigkill_during_restore(data_root: Path, repo: Repository, tmp_path: Path) -> None:
    s1 = run_backup(repo, BackupOptions(data_root))
    expected = {s1["snapshot_id"]: tree_digest(data_root)}
    target = tmp_path / "partial"
    proc = run_child(CHILD_RESTORE, str(repo.path), str(_key(tmp_path)), str(target))
    kill_when_ready(proc)
    fresh = Repository.open(repo.path, _key(tmp_path))
    assert verify(fresh, full=True)["ok"]
    _check_all_restore(fresh, expected, tmp_path)
    # a half-restored target holds only complete, correct files
    done = tree_digest(target)
    assert 0 < len(done) < len(expected[s1["snapshot_id"]])
    assert all(expected[s1["snapshot_id"]][k] == v for k, v in done.items())
    # and the stale shared lock does not block an exclusive job
    prune(fresh)
