"""Rewriting the settled minutes of a per-minute table in place (the latency histograms'
compaction, the slowest lists' trimming): only minutes old enough that no batch of theirs can
still arrive, each pass from where the previous one ended (a mark in ``meta``)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

STEP = 60.0
# Rows of minutes this recent are left alone: batches of them may still come.
SETTLE_S = 180.0


def span(store: Any, table: str, mark: str, now: float,
         align: bool = False) -> tuple[float, float] | None:
    """``(start, end)``: from the last pass's mark (or the table's first row, aligned down to
    its minute with ``align``) to the last settled minute; ``None`` when nothing is due."""
    rows = store.execute("SELECT value FROM meta WHERE key = ?", [mark])
    if rows:
        start = float(rows[0][0])
    else:
        first = store.execute(f"SELECT min(ts) FROM {table}")[0][0]
        if first is None:
            return None
        start = math.floor(float(first) / STEP) * STEP if align else float(first)
    end = math.floor((now - SETTLE_S) / STEP) * STEP
    return (start, end) if end > start else None


def rewrite(con: Any, table: str, mark: str, start: float, end: float, select: str,
            params: Sequence[Any] = ()) -> int:
    """In transaction ``con``: replace the rows of ``[start, end)`` by those ``select`` gives
    when they are fewer, and move the mark to ``end``. Returns the rows removed."""
    where = f"FROM {table} WHERE ts >= ? AND ts < ?"
    before = con.execute(f"SELECT count(*) {where}", [start, end]).fetchall()[0][0]
    con.execute("CREATE OR REPLACE TEMP TABLE _settled AS " + select, list(params))
    after = con.execute("SELECT count(*) FROM _settled").fetchall()[0][0]
    if after < before:
        con.execute(f"DELETE {where}", [start, end])
        con.execute(f"INSERT INTO {table} SELECT * FROM _settled")
    con.execute("DROP TABLE _settled")
    con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", [mark, str(end)])
    return int(before - after)
