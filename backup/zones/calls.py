"""What the agent serves for zones: jobs (replicate, verify, prune, restore, rebuild, status
probe), calls (list, status, host-key trust) and the replication schedules."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lightkeeper.backup.zones.errors import ZoneError
from lightkeeper.backup.zones.local_repo import LocalRepo, default_opener
from lightkeeper.backup.zones.model import Zone, get_zone, load_zones, select_zones, zone_state_dir
from lightkeeper.contracts.zones import (
    ListRequest,
    ReplicateRequest,
    ReplicateSummary,
    StatusRequest,
    TrustProbeResponse,
    TrustRequest,
    TrustResponse,
    ZonePruneRequest,
    ZonePruneSummary,
    ZoneRebuildSummary,
    ZoneRequest,
    ZoneRestoreRequest,
    ZoneRestoreSummary,
    ZoneStatus,
    ZoneStatusRequest,
    ZoneStatusSummary,
    ZoneSyncResult,
    ZoneVerifyRequest,
    ZoneVerifySummary,
)
from lightkeeper.logs import get_logger
from lightkeeper.progress import JobCancelled
from lightkeeper.services import CallError, CallFn, JobFn, Services

if TYPE_CHECKING:
    from lightkeeper.backup.zones.sync import SyncOptions

# The agent imports this module at start, zones configured or not: the SSH and S3 clients
# (paramiko, boto3) and the sync code are imported by the jobs, calls and probes that reach a
# zone, so an agent without zones never loads them (issue 13).

log = get_logger("zones")

STATUS_SCHEDULE = "every 5m"


def _local(services: Services) -> LocalRepo:
    cfg = services.cfg
    return LocalRepo(cfg.path("backup.repository"), default_opener(cfg),
                     refs_cache=cfg.path("paths.state_dir") / "snapshot-references.json")


def prepare_references(services: Services, snapshot_id: str) -> threading.Thread | None:
    """After a backup, when zones are configured: work out which files the new snapshot
    references, on a low-priority thread of its own, so that the sync that follows finds the
    answer kept (refs_cache.py) instead of reading every content list and the whole index
    before it can send anything. Not a job: the backup's result is not held up, and a failure
    only means the sync works the answer out itself."""
    if not services.cfg.table("zones"):
        return None

    def work() -> None:
        from lightkeeper.backup.priority import lowered  # noqa: PLC0415
        local = _local(services)
        try:
            with lowered(True):
                local.files()
                local.referenced_files(snapshot_id)
        except Exception as exc:  # noqa: BLE001 - the sync works it out again
            log.warning("zones.references_ahead_failed", snapshot=snapshot_id[:12],
                        error=f"{type(exc).__name__}: {exc}")
        finally:
            local.close()

    t = threading.Thread(target=work, name="lk-refs-ahead", daemon=True)
    t.start()
    return t


def _zone(services: Services, params: Mapping[str, Any]) -> Zone:
    name = params.get("zone")
    if not name or not isinstance(name, str):
        raise CallError("missing parameter 'zone'")
    try:
        return get_zone(services.cfg, name)
    except ZoneError as exc:
        raise CallError(str(exc), status=404, code="unknown_zone") from None


def _push_status(services: Services, zone: Zone, local: LocalRepo,
                 local_times: dict[str, float] | None = None) -> ZoneStatus:
    from lightkeeper.backup.zones.status import samples, zone_status  # noqa: PLC0415
    st = zone_status(zone, zone_state_dir(services.cfg, zone.name), local, local_times)
    try:
        services.add_samples(samples(st, time.time()))
    except Exception as exc:  # noqa: BLE001 - metrics must not fail the job
        log.warning("zones.samples_failed", zone=zone.name, error=str(exc))
    return st


# -- jobs -------------------------------------------------------------------------------
def job_replicate(ctx: Any, services: Services, params: ReplicateRequest) -> ReplicateSummary:
    from lightkeeper.backup.zones.sync import SyncOptions  # noqa: PLC0415
    cfg = services.cfg
    one = params.get("zone")
    names = params.get("zones") or ([one] if one else None)
    try:
        zones = select_zones(cfg, names)
    except ZoneError as exc:
        raise CallError(str(exc)) from None
    if not zones:
        raise CallError("no zones configured (add zones.NAME.host, .user and .remote_path)")
    local = _local(services)
    if not local.exists():
        raise ZoneError("", f"no local repository at {local.path}; run a backup first")
    opts = SyncOptions.from_config(cfg)
    opts.full_listing = bool(params.get("full_listing"))
    results: dict[str, ZoneSyncResult] = {}
    failed: dict[str, str] = {}
    errors: list[Exception] = []
    # No repository lock: every file of the repository is immutable once named and snapshots
    # are written last, so a backup may run meanwhile (a long sync must not block backups);
    # files a concurrent local prune removes are skipped and their snapshots wait.
    try:
        _replicate_zones(ctx, services, zones, local, opts, results, failed, errors)
    finally:
        local.close()
    summary: ReplicateSummary = {"zones": results, "failed": failed}
    if len(errors) == 1 and not results:
        raise errors[0]
    if failed and not results:
        raise ZoneError("", "replication failed for every zone: " + "; ".join(failed.values()))
    if failed:
        summary["state"] = "partial"
    unpublished = {z: r["snapshots_unpublished"] for z, r in results.items()
                   if r["snapshots_unpublished"]}
    if unpublished and not failed:
        summary["state"] = "partial"
    return summary


def _replicate_zones(ctx: Any, services: Services, zones: list[Zone], local: LocalRepo,
                     opts: SyncOptions, results: dict[str, ZoneSyncResult],
                     failed: dict[str, str],
                     errors: list[Exception]) -> None:
    from lightkeeper.backup.zones.sync import sync_zone  # noqa: PLC0415
    cfg = services.cfg
    local_times = local.snapshot_times()
    for zone in zones:
        ctx.check_cancelled()
        zdir = zone_state_dir(cfg, zone.name)
        try:
            r = sync_zone(zone, local, zdir, ctx, opts)
            results[zone.name] = r
            services.audit("zone.sync", component="zones", zone=zone.name, outcome="ok",
                           files=r["files_uploaded"], bytes_sent=r["bytes_sent"],
                           snapshots_published=len(r["snapshots_published"]),
                           elapsed_s=r["elapsed_s"])
        except JobCancelled:
            services.audit("zone.sync", component="zones", level="warning",
                           zone=zone.name, outcome="cancelled")
            _push_status(services, zone, local, local_times)
            raise
        except Exception as exc:  # noqa: BLE001 - one zone's failure is recorded
            failed[zone.name] = str(exc)
            errors.append(exc)
            services.audit("zone.sync", component="zones", level="error",
                           zone=zone.name, outcome="failed", error=str(exc))
        _push_status(services, zone, local, local_times)


def job_zone_verify(ctx: Any, services: Services, params: ZoneVerifyRequest
                    ) -> ZoneVerifySummary:
    from lightkeeper.backup.zones.sync import SyncOptions  # noqa: PLC0415
    from lightkeeper.backup.zones.verify import verify_zone  # noqa: PLC0415
    zone = _zone(services, params)
    cfg = services.cfg
    r = verify_zone(zone, zone_state_dir(cfg, zone.name), cfg.path("backup.key_file"),
                    _local_path(services), ctx, bool(params.get("full")),
                    SyncOptions.from_config(cfg))
    services.audit("zone.verify", component="zones", zone=zone.name, full=r["full"],
                   level="warning" if r["problems"] else "info", problems=len(r["problems"]))
    return r


def job_zone_prune(ctx: Any, services: Services, params: ZonePruneRequest) -> ZonePruneSummary:
    from lightkeeper.backup.zones.prune import prune_zone  # noqa: PLC0415
    from lightkeeper.backup.zones.sync import SyncOptions  # noqa: PLC0415
    zone = _zone(services, params)
    cfg = services.cfg
    r = prune_zone(zone, zone_state_dir(cfg, zone.name), cfg.path("backup.key_file"),
                   _local_path(services), ctx, bool(params.get("dry_run")),
                   SyncOptions.from_config(cfg))
    services.audit("zone.prune", component="zones", zone=zone.name, dry_run=r["dry_run"],
                   forgotten=len(r["forgotten"]), files_deleted=r["files_deleted"],
                   bytes_freed=r["bytes_freed"])
    _push_status(services, zone, _local(services))
    return r


def job_zone_restore(ctx: Any, services: Services, params: ZoneRestoreRequest
                     ) -> ZoneRestoreSummary:
    from lightkeeper.backup.zones.restore import restore_from_zone  # noqa: PLC0415
    from lightkeeper.backup.zones.sync import SyncOptions  # noqa: PLC0415
    zone = _zone(services, params)
    cfg = services.cfg
    target = params.get("target")
    snapshot = params.get("snapshot") or "latest"
    if not target:
        raise CallError("missing parameter 'target' (an empty or new directory)")
    r = restore_from_zone(zone, zone_state_dir(cfg, zone.name), cfg.path("backup.key_file"),
                          str(snapshot), Path(target), params.get("user"), _local_path(services),
                          ctx, SyncOptions.from_config(cfg))
    services.audit("zone.restore", component="zones", zone=zone.name, snapshot=r["snapshot"],
                   user=r["user"], target=r["target"], files=r["files"],
                   problems=len(r.get("failures") or {}))
    return r


def job_zone_rebuild(ctx: Any, services: Services, params: ZoneRequest) -> ZoneRebuildSummary:
    from lightkeeper.backup.zones.restore import rebuild_from_zone  # noqa: PLC0415
    from lightkeeper.backup.zones.sync import SyncOptions  # noqa: PLC0415
    zone = _zone(services, params)
    cfg = services.cfg
    r = rebuild_from_zone(zone, zone_state_dir(cfg, zone.name), cfg.path("backup.key_file"),
                          cfg.path("backup.repository"), ctx, SyncOptions.from_config(cfg))
    services.audit("zone.rebuild", component="zones", level="warning", zone=zone.name,
                   repository=r["repository"], snapshots=r["snapshots"],
                   problems=len(r["problems"]))
    return r


def probe_zones(services: Services, names: list[str] | None = None,
                check: Callable[[], None] | None = None) -> dict[str, ZoneStatus]:
    """Probe every zone (or the given ones) and push its metrics: keeps lag and up/down
    current between syncs, so alerts fire for a zone that is down. Each probe keeps its SSH
    session open for the zone's next sync or probe (replication.keep_open_seconds)."""
    from lightkeeper.backup.zones.session_pool import DEFAULT_KEEP_OPEN_S, POOL  # noqa: PLC0415
    from lightkeeper.backup.zones.status import samples, zone_status  # noqa: PLC0415
    cfg = services.cfg
    keep_open = float(cfg.get("replication.keep_open_seconds", DEFAULT_KEEP_OPEN_S))
    local = _local(services)
    local_times = local.snapshot_times() if local.exists() else {}
    out: dict[str, ZoneStatus] = {}
    if names is None:  # a zone removed by a reload: its kept session goes now, not at expiry
        POOL.retain(set(load_zones(cfg)) if keep_open > 0 else set())
    for zone in select_zones(cfg, names):
        if check is not None:
            check()
        st = zone_status(zone, zone_state_dir(cfg, zone.name), local, local_times,
                         do_probe=True, keep_open=keep_open)
        services.add_samples(samples(st, time.time()))
        out[zone.name] = st
    return out


def job_zone_status(ctx: Any, services: Services, params: ZoneStatusRequest) -> ZoneStatusSummary:
    """An operator's explicit probe of every zone (or the given ones), with a job record."""
    return {"zones": probe_zones(services, params.get("zones"), ctx.check_cancelled)}


def probes(services: Services) -> list[tuple[str, str, Callable[[Services], Any]]]:
    """The agent's periodic zone probe: samples, not a job (288 job records a day otherwise)."""
    if not load_zones(services.cfg):
        return []
    # '' turns the probes off, like any schedule (it used to mean the default)
    text = str(services.cfg.get("replication.status_schedule", STATUS_SCHEDULE))
    return [("zone_status", text, probe_zones)]


def _local_path(services: Services) -> Path | None:
    p = services.cfg.path("backup.repository")
    return p if (p / "config").exists() else None


def _sftp_only(zone: Zone) -> None:
    if zone.kind != "sftp":
        raise CallError(f"zone {zone.name!r} is of kind {zone.kind!r}: it has no SSH host key "
                        "to trust (its endpoint's identity is checked by TLS)", status=400,
                        code="not_sftp")


# -- calls ------------------------------------------------------------------------------
def call_list(services: Services, params: ListRequest) -> list[ZoneStatus]:
    from lightkeeper.backup.zones.status import zone_status  # noqa: PLC0415
    cfg = services.cfg
    local = _local(services)
    local_times = local.snapshot_times() if local.exists() else {}
    return [zone_status(z, zone_state_dir(cfg, z.name), local, local_times,
                        do_probe=bool(params.get("probe")))
            for z in load_zones(cfg).values()]


def call_status(services: Services, params: StatusRequest) -> ZoneStatus:
    from lightkeeper.backup.zones.status import zone_status  # noqa: PLC0415
    zone = _zone(services, params)
    return zone_status(zone, zone_state_dir(services.cfg, zone.name), _local(services),
                       do_probe=bool(params.get("probe")))


def call_trust_probe(services: Services, params: ZoneRequest) -> TrustProbeResponse:
    """Connect and report the zone's host key, trusting nothing."""
    from lightkeeper.backup.zones import hostkeys  # noqa: PLC0415
    from lightkeeper.backup.zones.connection import probe_host_key  # noqa: PLC0415
    zone = _zone(services, params)
    _sftp_only(zone)
    try:
        key = probe_host_key(zone)
        known = hostkeys.recorded_keys(zone)
    except ZoneError as exc:
        raise CallError(str(exc), status=502, code="zone_unreachable") from None
    fp = hostkeys.fingerprint(key)
    same = known.get(key.get_name())
    if same is not None and same == key:
        state = "trusted"
    elif known:
        state = "changed"
    else:
        state = "unknown"
    return {"zone": zone.name, "host": zone.address, "key_type": key.get_name(),
            "fingerprint": fp, "state": state, "known_hosts": str(zone.known_hosts),
            "recorded": [f"{k.get_name()} {hostkeys.fingerprint(k)}" for k in known.values()]}


def call_trust(services: Services, params: TrustRequest) -> TrustResponse:
    """Record the zone's host key, only if it has the fingerprint the operator confirmed."""
    from lightkeeper.backup.zones import hostkeys  # noqa: PLC0415
    from lightkeeper.backup.zones.connection import probe_host_key  # noqa: PLC0415
    zone = _zone(services, params)
    _sftp_only(zone)
    try:
        expected = hostkeys.normalise_fingerprint(str(params.get("fingerprint") or ""))
    except ValueError as exc:
        raise CallError(str(exc)) from None
    try:
        key = probe_host_key(zone)
    except ZoneError as exc:
        raise CallError(str(exc), status=502, code="zone_unreachable") from None
    fp = hostkeys.fingerprint(key)
    if fp != expected:
        raise CallError(f"zone {zone.name!r}: the server presents {key.get_name()} {fp}, not "
                        f"the confirmed {expected}; nothing recorded", status=409,
                        code="fingerprint_mismatch")
    try:
        path = hostkeys.record(zone, key)
    except ZoneError as exc:
        raise CallError(str(exc), status=409, code="host_key_changed") from None
    services.audit("zone.host_key_trusted", actor=params.get("actor"), component="zones",
                   zone=zone.name, host=zone.address, key_type=key.get_name(), fingerprint=fp)
    return {"zone": zone.name, "host": zone.address, "key_type": key.get_name(),
            "fingerprint": fp, "known_hosts": str(path), "state": "trusted"}


def schedules(services: Services) -> list[tuple[str, str, dict[str, Any]]]:
    cfg = services.cfg
    zones = load_zones(cfg)
    out: list[tuple[str, str, dict[str, Any]]] = []
    for name, zone in sorted(zones.items()):
        if zone.schedule:
            out.append(("replicate", zone.schedule, {"zones": [name]}))
    return out


JOBS: dict[str, JobFn] = {
    "replicate": job_replicate,
    "zone_verify": job_zone_verify,
    "zone_prune": job_zone_prune,
    "zone_restore": job_zone_restore,
    "zone_rebuild": job_zone_rebuild,
    "zone_status": job_zone_status,
}

CALLS: dict[str, CallFn] = {
    "zones.list": call_list,
    "zones.status": call_status,
    "zones.trust_probe": call_trust_probe,
    "zones.trust": call_trust,
}

SCHEDULES = schedules
PROBES = probes
