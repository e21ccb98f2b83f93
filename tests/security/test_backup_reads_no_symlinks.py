"""Same class as High 2/3, on the backup side: a user's directory belongs to another account,
which can swap a file for a symlink between the backup's scan and its read. Before the fix the
read followed it, so any file the agent can read (root: /etc/shadow) went into the snapshot
under that user's name, and an in-place restore handed it to the directory's owner."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lightkeeper.backup import snapshot as snapshot_mod
from lightkeeper.backup import sources
from lightkeeper.backup.repository import Repository
from lightkeeper.backup.snapshot import BackupOptions, run_backup

SECRET = b"root-only secret the backup must never copy\n"


@pytest.mark.parametrize("swap", ["file", "directory"])
def test_backup_does_not_follow_a_symlink_swapped_in_after_the_scan(
        data_root: Path, repo: Repository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        swap: str) -> None:
    secret_dir = tmp_path / "secret"
    secret_dir.mkdir()
    (secret_dir / "shadow").write_bytes(SECRET)
    udir = data_root / "user00"
    (udir / "sub").mkdir()
    (udir / "sub" / "shadow").write_bytes(b"an ordinary file of the user\n")
    real_scan = sources.scan
    calls = []

    def scan_then_swap(user_dir: Path):  # the attacker wins the race right after the scan
        out = real_scan(user_dir)
        calls.append(user_dir)
        # the first scan sizes the progress bar; the second is the copy's
        if Path(user_dir) == udir and len(calls) == 2:
            if swap == "file":
                os.unlink(udir / "sub" / "shadow")
                os.symlink(secret_dir / "shadow", udir / "sub" / "shadow")
            else:
                os.rename(udir / "sub", udir / "sub.old")
                os.symlink(secret_dir, udir / "sub")
        return out

    monkeypatch.setattr(snapshot_mod.sources, "scan", scan_then_swap)
    s = run_backup(repo, BackupOptions(data_root, users=["user00"], retries=0,
                                       low_priority=False))
    m = repo.read_snapshot(s["snapshot_id"])
    for f in m["files"]:
        data = b"".join(bytes(c) for c in repo.iter_file_data(f))
        assert SECRET not in data, f"{f['path']} holds the symlink target's bytes"
    assert s.get("errors", {}).get("user00"), "the user must be reported, not silently copied"


def test_a_directory_swapped_for_a_symlink_between_two_of_its_files_is_not_followed(
        data_root: Path, repo: Repository, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The backup opens each directory of a user once and reads the directory's files through
    that descriptor (fsutil.DirsBelow): a directory renamed away and replaced by a symlink
    after its first file was read must not lead the next read to the symlink's target."""
    secret_dir = tmp_path / "secret"
    secret_dir.mkdir()
    for name in ("a.json", "b.json"):
        (secret_dir / name).write_bytes(SECRET)
    udir = data_root / "user00"
    (udir / "sub").mkdir()
    for name in ("a.json", "b.json"):
        (udir / "sub" / name).write_bytes(b"an ordinary file of the user\n")
    real = snapshot_mod._Builder.store_fd
    swapped = []

    def store_then_swap(self, fd: int, rel: str, size: int, keep: bool = False):
        out = real(self, fd, rel, size, keep)
        if rel.startswith("users/user00/sub/") and not swapped:
            os.rename(udir / "sub", udir / "sub.old")
            os.symlink(secret_dir, udir / "sub")
            swapped.append(rel)
        return out

    monkeypatch.setattr(snapshot_mod._Builder, "store_fd", store_then_swap)
    s = run_backup(repo, BackupOptions(data_root, users=["user00"], retries=0,
                                       low_priority=False))
    assert swapped
    for sid in repo.snapshot_ids():
        for f in repo.read_snapshot(sid)["files"]:
            data = b"".join(bytes(c) for c in repo.iter_file_data(f))
            assert SECRET not in data, f"{f['path']} holds the symlink target's bytes"
    assert s.get("errors", {}).get("user00"), "the changed listing must fail the user's copy"


def test_backup_does_not_hang_on_a_fifo_swapped_in_after_the_scan(
        data_root: Path, repo: Repository, monkeypatch: pytest.MonkeyPatch) -> None:
    """Opening a FIFO for reading blocks until someone writes: before the fix a FIFO swapped in
    for a user's file held the backup (and the repository lock and the user's gate) forever."""
    import threading

    udir = data_root / "user00"
    (udir / "extra.json").write_bytes(b"{}")
    real_scan = sources.scan
    calls = []

    def scan_then_swap(user_dir: Path):
        out = real_scan(user_dir)
        calls.append(user_dir)
        if Path(user_dir) == udir and len(calls) == 2:
            os.unlink(udir / "extra.json")
            os.mkfifo(udir / "extra.json")
        return out

    monkeypatch.setattr(snapshot_mod.sources, "scan", scan_then_swap)
    result: dict = {}

    def run() -> None:
        try:
            result["summary"] = run_backup(repo, BackupOptions(data_root, users=["user00"],
                                                               retries=0, low_priority=False))
        except BaseException as exc:  # noqa: BLE001 - reported below
            result["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(30)
    hung = t.is_alive()
    if hung:  # release the blocked open so the thread ends
        fd = os.open(udir / "extra.json", os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        t.join(30)
    assert not hung, "the backup blocked opening a FIFO"
    assert "error" not in result, result.get("error")
    assert "user00" in result["summary"].get("errors", {})


def test_backup_refuses_a_user_directory_that_is_a_symlink(
        data_root: Path, repo: Repository, tmp_path: Path) -> None:
    """``backup run --user X`` with X a symlink the data root's owner planted (to a directory
    only the agent can read) used to copy that directory into the snapshot as user X's files,
    which an in-place restore then handed to the data root's owner."""
    from lightkeeper.backup.snapshot import BackupError

    secret_dir = tmp_path / "root-only"
    secret_dir.mkdir()
    (secret_dir / "kv_store_full_docs.json").write_bytes(SECRET)
    (data_root / "evil").symlink_to(secret_dir)
    with pytest.raises(BackupError, match="symlink"):
        run_backup(repo, BackupOptions(data_root, users=["evil"], low_priority=False))
    # and a full backup skips it (as before)
    s = run_backup(repo, BackupOptions(data_root, low_priority=False))
    assert "evil" not in repo.read_snapshot(s["snapshot_id"])["users"]
