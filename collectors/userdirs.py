"""Per-user data directory usage under the data root: bytes, files and growth rate.

Each direct subdirectory of the data root whose name is a valid user id
(``lightkeeper.ids``) is one user. Scans are incremental:

- a watcher thread (``watchfiles.watch``, recursive on the data root) marks the users whose
  files changed as dirty, with the paths that changed;
- each ``collect()`` lists the data root (new users are dirty, vanished users are dropped) and
  brings only the dirty users up to date: by the changed files alone (one ``lstat`` each) when
  their earlier sizes are known, else by rescanning the user's directory;
- every ``full_rescan`` seconds all users are rescanned, which catches whatever the watcher
  missed (events lost on overflow, a watch limit reached, a network filesystem).

``userdir_bytes`` is the apparent size of the regular files (symlinks are not followed), the
figure a user sees. Growth (``userdir_growth_bytes_per_second``) is the change of bytes over the
last ``growth_window`` seconds (or since the user was first seen, if later), from the points
where the size changed, so an idle user costs one remembered point. A user directory removed
during a scan is skipped and its series stop; a missing data root is logged once and reported
as ``userdir_data_root_present 0`` until it appears.
"""

from __future__ import annotations

import os
import stat
import threading
import time
from collections import deque
from pathlib import Path

from lightkeeper import fswatch
from lightkeeper.collectors.base import Triple
from lightkeeper.ids import USER_ID_RE, top_dir
from lightkeeper.logs import get_logger

log = get_logger("collectors.userdirs")

WATCH_DEBOUNCE_MS = 2000
WATCH_TIMEOUT_MS = 10_000  # the watcher wakes at least this often to notice a vanished root
# Files whose size is remembered (about 160 bytes each), so that their next change costs one
# lstat instead of a rescan of the user's directory: every file a scan found, up to this many
# in all (1,000 LightRAG users of about 15 files each take 15,000); past it, only the files
# that changed. LightRAG rewrites the same few stores of a user in place on every insert.
HOT_FILES_MAX = 50_000
DIRTY_PATHS_MAX = 64  # changed paths of one user per pass beyond which a rescan is as cheap


class UserDirGone(Exception):
    """The user's directory disappeared while it was being scanned."""


class UserDirUnreadable(Exception):
    """The agent may not list the user's directory."""


def scan_user(path: str, sizes: dict[str, int] | None = None) -> tuple[int, int]:
    """(bytes, files) of the regular files under ``path``; raises UserDirGone if it vanished.
    The size of each file is put into ``sizes`` by path, if given."""
    total = files = 0
    stack = [path]
    first = True
    while stack:
        current = stack.pop()
        try:
            it = os.scandir(current)
        except FileNotFoundError:
            if first:
                raise UserDirGone(path) from None
            continue  # a subdirectory removed mid-scan
        except NotADirectoryError:
            if first:
                raise UserDirGone(path) from None
            continue
        except PermissionError:
            if first:
                raise UserDirUnreadable(path) from None
            continue  # an unreadable subdirectory: counted as empty
        first = False
        with it:
            for entry in it:
                try:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    elif entry.is_file(follow_symlinks=False):
                        size = entry.stat(follow_symlinks=False).st_size
                        total += size
                        files += 1
                        if sizes is not None:
                            sizes[entry.path] = size
                except FileNotFoundError:
                    continue  # removed between listing and stat
    if not os.path.isdir(path):
        raise UserDirGone(path)
    return total, files


def _lstat_inside(user_dir: str, path: str) -> os.stat_result | None:
    """``lstat`` of ``path`` under ``user_dir``, None if it is gone. Every directory between
    them must be a directory, not a symlink (a rescan would not follow one either): raises
    NotADirectoryError otherwise."""
    prefix = user_dir.rstrip(os.sep) + os.sep
    if not path.startswith(prefix) or len(path) == len(prefix):
        raise NotADirectoryError(path)
    parts = path[len(prefix):].split(os.sep)
    if ".." in parts or "." in parts or "" in parts:
        raise NotADirectoryError(path)
    current = prefix.rstrip(os.sep)
    for part in parts[:-1]:
        current = os.path.join(current, part)
        try:
            if not stat.S_ISDIR(os.lstat(current).st_mode):
                raise NotADirectoryError(current)
        except FileNotFoundError:
            return None
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


class _Growth:
    """Points where a user's size changed, trimmed to the growth window."""
    __slots__ = ("first_seen", "points")

    def __init__(self, now: float, size: int) -> None:
        self.first_seen = now
        self.points: deque[tuple[float, int]] = deque([(now, size)])

    def add(self, now: float, size: int, window: float) -> None:
        if self.points[-1][1] != size:
            self.points.append((now, size))
        # keep the last point at or before the window start (the size at that moment)
        start = now - window
        while len(self.points) >= 2 and self.points[1][0] <= start:
            self.points.popleft()

    def rate(self, now: float, window: float) -> float | None:
        start = max(self.first_seen, now - window)
        if now - start <= 0:
            return None
        base = self.points[0][1]
        for t, size in self.points:
            if t <= start:
                base = size
            else:
                break
        return (self.points[-1][1] - base) / (now - start)


class UserDirCollector:
    name = "userdirs"

    def __init__(self, data_root: str | Path, interval: float = 60.0,
                 full_rescan: float = 3600.0, growth_window: float = 3600.0,
                 watch: bool = True) -> None:
        self.data_root = Path(data_root)
        self.interval = interval
        self.full_rescan = full_rescan
        self.growth_window = growth_window
        self.watch = watch
        self._sizes: dict[str, tuple[int, int]] = {}
        self._growth: dict[str, _Growth] = {}
        # user -> the paths that changed, or None: rescan the user's directory
        self._dirty: dict[str, set[str] | None] = {}
        self._dirty_lock = threading.Lock()
        # user -> {path: size} of the files whose size is remembered (HOT_FILES_MAX in all)
        self._hot: dict[str, dict[str, int]] = {}
        self._hot_count = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_full = -float("inf")
        self._root_missing_logged = False
        self._unreadable: set[str] = set()
        self.watcher_error: str | None = None
        self.full_rescans = 0

    # -- watcher ----------------------------------------------------------------------------
    def _start_watcher(self) -> None:
        if not self.watch or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._watch_loop, name="userdir-watcher",
                                        daemon=True)
        self._thread.start()

    def _user_of(self, path: str, root: str) -> str | None:
        first = top_dir(path, root)
        return first if first is not None and USER_ID_RE.fullmatch(first) else None

    def mark_dirty(self, user: str, path: str | None = None) -> None:
        """The user's files changed: ``path`` (absolute) or, without one, anything."""
        with self._dirty_lock:
            self._mark(user, path)

    def _mark(self, user: str, path: str | None) -> None:  # with _dirty_lock held
        if path is None:
            self._dirty[user] = None
            return
        if user in self._dirty and self._dirty[user] is None:
            return
        paths = self._dirty.setdefault(user, set())
        assert paths is not None
        if len(paths) >= DIRTY_PATHS_MAX:
            self._dirty[user] = None
        else:
            paths.add(path)

    def _watch_loop(self) -> None:
        import watchfiles  # noqa: PLC0415  only the agent's collector thread needs it

        root = str(self.data_root)
        while not self._stop.is_set():
            if not os.path.isdir(root):
                self._stop.wait(min(self.interval, 10.0))
                continue
            try:
                root_ino = os.stat(root).st_ino
                for changes in watchfiles.watch(
                        root, watch_filter=None, debounce=WATCH_DEBOUNCE_MS, step=fswatch.STEP_MS,
                        stop_event=self._stop, rust_timeout=WATCH_TIMEOUT_MS,
                        yield_on_timeout=True, raise_interrupt=False, recursive=True,
                        ignore_permission_denied=True):
                    marks = [(u, p) for _change, p in changes if (u := self._user_of(p, root))]
                    if marks:
                        with self._dirty_lock:
                            for user, path in marks:
                                self._mark(user, path)
                    try:
                        if os.stat(root).st_ino != root_ino:
                            break  # the root was replaced: watch the new one
                    except FileNotFoundError:
                        break
                self.watcher_error = None
            except Exception as exc:  # noqa: BLE001  a watch limit, a vanished root: full rescans cover it
                if self.watcher_error is None:
                    log.warning("userdirs.watcher_failed", path=root,
                                error=f"{type(exc).__name__}: {exc}",
                                hint="changes are still found by the periodic full rescan")
                self.watcher_error = f"{type(exc).__name__}: {exc}"
                self._stop.wait(min(self.interval, 30.0))

    # -- collection ---------------------------------------------------------------------------
    def _list_users(self) -> set[str] | None:
        try:
            with os.scandir(self.data_root) as it:
                return {e.name for e in it
                        if USER_ID_RE.fullmatch(e.name) and e.is_dir(follow_symlinks=False)}
        except (FileNotFoundError, NotADirectoryError):
            return None

    def collect(self) -> list[Triple]:
        self._start_watcher()
        started = time.perf_counter()
        users = self._list_users()
        if users is None:
            if not self._root_missing_logged:
                log.error("userdirs.data_root_missing", path=str(self.data_root),
                          hint="create it or set paths.data_root; collection resumes when it "
                               "exists")
                self._root_missing_logged = True
            self._sizes.clear()
            self._growth.clear()
            return [("userdir_data_root_present", "", 0.0), ("userdir_users", "", 0.0)]
        if self._root_missing_logged:
            log.info("userdirs.data_root_found", path=str(self.data_root))
            self._root_missing_logged = False

        now = time.monotonic()
        with self._dirty_lock:
            dirty, self._dirty = self._dirty, {}
        full = now - self._last_full >= self.full_rescan
        if full:  # every user rescanned; the paths that changed are remembered all the same
            dirty = {user: dirty.get(user) for user in users}
            self._last_full = now
            self.full_rescans += 1
        for gone in set(self._sizes) - users:
            self._drop(gone)
        self._unreadable &= users
        for user in users - set(self._sizes):  # new users
            dirty[user] = None
        scanned = updated = 0
        for user in sorted(set(dirty) & users):
            paths = dirty[user]
            if not full and paths is not None and self._update(user, paths):
                updated += 1
                continue
            try:
                self._sizes[user] = self._rescan(user, paths)
                scanned += 1
                self._unreadable.discard(user)
            except UserDirGone:
                self._drop(user)
            except UserDirUnreadable:
                self._drop(user)
                if user not in self._unreadable:
                    self._unreadable.add(user)
                    log.warning("userdirs.unreadable", user=user,
                                path=str(self.data_root / user),
                                hint="run the agent as a user that can read the data root")
        out: list[Triple] = []
        total_bytes = total_files = 0
        for user, (size, files) in self._sizes.items():
            growth = self._growth.get(user)
            if growth is None:
                growth = self._growth[user] = _Growth(now, size)
            else:
                growth.add(now, size, self.growth_window)
            out.append(("userdir_bytes", user, float(size)))
            out.append(("userdir_files", user, float(files)))
            rate = growth.rate(now, self.growth_window)
            if rate is not None:
                out.append(("userdir_growth_bytes_per_second", user, rate))
            total_bytes += size
            total_files += files
        out += [
            ("userdir_data_root_present", "", 1.0),
            ("userdir_users", "", float(len(self._sizes))),
            ("userdir_total_bytes", "", float(total_bytes)),
            ("userdir_total_files", "", float(total_files)),
            ("userdir_scanned_users", "", float(scanned)),
            ("userdir_updated_users", "", float(updated)),
            ("userdir_unreadable_users", "", float(len(self._unreadable))),
            ("userdir_full_rescan", "", 1.0 if full else 0.0),
            ("userdir_watcher_ok", "", 0.0 if (self.watch and self.watcher_error) else 1.0),
            ("userdir_scan_seconds", "", time.perf_counter() - started),
        ]
        return out

    def _rescan(self, user: str, changed: set[str] | None) -> tuple[int, int]:
        """Scan the user's directory and remember the size of every file in it, so that the
        user's next changes cost one ``lstat`` each; past ``HOT_FILES_MAX`` files in all, only
        of the files that changed and those remembered before, room permitting."""
        previous = self._hot.pop(user, {})
        self._hot_count -= len(previous)
        sizes: dict[str, int] = {}
        result = scan_user(str(self.data_root / user), sizes)
        room = HOT_FILES_MAX - self._hot_count
        if len(sizes) > room:
            wanted = previous.keys() | (changed or set())
            sizes = {path: size for path, size in sizes.items() if path in wanted}
        if sizes and len(sizes) <= room:
            self._hot[user] = sizes
            self._hot_count += len(sizes)
        return result

    def _update(self, user: str, paths: set[str]) -> bool:
        """Bring the user's totals up to date from the changed files alone: possible when the
        size of every one of them is remembered and each is still a regular file or gone.
        False (nothing changed) when the user's directory must be rescanned instead."""
        hot = self._hot.get(user)
        if hot is None or not paths <= hot.keys():  # a user with remembered sizes is known
            return False
        user_dir = os.path.join(self.data_root, user)
        now: dict[str, int | None] = {}
        for path in paths:
            try:
                st = _lstat_inside(user_dir, path)
            except OSError:  # a directory became something else, or is unreadable
                return False
            if st is not None and not stat.S_ISREG(st.st_mode):
                return False  # a directory (it may hold files) or a link where a file was
            now[path] = None if st is None else st.st_size
        size, files = self._sizes[user]
        for path, new in now.items():
            old = hot[path]
            if new is None:
                size -= old
                files -= 1
                del hot[path]
                self._hot_count -= 1
            else:
                size += new - old
                hot[path] = new
        self._sizes[user] = (size, files)
        return True

    def _drop(self, user: str) -> None:
        self._sizes.pop(user, None)
        self._growth.pop(user, None)
        self._hot_count -= len(self._hot.pop(user, {}))

    def close(self) -> None:
        """Stop the watcher without waiting out its step: the thread (a daemon, holding nothing
        but its own set of dirty users) notices the stop within ``fswatch.STEP_MS`` and ends.
        Joining it made every agent stop, and every reload, about half a second longer."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=0.05)
            self._thread = None
