"""Chart and analytics queries over the store.

``series`` reads the coarsest resolution whose buckets are no wider than the requested step
and whose retention still covers the window, and completes it with finer data for the part
that has not been rolled up yet, so the newest points are never missing.
"""

from __future__ import annotations

import math
import time
from typing import Any, Literal

from lightkeeper.agent.store import ophist, opswindows, slowops
from lightkeeper.agent.store.db import Store
from lightkeeper.agent.store.heldwindows import held_answer
from lightkeeper.agent.store.opswindows import OpsWindows
from lightkeeper.agent.store.rollup import Retention, _watermark, is_slow
from lightkeeper.agent.store.serieswindows import SeriesSpec, SeriesWindows, value_of
from lightkeeper.contracts.agent import (
    CompareRow,
    CompareRows,
    LatencyPoint,
    LatencyResponse,
    OpsSummaryRow,
    SeriesResponse,
    TopUser,
)

WINDOWS = {"5m": 300, "15m": 900, "1h": 3600, "6h": 21600, "24h": 86400, "7d": 7 * 86400,
           "30d": 30 * 86400}


def parse_window(text: str | float | int) -> float:
    """'5m', '1h', '24h', '7d', or seconds."""
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        s = str(text).strip().lower()
        units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
        try:
            value = float(s[:-1]) * units[s[-1]] if s and s[-1] in units else float(s)
        except ValueError:
            raise ValueError(f"invalid window {text!r}: use seconds or a number with s/m/h/d") \
                from None
    if not 0 < value <= 400 * 86400:
        raise ValueError(f"invalid window {text!r}: must be between 1 s and 400 days")
    return value


MAX_STEP = 30 * 86400.0
MAX_POINTS = 20_000  # buckets per series a query may ask for


def check_step(step: float | int | str | None, window: float) -> float | None:
    """A chart step in seconds: a finite number from 1 s to 30 days giving at most MAX_POINTS
    buckets over the window (it is formatted into SQL, so never anything but a float)."""
    if step is None or step == "":
        return None
    try:
        if isinstance(step, bool):
            raise ValueError
        value = float(step)
    except (TypeError, ValueError):
        raise ValueError(f"invalid step {step!r:.60}: a number of seconds") from None
    if not math.isfinite(value) or not 1 <= value <= MAX_STEP:
        raise ValueError(f"invalid step {step!r:.60}: between 1 s and 30 days")
    if window / value > MAX_POINTS:
        raise ValueError(f"invalid step {step!r:.60}: more than {MAX_POINTS} points over the "
                         "window")
    return value


def default_step(window: float, points: int = 120) -> float:
    raw = window / points
    for step in (5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 86400):
        if step >= raw:
            return float(step)
    return 86400.0


def choose_resolution(window: float, step: float, retention: Retention) -> str:
    """The coarsest table whose buckets fit in ``step`` and whose retention covers the window."""
    if step >= 3600 or window > retention.minute_days * 86400:
        return "samples_1h"
    if step >= 60 or window > retention.raw_hours * 3600:
        return "samples_1m"
    return "samples"


def series(store: Store, metric: str, label: str | None = None, window: float = 3600,
           step: float | str | None = None, retention: Retention | None = None,
           now: float | None = None, agg: str = "avg",
           windows: SeriesWindows | None = None) -> SeriesResponse:
    """Return ``{"metric", "step", "resolution", "series": {label: [[ts, value], ...]}}``.

    ``label`` filters exactly, or with a trailing ``*`` as a prefix. ``agg`` is avg, min,
    max or last within each bucket. With ``windows`` (the agent's), a window asked for before
    is answered from memory (:mod:`serieswindows`).
    """
    if agg not in ("avg", "min", "max", "last"):
        raise ValueError(f"invalid agg {agg!r}: use avg, min, max or last")
    now = time.time() if now is None else now
    retention = retention or Retention()
    step = check_step(step, window) or default_step(window)
    start = math.floor((now - window) / step) * step
    table = choose_resolution(window, step, retention)
    if table == "samples_1m" and is_slow(metric):
        table = "samples" if window <= retention.raw_hours * 3600 else "samples_1h"

    def answer(groups: dict[tuple[Any, ...], list[Any]]) -> SeriesResponse:
        out: dict[str, list[list[float | None]]] = {}
        for (lab, b), acc in sorted(groups.items()):
            out.setdefault(lab, []).append([float(b), value_of(acc, agg)])
        return {"metric": metric, "step": step, "window": window, "resolution": table,
                "start": start, "end": now, "series": out}

    return held_answer(windows, (metric, label, window, step, table), start, step,
                       lambda: _series_groups(store, metric, label, start, step, table),
                       answer, SeriesSpec(metric, label, table))


def _series_groups(store: Store, metric: str, label: str | None, start: float, step: float,
                   table: str) -> dict[tuple[Any, ...], list[Any]]:
    """Every bucket's state (:mod:`serieswindows`) by (label, bucket), from the store."""
    where = "metric = ? AND ts >= ?"
    params: list[Any] = [metric, start]
    if label is not None:
        if label.endswith("*"):
            where += " AND starts_with(label, ?)"
            params.append(label[:-1])
        else:
            where += " AND label = ?"
            params.append(label)
    # every bucket's additive state (serieswindows: the same answers every agg)
    cols = "ts, label, value AS va, value AS vlo, value AS vhi, value AS vlast, 1 AS n"
    if table == "samples":
        inner = f"SELECT {cols} FROM samples WHERE {where}"
        all_params = params
    else:
        # buckets before the rollup's watermark from the rollup table, the part not rolled
        # up yet from raw samples
        mark = _watermark(store, table) or start
        inner = (f"SELECT ts, label, avg AS va, min AS vlo, max AS vhi, last AS vlast, n "
                 f"FROM {table} WHERE {where} "
                 f"AND ts < ? UNION ALL SELECT {cols} FROM samples WHERE {where} AND ts >= ?")
        all_params = [*params, mark, *params, mark]
    sql = (f"SELECT label, floor(ts / {step}) * {step} AS b, sum(va * n), sum(n), min(vlo), "
           "max(vhi), arg_max(vlast, ts), max(ts) FILTER (WHERE vlast IS NOT NULL) "
           f"FROM ({inner}) GROUP BY b, label")
    return {(lab, b): [s, int(n), lo, hi, last, last_ts]
            for lab, b, s, n, lo, hi, last, last_ts in store.read(sql, all_params)}


def latest(store: Store, metrics: list[str] | None = None, max_age: float = 600,
           now: float | None = None) -> dict[str, dict[str, float]]:
    """The newest value of each (metric, label) seen in the last ``max_age`` seconds."""
    now = time.time() if now is None else now
    sql = ("SELECT metric, label, arg_max(value, ts), max(ts) FROM samples WHERE ts >= ?")
    params: list[Any] = [now - max_age]
    if metrics:
        sql += " AND metric IN (" + ",".join("?" * len(metrics)) + ")"
        params += metrics
    sql += " GROUP BY metric, label"
    out: dict[str, dict[str, float]] = {}
    for metric, label, value, _ts in store.read(sql, params):
        out.setdefault(metric, {})[label] = value
    return out


# -- LightRAG operation analytics ------------------------------------------------------------

def _ops_filter(window: float, now: float, user: str | None, op: str | None,
                tuning_version: int | None = None, run_id: str | None = None
                ) -> tuple[str, list[Any]]:
    where = "ts >= ?"
    params: list[Any] = [now - window]
    if user:
        where += " AND user_id = ?"
        params.append(user)
    if op:
        where += " AND op = ?"
        params.append(op)
    if tuning_version is not None:
        where += " AND tuning_version = ?"
        params.append(tuning_version)
    if run_id:
        where += " AND run_id = ?"
        params.append(run_id)
    return where, params


def latency(store: Store, window: float = 3600, step: float | str | None = None,
            user: str | None = None, op: str | None = None, now: float | None = None,
            windows: OpsWindows | None = None) -> LatencyResponse:
    """p50/p95/p99 (seconds), count and errors per bucket, per operation and mode.

    Across all users the answer comes from the per-minute histograms (agent.store.ophist: its
    cost depends on the window and the series, not on the operations; quantiles within bucket
    precision) and the step is a whole number of minutes; with ``windows`` (the agent's) a
    window asked for before is answered from memory (:mod:`opswindows`). For one user it
    comes from the raw rows (:func:`latency_raw`)."""
    now = time.time() if now is None else now
    step = check_step(step, window) or default_step(window, 60)
    if user:
        return latency_raw(store, window, step, user, op, now)
    step = ophist.chart_step(step)
    start = ophist.window_start(now, window)
    return held_answer(None if op else windows,  # one operation's chart is not held
                       ("latency", window, step), start, step,
                       lambda: _latency_points(store, start, step, op),
                       lambda points: _latency_answer(points, step, window))


def _latency_points(store: Store, start: float, step: float, op: str | None
                    ) -> dict[tuple[Any, ...], list[Any]]:
    """[n, errors, min, max, buckets] by (op, mode, bucket), from the histograms."""
    src, params = ophist.source(store, start, step >= ophist.HOUR)
    where = "TRUE"
    if op:
        where += " AND op = ?"
        params.append(op)
    points: dict[tuple[Any, ...], list[Any]] = {}
    for o, m, b, n, errors, lo, hi, *d in store.read(ophist.latency_sql(step, where, src),
                                                        params):
        acc = points.get((o, m, b))
        if acc is None:
            points[(o, m, b)] = [n, errors, lo, hi, d]
        else:  # several rows of a recent minute, not compacted yet
            opswindows.fold_point(acc, n, errors, lo, hi, d)
    return points


def _latency_answer(points: dict[tuple[Any, ...], list[Any]], step: float,
                    window: float) -> LatencyResponse:
    out: dict[str, list[LatencyPoint]] = {}
    for (o, m, b), (n, errors, lo, hi, d) in sorted(points.items()):
        q = [ophist.quantile(x, d, n, lo, hi) for x in (0.5, 0.95, 0.99)]
        out.setdefault(f"{o}/{m}" if m else o, []).append(
            {"ts": float(b), "p50": q[0], "p95": q[1], "p99": q[2], "count": int(n),
             "errors": int(errors)})
    return {"step": step, "window": window, "series": out}


def latency_raw(store: Store, window: float = 3600, step: float | str | None = None,
                user: str | None = None, op: str | None = None, now: float | None = None
                ) -> LatencyResponse:
    """:func:`latency` computed from the raw operation rows (exact quantiles; the cost grows
    with the operations in the window)."""
    now = time.time() if now is None else now
    step = check_step(step, window) or default_step(window, 60)
    where, params = _ops_filter(window, now, user, op)
    sql = (f"SELECT floor(ts / {step}) * {step} AS b, op, coalesce(mode, '') AS mode, "
           "quantile_cont(duration_s, [0.5, 0.95, 0.99]) AS q, count(*) AS n, "
           "count(*) FILTER (WHERE outcome <> 'ok') AS errors "
           f"FROM rag_ops WHERE {where} GROUP BY b, op, mode ORDER BY op, mode, b")
    out: dict[str, list[LatencyPoint]] = {}
    for b, o, m, q, n, errors in store.read(sql, params):
        key = f"{o}/{m}" if m else o
        out.setdefault(key, []).append({"ts": b, "p50": q[0], "p95": q[1], "p99": q[2],
                                        "count": n, "errors": errors})
    return {"step": step, "window": window, "series": out}


def ops_summary(store: Store, window: float = 3600, user: str | None = None,
                tuning_version: int | None = None, run_id: str | None = None,
                now: float | None = None, windows: OpsWindows | None = None
                ) -> list[OpsSummaryRow]:
    """Per operation and mode: count, throughput, error rate, quantiles and time split.

    Across all users from the per-minute histograms (whole minutes, quantiles within bucket
    precision, everything else exact; with ``windows``, the agent's, a window asked for
    before is answered from memory: :mod:`opswindows`); for one user from the raw rows."""
    now = time.time() if now is None else now
    if user:
        return ops_summary_raw(store, window, user, tuning_version, run_id, now)
    start = ophist.window_start(now, window)
    # one tuning version's or bench run's summary is not held
    held = windows if tuning_version is None and not run_id else None
    return held_answer(held, ("summary", window), start, None,
                       lambda: _summary_groups(store, start, tuning_version, run_id),
                       _summary_answer)


def _summary_groups(store: Store, start: float, tuning_version: int | None,
                    run_id: str | None) -> dict[tuple[Any, ...], list[Any]]:
    """The histograms' sums by (op, mode) from ``start`` on, from the store."""
    src, params = ophist.source(store, start, True)
    where = "TRUE"
    if tuning_version is not None:
        where += " AND tuning_version = ?"
        params.append(tuning_version)
    if run_id:
        where += " AND run_id = ?"
        params.append(run_id)
    return {(op, mode): list(sums) for op, mode, *sums in
            store.read(ophist.sums_sql("op, mode", where, src=src), params)}


def _summary_answer(groups: dict[tuple[Any, ...], list[Any]]) -> list[OpsSummaryRow]:
    result: list[OpsSummaryRow] = []
    for (op, mode), sums in sorted(groups.items()):
        h = ophist.as_row(sums)
        n, total, queued = int(h["n"]), float(h["sum_s"] or 0.0), int(h["queued"])
        q = [ophist.quantile(x, h["d"], n, h["min_s"], h["max_s"]) for x in (0.5, 0.95, 0.99)]
        qw = [ophist.quantile(x, h["w"], queued, h["qw_min"], h["qw_max"]) for x in (0.5, 0.95)]
        result.append(_summary_row(op, mode, n, q, total / n if n else None, total,
                                   float(h["llm_s"] or 0.0), float(h["embed_s"] or 0.0),
                                   int(h["errors"]), h["first"], h["last"], queued, qw,
                                   h["qw_sum"] / queued if queued else None))
    return result


def _summary_row(op: str, mode: str, n: int, q: list[float | None], mean: float | None,
                 total: float, llm: float, emb: float, errors: int, first: float,
                 last: float, queued: int, qw: list[float | None],
                 qw_mean: float | None) -> OpsSummaryRow:
    own = max(total - llm - emb, 0.0)
    span = max(last - first, 1e-9) if n > 1 else None
    return {
        "op": op, "mode": mode, "count": n, "p50": q[0], "p95": q[1], "p99": q[2],
        "mean": mean, "errors": errors, "error_rate": errors / n if n else 0.0,
        "throughput_per_s": (n / span) if span else None,
        "time_total_s": total,
        "share_llm": llm / total if total else 0.0,
        "share_embed": emb / total if total else 0.0,
        "share_lightrag": own / total if total else 0.0,
        # queued operations (pipeline inserts): the wait before they ran, which their
        # duration (run time) excludes; None when no operation of the group queued
        "queued": queued,
        "queue_wait_p50": qw[0] if queued else None,
        "queue_wait_p95": qw[1] if queued else None,
        "queue_wait_mean": qw_mean if queued else None,
    }


def ops_summary_raw(store: Store, window: float = 3600, user: str | None = None,
                    tuning_version: int | None = None, run_id: str | None = None,
                    now: float | None = None) -> list[OpsSummaryRow]:
    """:func:`ops_summary` from the raw operation rows (exact quantiles; the cost grows with the
    operations in the window)."""
    now = time.time() if now is None else now
    where, params = _ops_filter(window, now, user, None, tuning_version, run_id)
    sql = ("SELECT op, coalesce(mode, '') AS mode, count(*) AS n, "
           "quantile_cont(duration_s, [0.5, 0.95, 0.99]) AS q, avg(duration_s) AS mean, "
           "sum(duration_s) AS total_s, sum(coalesce(llm_s, 0)) AS llm_s, "
           "sum(coalesce(embed_s, 0)) AS embed_s, count(*) FILTER (WHERE outcome <> 'ok') AS errors,"
           " min(ts) AS first, max(ts) AS last, count(queue_wait_s) AS queued, "
           "quantile_cont(queue_wait_s, [0.5, 0.95]) AS qw, avg(queue_wait_s) AS qw_mean "
           f"FROM rag_ops WHERE {where} GROUP BY op, mode ORDER BY op, mode")
    result: list[OpsSummaryRow] = []
    for (op, mode, n, q, mean, total, llm, emb, errors, first, last, queued, qw,
         qw_mean) in store.read(sql, params):
        result.append(_summary_row(op, mode, n, list(q), mean, total, llm, emb, errors, first,
                                   last, queued, list(qw) if queued else [None, None],
                                   qw_mean))
    return result


def top_users(store: Store, window: float = 3600, limit: int = 10,
              now: float | None = None) -> list[TopUser]:
    now = time.time() if now is None else now
    rows = store.read(
        "SELECT user_id, count(*), sum(duration_s), count(*) FILTER (WHERE outcome <> 'ok') "
        "FROM rag_ops WHERE ts >= ? GROUP BY user_id ORDER BY 3 DESC LIMIT ?",
        [now - window, limit])
    return [{"user": u, "count": n, "time_s": t, "errors": e} for u, n, t, e in rows]


def slowest_ops(store: Store, window: float = 3600, limit: int = 20, user: str | None = None,
                now: float | None = None) -> list[dict[str, Any]]:
    """The ``limit`` slowest operations of the window (whole minutes). Across all users and
    for ``limit`` <= slowops.KEEP from the slowest of each minute (exact, and the cost does not
    grow with the operations in the window), else from the raw rows."""
    now = time.time() if now is None else now
    table = "rag_ops" if user or limit > slowops.KEEP else slowops.TABLE
    where, params = _ops_filter(window, now, user, None)
    params[0] = ophist.window_start(now, window)
    return store.read_dicts(
        "SELECT ts, user_id AS user, op, mode, duration_s, llm_s, embed_s, outcome, error_class,"
        f" tuning_version FROM {table} WHERE {where} ORDER BY duration_s DESC, ts LIMIT ?",
        params + [limit])


def compare_versions(store: Store, a: int, b: int, window: float = 365 * 86400,
                     now: float | None = None) -> CompareRows:
    """Latency per operation and mode under tuning version ``a`` and ``b``, with counts."""
    sa = {(r["op"], r["mode"]): r for r in ops_summary(store, window, tuning_version=a, now=now)}
    sb = {(r["op"], r["mode"]): r for r in ops_summary(store, window, tuning_version=b, now=now)}
    rows: list[CompareRow] = []
    for key in sorted(set(sa) | set(sb)):
        ra, rb = sa.get(key), sb.get(key)

        def change(q: Literal["p50", "p95", "p99"], ra: OpsSummaryRow | None = ra,
                   rb: OpsSummaryRow | None = rb) -> float | None:
            old, new = ra[q] if ra else None, rb[q] if rb else None
            return (new - old) / old if old and new is not None else None

        a_count, b_count = ra["count"] if ra else 0, rb["count"] if rb else 0
        rows.append({
            "op": key[0], "mode": key[1],
            "a_count": a_count, "a_p50": ra["p50"] if ra else None,
            "a_p95": ra["p95"] if ra else None, "a_p99": ra["p99"] if ra else None,
            "b_count": b_count, "b_p50": rb["p50"] if rb else None,
            "b_p95": rb["p95"] if rb else None, "b_p99": rb["p99"] if rb else None,
            "change_p50": change("p50"), "change_p95": change("p95"),
            "change_p99": change("p99"),
            "thin_evidence": min(a_count, b_count) < 30})
    return {"a": a, "b": b, "rows": rows}
