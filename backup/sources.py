"""User data directories: what to back up and what a directory holds (for the manifest)."""

from __future__ import annotations

import json
import os
import re
import stat
from operator import attrgetter
from pathlib import Path
from typing import NamedTuple

from lightkeeper.gate import GATE_FILES
from lightkeeper.ids import InvalidUserId, validate_user_id

EXCLUDE = ("*.tmp.*", *GATE_FILES)
DOCS_FILE = "kv_store_full_docs.json"
GRAPH_FILE = "graph_chunk_entity_relation.graphml"
_TOP_KEY = re.compile(rb'\n  "')


class FileStat(NamedTuple):
    """One regular file as a scan found it (a tuple: a scan makes one per file, and a data
    root holds tens of thousands)."""

    rel: str          # relative to the user directory, '/'-separated
    size: int
    mtime_ns: int
    ino: int
    mode: int
    ctime_ns: int = 0

    def signature(self) -> tuple[int, int, int]:
        """What the parent-snapshot cache compares (restic's size, mtime, inode)."""
        return (self.size, self.mtime_ns, self.ino)

    def recheck_signature(self) -> tuple[int, int, int, int]:
        """What copy-and-recheck compares: the cache signature plus the ctime."""
        return (self.size, self.mtime_ns, self.ino, self.ctime_ns)


_EXCLUDE_NAMES = frozenset(GATE_FILES)
_name = attrgetter("name")


def excluded(name: str) -> bool:
    """Whether a file name matches ``EXCLUDE`` (temp files ``*.tmp.*``, the gate's files):
    a substring and a set lookup, as it runs for every file of every scan."""
    return ".tmp." in name or name in _EXCLUDE_NAMES


def list_users(data_root: Path) -> tuple[list[str], list[str]]:
    """(valid user directories, names skipped because they are not valid user ids)."""
    users, skipped = [], []
    if not Path(data_root).is_dir():
        return [], []
    for entry in sorted(os.scandir(data_root), key=lambda e: e.name):
        if not entry.is_dir(follow_symlinks=False):
            continue
        try:
            users.append(validate_user_id(entry.name))
        except InvalidUserId:
            skipped.append(entry.name)
    return users, skipped


def scan(user_dir: Path) -> tuple[list[FileStat], list[str]]:
    """Regular files under ``user_dir`` (sorted) and the paths skipped (symlinks, specials)."""
    files: list[FileStat] = []
    skipped: list[str] = []
    base = str(user_dir)

    def walk(d: str, prefix: str) -> None:
        with os.scandir(d) as it:
            entries = sorted(it, key=_name)
        for e in entries:
            rel = prefix + e.name
            if excluded(e.name):
                continue
            st = e.stat(follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                walk(e.path, rel + "/")
            elif stat.S_ISREG(st.st_mode):
                files.append(FileStat(rel, st.st_size, st.st_mtime_ns, st.st_ino,
                                      stat.S_IMODE(st.st_mode), st.st_ctime_ns))
            else:
                skipped.append(rel)

    walk(base, "")
    return files, skipped


def names(base: str) -> list[str]:
    """Relative paths of the regular files under ``base`` (no stat: d_type only)."""
    out: list[str] = []

    def walk(d: str, prefix: str) -> None:
        with os.scandir(d) as it:
            for e in it:
                if excluded(e.name):
                    continue
                if e.is_dir(follow_symlinks=False):
                    walk(e.path, prefix + e.name + "/")
                elif e.is_file(follow_symlinks=False):
                    out.append(prefix + e.name)

    walk(base, "")
    return out


def restat(user_dir: str | Path, f: FileStat) -> tuple[int, int, int, int] | None:
    try:
        st = os.stat(os.path.join(user_dir, f.rel), follow_symlinks=False)
    except FileNotFoundError:
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)


def count_documents(data: bytes) -> int:
    """Top-level keys of a kv store written by LightRAG (indent=2), parsing only if needed."""
    stripped = data.strip()
    if stripped in (b"", b"{}"):
        return 0
    n = len(_TOP_KEY.findall(data))
    if n:
        return n
    try:
        doc = json.loads(data)
    except ValueError:
        return 0
    return len(doc) if isinstance(doc, dict) else 0


def count_graph(data: bytes) -> tuple[int, int]:
    return data.count(b"<node "), data.count(b"<edge ")
