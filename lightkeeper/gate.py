"""The per-user write gate shared by LightRAG writers, backups and restores.

Protocol (docs/architecture.md, "Write gate"): ``<data_root>/<user>/.lightkeeper.lock`` taken with
``fcntl.flock``. A writer holds ``LOCK_EX`` for the whole of an insert, delete or merge; a
reader that needs a quiet moment (the backup copying the directory, a process loading the
workspace) holds ``LOCK_SH``. Both wait up to a timeout and then fail with :class:`GateTimeout`.

When a writer releases the gate it stamps the lock file with ``<pid> <time_ns>``. The stamp
is unique per write, so another process holding the same workspace in memory can see
cheaply (one small read) that the directory changed under it and reload; the time is the moment
the write finished, used to expire query answers cached before it. A restore that replaces a
user's files takes the writer side too, so processes holding that user reload.

The functions take the user's directory; ``rag.gate`` offers them by (data_root, user) with the
user id validated, ``backup.gate`` by directory.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import os
import stat
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

LOCK_NAME = ".lightkeeper.lock"
# A reader announces it is waiting by holding this file exclusively; a writer passes through it
# (shared, released at once) before it takes the gate. So a stream of back-to-back writes cannot
# starve a backup: flock has no fairness of its own.
INTENT_NAME = ".lightkeeper.intent"
GATE_FILES = (LOCK_NAME, INTENT_NAME)


class GateTimeout(TimeoutError):
    """The write gate could not be taken within the timeout."""


@dataclass(frozen=True)
class Stamp:
    """What the lock file says about the last finished write."""
    raw: bytes          # the stamp as written; changes on every finished write
    last_write_ns: int  # 0 when no write was ever recorded


def lock_path(directory: Path) -> Path:
    """The gate of a user's working directory."""
    return Path(directory) / LOCK_NAME


def _open(path: Path) -> int:
    """Open (creating) a gate file. The user's directory may be writable by another account
    than ours, so a symlink or anything but a regular file there is refused, never followed
    (a writer stamps the file: through a symlink that would overwrite its target)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise OSError(errno.ELOOP, f"write gate {path} is a symlink; refusing to follow "
                          "it (remove it: the gate is recreated as a regular file)") from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, f"write gate {path} is not a regular file; refusing it")
    return fd


def _write_stamp(fd: int, stamp: bytes) -> None:
    """Overwrite the stamp in place, then cut any longer old one. Not ``ftruncate(0)`` first:
    on ext4 truncating a file with data to zero starts a writeback of it (``auto_da_alloc``),
    which cost ~7 ms per write on every gated writer."""
    os.pwrite(fd, stamp, 0)
    os.ftruncate(fd, len(stamp))


def _try_lock(fd: int, op: int) -> bool:
    try:
        fcntl.flock(fd, op | fcntl.LOCK_NB)
        return True
    except OSError as exc:
        if exc.errno not in (errno.EAGAIN, errno.EACCES):
            raise
        return False


def _waits(fd: int, op: int, timeout: float, path: Path, what: str,
           total: float | None = None) -> Iterator[float]:
    """Try the lock; while it is busy yield how long to wait (backing off), until the timeout."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while not _try_lock(fd, op):
        if time.monotonic() >= deadline:
            raise GateTimeout(
                f"write gate {path} is busy: could not take the {what} lock within "
                f"{timeout if total is None else total:g} s (another process is writing or "
                "backing up this user)"
            )
        yield delay
        delay = min(delay * 2, 0.1)


def _acquire(fd: int, op: int, timeout: float, path: Path, what: str,
             total: float | None = None) -> None:
    for delay in _waits(fd, op, timeout, path, what, total):
        time.sleep(delay)


@contextmanager
def write_gate(directory: Path, timeout: float = 60.0) -> Iterator[None]:
    """Hold ``LOCK_EX`` on the user's gate (a writer: insert, delete, merge)."""
    deadline = time.monotonic() + timeout
    ipath = Path(directory) / INTENT_NAME
    ifd = _open(ipath)
    try:  # wait behind a reader that is waiting for the gate
        _acquire(ifd, fcntl.LOCK_SH, timeout, ipath, "shared intent")
        fcntl.flock(ifd, fcntl.LOCK_UN)
    finally:
        os.close(ifd)
    path = lock_path(directory)
    fd = _open(path)
    try:
        _acquire(fd, fcntl.LOCK_EX, max(0.0, deadline - time.monotonic()), path, "exclusive",
                 timeout)
        try:
            yield
        finally:
            stamp = f"{os.getpid()} {time.time_ns()}\n".encode()
            _write_stamp(fd, stamp)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextmanager
def read_gate(directory: Path, timeout: float = 60.0) -> Iterator[None]:
    """Hold ``LOCK_SH`` on the user's gate (a reader that needs a quiet moment)."""
    deadline = time.monotonic() + timeout
    ipath = Path(directory) / INTENT_NAME
    ifd = _open(ipath)
    try:
        _acquire(ifd, fcntl.LOCK_EX, timeout, ipath, "intent")  # new writers now wait for us
        path = lock_path(directory)
        fd = _open(path)
        try:
            _acquire(fd, fcntl.LOCK_SH, max(0.0, deadline - time.monotonic()), path, "shared",
                     timeout)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
    finally:
        os.close(ifd)


def reader_waiting(directory: Path) -> bool:
    """Whether a reader (a backup) is waiting for the gate: it holds the intent file.

    A writer that keeps the gate across overlapping writes (``lightkeeper serve``'s pipeline)
    asks this before letting a new write join its hold, and lets the hold end instead.
    """
    return _held_exclusively(Path(directory) / INTENT_NAME)


def writer_active(directory: Path) -> bool:
    """Whether a writer holds the gate (``LOCK_EX``) right now.

    The backup asks this before it waits for a quiet directory: files modified after the last
    stamp may be that writer's, still in flight under the gate, and its release stamp will
    cover them; the check made under the gate decides. The probe is a non-blocking shared lock
    taken and dropped at once (a writer asking in that instant retries after a few ms).
    """
    return _held_exclusively(lock_path(directory))


def _held_exclusively(path: Path) -> bool:
    """Whether another process holds ``LOCK_EX`` on ``path``: a non-blocking shared lock taken
    and dropped at once. A missing file, a symlink (never followed) or anything but a regular
    file (a FIFO would block) holds nothing of ours."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return False
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        if _try_lock(fd, fcntl.LOCK_SH):
            fcntl.flock(fd, fcntl.LOCK_UN)
            return False
        return True
    finally:
        os.close(fd)


def read_stamp(directory: Path) -> Stamp:
    """The gate's stamp; a missing or empty file reads as 'never written'."""
    try:
        fd = os.open(lock_path(directory),
                     os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return Stamp(b"", 0)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # a symlink is no stamp of ours
            return Stamp(b"", 0)
        raise
    try:
        raw = os.read(fd, 64) if stat.S_ISREG(os.fstat(fd).st_mode) else b""
    finally:
        os.close(fd)
    parts = raw.split()
    try:
        last = int(parts[1]) if len(parts) == 2 else 0
    except ValueError:
        last = 0
    return Stamp(raw, last)


class _Held:
    """What a gate holder learns: the stamp it wrote on release (writers only)."""
    stamp: bytes = b""


async def _acquire_async(fd: int, op: int, timeout: float, path: Path, what: str,
                         total: float | None = None) -> None:

    for delay in _waits(fd, op, timeout, path, what, total):
        await asyncio.sleep(delay)


@asynccontextmanager
async def async_write_gate(directory: Path, timeout: float = 60.0) -> AsyncIterator[_Held]:
    """``write_gate`` for asyncio code: waits without blocking the event loop."""
    deadline = time.monotonic() + timeout
    ipath = Path(directory) / INTENT_NAME
    ifd = _open(ipath)
    try:
        await _acquire_async(ifd, fcntl.LOCK_SH, timeout, ipath, "shared intent")
        fcntl.flock(ifd, fcntl.LOCK_UN)
    finally:
        os.close(ifd)
    path = lock_path(directory)
    fd = _open(path)
    held = _Held()
    try:
        await _acquire_async(fd, fcntl.LOCK_EX, max(0.0, deadline - time.monotonic()), path,
                             "exclusive", timeout)
        try:
            yield held
        finally:
            held.stamp = f"{os.getpid()} {time.time_ns()}\n".encode()
            _write_stamp(fd, held.stamp)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@asynccontextmanager
async def async_read_gate(directory: Path, timeout: float = 60.0) -> AsyncIterator[None]:
    """``read_gate`` for asyncio code."""
    deadline = time.monotonic() + timeout
    ipath = Path(directory) / INTENT_NAME
    ifd = _open(ipath)
    try:
        await _acquire_async(ifd, fcntl.LOCK_EX, timeout, ipath, "intent")
        path = lock_path(directory)
        fd = _open(path)
        try:
            await _acquire_async(fd, fcntl.LOCK_SH, max(0.0, deadline - time.monotonic()), path,
                                 "shared", timeout)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
    finally:
        os.close(ifd)
