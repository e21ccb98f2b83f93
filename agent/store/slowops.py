"""The slowest LightRAG operations of each minute (``rag_ops_slow``), kept at ingest.

rag.slowest lists the N slowest operations of a window. Every one of them is among the N
slowest of its own minute, so keeping the ``KEEP`` slowest operations of each minute answers
any N <= KEEP exactly over a window of whole minutes, reading ``KEEP`` rows per minute however
many operations ran (at 100 operations per second a minute holds 6,000). A larger N, or one
user's slowest, is read from the raw rows.

Spool ingestion inserts the slowest ``KEEP`` of each minute of a batch in the batch's
transaction; several batches in one minute can leave more than ``KEEP`` rows, which
:func:`trim` (maintenance, with the histograms' compaction) cuts back for past minutes.
"""

from __future__ import annotations

import time
from typing import Any

from lightkeeper.agent.store import settled

STEP = 60.0
KEEP = 20
TABLE = "rag_ops_slow"
COLUMNS = ("ts, user_id, op, mode, duration_s, llm_s, embed_s, outcome, error_class, "
           "tuning_version")

DDL = (f"CREATE TABLE IF NOT EXISTS {TABLE} (ts DOUBLE NOT NULL, user_id VARCHAR NOT NULL,"
       " op VARCHAR NOT NULL, mode VARCHAR, duration_s DOUBLE NOT NULL, llm_s DOUBLE,"
       " embed_s DOUBLE, outcome VARCHAR, error_class VARCHAR, tuning_version INTEGER)")


def _slowest_of(source: str) -> str:
    return (f"SELECT {COLUMNS} FROM (SELECT {COLUMNS}, row_number() OVER (PARTITION BY "
            f"floor(ts / {STEP}) ORDER BY duration_s DESC) AS rank FROM {source}) "
            f"WHERE rank <= {KEEP}")


INSERT_BATCH = f"INSERT INTO {TABLE} " + _slowest_of("_batch")
BACKFILL = f"INSERT INTO {TABLE} " + _slowest_of("rag_ops")
SETTLE_S = settled.SETTLE_S


def trim(store: Any, now: float | None = None) -> int:
    """Keep the ``KEEP`` slowest rows of each past minute. Returns the rows removed."""
    due = settled.span(store, TABLE, "trim:rag_ops_slow", time.time() if now is None else now,
                       align=True)
    if due is None:
        return 0
    start, end = due
    with store.transaction() as con:
        return settled.rewrite(con, TABLE, "trim:rag_ops_slow", start, end, _slowest_of(
            f"(SELECT * FROM {TABLE} WHERE ts >= {start!r} AND ts < {end!r})"))
