"""What replication needs from a local repository directory (layout in docs/architecture.md,
"Backup repository layout"): the immutable files, the snapshots and their times, and which
files each snapshot references (through ``backup.repository`` when it can open the repo)."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from lightkeeper.backup.zones.refs_cache import ReferenceCache
from lightkeeper.logs import get_logger

log = get_logger("zones.local_repo")

TEMP_SUFFIX = ".lktmp"
REPLICATED_DIRS = ("data", "index")


def is_temp_name(name: str) -> bool:
    """Temp files of ours or of the backup writer (``*.tmp``, ``.tmp-*``, dot files)."""
    return name.startswith(".") or name.endswith(TEMP_SUFFIX) or ".tmp" in name


def scan_files(root: Path) -> dict[str, int]:
    """Relative path -> size of ``config`` and every file under data/ and index/."""
    out: dict[str, int] = {}
    try:
        out["config"] = (root / "config").stat().st_size
    except FileNotFoundError:
        pass

    def walk(rel: str) -> None:
        try:
            it = os.scandir(root / rel)
        except FileNotFoundError:
            return
        with it:
            for entry in it:
                if is_temp_name(entry.name):
                    continue
                sub = f"{rel}/{entry.name}"
                if entry.is_dir(follow_symlinks=False):
                    walk(sub)
                elif entry.is_file(follow_symlinks=False):
                    out[sub] = entry.stat(follow_symlinks=False).st_size

    for d in REPLICATED_DIRS:
        walk(d)
    return out


def scan_snapshot_files(root: Path) -> dict[str, tuple[int, float]]:
    """Snapshot id -> (manifest size, manifest mtime)."""
    out: dict[str, tuple[int, float]] = {}
    try:
        it = os.scandir(root / "snapshots")
    except FileNotFoundError:
        return out
    with it:
        for entry in it:
            if is_temp_name(entry.name) or not entry.is_file(follow_symlinks=False):
                continue
            st = entry.stat(follow_symlinks=False)
            out[entry.name] = (st.st_size, st.st_mtime)
    return out


RepoOpener = Callable[[Path], Any]

_TIMES_CACHE: dict[str, tuple[frozenset[str], dict[str, float]]] = {}


def default_opener(cfg: Any) -> RepoOpener | None:
    """A function opening ``backup.repository.Repository`` at a path with the configured key,
    or None when the backup package cannot do it."""
    from lightkeeper.backup.repository import Repository  # noqa: PLC0415
    key_file = Path(cfg["backup.key_file"])
    return lambda path: Repository.open(path, key_file)


class LocalRepo:
    """A repository directory seen as immutable files plus snapshots written last."""

    def __init__(self, path: Path, opener: RepoOpener | None = None,
                 refs_cache: Path | None = None) -> None:
        """``refs_cache``: a file of the agent's state where which files each snapshot
        references is kept between syncs (refs_cache.py); None works it out every time."""
        self.path = Path(path)
        self._opener = opener
        self._refs_cache_path = refs_cache
        self._refs_cache: ReferenceCache | None = None
        self._files: dict[str, int] | None = None  # the last scan of files()
        self._repo: Any = None
        self._meta: dict[str, dict[str, Any]] | None = None
        # referenced_files worked out ahead by prefetch_references (snapshot id -> result)
        self._refs: dict[str, set[str] | None | BaseException] = {}
        self._prefetch: threading.Thread | None = None

    def exists(self) -> bool:
        return (self.path / "config").is_file()

    @property
    def repo(self) -> Any:
        """The ``backup.repository`` object, or None when unavailable."""
        self._wait_prefetch()
        if self._repo is None and self._opener is not None and self.exists():
            try:
                self._repo = self._opener(self.path)
            except Exception as exc:  # noqa: BLE001 - fall back to the file layout
                log.warning("zones.repo_open_failed", path=str(self.path),
                            error=f"{type(exc).__name__}: {exc}")
                self._opener = None
        return self._repo

    def close(self) -> None:
        self._wait_prefetch()
        self._save_refs()
        if self._repo is not None and hasattr(self._repo, "close"):
            self._repo.close()
        self._repo = None

    def files(self) -> dict[str, int]:
        self._files = scan_files(self.path)
        return self._files

    def snapshot_files(self) -> dict[str, tuple[int, float]]:
        return scan_snapshot_files(self.path)

    def snapshot_times(self) -> dict[str, float]:
        """Snapshot id -> creation time (epoch seconds). Manifests are immutable, so the times
        are cached per set of snapshot ids (the console polls zone status often)."""
        files = self.snapshot_files()
        key = frozenset(files)
        hit = _TIMES_CACHE.get(str(self.path))
        if hit is not None and hit[0] == key:
            return dict(hit[1])
        times = self._read_times(files)
        if self._repo is not None:  # times from the manifests themselves, not file mtimes
            _TIMES_CACHE[str(self.path)] = (key, dict(times))
        return times

    def _read_times(self, files: dict[str, tuple[int, float]]) -> dict[str, float]:
        times = {sid: mtime for sid, (_, mtime) in files.items()}
        repo = self.repo
        if repo is not None and hasattr(repo, "snapshots"):
            try:
                for snap in repo.snapshots():
                    sid, ts = _snap_id(snap), _snap_time(snap)
                    if sid in times and ts is not None:
                        times[sid] = ts
            except Exception as exc:  # noqa: BLE001
                log.warning("zones.list_snapshots_failed", error=f"{type(exc).__name__}: {exc}")
        return times

    def referenced_files(self, snapshot_id: str) -> set[str] | None:
        self._wait_prefetch()
        if snapshot_id in self._refs:
            got = self._refs.pop(snapshot_id)
            if isinstance(got, BaseException):
                raise got
            return got
        return self._referenced(snapshot_id)

    def _referenced(self, snapshot_id: str) -> set[str] | None:
        cache = self._cache()
        if cache is not None:
            present = self._files if self._files is not None else scan_files(self.path)
            hit = cache.get(snapshot_id, present)
            if hit is not None:
                return hit
        repo = self.repo
        if repo is None or not hasattr(repo, "referenced_files"):
            return None
        # listed before the index is read: a prune in between removes one of these names,
        # which invalidates the answer (refs_cache.py)
        index_names = repo.list_index_files() if hasattr(repo, "list_index_files") else None
        out = {str(p) for p in repo.referenced_files(snapshot_id)}
        if cache is not None and index_names is not None:
            cache.put(snapshot_id, index_names, out)
        return out

    def _cache(self) -> ReferenceCache | None:
        if self._refs_cache is None and self._refs_cache_path is not None:
            try:
                config = (self.path / "config").read_bytes()
            except OSError:
                return None
            self._refs_cache = ReferenceCache(self._refs_cache_path,
                                              hashlib.blake2b(config, digest_size=16).hexdigest())
        return self._refs_cache

    def _save_refs(self) -> None:
        if self._refs_cache is None:
            return
        try:
            self._refs_cache.save(set(self.snapshot_files()))
        except OSError as exc:  # a cache: the next sync works the answers out again
            log.warning("zones.refs_cache_unwritable", path=str(self._refs_cache.path),
                        error=str(exc))

    def prefetch_references(self, snapshot_ids: Iterable[str]) -> None:
        """Open the repository and work out which files these snapshots reference on a
        thread of its own, while the caller connects to the zone and lists it (the two
        overlap: one waits on the network, the other reads the index). ``referenced_files``
        then answers from the results, or computes what was not asked for here."""
        wanted = list(snapshot_ids)
        if not wanted or self._opener is None or self._prefetch is not None:
            return

        def work() -> None:
            for sid in wanted:
                try:
                    self._refs[sid] = self._referenced(sid)
                except Exception as exc:  # noqa: BLE001 - raised again to the asker
                    self._refs[sid] = exc
            self._save_refs()

        self._prefetch = threading.Thread(target=work, name="lk-zone-refs", daemon=True)
        self._prefetch.start()

    def _wait_prefetch(self) -> None:
        t = self._prefetch
        if t is not None and t is not threading.current_thread():
            t.join()
            self._prefetch = None


def _snap_id(snap: Any) -> str:
    if isinstance(snap, dict):
        return str(snap.get("id"))
    return str(getattr(snap, "id", snap))


def _snap_time(snap: Any) -> float | None:
    value = snap.get("time") if isinstance(snap, dict) else getattr(snap, "time", None)
    if value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    if hasattr(value, "timestamp"):
        return float(value.timestamp())
    try:
        from datetime import datetime  # noqa: PLC0415

        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
