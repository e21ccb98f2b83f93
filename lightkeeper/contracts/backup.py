"""Backup calls and jobs (backup/calls.py)."""

from typing import Any, NotRequired, Required, TypedDict


# -- calls -----------------------------------------------------------------------------------
class SnapshotsRequest(TypedDict, total=False):
    user: str | None  # only the snapshots that hold this user
    limit: int  # the newest N; 0: all


class SnapshotFigures(TypedDict):
    """The figures of one backup run, in its manifest and in its job summary."""

    files: int
    files_new: int
    files_changed: int
    files_unmodified: int
    bytes_total: int  # the snapshot's size
    bytes_read: int
    bytes_new_raw: int
    chunks_new: int
    users: int
    failed_users: list[str]
    duration_s: float  # the manifest: up to its write; the job: the whole run


class SnapshotSummary(SnapshotFigures):
    """What a snapshot's manifest records about the backup that took it (every manifest since
    the first version carries all of these)."""

    # bytes this snapshot added to the repository's packs and index, counted before the
    # manifest itself was written (the job summary's bytes_added counts the manifest too)
    bytes_added_data: int


class SnapshotInfo(TypedDict):
    id: str
    short_id: str
    time: float
    time_iso: str
    host: str
    tags: list[str]
    users: list[str]
    parent: str | None
    summary: SnapshotSummary


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


class DatabaseEntry(TypedDict):
    kind: str  # postgres | sqlite | duckdb (the agent's metrics store)
    size: int
    format: NotRequired[str]  # postgres: "pg_dump -Fc"
    source: NotRequired[str]  # sqlite: the file it was copied from


class ShowResponse(TypedDict):
    """A snapshot's manifest without its file list (with ``files``: path, size, hash)."""

    id: str
    short_id: str
    version: int  # the manifest format
    repo_id: str
    file_count: int
    time: float
    host: str
    tags: list[str]
    users: dict[str, dict[str, Any]]  # user -> its counts and copy check as the backup wrote
    databases: dict[str, DatabaseEntry]  # "postgres/NAME", "sqlite/NAME", "metrics"
    parent: str | None
    summary: SnapshotSummary
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


class VerifiedState(TypedDict):
    """The newest snapshot a verify found whole (the agent's state dir, verified.json)."""

    newest_verified: str
    time: float
    mode: str  # the verify's mode


class DrillRecord(TypedDict):
    time: float
    ok: bool
    snapshot: str
    recovery_time_s: float
    users: list[str]


class DrillState(TypedDict):
    """The last recovery drill and the last that succeeded (drill.json)."""

    last: DrillRecord
    last_success: DrillRecord | None


class StatsResponse(RepositoryStats):
    newest_snapshot: SnapshotInfo | None
    newest_age_seconds: float | None
    oldest_snapshot_time: float | None
    verified: VerifiedState | None
    drill: DrillState | None


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


class SnapshotRef(TypedDict):
    """A snapshot as a forget summary names it: which one, when, and how much it held. Not its
    users' names nor its manifest's figures: the summary stays in the job's record for months
    (and was copied into its audit event), and with 1,000 users a full :class:`SnapshotInfo`
    is 12.5 KB of JSON (this form 0.2 KB): a daily forget listing 50 snapshots added 1 MB a day."""

    id: str
    short_id: str
    time: float
    tags: list[str]
    users: int  # how many users it holds
    bytes_total: int  # its size


class KeptSnapshot(SnapshotRef):
    reasons: list[str]  # the retention rules that keep it ("last", "daily"..., "protected")


class ForgetSummary(TypedDict):
    dry_run: bool
    policy: dict[str, int]  # keep_last...keep_yearly
    kept: list[KeptSnapshot]
    removed: list[SnapshotRef]
    kept_count: int
    removed_count: int
    prune: NotRequired[PruneSummary]  # with ``prune``
    repository_size: NotRequired[int]  # pruned for real


class SignSnapshotsSummary(TypedDict):
    signed: dict[str, str]  # old manifest id -> new id
    count: int


class BackupSummary(SnapshotFigures):
    """The backup job's summary (backup/snapshot.py run_backup)."""

    snapshot_id: str
    short_id: str
    bytes_added: int  # packs, index and the manifest this run wrote
    dedup_ratio: float | None  # bytes_total / bytes_added; None when nothing was added
    repository_size: int
    tags: list[str]
    state: NotRequired[str]  # "partial": some users failed, the rest is committed
    errors: NotRequired[dict[str, str]]  # user -> why it was not backed up


class AffectedSnapshot(TypedDict):
    snapshot: str
    short_id: str
    time: float | None
    files: list[str]  # its damaged files


class VerifyReport(TypedDict):
    """What backup/verify.py verify finds."""

    ok: bool
    mode: str  # "structure", "sample N%" or "full"
    snapshots_checked: int
    snapshots_ok: list[str]
    snapshots_unreadable: list[str]
    affected: list[AffectedSnapshot]
    packs_indexed: int
    packs_checked: int
    unindexed_packs: int
    bytes_read: int
    problems: list[str]  # the first 200
    problem_count: int
    duration_s: float
    note: NotRequired[str]  # packs in no index
    state: NotRequired[str]  # "problems"


class VerifySummary(VerifyReport):
    """The verify job's summary: the report and the repository's size."""

    repository_size: int


class RestoreSummary(TypedDict):
    """The restore job's summary (backup/restore.py restore)."""

    snapshot_id: str
    short_id: str
    target: str
    files: int
    bytes: int
    duration_s: float
    users: list[str]
    databases: list[str]  # manifest paths outside users/
    safety_snapshot: str | None  # in place: the snapshot of the data it replaced
    verified_files: int
    state: NotRequired[str]  # "problems"
    failures: NotRequired[dict[str, str]]  # path -> error
    pg_restored_into: NotRequired[str]  # with pg_target_db


class DrillUser(TypedDict):
    question: str
    answer_chars: NotRequired[int]  # LightRAG opened the workspace and answered
    open_s: float


class DrillSummary(TypedDict):
    """The drill job's summary (backup/drill.py drill)."""

    snapshot_id: str
    short_id: str
    users: list[str]
    files: int
    bytes: int
    restore_s: float
    recovery_time_s: float
    duration_s: float
    snapshot_age_s: float
    per_user: dict[str, DrillUser]
    ok: bool
    problems: list[str]
    opened_with_lightrag: bool
    state: NotRequired[str]  # "problems"
