"""One sync pass of a local repository to an S3 zone (``sync.sync_zone`` runs it with the same
retries, status records and summary as an SFTP pass).

Order of work, as for SFTP: list what the zone holds (from the listing cache while the zone's
sync token matches, else a paginated listing of every prefix), upload the missing immutable
files (each one object; large ones as parallel multipart uploads, every request checked with
Content-MD5), then publish each snapshot manifest only once every object it references is
confirmed on the zone by a listing taken after the uploads, then write a new sync token.

S3 has no rename, so there are no temp names: an object appears whole when its PUT (or the
completion of its multipart upload) succeeds. What an interruption leaves is a multipart
upload in progress: the next pass resumes it when the file is still wanted (parts already
there with the right MD5 are kept) and aborts every other one, so none accumulate."""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from lightkeeper.backup.zones import s3_store
from lightkeeper.backup.zones.damaged import DamagedFiles
from lightkeeper.backup.zones.errors import RemoteIntegrityError, ZoneError, ZoneUnreachable
from lightkeeper.backup.zones.local_repo import LocalRepo
from lightkeeper.backup.zones.model import Zone
from lightkeeper.backup.zones.pool import Counters, run_tasks
from lightkeeper.backup.zones.remote_ops import SYNC_TOKEN, Throttle
from lightkeeper.backup.zones.s3_store import S3Listing, S3Store, Upload
from lightkeeper.backup.zones.state import ForgottenSnapshots, ListingCache, expected_checks
from lightkeeper.backup.zones.sync_result import finish, new_result
from lightkeeper.contracts.zones import ZoneSyncResult
from lightkeeper.logs import get_logger
from lightkeeper.progress import JobCancelled

log = get_logger("zones.s3_sync")


def network_guard_s3(zone: Zone, exc: BaseException) -> BaseException:
    """Network-level S3 failures become ZoneUnreachable (retried by sync_zone, reported as the
    zone being down); everything else keeps its meaning."""
    if isinstance(exc, ZoneError | JobCancelled):
        return exc
    if s3_store.is_network_error(exc):
        return ZoneUnreachable(zone.name, f"S3 endpoint {zone.where}: "
                               f"{s3_store.describe_error(exc)}")
    if s3_store.error_code(exc):
        return ZoneError(zone.name, f"S3 request failed: {s3_store.describe_error(exc)}")
    return exc


class S3Pass:
    def __init__(self, zone: Zone, local: LocalRepo, zone_dir: Path, ctx: Any, opts: Any,
                 throttle: Throttle) -> None:
        self.zone = zone
        self.local = local
        self.zone_dir = zone_dir
        self.ctx = ctx
        self.opts = opts
        self.throttle = throttle
        self.cache = ListingCache(zone_dir)
        self.counters = Counters()
        self.wall_start = time.time()
        self.bytes_total = 0
        self.files_total = 0
        self.phase = "list"
        self.sent = 0
        self.stop = threading.Event()

    def report(self) -> None:
        if self.ctx is None:
            return
        c = self.counters
        with c.lock:
            done, nbytes, cur = c.files_done, c.bytes_done, c.current
        self.ctx.progress(phase=self.phase, files_done=done, files_total=self.files_total,
                          bytes_done=nbytes, bytes_total=self.bytes_total, current=cur,
                          zone=self.zone.name, started=self.wall_start)

    def _add_bytes(self, n: int) -> None:
        self.counters.add_bytes(n)
        with self.counters.lock:
            self.sent += n

    def run(self) -> ZoneSyncResult:
        started = time.monotonic()
        local_snaps = self.local.snapshot_files()  # before the files: written last locally
        snap_times = self.local.snapshot_times()
        files = self.local.files()
        if "config" not in files:
            raise ZoneError(self.zone.name, f"local repository {self.local.path} has no config "
                            "file; nothing to replicate")
        self.report()
        self.local.prefetch_references(expected_checks(
            self.cache, self.zone_dir, local_snaps, bool(getattr(self.opts, "full_listing",
                                                                 False))))
        store = S3Store(self.zone, self.opts.timeout, self.opts.retries, self.throttle)
        try:
            return self._run(store, started, local_snaps, snap_times, files)
        except BaseException as exc:  # noqa: BLE001  re-raised after stopping the workers
            self.stop.set()
            raise network_guard_s3(self.zone, exc) from None
        finally:
            store.close()

    # -- the pass ------------------------------------------------------------------------
    def _run(self, store: S3Store, started: float, local_snaps: dict[str, tuple[int, float]],
             snap_times: dict[str, float], files: dict[str, int]) -> ZoneSyncResult:
        t0 = time.monotonic()
        store.check_bucket()
        rtt = time.monotonic() - t0
        raw = store.read_small(SYNC_TOKEN, 4096)
        token = raw.decode(errors="replace").strip() if raw else None
        cached = self.cache.load()
        damaged = DamagedFiles(self.zone_dir)
        repair = damaged.load()
        if cached and not cached.get("dirty") and token and cached.get("token") == token \
                and not repair and not getattr(self.opts, "full_listing", False):
            mode = "cached"
            remote_files: dict[str, int] = {k: int(v) for k, v in cached["files"].items()}
            remote_snaps = store.list_snapshots()
        else:
            mode = "full"
            listing = store.full_listing()
            remote_files, remote_snaps = listing.files, listing.snapshots
            if "config" in remote_files:
                theirs = store.read_small("config")
                if theirs != (self.local.path / "config").read_bytes():
                    raise RemoteIntegrityError(
                        self.zone.name, f"{self.zone.where} holds a different repository (its "
                        "config differs from the local one); refusing to mix them. Use "
                        "another bucket or prefix")
        # a manifest that is not ours (damaged, or another snapshot's bytes) is sent again
        for sid, size in list(remote_snaps.items()):
            if f"snapshots/{sid}" in repair or (sid in local_snaps
                                                and local_snaps[sid][0] != size):
                del remote_snaps[sid]
        in_progress = store.uploads()
        forgotten = ForgottenSnapshots(self.zone_dir).load()
        missing = sorted((sid for sid in local_snaps
                          if sid not in remote_snaps and sid not in forgotten),
                         key=lambda s: (snap_times.get(s, 0.0), s))
        refs_of: dict[str, set[str] | BaseException] = {}
        needed: set[str] | None = {"config"} if self.local.repo is not None else None
        check = list(missing) if needed is not None else []
        if mode == "full":
            check += sorted(sid for sid in remote_snaps if sid in local_snaps)
        for sid in check:
            try:
                refs = self.local.referenced_files(sid)
            except Exception as exc:  # noqa: BLE001 - e.g. removed by a concurrent forget
                refs_of[sid] = exc
                continue
            if refs is None:
                needed = None
                break
            refs_of[sid] = refs
            assert needed is not None  # ``check`` is empty when nothing is needed
            needed |= refs
        candidates = files if needed is None else {r: files[r] for r in needed if r in files}
        todo = sorted(rel for rel, size in candidates.items()
                      if remote_files.get(rel) != size or rel in repair)
        for rel in todo:
            if rel in remote_files:
                log.warning("zones.remote_size_mismatch" if rel not in repair
                            else "zones.repairing", zone=self.zone.name, file=rel,
                            remote=remote_files[rel], local=files[rel])
        # multipart uploads: resume the ones for files still to send, abort the rest
        wanted = {store.key(r): r for r in todo}
        resume: dict[str, Upload] = {}
        aborted = 0
        for up in sorted(in_progress, key=lambda u: str(u.initiated or "")):
            up_rel = wanted.get(up.key)
            if up_rel is not None and files.get(up_rel, 0) > store.s3.part_size:
                old = resume.pop(up_rel, None)
                if old is not None:
                    store.abort(old)
                    aborted += 1
                resume[up_rel] = up
            else:
                store.abort(up)
                aborted += 1
        if aborted:
            log.info("zones.s3_uploads_aborted", zone=self.zone.name, count=aborted)
        self.files_total = len(todo) + len(missing)
        self.bytes_total = sum(files[r] for r in todo) + sum(local_snaps[s][0] for s in missing)
        summary = new_result(self.zone.name, mode, store.s3.concurrency, rtt)
        summary["kind"] = "s3"
        summary["uploads_aborted"] = aborted
        summary["uploads_resumed"] = summary["parts_reused"] = summary["files_repaired"] = 0
        if not todo and not missing and mode == "cached":
            return finish(summary, remote_files, remote_snaps, started)
        self.cache.save(token, remote_files, remote_snaps, dirty=True)
        # 1. data and index (config first)
        self.phase = "upload"
        uploaded: dict[str, int] = {}
        if "config" in todo:
            self._put(store, "config", files["config"], None, summary, uploaded)
        self._upload_all(store, [r for r in todo if r != "config"], files, resume, summary,
                         uploaded)
        summary["files_repaired"] = len([r for r in uploaded if r in repair])
        # 2. manifests last, each only when a listing taken now shows every object it needs
        self.phase = "publish"
        if missing:
            fresh = S3Listing()
            store.list_prefix("config", fresh)
            store.list_prefix("data/", fresh)
            store.list_prefix("index/", fresh)
            present = dict(fresh.files)
        else:
            present = {**remote_files, **uploaded}
        for sid in missing:
            if self.ctx is not None:
                self.ctx.check_cancelled()
            got = refs_of.get(sid)
            if isinstance(got, BaseException):
                summary["snapshots_unpublished"].append({"id": sid, "missing_files": 0,
                                                         "error": str(got)})
                continue
            wanted_files = set(files) if got is None else got | {"config"}
            lacking = sorted(r for r in wanted_files
                             if r not in present or (r in files and present[r] != files[r]))
            if lacking:
                summary["snapshots_unpublished"].append({"id": sid, "missing_files": len(lacking)})
                log.warning("zones.snapshot_not_published", zone=self.zone.name, snapshot=sid,
                            missing_files=len(lacking), first=lacking[0])
                continue
            rel = f"snapshots/{sid}"
            try:
                data = (self.local.path / rel).read_bytes()
            except FileNotFoundError:  # forgotten locally meanwhile
                continue
            store.put_bytes(rel, data, self._add_bytes)
            self.counters.file_done(rel)
            remote_snaps[sid] = len(data)
            summary["snapshots_published"].append(sid)
        self.report()
        # 3. a new token: the cache is valid for exactly this state of the zone
        new_token = uuid.uuid4().hex
        store.put_bytes(SYNC_TOKEN, new_token.encode())
        present_files = {r: s for r, s in present.items() if not r.startswith("snapshots/")}
        self.cache.save(new_token, present_files, remote_snaps, dirty=False)
        damaged.discard(uploaded)
        summary["files_uploaded"] = len(uploaded)
        summary["bytes_sent"] = self.sent
        return finish(summary, present_files, remote_snaps, started)

    def _put(self, store: S3Store, rel: str, size: int, resume: Upload | None,
             summary: ZoneSyncResult, uploaded: dict[str, int]) -> None:
        if self.stop.is_set():
            return
        path = self.local.path / rel
        if not path.is_file():
            log.warning("zones.local_file_vanished", zone=self.zone.name, file=rel)
            return
        r = store.put_file(rel, path, size, self._add_bytes, self.stop.is_set, resume)
        with self.counters.lock:
            uploaded[rel] = size
            summary["uploads_resumed"] += int(r.resumed)
            summary["parts_reused"] += r.parts_reused
        self.counters.file_done(rel)

    def _upload_all(self, store: S3Store, rels: list[str], files: dict[str, int],
                    resume: dict[str, Upload], summary: ZoneSyncResult,
                    uploaded: dict[str, int]) -> None:
        """Small files many at a time; a large one at a time with its parts in parallel."""
        small = [r for r in rels if files[r] <= store.s3.part_size]
        large = [r for r in rels if files[r] > store.s3.part_size]

        def one(st: S3Store, rel: str, stop: threading.Event) -> None:
            if not stop.is_set():
                self._put(st, rel, files[rel], None, summary, uploaded)

        # a worker per request in flight pulling from one queue (a future per file would
        # make every progress wait walk thousands of futures)
        run_tasks([store] * store.s3.concurrency, small, one, self.ctx, self.report)
        for rel in large:
            if self._cancelled():
                break
            with ThreadPoolExecutor(1, thread_name_prefix="s3-large") as pool:
                self._wait({pool.submit(self._put, store, rel, files[rel], resume.get(rel),
                                       summary, uploaded)})
        if self._cancelled():
            self.stop.set()
            raise JobCancelled(getattr(self.ctx, "job_id", "job"))

    def _cancelled(self) -> bool:
        return self.ctx is not None and bool(getattr(self.ctx, "cancelled", False))

    def _wait(self, pending: set[Future[None]]) -> None:
        """Wait for transfers, reporting progress; the first error stops the others."""
        while pending:
            done, pending = wait(pending, timeout=0.25, return_when=FIRST_COMPLETED)
            self.report()
            if self._cancelled():
                self.stop.set()
            for f in done:
                exc = f.exception()
                if exc is not None and not isinstance(exc, InterruptedError):
                    self.stop.set()
                    for p in pending:
                        p.cancel()
                    wait(pending)
                    raise exc

