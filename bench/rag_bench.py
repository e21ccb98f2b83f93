"""``lightkeeper bench`` figures on the shipped corpus, offline provider.

Runs the real command (a fresh state directory each time, no agent) in two settings:

- ``raw``: no simulated model latency, so the figures are LightRAG's own cost plus the offline
  provider's (a few ms);
- ``model-like``: simulated model latency (LLM 50 ms per call + 0.2 ms per output token,
  embedding 10 ms per call), the shape of a deployment whose time is spent in the model;

each at concurrency 1 (the reference run) and at concurrency 4.

Run: ``.venv/bin/python bench/rag_bench.py [--docs K] [--queries Q]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

SETTINGS = {
    "raw": [],
    "model-like": ["--set", "rag.simulate_llm_ms=50", "--set",
                   "rag.simulate_llm_ms_per_token=0.2", "--set", "rag.simulate_embed_ms=10"],
}


def run(setting: str, concurrency: int, docs: int, queries: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LIGHTKEEPER_")}
        env.update({"XDG_CONFIG_HOME": f"{tmp}/config", "XDG_STATE_HOME": f"{tmp}/state"})
        cmd = [sys.executable, "-m", "lightkeeper.cli.main", *SETTINGS[setting], "bench",
               "--docs", str(docs), "--queries", str(queries), "--concurrency",
               str(concurrency), "--users", "2", "--no-record", "--json"]
        res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True,
                             timeout=1800)
        if res.returncode not in (0, 1):
            raise SystemExit(f"bench failed: {res.stderr[-2000:]}")
        return json.loads(res.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=36)
    ap.add_argument("--queries", type=int, default=100)
    args = ap.parse_args()
    print(f"lightkeeper bench: {args.docs} docs, {args.queries} queries over "
          "naive/local/global/hybrid/mix, 2 users, seed 1")
    header = (f"{'setting':<11} {'C':>2} {'ingest docs/s':>13} {'queries/s':>9}  "
              f"{'insert p50/p95/p99 ms':>22}  {'query(all) p50/p95/p99 ms':>26}  "
              f"{'query:mix p50/p95/p99 ms':>24}")
    print(header)
    print("-" * len(header))
    for setting in SETTINGS:
        for c in (1, 4):
            out = run(setting, c, args.docs, args.queries)
            s = out["summary"]
            ops = s["ops"]
            ins = ops["insert"]
            mix = ops.get("query:mix", {"p50_s": 0, "p95_s": 0, "p99_s": 0})
            # quantiles over all query modes: weighted by count from the per-mode entries
            qs = [v for k, v in ops.items() if k.startswith("query")]
            n = sum(v["count"] for v in qs)
            q50 = sum(v["p50_s"] * v["count"] for v in qs) / n
            q95 = max(v["p95_s"] for v in qs)
            q99 = max(v["p99_s"] for v in qs)

            def trio(a: float, b: float, c_: float) -> str:
                return f"{a * 1000:.0f}/{b * 1000:.0f}/{c_ * 1000:.0f}"

            ref = " (reference)" if c == 1 else ""
            print(f"{setting:<11} {c:>2} {s['ingest_docs_per_s']:>13.1f} "
                  f"{s['queries_per_s']:>9.1f}  "
                  f"{trio(ins['p50_s'], ins['p95_s'], ins['p99_s']):>22}  "
                  f"{trio(q50, q95, q99):>26}  "
                  f"{trio(mix['p50_s'], mix['p95_s'], mix['p99_s']):>24}{ref}")
    print("query(all): p50 is the count-weighted mean of per-mode p50s; p95/p99 the worst mode's.")


if __name__ == "__main__":
    main()
