"""The console's rag.* calls at real density: raw rows versus per-minute histograms.

    nice .venv/bin/python bench/rag_calls_bench.py [--days 1] [--rate 100] [--reps 20]

Fills a temporary store with ``--days`` of LightRAG operation rows at ``--rate`` operations per
second from 1,000 users (100/s for a day is 8.64 million rows; generated inside DuckDB), builds
their per-minute histograms with the statement the store's migration uses (the same aggregation
spool ingestion runs per batch), then times each call the LightRAG pane makes while idle
(rag.latency, rag.summary, rag.slowest, all users) over 1 h, 24 h and 7 d windows: p50/p95 of
``--reps`` runs, from the raw rows (exact quantiles, the code before issue 13) and from the
histograms and the slowest of each minute (the code now; the same statements as
``BACKFILL`` fill both tables, which spool ingestion runs per batch). It also prints the largest p95 difference between the two answers,
relative to the raw one, as a check of the bucket precision. Load average is printed beside.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from lightkeeper.agent.store import ophist, queries, slowops  # noqa: E402
from lightkeeper.agent.store.db import Store  # noqa: E402

DAY = 86400.0


def fill(store: Store, days: float, rate: float, now: float) -> int:
    n = int(days * DAY * rate)
    store.execute(
        "INSERT INTO rag_ops (ts, user_id, op, mode, duration_s, llm_s, embed_s, outcome, "
        "tuning_version, queue_wait_s) "
        "SELECT ? - i / ?, 'u' || lpad(CAST(hash(i) % 1000 AS VARCHAR), 4, '0'), "
        "CASE WHEN i % 10 < 7 THEN 'query' WHEN i % 10 < 9 THEN 'insert' ELSE 'graph' END, "
        "CASE WHEN i % 10 < 4 THEN 'mix' WHEN i % 10 < 7 THEN 'hybrid' WHEN i % 10 < 8 "
        "THEN 'upload' WHEN i % 10 < 9 THEN 'pipeline' ELSE 'read' END, "
        "exp(-1.0 + 0.8 * sqrt(-2 * ln(random() + 1e-12)) * cos(6.2831853 * random())), "
        "0.3, 0.05, CASE WHEN random() < 0.02 THEN 'error' ELSE 'ok' END, 1, "
        "CASE WHEN i % 10 = 8 THEN random() * 2 END FROM range(?) t(i)", [now, rate, n])
    store.execute(ophist.BACKFILL)
    store.execute(slowops.BACKFILL)
    ophist.compact(store, now=now)  # what maintenance does: merged minutes, rolled-up hours
    return n


def timed(fn: Callable[[], Any], reps: int) -> tuple[float, float, Any]:
    times, result = [], None
    for _ in range(reps):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    times.sort()
    return (times[len(times) // 2] * 1000, times[min(len(times) - 1, int(0.95 * len(times)))]
            * 1000, result)


def max_rel_diff(a: list[dict[str, Any]], b: list[dict[str, Any]], key: str) -> float:
    rb = {(r["op"], r["mode"]): r for r in b}
    worst = 0.0
    for r in a:
        other = rb.get((r["op"], r["mode"]))
        if other and other[key]:
            worst = max(worst, abs(r[key] - other[key]) / other[key])
    return worst


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=float, default=1.0)
    ap.add_argument("--rate", type=float, default=100.0)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--raw-reps", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="lk-ragcalls-") as tmp:
        store = Store(Path(tmp) / "m.duckdb")
        now = time.time()
        t0 = time.perf_counter()
        rows = fill(store, args.days, args.rate, now)
        store.checkpoint()
        hist_rows = store.execute("SELECT (SELECT count(*) FROM rag_ops_1m) + "
                                  "(SELECT count(*) FROM rag_ops_1h)")[0][0]
        slow_rows = store.execute("SELECT count(*) FROM rag_ops_slow")[0][0]
        print(f"{rows:,} operation rows ({args.days:g} d at {args.rate:g}/s), "
              f"{hist_rows:,} histogram rows, {slow_rows:,} slowest-of-minute rows, filled in {time.perf_counter() - t0:.1f} s; "
              f"store {store.size_bytes() / 2**20:.0f} MiB")
        print(f"{'call':34}{'raw p50':>10}{'raw p95':>10}{'hist p50':>10}{'hist p95':>10}"
              f"{'raw/hist':>10}  p95 diff")
        for window in (3600.0, DAY, 7 * DAY):
            label = {3600.0: "1h", DAY: "24h", 7 * DAY: "7d"}[window]
            cases = [
                ("rag.latency", lambda w=window: queries.latency_raw(store, w, now=now),
                 lambda w=window: queries.latency(store, w, now=now), None),
                ("rag.summary", lambda w=window: queries.ops_summary_raw(store, w, now=now),
                 lambda w=window: queries.ops_summary(store, w, now=now), "p95"),
            ]
            for name, raw_fn, hist_fn, key in cases:
                r50, r95, raw = timed(raw_fn, args.raw_reps)
                h50, h95, hist = timed(hist_fn, args.reps)
                diff = f"{max_rel_diff(hist, raw, key):6.1%}" if key else ""
                print(f"{name + ' ' + label:34}{r50:10.1f}{r95:10.1f}{h50:10.2f}{h95:10.2f}"
                      f"{r95 / h95:10.0f}  {diff}")
            r50, r95, raw = timed(lambda w=window: store.query_dicts(
                "SELECT ts, user_id AS user, op, mode, duration_s, llm_s, embed_s, outcome, "
                "error_class, tuning_version FROM rag_ops WHERE ts >= ? "
                "ORDER BY duration_s DESC, ts LIMIT 8", [ophist.window_start(now, w)]),
                args.raw_reps)
            h50, h95, kept = timed(lambda w=window: queries.slowest_ops(store, w, 8, now=now),
                                   args.reps)
            same = "same rows" if kept == raw else "DIFFERENT rows"
            print(f"{'rag.slowest ' + label:34}{r50:10.1f}{r95:10.1f}{h50:10.2f}{h95:10.2f}"
                  f"{r95 / h95:10.0f}  {same}")
        print("load average (1/5/15 min): " + " / ".join(f"{x:.2f}" for x in os.getloadavg()))
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
