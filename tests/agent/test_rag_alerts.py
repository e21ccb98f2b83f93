"""LightRAG alerts evaluated by the agent: p95 latency per op and mode, error rate, and silence
of a user that was busy. Records go through the real spool ingestion into the store."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lightkeeper import config
from lightkeeper.agent.alerts import AlertEvaluator, configured_rules, list_alerts
from lightkeeper.agent.ingest import SpoolIngester
from lightkeeper.agent.rag_health import FORGET_AFTER, HealthGauges, health_samples
from lightkeeper.agent.store.db import Store
from lightkeeper.catalog import LATENCY_BUCKETS
from tests.agent.spoolgen import dead_pid, record, spool_name, write_records


def _ingest(tmp_path: Path, store: Store, records: list[dict]) -> None:
    spool = tmp_path / "spool"
    spool.mkdir(exist_ok=True)
    write_records(spool / spool_name(dead_pid(), 1, len(list(spool.iterdir()))), records)
    assert SpoolIngester(store, spool).ingest_once() == len(records)


def _rec(i: int, ts: float, user: str = "alice", op: str = "query", mode: str | None = "mix",
         duration: float = 0.05, ok: bool = True) -> dict:
    r = record(i, user=user, op=op, mode=mode)
    r.update(ts=ts, duration_s=duration, outcome="ok" if ok else "error",
             error_class=None if ok else "TimeoutError")
    return r


def test_latency_errors_and_silence_fire_in_the_agent(tmp_path: Path) -> None:
    store = Store(tmp_path / "m.duckdb")
    now = time.time()
    recs = []
    # mix queries slow (20 s), 3 of 10 failing; naive fast; inserts fine
    recs += [_rec(i, now - 60 + i, duration=20.0, ok=i >= 3) for i in range(10)]
    recs += [_rec(100 + i, now - 60 + i, mode="naive", duration=0.04) for i in range(10)]
    recs += [_rec(200 + i, now - 60 + i, op="insert", mode=None, duration=3.0) for i in range(6)]
    # bob was busy an hour ago and then stopped
    recs += [_rec(300 + i, now - 3000 + i, user="bob", mode="naive") for i in range(8)]
    # carol did two operations: never busy, her silence is not an alert
    recs += [_rec(400 + i, now - 3000 + i, user="carol") for i in range(2)]
    _ingest(tmp_path, store, recs)

    values = {(m, lab): v for m, lab, v in health_samples(store, now)}
    assert values[("rag_query_latency_p95_seconds", "mix")] == 20.0
    assert values[("rag_query_latency_p95_seconds", "naive")] < 0.05
    assert abs(values[("rag_error_ratio", "query:mix")] - 0.3) < 1e-9
    assert values[("rag_error_ratio", "query:naive")] == 0
    assert values[("rag_write_latency_p95_seconds", "insert")] == 3.0
    assert values[("rag_silent_seconds", "bob")] > 2900
    assert ("rag_silent_seconds", "carol") not in values
    assert values[("rag_silent_seconds", "alice")] < 120
    assert values[("rag_server_silent_seconds", "")] < 120

    cfg = config.load(env={}, read_system=False)
    ev = AlertEvaluator(configured_rules(cfg), store, lambda *a, **k: None)
    current = {k: (now, v) for k, v in values.items()}
    ev.evaluate(current, now)
    ev.evaluate(current, now + 130)  # past the rules' 2 minutes
    fired = {(a["rule"], a["label"], a["severity"]) for a in list_alerts(store)}
    assert fired == {("rag_query_latency_high", "mix", "warning"),
                     ("rag_error_rate_high", "query:mix", "critical"),
                     ("rag_operations_stopped", "bob", "warning")}, fired


def test_too_few_operations_give_no_p95(tmp_path: Path) -> None:
    store = Store(tmp_path / "m.duckdb")
    now = time.time()
    _ingest(tmp_path, store, [_rec(i, now - 10, duration=50.0) for i in range(4)])
    assert not [t for t in health_samples(store, now) if "silent" not in t[0]]


def test_buckets_resolve_50_to_500_ms() -> None:
    inside = [b for b in LATENCY_BUCKETS if 0.05 <= b <= 0.5]
    assert len(inside) >= 8
    assert max(b - a for a, b in zip(inside, inside[1:], strict=False)) <= 0.1 + 1e-9


class _CountingStore(Store):
    """The real store, counting the queries it answers."""
    reads = 0

    def read(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple]:
        self.reads += 1
        return super().read(sql, params)


def test_an_idle_server_costs_no_health_query_until_operations_arrive(tmp_path: Path) -> None:
    store = _CountingStore(tmp_path / "m.duckdb")
    gauges = HealthGauges()
    now = time.time()
    assert gauges.samples(store, 0, now) == [] and store.reads == 2  # a start asks the store
    assert gauges.samples(store, 0, now + 30) == [] and store.reads == 2  # nothing came since
    spool = tmp_path / "spool"
    spool.mkdir()
    write_records(spool / spool_name(dead_pid(), 1, 0),
                  [_rec(i, now - 60 + i, duration=20.0) for i in range(10)])
    ingester = SpoolIngester(store, spool)
    ingester.ingest_once()
    first = dict(((m, lab), v) for m, lab, v in gauges.samples(store, ingester.stats.rows, now))
    assert first[("rag_query_latency_p95_seconds", "mix")] == 20.0 and store.reads == 4
    # while the answer is not empty, every pass asks: silences grow with time alone
    later = dict(((m, lab), v) for m, lab, v in
                 gauges.samples(store, ingester.stats.rows, now + 100))
    assert later[("rag_silent_seconds", "alice")] > first[("rag_silent_seconds", "alice")]
    assert store.reads == 6
    # the operations leave every window: empty again, and the passes stop asking
    gone = now + FORGET_AFTER + 3600
    assert gauges.samples(store, ingester.stats.rows, gone) == [] and store.reads == 8
    assert gauges.samples(store, ingester.stats.rows, gone + 30) == [] and store.reads == 8
