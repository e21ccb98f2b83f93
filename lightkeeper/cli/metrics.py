"""``lightkeeper metrics``: query the store's series and LightRAG latency from the command line."""

from __future__ import annotations

import argparse
import time

from lightkeeper.cli.common import EXIT_OK, CliContext, add_json_flag, table
from lightkeeper.contracts.agent import OpsSummaryRow
from lightkeeper.fmt import human_bytes


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("metrics", help="query series and latency from the metrics store")
    msub = p.add_subparsers(dest="metrics_cmd", metavar="ACTION", required=True)
    names = msub.add_parser("names", help="metric names in the store")
    add_json_flag(names)
    names.set_defaults(func=run_names)
    q = msub.add_parser("query", help="a series over a window")
    q.add_argument("metric")
    q.add_argument("--label", help="exact label, or a prefix ending in *")
    q.add_argument("--window", default="1h", help="5m, 1h, 24h, 7d... (default 1h)")
    q.add_argument("--step", type=float, help="bucket width in seconds")
    q.add_argument("--agg", choices=["avg", "min", "max", "last"], default="avg")
    add_json_flag(q)
    q.set_defaults(func=run_query)
    lat = msub.add_parser("latency", help="LightRAG p50/p95/p99 per operation and mode")
    lat.add_argument("--window", default="1h")
    lat.add_argument("--user")
    add_json_flag(lat)
    lat.set_defaults(func=run_latency)


def run_names(args: argparse.Namespace, ctx: CliContext) -> int:
    ctx.emit(ctx.client().call("metrics.names"), lambda d: "\n".join(d))
    return EXIT_OK


def run_query(args: argparse.Namespace, ctx: CliContext) -> int:
    data = ctx.client().series(args.metric, args.label, args.window, args.step, args.agg)

    def human(d: dict) -> str:
        out = [f"{d['metric']} step {d['step']:g} s from {d['resolution']}"]
        for label, points in d["series"].items():
            out.append(f"[{label or '-'}]")
            for ts, v in points:
                out.append(f"  {time.strftime('%H:%M:%S', time.localtime(ts))}  "
                           f"{metric_value(d['metric'], v)}")
        return "\n".join(out)

    ctx.emit(data, human)
    return EXIT_OK


def metric_value(metric: str, v: float | None) -> str:
    """A value in its unit: bytes in KiB/MiB/GiB (exact count in parentheses), else %g."""
    if v is None:
        return "-"
    if metric.endswith("_bytes"):
        return f"{human_bytes(v)} ({v:.0f} B)"
    if metric.endswith("_bytes_per_second"):
        return f"{human_bytes(v)}/s"
    if metric.endswith("_ratio"):
        return f"{v * 100:.1f}%"
    return f"{v:.6g}"


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v * 1000:.1f}"


def run_latency(args: argparse.Namespace, ctx: CliContext) -> int:
    rows: list[OpsSummaryRow] = ctx.client().call("rag.summary", window=args.window,
                                                  user=args.user)
    view = [{**r, "p50": _ms(r["p50"]), "p95": _ms(r["p95"]), "p99": _ms(r["p99"]),
             "err": f"{r['error_rate']:.1%}", "llm": f"{r['share_llm']:.0%}",
             "emb": f"{r['share_embed']:.0%}", "own": f"{r['share_lightrag']:.0%}"} for r in rows]
    ctx.emit(rows if ctx.json else view, lambda _: table(view, [
        ("op", "OP"), ("mode", "MODE"), ("count", "N"), ("p50", "P50 MS"), ("p95", "P95 MS"),
        ("p99", "P99 MS"), ("err", "ERRORS"), ("llm", "LLM"), ("emb", "EMBED"),
        ("own", "LIGHTRAG")], empty="no LightRAG operations in this window"))
    return EXIT_OK
