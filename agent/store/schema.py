"""Versioned schema of the metrics store. Migrations only ever add; each runs in a transaction.

Every table has one owner, the one module that writes it (docs/architecture.md lists them):
the agent's own tables are defined here; a package that owns a table declares its definition
next to its statements and the migration applies it (``tuning_versions``: tuning.versions).

Timestamps are epoch seconds (DOUBLE, UTC): cheap to bucket (``floor(ts / step) * step``)
and the same number the collectors and the spool carry.
"""

from __future__ import annotations

from lightkeeper.agent.store import ophist, slowops
from lightkeeper.tuning import versions as tuning_versions

MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (1, "samples, rollups, events, alerts, jobs", [
        "CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR)",
        # Long/narrow samples: one row per (time, metric, bounded label).
        "CREATE TABLE IF NOT EXISTS samples (ts DOUBLE NOT NULL, metric VARCHAR NOT NULL,"
        " label VARCHAR NOT NULL, value DOUBLE)",
        "CREATE TABLE IF NOT EXISTS samples_1m (ts DOUBLE NOT NULL, metric VARCHAR NOT NULL,"
        " label VARCHAR NOT NULL, avg DOUBLE, min DOUBLE, max DOUBLE, last DOUBLE, n INTEGER)",
        "CREATE TABLE IF NOT EXISTS samples_1h (ts DOUBLE NOT NULL, metric VARCHAR NOT NULL,"
        " label VARCHAR NOT NULL, avg DOUBLE, min DOUBLE, max DOUBLE, last DOUBLE, n INTEGER)",
        "CREATE SEQUENCE IF NOT EXISTS events_id START 1",
        "CREATE TABLE IF NOT EXISTS events (id BIGINT PRIMARY KEY DEFAULT nextval('events_id'),"
        " ts DOUBLE NOT NULL, level VARCHAR NOT NULL, kind VARCHAR NOT NULL,"
        " component VARCHAR NOT NULL, event VARCHAR NOT NULL, actor VARCHAR, context JSON)",
        "CREATE SEQUENCE IF NOT EXISTS alerts_id START 1",
        "CREATE TABLE IF NOT EXISTS alerts (id BIGINT PRIMARY KEY DEFAULT nextval('alerts_id'),"
        " rule VARCHAR NOT NULL, label VARCHAR NOT NULL, severity VARCHAR NOT NULL,"
        " started DOUBLE NOT NULL, ended DOUBLE, value DOUBLE, message VARCHAR)",
        "CREATE TABLE IF NOT EXISTS jobs (id VARCHAR PRIMARY KEY, kind VARCHAR NOT NULL,"
        " state VARCHAR NOT NULL, params JSON, created DOUBLE, started DOUBLE, finished DOUBLE,"
        " progress JSON, summary JSON, error VARCHAR, actor VARCHAR)",
    ]),
    (2, "LightRAG operations, spool offsets and quarantine, bench runs", [
        "CREATE TABLE IF NOT EXISTS rag_ops (ts DOUBLE NOT NULL, user_id VARCHAR NOT NULL,"
        " op VARCHAR NOT NULL, mode VARCHAR, duration_s DOUBLE NOT NULL, llm_s DOUBLE,"
        " llm_calls INTEGER, embed_s DOUBLE, embed_calls INTEGER, embed_items INTEGER,"
        " tokens_in BIGINT, tokens_out BIGINT, result_bytes BIGINT, outcome VARCHAR,"
        " error_class VARCHAR, tuning_version INTEGER, pid INTEGER, run_id VARCHAR,"
        " op_id VARCHAR)",
        "CREATE TABLE IF NOT EXISTS spool_offsets (file VARCHAR PRIMARY KEY, inode BIGINT,"
        " off BIGINT NOT NULL, updated DOUBLE)",
        "CREATE TABLE IF NOT EXISTS spool_quarantine (ts DOUBLE, file VARCHAR, off BIGINT,"
        " line VARCHAR, error VARCHAR)",
        "CREATE TABLE IF NOT EXISTS bench_runs (id VARCHAR PRIMARY KEY, ts DOUBLE,"
        " tuning_version INTEGER, params JSON, summary JSON)",
    ]),
    (3, "tuning versions", [
        tuning_versions.TABLE,
    ]),
    (4, "queue wait of queued LightRAG operations (pipeline inserts)", [
        "ALTER TABLE rag_ops ADD COLUMN IF NOT EXISTS queue_wait_s DOUBLE",
    ]),
    (5, "per-minute latency histograms and slowest operations of LightRAG operations "
        "(agent.store.ophist, agent.store.slowops)", [
        ophist.DDL,
        ophist.DDL_1H,
        ophist.BACKFILL,
        slowops.DDL,
        slowops.BACKFILL,
    ]),
]

LATEST = MIGRATIONS[-1][0]
