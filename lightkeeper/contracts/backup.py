"""Backup calls and jobs (backup/calls.py)."""

from typing import Any, NotRequired, Required, TypedDict


# -- calls -----------------------------------------------------------------------------------
class SnapshotsRequest(TypedDict, total=False):
    user: str | None  # only the snapshots that hold this user
    limit: int  # the newest N; 0: all


class SnapshotInfo(TypedDict):
    id: str
    short_id: str
    time: float
    time_iso: str
    host: str
    tags: list[str]
    users: list[str]
    parent: str | None
    summary: dict[str, Any]  # the backup job's figures when it was taken


class RefusedSnapshot(TypedDict):
    id: str
    short_id: str
    error: str  # why its manifest is not trusted


class SnapshotsResponse(TypedDict):
    repository: str
    snapshots: list[SnapshotInfo]  # oldest first
    refused: list[RefusedSnapshot]


class ShowRequest(TypedDict, total=False):
    snapshot: str  # id, prefix or "latest" (the default)
    files: bool  # list the files too


class ShowResponse(TypedDict):
    """A snapshot's manifest without its file list (with ``files``: path, size, hash)."""

    id: str
    short_id: str
    file_count: int
    time: float
    host: str
    tags: list[str]
    users: dict[str, Any]
    parent: str | None
    summary: dict[str, Any]
    files: NotRequired[list[dict[str, Any]]]


class RepositoryStats(TypedDict):
    path: str
    id: str
    size_bytes: int
    files: int
    packs: int
    index_files: int
    snapshots: int
    chunks: int
    encrypted: bool
    key_id: str


class StatsResponse(RepositoryStats):
    newest_snapshot: SnapshotInfo | None
    newest_age_seconds: float | None
    oldest_snapshot_time: float | None
    verified: dict[str, Any] | None  # the newest verified snapshot: {newest_verified, time, mode}
    drill: dict[str, Any] | None  # {last: {...}, last_success: {...} | None}


class KeyExportResponse(TypedDict):
    key_file: str
    repo_id: str
    fingerprint: str
    encrypted: bool
    note: str


# -- jobs ------------------------------------------------------------------------------------
class BackupRequest(TypedDict, total=False):
    users: list[str] | None
    user: str | None
    tags: list[str]
    jitter_s: float  # scheduled runs wait a random delay up to this first


class VerifyRequest(TypedDict, total=False):
    snapshot: str | None
    full: bool
    sample_pct: float | None


class PruneRequest(TypedDict, total=False):
    dry_run: bool


class ForgetRequest(TypedDict, total=False):
    keep_last: int
    keep_hourly: int
    keep_daily: int
    keep_weekly: int
    keep_monthly: int
    keep_yearly: int
    dry_run: bool
    prune: bool  # prune afterwards (with dry_run: the plan as if the snapshots were gone)


class RestoreRequest(TypedDict, total=False):
    snapshot: Required[str]
    users: list[str] | None
    user: str | None
    dbs: list[str] | None
    target: str | None
    in_place: bool
    overwrite: bool
    pg_target_db: str | None


class DrillRequest(TypedDict, total=False):
    users: int  # sample size
    snapshot: str
    no_lightrag: bool


class PrunePlan(TypedDict):
    packs_total: int
    packs_delete: int
    packs_repack: int
    packs_keep: int
    bytes_delete: int
    bytes_repack: int
    missing_chunks: int
    bytes_free_estimate: int
    orphans_reindexed: int


class PruneSummary(PrunePlan, total=False):
    """The plan (``dry_run``), or the plan and what was done."""

    dry_run: bool
    packs_written: int
    index_files: int
    bytes_freed: int
    repository_size: int
    duration_s: float
    state: str  # "problems" when referenced chunks are in no index
    problem: str


class KeptSnapshot(SnapshotInfo):
    reasons: list[str]  # the retention rules that keep it ("last", "daily"..., "protected")


class ForgetSummary(TypedDict):
    dry_run: bool
    policy: dict[str, int]  # keep_last...keep_yearly
    kept: list[KeptSnapshot]
    removed: list[SnapshotInfo]
    kept_count: int
    removed_count: int
    prune: NotRequired[PruneSummary]  # with ``prune``
    repository_size: NotRequired[int]  # pruned for real


class SignSnapshotsSummary(TypedDict):
    signed: dict[str, str]  # old manifest id -> new id
    count: int
