"""``lightkeeper bench``: a reproducible LightRAG workload on the shipped corpus.

Ingests K documents (spread over U fresh users in a scratch data root), then runs Q queries
across the chosen modes, each phase with C operations in flight. Prints throughput and
p50/p95/p99 per operation from its own measurements, tags every spool record with the run id,
and records the run with the agent (``bench.record``) under the active tuning version, so two
versions can be compared. Same arguments and same tuning give the same operations.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import time
import uuid
from typing import Any

from lightkeeper.cli.common import EXIT_OK, EXIT_USAGE, CliContext, CliError, add_json_flag, table

MODES = ("naive", "local", "global", "hybrid", "mix")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="reproducible LightRAG workload: throughput and p50/p95/p99",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--docs", "-k", type=int, default=36, help="documents to ingest (default 36)")
    p.add_argument("--queries", "-q", type=int, default=100, help="queries (default 100)")
    p.add_argument("--concurrency", "-c", type=int, default=4,
                   help="operations in flight (default 4)")
    p.add_argument("--users", type=int, default=2, help="bench users (default 2)")
    p.add_argument("--modes", default=",".join(MODES),
                   help=f"comma-separated query modes (default {','.join(MODES)})")
    p.add_argument("--batch", type=int, default=1, help="documents per insert (default 1)")
    p.add_argument("--seed", type=int, default=1, help="workload seed (default 1)")
    p.add_argument("--keep", action="store_true",
                   help="keep the scratch data root (default: removed after the run)")
    p.add_argument("--no-record", action="store_true",
                   help="do not record the run with the agent")
    add_json_flag(p)
    p.set_defaults(func=cmd_bench)


def _check(args: argparse.Namespace) -> tuple[str, ...]:
    for name, lo, hi in (("docs", 1, 100_000), ("queries", 0, 1_000_000),
                         ("concurrency", 1, 1024), ("users", 1, 1000), ("batch", 1, 1000)):
        value = getattr(args, name)
        if not lo <= value <= hi:
            raise CliError(f"--{name} must be between {lo} and {hi}, got {value}", EXIT_USAGE)
    modes = tuple(m.strip() for m in args.modes.split(",") if m.strip())
    bad = [m for m in modes if m not in (*MODES, "bypass")]
    if bad or not modes:
        raise CliError(f"unknown query mode(s) {', '.join(bad) or '(none)'}: use "
                       f"{', '.join(MODES)} or bypass", EXIT_USAGE)
    return modes


def _ms(x: float) -> str:
    return f"{x * 1000:.1f}"


def render(summary: dict[str, Any], header: dict[str, Any]) -> str:
    lines = [f"bench run {header['run_id']}  tuning version {header['tuning_version']}  "
             f"provider {header['provider']}",
             f"  {header['docs']} docs, {header['queries']} queries, concurrency "
             f"{header['concurrency']}, {header['users']} users, modes {','.join(header['modes'])}"
             f", seed {header['seed']}"]
    if header["provider"] == "offline":
        lines.append(f"  simulated model latency: llm {header['simulate_llm_ms']} ms + "
                     f"{header['simulate_llm_ms_per_token']} ms/token, embed "
                     f"{header['simulate_embed_ms']} ms")
    rows = [{"op": k, "n": v["count"], "err": v["errors"], "p50": _ms(v["p50_s"]),
             "p95": _ms(v["p95_s"]), "p99": _ms(v["p99_s"]), "mean": _ms(v["mean_s"]),
             "max": _ms(v["max_s"])} for k, v in summary["ops"].items()]
    lines.append("")
    lines.append(table(rows, [("op", "OPERATION"), ("n", "N"), ("err", "ERR"),
                              ("p50", "P50 ms"), ("p95", "P95 ms"), ("p99", "P99 ms"),
                              ("mean", "MEAN ms"), ("max", "MAX ms")]))
    lines.append("")
    ing = summary["ingest_docs_per_s"]
    qps = summary["queries_per_s"]
    lines.append(f"ingest: {summary['ingest_s']:.2f} s, "
                 f"{'-' if ing is None else f'{ing:.1f}'} docs/s")
    lines.append(f"query:  {summary['query_s']:.2f} s, "
                 f"{'-' if qps is None else f'{qps:.1f}'} queries/s")
    return "\n".join(lines)


def _record(ctx: CliContext, run: dict[str, Any]) -> str:
    from lightkeeper.client import AgentError, AgentUnavailable, connect

    try:
        client = connect(ctx.cfg, autostart=False)
    except AgentUnavailable:
        return "not recorded: no agent running (the spool records carry the run id)"
    try:
        client.call("bench.record", **run)
    except AgentError as exc:
        if exc.status == 404:
            return "not recorded: this agent does not offer bench.record"
        return f"not recorded: {exc}"
    except AgentUnavailable as exc:
        return f"not recorded: {exc}"
    return "recorded with the agent (bench.record)"


def cmd_bench(args: argparse.Namespace, ctx: CliContext) -> int:
    modes = _check(args)  # before LightRAG loads: a usage error costs no second of imports
    from lightkeeper.rag.runtime import RagRuntime
    from lightkeeper.rag.workload import BenchResult, run_bench

    cfg = ctx.cfg
    run_id = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]
    scratch = cfg.path("paths.state_dir") / "bench" / run_id
    cfg.set("paths.data_root", str(scratch / "data"), "bench scratch directory")
    params = {"docs": args.docs, "queries": args.queries, "concurrency": args.concurrency,
              "users": args.users, "modes": list(modes), "batch": args.batch,
              "seed": args.seed, "provider": cfg["rag.provider"],
              "simulate_llm_ms": cfg["rag.simulate_llm_ms"],
              "simulate_llm_ms_per_token": cfg["rag.simulate_llm_ms_per_token"],
              "simulate_embed_ms": cfg["rag.simulate_embed_ms"]}

    async def main() -> tuple[BenchResult, dict[str, Any], int | None]:
        async with RagRuntime(cfg, run_id=run_id,
                              pool_size=max(args.users, cfg["rag.pool_size"])) as rt:
            result = BenchResult(run_id, params)
            await run_bench(rt, result, docs=args.docs, queries=args.queries,
                            concurrency=args.concurrency, users=args.users, modes=modes,
                            seed=args.seed, batch=args.batch)
            return result, rt.stats(), rt.tuning_version

    try:
        result, stats, version = asyncio.run(main())
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    summary = result.summary()
    summary["rss_bytes"] = stats["rss_bytes"]
    header = {"run_id": run_id, "tuning_version": version, **params}
    note = "not recorded (--no-record)" if args.no_record else _record(
        ctx, {"id": run_id, "tuning_version": version, "params": params, "summary": summary})
    if ctx.json:
        print(json.dumps({"run_id": run_id, "tuning_version": version, "params": params,
                          "summary": summary, "record": note,
                          "data_root": str(scratch / "data") if args.keep else None},
                         indent=2))
    else:
        print(render(summary, header))
        print(note)
        if args.keep:
            print(f"data kept in {scratch / 'data'}", file=sys.stderr)
    errors = sum(v["errors"] for v in summary["ops"].values())
    return EXIT_OK if errors == 0 else 1
