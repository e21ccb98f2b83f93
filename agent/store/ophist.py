"""Per-minute latency histograms of LightRAG operations, kept at ingest (``rag_ops_1m``).

The console's rag.latency and rag.summary calls answer from these rows, so their cost depends on
the window and the number of series (operation, mode, tuning version, bench run), never on how
many operations the window holds: at 100 operations per second a day is 8.6 million raw rows
but 1,440 minutes times a handful of series here.

Each row counts one minute of one series: the number of operations, errors, sums (duration, LLM
and embedding time, queue wait), the observed minimum and maximum, the first and last timestamp
and cumulative bucket counts (``d_i``: operations with ``duration_s <= LATENCY_BUCKETS[i]``;
``w_i`` the same for ``queue_wait_s``), the buckets declared in :mod:`lightkeeper.catalog`.

Spool ingestion inserts one row per (minute, series) of each batch, in the batch's own
transaction, so the histograms never disagree with ``rag_ops``. Several batches in one minute
leave several rows, which every query sums; :func:`compact` merges the rows of past minutes
into one (maintenance), so the table holds about one row per minute and series.

Precision: counts, errors, sums, means, shares, first/last are exact. Quantiles are interpolated
linearly within the bucket that holds the wanted rank, as Prometheus' ``histogram_quantile``
does, and clamped to the observed minimum and maximum: the answer lies in the same bucket as the
exact quantile of the raw rows, so its error is at most that bucket's width (5 ms below 10 ms,
25-50 ms from 50 ms to 0.3 s, 100-250 ms up to 1.5 s, then 1-2.5 s up to 5 s). Windows are
whole minutes: a window starts at the beginning of the minute ``now - window`` falls in.
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Sequence
from typing import Any

from lightkeeper.agent.store import settled
from lightkeeper.catalog import LATENCY_BUCKETS

STEP = 60.0
HOUR = 3600.0
TABLE = "rag_ops_1m"
TABLE_1H = "rag_ops_1h"  # the same rows per hour, rolled up from past minutes
_N = len(LATENCY_BUCKETS)
D_COLS = [f"d{i}" for i in range(_N)]
W_COLS = [f"w{i}" for i in range(_N)]
KEYS = ("ts", "op", "mode", "tuning_version", "run_id")

DDL = ("CREATE TABLE IF NOT EXISTS rag_ops_1m (ts DOUBLE NOT NULL, op VARCHAR NOT NULL,"
       " mode VARCHAR NOT NULL, tuning_version INTEGER, run_id VARCHAR, n BIGINT NOT NULL,"
       " errors BIGINT NOT NULL, sum_s DOUBLE, min_s DOUBLE, max_s DOUBLE, llm_s DOUBLE,"
       " embed_s DOUBLE, first_ts DOUBLE, last_ts DOUBLE, queued BIGINT NOT NULL, qw_sum DOUBLE,"
       " qw_min DOUBLE, qw_max DOUBLE, "
       + ", ".join(f"{c} BIGINT NOT NULL" for c in D_COLS + W_COLS) + ")")


DDL_1H = DDL.replace(TABLE, TABLE_1H)


def _from_raw(source: str, where: str = "TRUE", step: float = STEP) -> str:
    """One row per (``step`` bucket, series) of raw operation rows in ``source``."""
    d = ", ".join(f"count(*) FILTER (WHERE duration_s <= {b})" for b in LATENCY_BUCKETS)
    w = ", ".join(f"count(*) FILTER (WHERE queue_wait_s <= {b})" for b in LATENCY_BUCKETS)
    return (f"SELECT floor(ts / {step}) * {step}, op, coalesce(mode, ''), tuning_version, run_id,"
            " count(*), count(*) FILTER (WHERE coalesce(outcome, 'ok') <> 'ok'), sum(duration_s),"
            " min(duration_s), max(duration_s), sum(coalesce(llm_s, 0)),"
            " sum(coalesce(embed_s, 0)), min(ts), max(ts), count(queue_wait_s),"
            f" sum(queue_wait_s), min(queue_wait_s), max(queue_wait_s), {d}, {w}"
            f" FROM {source} WHERE {where} GROUP BY 1, 2, 3, 4, 5")


INSERT_BATCH = f"INSERT INTO {TABLE} " + _from_raw("_batch")
"""Run in an ingest batch's transaction, after its rows went into rag_ops."""
BATCH_ROWS = _from_raw("_batch")
"""The rows INSERT_BATCH adds, for the windows held in memory (agent.store.opswindows)."""
INSERT_BATCH_LATE = f"INSERT INTO {TABLE_1H} " + _from_raw("_batch", "ts < ?", HOUR)
"""Run in the same transaction with the hours already rolled up (``hour_mark``): operations
that arrive for them (a spool backlog) go into their hour too."""
BACKFILL = f"INSERT INTO {TABLE} " + _from_raw("rag_ops")
"""The migration's: histograms of the operations stored before the table existed (their hours
are rolled up by the first :func:`compact`)."""


def _merge(step: float) -> str:
    return (f"SELECT floor(ts / {step}) * {step} AS b, op, mode, tuning_version, run_id, sum(n),"
            " sum(errors), sum(sum_s), min(min_s), max(max_s), sum(llm_s), sum(embed_s),"
            " min(first_ts), max(last_ts), sum(queued), sum(qw_sum), min(qw_min), max(qw_max), "
            + ", ".join(f"sum({c})" for c in D_COLS + W_COLS)
            + f" FROM {TABLE} WHERE ts >= ? AND ts < ? GROUP BY b, op, mode, tuning_version,"
            " run_id")


_MERGE = _merge(STEP)


def hour_mark(store_or_con: Any) -> float | None:
    """Where the hourly rows end: hours before it are in rag_ops_1h, complete."""
    sql = "SELECT value FROM meta WHERE key = 'rollup:rag_ops_1h'"
    if hasattr(store_or_con, "read"):  # the store: a reader's cursor
        rows = store_or_con.read(sql)
    else:  # a connection inside a transaction: what it wrote so far counts
        rows = store_or_con.execute(sql).fetchall()
    return float(rows[0][0]) if rows else None

SETTLE_S = settled.SETTLE_S


def compact(store: Any, now: float | None = None) -> int:
    """Merge the rows of each past minute and series into one. Returns the rows merged away."""
    due = settled.span(store, TABLE, "compact:rag_ops_1m", time.time() if now is None else now)
    if due is None:
        return 0
    start, end = due
    with store.transaction() as con:
        removed = settled.rewrite(con, TABLE, "compact:rag_ops_1m", start, end, _MERGE,
                                  [start, end])
        # the hours the compacted minutes complete, rolled up once (later arrivals for them
        # are added by ingestion, INSERT_BATCH_LATE)
        hmark = hour_mark(con)
        hstart = math.floor(start / HOUR) * HOUR if hmark is None else hmark
        hend = math.floor(end / HOUR) * HOUR
        if hend > hstart:
            con.execute(f"INSERT INTO {TABLE_1H} " + _merge(HOUR), [hstart, hend])
            con.execute("INSERT OR REPLACE INTO meta VALUES ('rollup:rag_ops_1h', ?)",
                        [str(hend)])
    return removed


def quantile(q: float, cumulative: Sequence[int | float], n: int | float,
             lo: float | None, hi: float | None) -> float | None:
    """The ``q`` quantile of ``n`` observations counted into cumulative buckets
    (``cumulative[i]``: how many are <= LATENCY_BUCKETS[i]): linear interpolation within the
    bucket holding rank ``q * n``, as Prometheus' histogram_quantile, clamped to the observed
    minimum ``lo`` and maximum ``hi``."""
    if not n:
        return None
    rank = q * n
    if rank <= 0:
        return lo if lo is not None else 0.0
    i = bisect.bisect_left(cumulative, rank)  # the first bucket holding that many
    if i == _N:  # the +Inf bucket: its highest value
        return hi if hi is not None else LATENCY_BUCKETS[-1]
    below = float(cumulative[i - 1]) if i else 0.0
    lower = LATENCY_BUCKETS[i - 1] if i else 0.0
    a = max(lower, lo) if lo is not None else lower
    b = min(LATENCY_BUCKETS[i], hi) if hi is not None else LATENCY_BUCKETS[i]
    if b <= a:
        return b
    return a + (b - a) * (rank - below) / (float(cumulative[i]) - below)


def sums_sql(group: str, where: str, wait: bool = True, src: str = TABLE) -> str:
    """Summed histogram columns per ``group`` over the rows matching ``where``: n, errors,
    sum_s, min_s, max_s, llm_s, embed_s, first, last, queued, qw_sum, qw_min, qw_max,
    [d...], [w...] (``wait`` False: an empty list for w, which the latency chart needs not)."""
    # sums of BIGINT are HUGEINT in DuckDB, whose conversion to Python costs more than the
    # query (8.8 -> 4.0 ms CPU for an hour's chart): cast back, a count cannot reach 2**63
    w = "[" + ", ".join(f"sum({c})::BIGINT" for c in W_COLS) + "]" if wait else "[]"
    return (f"SELECT {group}, sum(n)::BIGINT, sum(errors)::BIGINT, sum(sum_s), min(min_s),"
            " max(max_s), sum(llm_s), sum(embed_s), min(first_ts), max(last_ts),"
            " sum(queued)::BIGINT, sum(qw_sum), min(qw_min), max(qw_max), "
            "[" + ", ".join(f"sum({c})::BIGINT" for c in D_COLS) + f"], {w}"
            f" FROM {src} WHERE {where} GROUP BY {group} ORDER BY {group}")


def latency_sql(step: float, where: str, src: str = TABLE) -> str:
    """Per (op, mode, bucket of ``step`` s): n, errors, min_s, max_s, d0...d22. At the
    table's own step the rows are read as they are (one per minute once compacted; the caller
    merges the few of recent minutes): grouping costs about 1 us per group and aggregate, 8 ms
    for an hour's chart, reading them 2 ms."""
    if step == STEP:
        return (f"SELECT op, mode, ts, n, errors, min_s, max_s, {', '.join(D_COLS)} "
                f"FROM {src} WHERE {where}")
    return (f"SELECT op, mode, floor(ts / {step}) * {step}, sum(n)::BIGINT, sum(errors)::BIGINT,"
            " min(min_s), max(max_s), " + ", ".join(f"sum({c})::BIGINT" for c in D_COLS)
            + f" FROM {src} WHERE {where} GROUP BY 1, 2, 3")


def chart_step(step: float) -> float:
    """A latency chart's step across all users: whole minutes, past a quarter of an hour whole
    hours (read from the hourly rows)."""
    unit = HOUR if step > 900 else STEP
    return max(unit, math.ceil(step / unit) * unit)


def window_start(now: float, window: float) -> float:
    return math.floor((now - window) / STEP) * STEP


def source(store: Any, start: float, hours: bool) -> tuple[str, list[Any]]:
    """The histogram rows from ``start`` on, as a subquery: with ``hours``, whole hours that
    are rolled up come from rag_ops_1h (60 times fewer rows), the rest from the minutes."""
    mark = hour_mark(store) if hours else None
    h0 = math.ceil(start / HOUR) * HOUR
    if mark is None or h0 >= mark:
        return f"(SELECT * FROM {TABLE} WHERE ts >= ?)", [start]
    return (f"(SELECT * FROM {TABLE} WHERE ts >= ? AND ts < ? UNION ALL "
            f"SELECT * FROM {TABLE_1H} WHERE ts >= ? AND ts < ? UNION ALL "
            f"SELECT * FROM {TABLE} WHERE ts >= ?)", [start, h0, h0, mark, mark])


def as_row(values: Sequence[Any]) -> dict[str, Any]:
    """The summed columns of :func:`sums_sql` (after the group columns) by name."""
    names = ("n", "errors", "sum_s", "min_s", "max_s", "llm_s", "embed_s", "first", "last",
             "queued", "qw_sum", "qw_min", "qw_max", "d", "w")
    return dict(zip(names, values, strict=True))
