"""Reader side of the per-user write gate (docs/architecture.md, "Write gate").

``<data_root>/<user>/.lightkeeper.lock`` taken with ``fcntl.flock(LOCK_SH)``; writers (``rag``)
hold ``LOCK_EX`` for a whole insert, delete or merge. The protocol is identical to
``rag/gate.py``; it is repeated here because ``backup`` may import only ``lightkeeper``.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

LOCK_NAME = ".lightkeeper.lock"


class GateTimeout(TimeoutError):
    """The gate stayed busy (a writer held it) for longer than the timeout."""


def _flock(fd: int, op: int, timeout: float, path: Path, what: str) -> None:
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        try:
            fcntl.flock(fd, op | fcntl.LOCK_NB)
            return
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
        if time.monotonic() >= deadline:
            raise GateTimeout(f"write gate {path} is busy: could not take the {what} lock "
                              f"within {timeout:g} s (a writer holds it)")
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


@contextmanager
def _gate(user_dir: Path, op: int, timeout: float, what: str) -> Iterator[None]:
    path = Path(user_dir) / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        _flock(fd, op, timeout, path, what)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def read_gate(user_dir: Path, timeout: float = 60.0) -> AbstractContextManager[None]:
    """Hold ``LOCK_SH``: writers that honour the gate wait until we are done."""
    return _gate(user_dir, fcntl.LOCK_SH, timeout, "shared")


def exclusive_gate(user_dir: Path, timeout: float = 60.0) -> AbstractContextManager[None]:
    """Hold ``LOCK_EX`` (an in-place restore replacing the user's files)."""
    return _gate(user_dir, fcntl.LOCK_EX, timeout, "exclusive")
