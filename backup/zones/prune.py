"""Remote retention: forget the zone's snapshots its keep-* rules do not keep, then delete the
files no remaining snapshot references. Manifests go first, so a snapshot disappears whole;
if the files any kept snapshot needs cannot be determined, nothing is deleted."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

from lightkeeper.backup.zones import remote_ops
from lightkeeper.backup.zones.connection import ZoneSession, network_guard
from lightkeeper.backup.zones.errors import ZoneError
from lightkeeper.backup.zones.mirror import Mirror
from lightkeeper.backup.zones.model import Zone
from lightkeeper.backup.zones.remote_path import RemoteRoot
from lightkeeper.backup.zones.retention import policy_for, select_keep
from lightkeeper.backup.zones.state import ForgottenSnapshots, ListingCache, ZoneStatus, zone_lock
from lightkeeper.backup.zones.sync import SyncOptions, _BytesReader
from lightkeeper.contracts.zones import ZonePruneSummary
from lightkeeper.logs import get_logger

log = get_logger("zones.prune")


def prune_zone(zone: Zone, zone_dir: Path, key_file: Path, local_repo: Path | None = None,
               ctx: Any = None, dry_run: bool = False,
               opts: SyncOptions | None = None) -> ZonePruneSummary:
    opts = opts or SyncOptions()
    if zone.kind == "s3":
        from lightkeeper.backup.zones.s3_jobs import prune_s3  # noqa: PLC0415

        return prune_s3(zone, zone_dir, key_file, local_repo, ctx, dry_run, opts)
    started = time.monotonic()
    root = RemoteRoot(zone.name, zone.remote_path)
    try:
        lock = zone_lock(zone_dir, "prune")
        lock.__enter__()
    except BlockingIOError:
        raise ZoneError(zone.name, "another sync, prune or rebuild of this zone is running") \
            from None
    try:
        with ZoneSession(zone, opts.channels, opts.connections, opts.timeout) as sess, \
                network_guard(zone, sess):
            sftp = sess.sftp
            if ctx is not None:
                ctx.progress(phase="list", zone=zone.name)
            listing = remote_ops.full_listing(sess.clients, root)
            mirror = Mirror(zone_dir / "mirror", key_file, local_repo)
            mirror.refresh(sftp, root, listing.files, listing.snapshots)
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
            required = {"config"}
            for sid in sorted(keep):
                if ctx is not None:
                    ctx.check_cancelled()
                try:
                    required |= mirror.referenced_files(sftp, root, sid)
                except Exception as exc:  # noqa: BLE001  any failure reading a manifest stops the prune: nothing deleted
                    raise ZoneError(zone.name, f"cannot tell which files snapshot {sid[:12]} "
                                    f"needs ({exc}); nothing deleted") from None
            unused = sorted(r for r in listing.files if r not in required)
            freed = sum(listing.files[r] for r in unused)
            summary: ZonePruneSummary = {
                "zone": zone.name, "dry_run": dry_run, "kept": sorted(keep),
                "kept_reasons": {k["id"]: k["reasons"] for k in kept_reasons},
                "forgotten": forget, "files_deleted": len(unused), "bytes_freed": freed,
                "rules": zone.keep, "elapsed_s": 0.0,  # set when it is done
            }
            if dry_run or (not forget and not unused and not listing.temps):
                mirror.close()
                summary["elapsed_s"] = round(time.monotonic() - started, 3)
                return summary
            cache = ListingCache(zone_dir)
            cache.mark_dirty()
            forgotten = ForgottenSnapshots(zone_dir)
            for i, sid in enumerate(forget):
                if ctx is not None:
                    ctx.progress(phase="forget", files_done=i, files_total=len(forget),
                                 current=sid, zone=zone.name)
                sftp.remove(root.join(f"snapshots/{sid}"))
                forgotten.add([sid])
                log.info("zones.snapshot_forgotten", zone=zone.name, snapshot=sid)
            for i, rel in enumerate(unused + listing.temps):
                if ctx is not None:
                    if i % 50 == 0:
                        ctx.progress(phase="delete", files_done=i, files_total=len(unused),
                                     current=rel, zone=zone.name)
                    ctx.check_cancelled()
                remote_ops.remove_quiet(sftp, root.join(rel))
            files = {r: s for r, s in listing.files.items() if r in required}
            snaps = {s: n for s, n in listing.snapshots.items() if s in keep}
            token = uuid.uuid4().hex
            remote_ops.upload(sftp, root, remote_ops.SYNC_TOKEN, _BytesReader(token.encode()),
                              len(token))
            cache.save(token, files, snaps, dirty=False)
            mirror.refresh(sftp, root, files, snaps)
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
