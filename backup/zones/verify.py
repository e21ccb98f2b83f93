"""Check what a zone holds: every snapshot it claims has all the files it references, with
the sizes the index records; with ``full``, every file is downloaded and hashed against its
name."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import blake3
import paramiko

from lightkeeper.backup.zones import remote_ops
from lightkeeper.backup.zones.connection import ZoneSession, network_guard
from lightkeeper.backup.zones.damaged import DamagedFiles
from lightkeeper.backup.zones.errors import ZoneError
from lightkeeper.backup.zones.mirror import Mirror, content_ok
from lightkeeper.backup.zones.model import Zone
from lightkeeper.backup.zones.pool import Counters, run_tasks
from lightkeeper.backup.zones.remote_path import RemoteRoot
from lightkeeper.backup.zones.state import ListingCache
from lightkeeper.backup.zones.sync import SyncOptions
from lightkeeper.contracts.zones import ZoneProblem, ZoneVerifySummary
from lightkeeper.logs import get_logger

log = get_logger("zones.verify")


def _size_of(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


class _Sink:
    def write(self, data: bytes) -> int:
        return len(data)


def verify_zone(zone: Zone, zone_dir: Path, key_file: Path, local_repo: Path | None = None,
                ctx: Any = None, full: bool = False,
                opts: SyncOptions | None = None) -> ZoneVerifySummary:
    opts = opts or SyncOptions()
    if zone.kind == "s3":
        from lightkeeper.backup.zones.s3_jobs import verify_s3  # noqa: PLC0415

        return verify_s3(zone, zone_dir, key_file, local_repo, ctx, full, opts)
    started = time.monotonic()
    root = RemoteRoot(zone.name, zone.remote_path)
    problems: list[ZoneProblem] = []
    counters = Counters()
    totals = {"files": 0, "bytes": 0}
    phase = ["list"]

    def report() -> None:
        if ctx is not None:
            ctx.progress(phase=phase[0], files_done=counters.files_done,
                         files_total=totals["files"], bytes_done=counters.bytes_done,
                         bytes_total=totals["bytes"], current=counters.current, zone=zone.name)

    with ZoneSession(zone, opts.channels, opts.connections, opts.timeout) as sess, \
            network_guard(zone, sess):
        sftp = sess.sftp
        report()
        listing = remote_ops.full_listing(sess.clients, root)
        files = listing.files
        snaps = listing.snapshots
        if "config" not in files:
            if not snaps and not files:
                raise ZoneError(zone.name, f"{root.root} holds no repository yet (never synced)")
            problems.append({"file": "config", "problem": "missing"})
        mirror = Mirror(zone_dir / "mirror", key_file, local_repo)
        mirror.refresh(sftp, root, files, snaps)
        refs_of = check_structure(mirror, sftp, root, files, snaps, local_repo, ctx,
                                  problems, phase)
        sizes = pack_sizes(mirror)
        hashed = 0
        if full:
            phase[0] = "hash"
            todo = sorted(set(files) | {f"snapshots/{s}" for s in snaps})
            all_sizes = {**files, **{f"snapshots/{s}": n for s, n in snaps.items()}}
            totals["files"] = len(todo)
            totals["bytes"] = sum(all_sizes[r] for r in todo)
            lock = threading.Lock()

            def check(client: paramiko.SFTPClient, rel: str, stop: threading.Event) -> None:
                h = blake3.blake3()
                limit = read_limit(rel, sizes)
                try:
                    remote_ops.download(client, root, rel, _Sink(), counters.add_bytes, h,
                                        stop.is_set, limit)
                except InterruptedError:
                    return
                except OSError as exc:
                    if not remote_ops.connected(client):
                        raise
                    with lock:
                        problems.append({"file": rel, "problem": f"unreadable: {exc}"})
                    return
                # config is not hash-named: the mirror parsed it when it opened the repository
                if not content_ok(rel, h.hexdigest()):
                    with lock:
                        problems.append({"file": rel, "problem": "hash mismatch (corrupted)"})
                counters.file_done(rel)

            run_tasks(sess.clients, todo, check, ctx, report)
            hashed = counters.files_done
        mirror.close()
    affected = record_problems(zone_dir, problems, refs_of)
    summary: ZoneVerifySummary = {
        "zone": zone.name, "full": full, "snapshots": len(snaps), "files": len(files),
        "bytes": sum(files.values()), "files_hashed": hashed, "problems": problems,
        "snapshots_affected": affected, "elapsed_s": round(time.monotonic() - started, 3),
    }
    if problems:
        summary["state"] = "problems"
    log.info("zones.verify_done", zone=zone.name, full=full, problems=len(problems),
             snapshots=len(snaps))
    return summary


def pack_sizes(mirror: Mirror) -> dict[str, int]:
    """Pack file -> the size the zone's (authenticated) index records for it."""
    repo = mirror.open()
    return {repo.pack_relpath(p): s for p, s in repo.indexed_packs().items()}


def read_limit(rel: str, sizes: dict[str, int]) -> int | None:
    """The most a hash check may read of ``rel``: a pack its indexed size, metadata 1 GiB (a
    zone must not keep a verify busy with an endless "pack")."""
    if rel.startswith("data/"):
        return sizes.get(rel)
    return None if rel == "config" else remote_ops.METADATA_LIMIT


def check_structure(mirror: Mirror, source: Any, root: RemoteRoot, files: dict[str, int],
                    snaps: dict[str, int], local_repo: Path | None, ctx: Any,
                    problems: list[ZoneProblem], phase: list[str]) -> dict[str, set[str]]:
    """The checks that read no data file, for zones of every kind (``source`` is an SFTP
    channel or an S3 store): manifests and index files the mirror refused, every snapshot's
    files present, every listed size equal to what the index, the mirror's checked copies or
    the local repository say. Returns the files each readable snapshot references."""
    for rel, why in sorted(mirror.bad.items()):
        problems.append({"file": rel, "problem": "hash mismatch (corrupted)",
                         "detail": why})
        if rel.startswith("snapshots/"):
            problems.append({"snapshot": rel.split("/", 1)[1], "problem": "unreadable: "
                             "the zone's manifest does not match its name"})
    sizes = pack_sizes(mirror)
    refs_of: dict[str, set[str]] = {}
    phase[0] = "snapshots"
    for sid in sorted(snaps):
        if ctx is not None:
            ctx.check_cancelled()
        if f"snapshots/{sid}" in mirror.bad:
            continue
        try:
            refs = mirror.referenced_files(source, root, sid)
        except Exception as exc:  # noqa: BLE001 - reported as a problem of this snapshot
            problems.append({"snapshot": sid, "problem": f"unreadable: {exc}"})
            continue
        lacking = sorted(r for r in refs if r not in files)
        if lacking:
            problems.append({"snapshot": sid, "problem": "incomplete",
                             "missing_files": len(lacking), "first_missing": lacking[0]})
        refs_of[sid] = refs
    # Sizes, without reading anything: packs against the index, index files and manifests
    # against the mirror's copies (checked against their names when fetched), everything
    # against the local repository when it has the same file.
    listed = {**files, **{f"snapshots/{sid}": n for sid, n in snaps.items()}}
    for rel, found in sorted(listed.items()):
        if rel == "config":
            continue
        expected = sizes.get(rel)
        if expected is None and not rel.startswith("data/"):
            expected = _size_of(mirror.path / rel)
        if expected is None and local_repo is not None:
            expected = _size_of(Path(local_repo) / rel)
        if expected is not None and found != expected:
            problems.append({"file": rel, "problem": "size",
                             "expected": expected, "found": found})
    return refs_of


def record_problems(zone_dir: Path, problems: list[ZoneProblem],
                    refs_of: dict[str, set[str]]) -> list[str]:
    """Log the problems, have the next sync list the zone in full and send the damaged files
    again; returns the snapshots affected."""
    for p in problems:
        log.warning("zones.verify_problem", zone=zone_dir.name, **p)
    bad_files = {p["file"] for p in problems if "file" in p}
    if problems:
        # the next sync must not trust its cached listing: it lists the zone in full and
        # sends the damaged files again (docs/runbook.md, "A zone's copy is damaged")
        DamagedFiles(zone_dir).add(sorted(bad_files - {"config"}))
        ListingCache(zone_dir).mark_dirty()
    return sorted({p["snapshot"] for p in problems if "snapshot" in p}
                  | {sid for sid, refs in refs_of.items()
                     if refs & bad_files or f"snapshots/{sid}" in bad_files})
