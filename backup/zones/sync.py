"""Incremental, resumable replication of a local repository to one zone.

Order of work: list what the zone holds (from the cache when the zone's sync token still
matches, else a full listing), upload missing data/ and index/ files on several channels
(temp name, size check, rename), then publish each snapshot manifest whose referenced files
are all present (temp name then rename, so it appears whole or not at all), then write a
new sync token. Network errors are retried with backoff; each retry re-lists, so files that
arrived whole are never sent again and interrupted temp files are discarded.
"""

from __future__ import annotations

import ipaddress
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import paramiko

from lightkeeper.backup.zones import remote_ops
from lightkeeper.backup.zones.connection import ZoneSession, is_network_error
from lightkeeper.backup.zones.damaged import DamagedFiles
from lightkeeper.backup.zones.errors import (
    RemoteIntegrityError,
    RemoteSpaceError,
    ZoneError,
    ZoneUnreachable,
)
from lightkeeper.backup.zones.local_repo import LocalRepo
from lightkeeper.backup.zones.model import Zone
from lightkeeper.backup.zones.pool import Counters, run_tasks
from lightkeeper.backup.zones.remote_path import RemoteRoot
from lightkeeper.backup.zones.session_pool import DEFAULT_KEEP_OPEN_S, POOL
from lightkeeper.backup.zones.state import (
    ForgottenSnapshots,
    ListingCache,
    ZoneStatus,
    expected_checks,
    zone_lock,
)
from lightkeeper.backup.zones.sync_result import finish, new_result
from lightkeeper.contracts.zones import ZoneSyncResult
from lightkeeper.logs import get_logger
from lightkeeper.progress import JobCancelled

if TYPE_CHECKING:
    from lightkeeper.backup.zones.s3_sync import S3Pass

log = get_logger("zones.sync")

# Below this round trip (a mkdir/stat of remote_path) one SFTP channel is used.
LOW_LATENCY_S = 0.002


@dataclass
class SyncOptions:
    channels: int = 2  # SFTP channels in flight (replication.connections)
    connections: int = 1  # SSH connections they are spread over (replication.ssh_connections)
    retries: int = 3
    backoff: float = 1.0
    backoff_max: float = 30.0
    timeout: float = 15.0
    check_space: bool = True
    adaptive: bool = True  # one channel when the link's round trip is below LOW_LATENCY_S
    full_listing: bool = False  # list the zone even when the cached listing looks valid
    # seconds the session stays open for the zone's next sync (0: closed at the end)
    keep_open: float = 0.0

    @classmethod
    def from_config(cls, cfg: Any) -> SyncOptions:
        return cls(channels=int(cfg["replication.connections"]),
                   connections=int(cfg.get("replication.ssh_connections", 1)),
                   retries=int(cfg.get("replication.retries", 3)),
                   timeout=float(cfg.get("replication.timeout_seconds", 15.0)),
                   keep_open=float(cfg.get("replication.keep_open_seconds",
                                           DEFAULT_KEEP_OPEN_S)))


def _order_key(rel: str) -> tuple[int, str]:
    top = rel.split("/", 1)[0]
    return ({"config": 0, "data": 1, "index": 2}.get(top, 3), rel)


def _ensure_root(sftp: paramiko.SFTPClient, zone: Zone, root: RemoteRoot) -> None:
    try:
        remote_ops.ensure_dir(sftp, root.root)
    except FileNotFoundError:
        raise ZoneError(zone.name, f"remote_path {root.root} cannot be created: its parent "
                        "directory does not exist on the zone") from None
    except NotADirectoryError:
        raise ZoneError(zone.name, f"remote_path {root.root} exists and is not a directory") \
            from None
    except PermissionError:
        raise ZoneError(zone.name, f"remote_path {root.root}: permission denied") from None


class _Pass:
    def __init__(self, zone: Zone, local: LocalRepo, zone_dir: Path, ctx: Any,
                 opts: SyncOptions, throttle: remote_ops.Throttle) -> None:
        self.zone = zone
        self.local = local
        self.zone_dir = zone_dir
        self.ctx = ctx
        self.opts = opts
        self.throttle = throttle
        self.root = RemoteRoot(zone.name, zone.remote_path)
        self.cache = ListingCache(zone_dir)
        self.counters = Counters()
        self.wall_start = time.time()
        self.bytes_total = 0
        self.files_total = 0
        self.phase = "list"
        self.sent = 0
        self.rtt = 0.0  # seconds, measured on the first request of the pass
        self._dirs: set[str] = set()
        self._dirs_lock = threading.Lock()

    # -- progress ------------------------------------------------------------------------
    def report(self) -> None:
        if self.ctx is None:
            return
        c = self.counters
        with c.lock:
            done, nbytes, cur = c.files_done, c.bytes_done, c.current
        # ``started`` per zone pass: rate and ETA describe this zone's transfer
        self.ctx.progress(phase=self.phase, files_done=done, files_total=self.files_total,
                          bytes_done=nbytes, bytes_total=self.bytes_total, current=cur,
                          zone=self.zone.name, started=self.wall_start)

    # -- remote directories --------------------------------------------------------------
    def _ensure_parent(self, sftp: paramiko.SFTPClient, rel: str) -> None:
        parent = rel.rpartition("/")[0]
        if not parent:
            return
        chain = parent.split("/")
        for i in range(1, len(chain) + 1):
            d = "/".join(chain[:i])
            with self._dirs_lock:
                if d in self._dirs:
                    continue
            remote_ops.ensure_dir(sftp, self.root.join(d))
            with self._dirs_lock:
                self._dirs.add(d)

    def _make_parents(self, sftp: paramiko.SFTPClient, rels: list[str]) -> None:
        """The directories ``rels`` need that the zone lacks, in one round trip instead of one
        or two per file (a new zone gets a directory per pack prefix)."""
        wanted: dict[str, None] = {}  # parents before children, each once
        for parent in dict.fromkeys(rel.rpartition("/")[0] for rel in rels if "/" in rel):
            chain = parent.split("/")
            for i in range(1, len(chain) + 1):
                d = "/".join(chain[:i])
                if d not in self._dirs:
                    wanted.setdefault(d)
        made = set(remote_ops.make_dirs(sftp, [self.root.join(d) for d in wanted]))
        with self._dirs_lock:
            self._dirs.update(d for d in wanted if self.root.join(d) in made)

    # -- one file ------------------------------------------------------------------------
    def _put(self, sftp: paramiko.SFTPClient, rel: str, stop: threading.Event) -> None:
        size = self.sizes[rel]
        try:
            src = open(self.local.path / rel, "rb")  # noqa: SIM115
        except FileNotFoundError:
            log.warning("zones.local_file_vanished", zone=self.zone.name, file=rel)
            self.vanished.append(rel)
            return
        with src:
            self._ensure_parent(sftp, rel)
            try:
                sent = remote_ops.upload_stream(sftp, self.root, rel, src, size, self.throttle,
                                         self._add_bytes, stop.is_set)
            except InterruptedError:
                return
            except OSError as exc:
                if is_network_error(exc) or not remote_ops.connected(sftp):
                    raise
                raise self._write_error(sftp, rel, exc) from None
        if sent != size:
            raise ZoneError(self.zone.name, f"{rel}: sent {sent} bytes, expected {size}")
        self.uploaded[rel] = size
        self.counters.file_done(rel)

    def _put_task(self, sftp: paramiko.SFTPClient, task: str | list[str],
                  stop: threading.Event) -> None:
        if isinstance(task, str):
            self._put(sftp, task, stop)
        else:
            self._put_batch(sftp, task, stop)

    def _put_batch(self, sftp: paramiko.SFTPClient, rels: list[str],
                   stop: threading.Event) -> None:
        if stop.is_set():
            return
        items = []
        for rel in rels:
            try:
                data = (self.local.path / rel).read_bytes()
            except FileNotFoundError:
                log.warning("zones.local_file_vanished", zone=self.zone.name, file=rel)
                self.vanished.append(rel)
                continue
            if len(data) != self.sizes[rel]:
                raise ZoneError(self.zone.name, f"local file {rel} changed size while being "
                                "replicated (repository files must be immutable)")
            self._ensure_parent(sftp, rel)
            items.append(remote_ops.BatchItem(rel, len(data), data))
        try:
            done = remote_ops.upload_batch(sftp, self.root, items, self.throttle,
                                           self._add_bytes)
        except OSError as exc:
            if is_network_error(exc) or not remote_ops.connected(sftp):
                raise
            raise self._write_error(sftp, items[0].rel, exc) from None
        for item in done:
            self.uploaded[item.rel] = item.size
            self.counters.file_done(item.rel)
        failed = [(i, i.error) for i in items if i.error is not None]
        if failed:
            first, error = failed[0]
            if not remote_ops.connected(sftp):
                raise ZoneUnreachable(self.zone.name, f"connection lost: {error}")
            raise self._write_error(sftp, first.rel, error)

    def _add_bytes(self, n: int) -> None:
        self.counters.add_bytes(n)
        with self.counters.lock:
            self.sent += n

    def _write_error(self, sftp: paramiko.SFTPClient, rel: str, exc: OSError) -> ZoneError:
        space = remote_ops.statvfs(sftp, self.root.root)
        remaining = self.bytes_total - self.counters.bytes_done
        if space is not None:
            avail, total = space
            if avail < max(remaining, 1 << 20) or "space" in str(exc).lower():
                return RemoteSpaceError(
                    self.zone.name,
                    f"remote disk full at {self.root.root}: writing {rel} failed; {avail} bytes "
                    f"free of {total}, about {remaining} bytes still to send. No snapshot was "
                    "published; free space (or prune the zone) and run the sync again")
        return ZoneError(self.zone.name, f"remote write of {rel} failed: {exc}")

    def _fast_link(self, sess: ZoneSession, sftp: paramiko.SFTPClient) -> bool:
        """True when extra channels have no latency to hide: the zone is this host (a loopback
        peer) or a round trip takes under LOW_LATENCY_S. The first sample (the mkdir/stat of
        remote_path, one or two round trips) can be slow on a busy machine, so a near link
        gets up to two single round trips more before it is judged to have latency (a
        second channel costs the server a new sftp-server, and then competes)."""
        if _loopback(sess):
            return True
        for _ in range(2):
            if self.rtt < LOW_LATENCY_S or self.rtt > 10 * LOW_LATENCY_S:
                break
            t0 = time.monotonic()
            sftp.stat(self.root.root)
            self.rtt = min(self.rtt, time.monotonic() - t0)
        return self.rtt < LOW_LATENCY_S

    # -- the pass ------------------------------------------------------------------------
    def run(self) -> ZoneSyncResult:
        started = time.monotonic()
        local_snaps = self.local.snapshot_files()  # before the files: written last locally
        snap_times = self.local.snapshot_times()
        files = self.local.files()
        if "config" not in files:
            raise ZoneError(self.zone.name, f"local repository {self.local.path} has no config "
                            "file; nothing to replicate")
        self.sizes = dict(files)
        self.uploaded: dict[str, int] = {}
        self.vanished: list[str] = []
        self.report()
        self.local.prefetch_references(expected_checks(self.cache, self.zone_dir, local_snaps,
                                                       self.opts.full_listing))
        # The zone's session from the previous sync, if it is still open (session_pool.py)
        sess = POOL.take(self.zone) if self.opts.keep_open > 0 else None
        self.reused = sess is not None
        if sess is None:
            sess = ZoneSession(self.zone, self.opts.channels, self.opts.connections,
                               self.opts.timeout, lazy=True)
        else:
            sess.channels = max(1, self.opts.channels)
            sess.connections = min(max(1, self.opts.connections), sess.channels)
        healthy = False
        try:
            out = self._run(sess, started, local_snaps, snap_times, files)
            out["session"] = "kept" if self.reused else "new"
            healthy = True
            return out
        except OSError as exc:
            if not all(t.is_active() for t in sess.transports):
                raise ZoneUnreachable(self.zone.name, f"connection lost: {exc}") from None
            raise
        except (paramiko.SSHException, EOFError) as exc:
            raise ZoneUnreachable(self.zone.name, f"connection lost: {exc}") from None
        finally:
            if healthy:
                POOL.give(self.zone, sess, self.opts.keep_open)
            else:
                sess.close()

    def _run(self, sess: ZoneSession, started: float, local_snaps: dict[str, tuple[int, float]],
             snap_times: dict[str, float], files: dict[str, int]) -> ZoneSyncResult:
        sftp = sess.sftp
        root = self.root
        t0 = time.monotonic()
        _ensure_root(sftp, self.zone, root)
        self.rtt = time.monotonic() - t0
        if self.opts.adaptive and self._fast_link(sess, sftp):
            # Extra channels hide latency; on a fast link they only add contention for the
            # one transport thread that encrypts everything (measured: bench/replication_bench)
            sess.channels = 1
        raw_token = remote_ops.read_small(sftp, root.join(remote_ops.SYNC_TOKEN), 4096)
        token = raw_token.decode(errors="replace").strip() if raw_token else None
        cached = self.cache.load()
        damaged_files = DamagedFiles(self.zone_dir)
        damaged = damaged_files.load()  # found by a verify: sent again whatever their size
        temps: list[str] = []
        if (cached and not cached.get("dirty") and token and cached.get("token") == token
                and not self.opts.full_listing and not damaged):
            mode = "cached"
            remote_files: dict[str, int] = {k: int(v) for k, v in cached["files"].items()}
            remote_snaps, temps = remote_ops.list_snapshots(sftp, root)
            self._dirs = {"data", "index", "snapshots"} | {
                rel.rpartition("/")[0] for rel in remote_files if "/" in rel}
        else:
            mode = "full"
            sess.expand()
            listing = remote_ops.full_listing(sess.clients, root)
            remote_files, remote_snaps, temps = listing.files, listing.snapshots, listing.temps
            self._dirs = set(listing.dirs)
            if "config" in remote_files:
                theirs = remote_ops.read_small(sftp, root.join("config"))
                ours = (self.local.path / "config").read_bytes()
                if theirs != ours:
                    raise RemoteIntegrityError(
                        self.zone.name, f"{root.root} holds a different repository (its config "
                        "differs from the local one); refusing to mix them. Point remote_path "
                        "at an empty directory")
        for t in temps:
            remote_ops.remove_quiet(sftp, root.join(t))
        # A file a verify found damaged is sent again whatever its size; a manifest whose size
        # differs from ours is not ours (damaged, or another snapshot's bytes): sent again.
        for rel in damaged:
            if rel.startswith("snapshots/"):
                remote_snaps.pop(rel.split("/", 1)[1], None)
            else:
                remote_files.pop(rel, None)
        for sid, size in list(remote_snaps.items()):
            if sid in local_snaps and local_snaps[sid][0] != size:
                log.warning("zones.remote_size_mismatch", zone=self.zone.name,
                            file=f"snapshots/{sid}", remote=size, local=local_snaps[sid][0])
                del remote_snaps[sid]
        forgotten = ForgottenSnapshots(self.zone_dir).load()
        missing = sorted((sid for sid in local_snaps
                          if sid not in remote_snaps and sid not in forgotten),
                         key=lambda s: (snap_times.get(s, 0.0), s))
        # Only what the snapshots to publish need (not packs of a backup still running, nor
        # files of snapshots the zone's retention forgot); everything when the repository
        # cannot tell which files a snapshot references.
        # After a full listing, also repair the snapshots the zone already holds (a file lost
        # on the zone is sent again if the local repository has it).
        self.refs: dict[str, set[str] | BaseException] = {}
        needed: set[str] | None = {"config"} if self.local.repo is not None else None
        check = list(missing) if needed is not None else []
        if mode == "full":
            check += sorted(sid for sid in remote_snaps if sid in local_snaps)
        for sid in check:
            try:
                refs = self.local.referenced_files(sid)
            except Exception as exc:  # noqa: BLE001 - e.g. removed by a concurrent forget
                self.refs[sid] = exc
                continue
            if refs is None:
                needed = None
                break
            self.refs[sid] = refs
            assert needed is not None  # ``check`` is empty when nothing is needed
            needed |= refs
        candidates = files if needed is None else {r: files[r] for r in needed if r in files}
        todo = sorted((rel for rel, size in candidates.items() if remote_files.get(rel) != size),
                      key=_order_key)
        for rel in todo:
            if rel in remote_files:
                log.warning("zones.remote_size_mismatch", zone=self.zone.name, file=rel,
                            remote=remote_files[rel], local=files[rel])
        self.files_total = len(todo) + len(missing)
        self.bytes_total = sum(files[r] for r in todo) + sum(local_snaps[s][0] for s in missing)
        summary = new_result(self.zone.name, mode, sess.channels, self.rtt, len(temps))
        if not todo and not missing and mode == "cached" and not temps:
            return finish(summary, remote_files, remote_snaps, started)
        self.cache.save(token, remote_files, remote_snaps, dirty=True)
        if todo:
            sess.expand()
        if self.opts.check_space and self.bytes_total:
            space = remote_ops.statvfs(sftp, root.root)
            if space is not None and space[0] < self.bytes_total:
                raise RemoteSpaceError(
                    self.zone.name, f"remote disk full at {root.root}: {space[0]} bytes free, "
                    f"{self.bytes_total} bytes to send. Nothing was sent and no snapshot was "
                    "published; free space (or prune the zone) and run the sync again")
        # 1. data and index, on every channel (their new directories made first, at once)
        self.phase = "upload"
        data_todo = [r for r in todo if r != "config"]
        self._make_parents(sftp, data_todo)
        if "config" in todo:
            self._put(sftp, "config", threading.Event())
        run_tasks(sess.clients, _batches(data_todo, files), self._put_task, self.ctx,
                  self.report)
        present = {**remote_files, **self.uploaded}
        data_complete = all(r in present for r in files)
        # 2. manifests, last, each only when everything it references is present
        self.phase = "publish"
        for sid in missing:
            if self.ctx is not None:
                self.ctx.check_cancelled()
            got = self.refs.get(sid)
            if isinstance(got, BaseException):
                summary["snapshots_unpublished"].append({"id": sid, "missing_files": 0,
                                                         "error": str(got)})
                log.warning("zones.snapshot_unreadable", zone=self.zone.name, snapshot=sid,
                            error=str(got))
                continue
            if got is None:
                ok, lacking = data_complete, [r for r in files if r not in present]
            else:
                lacking = sorted(r for r in got | {"config"} if r not in present)
                ok = not lacking
            if not ok:
                summary["snapshots_unpublished"].append({"id": sid, "missing_files": len(lacking)})
                log.warning("zones.snapshot_not_published", zone=self.zone.name, snapshot=sid,
                            missing_files=len(lacking))
                continue
            rel = f"snapshots/{sid}"
            self.sizes[rel] = local_snaps[sid][0]
            self._put(sftp, rel, threading.Event())
            if rel in self.uploaded:
                remote_snaps[sid] = local_snaps[sid][0]
                summary["snapshots_published"].append(sid)
        self.report()
        # 3. a new token: the cache is valid for exactly this state of the zone
        new_token = uuid.uuid4().hex
        remote_ops.upload(sftp, root, remote_ops.SYNC_TOKEN, _BytesReader(new_token.encode()),
                          len(new_token))
        present_files = {r: s for r, s in present.items() if not r.startswith("snapshots/")}
        self.cache.save(new_token, present_files, remote_snaps, dirty=False)
        # repaired, or beyond repair from here (the local repository lost it: verify says so)
        damaged_files.discard(r for r in damaged
                              if r in self.uploaded or not (self.local.path / r).exists())
        summary["files_uploaded"] = len([r for r in self.uploaded if not r.startswith("snap")])
        summary["bytes_sent"] = self.sent
        return finish(summary, present_files, remote_snaps, started)


def _loopback(sess: ZoneSession) -> bool:
    try:
        return ipaddress.ip_address(sess.transports[0].getpeername()[0]).is_loopback
    except (OSError, ValueError, IndexError):
        return False


def _batches(rels: list[str], sizes: dict[str, int]) -> list[str | list[str]]:
    """Large files one by one; small ones grouped so a group costs two round trips."""
    tasks: list[str | list[str]] = []
    batch: list[str] = []
    nbytes = 0
    for rel in rels:
        size = sizes[rel]
        if size > remote_ops.SMALL_FILE:
            tasks.append(rel)
            continue
        if batch and (len(batch) >= remote_ops.BATCH_FILES
                      or nbytes + size > remote_ops.BATCH_BYTES):
            tasks.append(batch)
            batch, nbytes = [], 0
        batch.append(rel)
        nbytes += size
    if batch:
        tasks.append(batch)
    return tasks


class _BytesReader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def read(self, n: int = -1) -> bytes:
        end = len(self.data) if n < 0 else self.pos + n
        chunk = self.data[self.pos:end]
        self.pos += len(chunk)
        return chunk


def _pass_class(zone: Zone) -> type[_Pass] | type[S3Pass]:
    """The pass of the zone's kind: both report, retry and record status the same way."""
    if zone.kind == "s3":
        from lightkeeper.backup.zones.s3_sync import S3Pass  # noqa: PLC0415

        return S3Pass
    return _Pass


def sync_zone(zone: Zone, local: LocalRepo, zone_dir: Path, ctx: Any = None,
              opts: SyncOptions | None = None) -> ZoneSyncResult:
    """Replicate ``local`` to ``zone``; returns a summary, raises ZoneError on failure."""
    opts = opts or SyncOptions()
    status = ZoneStatus(zone_dir)
    throttle = remote_ops.Throttle(zone.bandwidth_limit_kbps)
    try:
        lock = zone_lock(zone_dir, "sync")
        lock.__enter__()
    except BlockingIOError:
        raise ZoneError(zone.name, "another sync, prune or rebuild of this zone is running") \
            from None
    attempt = 0
    sent_total = 0
    try:
        while True:
            p = _pass_class(zone)(zone, local, zone_dir, ctx, opts, throttle)
            try:
                result = p.run()
                sent_total += p.sent
                break
            except JobCancelled:
                sent_total += p.sent
                _record_failure(status, "cancelled", sent_total, network=False, count=False)
                raise
            except Exception as exc:
                sent_total += p.sent
                network = isinstance(exc, ZoneUnreachable) or (
                    not isinstance(exc, ZoneError) and is_network_error(exc))
                if network and getattr(p, "reused", False) and not p.sent:
                    # the kept session died while idle: a fresh one at once, not a retry
                    log.info("zones.kept_session_lost", zone=zone.name, error=str(exc))
                    continue
                if network and attempt < opts.retries:
                    delay = min(opts.backoff * (2 ** attempt), opts.backoff_max)
                    attempt += 1
                    log.warning("zones.sync_retry", zone=zone.name, attempt=attempt,
                                delay_s=delay, error=str(exc))
                    if ctx is not None:
                        ctx.log("zones.sync_retry", level="warning", zone=zone.name,
                                attempt=attempt, error=str(exc))
                    _sleep(delay, ctx)
                    continue
                if network and not isinstance(exc, ZoneError):
                    exc = ZoneUnreachable(zone.name, f"{type(exc).__name__}: {exc}")
                _record_failure(status, str(exc), sent_total, network=network)
                log.error("zones.sync_failed", zone=zone.name, error=str(exc),
                          attempts=attempt + 1, bytes_sent=sent_total)
                if exc is not None and not isinstance(exc, ZoneError):
                    raise ZoneError(zone.name, f"{type(exc).__name__}: {exc}") from exc
                raise exc from None
    finally:
        lock.__exit__(None, None, None)
    now = time.time()
    with status.update() as st:
        st["last_attempt"] = now
        st["last_success"] = now
        st["last_error"] = None
        status.record_reachability(st, True, now)
        st["bytes_sent_total"] = int(st.get("bytes_sent_total") or 0) + sent_total
        st["remote_snapshots"] = {sid: None for sid in result["remote_snapshots"]}
        st["remote_bytes"] = result["remote_bytes"]
        st["remote_files"] = result["remote_files"]
    result["bytes_sent"] = sent_total
    result["attempts"] = attempt + 1
    log.info("zones.sync_done", zone=zone.name, files=result["files_uploaded"],
             bytes_sent=sent_total, snapshots=len(result["snapshots_published"]),
             listing=result["listing"], elapsed_s=result["elapsed_s"])
    return result


def _record_failure(status: ZoneStatus, error: str, sent: int, network: bool,
                    count: bool = True) -> None:
    now = time.time()
    with status.update() as st:
        st["last_attempt"] = now
        st["last_error"] = error
        st["bytes_sent_total"] = int(st.get("bytes_sent_total") or 0) + sent
        if count:
            st["failures_total"] = int(st.get("failures_total") or 0) + 1
        if network:
            status.record_reachability(st, False, now)


def _sleep(seconds: float, ctx: Any) -> None:
    end = time.monotonic() + seconds
    while True:
        if ctx is not None:
            ctx.check_cancelled()
        left = end - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(left, 0.2))
