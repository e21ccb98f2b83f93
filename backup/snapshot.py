"""Taking a snapshot: databases first (any failure aborts the snapshot), then every user
directory under its write gate, then the manifest, written last.

A file whose size, mtime and inode match the parent snapshot is not read again. A user's copy is
accepted only when (1) the directory stayed quiet: no file modified outside the write gate for
``quiet_seconds`` before and during the copy (files written by gated writers count as quiet: the
gate's stamp says when the last one finished), (2) nothing changed while it was copied, and
(3) its LightRAG stores agree (``backup/storecheck.py``). Otherwise the user is retried, then
recorded as failed with its files carried over from the parent snapshot, so the new snapshot is
still whole and never holds a torn copy (its summary says ``partial``, with the reason).
"""

from __future__ import annotations

import dataclasses
import os
import re
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import blake3
from pyfastcdc import FastCDC

from lightkeeper.backup import dbsources, sources, storecheck
from lightkeeper.backup.chunkindex import ChunkIndex
from lightkeeper.backup.fsutil import (
    DirsBelow,
    NoSpace,
    is_enospc,
    open_regular,
    read_fd,
    require_space,
)
from lightkeeper.backup.gate import GateTimeout, read_gate, read_stamp, writer_active
from lightkeeper.backup.lock import LockLost, RepoLock
from lightkeeper.backup.packs import PackWriter
from lightkeeper.backup.priority import lowered
from lightkeeper.backup.repository import Repository, reindex_orphans, repo_size
from lightkeeper.contracts.backup import BackupSummary, SnapshotFigures, SnapshotSummary
from lightkeeper.ids import validate_user_id
from lightkeeper.logs import get_logger
from lightkeeper.progress import JobContext, LocalContext

log = get_logger("backup.snapshot")

WHOLE_FILE_LIMIT = 256 << 20
# chunks queued for one index check (_Builder._add_batch): enough files to spread numpy's
# fixed cost per search, few enough bytes to hold
BATCH_CHUNKS = 1024
BATCH_BYTES = 8 << 20
SOURCE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")  # with fullmatch
MANIFEST_VERSION = 1
# Files whose changes do not count against the quiet period: LightRAG's LLM cache is written on
# queries (outside any gate), is consistent with nothing else, and a stale copy of it costs at
# most a recomputation.
QUIET_EXEMPT = frozenset({"kv_store_llm_response_cache.json"})


class BackupError(Exception):
    """The snapshot could not be taken; nothing was committed."""


class _NotAccepted(Exception):
    """A user's copy was not accepted (not quiet, changed during the copy, or stores that
    disagree); ``check`` is the last check made, if any."""

    def __init__(self, message: str, check: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.check = check


@dataclass
class BackupOptions:
    data_root: Path
    users: list[str] | None = None              # None: every user directory
    tags: list[str] = field(default_factory=list)
    sqlite: dict[str, Path] = field(default_factory=dict)
    postgres: dict[str, dict[str, str]] = field(default_factory=dict)  # name -> dsn, pg_dump
    metrics: Callable[[Path], Path] | None = None
    scratch_dir: Path | None = None
    gate_timeout: float = 60.0
    retries: int = 3
    retry_delay: float = 0.5
    # no file modified outside the write gate for this long before and during a user's copy
    # (0: not required; the agent passes backup.quiet_seconds)
    quiet_seconds: float = 0.0
    check_stores: bool = True
    space_check: bool = True
    low_priority: bool = True
    job_id: str = ""


@dataclass
class _Counters:
    bytes_read: int = 0
    bytes_processed: int = 0
    raw_new: int = 0
    chunks_new: int = 0
    files_new: int = 0
    files_changed: int = 0
    files_unmodified: int = 0


class _Builder:
    """Turns file contents into chunks in the repository and manifest entries."""
    def __init__(self, repo: Repository, ctx: JobContext, bytes_total: int | None) -> None:
        self.repo = repo
        self.ctx = ctx
        ch = repo.config["chunker"]
        self.cdc = FastCDC(int(ch["avg"]), min_size=int(ch["min"]), max_size=int(ch["max"]))
        self.data: PackWriter = repo.pack_writer()
        self.tree: PackWriter = repo.pack_writer()
        self._idx: ChunkIndex | None = None  # loaded when a file must be stored
        self.chunk_id = repo.sealer.chunk_id
        self.c = _Counters()
        self.bytes_total = bytes_total
        self.files_done = 0
        self._last_progress = 0.0
        # chunks and chunk lists waiting for one index check of many files (_add_batch)
        self._batch: list[tuple[bytes, Any]] = []
        self._batch_bytes = 0
        self._lists: list[tuple[bytes, bytes]] = []

    @property
    def idx(self) -> ChunkIndex:
        if self._idx is None:
            self._idx = self.repo.index
        return self._idx

    def _add_list(self, ids: list[bytes]) -> str | None:
        if not ids:
            return None
        lst = b"".join(ids)
        lid = self.chunk_id(lst)
        self._lists.append((lid, lst))
        return lid.hex()

    def _store_chunks(self, chunks: list[tuple[bytes, Any]]) -> None:
        """Queue chunks for the repository; the queue is checked against the index and added
        when it holds BATCH_CHUNKS chunks or BATCH_BYTES bytes (``_add_batch``)."""
        self._batch.extend(chunks)
        self._batch_bytes += sum(len(data) for _, data in chunks)
        if len(self._batch) >= BATCH_CHUNKS or self._batch_bytes >= BATCH_BYTES:
            self._add_batch()

    def _add_batch(self) -> None:
        """Add the queued chunks and chunk lists the repository does not have yet: the index is
        asked once for the whole queue (a vectorised search over many files: asked per file,
        numpy's fixed cost per call was a fifth of a first backup of small files), chunks
        pending in this backup's packs one by one."""
        chunks, self._batch, self._batch_bytes = self._batch, [], 0
        lists, self._lists = self._lists, []
        pending_data, pending_tree = self.data.pending, self.tree.pending
        for queue, writer, counted in ((chunks, self.data, True), (lists, self.tree, False)):
            if not queue:
                continue
            indexed = self.idx.contains_many([cid for cid, _ in queue])
            add = writer.add
            for (cid, data), known in zip(queue, indexed, strict=True):
                if known or cid in pending_data or cid in pending_tree:
                    continue
                add(cid, data)
                if counted:
                    self.c.raw_new += len(data)
                    self.c.chunks_new += 1

    def store_bytes(self, data: bytes) -> tuple[str, str | None, int]:
        chunks = [(self.chunk_id(c.data), c.data) for c in self.cdc.cut_buf(data)]
        ids = [cid for cid, _ in chunks]
        self._store_chunks(chunks)
        return blake3.blake3(data, max_threads=1).hexdigest(), self._add_list(ids), len(ids)

    def store_stream(self, f: BinaryIO) -> tuple[str, str | None, int, int]:
        h = blake3.blake3()
        ids = []
        size = 0
        batch: list[tuple[bytes, Any]] = []
        for c in self.cdc.cut_stream(f):
            data = bytes(c.data)  # the stream reuses its buffer: keep the batch's bytes
            h.update(data)
            size += c.length
            cid = self.chunk_id(data)
            ids.append(cid)
            batch.append((cid, data))
            if len(batch) == 256:
                self._store_chunks(batch)
                batch = []
                self.ctx.check_cancelled()
        self._store_chunks(batch)
        return h.hexdigest(), self._add_list(ids), len(ids), size

    def store_fd(self, fd: int, rel: str, size: int, keep: bool = False
                 ) -> tuple[dict[str, Any], bytes | None]:
        """Read and store the open file ``fd`` (``size``: its size at the scan); returns its
        manifest entry (and its bytes if ``keep``). The caller closes ``fd``."""
        data = None
        if size <= WHOLE_FILE_LIMIT:
            data = read_fd(fd, size)
            fhash, lid, n = self.store_bytes(data)
            size = len(data)
        else:
            with os.fdopen(fd, "rb", closefd=False) as f:
                fhash, lid, n, size = self.store_stream(f)
        self.c.bytes_read += size
        entry = {"path": rel, "size": size, "hash": fhash, "list": lid, "chunks": n}
        return entry, (data if keep else None)

    def store_file(self, path: Path, rel: str, st: os.stat_result,
                   keep: bool = False) -> tuple[dict[str, Any], bytes | None]:
        """Read and store one file the agent wrote itself (a dump, the metrics copy)."""
        with open_regular(path) as f:
            return self.store_fd(f.fileno(), rel, st.st_size, keep)

    def progress(self, current: str, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last_progress > 0.1:
            self._last_progress = now
            self.ctx.progress(phase="backup", files_done=self.files_done,
                              bytes_done=self.c.bytes_processed, bytes_total=self.bytes_total,
                              current=current)

    def finish(self) -> None:
        self._add_batch()
        self.data.flush()
        self.tree.flush()
        self.repo.flush_index()

    def abort(self) -> None:
        self._batch, self._lists = [], []
        self.data.abort()
        self.tree.abort()

    @property
    def bytes_written(self) -> int:
        return self.data.bytes_written + self.tree.bytes_written


def _parents(repo: Repository, users: list[str]) -> tuple[dict[str, Any] | None,
                                                          dict[str, dict[str, Any]],
                                                          dict[str, dict[str, Any]]]:
    """(newest snapshot, path -> entry, user -> counts) from the newest snapshot holding each
    user, so a one-user snapshot does not make the next full backup re-read everyone."""
    newest = None
    files: dict[str, dict[str, Any]] = {}
    counts: dict[str, dict[str, Any]] = {}
    wanted = set(users)
    for info in reversed(repo.snapshots()):
        if not wanted and newest is not None:
            break
        try:
            m = repo.read_snapshot(info.id)
        except Exception as exc:  # noqa: BLE001 - an unreadable parent just means no cache
            log.warning("backup.parent_unreadable", snapshot=info.id[:12], error=str(exc))
            continue
        if newest is None:
            newest = m
        take = {u for u in m.get("users", {}) if u in wanted}
        if not take:
            continue
        wanted -= take
        for f in m.get("files", []):
            parts = f["path"].split("/", 2)
            if parts[0] == "users" and parts[1] in take:
                files[f["path"]] = f
        for u in take:
            counts[u] = {**m["users"][u], "_from": m["id"]}
    return newest, files, counts


def _changed(prev: dict[str, Any] | None, f: sources.FileStat) -> bool:
    return prev is None or (prev.get("size"), prev.get("mtime_ns"), prev.get("ino")) \
        != f.signature()


def _unquiet(files: list[sources.FileStat], stamp_ns: int, quiet: float, now: float
             ) -> tuple[str, float] | None:
    """The newest file modified outside the write gate within the last ``quiet`` seconds, as
    (path, age in seconds); None when the directory is quiet. A file last modified before the
    newest finished gated write (the gate's stamp) counts as written under the gate."""
    newest: sources.FileStat | None = None
    for f in files:
        if f.rel in QUIET_EXEMPT or f.mtime_ns <= stamp_ns:
            continue
        if newest is None or f.mtime_ns > newest.mtime_ns:
            newest = f
    if newest is None:
        return None
    age = now - newest.mtime_ns / 1e9
    return (newest.rel, max(age, 0.0)) if age < quiet else None


def _not_quiet_reason(found: tuple[str, float], quiet: float) -> str:
    return (f"the directory was not quiet ({found[0]} modified {found[1]:.1f} s before the "
            f"copy; backup.quiet_seconds = {quiet:g})")


def _wait_quiet(udir: Path, opts: BackupOptions, ctx: JobContext) -> None:
    """Wait (outside the gate) until no file was modified outside the gate for
    ``opts.quiet_seconds``; give up after twice that.

    While a writer holds the gate, the files modified since the last stamp may be its own,
    in flight: its release stamps them as gated. So the wait ends there and the check made
    under the gate (after that release) decides; a writer ignoring the gate is still caught
    there."""
    quiet = opts.quiet_seconds
    if quiet <= 0:
        return
    deadline = time.monotonic() + 2 * quiet
    while True:
        files, _ = sources.scan(udir)
        found = _unquiet(files, read_stamp(udir).last_write_ns, quiet, time.time())
        if found is None or writer_active(udir):
            return
        left = deadline - time.monotonic()
        if left <= 0:
            raise _NotAccepted(_not_quiet_reason(found, quiet))
        ctx.check_cancelled()
        time.sleep(max(0.01, min(quiet - found[1] + 0.01, left, 0.5)))


def _check_copy(udir: Path, files: list[sources.FileStat], captured: dict[str, bytes],
                reuse: dict[str, Any] | None) -> tuple[dict[str, Any] | None, str | None]:
    """The stores check of the copy just made: (check, None), or (None, what changed).

    ``captured`` holds the bytes stored for the files that were read; the others are unchanged
    since the parent snapshot. When none of the checked files was read and the parent passed the
    check, its result stands (same bytes). Otherwise unread files are read now and must still
    carry the signature they had during the copy."""
    by_rel = {f.rel: f for f in files}
    wanted = [n for n in storecheck.FILES if n in by_rel]
    if reuse is not None and reuse.get("ok") and not any(n in captured for n in wanted):
        return dict(reuse), None
    blobs = dict(captured)
    read = storecheck.read_regular(udir)
    for name in wanted:
        if name in blobs:
            continue
        try:
            data = read(name)
        except (OSError, storecheck.StoreUnreadable):
            data = None
        if data is None or sources.restat(udir, by_rel[name]) != \
                by_rel[name].recheck_signature():
            return None, name
        blobs[name] = data
    return storecheck.check_stores(blobs.get).as_dict(), None


def _backup_user(b: _Builder, opts: BackupOptions, user: str,
                 parent_files: dict[str, dict[str, Any]],
                 parent_users: dict[str, dict[str, Any]]) -> tuple[list[dict], dict[str, Any]]:
    """Copy one user (``_copy_user``), its directories opened once each (``DirsBelow``)."""
    with DirsBelow(Path(opts.data_root) / user) as dirs:
        return _copy_user(b, opts, user, parent_files, parent_users, dirs)


def _copy_user(b: _Builder, opts: BackupOptions, user: str,
               parent_files: dict[str, dict[str, Any]], parent_users: dict[str, dict[str, Any]],
               dirs: DirsBelow) -> tuple[list[dict], dict[str, Any]]:
    """Copy one user. The copy is accepted only when the directory stayed quiet (no file
    modified outside the gate for ``quiet_seconds`` before and during the copy) and its LightRAG
    stores agree (``backup/storecheck.py``); otherwise the user is retried, then
    ``_NotAccepted`` is raised with the last reason."""
    udir = Path(opts.data_root) / user
    prefix = f"users/{user}/"
    reason = ""
    last_check: dict[str, Any] | None = None
    prev_counts = parent_users.get(user, {})
    keep_names = {sources.DOCS_FILE, sources.GRAPH_FILE}
    if opts.check_stores:
        keep_names.update(storecheck.FILES)
    # The first try looks under the gate at once: a quiet directory (the usual case) is then
    # scanned once, not once to wait for quiet and again under the gate. Only when that look
    # finds recent writes does it wait outside the gate (not counted as an attempt).
    attempt, looked = 0, False
    while attempt <= opts.retries:
        if attempt:
            time.sleep(opts.retry_delay * attempt)
            b.ctx.check_cancelled()
        before = dataclasses.replace(b.c)
        files_done_before = b.files_done
        dirs.close()  # each attempt walks the user's directories afresh
        if attempt or looked:
            try:
                _wait_quiet(udir, opts, b.ctx)
            except _NotAccepted as exc:
                reason = str(exc)
                log.warning("backup.user_not_accepted", user=user, attempt=attempt + 1,
                            reason=reason)
                attempt += 1
                continue
        with read_gate(udir, opts.gate_timeout):
            started = time.time()
            files, skipped = sources.scan(udir)
            stamp_ns = read_stamp(udir).last_write_ns
            found = _unquiet(files, stamp_ns, opts.quiet_seconds, started) \
                if opts.quiet_seconds > 0 else None
            if found is not None:
                if not attempt and not looked:
                    looked = True  # wait for quiet outside the gate, then look again
                    continue
                reason = _not_quiet_reason(found, opts.quiet_seconds)
                log.warning("backup.user_not_accepted", user=user, attempt=attempt + 1,
                            reason=reason)
                attempt += 1
                continue
            # each file's entry in the parent snapshot, if it is unchanged since (one lookup
            # and one comparison per file: an unchanged data root is mostly this loop)
            kept = [prev if prev is not None and not _changed(prev, f) else None
                    for f in files for prev in (parent_files.get(prefix + f.rel),)]
            if opts.space_check:
                to_read = sum(f.size for f, prev in zip(files, kept, strict=True)
                              if prev is None)
                if to_read:
                    require_space(b.repo.path, int(to_read * 1.05) + (16 << 20),
                                  f"the backup of user {user}")
            entries = []
            captured: dict[str, bytes] = {}
            counts: dict[str, Any] = {"files": len(files), "bytes": sum(f.size for f in files),
                                      "documents": 0, "entities": 0, "relations": 0}
            last_changed: list[str] = []
            for f, prev in zip(files, kept, strict=True):
                b.ctx.check_cancelled()
                rel = prefix + f.rel
                # The parent's data is in the repository (prune keeps what any snapshot
                # references), so an unchanged file costs one manifest line.
                if prev is not None:
                    entries.append(dict(prev))
                    b.c.files_unmodified += 1
                    if f.rel == sources.DOCS_FILE:
                        counts["documents"] = prev_counts.get("documents", 0)
                    elif f.rel == sources.GRAPH_FILE:
                        counts["entities"] = prev_counts.get("entities", 0)
                        counts["relations"] = prev_counts.get("relations", 0)
                else:
                    prev = parent_files.get(rel)
                    meta = {"mtime_ns": f.mtime_ns, "ino": f.ino, "mode": f.mode}
                    keep = f.rel in keep_names
                    # A user's directory may be written by another account: a file swapped for
                    # a symlink (or a FIFO) after the scan must not make us read what it
                    # points to, nor a directory on the way swapped for a symlink.
                    try:
                        fd = dirs.open_fd(f.rel)
                    except FileNotFoundError:
                        last_changed = [f.rel]
                        break
                    try:
                        entry, data = b.store_fd(fd, rel, f.size, keep=keep)
                    finally:
                        os.close(fd)
                    entry.update(meta)
                    entries.append(entry)
                    if prev is None:
                        b.c.files_new += 1
                    else:
                        b.c.files_changed += 1
                    if data is not None:
                        captured[f.rel] = data
                        if f.rel == sources.DOCS_FILE:
                            counts["documents"] = sources.count_documents(data)
                        elif f.rel == sources.GRAPH_FILE:
                            counts["entities"], counts["relations"] = sources.count_graph(data)
                b.c.bytes_processed += f.size
                b.files_done += 1
                b.progress(rel)
            else:
                # Copy-and-recheck: a writer that ignores the gate shows up here. When no file
                # was read, every entry is the parent's (an accepted state) and this scan's
                # stat of each file matched it: there is no copy a writer could have torn.
                base = str(udir)
                if b.c.files_new != before.files_new or \
                        b.c.files_changed != before.files_changed:
                    last_changed = [f.rel for f in files
                                    if sources.restat(base, f) != f.recheck_signature()]
                    if set(sources.names(base)) != {f.rel for f in files}:
                        last_changed.append("(directory listing)")
                check = None
                if not last_changed and opts.check_stores:
                    check, moved = _check_copy(udir, files, captured,
                                               prev_counts.get("check", {}).get("stores"))
                    if moved:
                        last_changed = [moved]
                if not last_changed:
                    quiet_info = {"ok": True, "required_s": opts.quiet_seconds,
                                  "gated_writes": stamp_ns > 0}
                    counts["check"] = {"accepted": True, "quiet": quiet_info, "stores": check,
                                       "attempts": attempt + 1}
                    if check is None or check["ok"]:
                        if skipped:
                            counts["skipped"] = skipped
                        return entries, counts
                    last_check = {**counts.pop("check"), "accepted": False}
                    reason = ("the LightRAG stores disagree (" +
                              "; ".join(check["problems"][:2]) + ")")
            if last_changed:
                reason = (f"files changed while being copied ({', '.join(last_changed[:3])}); "
                          "a writer is not honouring the write gate")
        # count this user once: only the work really done (reads, new chunks) stays
        b.c.bytes_processed = before.bytes_processed
        b.c.files_new, b.c.files_changed = before.files_new, before.files_changed
        b.c.files_unmodified = before.files_unmodified
        b.files_done = files_done_before
        log.warning("backup.user_not_accepted", user=user, attempt=attempt + 1, reason=reason)
        attempt += 1
    raise _NotAccepted(f"user {user}: copy not accepted after {opts.retries + 1} attempts: "
                       f"{reason}", last_check)


def _check_name(kind: str, name: str) -> str:
    if not SOURCE_NAME.fullmatch(name):
        raise BackupError(f"invalid {kind} source name {name!r}: use letters, digits, '_', '-', "
                          "'.'")
    return name


def _run_backup(repo: Repository, opts: BackupOptions, ctx: JobContext | None = None
                ) -> BackupSummary:
    """Take one snapshot; returns the job summary. Raises BackupError, NoSpace, JobCancelled."""
    ctx = ctx or LocalContext()
    started = time.time()
    data_root = Path(opts.data_root)
    all_users, skipped_names = sources.list_users(data_root)
    if opts.users:
        users = []
        for u in opts.users:
            validate_user_id(u)
            if (data_root / u).is_symlink():
                # the data root's owner could point it anywhere the agent can read
                raise BackupError(f"user {u!r}: {data_root / u} is a symlink; refusing to "
                                  "follow it (a user's directory must be a real directory)")
            if not (data_root / u).is_dir():
                raise BackupError(f"user {u!r} has no directory under {data_root}")
            users.append(u)
    else:
        users = all_users
    for name in skipped_names:
        log.warning("backup.skipped_directory", name=name, reason="not a valid user id")
    if not data_root.is_dir():
        log.warning("backup.no_data_root", data_root=str(data_root))
    for n in opts.sqlite:
        _check_name("sqlite", n)
    for n in opts.postgres:
        _check_name("postgres", n)

    with RepoLock(repo.path, exclusive=True, purpose="backup", job_id=opts.job_id) as lock:
        ctx.progress(phase="scan")
        leftovers = repo.temp_files()
        for tmp in leftovers:
            tmp.unlink(missing_ok=True)
        if leftovers or lock.stale_removed:
            # an earlier run died: make the packs it finished usable (see reindex_orphans)
            reindex_orphans(repo)
        bytes_before = repo.bytes_added
        parent, parent_files, parent_users = _parents(repo, users)

        # Progress total: the parent's sizes for these users, a quick scan for new users.
        total = 0
        for u in users:
            known = parent_users.get(u, {}).get("bytes")
            if known is not None:
                total += int(known)
                continue
            try:
                total += sum(f.size for f in sources.scan(data_root / u)[0])
            except OSError:
                pass
        if opts.space_check:
            need = 0
            for p in opts.sqlite.values():
                try:
                    need += Path(p).stat().st_size
                except OSError:
                    pass
            require_space(repo.path, int(need * 1.05) + (16 << 20), "the backup")
        ctx.progress(phase="backup", files_done=0, bytes_done=0, bytes_total=total)

        b = _Builder(repo, ctx, total)
        databases: dict[str, Any] = {}
        files_out: list[dict[str, Any]] = []
        users_out: dict[str, Any] = {}
        failed: dict[str, str] = {}
        scratch_parent = opts.scratch_dir
        if scratch_parent is not None:
            Path(scratch_parent).mkdir(parents=True, exist_ok=True)
        try:
            with tempfile.TemporaryDirectory(prefix="lk-backup-", dir=scratch_parent) as scratch:
                sdir = Path(scratch)
                # 1. databases: any failure fails the whole snapshot
                for name, spec in sorted(opts.postgres.items()):
                    ctx.check_cancelled()
                    ctx.progress(phase="postgres", current=name)
                    dest = dbsources.dump_postgres(name, spec.get("dsn", ""), sdir / f"pg-{name}",
                                                   spec.get("pg_dump") or "pg_dump",
                                                   ctx.check_cancelled)
                    entry, _ = b.store_file(dest, f"postgres/{name}.dump", dest.stat())
                    files_out.append(entry)
                    databases[f"postgres/{name}"] = {"kind": "postgres", "size": entry["size"],
                                                     "format": "pg_dump -Fc"}
                    dest.unlink()
                for name, path in sorted(opts.sqlite.items()):
                    ctx.check_cancelled()
                    ctx.progress(phase="sqlite", current=name)
                    dest = dbsources.backup_sqlite(name, Path(path), sdir / f"sqlite-{name}")
                    entry, _ = b.store_file(dest, f"sqlite/{name}.sqlite", dest.stat())
                    files_out.append(entry)
                    databases[f"sqlite/{name}"] = {"kind": "sqlite", "size": entry["size"],
                                                   "source": str(path)}
                    dest.unlink()
                if opts.metrics is not None:
                    ctx.check_cancelled()
                    ctx.progress(phase="metrics", current="metrics store")
                    dest = Path(opts.metrics(sdir / "metrics.duckdb"))
                    entry, _ = b.store_file(dest, "metrics/metrics.duckdb", dest.stat())
                    files_out.append(entry)
                    databases["metrics"] = {"kind": "duckdb", "size": entry["size"]}
                    dest.unlink()
            # 2. users, each under its write gate
            for u in users:
                ctx.check_cancelled()
                try:
                    entries, counts = _backup_user(b, opts, u, parent_files, parent_users)
                except (_NotAccepted, GateTimeout, OSError) as exc:
                    if is_enospc(exc):
                        raise
                    msg = str(exc)
                    failed[u] = msg
                    log.error("backup.user_failed", user=u, error=msg)
                    carried = [f for p, f in parent_files.items()
                               if p.startswith(f"users/{u}/")]
                    files_out.extend(carried)
                    prev = parent_users.get(u, {})
                    users_out[u] = {**{k: v for k, v in prev.items()
                                       if k not in ("error", "_from", "carried_from")},
                                    "error": msg,
                                    "check": {"accepted": False, "reason": msg,
                                              **(getattr(exc, "check", None) or {})},
                                    "carried_from": prev.get("_from") if carried else None}
                    continue
                files_out.extend(entries)
                users_out[u] = counts
            ctx.progress(phase="commit", current="")
            b.finish()
            bytes_total = sum(int(f.get("size", 0)) for f in files_out)
            manifest = {
                "version": MANIFEST_VERSION, "time": time.time(), "host": socket.gethostname(),
                "tags": list(opts.tags), "parent": parent["id"] if parent else None,
                "repo_id": repo.id, "users": users_out, "databases": databases,
                "files": files_out,
            }
            duration = time.time() - started
            bytes_added_pre = b.bytes_written + (repo.bytes_added - bytes_before)
            figures: SnapshotFigures = {
                "files": len(files_out), "files_new": b.c.files_new,
                "files_changed": b.c.files_changed, "files_unmodified": b.c.files_unmodified,
                "bytes_total": bytes_total, "bytes_read": b.c.bytes_read,
                "bytes_new_raw": b.c.raw_new, "chunks_new": b.c.chunks_new,
                "users": len(users_out), "failed_users": sorted(failed),
                "duration_s": round(duration, 3),
            }
            summary: SnapshotSummary = {**figures, "bytes_added_data": bytes_added_pre}
            manifest["summary"] = summary
            ctx.check_cancelled()
            lock.check()  # without it a prune may have taken packs this snapshot needs
            sid = repo.write_snapshot(manifest)
        except BaseException as exc:
            b.abort()
            if not is_enospc(exc) and not isinstance(exc, KeyboardInterrupt):
                try:
                    repo.flush_index()   # keep finished packs usable for the next run
                except Exception:  # noqa: BLE001
                    pass
            if is_enospc(exc):
                # give the space back: this run's packs are referenced by nothing
                for info in repo.take_unindexed():
                    repo.pack_path(info.pack).unlink(missing_ok=True)
                for tmp in repo.temp_files():
                    tmp.unlink(missing_ok=True)
                if isinstance(exc, NoSpace):
                    raise  # the up-front estimate: already a clear message
                raise BackupError(
                    f"the backup repository's file system is full ({repo.path}); nothing was "
                    "committed and earlier snapshots are intact. Free space or run "
                    "'lightkeeper backup forget' + 'prune'") from None
            if type(exc).__name__ == "SourceError" or isinstance(exc, LockLost):
                raise BackupError(f"{exc}; nothing was committed") from None
            raise
    bytes_added = b.bytes_written + (repo.bytes_added - bytes_before)
    out: BackupSummary = {
        "snapshot_id": sid, "short_id": sid[:8], **figures,
        "duration_s": round(time.time() - started, 3),
        "bytes_added": bytes_added,
        "dedup_ratio": round(bytes_total / bytes_added, 2) if bytes_added else None,
        "repository_size": repo_size(repo.path),
        "tags": list(opts.tags),
    }
    if failed:
        out["state"] = "partial"
        out["errors"] = failed
    log.info("backup.finished", snapshot=sid[:12], files=out["files"],
             bytes_added=bytes_added, duration_s=out["duration_s"], failed_users=len(failed))
    return out


def run_backup(repo: Repository, opts: BackupOptions, ctx: JobContext | None = None
               ) -> BackupSummary:
    """Take one snapshot; returns the job summary. Raises BackupError, NoSpace, JobCancelled."""
    with lowered(opts.low_priority):
        return _run_backup(repo, opts, ctx)
