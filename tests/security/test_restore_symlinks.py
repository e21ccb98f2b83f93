"""High 3: a restore writes through nothing planted in the directories it writes into.

The user directories belong to the LightRAG service account, which may be another account
than the agent's. Before the fix the temp name was ``.NAME.tmp.restore-<agent pid>`` (the pid
is public), opened with a plain ``open(..., "wb")``: a symlink planted there made the restore
overwrite and chmod the link's target, and a symlink at the destination stayed a symlink.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from lightkeeper.backup.repository import Repository
from lightkeeper.backup.restore import RestoreOptions, restore
from lightkeeper.backup.snapshot import BackupOptions, run_backup
from lightkeeper.gate import LOCK_NAME

DOCS = "kv_store_full_docs.json"
GRAPH = "graph_chunk_entity_relation.graphml"


def _victim(tmp_path: Path, name: str) -> Path:
    v = tmp_path / name
    v.write_text("precious bytes that the restore must not touch\n")
    v.chmod(0o600)
    return v


def _plant(directory: Path, victim: Path, victim2: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    # the old predictable temp name (this process runs the restore, so its pid is the one)
    for pid in {os.getpid(), os.getppid()}:
        link = directory / f".{DOCS}.tmp.restore-{pid}"
        link.unlink(missing_ok=True)
        link.symlink_to(victim)
    # a symlink where the restored file goes
    (directory / GRAPH).unlink(missing_ok=True)
    (directory / GRAPH).symlink_to(victim2)


@pytest.mark.parametrize("how", ["in_place", "target_force"])
def test_high3_restore_never_writes_through_planted_symlinks(
        data_root: Path, repo: Repository, tmp_path: Path, how: str) -> None:
    s = run_backup(repo, BackupOptions(data_root, users=["user00"], low_priority=False))
    want = {n: (data_root / "user00" / n).read_bytes() for n in (DOCS, GRAPH)}
    victim, victim2 = _victim(tmp_path, "victim"), _victim(tmp_path, "victim2")
    before = victim.read_bytes()
    if how == "in_place":
        udir = data_root / "user00"
        opts = RestoreOptions(in_place=True, data_root=data_root, users=["user00"],
                              low_priority=False)
    else:
        target = tmp_path / "target"
        udir = target / "user00"
        opts = RestoreOptions(target=target, overwrite=True, low_priority=False)
    _plant(udir, victim, victim2)
    r = restore(repo, s["snapshot_id"], opts)
    assert not r.get("failures"), r
    for v in (victim, victim2):
        assert v.read_bytes() == before, f"{v.name} was written through a symlink"
        assert stat.S_IMODE(v.stat().st_mode) == 0o600, f"{v.name} was chmodded"
    for n, data in want.items():
        p = udir / n
        assert not p.is_symlink() and p.is_file()
        assert p.read_bytes() == data


def test_high3_restore_refuses_a_symlinked_directory_component(
        data_root: Path, repo: Repository, tmp_path: Path) -> None:
    """A directory inside the user's tree swapped for a symlink after validation is not
    followed (the write walks the tree with O_NOFOLLOW, not by path)."""
    from lightkeeper.backup.fsutil import UnsafeDirectory, open_dir_below

    outside = tmp_path / "outside"
    outside.mkdir()
    base = tmp_path / "base"
    (base / "user00").mkdir(parents=True)
    (base / "user00" / "sub").symlink_to(outside)
    with pytest.raises(UnsafeDirectory):
        open_dir_below(base, ["user00", "sub"])
    assert not list(outside.iterdir())


def test_high3_in_place_restore_does_not_stamp_a_symlinked_gate_file(
        data_root: Path, repo: Repository, tmp_path: Path) -> None:
    """The write gate's lock file sits in the user's directory: an in-place restore takes
    it as a writer and stamps it on release. A symlink there must not be followed."""
    s = run_backup(repo, BackupOptions(data_root, users=["user00"], low_priority=False))
    victim = _victim(tmp_path, "victim")
    before = victim.read_bytes()
    gate = data_root / "user00" / LOCK_NAME
    gate.unlink(missing_ok=True)
    gate.symlink_to(victim)
    with pytest.raises(OSError, match="symlink|not a regular file"):
        restore(repo, s["snapshot_id"], RestoreOptions(in_place=True, data_root=data_root,
                                                       users=["user00"], low_priority=False))
    assert victim.read_bytes() == before


@pytest.mark.parametrize("how", ["in_place", "target_force"])
def test_low_killed_restore_leftovers_removed_by_rerun(
        data_root: Path, repo: Repository, tmp_path: Path, how: str) -> None:
    s = run_backup(repo, BackupOptions(data_root, users=["user00"], low_priority=False))
    if how == "in_place":
        base = data_root
        opts = RestoreOptions(in_place=True, data_root=data_root, users=["user00"],
                              low_priority=False)
    else:
        base = tmp_path / "target"
        restore(repo, s["snapshot_id"], RestoreOptions(target=base, low_priority=False))
        opts = RestoreOptions(target=base, overwrite=True, low_priority=False)
    # what a SIGKILLed restore leaves behind (both the old and the new temp names)
    left = [base / "user00" / f".{DOCS}.tmp.restore-4242",
            base / "user00" / f".{GRAPH}.tmp.restore-0123456789abcdef"]
    for p in left:
        p.write_bytes(b"half a file")
    restore(repo, s["snapshot_id"], opts)
    assert [p for p in left if p.exists()] == []
