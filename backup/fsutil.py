"""Small file-system helpers: atomic writes (temp, fsync, rename, fsync dir) and free space."""

from __future__ import annotations

import errno
import os
import secrets
import shutil
from pathlib import Path

TMP_PREFIX = ".tmp-"


class NoSpace(OSError):
    """Not enough free space for the work about to start (or the disk filled up)."""


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def tmp_name(directory: Path) -> Path:
    return Path(directory) / f"{TMP_PREFIX}{os.getpid()}-{secrets.token_hex(6)}"


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` so that ``path`` either does not exist or is complete."""
    path = Path(path)
    tmp = tmp_name(path.parent)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    fsync_dir(path.parent)


def free_bytes(path: Path) -> int:
    p = Path(path)
    while not p.exists():
        p = p.parent
    return shutil.disk_usage(p).free


def require_space(path: Path, needed: int, what: str) -> None:
    free = free_bytes(path)
    if free < needed:
        raise NoSpace(
            errno.ENOSPC,
            f"not enough free space for {what}: {needed / 1e6:.1f} MB needed, "
            f"{free / 1e6:.1f} MB free on the file system of {path}",
        )


def is_enospc(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)
