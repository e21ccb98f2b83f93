"""Metrics store benchmark: ingest rate, chart query latency, growth per day.

Runs against ``agent.store.db.Store`` on a temporary file, with the series this machine's
collectors really emit (measured by running them) plus 100 synthetic users.

    .venv/bin/python bench/store_bench.py [--days N] [--json]

Goals (issue 2): ingest >= 100,000 rows/s for batched inserts; chart query p95 <= 30 ms for a
24 h and a 7-day window; store growth <= 30 MB/day at default intervals.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lightkeeper.agent.store.db import Store
from lightkeeper.agent.store.queries import series
from lightkeeper.agent.store.rollup import Retention, apply_retention, rollup
from lightkeeper.collectors.registry import build_collectors
from lightkeeper.config import load

USERS = 100
DAY = 86400.0


def measured_series(tmp: Path, users: int = USERS) -> tuple[list[tuple[str, str, float]],
                                                             list[tuple[str, str, float]], float,
                                                             float]:
    """(system triples, userdir triples, system interval, userdir interval) from a real run."""
    root = tmp / "data"
    for i in range(users):
        d = root / f"user{i:03d}"
        d.mkdir(parents=True)
        for j in range(10):
            (d / f"f{j}.json").write_bytes(b"x" * (1000 + 37 * i + j))
    cfg = load(env={"LIGHTKEEPER_PATHS__STATE_DIR": str(tmp / "state"),
                    "LIGHTKEEPER_PATHS__DATA_ROOT": str(root)}, read_system=False)
    collectors = build_collectors(cfg, watch=False)
    system: dict[tuple[str, str], float] = {}
    userdir: dict[tuple[str, str], float] = {}
    for _ in range(2):  # the second pass has the rates
        for c in collectors:
            target = userdir if c.name == "userdirs" else system
            for metric, label, value in c.collect():
                target[(metric, label)] = value
        time.sleep(1.0)
    sys_interval = userdir_interval = 0.0
    for c in collectors:
        if c.name == "userdirs":
            userdir_interval = c.interval
        else:
            sys_interval = c.interval
        c.close()
    return ([(m, lab, v) for (m, lab), v in sorted(system.items())],
            [(m, lab, v) for (m, lab), v in sorted(userdir.items())], sys_interval,
            userdir_interval)


class Generator:
    """Realistic samples for a set of series: the measured value with a random walk on top."""
    def __init__(self, triples: list[tuple[str, str, float]], interval: float, seed: int) -> None:
        self.metrics = [m for m, _, _ in triples]
        self.labels = [lab for _, lab, _ in triples]
        self.base = np.array([max(abs(v), 1e-3) for _, _, v in triples])
        self.interval = interval
        self.rng = np.random.default_rng(seed)
        self.level = np.ones(len(triples))

    def rows(self, t0: float, t1: float) -> list[tuple[float, str, str, float]]:
        """Samples at every interval tick in [t0, t1)."""
        first = np.ceil(t0 / self.interval) * self.interval
        ticks = np.arange(first, t1, self.interval)
        out: list[tuple[float, str, str, float]] = []
        n = len(self.metrics)
        for t in ticks:
            self.level = np.clip(self.level + self.rng.normal(0, 0.02, n), 0.5, 1.5)
            values = np.round(self.base * self.level, 3)
            t = float(t)
            out.extend(zip([t] * n, self.metrics, self.labels, values.tolist(), strict=True))
        return out


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q))


def bench_ingest(tmp: Path, gen: Generator, report: dict) -> None:
    print("== ingest (Store.add_samples + flush, Arrow under the hood)")
    rows = gen.rows(0, 0 + 30 * 3600)  # a few hundred thousand real-looking rows
    rows = (rows * (1 + 1_000_000 // max(len(rows), 1)))[:1_000_000]
    for batch in (100_000, 10_000, 1_000, 100):
        store = Store(tmp / f"ingest-{batch}.duckdb")
        n = min(len(rows), batch * 200)
        t0 = time.perf_counter()
        for i in range(0, n, batch):
            store.add_samples(rows[i:i + batch])
            store.flush()
        dt = time.perf_counter() - t0
        store.close()
        rate = n / dt
        report[f"ingest_rows_per_s_batch_{batch}"] = rate
        print(f"  batch {batch:>7,} rows: {rate:>12,.0f} rows/s  ({n:,} rows in {dt:.2f} s)")
    # reference: executemany on the same rows
    store = Store(tmp / "ingest-executemany.duckdb")
    n = 20_000
    t0 = time.perf_counter()
    with store.transaction() as con:
        con.executemany("INSERT INTO samples (ts, metric, label, value) VALUES (?, ?, ?, ?)",
                        rows[:n])
    dt = time.perf_counter() - t0
    store.close()
    report["reference_executemany_rows_per_s"] = n / dt
    print(f"  reference: executemany, {n:,} rows in one transaction: {n / dt:>12,.0f} rows/s")
    print("  goal: >= 100,000 rows/s")


def fill(store: Store, gens: list[Generator], start: float, end: float, chunk: float,
         maintenance_every: float | None, retention: Retention) -> None:
    t = start
    next_maint = start + (maintenance_every or 0)
    while t < end:
        t1 = min(t + chunk, end)
        for g in gens:
            store.add_samples(g.rows(t, t1))
        store.flush()
        t = t1
        if maintenance_every and t >= next_maint:
            rollup(store, now=t)
            apply_retention(store, retention, now=t)
            next_maint += maintenance_every


def bench_queries(tmp: Path, gens: list[Generator], report: dict, days: int = 7) -> None:
    print(f"== chart queries (agent.store.queries.series) over {days} days of data")
    retention = Retention()
    store = Store(tmp / "queries.duckdb")
    end = 1_800_000_000.0
    t0 = time.perf_counter()
    fill(store, gens, end - days * DAY, end, 3600, 6 * 3600, retention)
    rollup(store, now=end)
    apply_retention(store, retention, now=end)
    store.checkpoint()
    counts = {t: store.execute(f"SELECT count(*) FROM {t}")[0][0]
              for t in ("samples", "samples_1m", "samples_1h")}
    print(f"  filled in {time.perf_counter() - t0:.1f} s: " +
          ", ".join(f"{t} {n:,} rows" for t, n in counts.items()))
    cases = [
        ("24h cpu_usage_ratio total", "cpu_usage_ratio", "", 86400),
        ("24h cpu_usage_ratio all cores", "cpu_usage_ratio", None, 86400),
        ("24h network rx all interfaces", "network_receive_bytes_per_second", None, 86400),
        ("24h userdir_bytes one user", "userdir_bytes", "user042", 86400),
        ("7d cpu_usage_ratio total", "cpu_usage_ratio", "", 7 * 86400),
        ("7d memory_available_ratio", "memory_available_ratio", "", 7 * 86400),
        ("7d userdir_bytes all users", "userdir_bytes", None, 7 * 86400),
    ]
    for name, metric, label, window in cases:
        times = []
        result = None
        for i in range(40):
            q0 = time.perf_counter()
            result = series(store, metric, label=label, window=window, retention=retention,
                            now=end - i)  # a slightly different window each time
            times.append((time.perf_counter() - q0) * 1000)
        points = sum(len(v) for v in result["series"].values())
        p50, p95 = pct(times, 50), pct(times, 95)
        report[f"query_{name.replace(' ', '_')}_p50_ms"] = p50
        report[f"query_{name.replace(' ', '_')}_p95_ms"] = p95
        print(f"  {name:<34} {result['resolution']:<10} {points:>6} points  "
              f"p50 {p50:6.1f} ms  p95 {p95:6.1f} ms")
    # reference: the same 24 h chart straight from raw samples, no rollups
    times = []
    for i in range(20):
        q0 = time.perf_counter()
        store.execute("SELECT floor(ts / 900) * 900 AS b, label, avg(value) FROM samples "
                      "WHERE metric = ? AND ts >= ? GROUP BY b, label ORDER BY label, b",
                      ["cpu_usage_ratio", end - i - 86400])
        times.append((time.perf_counter() - q0) * 1000)
    report["reference_raw_24h_all_cores_p50_ms"] = pct(times, 50)
    report["reference_raw_24h_all_cores_p95_ms"] = pct(times, 95)
    print(f"  reference: 24h all cores from raw samples: p50 {pct(times, 50):6.1f} ms  "
          f"p95 {pct(times, 95):6.1f} ms")
    print("  goal: p95 <= 30 ms")
    store.close()


def bench_growth(tmp: Path, gens: list[Generator], report: dict, days: int) -> None:
    per_day = sum(len(g.metrics) * DAY / g.interval for g in gens)
    print(f"== store growth: {sum(len(g.metrics) for g in gens)} series, {per_day:,.0f} samples "
          f"per day, flush every 60 s, rollup + retention every 10 min (defaults otherwise)")
    retention = Retention()
    path = tmp / "growth.duckdb"
    store = Store(path)
    store.checkpoint()
    empty = path.stat().st_size
    start = 1_800_000_000.0
    sizes = [empty]
    for day in range(days):
        t0 = time.perf_counter()
        fill(store, gens, start + day * DAY, start + (day + 1) * DAY, 60, 600, retention)
        store.checkpoint()
        size = path.stat().st_size + (os.path.getsize(str(path) + ".wal")
                                      if os.path.exists(str(path) + ".wal") else 0)
        sizes.append(size)
        print(f"  after day {day + 1}: {size / 1e6:7.1f} MB (+{(size - sizes[-2]) / 1e6:5.1f} MB) "
              f"simulated in {time.perf_counter() - t0:.0f} s")
    store.close()
    report["growth_day1_mb"] = (sizes[1] - sizes[0]) / 1e6
    report["growth_per_day_mb_last"] = (sizes[-1] - sizes[-2]) / 1e6
    report["store_mb_after_days"] = sizes[-1] / 1e6
    report["growth_per_day_mb_average"] = (sizes[-1] - sizes[0]) / days / 1e6
    print(f"  first day: {report['growth_day1_mb']:.1f} MB; average over {days} days: "
          f"{report['growth_per_day_mb_average']:.1f} MB/day; last day: "
          f"{report['growth_per_day_mb_last']:.1f} MB (raw samples are kept "
          f"{retention.raw_hours:.0f} h, then their space is reused; 1-minute rollups grow "
          f"for {retention.minute_days:.0f} days, 1-hour rollups for {retention.hour_days:.0f})")
    print("  goal: <= 30 MB/day")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=7, help="days simulated for the growth figure")
    ap.add_argument("--query-days", type=int, default=7)
    ap.add_argument("--json", action="store_true", help="print the figures as JSON at the end")
    args = ap.parse_args()
    report: dict = {}
    with tempfile.TemporaryDirectory(prefix="lk-store-bench-") as d:
        tmp = Path(d)
        system, userdir, sys_iv, user_iv = measured_series(tmp)
        report.update(system_series=len(system), userdir_series=len(userdir),
                      system_interval_s=sys_iv, userdir_interval_s=user_iv)
        print(f"series on this machine: {len(system)} system at {sys_iv:g} s, "
              f"{len(userdir)} per-user/userdir at {user_iv:g} s ({USERS} users)")
        gens = [Generator(system, sys_iv, 1), Generator(userdir, user_iv, 2)]
        bench_ingest(tmp, gens[0], report)
        bench_queries(tmp, gens, report, args.query_days)
        bench_growth(tmp, [Generator(system, sys_iv, 3), Generator(userdir, user_iv, 4)],
                     report, args.days)
    if args.json:
        print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
