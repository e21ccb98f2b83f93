"""What other local accounts may see of the agent's files and of the users' data.

The state directory holds every user's operation records, quarantined spool lines, the audit
log and the configuration snapshot: it is the agent's alone (0700, files 0600), and an existing
install is tightened at start. A user's LightRAG directory that other accounts can read or enter
is reported (an event and a log line), not changed: the data root belongs to the LightRAG
service account, and docs/security.md says what its permissions should be.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

from lightkeeper.ids import USER_ID_RE

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
# sub-directories of the state dir whose files are tightened too (the others either hold their
# own modes, such as the backup repository, or are shared on purpose, such as the tuning file)
PRIVATE_SUBDIRS = ("logs", "keys")


def _tighten(path: Path, changed: list[str]) -> None:
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode) or st.st_uid != os.geteuid():
        return  # never follow a link, never touch what is not ours
    if stat.S_IMODE(st.st_mode) & 0o077:
        os.chmod(path, stat.S_IMODE(st.st_mode) & ~0o077)  # owner bits kept, others' gone
        changed.append(f"{path} {stat.S_IMODE(st.st_mode):o}->{stat.S_IMODE(path.stat().st_mode):o}")


def secure_state_dir(state: Path, extra_files: Iterable[Path] = ()) -> list[str]:
    """Make the state dir 0700 and its files (and those of logs/ and keys/) 0600; also each of
    ``extra_files`` (the store and its WAL, the log file, wherever configured). Returns what
    was tightened, for the audit log."""
    changed: list[str] = []
    _tighten(state, changed)
    dirs = [state] + [state / d for d in PRIVATE_SUBDIRS]
    for d in dirs:
        if d != state:
            _tighten(d, changed)
        try:
            entries = list(os.scandir(d))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for e in entries:
            if e.is_file(follow_symlinks=False):
                _tighten(Path(e.path), changed)
    for f in extra_files:
        _tighten(Path(f), changed)
    return changed


def open_private(path: Path, flags: int = os.O_WRONLY | os.O_CREAT | os.O_TRUNC) -> int:
    """Open (creating 0600) a file of the agent's own, never through a symlink."""
    fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, PRIVATE_FILE)
    try:
        os.fchmod(fd, PRIVATE_FILE)
    except OSError:
        os.close(fd)
        raise
    return fd


def exposed_user_modes(data_root: Path) -> tuple[int, dict[str, int]]:
    """(the data root's mode, {user: mode}) of the users' directories other accounts can list
    or enter (any 'other' permission bit); (0, {}) without a readable data root. One ``lstat``
    per directory and nothing built for the others: a maintenance pass asks every minute,
    for every user."""
    try:
        root_mode = stat.S_IMODE(data_root.stat().st_mode)
        entries = list(os.scandir(data_root))
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return 0, {}
    found: dict[str, int] = {}
    for e in entries:
        try:
            st = e.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue
        if st.st_mode & 0o007 and stat.S_ISDIR(st.st_mode) and USER_ID_RE.fullmatch(e.name):
            found[e.name] = stat.S_IMODE(st.st_mode)
    return root_mode, found
