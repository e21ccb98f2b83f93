"""Rollups (1 minute, 1 hour) and retention per resolution, so the store stays bounded.

Each pass re-aggregates the buckets from a little before the watermark up to the last complete
bucket, replacing them (delete then insert in one transaction), so it is idempotent and late
samples in recent buckets are counted. A pass in which no bucket ended does the last one again
only for ``LATE_SECONDS`` after it ended (samples come late by a flush or a collector round):
the last hour was re-aggregated at every pass, every minute until the next hour ended (60
times, its ~3,000 per-user series each time: most of a maintenance pass's CPU once the agent
had run an hour), and is now done in the first minutes after it ends and with the next hour.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from lightkeeper.agent.store.db import Store

RESOLUTIONS = (("samples_1m", 60.0, "samples"), ("samples_1h", 3600.0, "samples_1m"))
# how long after its end a bucket is aggregated again, for samples that came late: a flush's
# retry, a collector round that ended after the bucket, the minute rollups an hour reads (done
# again a pass later)
LATE_SECONDS = 300.0
# Series sampled once a minute or less often gain nothing from 1-minute rollups (each bucket
# would copy one sample, and per-user series are most of the rows): they roll up straight from
# raw samples into hours, and charts read them raw while raw samples are kept.
SLOW_PREFIXES = ("userdir_",)
_SLOW_SQL = " OR ".join(f"starts_with(metric, '{p}')" for p in SLOW_PREFIXES)


def is_slow(metric: str) -> bool:
    return metric.startswith(SLOW_PREFIXES)


@dataclass
class Retention:
    raw_hours: float = 48.0
    minute_days: float = 30.0
    hour_days: float = 400.0
    ops_days: float = 30.0
    events_days: float = 90.0
    jobs_days: float = 180.0
    alerts_days: float = 365.0
    quarantine_days: float = 14.0
    bench_days: float = 365.0

    @classmethod
    def from_config(cls, cfg: Any) -> Retention:
        return cls(cfg["store.retention_raw_hours"], cfg["store.retention_1m_days"],
                   cfg["store.retention_1h_days"], cfg["store.retention_ops_days"],
                   cfg["store.retention_events_days"], cfg["store.retention_jobs_days"],
                   cfg["store.retention_alerts_days"], cfg["store.retention_quarantine_days"],
                   cfg["store.retention_bench_days"])


def _watermark(store: Store, name: str) -> float | None:
    # a read cursor: the chart queries that ask for it never wait behind a writer
    rows = store.read("SELECT value FROM meta WHERE key = ?", [f"rollup:{name}"])
    return float(rows[0][0]) if rows else None


def rollup(store: Store, now: float | None = None) -> dict[str, int]:
    """Aggregate complete buckets into the rollup tables. Returns rows written per table."""
    now = time.time() if now is None else now
    written: dict[str, int] = {}
    for table, step, source in RESOLUTIONS:
        end = math.floor(now / step) * step  # last complete bucket ends here
        mark = _watermark(store, table)
        if mark is None:
            first = store.execute(f"SELECT min(ts) FROM {source}")[0][0]
            if first is None:
                continue
            start = math.floor(first / step) * step
        else:
            start = mark - step  # re-do one bucket for late arrivals
            if end <= mark and now - mark >= LATE_SECONDS:
                continue  # no bucket ended since the last pass, and the last one has settled
        if end <= start:
            continue
        raw_agg = "avg(value), min(value), max(value), arg_max(value, ts), count(*)"
        if source == "samples":
            select = (f"SELECT floor(ts / {step}) * {step} AS b, metric, label, {raw_agg} "
                      f"FROM samples WHERE ts >= ? AND ts < ? AND NOT ({_SLOW_SQL}) "
                      "GROUP BY b, metric, label")
            params = [start, end]
        else:  # minute rollups combined into hours (averages weighted by counts), plus the
            # slow series straight from raw samples
            select = (f"SELECT floor(ts / {step}) * {step} AS b, metric, label, "
                      "sum(avg * n) / sum(n), min(min), max(max), arg_max(last, ts), "
                      "sum(n)::INTEGER FROM samples_1m WHERE ts >= ? AND ts < ? "
                      "GROUP BY b, metric, label UNION ALL "
                      f"SELECT floor(ts / {step}) * {step} AS b, metric, label, {raw_agg} "
                      f"FROM samples WHERE ts >= ? AND ts < ? AND ({_SLOW_SQL}) "
                      "GROUP BY b, metric, label")
            params = [start, end, start, end]
        # no held series changes (a rollup keeps every bucket's sums), but a query that
        # overlaps this transaction is not held: serieswindows
        with store.series_windows.writing(), store.transaction() as con:
            con.execute(f"DELETE FROM {table} WHERE ts >= ? AND ts < ?", [start, end])
            con.execute(f"INSERT INTO {table} (ts, metric, label, avg, min, max, last, n) "
                        + select, params)
            n = con.execute(f"SELECT count(*) FROM {table} WHERE ts >= ? AND ts < ?",
                            [start, end]).fetchall()[0][0]
            con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", [f"rollup:{table}", str(end)])
        written[table] = int(n)
    return written


def apply_retention(store: Store, retention: Retention, now: float | None = None) -> dict[str, int]:
    """Delete what is older than each resolution keeps. Returns rows deleted per table."""
    now = time.time() if now is None else now
    limits = {
        "samples": now - retention.raw_hours * 3600,
        "samples_1m": now - retention.minute_days * 86400,
        "samples_1h": now - retention.hour_days * 86400,
        "rag_ops": now - retention.ops_days * 86400,
        "rag_ops_1m": now - retention.ops_days * 86400,  # their histograms, as long
        "rag_ops_1h": now - retention.ops_days * 86400,
        "rag_ops_slow": now - retention.ops_days * 86400,  # and slowest per minute
    }
    # Never delete raw samples that have not been rolled up yet (slow series go to hours).
    minute, hour = _watermark(store, "samples_1m"), _watermark(store, "samples_1h")
    if minute is not None and hour is not None:
        limits["samples"] = min(limits["samples"], minute, hour)
    else:
        limits["samples"] = -math.inf
    deleted = {}
    # the windows held in memory (opswindows, serieswindows) learn what was cut
    with store.ops_windows.writing() as written, store.series_windows.writing() as cut:
        for table, limit in limits.items():
            if limit == -math.inf:
                continue
            rows = store.execute(f"DELETE FROM {table} WHERE ts < ?", [limit])
            deleted[table] = int(rows[0][0]) if rows else 0
        written.cut = limits["rag_ops_1m"]
        cut.cut = {t: limit for t, limit in limits.items() if t.startswith("samples")
                   and limit != -math.inf}
    # History tables: every one has a retention, so the file stays bounded with uptime.
    # Running jobs and firing alerts are never deleted, whatever their age.
    history = {
        "events": ("ts < ?", retention.events_days),
        "jobs": ("coalesce(finished, created) < ? AND state NOT IN ('queued', 'running')",
                 retention.jobs_days),
        "alerts": ("ended IS NOT NULL AND ended < ?", retention.alerts_days),
        "spool_quarantine": ("ts < ?", retention.quarantine_days),
        "bench_runs": ("ts < ?", retention.bench_days),
    }
    for table, (where, days) in history.items():
        rows = store.execute(f"DELETE FROM {table} WHERE {where}", [now - days * 86400])
        deleted[table] = int(rows[0][0]) if rows else 0
    return deleted
