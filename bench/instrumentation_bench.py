"""Instrumentation overhead per LightRAG operation (goal: at most 50 µs per operation).

Two measurements, each against the same work uninstrumented (the reference run):

1. ``per-op``: what instrumentation adds to one operation shaped like a LightRAG query
   (an op scope, 2 LLM calls, 2 embedding calls and one spool line written to a real file),
   with no-op model functions so nothing else is measured. Median of repeated blocks.
2. ``end-to-end``: the same query workload on a real LightRAG working directory (offline
   provider) with an instrumented and an uninstrumented runtime, in alternating blocks. LightRAG's
   own time per query is milliseconds and varies by more than the overhead, so this figure shows
   the order of magnitude only; (1) is the precise one.

Run: ``.venv/bin/python bench/instrumentation_bench.py [--ops N] [--queries N]``
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lightkeeper import config
from lightkeeper.rag.instrument import Instrument, wrap_embed, wrap_llm
from lightkeeper.rag.spool import SpoolWriter

PROMPT = "p" * 6000
SYSTEM = "s" * 12000


async def _llm(prompt: str, system_prompt: str | None = None,
               history_messages: list[dict[str, str]] | None = None, **kw: Any) -> str:
    return "an answer of a few hundred characters " * 8


async def _embed(texts: list[str], **kw: Any) -> list[str]:
    return texts


async def per_op(n: int, spool_dir: Path) -> tuple[float, float]:
    """(bare seconds per op, instrumented seconds per op) for one block of ``n`` ops."""
    llm_w, emb_w = wrap_llm(_llm), wrap_embed(_embed)
    inst = Instrument(SpoolWriter(spool_dir), tuning_version=3, run_id=None)
    texts = ["a", "b", "c"]

    t0 = time.perf_counter()
    for _ in range(n):
        await _llm(PROMPT, system_prompt=SYSTEM)
        await _embed(texts)
        await _embed(texts)
        await _llm(PROMPT, system_prompt=SYSTEM)
    bare = (time.perf_counter() - t0) / n

    t0 = time.perf_counter()
    for _ in range(n):
        with inst.op("alice", "query", "mix") as rec:
            await llm_w(PROMPT, system_prompt=SYSTEM)
            await emb_w(texts)
            await emb_w(texts)
            await llm_w(PROMPT, system_prompt=SYSTEM)
            rec.result_bytes = 1234
    inst_s = (time.perf_counter() - t0) / n
    inst.spool.close()
    return bare, inst_s


async def end_to_end(queries: int, blocks: int, state: Path) -> tuple[float, float]:
    from lightkeeper.rag.runtime import RagRuntime
    from lightkeeper.rag.workload import QUERY_MODES, bench_documents

    cfg = config.load(overrides=[("paths.state_dir", str(state))], env={}, read_system=False)
    async with RagRuntime(cfg, spool=False) as seed:
        docs = bench_documents(12)
        for user in ("bench-on", "bench-off"):  # same data; one workspace per runtime
            await seed.insert(user, [t for t, _ in docs], [p for _, p in docs])
    from lightkeeper.rag.corpus import questions

    qs = questions()
    work = [(qs[i % len(qs)], QUERY_MODES[i % len(QUERY_MODES)]) for i in range(queries)]
    times: dict[bool, list[float]] = {True: [], False: []}
    async with RagRuntime(cfg, instrumented=True) as on, \
            RagRuntime(cfg, instrumented=False) as off:
        users = {True: "bench-on", False: "bench-off"}
        for flag, rt in ((True, on), (False, off)):  # warm both (answer cache, workspace)
            for q, m in work:
                await rt.query(users[flag], q, m)
        for b in range(blocks):
            for flag, rt in ((True, on), (False, off)) if b % 2 == 0 else \
                    ((False, off), (True, on)):
                t0 = time.perf_counter()
                for q, m in work:
                    await rt.query(users[flag], q, m)
                times[flag].append((time.perf_counter() - t0) / len(work))
    return statistics.median(times[False]), statistics.median(times[True])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ops", type=int, default=20000, help="ops per block (per-op)")
    ap.add_argument("--blocks", type=int, default=7)
    ap.add_argument("--queries", type=int, default=200, help="queries per block (end-to-end)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmpd = Path(tmp)
        results = [asyncio.run(per_op(args.ops, tmpd / f"spool{i}"))
                   for i in range(args.blocks)]
        bare = statistics.median(r[0] for r in results)
        inst = statistics.median(r[1] for r in results)
        lines = sum(1 for f in tmpd.glob("spool*/ops-*.jsonl") for _ in f.open())
        print(f"per-op (query-shaped: 2 LLM + 2 embedding calls + 1 spool line), "
              f"{args.blocks} blocks x {args.ops} ops:")
        print(f"  reference, uninstrumented: {bare * 1e6:8.2f} µs/op")
        print(f"  instrumented:              {inst * 1e6:8.2f} µs/op")
        print(f"  overhead:                  {(inst - bare) * 1e6:8.2f} µs/op   (goal <= 50)")
        print(f"  spool lines written: {lines}")
        off, on = asyncio.run(end_to_end(args.queries, 4, tmpd / "e2e"))
        print(f"end-to-end, offline LightRAG queries (answer cache warm), 4 blocks x "
              f"{args.queries} queries:")
        print(f"  reference, uninstrumented: {off * 1e6:8.1f} µs/query")
        print(f"  instrumented:              {on * 1e6:8.1f} µs/query")
        print(f"  difference:                {(on - off) * 1e6:8.1f} µs/query "
              "(within LightRAG's own run-to-run noise)")


if __name__ == "__main__":
    main()
