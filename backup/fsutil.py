"""Small file-system helpers: atomic writes (temp, fsync, rename, fsync dir) and free space."""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import stat as stat_mod
from pathlib import Path
from typing import BinaryIO

TMP_PREFIX = ".tmp-"


class NoSpace(OSError):
    """Not enough free space for the work about to start (or the disk filled up)."""


def _fsync_opened(path: Path, flags: int) -> None:
    fd = os.open(path, os.O_RDONLY | flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    _fsync_opened(path, os.O_DIRECTORY)


def fsync_file(path: Path) -> None:
    """Flush a file written by another writer (a library) to disk; a symlink is refused."""
    _fsync_opened(path, os.O_NOFOLLOW)


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


# -- writing into directories other accounts control (user directories, restore targets) ----
# A path there may be swapped for a symlink at any moment by whoever owns the directory. So
# every component below the trusted base is opened with O_NOFOLLOW relative to its parent's
# descriptor, files are created O_CREAT|O_EXCL|O_NOFOLLOW under unpredictable names, and
# their mode and times are set on the open descriptor.

RESTORE_TMP_MARK = ".tmp.restore-"


class UnsafeDirectory(OSError):
    """A path component below the base is a symlink or not a directory."""


def _open_child_dir(fd: int, part: str, base: Path, parts: list[str] | tuple[str, ...],
                    create: bool = False, mode: int = 0o777) -> int:
    """``part`` of the directory ``fd``, opened without following a symlink."""
    if part in ("", ".", "..") or "/" in part:
        raise UnsafeDirectory(errno.EINVAL, f"unsafe path component {part!r} under {base}")
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        return os.open(part, flags, dir_fd=fd)
    except FileNotFoundError:
        if not create:
            raise
        try:
            os.mkdir(part, mode, dir_fd=fd)
        except FileExistsError:
            pass
        return os.open(part, flags, dir_fd=fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise UnsafeDirectory(
                errno.ELOOP, f"{base}/{'/'.join(parts)}: {part!r} is a symlink or not "
                "a directory; refusing to follow it") from None
        raise


def open_dir_below(base: Path, parts: list[str], create: bool = True,
                   mode: int = 0o777) -> int:
    """A descriptor of ``base/parts...`` opened without following any symlink below ``base``
    (missing directories are created when ``create``). The caller closes it."""
    fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts:
            nfd = _open_child_dir(fd, part, base, parts, create, mode)
            os.close(fd)
            fd = nfd
    except BaseException:
        os.close(fd)
        raise
    return fd


def create_temp_in(dir_fd: int, name: str, mark: str = RESTORE_TMP_MARK) -> tuple[int, str]:
    """Create a new, empty, owner-only file next to ``name`` in the directory ``dir_fd``:
    ``O_CREAT|O_EXCL|O_NOFOLLOW`` under an unpredictable name. Returns (fd, temp name)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    for _ in range(8):
        tmp = f".{name[:180]}{mark}{secrets.token_hex(8)}"
        try:
            return os.open(tmp, flags, 0o600, dir_fd=dir_fd), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, f"could not create a temp file for {name}")


def open_unnamed_in(dir_fd: int, mode: int) -> int | None:
    """A new file in the directory ``dir_fd`` that has no name yet (``O_TMPFILE``): nobody
    can open it, and it vanishes if the process dies before :func:`link_unnamed` names it.
    ``mode`` is subject to the umask. None where the file system or kernel lacks O_TMPFILE
    (the caller falls back to :func:`create_temp_in`)."""
    if not _UNNAMED_OK or not hasattr(os, "O_TMPFILE"):
        return None
    try:
        return os.open(".", os.O_WRONLY | os.O_TMPFILE | os.O_CLOEXEC, mode, dir_fd=dir_fd)
    except OSError as exc:
        # EOPNOTSUPP: the file system has no O_TMPFILE; EISDIR/EINVAL: an old kernel
        if exc.errno in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
            return None
        raise


def link_unnamed(fd: int, dir_fd: int, name: str) -> None:
    """Give the unnamed file ``fd`` (from :func:`open_unnamed_in`) the name ``name`` in
    ``dir_fd``. Like ``O_CREAT|O_EXCL|O_NOFOLLOW``, this never follows or replaces what sits
    there: anything at ``name``, a symlink included, raises FileExistsError."""
    os.link(f"/proc/self/fd/{fd}", name, dst_dir_fd=dir_fd, follow_symlinks=True)


def link_unnamed_temp(fd: int, dir_fd: int, name: str,
                      mark: str = RESTORE_TMP_MARK) -> str:
    """Name the unnamed file ``fd`` with a temp name next to ``name`` (unpredictable, and
    exclusive as :func:`create_temp_in` is), for a rename over an existing file."""
    for _ in range(8):
        tmp = f".{name[:180]}{mark}{secrets.token_hex(8)}"
        try:
            link_unnamed(fd, dir_fd, tmp)
            return tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, f"could not name a temp file for {name}")


def current_umask() -> int | None:
    """The process's umask, read without changing it (``os.umask`` sets it for every thread
    at once); None if the kernel does not say."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return None


# linking an O_TMPFILE file goes through /proc/self/fd (linkat with AT_EMPTY_PATH needs
# CAP_DAC_READ_SEARCH)
_UNNAMED_OK = os.path.isdir("/proc/self/fd")


def is_symlink_at(dir_fd: int, name: str) -> bool:

    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return stat_mod.S_ISLNK(st.st_mode)


def remove_restore_leftovers(base: Path) -> list[str]:
    """Delete the temp files of killed restores (``.NAME.tmp.restore-*``) under ``base``,
    never following symlinks. Returns the paths removed (relative to ``base``)."""

    removed: list[str] = []
    if not Path(base).is_dir():
        return removed

    def walk(fd: int, prefix: str) -> None:
        with os.scandir(fd) as it:
            entries = list(it)
        for e in entries:
            st = os.stat(e.name, dir_fd=fd, follow_symlinks=False)
            if stat_mod.S_ISDIR(st.st_mode):
                try:
                    sub = os.open(e.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
                                  | os.O_CLOEXEC, dir_fd=fd)
                except OSError:
                    continue
                try:
                    walk(sub, f"{prefix}{e.name}/")
                finally:
                    os.close(sub)
            elif e.name.startswith(".") and RESTORE_TMP_MARK in e.name:
                os.unlink(e.name, dir_fd=fd)
                removed.append(prefix + e.name)

    top = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        walk(top, "")
    finally:
        os.close(top)
    return removed


class NotRegularFile(OSError):
    """A path that should be a regular file is a symlink, a FIFO, a device, ..."""


def _open_regular_at(dir_fd: int | None, name: str | Path, shown: Path | str) -> int:
    """A descriptor of the regular file ``name`` (in ``dir_fd``), never through a symlink."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(name, flags, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise NotRegularFile(errno.ELOOP, f"{shown} is a symlink; not followed") from None
        raise
    if not stat_mod.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise NotRegularFile(errno.EINVAL, f"{shown} is not a regular file")
    os.set_blocking(fd, True)
    return fd


def open_regular(path: Path) -> BinaryIO:
    """Open ``path`` for reading, refusing anything but a regular file and never following a
    symlink at its last component (files below a directory another account writes:
    ``DirsBelow``)."""
    path = Path(path)
    return os.fdopen(_open_regular_at(None, path, path), "rb")


class DirsBelow:
    """Regular files below ``base`` opened without following a symlink anywhere below it
    (``open_dir_below``'s rules), each directory on the way opened once and its descriptor
    kept for the next file of the same directory: a backup reads thousands of files from a
    few hundred directories, and walking from ``base`` for each one cost three more ``open``
    calls per file. A directory swapped for a symlink after it was opened is not followed: its
    kept descriptor still names the directory that was checked. At most ``MAX_OPEN``
    descriptors are kept; close() (or the end of a ``with`` block) closes them."""

    MAX_OPEN = 256

    def __init__(self, base: Path) -> None:
        self.base = Path(base)
        self._fds: dict[tuple[str, ...], int] = {}

    def _dir(self, parts: tuple[str, ...]) -> int:
        fd = self._fds.get(parts)
        if fd is not None:
            return fd
        if len(self._fds) >= self.MAX_OPEN:
            self.close()
        if parts:
            fd = _open_child_dir(self._dir(parts[:-1]), parts[-1], self.base, parts)
        else:
            fd = os.open(self.base, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._fds[parts] = fd
        return fd

    def open_fd(self, rel: str) -> int:
        """A descriptor of the regular file ``base/rel`` (``rel`` with ``/`` separators); the
        caller closes it."""
        *dirs, name = rel.split("/")
        if name in ("", ".", ".."):
            raise NotRegularFile(errno.EINVAL, f"{self.base}/{rel} is not a file name")
        return _open_regular_at(self._dir(tuple(dirs)), name, f"{self.base}/{rel}")

    def close(self) -> None:
        fds, self._fds = list(self._fds.values()), {}
        for fd in fds:
            os.close(fd)

    def __enter__(self) -> DirsBelow:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_fd(fd: int, size_hint: int) -> bytes:
    """All of the file ``fd`` from its current offset (``size_hint``: its expected size; a
    file that grew or shrank since is read to its real end)."""
    chunks = []
    want = max(size_hint, 0) + 1  # one more byte: a file that grew is read on, not cut
    while True:
        piece = os.read(fd, want)
        if not piece:
            break
        chunks.append(piece)
        want = max(want - len(piece), 1 << 16)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
