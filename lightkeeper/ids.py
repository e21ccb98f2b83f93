"""Validation of user ids and of paths derived from them (no traversal, ever)."""

from __future__ import annotations

import errno
import os
import re
import stat
from pathlib import Path

# Always fullmatch: with `$`, "alice\n" passed (`$` also matches before a final newline).
USER_ID_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}\Z")  # \Z too: .match is then safe


class InvalidUserId(ValueError):
    """A user id that does not match the allowed pattern."""


class UnsafePath(ValueError):
    """A path that would escape the directory it must stay in."""


def validate_user_id(user: str) -> str:
    """Return ``user`` if it is a valid id, else raise :class:`InvalidUserId`."""
    if not isinstance(user, str) or not USER_ID_RE.fullmatch(user):
        raise InvalidUserId(
            f"invalid user id {user!r}: use 1-64 characters from a-z, 0-9, '_' and '-', "
            "starting with a letter or digit"
        )
    return user


def user_dir(data_root: Path, user: str) -> Path:
    """The working directory of ``user`` under ``data_root`` (validated)."""
    validate_user_id(user)
    return Path(data_root) / user


def top_dir(path: str, root: str) -> str | None:
    """The first component of ``path`` below ``root`` (the user directory a path is in or
    is); None for the root itself or a path outside it. A path that starts with the root as
    given is cut (0.2 us: the user-directory watcher asks for every change); another, a
    relative one for instance, goes through ``os.path.relpath`` (3 us)."""
    prefix = root.rstrip(os.sep) + os.sep
    if path.startswith(prefix):
        first = path[len(prefix):].split(os.sep, 1)[0]
    else:
        first = os.path.relpath(path, root).split(os.sep, 1)[0]
    return None if first in ("", ".", "..") else first


def safe_join(base: Path, relative: str | Path) -> Path:
    """Join ``relative`` onto ``base`` and refuse anything that leaves ``base``.

    Absolute paths, ``..`` components and symlinks out of ``base`` are refused.
    """
    rel = Path(relative)
    if rel.is_absolute():
        raise UnsafePath(f"absolute path {str(relative)!r} not allowed here")
    if any(part == ".." for part in rel.parts):
        raise UnsafePath(f"path {str(relative)!r} contains '..'")
    base_resolved = Path(base).resolve()
    candidate = (base_resolved / rel).resolve()
    if candidate != base_resolved and base_resolved not in candidate.parents:
        raise UnsafePath(f"path {str(relative)!r} escapes {base_resolved}")
    return candidate


def open_regular(path: str | Path) -> int:
    """Open for reading a file that another account may control (a spool file, a pid file, a
    file in a user's directory): never through a symlink, never blocking on a FIFO, and only a
    regular file. Raises :class:`UnsafePath` for anything else, OSError as usual."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
                     | getattr(os, "O_NOCTTY", 0))
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafePath(f"{path} is a symlink: not followed") from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UnsafePath(f"{path} is not a regular file")
    return fd


def read_regular(path: str | Path, limit: int = -1) -> bytes:
    """The bytes of a regular file opened with :func:`open_regular` (at most ``limit``)."""
    fd = open_regular(path)
    with os.fdopen(fd, "rb") as fh:
        return fh.read(limit)
