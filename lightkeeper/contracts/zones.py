"""Zone calls and jobs (backup/zones/calls.py)."""

from typing import NotRequired, Required, TypedDict

from lightkeeper.contracts.backup import RestoreSummary


class ZoneRequest(TypedDict):
    zone: str


class ListRequest(TypedDict, total=False):
    probe: bool  # connect to each zone now (slow); else the recorded state


class StatusRequest(ZoneRequest, total=False):
    probe: bool


class ZoneStatus(TypedDict):
    """A zone's settings (never credentials) and replication state."""

    name: str
    kind: str  # sftp | s3
    where: str
    bandwidth_limit_kbps: int
    schedule: str
    host: str
    port: int | None
    user: str
    remote_path: str
    key_file: NotRequired[str]  # sftp
    known_hosts: NotRequired[str]  # sftp
    endpoint_url: NotRequired[str]  # s3
    bucket: NotRequired[str]  # s3
    prefix: NotRequired[str]  # s3
    region: NotRequired[str]  # s3
    credentials: NotRequired[str]  # s3: where they come from
    storage_class: NotRequired[str]  # s3
    reachable: bool | None  # None: never probed
    unreachable_seconds: float | None
    last_success: float | None
    last_attempt: float | None
    last_error: str | None
    lag_seconds: float
    lag_since: float | None
    snapshots_behind: int
    remote_snapshots: int
    remote_bytes: int | None
    bytes_sent_total: int
    failures_total: int


class TrustRequest(ZoneRequest, total=False):
    fingerprint: Required[str]  # the one the operator confirmed (SHA256:...)
    actor: str


class TrustProbeResponse(TypedDict):
    zone: str
    host: str
    key_type: str
    fingerprint: str
    state: str  # trusted | changed | unknown
    known_hosts: str
    recorded: list[str]  # "TYPE FINGERPRINT" of the keys recorded for the host


class TrustResponse(TypedDict):
    zone: str
    host: str
    key_type: str
    fingerprint: str
    known_hosts: str
    state: str  # trusted


# -- jobs ------------------------------------------------------------------------------------
class ReplicateRequest(TypedDict, total=False):
    zones: list[str] | None
    zone: str | None
    full_listing: bool


class UnpublishedSnapshot(TypedDict):
    id: str
    missing_files: int  # files it needs that are not on the zone yet
    error: NotRequired[str]  # its manifest could not be read


class ZoneSyncResult(TypedDict):
    """One zone's sync (backup/zones/sync.py, s3_sync.py)."""

    zone: str
    listing: str  # "cached" or "full"
    channels: int
    rtt_ms: float
    files_uploaded: int
    bytes_sent: int
    snapshots_published: list[str]
    snapshots_unpublished: list[UnpublishedSnapshot]
    temps_removed: int
    remote_snapshots: list[str]
    remote_files: int
    remote_bytes: int
    elapsed_s: float
    attempts: int
    session: NotRequired[str]  # SFTP zones: "kept" (opened by an earlier sync or probe), "new"
    kind: NotRequired[str]  # s3 zones: "s3" and their upload figures
    uploads_aborted: NotRequired[int]
    uploads_resumed: NotRequired[int]
    parts_reused: NotRequired[int]
    files_repaired: NotRequired[int]


class ReplicateSummary(TypedDict):
    zones: dict[str, ZoneSyncResult]
    failed: dict[str, str]  # zone -> error
    state: NotRequired[str]  # "partial"


class ZoneVerifyRequest(ZoneRequest, total=False):
    full: bool


class ZonePruneRequest(ZoneRequest, total=False):
    dry_run: bool


class ZoneRestoreRequest(ZoneRequest, total=False):
    target: Required[str]
    snapshot: str
    user: str | None


class ZoneStatusRequest(TypedDict, total=False):
    zones: list[str] | None


class ZoneStatusSummary(TypedDict):
    zones: dict[str, ZoneStatus]


class ZoneProblem(TypedDict, total=False):
    """One problem a zone verify or rebuild found: a file's or a snapshot's."""

    file: str
    snapshot: str
    problem: Required[str]
    detail: str  # a hash mismatch: why
    expected: int  # a size problem
    found: int
    missing_files: int  # an incomplete snapshot
    first_missing: str


class ZoneVerifySummary(TypedDict):
    zone: str
    full: bool
    snapshots: int
    files: int
    bytes: int
    files_hashed: int
    problems: list[ZoneProblem]
    snapshots_affected: list[str]
    elapsed_s: float
    state: NotRequired[str]  # "problems"
    kind: NotRequired[str]  # s3 zones: "s3" and what the bucket reports
    multipart_uploads_in_progress: NotRequired[int]
    versioning: NotRequired[str]
    object_lock: NotRequired[bool]
    foreign_keys: NotRequired[int]


class RetainedObject(TypedDict):
    file: str
    why: str


class ZonePruneSummary(TypedDict):
    zone: str
    dry_run: bool
    kept: list[str]
    kept_reasons: dict[str, list[str]]  # snapshot -> the retention rules that keep it
    forgotten: list[str]
    files_deleted: int
    bytes_freed: int
    rules: dict[str, int]  # keep_* of the zone
    elapsed_s: float
    kind: NotRequired[str]  # s3 zones
    object_lock: NotRequired[bool]
    retained: NotRequired[list[RetainedObject]]  # objects the bucket's lock keeps
    delete_refused: NotRequired[list[str]]  # s3, pruned for real: objects the zone kept


class ZoneRestoreSummary(RestoreSummary):
    """A restore from a zone: the local restore's summary and where it came from."""

    zone: str
    snapshot: str
    user: str | None
    fetched_bytes: int | None
    elapsed_s: float


class ZoneRebuildSummary(TypedDict):
    zone: str
    repository: str
    snapshots: int
    files_fetched: int
    bytes_fetched: int
    problems: list[ZoneProblem]
    elapsed_s: float
    state: NotRequired[str]  # "problems"
    kind: NotRequired[str]  # s3 zones
