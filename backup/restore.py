"""Restore a snapshot (everything, some users, some databases) into a new directory, or in
place under the data root after a safety snapshot.

Every path from a manifest is validated (user ids, no absolute paths, no ``..``, no symlink
escapes via :func:`lightkeeper.ids.safe_join`). Each file is written to a temp name, its bytes
are hashed as they are written and compared with the recorded hash, then renamed into place;
the temp names match ``*.tmp.*`` so a backup never picks up a half-restored file.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import blake3
import orjson

from lightkeeper.backup.crypto import IntegrityError, Keys
from lightkeeper.backup.fsutil import (
    UnsafeDirectory,
    create_temp_in,
    current_umask,
    is_enospc,
    is_symlink_at,
    link_unnamed,
    link_unnamed_temp,
    open_dir_below,
    open_unnamed_in,
    remove_restore_leftovers,
    require_space,
)
from lightkeeper.backup.gate import exclusive_gate
from lightkeeper.backup.index import Loc
from lightkeeper.backup.lock import RepoLock
from lightkeeper.backup.priority import lowered
from lightkeeper.backup.repository import BlockFetcher, Repository
from lightkeeper.backup.snapshot import BackupOptions, run_backup
from lightkeeper.backup.sources import excluded, scan
from lightkeeper.contracts.backup import RestoreSummary
from lightkeeper.gate import GATE_FILES
from lightkeeper.ids import UnsafePath, safe_join, validate_user_id
from lightkeeper.logs import get_logger
from lightkeeper.progress import JobContext, LocalContext

log = get_logger("backup.restore")


class RestoreError(Exception):
    pass


@dataclass
class RestoreOptions:
    target: Path | None = None          # a new directory; None with in_place
    users: list[str] | None = None      # None: all users (unless dbs is given)
    dbs: list[str] | None = None        # e.g. ["postgres/main", "sqlite/app", "metrics"]
    in_place: bool = False
    data_root: Path | None = None       # needed for in_place
    overwrite: bool = False             # allow a non-empty target directory
    safety_backup: BackupOptions | None = None
    gate_timeout: float = 60.0
    low_priority: bool = True
    job_id: str = ""
    workers: int = 4
    processes: int | None = None        # 2: a helper process takes part (None: when the
    #                                     target is new and the restore large; never in place)
    extra: dict[str, Any] = field(default_factory=dict)


def _select(manifest: dict[str, Any], opts: RestoreOptions) -> list[tuple[dict, str, str]]:
    """(entry, base kind, path inside base) for each file to restore."""
    users = set(opts.users or [])
    for u in users:
        validate_user_id(u)
        if u not in manifest.get("users", {}):
            raise RestoreError(f"user {u!r} is not in snapshot {manifest['id'][:8]}")
    dbs = set(opts.dbs or [])
    known_dbs = set(manifest.get("databases", {}))
    for d in dbs:
        if d not in known_dbs:
            raise RestoreError(f"database {d!r} is not in snapshot {manifest['id'][:8]} "
                               f"(it has: {', '.join(sorted(known_dbs)) or 'none'})")
    everything = not users and not dbs
    out = []
    for e in manifest.get("files", []):
        path = str(e["path"])
        top, _, rest = path.partition("/")
        if top == "users":
            user, _, inner = rest.partition("/")
            try:
                validate_user_id(user)
            except ValueError as exc:
                raise RestoreError(f"manifest path {path!r} has {exc}") from None
            if everything or user in users:
                out.append((e, f"users/{user}", inner))
        else:
            key = "metrics" if top == "metrics" else f"{top}/{rest.rsplit('.', 1)[0]}"
            if (everything and not opts.in_place) or key in dbs:
                out.append((e, top, rest))
    return out


def _write_file(repo: Repository, entry: dict[str, Any], base: Path, parts: list[str],
                pool: ThreadPoolExecutor | None = None, dir_fd: int | None = None,
                resolved: tuple[list[bytes], list[Loc]] | None = None,
                fresh: bool = False, umask: int | None = None,
                blocks: BlockFetcher | None = None) -> str | None:
    """Restore one file to ``base/parts...``; returns an error text or None.

    Other accounts may write the directories involved (a user's directory belongs to the
    LightRAG service account), so nothing here follows a symlink: every directory below
    ``base`` is opened ``O_NOFOLLOW``, and the file is written where nobody can reach it
    before it is complete and hash-checked: an unnamed ``O_TMPFILE`` file (named at the end
    by ``linkat``, which, like ``O_CREAT|O_EXCL|O_NOFOLLOW``, never follows or replaces
    what sits at the name), or where the file system lacks O_TMPFILE a temp file created
    ``O_CREAT|O_EXCL|O_NOFOLLOW`` under an unpredictable name. Its mode and times are set
    on the descriptor. Where the destination exists, a temp name and a rename replace it
    atomically (a planted symlink is replaced, never written through).

    ``dir_fd``: the directory ``base/parts[:-1]`` already opened that way (by the caller, who
    closes it); ``resolved``: the file's chunks from ``Repository.resolve_files``;
    ``fresh``: the destination most likely does not exist yet (a new target directory), so
    the file is linked under its name directly, falling back to the rename when it does;
    ``umask``: the process's umask if known (the mode is then set at creation where the umask
    keeps it whole, without an fchmod); ``blocks``: the block fetcher of the file's batch.
    """
    if dir_fd is None:
        try:
            dfd = open_dir_below(base, parts[:-1])
        except UnsafeDirectory as exc:
            return str(exc)
    else:
        dfd = dir_fd
    name = parts[-1]
    mode = int(entry.get("mode", 0o600)) & 0o777
    tmp: str | None = None
    try:
        fd = open_unnamed_in(dfd, mode)
        unnamed = fd is not None
        if fd is None:
            fd, tmp = create_temp_in(dfd, name)
        h = blake3.blake3()
        size = 0
        try:
            for data in repo.iter_file_data(entry, pool, resolved=resolved, blocks=blocks):
                view = memoryview(data)
                while view:
                    n = os.write(fd, view)
                    view = view[n:]
                h.update(data)
                size += len(data)
            if size != int(entry["size"]) or h.hexdigest() != entry["hash"]:
                return "restored content does not match the recorded hash"
            if not unnamed or umask is None or mode & umask:
                os.fchmod(fd, mode)
            if "mtime_ns" in entry:
                os.utime(fd, ns=(int(entry["mtime_ns"]), int(entry["mtime_ns"])))
            if unnamed:
                if fresh:
                    try:
                        link_unnamed(fd, dfd, name)
                        return None
                    except FileExistsError:
                        pass
                tmp = link_unnamed_temp(fd, dfd, name)
        finally:
            os.close(fd)
        assert tmp is not None  # named above: a temp file, or the unnamed one linked to one
        if is_symlink_at(dfd, name):
            log.warning("restore.symlink_replaced", path="/".join(parts))
        os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        tmp = None
    except IntegrityError as exc:
        return str(exc)
    except (IsADirectoryError, NotADirectoryError) as exc:
        return f"cannot replace {'/'.join(parts)}: {exc.strerror}"
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp, dir_fd=dfd)
            except FileNotFoundError:
                pass
        if dir_fd is None:
            os.close(dfd)
    return None


BATCH_FILES = 64
BATCH_BYTES = 8 << 20


def _batches(items: list[tuple[dict, Path]], parts_of: dict[str, list[str]]) \
        -> list[list[tuple[dict, Path]]]:
    """The files grouped by directory, in batches of at most ``BATCH_FILES`` files or about
    ``BATCH_BYTES`` (so the workers share a large directory)."""
    by_dir: dict[tuple[str, ...], list[tuple[dict, Path]]] = {}
    for item in items:
        by_dir.setdefault(tuple(parts_of[item[0]["path"]][:-1]), []).append(item)
    out: list[list[tuple[dict, Path]]] = []
    for group in by_dir.values():
        batch: list[tuple[dict, Path]] = []
        size = 0
        for item in group:
            if batch and (len(batch) >= BATCH_FILES or size >= BATCH_BYTES):
                out.append(batch)
                batch, size = [], 0
            batch.append(item)
            size += int(item[0]["size"])
        out.append(batch)
    return out


def _run_batch(repo: Repository, entries: list[dict[str, Any]], parts: list[list[str]],
               base_dir: Path, fresh: bool, umask: int | None,
               decode_pool: ThreadPoolExecutor | None, failures: dict[str, str],
               before_file: Callable[[], None], after_file: Callable[[dict[str, Any]], None]
               ) -> None:
    """Restore the files of one directory (``parts``: each file's path below ``base_dir``):
    the directory is opened once (without following any symlink), their chunks are located
    in one index search and their blocks read once for the batch. Errors of single files go
    to ``failures``; ``before_file`` may raise to stop (a cancel)."""
    try:
        dfd = open_dir_below(base_dir, parts[0][:-1])
    except UnsafeDirectory as exc:
        for entry in entries:
            failures[entry["path"]] = str(exc)
        return
    blocks = None
    try:
        all_resolved = repo.resolve_files(entries)
        blocks = BlockFetcher(repo, (r[1] for r in all_resolved if not isinstance(r, str)),
                              decode_pool)
        for entry, file_parts, resolved in zip(entries, parts, all_resolved, strict=True):
            before_file()
            if isinstance(resolved, str):
                failures[entry["path"]] = resolved
            else:
                err = _write_file(repo, entry, base_dir, file_parts, decode_pool, dfd, resolved,
                                  fresh, umask, blocks)
                if err:
                    failures[entry["path"]] = err
            after_file(entry)
    finally:
        if blocks is not None:
            blocks.close()
        os.close(dfd)


# A restore of at least this much is split with a helper process (see _Helper).
HELPER_MIN_FILES = 1000
HELPER_MIN_BYTES = 64 << 20


class _Helper:
    """A second process that restores some of the batches: the per-file work is mostly
    Python (and the GIL lets one thread run it at a time), so a second interpreter uses the
    second core. It runs this module (``_helper_main``), gets the repository's keys over a
    pipe, loads the index itself and then restores the batches it is handed, one line each
    way (JSON): batch number in, that batch's failures out. It dies with the thread that
    started it (``PR_SET_PDEATHSIG``), and is killed on a cancel; a file it was writing
    has no name yet, so nothing half-written is left (the same as a killed restore)."""

    def __init__(self, repo: Repository) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lightkeeper.backup.restore", "--helper", str(os.getpid())],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.stdin, self.stdout = self.proc.stdin, self.proc.stdout
        keys = repo.keys
        self._send({"repo": str(repo.path), "config": repo.config,
                    "enc": keys.enc.hex() if keys.enc else None, "ident": keys.ident.hex()})

    def _send(self, msg: Any) -> None:
        self.stdin.write(orjson.dumps(msg) + b"\n")
        self.stdin.flush()

    def _recv(self) -> dict[str, Any] | None:
        line = self.stdout.readline()
        return orjson.loads(line) if line else None

    def run(self, batches: list[tuple[list[dict[str, Any]], list[list[str]]]],
            take: Callable[[], int | None], base_dir: Path, fresh: bool, umask: int | None,
            cancelled: Callable[[], bool], batch_done: Callable[[int, dict[str, str]], None]
            ) -> list[int]:
        """Feed the helper batch numbers from ``take`` (two at a time, so it never waits for
        the next) until none are left; returns the batches it did not finish (it died), for
        the caller to restore itself. Raises OSError for an error the helper stopped on."""
        outstanding: deque[int] = deque()
        try:
            try:
                plan = orjson.dumps({"base": str(base_dir), "fresh": fresh, "umask": umask,
                                     "batches": batches})
            except orjson.JSONEncodeError as exc:  # a path that is not valid UTF-8
                log.info("restore.helper_unused", reason=str(exc))
                return []
            self.stdin.write(plan + b"\n")
            self.stdin.flush()
            ready = self._recv()
            if not ready or not ready.get("ready"):  # it failed to start: no batch given
                log.warning("restore.helper_failed", error=(ready or {}).get("error"),
                            returncode=self.proc.poll())
                return []
            while True:
                while len(outstanding) < 2 and not cancelled():
                    k = take()
                    if k is None:
                        break
                    self._send(k)
                    outstanding.append(k)
                if not outstanding:
                    return []
                msg = self._recv()
                if msg is None:
                    log.warning("restore.helper_died", returncode=self.proc.poll())
                    return list(outstanding)
                if "error" in msg:
                    raise OSError(msg.get("errno") or 0, f"restore helper: {msg['error']}")
                batch_done(outstanding.popleft(), msg["failures"])
                if cancelled():
                    self.proc.kill()
                    return []
        except BrokenPipeError:
            log.warning("restore.helper_died", returncode=self.proc.poll())
            return list(outstanding)

    def close(self) -> None:
        try:
            self.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.stdout.close()


def _helper_main(parent: int) -> None:
    """The helper process (see _Helper)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:
        return
    # the replies get a descriptor of their own: whatever else writes to stdout goes to stderr
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    inp = sys.stdin.buffer

    def send(msg: Any) -> None:
        out.write(orjson.dumps(msg) + b"\n")
        out.flush()

    try:
        head = orjson.loads(inp.readline())
        keys = Keys(bytes.fromhex(head["enc"]) if head["enc"] else None,
                    bytes.fromhex(head["ident"]))
        repo = Repository(Path(head["repo"]), head["config"], keys)
        repo.load_index()
        line = inp.readline()
        if not line:
            return
        plan = orjson.loads(line)
        base_dir, fresh, umask = Path(plan["base"]), plan["fresh"], plan["umask"]
        batches = plan["batches"]
        send({"ready": True})
        with ThreadPoolExecutor(2, thread_name_prefix="restore-decode") as decode_pool:
            for line in inp:
                entries, parts = batches[int(line)]
                failures: dict[str, str] = {}
                _run_batch(repo, entries, parts, base_dir, fresh, umask, decode_pool, failures,
                           lambda: None, lambda entry: None)
                send({"failures": failures})
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises it
        send({"error": str(exc), "errno": getattr(exc, "errno", None)})


def _unlink_below(base: Path, parts: list[str]) -> None:
    """Delete ``base/parts...`` without following a symlink on the way."""
    try:
        dfd = open_dir_below(base, parts[:-1], create=False)
    except (UnsafeDirectory, FileNotFoundError) as exc:
        log.warning("restore.unlink_skipped", path="/".join(parts), error=str(exc))
        return
    try:
        os.unlink(parts[-1], dir_fd=dfd)
    except FileNotFoundError:
        pass
    finally:
        os.close(dfd)


def _restore(repo: Repository, snapshot_id: str, opts: RestoreOptions,
             ctx: JobContext | None = None) -> RestoreSummary:
    ctx = ctx or LocalContext()
    started = time.time()
    if opts.in_place:
        if opts.data_root is None:
            raise RestoreError("in-place restore needs the data root")
        if opts.dbs:
            raise RestoreError("databases cannot be restored in place; restore them to a "
                               "--target directory (PostgreSQL: use --pg-target-db)")
        target = Path(opts.data_root)
        fresh = False
    else:
        if opts.target is None:
            raise RestoreError("a --target directory is required (or --in-place)")
        target = Path(opts.target)
        non_empty = target.exists() and any(target.iterdir())
        if non_empty and not opts.overwrite:
            raise RestoreError(f"target {target} exists and is not empty; choose a new "
                               "directory (restore never overwrites unless asked)")
        # files are then named directly when complete (no temp name and rename each)
        fresh = not non_empty
    manifest = repo.read_snapshot(snapshot_id)
    sid = manifest["id"]
    selected = _select(manifest, opts)
    safety_id = None
    if opts.in_place:
        in_place_users = sorted({base.split("/", 1)[1] for _, base, _ in selected})
        safety = opts.safety_backup or BackupOptions(data_root=target)
        safety.users = [u for u in in_place_users if (target / u).is_dir()]
        safety.tags = [*safety.tags, "pre-restore", f"restore-of-{sid[:8]}"]
        if safety.users:
            ctx.progress(phase="safety snapshot")
            s = run_backup(repo, safety, ctx)
            safety_id = s["snapshot_id"]
            log.info("restore.safety_snapshot", snapshot=safety_id[:12], users=safety.users)
    total = sum(int(e["size"]) for e, _, _ in selected)
    target.mkdir(parents=True, exist_ok=True)
    require_space(target, total + (8 << 20), "the restore")
    helper = None
    processes = opts.processes if opts.processes is not None else (
        2 if (os.cpu_count() or 1) > 1 and fresh
        and (len(selected) >= HELPER_MIN_FILES or total >= HELPER_MIN_BYTES) else 1)
    if processes > 1 and not opts.in_place:
        try:  # started now: it starts up while this process loads the index and plans
            helper = _Helper(repo)
        except OSError as exc:
            log.warning("restore.helper_failed", error=str(exc))
    try:
        with RepoLock(repo.path, exclusive=False, purpose="restore", job_id=opts.job_id):
            repo.load_index()
            # validate every destination before writing anything
            plan: list[tuple[dict, Path]] = []
            parts_of: dict[str, list[str]] = {}
            checked_dirs: dict[str, Path] = {}  # each directory is checked once, not per file
            for entry, base, inner in selected:
                prefix = base.split("/", 1)[1] if base.startswith("users/") else base
                try:
                    parts = inner.split("/")
                    if not inner or any(part in ("", ".", "..") for part in parts):
                        raise UnsafePath("empty, '.', '..' or absolute path component")
                    # the directory is checked here; the file itself may be a symlink that the
                    # write replaces (it never follows one: see _write_file)
                    rel_dir = "/".join([prefix, *parts[:-1]])
                    parent = checked_dirs.get(rel_dir)
                    if parent is None:
                        parent = checked_dirs[rel_dir] = safe_join(target, rel_dir)
                except (UnsafePath, ValueError) as exc:
                    raise RestoreError(f"refusing manifest path {entry['path']!r}: {exc}") from None
                if excluded(parts[-1]):
                    raise RestoreError(f"refusing manifest path {entry['path']!r}: reserved name")
                plan.append((entry, parent))  # the file's directory (checked)
                parts_of[entry["path"]] = [prefix, *parts]
            if opts.in_place or opts.overwrite:
                # temp files of a restore that was killed: never part of any user's data
                # (only in the directories this restore writes, never through a symlink)
                for top in sorted({parts[0] for parts in parts_of.values()}):
                    if (target / top).is_symlink():
                        continue
                    for rel in remove_restore_leftovers(target / top):
                        log.info("restore.leftover_removed", path=f"{top}/{rel}")
            failures: dict[str, str] = {}
            base_dir = target.resolve()
            umask = current_umask()
            done = {"files": 0, "bytes": 0}
            by_user: dict[str, list[tuple[dict, Path]]] = {}
            for entry, parent in plan:
                key = entry["path"].split("/")[1] if entry["path"].startswith("users/") else ""
                by_user.setdefault(key, []).append((entry, parent))

            lock = threading.Lock()

            def after_file(entry: dict[str, Any]) -> None:
                done["files"] += 1
                done["bytes"] += int(entry["size"])
                ctx.progress(phase="restore", files_done=done["files"], files_total=len(plan),
                             bytes_done=done["bytes"], bytes_total=total, current=entry["path"])

            def run_all(batches: list[list[tuple[dict, Path]]], helper: _Helper | None) -> None:
                """Restore ``batches`` on the worker threads (and the helper process)."""
                plain = [([e for e, _ in b], [parts_of[e["path"]] for e, _ in b]) for b in batches]
                queue = deque(range(len(plain)))
                stop = threading.Event()

                def take() -> int | None:
                    with lock:
                        return queue.popleft() if queue and not stop.is_set() else None

                def local(k: int) -> None:
                    ctx.check_cancelled()
                    entries, parts = plain[k]
                    _run_batch(repo, entries, parts, base_dir, fresh, umask, decode_pool,
                               failures, ctx.check_cancelled, after_file)

                def worker() -> None:
                    try:
                        while (k := take()) is not None:
                            local(k)
                    except BaseException:
                        stop.set()
                        raise

                def batch_done(k: int, failed: dict[str, str]) -> None:
                    failures.update(failed)
                    entries = plain[k][0]
                    done["files"] += len(entries)
                    done["bytes"] += sum(int(e["size"]) for e in entries)
                    ctx.progress(phase="restore", files_done=done["files"],
                                 files_total=len(plan), bytes_done=done["bytes"],
                                 bytes_total=total, current=entries[-1]["path"])

                def feed() -> None:
                    assert helper is not None
                    try:
                        left = helper.run(plain, take, base_dir, fresh, umask,
                                          lambda: ctx.cancelled or stop.is_set(), batch_done)
                    except BaseException:
                        stop.set()
                        raise
                    for k in left:  # the helper died: its unfinished batches are done here
                        local(k)
                    worker()

                # with a helper, one writer thread here: more only contend for the GIL
                # (mixed bench set: 1.59 s with one, 1.80 s with four, median of 4 runs)
                threads = 1 if helper is not None else max(1, opts.workers)
                jobs = [pool.submit(worker) for _ in range(threads)]
                if helper is not None:
                    jobs.append(pool.submit(feed))
                for job in jobs:
                    job.result()

            try:
                with ThreadPoolExecutor(max(1, opts.workers) + 1,
                                        thread_name_prefix="restore") as pool, \
                        ThreadPoolExecutor(2, thread_name_prefix="restore-decode") as decode_pool:
                    if not opts.in_place:
                        run_all([b for _, items in sorted(by_user.items())
                                 for b in _batches(items, parts_of)], helper)
                    else:  # user by user, each under its write gate
                        for key, items in sorted(by_user.items()):
                            if not key:
                                run_all(_batches(items, parts_of), None)
                                continue
                            udir = target / key
                            udir.mkdir(parents=True, exist_ok=True)
                            with exclusive_gate(udir, opts.gate_timeout):
                                run_all(_batches(items, parts_of), None)
                                keep = {e["path"].split("/", 2)[2] for e, _ in items}
                                present, _ = scan(udir)
                                for f in present:
                                    if f.rel not in keep and f.rel not in GATE_FILES:
                                        _unlink_below(target, [key, *f.rel.split("/")])
            except OSError as exc:
                if is_enospc(exc):
                    raise RestoreError(f"the target file system is full ({target}); the restore "
                                       "is incomplete") from None
                raise
    finally:
        if helper is not None:
            if ctx.cancelled:
                helper.proc.kill()
            helper.close()
    out: RestoreSummary = {
        "snapshot_id": sid, "short_id": sid[:8], "target": str(target),
        "files": len(plan), "bytes": total, "duration_s": round(time.time() - started, 3),
        "users": sorted({k for k in by_user if k}),
        "databases": sorted({e["path"] for e, _ in plan if not e["path"].startswith("users/")}),
        "safety_snapshot": safety_id, "verified_files": len(plan) - len(failures),
    }
    if failures:
        out["state"] = "problems"
        out["failures"] = failures
    log.info("restore.finished", snapshot=sid[:12], files=len(plan), failures=len(failures),
             duration_s=out["duration_s"])
    return out


def restore(repo: Repository, snapshot_id: str, opts: RestoreOptions,
            ctx: JobContext | None = None) -> RestoreSummary:
    with lowered(opts.low_priority):
        return _restore(repo, snapshot_id, opts, ctx)


if __name__ == "__main__" and sys.argv[1:2] == ["--helper"]:
    _helper_main(int(sys.argv[2]))
