"""Verify, prune, restore, rebuild and probe for S3 zones. ``verify.verify_zone``,
``prune.prune_zone``, ``restore.restore_from_zone``, ``restore.rebuild_from_zone`` and
``status.probe`` hand S3 zones to these, so jobs, CLI and console are the same for both kinds.

They share the SFTP code's model: a full (paginated) listing, the zone's metadata mirror
(``mirror.Mirror``, fed from the bucket) to know what each remote snapshot references, every
downloaded object checked against its name (BLAKE3), manifests last."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import blake3

from lightkeeper.backup.zones.errors import RemoteIntegrityError, ZoneError
from lightkeeper.backup.zones.mirror import Mirror, content_ok, fetch
from lightkeeper.backup.zones.model import Zone
from lightkeeper.backup.zones.pool import Counters, run_tasks
from lightkeeper.backup.zones.remote_ops import SYNC_TOKEN
from lightkeeper.backup.zones.restore import (
    fetch_index_then_packs,
    publish_snapshots,
    rebuild_plan,
    rebuild_problems,
)
from lightkeeper.backup.zones.retention import policy_for, select_keep
from lightkeeper.backup.zones.s3_store import S3Store, error_code
from lightkeeper.backup.zones.s3_sync import network_guard_s3
from lightkeeper.backup.zones.state import ForgottenSnapshots, ListingCache, ZoneStatus, zone_lock
from lightkeeper.backup.zones.verify import (
    check_structure,
    pack_sizes,
    read_limit,
    record_problems,
)
from lightkeeper.contracts.zones import (
    ZoneProblem,
    ZonePruneSummary,
    ZoneRebuildSummary,
    ZoneRestoreSummary,
    ZoneVerifySummary,
)
from lightkeeper.ids import validate_user_id
from lightkeeper.logs import get_logger

log = get_logger("zones.s3")

REBUILD_MARKER = ".lightkeeper-rebuild"


@contextmanager
def open_store(zone: Zone, opts: Any, retries: int | None = None) -> Iterator[S3Store]:
    """A store whose network failures surface as ZoneUnreachable naming the zone; the SDK
    retries each request ``replication.retries`` times (throttling, 5xx, dropped connections)."""
    store = None
    if retries is None:
        retries = int(getattr(opts, "retries", 3))
    try:
        store = S3Store(zone, float(getattr(opts, "timeout", 15.0)), retries)
        store.check_bucket()
        yield store
    except BaseException as exc:  # noqa: BLE001  re-raised, network failures as ZoneUnreachable
        raise network_guard_s3(zone, exc) from None
    finally:
        if store is not None:
            store.close()


def _workers(store: S3Store) -> list[S3Store]:
    """One entry per worker thread for ``pool.run_tasks`` (the client is thread-safe)."""
    return [store] * store.s3.concurrency


def _locked(zone_dir: Path, what: str, zone: Zone) -> Any:
    try:
        lock = zone_lock(zone_dir, what)
        lock.__enter__()
    except BlockingIOError:
        raise ZoneError(zone.name, "another sync, prune or rebuild of this zone is running") \
            from None
    return lock


class _Sink:
    def write(self, data: bytes) -> int:
        return len(data)


# -- verify ---------------------------------------------------------------------------------
def verify_s3(zone: Zone, zone_dir: Path, key_file: Path, local_repo: Path | None, ctx: Any,
              full: bool, opts: Any) -> ZoneVerifySummary:
    started = time.monotonic()
    problems: list[ZoneProblem] = []
    counters = Counters()
    totals = {"files": 0, "bytes": 0}
    phase = ["list"]

    def report() -> None:
        if ctx is not None:
            ctx.progress(phase=phase[0], files_done=counters.files_done,
                         files_total=totals["files"], bytes_done=counters.bytes_done,
                         bytes_total=totals["bytes"], current=counters.current, zone=zone.name)

    hashed = 0
    with open_store(zone, opts) as store:
        root = store.root
        report()
        listing = store.full_listing()
        files, snaps = listing.files, listing.snapshots
        if "config" not in files:
            if not snaps and not files:
                raise ZoneError(zone.name, f"{zone.where} holds no repository yet (never "
                                "synced)")
            problems.append({"file": "config", "problem": "missing"})
        mirror = Mirror(zone_dir / "mirror", key_file, local_repo)
        mirror.refresh(store, root, files, snaps)  # type: ignore[arg-type]
        # the same checks as an SFTP zone's (verify.check_structure)
        refs_of = check_structure(mirror, store, root, files, snaps, local_repo, ctx,
                                  problems, phase)
        sizes = pack_sizes(mirror)
        if full:
            phase[0] = "hash"
            todo = sorted(set(files) | {f"snapshots/{s}" for s in snaps})
            all_sizes = {**files, **{f"snapshots/{s}": n for s, n in snaps.items()}}
            totals["files"] = len(todo)
            totals["bytes"] = sum(all_sizes[r] for r in todo)
            lock = threading.Lock()

            def check(st: S3Store, rel: str, stop: threading.Event) -> None:
                h = blake3.blake3()
                try:
                    st.download(rel, _Sink(), counters.add_bytes, h, stop.is_set,  # type: ignore[arg-type]
                                read_limit(rel, sizes))
                except InterruptedError:
                    return
                except RemoteIntegrityError as exc:  # larger than it can be: not read further
                    with lock:
                        problems.append({"file": rel, "problem": f"unreadable: {exc}"})
                    return
                except Exception as exc:
                    if error_code(exc) not in ("NoSuchKey", "404"):
                        raise
                    with lock:
                        problems.append({"file": rel, "problem": "unreadable: gone"})
                    return
                if not content_ok(rel, h.hexdigest()):
                    with lock:
                        problems.append({"file": rel, "problem": "hash mismatch (corrupted)"})
                counters.file_done(rel)

            run_tasks(_workers(store), todo, check, ctx, report)
            hashed = counters.files_done
        stale = store.uploads()
        versioning = store.versioning()
        locked = store.object_lock_enabled()
        mirror.close()
    affected = record_problems(zone_dir, problems, refs_of)
    summary: ZoneVerifySummary = {
        "zone": zone.name, "kind": "s3", "full": full, "snapshots": len(snaps),
        "files": len(files), "bytes": sum(files.values()), "files_hashed": hashed,
        "problems": problems, "snapshots_affected": affected,
        "multipart_uploads_in_progress": len(stale), "versioning": versioning,
        "object_lock": locked, "foreign_keys": len(listing.ignored),
        "elapsed_s": round(time.monotonic() - started, 3),
    }
    if problems:
        summary["state"] = "problems"
    log.info("zones.verify_done", zone=zone.name, full=full, problems=len(problems),
             snapshots=len(snaps))
    return summary


# -- prune ----------------------------------------------------------------------------------
def prune_s3(zone: Zone, zone_dir: Path, key_file: Path, local_repo: Path | None, ctx: Any,
             dry_run: bool, opts: Any) -> ZonePruneSummary:
    """Forget the snapshots the zone's keep-* rules drop, then delete the objects no remaining
    snapshot references. With S3 Object Lock, an object under retention or legal hold is never
    deleted: a manifest that cannot go keeps its snapshot (and so its files)."""
    started = time.monotonic()
    lock = _locked(zone_dir, "prune", zone)
    try:
        with open_store(zone, opts) as store:
            root = store.root
            if ctx is not None:
                ctx.progress(phase="list", zone=zone.name)
            listing = store.full_listing()
            mirror = Mirror(zone_dir / "mirror", key_file, local_repo)
            mirror.refresh(store, root, listing.files, listing.snapshots)  # type: ignore[arg-type]
            infos = mirror.snapshot_infos()
            readable = {i.id for i in infos}
            unreadable = sorted(set(listing.snapshots) - readable)
            if unreadable:
                raise ZoneError(zone.name, f"{len(unreadable)} snapshot manifest(s) on the zone "
                                f"cannot be read (first {unreadable[0][:12]}); nothing deleted. "
                                f"Run `lightkeeper zones verify {zone.name}`")
            if policy_for(zone.keep).empty():
                raise ZoneError(zone.name, "no retention rule is set (every keep_* is 0); "
                                "refusing to forget every snapshot of the zone")
            keep, kept_reasons = select_keep(mirror.open(), infos, zone.keep)
            forget = sorted(i.id for i in infos if i.id not in keep)
            locked = store.object_lock_enabled()
            retained: dict[str, str] = {}
            if locked:
                for sid in forget:
                    why = store.retained(f"snapshots/{sid}")
                    if why:
                        retained[f"snapshots/{sid}"] = why
                forget = [s for s in forget if f"snapshots/{s}" not in retained]
                keep = keep | {s for s in (r.split("/", 1)[1] for r in retained)}
            required = {"config"}
            for sid in sorted(keep):
                if ctx is not None:
                    ctx.check_cancelled()
                try:
                    required |= mirror.referenced_files(store, root, sid)  # type: ignore[arg-type]
                except Exception as exc:  # noqa: BLE001  any failure reading a manifest stops the prune: nothing deleted
                    raise ZoneError(zone.name, f"cannot tell which files snapshot {sid[:12]} "
                                    f"needs ({exc}); nothing deleted") from None
            unused = sorted(r for r in listing.files if r not in required)
            if locked:
                for rel in unused:
                    why = store.retained(rel)
                    if why:
                        retained[rel] = why
                unused = [r for r in unused if r not in retained]
            freed = sum(listing.files[r] for r in unused)
            summary: ZonePruneSummary = {
                "zone": zone.name, "kind": "s3", "dry_run": dry_run, "kept": sorted(keep),
                "kept_reasons": {k["id"]: k["reasons"] for k in kept_reasons},
                "forgotten": forget, "files_deleted": len(unused), "bytes_freed": freed,
                "rules": zone.keep, "elapsed_s": 0.0, "object_lock": locked,
                "retained": [{"file": r, "why": w} for r, w in sorted(retained.items())],
            }
            if retained:
                log.warning("zones.s3_retained", zone=zone.name, count=len(retained),
                            first=next(iter(sorted(retained))))
            if dry_run or (not forget and not unused):
                mirror.close()
                summary["elapsed_s"] = round(time.monotonic() - started, 3)
                return summary
            cache = ListingCache(zone_dir)
            cache.mark_dirty()
            if ctx is not None:
                ctx.progress(phase="forget", files_done=0, files_total=len(forget),
                             zone=zone.name)
            # manifests first: a snapshot disappears whole before any of its files
            refused = store.delete([f"snapshots/{s}" for s in forget])
            gone = [s for s in forget if f"snapshots/{s}" not in refused]
            ForgottenSnapshots(zone_dir).add(gone)
            for sid in gone:
                log.info("zones.snapshot_forgotten", zone=zone.name, snapshot=sid)
            if refused:
                raise ZoneError(zone.name, f"the zone refused to delete {len(refused)} "
                                f"manifest(s) (first {refused[0]}); their files were kept")
            if ctx is not None:
                ctx.check_cancelled()
                ctx.progress(phase="delete", files_done=0, files_total=len(unused),
                             zone=zone.name)
            refused = store.delete(unused)
            files = {r: s for r, s in listing.files.items() if r not in unused or r in refused}
            snaps = {s: n for s, n in listing.snapshots.items() if s not in gone}
            summary["files_deleted"] = len(unused) - len(refused)
            summary["delete_refused"] = refused
            token = uuid.uuid4().hex
            store.put_bytes(SYNC_TOKEN, token.encode())
            cache.save(token, files, snaps, dirty=False)
            mirror.refresh(store, root, files, snaps)  # type: ignore[arg-type]
            mirror.close()
    finally:
        lock.__exit__(None, None, None)
    with ZoneStatus(zone_dir).update() as st:
        st["remote_snapshots"] = {s: None for s in snaps}
        st["remote_bytes"] = sum(files.values()) + sum(snaps.values())
        st["remote_files"] = len(files)
    summary["elapsed_s"] = round(time.monotonic() - started, 3)
    log.info("zones.prune_done", zone=zone.name, forgotten=len(forget), files=len(unused),
             bytes_freed=freed)
    return summary


# -- restore --------------------------------------------------------------------------------
def _reporter(ctx: Any, zone: Zone, counters: Counters,
              totals: dict[str, Any]) -> Callable[[], None]:
    def report() -> None:
        if ctx is not None:
            ctx.progress(phase=totals.get("phase", ""), files_done=counters.files_done,
                         files_total=totals.get("files"), bytes_done=counters.bytes_done,
                         bytes_total=totals.get("bytes"), current=counters.current,
                         zone=zone.name)
    return report


def restore_s3(zone: Zone, zone_dir: Path, key_file: Path, snapshot: str, target: Path,
               user: str | None, local_repo: Path | None, ctx: Any,
               opts: Any) -> ZoneRestoreSummary:
    started = time.monotonic()
    if user:
        validate_user_id(user)
    target = Path(target).absolute()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ZoneError("", f"restore target {target} exists and is not an empty directory; "
                        "choose a new path (nothing is overwritten)")
    counters = Counters()
    totals: dict[str, Any] = {"phase": "list"}
    report = _reporter(ctx, zone, counters, totals)
    mirror = Mirror(zone_dir / "mirror", key_file, local_repo)
    with open_store(zone, opts) as store:
        root = store.root
        report()
        listing = store.full_listing()
        mirror.refresh(store, root, listing.files, listing.snapshots)  # type: ignore[arg-type]
        repo = mirror.open()
        try:
            sid = repo.resolve_snapshot(snapshot)
        except Exception as exc:  # noqa: BLE001  reported as the zone's error with its text
            raise ZoneError(zone.name, f"{exc}") from None
        refs = sorted(mirror.referenced_files(store, root, sid))  # type: ignore[arg-type]
        lacking = [r for r in refs if r not in listing.files]
        if lacking:
            raise ZoneError(zone.name, f"snapshot {sid[:12]} is incomplete on the zone "
                            f"({len(lacking)} files missing, first {lacking[0]})")
        totals.update(phase="fetch", files=len(refs), bytes=sum(listing.files[r] for r in refs))
        mirror.fetch_many(_workers(store), root, refs, ctx, report, counters)  # type: ignore[arg-type]
    from lightkeeper.backup.restore import RestoreError, RestoreOptions, restore  # noqa: PLC0415

    repo = mirror.open()
    try:
        result = restore(repo, sid, RestoreOptions(
            target=target, users=[user] if user else None, low_priority=False,
            job_id=getattr(ctx, "job_id", "")), ctx)
    except RestoreError as exc:
        raise ZoneError(zone.name, f"restore of {sid[:12]} failed: {exc}") from None
    finally:
        repo.close()
        mirror.drop_packs()
    out: ZoneRestoreSummary = {**result, "zone": zone.name, "snapshot": sid, "user": user,
                               "fetched_bytes": totals.get("bytes"),
                               "elapsed_s": round(time.monotonic() - started, 3)}
    log.info("zones.restore_done", zone=zone.name, snapshot=sid, user=user,
             files=out["files"], problems=len(out.get("failures") or {}))
    return out


# -- rebuild --------------------------------------------------------------------------------
def rebuild_s3(zone: Zone, zone_dir: Path, key_file: Path, repo_path: Path, ctx: Any,
               opts: Any) -> ZoneRebuildSummary:
    """Recreate a lost local repository from the bucket: data and index first (each object
    checked against its name), then config, then the manifests. Resumable."""
    started = time.monotonic()
    repo_path = Path(repo_path)
    marker = repo_path / REBUILD_MARKER
    if (repo_path / "config").exists() and not marker.exists():
        raise ZoneError(zone.name, f"a local repository exists at {repo_path}; rebuild only "
                        "replaces a lost one (move it away first)")
    if not Path(key_file).exists():
        raise ZoneError(zone.name, f"key file {key_file} not found: the replicated repository "
                        "is unreadable without the key kept when it was created")
    counters = Counters()
    totals: dict[str, Any] = {"phase": "list"}
    report = _reporter(ctx, zone, counters, totals)
    lock = _locked(zone_dir, "rebuild", zone)
    try:
        repo_path.mkdir(parents=True, exist_ok=True, mode=0o700)
        marker.write_text(f"rebuilding from zone {zone.name}\n")
        for sub in ("data", "index", "snapshots", "locks"):
            (repo_path / sub).mkdir(exist_ok=True, mode=0o700)
        with open_store(zone, opts) as store:
            root = store.root
            report()
            listing = store.full_listing()
            cfg_bytes = store.read_small("config") if "config" in listing.files else None
            todo = rebuild_plan(zone, zone.where, listing.files, cfg_bytes, repo_path)
            totals.update(phase="fetch", files=len(todo) + len(listing.snapshots),
                          bytes=sum(listing.files[r] for r in todo))
            limits: dict[str, int] = {}

            def one(st: S3Store, rel: str, stop: threading.Event) -> None:
                fetch(st, root, rel, repo_path, counters.add_bytes, stop.is_set,  # type: ignore[arg-type]
                      limits.get(rel))
                counters.file_done(rel)

            unindexed = fetch_index_then_packs(
                zone, repo_path, key_file, todo, limits,
                lambda rels: run_tasks(_workers(store), rels, one, ctx, report))
            totals["phase"] = "snapshots"
            published = publish_snapshots(
                listing.snapshots, repo_path,
                lambda rel, stage: fetch(store, root, rel, stage), ctx, counters)  # type: ignore[arg-type]
        problems = rebuild_problems(repo_path, key_file, published, unindexed)
        marker.unlink(missing_ok=True)
    finally:
        lock.__exit__(None, None, None)
    result: ZoneRebuildSummary = {
        "zone": zone.name, "kind": "s3", "repository": str(repo_path),
        "snapshots": len(published), "files_fetched": len(todo),
        "bytes_fetched": counters.bytes_done, "problems": problems,
        "elapsed_s": round(time.monotonic() - started, 3)}
    if problems:
        result["state"] = "problems"
    log.info("zones.rebuild_done", zone=zone.name, repository=str(repo_path),
             snapshots=len(published), problems=len(problems))
    return result


# -- probe ----------------------------------------------------------------------------------
def probe_s3(zone: Zone, timeout: float) -> tuple[bool, str | None, dict[str, int] | None]:
    """(reachable, error, snapshots): HEAD the bucket and list the manifests."""
    class _Opts:
        pass

    opts = _Opts()
    opts.timeout = timeout  # type: ignore[attr-defined]
    try:
        with open_store(zone, opts, retries=1) as store:
            return True, None, store.list_snapshots()
    except ZoneError as exc:
        return False, str(exc), None
