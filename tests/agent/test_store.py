"""The metrics store: migrations, batched writes, rollups, retention, chart and latency queries."""

from __future__ import annotations

import bisect
import random
from pathlib import Path

import duckdb
import numpy as np
import pytest

from lightkeeper.agent.store import ophist, queries
from lightkeeper.agent.store.db import Store, StoreError
from lightkeeper.agent.store.rollup import LATE_SECONDS, Retention, apply_retention, rollup
from lightkeeper.agent.store.schema import LATEST
from lightkeeper.catalog import LATENCY_BUCKETS

NOW = 1_800_000_000.0  # a fixed clock, aligned to the hour


def test_migrations_are_versioned_and_idempotent(tmp_path: Path) -> None:
    s = Store(tmp_path / "m.duckdb")
    assert s.schema_version() == LATEST
    s.add_samples([(NOW, "m", "", 1.0)])
    s.flush()
    s.close()
    s2 = Store(tmp_path / "m.duckdb")  # re-opening migrates nothing and keeps data
    assert s2.schema_version() == LATEST
    assert s2.execute("SELECT count(*) FROM samples")[0][0] == 1
    s2.close()


def test_a_failing_migration_lands_none_of_the_pending_ones(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Pending migrations run in one transaction: a store from before the last two versions
    whose next migration breaks keeps its old schema and data, and opens once fixed."""
    from lightkeeper.agent.store import db, schema

    path = tmp_path / "m.duckdb"
    s = Store(path)
    s.add_samples([(NOW, "m", "", 1.0)])
    s.flush()
    s.execute("DROP TABLE rag_ops_1m")
    s.execute("DROP TABLE rag_ops_slow")
    s.execute("DROP TABLE rag_ops_1h")
    s.execute("ALTER TABLE rag_ops DROP COLUMN queue_wait_s")
    s.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', '3')")
    s.close()
    broken = [(v, n, [*st, "SELECT * FROM no_such_table"] if v == LATEST else st)
              for v, n, st in schema.MIGRATIONS]
    monkeypatch.setattr(db, "MIGRATIONS", broken)
    with pytest.raises(Exception, match="no_such_table"):
        Store(path)
    monkeypatch.setattr(db, "MIGRATIONS", schema.MIGRATIONS)
    con = duckdb.connect(str(path), read_only=True)
    try:  # version 4's column did not land either
        assert con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall() \
            == [("3",)]
        assert "queue_wait_s" not in {r[0] for r in con.execute("DESCRIBE rag_ops").fetchall()}
    finally:
        con.close()
    s = Store(path)
    assert s.schema_version() == LATEST
    assert s.execute("SELECT count(*) FROM samples")[0][0] == 1
    s.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    s = Store(tmp_path / "m.duckdb")
    s.execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
    s.close()
    with pytest.raises(StoreError, match="newer than this lightkeeper"):
        Store(tmp_path / "m.duckdb")


def test_store_runs_within_its_memory_limit_and_threads(tmp_path: Path) -> None:
    """DuckDB's limits come from the settings; a query that needs more than the limit spills
    to the temp directory beside the store (in the agent's own state directory) and answers."""
    store = Store(tmp_path / "m.duckdb", memory_limit_mb=48, threads=1)
    (limit, threads, temp), = store.execute(
        "SELECT current_setting('memory_limit'), current_setting('threads'), "
        "current_setting('temp_directory')")
    assert limit == "45.7 MiB" and threads == 1, (limit, threads)  # 48 MB, as DuckDB shows it
    assert Path(temp).parent == tmp_path
    # a sort of about 200 MB of rows: more than the limit, so it spills, then answers
    (n, first, last), = store.execute(
        "SELECT count(*), min(s), max(s) FROM (SELECT md5(i::VARCHAR) || repeat('x', 60) AS s "
        "FROM range(2000000) t(i) ORDER BY s)")
    assert n == 2_000_000 and first < last
    store.close()


def test_reads_answer_while_a_writer_holds_the_store(tmp_path: Path) -> None:
    """A console's query runs on a reading cursor: a writer holding the store's lock in an open
    transaction (an ingest pass, a rollup) neither delays it nor shows it uncommitted rows; a
    checkpoint waits for the readers inside and keeps new ones out until it is done."""
    import threading

    s = Store(tmp_path / "m.duckdb")
    s.add_samples([(NOW, "m", "", 1.0)])
    s.flush()
    inside, release = threading.Event(), threading.Event()

    def writer() -> None:
        with s.transaction() as con:
            con.execute("INSERT INTO samples VALUES (?, 'm', '', 2.0)", [NOW + 1])
            inside.set()
            release.wait(30)

    t = threading.Thread(target=writer)
    t.start()
    try:
        assert inside.wait(30)
        answer: list[list[tuple]] = []
        reader = threading.Thread(target=lambda: answer.append(
            s.read("SELECT value FROM samples ORDER BY ts")))
        reader.start()
        reader.join(20)
        assert not reader.is_alive(), "a read waited for the writer's lock"
        assert answer == [[(1.0,)]]  # the committed row only
        assert s.read_dicts("SELECT count(*) AS n FROM samples") == [{"n": 1}]
    finally:
        release.set()
        t.join(30)
    assert s.read("SELECT value FROM samples ORDER BY ts") == [(1.0,), (2.0,)]

    # the checkpoint's side: readers inside hold it off; a reader arriving meanwhile waits
    order: list[str] = []
    with s.readers.shared():
        cp = threading.Thread(target=lambda: (s.checkpoint(), order.append("checkpoint")))
        cp.start()
        cp.join(0.5)
        assert cp.is_alive() and order == []  # waiting for the reader inside
    cp.join(30)
    assert order == ["checkpoint"]
    s.close()


def test_corrupt_store_is_reported_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "m.duckdb"
    path.write_bytes(b"this is not a duckdb file" * 1000)
    before = path.read_bytes()
    with pytest.raises(StoreError, match="corrupt|cannot open"):
        Store(path)
    assert path.read_bytes() == before


def test_rollups_match_raw_aggregates(tmp_path: Path) -> None:
    s = Store(tmp_path / "m.duckdb")
    rng = random.Random(1)
    start = NOW - 3 * 3600
    rows = [(start + i * 5.0, "cpu_usage_ratio", "", rng.random()) for i in range(3 * 720)]
    rows += [(start + i * 5.0, "disk_free_ratio", "/", 0.5 + i * 1e-5) for i in range(3 * 720)]
    s.add_samples(rows)
    assert s.flush() == len(rows)
    written = rollup(s, now=NOW)
    assert written["samples_1m"] == 2 * 180
    assert written["samples_1h"] == 2 * 3
    values = np.array([v for _, m, _, v in rows if m == "cpu_usage_ratio"])
    minute0 = values[:12]
    r = s.execute("SELECT avg, min, max, last, n FROM samples_1m WHERE metric = 'cpu_usage_ratio' "
                  "ORDER BY ts LIMIT 1")[0]
    assert r[0] == pytest.approx(minute0.mean())
    assert (r[1], r[2], r[3], r[4]) == (pytest.approx(minute0.min()), pytest.approx(minute0.max()),
                                        pytest.approx(minute0[-1]), 12)
    h = s.execute("SELECT avg, n FROM samples_1h WHERE metric = 'cpu_usage_ratio' ORDER BY ts "
                  "LIMIT 1")[0]
    assert h[0] == pytest.approx(values[:720].mean()) and h[1] == 720
    # idempotent: a second pass writes the same buckets again, no duplicates
    rollup(s, now=NOW)
    assert s.execute("SELECT count(*) FROM samples_1m")[0][0] == 2 * 180


def test_a_bucket_is_aggregated_again_only_while_late_samples_may_come(tmp_path: Path) -> None:
    """The last complete bucket is done again for LATE_SECONDS after it ends, so a sample that
    comes late is counted; after that a pass in which no bucket ended leaves it alone (it
    re-aggregated the last hour at every pass, every minute, until the next hour ended), and
    the pass that rolls up the next bucket does it once more."""
    s = Store(tmp_path / "m.duckdb")
    hour = NOW - 3600
    s.add_samples([(hour + i * 60.0, "userdir_bytes", "alice", 100.0) for i in range(60)])
    s.add_samples([(hour + i * 60.0, "cpu_usage_ratio", "", 0.5) for i in range(60)])
    s.flush()
    assert rollup(s, now=NOW + 60)["samples_1h"] == 2
    late = NOW - 1.0  # the hour's last round, flushed after the first pass
    s.add_samples([(late, "userdir_bytes", "alice", 700.0)])
    s.flush()
    assert rollup(s, now=NOW + 120)["samples_1h"] == 2
    assert s.execute("SELECT max, n FROM samples_1h WHERE ts = ? AND label = 'alice'",
                     [hour])[0] == (700.0, 61)
    assert "samples_1h" not in rollup(s, now=NOW + LATE_SECONDS + 60)
    s.add_samples([(late, "userdir_bytes", "alice", 900.0)])  # later still
    s.flush()
    assert "samples_1h" not in rollup(s, now=NOW + LATE_SECONDS + 120)
    assert s.execute("SELECT max, n FROM samples_1h WHERE ts = ? AND label = 'alice'",
                     [hour])[0] == (700.0, 61)
    # when the next hour ends, both are rolled up: the later sample is counted then
    s.add_samples([(NOW + 3000.0, "userdir_bytes", "alice", 5.0)])
    s.add_samples([(NOW + 3000.0, "cpu_usage_ratio", "", 0.5)])
    s.flush()
    assert rollup(s, now=NOW + 3600 + 60)["samples_1h"] == 4
    assert s.execute("SELECT max, n FROM samples_1h WHERE ts = ? AND label = 'alice'",
                     [hour])[0] == (900.0, 62)


def test_retention_per_resolution_keeps_unrolled_raw(tmp_path: Path) -> None:
    s = Store(tmp_path / "m.duckdb")
    old = NOW - 5 * 86400
    s.add_samples([(old + i * 60, "m", "", 1.0) for i in range(10)])
    s.add_samples([(NOW - 60 + i, "m", "", 2.0) for i in range(30)])
    s.flush()
    # before any rollup, nothing raw may go: it would be lost
    assert apply_retention(s, Retention(raw_hours=1), now=NOW) == {
        "samples_1m": 0, "samples_1h": 0, "rag_ops": 0, "rag_ops_1m": 0, "rag_ops_1h": 0, "rag_ops_slow": 0,
        "events": 0, "jobs": 0, "alerts": 0, "spool_quarantine": 0, "bench_runs": 0}
    assert s.execute("SELECT count(*) FROM samples")[0][0] == 40
    rollup(s, now=NOW)
    deleted = apply_retention(s, Retention(raw_hours=1, minute_days=2, hour_days=400), now=NOW)
    assert deleted["samples"] == 10  # raw older than 1 h, rolled up
    assert deleted["samples_1m"] == 10  # minute rollups older than 2 days
    assert s.execute("SELECT count(*) FROM samples_1h")[0][0] >= 1  # hours stay


def test_series_uses_coarsest_resolution_and_fresh_tail(tmp_path: Path) -> None:
    s = Store(tmp_path / "m.duckdb")
    start = NOW - 2 * 86400
    s.add_samples([(start + i * 5.0, "mem", "", float(i % 100)) for i in range(int(2 * 86400 / 5))])
    s.flush()
    rollup(s, now=NOW - 600)  # the last 10 minutes are not rolled up yet
    s.add_samples([(NOW - 5, "mem", "", 1000.0)])
    s.flush()
    ret = Retention()
    short = queries.series(s, "mem", window=300, retention=ret, now=NOW)
    assert short["resolution"] == "samples"
    day = queries.series(s, "mem", window=86400, retention=ret, now=NOW)
    assert day["resolution"] == "samples_1m" and day["step"] >= 60
    week = queries.series(s, "mem", window=7 * 86400, retention=ret, now=NOW)
    assert week["resolution"] == "samples_1h"
    # the newest point (not rolled up) is present in the 24 h chart
    last_ts, _ = day["series"][""][-1]
    assert last_ts <= NOW - 5 < last_ts + day["step"]
    peak = queries.series(s, "mem", window=86400, retention=ret, now=NOW, agg="max")
    assert peak["series"][""][-1][1] == 1000.0  # the newest raw sample is in the chart
    # bucket averages equal the raw averages where rollups are complete
    b0_ts, b0 = day["series"][""][1]
    raw = s.execute("SELECT avg(value) FROM samples WHERE metric='mem' AND ts >= ? AND ts < ?",
                    [b0_ts, b0_ts + day["step"]])[0][0]
    assert b0 == pytest.approx(raw)


def test_series_label_filters(tmp_path: Path) -> None:
    s = Store(tmp_path / "m.duckdb")
    s.add_samples([(NOW - 10, "disk_free_ratio", m, 0.5) for m in ("/", "/srv", "/srv/data")])
    s.flush()
    assert set(queries.series(s, "disk_free_ratio", "/srv*", 300, now=NOW)["series"]) == {
        "/srv", "/srv/data"}
    assert set(queries.series(s, "disk_free_ratio", "/", 300, now=NOW)["series"]) == {"/"}
    # a prefix is a prefix: no LIKE wildcards in it (a user id's "_" matched any character)
    assert not queries.series(s, "disk_free_ratio", "/s_v*", 300, now=NOW)["series"]
    with pytest.raises(ValueError):
        queries.parse_window("soon")


def test_latency_quantiles_and_version_compare(tmp_path: Path) -> None:
    s = Store(tmp_path / "m.duckdb")
    rng = np.random.default_rng(3)
    durations_a = rng.gamma(2.0, 0.05, 400)
    durations_b = rng.gamma(2.0, 0.08, 400)
    rows = []
    for i, d in enumerate(durations_a):
        rows.append((NOW - 1000 + i, "u1", "query", "mix", float(d), float(d) * 0.7, 1,
                     float(d) * 0.1, 1, 1, 10, 5, 100, "ok", None, 1, 1, None, f"a{i}"))
    for i, d in enumerate(durations_b):
        rows.append((NOW - 1000 + i, "u2", "query", "mix", float(d), 0.0, 0, 0.0, 0, 0, 10, 5,
                     100, "error" if i % 10 == 0 else "ok", "Timeout" if i % 10 == 0 else None,
                     2, 1, None, f"b{i}"))
    s.con.executemany("INSERT INTO rag_ops (ts, user_id, op, mode, duration_s, llm_s, llm_calls,"
                      " embed_s, embed_calls, embed_items, tokens_in, tokens_out, result_bytes,"
                      " outcome, error_class, tuning_version, pid, run_id, op_id) VALUES ("
                      + ",".join("?" * 19) + ")", rows)
    s.execute(ophist.BACKFILL)  # rows written straight into rag_ops: their histograms as the
    # migration builds them (ingest builds them per batch: tests/agent/test_ophist.py)
    summary = {(r["tuning_version"] if "tuning_version" in r else None, r["op"]): r
               for r in queries.ops_summary_raw(s, 3600, tuning_version=1, now=NOW)}
    r = summary[(None, "query")]
    assert r["count"] == 400
    assert r["p50"] == pytest.approx(np.quantile(durations_a, 0.5))
    assert r["p95"] == pytest.approx(np.quantile(durations_a, 0.95))
    assert r["p99"] == pytest.approx(np.quantile(durations_a, 0.99))
    assert r["share_llm"] == pytest.approx(0.7)
    hist = queries.ops_summary(s, 3600, tuning_version=1, now=NOW)[0]
    assert hist["count"] == 400 and hist["share_llm"] == pytest.approx(0.7)
    for q in ("p50", "p95", "p99"):  # within the bucket of the exact quantile
        edges = (0.0, *LATENCY_BUCKETS)
        i = bisect.bisect_left(LATENCY_BUCKETS, r[q])
        assert edges[i] - 1e-9 <= hist[q] <= LATENCY_BUCKETS[i] + 1e-9
    cmp = queries.compare_versions(s, 1, 2, now=NOW)
    row = cmp["rows"][0]
    assert row["a_count"] == 400 and row["b_count"] == 400 and not row["thin_evidence"]
    # from histograms: the change of the interpolated medians
    a50 = queries.ops_summary(s, 3600, tuning_version=1, now=NOW)[0]["p50"]
    b50 = queries.ops_summary(s, 3600, tuning_version=2, now=NOW)[0]["p50"]
    assert row["change_p50"] == pytest.approx((b50 - a50) / a50)
    assert abs(row["change_p50"] - (np.quantile(durations_b, 0.5) - np.quantile(durations_a, 0.5))
               / np.quantile(durations_a, 0.5)) < 0.5
    lat = queries.latency(s, 3600, step=600, now=NOW)
    assert sum(b["count"] for b in lat["series"]["query/mix"]) == 800
    assert sum(b["errors"] for b in lat["series"]["query/mix"]) == 40
    top = queries.top_users(s, 3600, now=NOW)
    assert top[0]["user"] == "u2"


def test_slow_series_skip_minute_rollups_but_reach_hours_and_charts(tmp_path: Path) -> None:
    s = Store(tmp_path / "m.duckdb")
    start = NOW - 3 * 3600
    s.add_samples([(start + i * 60.0, "userdir_bytes", "alice", 1000.0 + i) for i in range(180)])
    s.add_samples([(start + i * 5.0, "cpu_usage_ratio", "", 0.5) for i in range(3 * 720)])
    s.flush()
    rollup(s, now=NOW)
    minute_metrics = {r[0] for r in s.execute("SELECT DISTINCT metric FROM samples_1m")}
    assert minute_metrics == {"cpu_usage_ratio"}
    hours = s.execute("SELECT ts, avg, n FROM samples_1h WHERE metric = 'userdir_bytes' "
                      "ORDER BY ts")
    assert [h[2] for h in hours] == [60, 60, 60]
    assert hours[0][1] == pytest.approx(1000 + 29.5)
    day = queries.series(s, "userdir_bytes", "alice", window=86400, now=NOW)
    assert day["resolution"] == "samples"
    assert sum(1 for _, v in day["series"]["alice"] if v is not None) == 12  # 3 h at 15 min
    week = queries.series(s, "userdir_bytes", "alice", window=7 * 86400, now=NOW)
    assert week["resolution"] == "samples_1h" and len(week["series"]["alice"]) >= 1
    # raw slow samples are only deleted once they are in the hour rollups
    deleted = apply_retention(s, Retention(raw_hours=1), now=NOW)
    assert deleted["samples"] > 0
    assert s.execute("SELECT count(*) FROM samples_1h WHERE metric = 'userdir_bytes'")[0][0] == 3


def test_every_history_table_has_a_retention(tmp_path: Path) -> None:
    """Events, jobs, alerts, quarantined lines and bench runs age out; what is still running or
    firing stays whatever its age, so the store stays bounded with uptime."""
    s = Store(tmp_path / "m.duckdb")
    old, new = NOW - 400 * 86400, NOW - 60
    for ts in (old, new):
        s.add_event("audit", "x.happened", component="test", ts=ts)
    s.execute("INSERT INTO jobs (id, kind, state, created, finished) VALUES "
              "('a', 'backup', 'succeeded', ?, ?), ('b', 'backup', 'running', ?, NULL), "
              "('c', 'backup', 'failed', ?, ?)", [old, old, old, new, new])
    s.execute("INSERT INTO alerts (rule, label, severity, started, ended) VALUES "
              "('r', '', 'warning', ?, ?), ('r', 'x', 'warning', ?, NULL), "
              "('r', 'y', 'warning', ?, ?)", [old, old + 1, old, new, new])
    s.execute("INSERT INTO spool_quarantine VALUES (?, 'f', 0, 'x', 'bad'), "
              "(?, 'f', 1, 'y', 'bad')", [old, new])
    s.execute("INSERT INTO bench_runs (id, ts) VALUES ('o', ?), ('n', ?)", [old, new])
    deleted = apply_retention(s, Retention(), now=NOW)
    assert {k: deleted[k] for k in ("events", "jobs", "alerts", "spool_quarantine",
                                    "bench_runs")} == {
        "events": 1, "jobs": 1, "alerts": 1, "spool_quarantine": 1, "bench_runs": 1}
    assert sorted(r[0] for r in s.execute("SELECT id FROM jobs")) == ["b", "c"]
    assert s.execute("SELECT count(*) FROM alerts WHERE ended IS NULL")[0][0] == 1
