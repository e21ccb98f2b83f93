"""What the agent serves for backups (see lightkeeper/services.py).

Jobs (``AgentClient.start_job(kind, params)``), all holding the ``repository`` resource so the
agent never runs two at once (the repository lock enforces it across processes too):

- ``backup``  params ``users`` [str], ``tags`` [str], ``jitter_s`` float (scheduled runs
              wait a random delay up to this first)
- ``verify``  params ``snapshot`` (id/prefix, optional), ``full`` bool, ``sample_pct`` float
- ``prune``   params ``dry_run`` bool
- ``forget``  params ``keep_last``..``keep_yearly`` int (none given: the configured policy),
              ``dry_run`` bool, ``prune`` bool (prune afterwards; with ``dry_run``: the prune plan
              as if the forgotten snapshots were gone)
- ``restore`` params ``snapshot``, ``users`` [str], ``dbs`` [str], ``target`` path,
              ``in_place`` bool, ``overwrite`` bool, ``pg_target_db`` str (pg_restore the
              ``postgres/NAME`` dump into this database, using that source's DSN)

- ``drill``   params ``users`` int (sample size), ``snapshot``, ``no_lightrag`` bool

Calls: ``backup.snapshots`` (``user``, ``limit``), ``backup.show`` (``snapshot``, ``files``),
``backup.stats`` (repository figures, newest snapshot and its age, last verify, last drill),
``backup.key_export``. ``backup.key_export`` returns the key file's path and
fingerprint only: key bytes never travel over the API. ``lightkeeper backup key export`` reads
the key file itself, so only a user who can already read that file can export it.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from lightkeeper.backup import retention
from lightkeeper.backup.summary import SummaryCache
from lightkeeper.contracts.agent import Empty
from lightkeeper.contracts.backup import (
    BackupRequest,
    BackupSummary,
    DrillRecord,
    DrillRequest,
    DrillState,
    DrillSummary,
    ForgetRequest,
    ForgetSummary,
    KeyExportResponse,
    PruneRequest,
    PruneSummary,
    RepositoryStats,
    RestoreRequest,
    RestoreSummary,
    ShowRequest,
    ShowResponse,
    SignSnapshotsSummary,
    SnapshotInfo,
    SnapshotsRequest,
    SnapshotsResponse,
    StatsResponse,
    VerifiedState,
    VerifyRequest,
    VerifySummary,
)
from lightkeeper.ids import InvalidUserId, validate_user_id
from lightkeeper.logs import get_logger
from lightkeeper.services import CallError, CallFn, JobFn, Services, float_param, int_param

if TYPE_CHECKING:
    from lightkeeper.backup.repository import Repository

# The agent imports this module at start and its idle loops never open the repository: the
# repository code (numpy, cryptography, zstandard, the chunker) is imported by the jobs and
# calls that use it, so an idle agent stays small (issue 13).

log = get_logger("lightkeeper.backup.calls")

RESOURCE = "repository"


# -- helpers ------------------------------------------------------------------------------
def _open(services: Services, create: bool = False) -> Repository:
    from lightkeeper.backup.crypto import KeyFileError  # noqa: PLC0415
    from lightkeeper.backup.repository import Repository, RepositoryError  # noqa: PLC0415
    cfg = services.cfg
    path, key = cfg.path("backup.repository"), cfg.path("backup.key_file")
    try:
        if create:
            return Repository.open_or_init(path, key, encrypt=cfg["backup.encrypt"],
                                           compression_level=cfg["backup.compression_level"])
        return Repository.open(path, key)
    except (RepositoryError, KeyFileError) as exc:
        raise CallError(str(exc), 404 if "no backup repository" in str(exc) else 400,
                        "repository") from None


_SUMMARIES: dict[Path, SummaryCache] = {}
_SUMMARIES_LOCK = threading.Lock()


def _summaries(services: Services) -> SummaryCache:
    file = services.cfg.path("paths.state_dir") / "backup" / "summary.json"
    with _SUMMARIES_LOCK:
        if file not in _SUMMARIES:
            _SUMMARIES[file] = SummaryCache(file)
        return _SUMMARIES[file]


def _summary(services: Services) -> dict[str, Any]:
    """Repository figures and snapshot list: cached, recomputed only if the repository changed
    outside the agent's own jobs (which refresh it themselves)."""
    repo_path = services.cfg.path("backup.repository")
    if not (repo_path / "config").exists():
        # the 404 the console explains, as Repository.open words it, without importing the
        # repository code: the agent asks this of a data root with no repository yet
        raise CallError(f"no backup repository at {repo_path} (run a backup to create one)",
                        404, "repository")
    from lightkeeper.backup.crypto import KeyFileError, read_key_file  # noqa: PLC0415
    try:  # a cached answer must not hide a key file others can read
        read_key_file(services.cfg.path("backup.key_file"))
    except KeyFileError as exc:
        raise CallError(str(exc), 400, "repository") from None
    cache = _summaries(services)
    cached = cache.get(services.cfg.path("backup.repository"))
    if cached is not None:
        return cached
    repo = _open(services)
    try:
        return cache.put(repo)
    finally:
        repo.close()


def _state_file(services: Services) -> Path:
    return services.cfg.path("paths.state_dir") / "backup" / "verified.json"


def _protected(services: Services) -> set[str]:
    try:
        doc = json.loads(_state_file(services).read_text())
        return {doc["newest_verified"]} if doc.get("newest_verified") else set()
    except (OSError, ValueError, KeyError):
        return set()


def _users(params: Mapping[str, Any]) -> list[str] | None:
    users = params.get("users") or ([params["user"]] if params.get("user") else None)
    if users is None:
        return None
    if not isinstance(users, list):
        raise CallError("users must be a list of user ids")
    try:
        return [validate_user_id(str(u)) for u in users]
    except InvalidUserId as exc:
        raise CallError(str(exc)) from None


def _samples(services: Services, items: dict[str, float]) -> None:
    now = time.time()
    try:
        services.add_samples([(now, k, "", float(v)) for k, v in items.items()])
    except Exception as exc:  # noqa: BLE001 - metrics must never fail a backup
        log.warning("backup.metrics_failed", error=str(exc))


def _policy(services: Services, params: ForgetRequest) -> retention.Policy:
    names = ("last", "hourly", "daily", "weekly", "monthly", "yearly")
    keep: Mapping[str, Any] = params  # read by the names ForgetRequest declares
    given = {n: keep.get(f"keep_{n}") for n in names if keep.get(f"keep_{n}") is not None}
    if not given:
        given = {n: services.cfg[f"backup.keep_{n}"] for n in names}
    try:
        return retention.Policy(**{n: int(v) for n, v in given.items() if v is not None})
    except (TypeError, ValueError):
        raise CallError("keep_* values must be integers") from None


# -- jobs ---------------------------------------------------------------------------------
def _delay(ctx: Any, seconds: float) -> None:
    """Wait (cancellably) before starting: the jitter of scheduled runs."""
    if seconds <= 0:
        return
    ctx.progress(phase="waiting", current=f"scheduled start in {seconds:.0f} s")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ctx.check_cancelled()
        time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))


def job_backup(ctx: Any, services: Services, params: BackupRequest) -> BackupSummary:
    from lightkeeper.backup.snapshot import BackupOptions, run_backup  # noqa: PLC0415
    cfg = services.cfg
    jitter = float_param(params, "jitter_s", 0.0, 0.0, 3600.0) or 0.0  # NaN/inf refused
    if jitter:
        _delay(ctx, random.uniform(0, jitter))
    tags = params.get("tags") or []
    if not isinstance(tags, list) or not all(isinstance(t, str) and t for t in tags):
        raise CallError("tags must be a list of non-empty strings")
    opts = BackupOptions(
        data_root=cfg.path("paths.data_root"), users=_users(params), tags=list(tags),
        sqlite={n: Path(e["path"]) for n, e in cfg.table("sources.sqlite").items()},
        postgres={n: {"dsn": e["dsn"], "pg_dump": e["pg_dump"]}
                  for n, e in cfg.table("sources.postgres").items()},
        metrics=services.metrics_snapshot if cfg["backup.include_metrics"] else None,
        scratch_dir=cfg.path("backup.scratch_dir"), gate_timeout=cfg["backup.gate_timeout"],
        retries=cfg["backup.copy_retries"], quiet_seconds=cfg["backup.quiet_seconds"],
        job_id=getattr(ctx, "job_id", ""))
    repo = _open(services, create=True)
    try:
        summary = run_backup(repo, opts, ctx)
        _summaries(services).put(repo)
    except Exception:
        _samples(services, {"backup_last_run_success": 0,
                            "backup_last_failure_timestamp_seconds": time.time()})
        raise
    finally:
        repo.close()
    _samples(services, {
        "backup_last_run_success": 0 if summary.get("state") else 1,
        "backup_last_success_timestamp_seconds": time.time(),
        "backup_age_seconds": 0.0,
        "backup_duration_seconds": summary["duration_s"],
        "backup_added_bytes": summary["bytes_added"],
        "backup_repository_size_bytes": summary["repository_size"],
    })
    from lightkeeper.backup.zones.calls import prepare_references  # noqa: PLC0415
    prepare_references(services, summary["snapshot_id"])
    return summary


def job_verify(ctx: Any, services: Services, params: VerifyRequest) -> VerifySummary:
    from lightkeeper.backup.repository import SnapshotNotFound, repo_size  # noqa: PLC0415
    from lightkeeper.backup.verify import verify  # noqa: PLC0415
    full = bool(params.get("full"))
    pct = params.get("sample_pct")
    if pct is not None:
        try:
            pct = float(pct)
        except (TypeError, ValueError):
            raise CallError("sample_pct must be a number") from None
        if not 0 < pct <= 100:
            raise CallError("sample_pct must be in (0, 100]")
    repo = _open(services)
    try:
        found = verify(repo, params.get("snapshot") or None, full=full, sample_pct=pct,
                       ctx=ctx, job_id=getattr(ctx, "job_id", ""))
        report: VerifySummary = {**found, "repository_size": repo_size(repo.path)}
        if report["ok"] and report["snapshots_ok"]:
            newest = max(report["snapshots_ok"],
                         key=lambda s: repo.read_snapshot(s).get("time", 0))
            f = _state_file(services)
            f.parent.mkdir(parents=True, exist_ok=True)
            state: VerifiedState = {"newest_verified": newest, "time": time.time(),
                                    "mode": report["mode"]}
            f.write_text(json.dumps(state))
    except SnapshotNotFound as exc:
        raise CallError(str(exc), 404, "not_found") from None
    finally:
        repo.close()
    _samples(services, {"backup_verify_last_run_success": 1 if report["ok"] else 0,
                        "backup_verify_timestamp_seconds": time.time()})
    return report


def job_prune(ctx: Any, services: Services, params: PruneRequest) -> PruneSummary:
    from lightkeeper.backup import prune as prune_mod  # noqa: PLC0415
    repo = _open(services)
    try:
        out = prune_mod.prune(repo, ctx, job_id=getattr(ctx, "job_id", ""),
                              dry_run=bool(params.get("dry_run")))
        if not params.get("dry_run"):
            _summaries(services).put(repo)
    except prune_mod.PruneError as exc:
        raise CallError(str(exc)) from None
    finally:
        repo.close()
    if not params.get("dry_run"):
        _samples(services, {"backup_repository_size_bytes": out["repository_size"]})
    return out


def job_sign_snapshots(ctx: Any, services: Services, params: Empty) -> SignSnapshotsSummary:
    """Authenticate the snapshots of an unencrypted repository written before manifests
    carried a MAC (the operator vouches for them: docs/security.md, "The repository")."""
    from lightkeeper.backup.crypto import IntegrityError  # noqa: PLC0415
    from lightkeeper.backup.lock import RepoLock  # noqa: PLC0415
    repo = _open(services)
    try:
        with RepoLock(repo.path, exclusive=True, purpose="sign-snapshots",
                      job_id=getattr(ctx, "job_id", "")):
            renamed = repo.sign_legacy_snapshots()
    except IntegrityError as exc:
        raise CallError(str(exc), 409, "refused") from None
    finally:
        repo.close()
    services.audit("backup.snapshots_signed", component="backup", level="warning",
                   count=len(renamed), snapshots={k[:12]: v[:12] for k, v in renamed.items()})
    return {"signed": renamed, "count": len(renamed)}


def job_forget(ctx: Any, services: Services, params: ForgetRequest) -> ForgetSummary:
    from lightkeeper.backup import prune as prune_mod  # noqa: PLC0415
    policy = _policy(services, params)
    dry = bool(params.get("dry_run"))
    repo = _open(services)
    try:
        out = prune_mod.forget(repo, policy, dry_run=dry, protected=_protected(services),
                               ctx=ctx, job_id=getattr(ctx, "job_id", ""))
        if params.get("prune") and not dry:
            out["prune"] = prune_mod.prune(repo, ctx, job_id=getattr(ctx, "job_id", ""))
            out["repository_size"] = out["prune"]["repository_size"]
        elif params.get("prune"):  # the plan: what forget removes, then what prune frees
            out["prune"] = prune_mod.prune(repo, ctx, job_id=getattr(ctx, "job_id", ""),
                                           dry_run=True,
                                           without=frozenset(s["id"] for s in out["removed"]))
        if not dry:
            _summaries(services).put(repo)
    except prune_mod.PruneError as exc:
        raise CallError(str(exc)) from None
    finally:
        repo.close()
    return out


def job_restore(ctx: Any, services: Services, params: RestoreRequest) -> RestoreSummary:
    from lightkeeper.backup.dbsources import restore_postgres  # noqa: PLC0415
    from lightkeeper.backup.repository import SnapshotNotFound  # noqa: PLC0415
    from lightkeeper.backup.restore import RestoreOptions, restore  # noqa: PLC0415
    from lightkeeper.backup.snapshot import BackupOptions  # noqa: PLC0415
    cfg = services.cfg
    snapshot = str(params.get("snapshot") or "")
    if not snapshot:
        raise CallError("snapshot is required (an id, a prefix, or 'latest')")
    dbs = params.get("dbs") or None
    target = params.get("target")
    pg_target = params.get("pg_target_db")
    repo = _open(services)
    try:
        opts = RestoreOptions(
            target=Path(target) if target else None, users=_users(params), dbs=dbs,
            in_place=bool(params.get("in_place")), data_root=cfg.path("paths.data_root"),
            overwrite=bool(params.get("overwrite")), gate_timeout=cfg["backup.gate_timeout"],
            job_id=getattr(ctx, "job_id", ""),
            safety_backup=BackupOptions(data_root=cfg.path("paths.data_root"),
                                        scratch_dir=cfg.path("backup.scratch_dir"),
                                        job_id=getattr(ctx, "job_id", "")))
        out = restore(repo, snapshot, opts, ctx)
    except SnapshotNotFound as exc:
        raise CallError(str(exc), 404, "not_found") from None
    finally:
        repo.close()
    if pg_target:
        pg = [d for d in (dbs or []) if d.startswith("postgres/")]
        if len(pg) != 1:
            raise CallError("pg_target_db needs exactly one --db postgres/NAME")
        name = pg[0].split("/", 1)[1]
        src = cfg.table("sources.postgres").get(name)
        if not src:
            raise CallError(f"no sources.postgres.{name}.dsn configured to reach the server")
        dump = Path(out["target"]) / "postgres" / f"{name}.dump"
        pg_restore = str(Path(src["pg_dump"]).with_name("pg_restore")) \
            if "/" in src["pg_dump"] else "pg_restore"
        restore_postgres(dump, src["dsn"], pg_target, pg_restore=pg_restore)
        out["pg_restored_into"] = pg_target
    return out


def _lightrag_check(services: Services, spool: Path) -> Any:
    """Open a restored workspace with LightRAG in a child ``lightkeeper rag query`` (backup
    never imports the runtime), with its own spool so drill queries stay out of the stats."""

    def check(data_root: Path, user: str, question: str) -> str:
        env = {**os.environ, "LIGHTKEEPER_PATHS__DATA_ROOT": str(data_root),
               "LIGHTKEEPER_PATHS__SPOOL_DIR": str(spool)}
        r = subprocess.run([sys.executable, "-m", "lightkeeper.cli.main", "rag", "query",
                            "--user", user, "--mode", "naive", "--json", question],
                           env=env, capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            raise RuntimeError((r.stderr or r.stdout).strip()[-400:])
        return str(json.loads(r.stdout).get("answer") or "")

    return check


def job_drill(ctx: Any, services: Services, params: DrillRequest) -> DrillSummary:
    from lightkeeper.backup.drill import drill  # noqa: PLC0415
    from lightkeeper.backup.repository import SnapshotNotFound  # noqa: PLC0415
    cfg = services.cfg
    sample = int_param(params, "users", cfg["backup.drill_users"], 1, 1000)
    repo = _open(services)
    scratch = cfg.path("backup.scratch_dir")
    try:
        check = None if params.get("no_lightrag") else _lightrag_check(services,
                                                                       scratch / "drill-spool")
        out = drill(repo, scratch, check, sample=sample,
                    snapshot=str(params.get("snapshot") or "latest"), ctx=ctx,
                    job_id=getattr(ctx, "job_id", ""))
    except SnapshotNotFound as exc:
        raise CallError(str(exc), 404, "not_found") from None
    finally:
        repo.close()
    now = time.time()
    try:
        f = _state_file(services).with_name("drill.json")
        f.parent.mkdir(parents=True, exist_ok=True)
        prev = json.loads(f.read_text()) if f.exists() else {}
        last: DrillRecord = {"time": now, "ok": out["ok"], "snapshot": out["snapshot_id"],
                             "recovery_time_s": out["recovery_time_s"], "users": out["users"]}
        rec: DrillState = {"last": last,
                           "last_success": last if out["ok"] else prev.get("last_success")}
        f.write_text(json.dumps(rec))
    except (OSError, ValueError) as exc:
        log.warning("drill.state_failed", error=str(exc))
    metrics = {"backup_drill_last_run_success": 1 if out["ok"] else 0,
               "backup_drill_timestamp_seconds": now,
               "backup_drill_recovery_seconds": out["recovery_time_s"]}
    if out["ok"]:
        metrics["backup_drill_last_success_timestamp_seconds"] = now
    _samples(services, metrics)
    return out


# The resource a job holds is an attribute of its function, which the agent's JobManager reads.
_HOLD_REPOSITORY: tuple[Any, ...] = (job_backup, job_verify, job_prune, job_forget, job_restore,
                                     job_drill)
for _fn in _HOLD_REPOSITORY:
    _fn.resource = RESOURCE


# -- calls --------------------------------------------------------------------------------
def call_snapshots(services: Services, params: SnapshotsRequest) -> SnapshotsResponse:
    limit = int_param(params, "limit", 0, 0, 1_000_000)  # 0: all (checked before any work)
    summary = _summary(services)
    infos = list(summary["snapshots"])
    user = params.get("user")
    if user:
        infos = [i for i in infos if user in i["users"]]
    if limit:
        infos = infos[-limit:]
    return {"repository": str(services.cfg.path("backup.repository")), "snapshots": infos,
            "refused": list(summary.get("refused") or [])}


def call_show(services: Services, params: ShowRequest) -> ShowResponse:
    from lightkeeper.backup.crypto import IntegrityError  # noqa: PLC0415
    from lightkeeper.backup.repository import SnapshotNotFound  # noqa: PLC0415
    repo = _open(services)
    try:
        m = repo.read_snapshot(str(params.get("snapshot") or "latest"))
    except SnapshotNotFound as exc:
        raise CallError(str(exc), 404, "not_found") from None
    except IntegrityError as exc:
        raise CallError(str(exc), 409, "refused") from None
    files = m.pop("files", [])
    m["short_id"] = m["id"][:8]
    m["file_count"] = len(files)
    if params.get("files"):
        m["files"] = [{"path": f["path"], "size": f["size"], "hash": f["hash"]} for f in files]
    return cast("ShowResponse", m)  # the manifest's header keys: tests/test_contracts.py


def call_stats(services: Services, params: Empty) -> StatsResponse:
    summary = _summary(services)  # JSON (SummaryCache) of backup.summary.compute
    infos: list[SnapshotInfo] = summary["snapshots"]
    stats: RepositoryStats = summary["stats"]
    state: dict[str, Any] = {}
    for key, name in (("verified", "verified.json"), ("drill", "drill.json")):
        try:
            state[key] = json.loads(_state_file(services).with_name(name).read_text())
        except (OSError, ValueError):
            state[key] = None
    return {**stats,
            "newest_snapshot": infos[-1] if infos else None,
            "newest_age_seconds": time.time() - infos[-1]["time"] if infos else None,
            "oldest_snapshot_time": infos[0]["time"] if infos else None,
            "verified": state["verified"], "drill": state["drill"]}


def call_key_export(services: Services, params: Empty) -> KeyExportResponse:
    repo = _open(services)
    return {"key_file": str(services.cfg.path("backup.key_file")), "repo_id": repo.id,
            "fingerprint": repo.keys.fingerprint, "encrypted": repo.keys.encrypted,
            "note": "key bytes are never sent over the API; run 'lightkeeper backup key "
                    "export' as the key file's owner to copy the key"}


JOBS: dict[str, JobFn] = {"backup": job_backup, "verify": job_verify, "prune": job_prune,
        "forget": job_forget, "restore": job_restore, "drill": job_drill,
        "sign_snapshots": job_sign_snapshots}
CALLS: dict[str, CallFn] = {"backup.snapshots": call_snapshots, "backup.show": call_show,
         "backup.stats": call_stats, "backup.key_export": call_key_export}


def SCHEDULES(services: Services) -> list[tuple[str, str, dict[str, Any]]]:  # noqa: N802
    cfg = services.cfg
    out: list[tuple[str, str, dict[str, Any]]] = []
    if cfg["backup.schedule"]:
        out.append(("backup", cfg["backup.schedule"],
                    {"tags": ["scheduled"], "jitter_s": cfg["backup.schedule_jitter"]}))
    if cfg["backup.prune_schedule"]:
        out.append(("forget", cfg["backup.prune_schedule"], {"prune": True}))
    if cfg["backup.drill_schedule"]:
        out.append(("drill", cfg["backup.drill_schedule"], {}))
    if cfg["backup.verify_schedule"]:
        out.append(("verify", cfg["backup.verify_schedule"],
                    {"sample_pct": cfg["backup.verify_sample_pct"]}))
    return out
