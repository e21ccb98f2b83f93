"""A restore writes each file unnamed (O_TMPFILE) and names it only once it is complete and
hash-checked: nothing at a final name is ever partial, a killed restore leaves no temp file,
naming never follows or replaces a planted symlink, and modes survive any umask."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from lightkeeper.backup import fsutil
from lightkeeper.backup.repository import Repository
from lightkeeper.backup.restore import RestoreOptions, restore
from lightkeeper.backup.snapshot import BackupOptions, run_backup
from tests.backup.conftest import kill_when_ready, run_child, tree_digest

pytestmark = pytest.mark.skipif(
    not fsutil._UNNAMED_OK or not hasattr(os, "O_TMPFILE"), reason="no O_TMPFILE here")


def _dir_fd(path: Path) -> int:
    path.mkdir(parents=True, exist_ok=True)
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY)


def test_naming_an_unnamed_file_never_follows_a_planted_symlink(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    d = tmp_path / "dir"
    dfd = _dir_fd(d)
    try:
        (d / "file").symlink_to(victim)
        fd = fsutil.open_unnamed_in(dfd, 0o600)
        assert fd is not None, "ext4/tmpfs have O_TMPFILE"
        try:
            os.write(fd, b"restored")
            with pytest.raises(FileExistsError):
                fsutil.link_unnamed(fd, dfd, "file")
            assert victim.read_bytes() == b"precious"
            # the replace path: an exclusive temp name, then a rename over the symlink
            tmp = fsutil.link_unnamed_temp(fd, dfd, "file")
            assert fsutil.RESTORE_TMP_MARK in tmp
        finally:
            os.close(fd)
        os.replace(tmp, "file", src_dir_fd=dfd, dst_dir_fd=dfd)
    finally:
        os.close(dfd)
    assert not (d / "file").is_symlink()
    assert (d / "file").read_bytes() == b"restored"
    assert victim.read_bytes() == b"precious"
    assert sorted(p.name for p in d.iterdir()) == ["file"]


def test_an_unnamed_file_that_is_never_named_leaves_nothing(tmp_path: Path) -> None:
    dfd = _dir_fd(tmp_path / "dir")
    try:
        fd = fsutil.open_unnamed_in(dfd, 0o600)
        assert fd is not None
        os.write(fd, b"half a file")
        os.close(fd)
    finally:
        os.close(dfd)
    assert list((tmp_path / "dir").iterdir()) == []


def test_current_umask_reads_without_changing_it() -> None:
    old = os.umask(0o027)
    try:
        assert fsutil.current_umask() == 0o027
        assert fsutil.current_umask() == 0o027
    finally:
        os.umask(old)


def test_modes_and_times_survive_a_umask_that_masks_them(
        data_root: Path, repo: Repository, tmp_path: Path) -> None:
    files = sorted(p for p in data_root.rglob("*") if p.is_file())
    modes = [0o644, 0o600, 0o755, 0o664]
    for i, p in enumerate(files):
        p.chmod(modes[i % len(modes)])
    s = run_backup(repo, BackupOptions(data_root, low_priority=False))
    old = os.umask(0o077)
    try:
        target = tmp_path / "target"
        r = restore(repo, s["snapshot_id"], RestoreOptions(target=target, low_priority=False))
    finally:
        os.umask(old)
    assert not r.get("failures"), r
    assert r["verified_files"] == len(files)
    for p in files:
        got = target / p.relative_to(data_root)
        assert stat.S_IMODE(got.stat().st_mode) == stat.S_IMODE(p.stat().st_mode), got
        assert got.stat().st_mtime_ns == p.stat().st_mtime_ns
    assert not [p for p in target.rglob("*") if fsutil.RESTORE_TMP_MARK in p.name]
    assert tree_digest(target) == tree_digest(data_root)


def test_overwrite_into_a_populated_target_replaces_every_file(
        data_root: Path, repo: Repository, tmp_path: Path) -> None:
    """A target that is not empty takes the rename path: existing files are replaced."""
    s = run_backup(repo, BackupOptions(data_root, low_priority=False))
    target = tmp_path / "target"
    restore(repo, s["snapshot_id"], RestoreOptions(target=target, low_priority=False))
    some = sorted(p for p in target.rglob("*") if p.is_file())[:5]
    for p in some:
        p.write_bytes(b"stale")
    r = restore(repo, s["snapshot_id"], RestoreOptions(target=target, overwrite=True,
                                                       low_priority=False))
    assert not r.get("failures"), r
    assert tree_digest(target) == tree_digest(data_root)
    assert not [p for p in target.rglob("*") if fsutil.RESTORE_TMP_MARK in p.name]


CHILD_MID_FILE = """
import sys, time
from pathlib import Path
import lightkeeper.backup.restore as r
from lightkeeper.backup.repository import Repository
orig = Repository.iter_file_data
calls = [0]
def iter_file_data(self, *a, **k):
    calls[0] += 1
    for n, data in enumerate(orig(self, *a, **k)):
        yield data
        if calls[0] == 10 and n == 0:
            print("READY", flush=True)
            time.sleep(600)
Repository.iter_file_data = iter_file_data
repo = Repository.open(Path(sys.argv[1]), Path(sys.argv[2]))
r.restore(repo, "latest", r.RestoreOptions(target=Path(sys.argv[3]), workers=1))
"""


def test_sigkill_in_the_middle_of_a_file_leaves_no_partial_file_and_no_temp(
        data_root: Path, repo: Repository, tmp_path: Path) -> None:
    run_backup(repo, BackupOptions(data_root, low_priority=False))
    expected = tree_digest(data_root)
    target = tmp_path / "partial"
    proc = run_child(CHILD_MID_FILE, str(repo.path), str(tmp_path / "keys" / "repo.key"),
                     str(target))
    kill_when_ready(proc)
    every = [p for p in target.rglob("*") if p.is_file()]
    assert not [p for p in every if ".tmp." in p.name], "a killed restore left a temp file"
    done = tree_digest(target)
    assert 0 < len(done) < len(expected)
    assert all(expected[k] == v for k, v in done.items()), "a partial file has a final name"
