"""The agent's own calls: store analytics for the console and the CLI."""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Mapping
from typing import Any

from lightkeeper.agent import ingest
from lightkeeper.agent.store import queries
from lightkeeper.agent.store.rollup import Retention
from lightkeeper.contracts.agent import (
    BenchRecordRequest,
    BenchRecordResponse,
    BenchRunFull,
    CompareRequest,
    CompareResponse,
    Empty,
    LatencyRequest,
    LatencyResponse,
    LatestRequest,
    LatestResponse,
    LimitRequest,
    ModulesResponse,
    OpsSummaryRow,
    ProcessesResponse,
    QuarantinedLine,
    SeriesRequest,
    SeriesResponse,
    SlowestRequest,
    SlowOp,
    StoreStatsResponse,
    SummaryRequest,
    TopUser,
    TopUsersRequest,
    VersionMark,
    WindowRequest,
)
from lightkeeper.services import CallError, CallFn, Services, float_param, int_param
from lightkeeper.tuning import versions


def _window(params: Mapping[str, Any], default: str = "1h") -> float:
    try:
        return queries.parse_window(params.get("window", default))
    except ValueError as exc:
        raise CallError(str(exc)) from None


def _text(params: Mapping[str, Any], name: str) -> str | None:
    value = params.get(name)
    if value is not None and not isinstance(value, str):
        raise CallError(f"{name} must be a string")
    return value or None


def _rows(rows: list[dict[str, Any]]) -> list[Any]:
    """Rows of a SELECT as the declared row type: the statement names exactly its keys, which
    tests/test_contracts.py checks against the type on real answers."""
    return rows


def _retention(services: Services) -> Retention:
    return Retention.from_config(services.cfg)


def rag_latency(services: Services, params: LatencyRequest) -> LatencyResponse:
    try:
        return queries.latency(services.store, _window(params), params.get("step"),
                               _text(params, "user"), _text(params, "op"),
                               windows=services.store.ops_windows)
    except ValueError as exc:
        raise CallError(str(exc)) from None


def rag_summary(services: Services, params: SummaryRequest) -> list[OpsSummaryRow]:
    version = params.get("tuning_version")
    return queries.ops_summary(services.store, _window(params), _text(params, "user"),
                               None if version is None else
                               int_param(params, "tuning_version", 0, 0, 2**31 - 1),
                               _text(params, "run_id"), windows=services.store.ops_windows)


def rag_top_users(services: Services, params: TopUsersRequest) -> list[TopUser]:
    return queries.top_users(services.store, _window(params),
                             int_param(params, "limit", 10, 1, 5000))


def rag_slowest(services: Services, params: SlowestRequest) -> list[SlowOp]:
    return _rows(queries.slowest_ops(services.store, _window(params),
                                     int_param(params, "limit", 20, 1, 5000),
                                     _text(params, "user")))


def rag_compare(services: Services, params: CompareRequest) -> CompareResponse:
    if params.get("a") is None or params.get("b") is None:
        raise CallError("rag.compare_versions needs integer versions a and b")
    a = int_param(params, "a", 0, 0, 2**31 - 1)
    b = int_param(params, "b", 0, 0, 2**31 - 1)
    result = queries.compare_versions(services.store, a, b)
    runs = services.store.read_dicts(
        "SELECT id, ts, tuning_version, summary FROM bench_runs WHERE tuning_version IN (?, ?) "
        "ORDER BY ts", [a, b])
    for r in runs:
        r["summary"] = json.loads(r["summary"]) if r["summary"] else {}
    return {**result, "bench_runs": _rows(runs)}


def rag_version_marks(services: Services, params: WindowRequest) -> list[VersionMark]:
    """When the tuning version changed, for markers on latency charts."""
    since = time.time() - _window(params)
    return _rows(versions.marks(services.store, since))


def bench_record(services: Services, params: BenchRecordRequest) -> BenchRecordResponse:
    run_id = str(params.get("id") or uuid.uuid4().hex)
    services.store.execute(
        "INSERT OR REPLACE INTO bench_runs VALUES (?, ?, ?, ?, ?)",
        [run_id, float_param(params, "ts", None, 0, 2**40) or time.time(),
         None if params.get("tuning_version") is None
         else int_param(params, "tuning_version", 0, 0, 2**31 - 1),
         json.dumps(params.get("params") or {}), json.dumps(params.get("summary") or {})])
    services.audit("bench.recorded", component="rag", run_id=run_id,
                   tuning_version=params.get("tuning_version"), params=params.get("params"))
    return {"id": run_id}


def bench_runs(services: Services, params: LimitRequest) -> list[BenchRunFull]:
    rows = services.store.read_dicts(
        "SELECT id, ts, tuning_version, params, summary FROM bench_runs ORDER BY ts DESC LIMIT ?",
        [int_param(params, "limit", 50, 1, 5000)])
    for r in rows:
        r["params"] = json.loads(r["params"]) if r["params"] else {}
        r["summary"] = json.loads(r["summary"]) if r["summary"] else {}
    return _rows(rows)


def metrics_series(services: Services, params: SeriesRequest) -> SeriesResponse:
    if not params.get("metric"):
        raise CallError("metrics.series needs a metric")
    try:
        return queries.series(services.store, params["metric"], params.get("label"),
                              _window(params), params.get("step"), _retention(services),
                              agg=params.get("agg", "avg"),
                              windows=services.store.series_windows)
    except ValueError as exc:
        raise CallError(str(exc)) from None


def metrics_latest(services: Services, params: LatestRequest) -> LatestResponse:
    wanted = params.get("metrics")
    out: dict[str, dict[str, float]] = {}
    for (metric, label), (_ts, value) in services.current_values().items():  # type: ignore[attr-defined]
        if wanted and metric not in wanted:
            continue
        out.setdefault(metric, {})[label] = value
    return out


def processes_list(services: Services, params: Empty) -> ProcessesResponse:
    """The LightRAG processes on this server (collectors/processes.py), the agent first."""
    table = getattr(services, "process_table", None)
    return {"processes": table() if table is not None else []}


def metrics_names(services: Services, params: Empty) -> list[str]:
    rows = services.store.read("SELECT DISTINCT metric FROM samples ORDER BY metric")
    return [r[0] for r in rows]


def spool_quarantine(services: Services, params: LimitRequest) -> list[QuarantinedLine]:
    return _rows(ingest.quarantine(services.store, int_param(params, "limit", 100, 1, 5000)))


def agent_modules(services: Services, params: Empty) -> ModulesResponse:
    """The packages the agent holds in memory: it imports what a job needs only when a job asks
    (tests/agent/test_footprint.py checks the idle agent holds no LightRAG, pandas or pyarrow)."""
    names = list(sys.modules)
    return {"packages": sorted({n.split(".", 1)[0] for n in names}), "modules": len(names)}


def _bytes(text: Any) -> int:
    """DuckDB's wal_size (``'1.2 MiB'``, ``'0 bytes'``) in bytes."""
    value, _, unit = str(text).partition(" ")
    scale = {"bytes": 1, "KiB": 1024, "MiB": 1024 ** 2, "GiB": 1024 ** 3, "KB": 1000,
             "MB": 1000 ** 2, "GB": 1000 ** 3}.get(unit.strip(), 1)
    return int(float(value or 0) * scale)


def store_stats(services: Services, params: Empty) -> StoreStatsResponse:
    s = services.store
    tables = ("samples", "samples_1m", "samples_1h", "rag_ops", "rag_ops_1m", "rag_ops_1h",
              "rag_ops_slow", "events", "alerts", "jobs", "spool_quarantine", "bench_runs",
              "tuning_versions")
    counts = {t: s.execute(f"SELECT count(*) FROM {t}")[0][0] for t in tables}
    # checkpointed blocks each table's columns occupy (a block shared by two tables counts for
    # both; rows still in the WAL count nowhere): where the file's growth goes
    block, total, used, free, wal = s.execute(
        "SELECT block_size, total_blocks, used_blocks, free_blocks, wal_size "
        "FROM pragma_database_size()")[0]
    blocks = {t: s.execute("SELECT count(DISTINCT block_id) FROM pragma_storage_info(?) "
                           "WHERE persistent AND block_id >= 0", [t])[0][0] for t in tables}
    return {"path": str(s.path), "size_bytes": s.size_bytes(), "rows": counts,
            "table_bytes": {t: int(n) * int(block) for t, n in blocks.items()},
            # the file's blocks: used ones hold data, free ones are space DuckDB keeps for reuse
            "blocks": {"block_size": int(block), "total_blocks": int(total),
                       "used_blocks": int(used), "free_blocks": int(free),
                       "wal_bytes": _bytes(wal)},
            "schema_version": s.schema_version(), "rows_written": s.rows_written,
            "pending": s.pending(), "last_write_error": s.last_write_error}


CALLS: dict[str, CallFn] = {
    "rag.latency": rag_latency,
    "rag.summary": rag_summary,
    "rag.top_users": rag_top_users,
    "rag.slowest": rag_slowest,
    "rag.compare_versions": rag_compare,
    "rag.version_marks": rag_version_marks,
    "bench.record": bench_record,
    "bench.runs": bench_runs,
    "metrics.series": metrics_series,
    "metrics.latest": metrics_latest,
    "metrics.names": metrics_names,
    "processes.list": processes_list,
    "spool.quarantine": spool_quarantine,
    "store.stats": store_stats,
    "agent.modules": agent_modules,
}
