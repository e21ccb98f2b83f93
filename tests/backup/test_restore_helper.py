"""A large restore is split with a helper process (the per-file work is mostly Python, and a
second interpreter uses the second core): it writes the same tree, its files' failures are
reported, a cancel or a killed restore stops it, and it never outlives the restore."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import psutil
import pytest

import lightkeeper.backup.restore as restore_mod
from lightkeeper.backup.repository import Repository
from lightkeeper.backup.restore import RestoreOptions, restore
from lightkeeper.backup.snapshot import BackupOptions, run_backup
from lightkeeper.progress import JobCancelled, LocalContext
from tests.backup.conftest import kill_when_ready, run_child, stalled_restore, tree_digest


def _meta(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (stat.S_IMODE(p.stat().st_mode), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def slow_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """The parent's first file waits 2 s: on these small trees the parent would otherwise
    finish before the helper has started up, and the helper must do some batches here."""
    orig = restore_mod._write_file
    first = [True]

    def write_file(*a, **k):
        if first[0]:
            first[0] = False
            time.sleep(2)
        return orig(*a, **k)

    monkeypatch.setattr(restore_mod, "_write_file", write_file)


def _cmdline(proc: psutil.Process) -> list[str]:
    try:
        return proc.cmdline()
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return []


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_a_helper_process_restores_the_same_tree(data_root: Path, repo: Repository,
                                                 tmp_path: Path, slow_start: None) -> None:
    s = run_backup(repo, BackupOptions(data_root, low_priority=False))
    steps: list[int] = []
    ctx = LocalContext(on_progress=lambda p: steps.append(p["files_done"]))
    r = restore(repo, s["snapshot_id"], RestoreOptions(target=tmp_path / "two", processes=2,
                                                       workers=1, low_priority=False), ctx)
    assert r.get("state") is None and r["verified_files"] == r["files"]
    assert tree_digest(tmp_path / "two") == tree_digest(data_root)
    restore(repo, s["snapshot_id"], RestoreOptions(target=tmp_path / "one", processes=1,
                                                   low_priority=False))
    assert _meta(tmp_path / "two") == _meta(tmp_path / "one")
    # the helper reports whole batches (the parent file by file): it took part
    assert any(b - a > 1 for a, b in zip([0, *steps], steps, strict=False)), steps
    assert steps[-1] == r["files"]


def test_damage_is_reported_for_the_files_either_process_restores(
        data_root: Path, repo: Repository, tmp_path: Path, slow_start: None) -> None:
    s = run_backup(repo, BackupOptions(data_root, low_priority=False))
    files = repo.read_snapshot(s["snapshot_id"])["files"]
    blocks = set()
    for entry in files[::4]:  # a block of every fourth file, so both processes meet one
        loc = repo.index[repo.content_list(entry["list"])[0]]
        if (loc.pack, loc.block_off) in blocks:
            continue
        blocks.add((loc.pack, loc.block_off))
        with open(repo.pack_path(loc.pack), "r+b") as f:
            f.seek(loc.block_off + 40)
            b = f.read(1)
            f.seek(loc.block_off + 40)
            f.write(bytes([b[0] ^ 0x01]))
    damaged = {e["path"] for e in files if e.get("list") and any(
        (loc.pack, loc.block_off) in blocks
        for loc in (repo.index[c] for c in repo.content_list(e["list"])))}
    assert len(damaged) > 1
    repo._block_cache.clear()
    r = restore(repo, s["snapshot_id"], RestoreOptions(target=tmp_path / "out", processes=2,
                                                       workers=1, low_priority=False))
    assert r["state"] == "problems"
    assert damaged <= set(r["failures"])
    restored = tree_digest(tmp_path / "out")
    want = tree_digest(data_root)
    assert not set(r["failures"]) & set(restored)
    assert all(want[k] == v for k, v in restored.items())


def test_a_cancel_stops_the_helper_and_leaves_no_temp_file(
        data_root: Path, repo: Repository, tmp_path: Path, slow_start: None) -> None:
    s = run_backup(repo, BackupOptions(data_root, low_priority=False))
    children: list[int] = []
    # the restore's helpers only: this worker may hold other tests' processes (a session's
    # PostgreSQL or sshd), and one of those alive here failed a clean-clone run
    others = {c.pid for c in psutil.Process().children()}

    def on_progress(p: dict) -> None:
        children.extend(c.pid for c in psutil.Process().children()
                        if c.pid not in others and "--helper" in _cmdline(c))
        if p["files_done"] >= 5:
            ctx.cancel()

    ctx = LocalContext(on_progress=on_progress)
    target = tmp_path / "out"
    with pytest.raises(JobCancelled):
        restore(repo, s["snapshot_id"], RestoreOptions(target=target, processes=2, workers=1,
                                                       low_priority=False), ctx)
    assert children and all(_gone(pid) for pid in children)
    every = [p for p in target.rglob("*") if p.is_file()]
    assert not [p for p in every if ".tmp." in p.name]
    want = tree_digest(data_root)
    done = tree_digest(target)
    assert len(done) < len(want) and all(want[k] == v for k, v in done.items())


CHILD_KILLED = stalled_restore(3, "workers=1, processes=2")


def test_a_killed_restore_takes_its_helper_with_it(data_root: Path, repo: Repository,
                                                   tmp_path: Path) -> None:
    run_backup(repo, BackupOptions(data_root, low_priority=False))
    expected = tree_digest(data_root)
    target = tmp_path / "partial"
    proc = run_child(CHILD_KILLED, str(repo.path), str(tmp_path / "keys" / "repo.key"),
                     str(target))
    deadline = time.monotonic() + 30
    helpers: list[psutil.Process] = []
    while not helpers and time.monotonic() < deadline:
        helpers = [c for c in psutil.Process(proc.pid).children()
                   if "--helper" in c.cmdline()]
        time.sleep(0.05)
    assert helpers, "no helper process was started"
    kill_when_ready(proc)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not all(_gone(p.pid) for p in helpers):
        time.sleep(0.1)
    assert all(_gone(p.pid) for p in helpers), "the helper outlived the killed restore"
    every = [p for p in target.rglob("*") if p.is_file()]
    assert not [p for p in every if ".tmp." in p.name], "a killed restore left a temp file"
    done = tree_digest(target)
    assert len(done) < len(expected)
    assert all(expected[k] == v for k, v in done.items()), "a partial file has a final name"
    os.sync()


def test_names_that_are_not_utf8_are_restored_without_the_helper(
        data_root: Path, repo: Repository, tmp_path: Path) -> None:
    """The plan goes to the helper as JSON, which cannot carry such a name: this process
    restores everything then."""
    odd = os.fsencode(data_root / "user01") + b"/caf\xe9-\xff.json"
    with open(odd, "wb") as f:
        f.write(b'{"k": 1}\n')
    s = run_backup(repo, BackupOptions(data_root, low_priority=False))
    out = tmp_path / "out"
    r = restore(repo, s["snapshot_id"], RestoreOptions(target=out, processes=2,
                                                       low_priority=False))
    assert r.get("state") is None
    assert tree_digest(out) == tree_digest(data_root)
