"""Per-minute latency histograms (agent.store.ophist): kept by spool ingestion, merged by
maintenance, and the rag.latency / rag.summary answers they give agree with the raw rows:
counts, errors, sums exactly, quantiles within the bucket holding the exact quantile."""

from __future__ import annotations

import bisect
import random
import time
from pathlib import Path

import numpy as np
import pytest

from lightkeeper.agent.alerts import AlertEvaluator, Rule, list_alerts
from lightkeeper.agent.ingest import SpoolIngester
from lightkeeper.agent.store import ophist, queries, slowops
from lightkeeper.agent.store.db import Store
from lightkeeper.agent.store.rollup import Retention, apply_retention
from lightkeeper.catalog import LATENCY_BUCKETS
from tests.agent.spoolgen import dead_pid, record, spool_name, write_records


def bucket_bounds(values: np.ndarray, q: float) -> tuple[float, float]:
    """The interval a histogram quantile may fall in: from the lower edge of the bucket of the
    order statistic below rank q to the upper edge of the bucket of the one above (the exact
    quantile interpolates between the two), clamped to the observed min and max."""
    v = np.sort(values)
    pos = q * (len(v) - 1)
    lo_v, hi_v = v[int(np.floor(pos))], v[int(np.ceil(pos))]
    edges = (0.0, *LATENCY_BUCKETS)
    i = bisect.bisect_left(LATENCY_BUCKETS, lo_v)
    j = bisect.bisect_left(LATENCY_BUCKETS, hi_v)
    lower = edges[i] if i < len(edges) else LATENCY_BUCKETS[-1]
    upper = LATENCY_BUCKETS[j] if j < len(LATENCY_BUCKETS) else float(v[-1])
    return max(lower, float(v[0])) - 1e-9, min(upper, float(v[-1])) + 1e-9


def ingest(tmp_path: Path, records: list[dict], store: Store | None = None,
           first_file: int = 0) -> tuple[Store, SpoolIngester]:
    spool = tmp_path / "spool"
    spool.mkdir(exist_ok=True)
    store = store or Store(tmp_path / "m.duckdb")
    pid = dead_pid()
    # several files, so several batches land in the same minutes
    for k in range(4):
        write_records(spool / spool_name(pid, 1000, first_file + k), records[k::4])
    ing = SpoolIngester(store, spool, stage_dir=tmp_path)
    assert ing.ingest_once() == len(records)
    return store, ing


def mixed_records(n: int, now: float, seed: int = 7, span: float = 2990.0) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        op, mode = rng.choice([("query", "mix"), ("query", "local"), ("insert", "pipeline")])
        r = record(i, user=f"u{rng.randrange(20)}", op=op, mode=mode,
                   version=rng.choice([1, 2]))
        r["ts"] = now - 10 - rng.random() * span
        r["duration_s"] = rng.lognormvariate(-1.5, 1.0) * (5 if op == "insert" else 1)
        r["llm_s"] = r["duration_s"] * 0.5
        if op == "insert":
            r["queue_wait_s"] = rng.lognormvariate(-2.0, 1.2)
        if rng.random() < 0.1:
            r["outcome"], r["error_class"] = "error", "Timeout"
        out.append(r)
    return out


def test_ingest_keeps_histograms_that_answer_like_the_raw_rows(tmp_path: Path) -> None:
    now = time.time()
    records = mixed_records(3000, now)
    store, _ = ingest(tmp_path, records)
    assert store.execute("SELECT sum(n) FROM rag_ops_1m")[0][0] == 3000
    for version in (None, 1, 2):
        hist = {(r["op"], r["mode"]): r
                for r in queries.ops_summary(store, 3600, tuning_version=version, now=now)}
        raw = {(r["op"], r["mode"]): r
               for r in queries.ops_summary_raw(store, 3600, tuning_version=version, now=now)}
        assert set(hist) == set(raw) == {("query", "mix"), ("query", "local"),
                                         ("insert", "pipeline")}
        for key, h in hist.items():
            r = raw[key]
            for exact in ("count", "errors", "queued"):
                assert h[exact] == r[exact], (key, exact)
            for close in ("mean", "time_total_s", "share_llm", "share_embed", "error_rate",
                          "throughput_per_s", "queue_wait_mean"):
                assert (h[close] is None and r[close] is None) or \
                    abs(h[close] - r[close]) <= 1e-6 * max(1.0, abs(r[close])), (key, close)
            rows = [x for x in records if (x["op"], x["mode"]) == key
                    and version in (None, x["tuning_version"])]
            durations = np.array([x["duration_s"] for x in rows])
            for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
                lo, hi = bucket_bounds(durations, q)
                assert lo <= h[name] <= hi, (key, name, h[name], r[name], lo, hi)
            waits = np.array([x["queue_wait_s"] for x in rows if "queue_wait_s" in x])
            if len(waits):
                for name, q in (("queue_wait_p50", 0.5), ("queue_wait_p95", 0.95)):
                    lo, hi = bucket_bounds(waits, q)
                    assert lo <= h[name] <= hi, (key, name)
            else:
                assert h["queue_wait_p50"] is None
    lat = queries.latency(store, 3600, step=600, now=now)
    raw_lat = queries.latency_raw(store, 3600, step=600, now=now)
    assert lat["step"] == 600 and set(lat["series"]) == set(raw_lat["series"])
    for key, points in lat["series"].items():
        assert [p["ts"] for p in points] == [p["ts"] for p in raw_lat["series"][key]]
        assert [(p["count"], p["errors"]) for p in points] == \
            [(p["count"], p["errors"]) for p in raw_lat["series"][key]]
        op, _, mode = key.partition("/")
        for p in points:
            durations = np.array([x["duration_s"] for x in records if x["op"] == op
                                  and x["mode"] == mode and p["ts"] <= x["ts"] < p["ts"] + 600])
            lo, hi = bucket_bounds(durations, 0.95)
            assert lo <= p["p95"] <= hi
    # one user's figures still come from the raw rows, exactly
    assert queries.ops_summary(store, 3600, user="u3", now=now) == \
        queries.ops_summary_raw(store, 3600, user="u3", now=now)


def test_compaction_merges_minutes_without_changing_answers(tmp_path: Path) -> None:
    now = time.time()
    store, _ = ingest(tmp_path, mixed_records(2000, now, seed=11))
    before_rows = store.execute("SELECT count(*) FROM rag_ops_1m")[0][0]
    summary = queries.ops_summary(store, 3600, now=now)
    lat = queries.latency(store, 3600, now=now)
    merged = ophist.compact(store, now=now)
    assert merged > 0  # four files: up to four rows per minute and series
    after_rows = store.execute("SELECT count(*) FROM rag_ops_1m")[0][0]
    assert after_rows == before_rows - merged
    keys = store.execute("SELECT count(*), count(DISTINCT (ts, op, mode, tuning_version, "
                         "run_id)) FROM rag_ops_1m WHERE ts < ?", [now - ophist.SETTLE_S - 60])
    assert keys[0][0] == keys[0][1]  # one row per past minute and series
    # the same answers, but for the order floats were summed in
    again = queries.ops_summary(store, 3600, now=now)
    assert len(again) == len(summary)
    for row, old in zip(again, summary, strict=True):
        assert row == pytest.approx(old, rel=1e-9)
    after = queries.latency(store, 3600, now=now)
    assert after["series"].keys() == lat["series"].keys()
    for key, points in after["series"].items():
        assert points == pytest.approx(lat["series"][key], rel=1e-9)
    assert ophist.compact(store, now=now) == 0  # idempotent


def test_step_is_whole_minutes_and_retention_covers_histograms(tmp_path: Path) -> None:
    now = time.time()
    store, _ = ingest(tmp_path, mixed_records(500, now, seed=3))
    assert queries.latency(store, 300, now=now)["step"] == 60.0  # the default 5 s step
    assert queries.latency(store, 3600, step=90, now=now)["step"] == 120.0
    apply_retention(store, Retention(ops_days=0.01), now=now)  # keeps the last 864 s
    oldest = store.execute("SELECT min(ts) FROM rag_ops_1m")[0][0]
    assert oldest >= now - 864 - 60


def test_migration_backfills_histograms_of_stored_operations(tmp_path: Path) -> None:
    path = tmp_path / "m.duckdb"
    store = Store(path)
    now = time.time()
    store.execute("INSERT INTO rag_ops (ts, user_id, op, mode, duration_s, outcome) "
                  "SELECT ? - i, 'u1', 'query', 'mix', 0.01 * (i % 40 + 1), 'ok' "
                  "FROM range(1000) t(i)", [now])
    store.execute("DELETE FROM rag_ops_1m")  # as a store from before the table was
    store.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', '4')")
    store.execute("DROP TABLE rag_ops_1m")
    store.close()
    store = Store(path)
    assert store.execute("SELECT sum(n) FROM rag_ops_1m")[0][0] == 1000
    assert queries.ops_summary(store, 3600, now=now)[0]["count"] == 1000


def test_quantile_interpolates_within_the_bucket() -> None:
    # 100 observations in (0.1, 0.15]: the median is half way through that bucket
    cum = [0, 0, 0, 0, 0, 0, 100] + [100] * (len(LATENCY_BUCKETS) - 7)
    assert abs(ophist.quantile(0.5, cum, 100, None, None) - 0.125) < 1e-12
    # clamped to what was observed
    assert ophist.quantile(0.99, cum, 100, 0.11, 0.12) <= 0.12
    assert ophist.quantile(0.01, cum, 100, 0.11, 0.12) >= 0.11
    # the +Inf bucket answers the observed maximum
    inf = [0] * len(LATENCY_BUCKETS)
    assert ophist.quantile(0.5, inf, 3, 400.0, 500.0) == 500.0
    assert ophist.quantile(0.5, inf, 0, None, None) is None


def test_status_alerts_from_memory_match_the_store(tmp_path: Path) -> None:
    store = Store(tmp_path / "m.duckdb")
    rule = Rule(name="hot", metric="temp", direction="above", warning=1.0, critical=5.0, for_seconds=0,
                summary="{label} at {value}")
    ev = AlertEvaluator([rule], store, lambda *a, **k: None)
    now = time.time()

    def same() -> None:
        assert ev.active() == list_alerts(store, active=True)

    same()
    ev.evaluate({("temp", "a"): (now, 2.0), ("temp", "b"): (now, 0.5)}, now)
    same()
    ev.evaluate({("temp", "a"): (now + 1, 7.0), ("temp", "b"): (now + 1, 3.0)}, now + 1)
    same()
    assert {a["label"] for a in ev.active()} == {"a", "b"}
    ev.evaluate({("temp", "a"): (now + 2, 0.0), ("temp", "b"): (now + 2, 3.5)}, now + 2)
    same()
    assert [a["label"] for a in ev.active()] == ["b"]


def raw_slowest(store: Store, window: float, limit: int, now: float) -> list[dict]:
    return store.query_dicts(
        "SELECT ts, user_id AS user, op, mode, duration_s, llm_s, embed_s, outcome, error_class,"
        " tuning_version FROM rag_ops WHERE ts >= ? ORDER BY duration_s DESC, ts LIMIT ?",
        [ophist.window_start(now, window), limit])


def test_slowest_of_each_minute_answer_like_the_raw_rows(tmp_path: Path) -> None:
    now = time.time()
    records = mixed_records(4000, now, seed=5)  # about 80 per minute, in four files
    store, _ = ingest(tmp_path, records)
    kept = store.execute("SELECT count(*) FROM rag_ops_slow")[0][0]
    assert kept < 4000
    for window, limit in ((3600, 8), (900, 20), (300, 1)):
        assert queries.slowest_ops(store, window, limit, now=now) == \
            raw_slowest(store, window, limit, now)
    removed = slowops.trim(store, now=now)
    assert removed > 0  # four batches per minute left up to 4 x KEEP rows
    per_minute = store.execute(
        "SELECT max(c) FROM (SELECT count(*) AS c FROM rag_ops_slow WHERE ts < ? "
        "GROUP BY floor(ts / 60))", [now - slowops.SETTLE_S - 60])[0][0]
    assert per_minute == slowops.KEEP
    for window, limit in ((3600, 8), (900, 20)):
        assert queries.slowest_ops(store, window, limit, now=now) == \
            raw_slowest(store, window, limit, now)
    # a larger limit and one user's slowest come from the raw rows
    assert len(queries.slowest_ops(store, 3600, 500, now=now)) == 500
    mine = queries.slowest_ops(store, 3600, 5, user="u4", now=now)
    assert mine and all(r["user"] == "u4" for r in mine)


def test_hours_rolled_up_answer_like_the_minutes_and_take_late_operations(
        tmp_path: Path) -> None:
    now = time.time()
    store, _ = ingest(tmp_path, mixed_records(3000, now, seed=9, span=5 * 3600))
    before = queries.ops_summary(store, 6 * 3600, now=now)
    lat = queries.latency(store, 6 * 3600, step=3600, now=now)
    assert lat["step"] == 3600
    assert ophist.hour_mark(store) is None
    ophist.compact(store, now=now)
    mark = ophist.hour_mark(store)
    assert mark is not None and mark <= now - ophist.SETTLE_S
    assert store.execute("SELECT count(*) FROM rag_ops_1h")[0][0] > 0
    after = queries.ops_summary(store, 6 * 3600, now=now)
    assert len(after) == len(before)
    for row, old in zip(after, before, strict=True):
        assert row == pytest.approx(old, rel=1e-9)
    lat2 = queries.latency(store, 6 * 3600, step=3600, now=now)
    for key, points in lat2["series"].items():
        assert points == pytest.approx(lat["series"][key], rel=1e-9)
    # a backlog arrives for hours already rolled up: counted once, in its hour
    late = mixed_records(400, now, seed=10, span=5 * 3600)
    for r in late:
        r["ts"] = min(r["ts"], mark - 1)
    ingest(tmp_path, late, store, first_file=10)
    raw = {(r["op"], r["mode"]): r["count"]
           for r in queries.ops_summary_raw(store, 6 * 3600, now=now)}
    hist = {(r["op"], r["mode"]): r["count"]
            for r in queries.ops_summary(store, 6 * 3600, now=now)}
    assert hist == raw and sum(raw.values()) == 3400
    by_hour = queries.latency(store, 6 * 3600, step=3600, now=now)
    raw_hour = queries.latency_raw(store, 6 * 3600, step=3600, now=now)
    assert sum(p["count"] for s in by_hour["series"].values() for p in s) == \
        sum(p["count"] for s in raw_hour["series"].values() for p in s) == 3400
    assert queries.latency(store, 86400, now=now)["step"] == 3600  # 24 h: hourly points
