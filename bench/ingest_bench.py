"""Spool → store ingestion rate (goal: at least 50,000 operations/s).

Writes N operation records in the spool format (several rotated files of finished processes),
ingests them with the agent's SpoolIngester into a fresh DuckDB store, and prints operations per
second. Reference in the same script: DuckDB's own `read_json` of the same files straight into the
table (no offsets, no validation, no quarantine), the fastest path DuckDB offers.

Usage: .venv/bin/python bench/ingest_bench.py [N]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lightkeeper.agent.ingest import SpoolIngester
from lightkeeper.agent.store.db import Store
from tests.agent.spoolgen import dead_pid, record, spool_name, write_records


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 500_000
    per_file = 50_000
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        spool = root / "spool"
        spool.mkdir()
        pid = dead_pid()
        t0 = time.perf_counter()
        for seq in range((n + per_file - 1) // per_file):
            count = min(per_file, n - seq * per_file)
            write_records(spool / spool_name(pid, 1000, seq),
                          [record(i, user=f"user{i % 50}") for i in range(count)])
        gen = time.perf_counter() - t0
        size = sum(p.stat().st_size for p in spool.iterdir())

        # reference: DuckDB reading the same NDJSON files directly
        ref_store = Store(root / "ref.duckdb")
        t0 = time.perf_counter()
        ref_store.execute(
            "INSERT INTO rag_ops (ts, user_id, op, mode, duration_s, llm_s, llm_calls, embed_s,"
            " embed_calls, embed_items, tokens_in, tokens_out, result_bytes, outcome, error_class,"
            " tuning_version, pid, run_id, op_id) SELECT ts, \"user\", op, mode, duration_s, llm_s,"
            " llm_calls, embed_s, embed_calls, embed_items, tokens_in, tokens_out, result_bytes,"
            " outcome, error_class, tuning_version, pid, run_id, op_id FROM read_json(?,"
            " format='newline_delimited')", [str(spool / "*.jsonl")])
        ref = time.perf_counter() - t0
        ref_rows = ref_store.execute("SELECT count(*) FROM rag_ops")[0][0]
        ref_store.close()

        store = Store(root / "m.duckdb")
        ing = SpoolIngester(store, spool)
        t0 = time.perf_counter()
        rows = ing.ingest_once()
        took = time.perf_counter() - t0
        assert rows == n == ref_rows, (rows, n, ref_rows)
        left = list(spool.iterdir())
        store.close()

    print(f"spool: {n:,} operations in {size / 1e6:.1f} MB ({gen:.1f} s to generate)")
    print(f"lightkeeper SpoolIngester : {n / took:>12,.0f} ops/s  ({took:.2f} s, exactly-once "
          f"offsets, validation, quarantine; files left: {len(left)})")
    print(f"duckdb read_json reference: {n / ref:>12,.0f} ops/s  ({ref:.2f} s, no validation)")
    print(f"ratio lightkeeper/reference: {ref / took:.2f}   goal: >= 50,000 ops/s -> "
          f"{'met' if n / took >= 50_000 else 'NOT met'}")


if __name__ == "__main__":
    main()
