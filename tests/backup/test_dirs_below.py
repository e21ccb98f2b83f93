"""fsutil.DirsBelow and read_fd: the backup's way of opening a user's files (each directory
once, nothing through a symlink) and reading them whole."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lightkeeper.backup.fsutil import DirsBelow, NotRegularFile, UnsafeDirectory, read_fd


def _read(dirs: DirsBelow, rel: str) -> bytes:
    fd = dirs.open_fd(rel)
    try:
        return read_fd(fd, 0)
    finally:
        os.close(fd)


def test_files_in_nested_directories_are_read_through_one_descriptor_per_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for rel in ("a.json", "x/b.json", "x/c.json", "x/y/d.json"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(rel.encode() * 1000)
    real_open = os.open
    dir_opens: list[str] = []

    def counting_open(path, flags, *a, **k):
        if flags & os.O_DIRECTORY:
            dir_opens.append(str(path))
        return real_open(path, flags, *a, **k)

    monkeypatch.setattr(os, "open", counting_open)
    with DirsBelow(tmp_path) as dirs:
        for rel in ("a.json", "x/b.json", "x/c.json", "x/y/d.json", "x/b.json"):
            assert _read(dirs, rel) == rel.encode() * 1000
    assert sorted(dir_opens) == sorted([str(tmp_path), "x", "y"])  # once each


def test_symlinks_fifos_and_unsafe_names_are_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"secret")
    base = tmp_path / "user"
    (base / "d").mkdir(parents=True)
    os.symlink(outside / "secret", base / "link")
    os.symlink(outside, base / "dlink")
    os.mkfifo(base / "d" / "fifo")
    with DirsBelow(base) as dirs:
        with pytest.raises(NotRegularFile):
            dirs.open_fd("link")
        with pytest.raises(UnsafeDirectory):
            dirs.open_fd("dlink/secret")
        with pytest.raises(NotRegularFile):
            dirs.open_fd("d/fifo")  # and does not block waiting for a writer
        for bad in ("../outside/secret", "d/../link", "d/", "."):
            with pytest.raises((UnsafeDirectory, NotRegularFile)):
                dirs.open_fd(bad)
        with pytest.raises(FileNotFoundError):
            dirs.open_fd("d/missing")


def test_the_descriptors_kept_stay_bounded(tmp_path: Path) -> None:
    n = DirsBelow.MAX_OPEN + 40
    for i in range(n):
        (tmp_path / f"d{i}").mkdir()
        (tmp_path / f"d{i}" / "f").write_bytes(b"%d" % i)
    before = len(os.listdir("/proc/self/fd"))
    with DirsBelow(tmp_path) as dirs:
        for i in range(n):
            assert _read(dirs, f"d{i}/f") == b"%d" % i
            assert len(dirs._fds) <= DirsBelow.MAX_OPEN + 1
    assert len(os.listdir("/proc/self/fd")) == before


def test_read_fd_reads_to_the_real_end_whatever_the_size_hint(tmp_path: Path) -> None:
    f = tmp_path / "f"
    data = os.urandom(300_000)
    f.write_bytes(data)
    for hint in (0, 1, 299_999, 300_000, 300_001, 10 << 20):
        fd = os.open(f, os.O_RDONLY)
        try:
            assert read_fd(fd, hint) == data
        finally:
            os.close(fd)
