"""Restore from a zone, and rebuild a lost local repository from a zone.

Restore fetches into the zone's metadata mirror only the packs the snapshot needs (reusing
identical files of the local repository when it still has them), then restores with the same
checks as a local restore: every chunk against its id, every file against its size and BLAKE3
hash. Rebuild downloads the whole zone into the (lost) local repository path, data and index
first and snapshots last, each file checked against its name."""

from __future__ import annotations

import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from lightkeeper.backup.zones import remote_ops
from lightkeeper.backup.zones.connection import ZoneSession, network_guard
from lightkeeper.backup.zones.errors import ZoneError
from lightkeeper.backup.zones.local_repo import scan_files
from lightkeeper.backup.zones.mirror import Mirror, fetch
from lightkeeper.backup.zones.model import Zone
from lightkeeper.backup.zones.pool import Counters, run_tasks
from lightkeeper.backup.zones.remote_path import RemoteRoot
from lightkeeper.backup.zones.state import zone_lock
from lightkeeper.backup.zones.sync import SyncOptions
from lightkeeper.contracts.zones import (
    ZoneProblem,
    ZoneRebuildSummary,
    ZoneRestoreSummary,
)
from lightkeeper.ids import validate_user_id
from lightkeeper.logs import get_logger

log = get_logger("zones.restore")

REBUILD_MARKER = ".lightkeeper-rebuild"


def _reporter(ctx: Any, zone: Zone, counters: Counters, totals: dict[str, Any]) -> Any:
    def report() -> None:
        if ctx is not None:
            ctx.progress(phase=totals.get("phase", ""), files_done=counters.files_done,
                         files_total=totals.get("files"), bytes_done=counters.bytes_done,
                         bytes_total=totals.get("bytes"), current=counters.current,
                         zone=zone.name)
    return report


def restore_from_zone(zone: Zone, zone_dir: Path, key_file: Path, snapshot: str,
                      target: Path, user: str | None = None, local_repo: Path | None = None,
                      ctx: Any = None, opts: SyncOptions | None = None
                      ) -> ZoneRestoreSummary:
    opts = opts or SyncOptions()
    if zone.kind == "s3":
        from lightkeeper.backup.zones.s3_jobs import restore_s3  # noqa: PLC0415

        return restore_s3(zone, zone_dir, key_file, snapshot, target, user, local_repo, ctx,
                          opts)
    started = time.monotonic()
    if user:
        validate_user_id(user)
    target = Path(target).absolute()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ZoneError("", f"restore target {target} exists and is not an empty directory; "
                        "choose a new path (nothing is overwritten)")
    root = RemoteRoot(zone.name, zone.remote_path)
    counters = Counters()
    totals: dict[str, Any] = {"phase": "list"}
    report = _reporter(ctx, zone, counters, totals)
    mirror = Mirror(zone_dir / "mirror", key_file, local_repo)
    with ZoneSession(zone, opts.channels, opts.connections, opts.timeout) as sess, \
            network_guard(zone, sess):
        report()
        listing = remote_ops.full_listing(sess.clients, root)
        mirror.refresh(sess.sftp, root, listing.files, listing.snapshots)
        repo = mirror.open()
        try:
            sid = repo.resolve_snapshot(snapshot)
        except Exception as exc:  # noqa: BLE001  reported as the zone's error with its text
            raise ZoneError(zone.name, f"{exc}") from None
        refs = sorted(mirror.referenced_files(sess.sftp, root, sid))
        lacking = [r for r in refs if r not in listing.files]
        if lacking:
            raise ZoneError(zone.name, f"snapshot {sid[:12]} is incomplete on the zone "
                            f"({len(lacking)} files missing, first {lacking[0]})")
        totals.update(phase="fetch", files=len(refs), bytes=sum(listing.files[r] for r in refs))
        mirror.fetch_many(sess.clients, root, refs, ctx, report, counters)
    # The local restore itself: every chunk checked against its id, every file against its
    # size and hash, paths confined to the target.
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


def rebuild_from_zone(zone: Zone, zone_dir: Path, key_file: Path, repo_path: Path,
                      ctx: Any = None, opts: SyncOptions | None = None
                      ) -> ZoneRebuildSummary:
    """Recreate a lost local repository at ``repo_path`` from the zone (resumable)."""
    opts = opts or SyncOptions()
    if zone.kind == "s3":
        from lightkeeper.backup.zones.s3_jobs import rebuild_s3  # noqa: PLC0415

        return rebuild_s3(zone, zone_dir, key_file, repo_path, ctx, opts)
    started = time.monotonic()
    repo_path = Path(repo_path)
    marker = repo_path / REBUILD_MARKER
    if (repo_path / "config").exists() and not marker.exists():
        raise ZoneError(zone.name, f"a local repository exists at {repo_path}; rebuild only "
                        "replaces a lost one (move it away first)")
    if not Path(key_file).exists():
        raise ZoneError(zone.name, f"key file {key_file} not found: the replicated repository "
                        "is unreadable without the key kept when it was created")
    root = RemoteRoot(zone.name, zone.remote_path)
    counters = Counters()
    totals: dict[str, Any] = {"phase": "list"}
    report = _reporter(ctx, zone, counters, totals)
    try:
        lock = zone_lock(zone_dir, "rebuild")
        lock.__enter__()
    except BlockingIOError:
        raise ZoneError(zone.name, "another sync, prune or rebuild of this zone is running") \
            from None
    try:
        repo_path.mkdir(parents=True, exist_ok=True, mode=0o700)
        marker.write_text(f"rebuilding from zone {zone.name}\n")
        for sub in ("data", "index", "snapshots", "locks"):
            (repo_path / sub).mkdir(exist_ok=True, mode=0o700)
        with ZoneSession(zone, opts.channels, opts.connections, opts.timeout) as sess, \
                network_guard(zone, sess):
            report()
            listing = remote_ops.full_listing(sess.clients, root)
            cfg_bytes = (remote_ops.read_small(sess.sftp, root.join("config"))
                         if "config" in listing.files else None)
            todo = rebuild_plan(zone, root.root, listing.files, cfg_bytes, repo_path)
            totals.update(phase="fetch", files=len(todo) + len(listing.snapshots),
                          bytes=sum(listing.files[r] for r in todo))
            limits: dict[str, int] = {}

            def one(sftp: Any, rel: str, stop: Any) -> None:
                fetch(sftp, root, rel, repo_path, counters.add_bytes, stop.is_set,
                      limits.get(rel))
                counters.file_done(rel)

            unindexed = fetch_index_then_packs(
                zone, repo_path, key_file, todo, limits,
                lambda rels: run_tasks(sess.clients, rels, one, ctx, report))
            totals["phase"] = "snapshots"
            published = publish_snapshots(
                listing.snapshots, repo_path,
                lambda rel, stage: fetch(sess.sftp, root, rel, stage), ctx, counters)
        problems = rebuild_problems(repo_path, key_file, published, unindexed)
        marker.unlink(missing_ok=True)
    finally:
        lock.__exit__(None, None, None)
    result: ZoneRebuildSummary = {
        "zone": zone.name, "repository": str(repo_path), "snapshots": len(published),
        "files_fetched": len(todo), "bytes_fetched": counters.bytes_done,
        "problems": problems, "elapsed_s": round(time.monotonic() - started, 3)}
    if problems:
        result["state"] = "problems"
    log.info("zones.rebuild_done", zone=zone.name, repository=str(repo_path),
             snapshots=len(published), problems=len(problems))
    return result


# -- the steps of a rebuild that do not depend on the zone's kind (SFTP or S3) ---------------
def rebuild_plan(zone: Zone, where: str, files: dict[str, int], cfg_bytes: bytes | None,
                 repo_path: Path) -> list[str]:
    """Check the zone holds this repository, put its config in place, and return the files to
    fetch (those not already here at their size: a rebuild resumes)."""
    if "config" not in files:
        raise ZoneError(zone.name, f"{where} holds no repository")
    local_cfg = repo_path / "config"
    if local_cfg.exists() and local_cfg.read_bytes() != cfg_bytes:
        raise ZoneError(zone.name, f"{repo_path} holds a different repository")
    todo = [r for r, s in sorted(files.items()) if r != "config" and not (
        (repo_path / r).is_file() and (repo_path / r).stat().st_size == s)]
    if not local_cfg.exists() and cfg_bytes is not None:
        tmp = repo_path / f".tmp-config-{secrets.token_hex(4)}"
        tmp.write_bytes(cfg_bytes)
        os.replace(tmp, local_cfg)
    return todo


def fetch_index_then_packs(zone: Zone, repo_path: Path, key_file: Path, todo: list[str],
                           limits: dict[str, int],
                           run: Callable[[list[str]], None]) -> list[str]:
    """Fetch index files first: they say how large each pack is, and ``limits`` is filled with
    those sizes before any pack is fetched, so a zone cannot make us download an arbitrarily
    large "pack". Packs no index lists are not fetched; they are returned."""
    from lightkeeper.backup.repository import Repository  # noqa: PLC0415

    run([r for r in todo if not r.startswith("data/")])
    repo = Repository.open(repo_path, Path(key_file))
    for name, err in repo.load_index():
        log.warning("zones.rebuild_index_unreadable", zone=zone.name, index=name, error=err)
    limits.update({repo.pack_relpath(p): n for p, n in repo.indexed_packs().items()})
    packs = [r for r in todo if r.startswith("data/")]
    unindexed = [r for r in packs if r not in limits]
    for rel in unindexed:
        log.warning("zones.rebuild_pack_unindexed", zone=zone.name, file=rel)
    run([r for r in packs if r in limits])
    return unindexed


def publish_snapshots(snapshots: Iterable[str], repo_path: Path,
                      fetch_to: Callable[[str, Path], object], ctx: Any,
                      counters: Counters) -> list[str]:
    """Manifests last: each fetched aside under a random name, then renamed into place."""
    published = []
    for sid in sorted(snapshots):
        if ctx is not None:
            ctx.check_cancelled()
        rel = f"snapshots/{sid}"
        if not (repo_path / rel).exists():
            stage = repo_path / f".tmp-stage-{secrets.token_hex(4)}"
            try:
                fetch_to(rel, stage)
                os.replace(stage / rel, repo_path / rel)
            finally:
                shutil.rmtree(stage, ignore_errors=True)
        published.append(sid)
        counters.file_done(rel)
    return published


def rebuild_problems(repo_path: Path, key_file: Path, published: list[str],
                     unindexed: list[str]) -> list[ZoneProblem]:
    """What the rebuilt repository lacks: packs no index listed, snapshots missing files."""
    from lightkeeper.backup.repository import Repository  # noqa: PLC0415

    repo = Repository.open(repo_path, Path(key_file))
    problems: list[ZoneProblem] = [
        {"file": r, "problem": "not fetched: no index lists this pack"} for r in unindexed]
    files_now = set(scan_files(repo_path))
    for sid in published:
        try:
            refs = repo.referenced_files(sid)
        except Exception as exc:  # noqa: BLE001 - reported per snapshot
            problems.append({"snapshot": sid, "problem": str(exc)})
            continue
        lacking = [r for r in refs if r not in files_now]
        if lacking:
            problems.append({"snapshot": sid, "problem": "incomplete",
                             "missing_files": len(lacking)})
    return problems
