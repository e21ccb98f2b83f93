"""Calls the agent serves itself (agent/calls.py): store analytics for the console and CLI."""

from typing import Any, NotRequired, Required, TypedDict


class Empty(TypedDict):
    """A call that takes no parameters."""


# -- rag.* analytics -------------------------------------------------------------------------
class WindowRequest(TypedDict, total=False):
    window: str | float  # "1h", "7d", seconds...


class LatencyRequest(WindowRequest, total=False):
    step: float | str | None
    user: str | None
    op: str | None


class LatencyPoint(TypedDict):
    ts: float
    p50: float | None
    p95: float | None
    p99: float | None
    count: int
    errors: int


class LatencyResponse(TypedDict):
    step: float
    window: float
    series: dict[str, list[LatencyPoint]]  # "op" or "op/mode" -> points


class SummaryRequest(WindowRequest, total=False):
    user: str | None
    tuning_version: int | None
    run_id: str | None


class OpsSummaryRow(TypedDict):
    op: str
    mode: str
    count: int
    p50: float | None
    p95: float | None
    p99: float | None
    mean: float | None
    errors: int
    error_rate: float
    throughput_per_s: float | None
    time_total_s: float
    share_llm: float
    share_embed: float
    share_lightrag: float
    queued: int
    queue_wait_p50: float | None
    queue_wait_p95: float | None
    queue_wait_mean: float | None


class TopUsersRequest(WindowRequest, total=False):
    limit: int


class TopUser(TypedDict):
    user: str
    count: int
    time_s: float
    errors: int


class SlowestRequest(WindowRequest, total=False):
    limit: int
    user: str | None


class SlowOp(TypedDict):
    ts: float
    user: str
    op: str
    mode: str | None
    duration_s: float
    llm_s: float | None
    embed_s: float | None
    outcome: str
    error_class: str | None
    tuning_version: int | None


class CompareRequest(TypedDict):
    a: int
    b: int


class CompareRow(TypedDict):
    op: str
    mode: str
    a_count: int
    a_p50: float | None
    a_p95: float | None
    a_p99: float | None
    b_count: int
    b_p50: float | None
    b_p95: float | None
    b_p99: float | None
    change_p50: float | None
    change_p95: float | None
    change_p99: float | None
    thin_evidence: bool


class BenchRun(TypedDict):
    id: str
    ts: float
    tuning_version: int | None
    summary: dict[str, Any]


class CompareRows(TypedDict):
    a: int
    b: int
    rows: list[CompareRow]


class CompareResponse(CompareRows):
    bench_runs: list[BenchRun]


class VersionMark(TypedDict):
    version: int
    ts: float
    actor: str
    note: str


# -- bench.* -----------------------------------------------------------------------------------
class BenchRecordRequest(TypedDict, total=False):
    id: str
    ts: float
    tuning_version: int | None
    params: dict[str, Any]
    summary: dict[str, Any]


class BenchRecordResponse(TypedDict):
    id: str


class LimitRequest(TypedDict, total=False):
    limit: int


class BenchRunFull(BenchRun):
    params: dict[str, Any]


# -- metrics.*, processes.*, spool.*, store.* ----------------------------------------------------
class SeriesRequest(WindowRequest, total=False):
    metric: Required[str]
    label: str | None
    step: float | str | None
    agg: str  # avg | min | max | last


class SeriesResponse(TypedDict):
    metric: str
    step: float
    window: float
    resolution: str  # the table read: samples | samples_1m | samples_1h
    start: float
    end: float
    series: dict[str, list[list[float | None]]]  # label -> [[ts, value], ...]


class LatestRequest(TypedDict, total=False):
    metrics: list[str] | None


# metric -> label -> newest value
LatestResponse = dict[str, dict[str, float]]


class ProcessRow(TypedDict):
    """One watched process (collectors/processes.py); the agent's own row has no LightRAG
    details."""

    label: str
    pid: int
    rss_bytes: int | None
    cpu_ratio: float | None
    threads: int | None
    open_fds: int | None
    uptime_s: float
    kind: str  # agent | serve | server | worker | library | open | match
    name: str
    instrumented: bool
    gated: bool
    writer: bool
    ungated_writer: bool
    restarts: int
    user: NotRequired[str | None]
    workspace: NotRequired[str | None]
    working_dir: NotRequired[str | None]
    users_open: NotRequired[list[str]]
    user_files_open_for_write: NotRequired[list[str]]
    gate_evidence: NotRequired[str | None]
    cmd: NotRequired[str]


class ProcessesResponse(TypedDict):
    processes: list[ProcessRow]


class QuarantinedLine(TypedDict):
    ts: float
    file: str
    offset: int
    line: str
    error: str


class ModulesResponse(TypedDict):
    """What the agent's process has imported: the top-level packages (``lightkeeper``,
    ``duckdb``...), sorted, and how many modules in all."""
    packages: list[str]
    modules: int


class StoreStatsResponse(TypedDict):
    path: str
    size_bytes: int
    rows: dict[str, int]  # table -> rows
    table_bytes: dict[str, int]  # table -> bytes of the checkpointed blocks it occupies
    # PRAGMA database_size: block_size, total_blocks, used_blocks, free_blocks, wal_bytes
    blocks: dict[str, int]
    schema_version: int
    rows_written: int
    pending: int
    last_write_error: str | None
