"""LightRAG health gauges for the alert rules, computed from ``rag_ops`` every half minute.

- ``rag_query_latency_p95_seconds`` (label: query mode) and ``rag_write_latency_p95_seconds``
  (label: ``insert`` or ``delete``): the p95 of operations that finished in the last ``WINDOW``
  seconds, when there were at least ``MIN_OPS`` of them (a p95 of two operations means nothing).
- ``rag_error_ratio`` (label ``op:mode``, or ``op`` without a mode): failed / all operations in
  the same window, with the same minimum.
- ``rag_silent_seconds`` (label: the user) and ``rag_server_silent_seconds`` (the whole
  server): how long since the last operation, for a source that was busy (at least ``MIN_OPS``
  operations in the hour before its last one) and went silent within the last day. A user nobody
  uses yields nothing: silence is an alert only where there was activity. Per-user series stay
  in the store; ``/metrics`` carries the server's.

These are the values the agent's rules compare (``agent/alerts.py``); Prometheus computes the same
conditions from the latency histogram and the error counter (``agent/rules_export.py``).
"""

from __future__ import annotations

import time
from typing import Any

WINDOW = 300.0
MIN_OPS = 5
ACTIVE_WINDOW = 3600.0
FORGET_AFTER = 86400.0
WRITE_OPS = ("insert", "delete")

Triple = tuple[str, str, float]


def _label(op: str, mode: str | None) -> str:
    return f"{op}:{mode}" if mode else op


def health_samples(store: Any, now: float | None = None) -> list[Triple]:
    """The gauges above, as (metric, label, value) triples."""
    now = time.time() if now is None else now
    out: list[Triple] = []
    rows = store.read(
        "SELECT op, coalesce(mode, ''), count(*), quantile_cont(duration_s, 0.95), "
        "count(*) FILTER (WHERE coalesce(outcome, 'ok') <> 'ok') "
        "FROM rag_ops WHERE ts > ? GROUP BY ALL", [now - WINDOW])
    for op, mode, n, p95, errors in rows:
        if n < MIN_OPS:
            continue
        if op == "query":
            out.append(("rag_query_latency_p95_seconds", mode or "-", float(p95)))
        elif op in WRITE_OPS:
            out.append(("rag_write_latency_p95_seconds", op, float(p95)))
        out.append(("rag_error_ratio", _label(op, mode), errors / n))
    # silence: per user, and for the whole server ('')
    rows = store.read(
        "WITH last AS (SELECT user_id, max(ts) AS t FROM rag_ops WHERE ts > ? GROUP BY user_id) "
        "SELECT last.user_id, last.t, count(*) FROM last JOIN rag_ops o "
        "ON o.user_id = last.user_id AND o.ts > last.t - ? GROUP BY ALL",
        [now - FORGET_AFTER, ACTIVE_WINDOW])
    newest = None
    busy_total = 0
    for user, last, n in rows:
        busy_total += n
        newest = last if newest is None else max(newest, last)
        if n >= MIN_OPS:
            out.append(("rag_silent_seconds", str(user), max(0.0, now - float(last))))
    if newest is not None and busy_total >= MIN_OPS:
        out.append(("rag_server_silent_seconds", "", max(0.0, now - float(newest))))
    return out


class HealthGauges:
    """:func:`health_samples` for the agent's periodic pass, without the two queries while
    nothing can have changed: an empty answer stays empty until operations arrive (time only
    moves operations out of the windows), so once a pass found nothing, the next passes skip
    the store until the ingested-row count moves. An idle server's agent then asks nothing."""

    def __init__(self) -> None:
        self._empty_at: int | None = None  # the ingested-row count of the last empty answer

    def samples(self, store: Any, ingested_rows: int, now: float | None = None) -> list[Triple]:
        """The gauges; ``ingested_rows`` is the ingester's running count, read before the
        query (rows it counts later are either in this answer or move the count)."""
        if self._empty_at == ingested_rows:
            return []
        out = health_samples(store, now)
        self._empty_at = None if out else ingested_rows
        return out
