"""What ``lightkeeper serve`` adds to the stock LightRAG server: query p50/p99 and insert
throughput, side by side, on the same offline endpoint.

Both servers run at the same time against one ``lightkeeper offline-llm`` (no simulated
latency, so the figures are LightRAG's own cost plus the endpoint's few ms):

- ``stock``: ``python -m lightkeeper.rag.stock_server``: lightrag-hku 1.5.7's own server, only
  its tiktoken lookups mapped to the bundled cl100k (the reference run);
- ``serve``: ``lightkeeper serve``: the same application, instrumented and gated.

Each gets the same K corpus documents through ``/documents/texts`` (insert throughput: documents
per second from the request to the last one processed), then Q queries per mode through
``/query``, one at a time, **alternating** between the two servers so that the machine's load
hits both alike. The LLM cache is off, so every query does the whole retrieval. The goal is an
added p50 of at most 1 ms; on a busy shared machine run it several times and read ranges.

Run: ``.venv/bin/python bench/serve_overhead.py [--docs 12] [--queries 40] [--modes naive,mix]``
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method: str, url: str, body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=300) as r:
        return json.loads(r.read())


def read_ready(proc: subprocess.Popen[bytes], timeout: float = 180) -> dict[str, Any]:
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    buf = b""
    while time.monotonic() < deadline:
        if sel.select(0.2):
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            buf += chunk
            for line in buf.splitlines():
                if line.startswith(b"{"):
                    return json.loads(line)
        elif proc.poll() is not None:
            break
    raise RuntimeError(f"server not ready: {buf[-2000:]!r}")


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"stock server exited ({proc.returncode})")
        try:
            http("GET", url)
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer")


def processed(base: str) -> int:
    page = http("POST", base + "/documents/paginated", {"page": 1, "page_size": 200})
    return sum(1 for d in page["documents"] if d["status"] == "processed")


def q(values: list[float], p: float) -> float:
    s = sorted(values)
    k = (len(s) - 1) * p
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def hook_cost(n: int = 2000) -> dict[str, float]:
    """The hooks ``serve`` adds to one query, in-process, without LightRAG: the op record
    (scope, one spool line) and the write gate around the query's LLM-cache flush. End to end
    the difference hides in the noise of a busy machine; this is the part it is made of."""
    import asyncio

    from lightkeeper import config as config_mod
    from lightkeeper.rag.serve import ServeRuntime

    with tempfile.TemporaryDirectory(prefix="lk-hooks-") as tmp:
        cfg = config_mod.load(overrides=[("paths.state_dir", tmp),
                                         ("paths.spool_dir", f"{tmp}/spool")],
                              env={}, read_system=False)
        udir = Path(tmp) / "data" / "bench"
        udir.mkdir(parents=True)
        rt = ServeRuntime(cfg, "bench", udir, watch_tuning=False)

        async def one() -> None:
            async with rt.hooks.op("query", "mix") as rec:
                rec.llm_s += 0.0
                async with rt.hooks.write():
                    pass

        async def only_op() -> None:
            async with rt.hooks.op("query", "mix"):
                pass

        async def loop(fn: Any) -> float:
            for _ in range(50):
                await fn()
            t0 = time.perf_counter()
            for _ in range(n):
                await fn()
            return (time.perf_counter() - t0) / n

        full = asyncio.run(loop(one))
        op = asyncio.run(loop(only_op))
        rt.close()
    return {"op_record_us": op * 1e6, "op_and_gate_us": full * 1e6}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=12)
    ap.add_argument("--queries", type=int, default=40, help="queries per mode and server")
    ap.add_argument("--modes", default="naive,mix")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    from lightkeeper.rag import corpus

    docs = [d.text for d in corpus.documents()][: a.docs]
    questions = json.loads((REPO / "rag" / "corpus" / "questions.json").read_text())["questions"]
    questions = [x["question"] if isinstance(x, dict) else str(x) for x in questions]
    modes = [m for m in a.modes.split(",") if m]
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="lk-serve-bench-") as tmp:
        t = Path(tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith("LIGHTKEEPER_")}
        env.update({"LIGHTKEEPER_PATHS__STATE_DIR": str(t / "state"),
                    "LIGHTKEEPER_PATHS__DATA_ROOT": str(t / "data"),
                    "XDG_CONFIG_HOME": str(t / "config"), "TIKTOKEN_CACHE_DIR": str(t / "tk")})
        try:
            llm = subprocess.Popen([sys.executable, "-m", "lightkeeper.cli.main", "offline-llm",
                                    "--llm-ms", "0", "--llm-ms-per-token", "0", "--embed-ms",
                                    "0"], cwd=t, env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.DEVNULL)
            procs.append(llm)
            url = read_ready(llm)["url"]
            senv = {**env, "LLM_BINDING": "openai", "LLM_BINDING_HOST": url, "LLM_MODEL": "m",
                    "LLM_BINDING_API_KEY": "x", "EMBEDDING_BINDING": "openai",
                    "EMBEDDING_BINDING_HOST": url, "EMBEDDING_MODEL": "e",
                    "EMBEDDING_BINDING_API_KEY": "x", "EMBEDDING_DIM": "1024",
                    "ENABLE_LLM_CACHE": "false", "ENABLE_LLM_CACHE_FOR_EXTRACT": "false",
                    "LOG_LEVEL": "WARNING", "LOG_DIR": str(t)}
            port = free_port()
            stock = subprocess.Popen(
                [sys.executable, "-m", "lightkeeper.rag.stock_server"], cwd=t,
                env={**senv, "WORKING_DIR": str(t / "data"), "WORKSPACE": "bench_stock",
                     "INPUT_DIR": str(t / "in-stock"), "HOST": "127.0.0.1", "PORT": str(port)},
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(stock)
            served = subprocess.Popen(
                [sys.executable, "-m", "lightkeeper.cli.main", "serve", "--user", "bench_serve",
                 "--host", "127.0.0.1", "--port", "0"], cwd=t,
                env={**senv, "INPUT_DIR": str(t / "in-serve")}, stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL)
            procs.append(served)
            bases = {"stock": f"http://127.0.0.1:{port}", "serve": read_ready(served)["url"]}
            wait_http(bases["stock"] + "/health", stock)

            inserts: dict[str, float] = {}
            for name in ("stock", "serve"):  # one at a time: each gets the machine alone
                base = bases[name]
                t0 = time.perf_counter()
                http("POST", base + "/documents/texts",
                     {"texts": docs, "file_sources": [f"d{i}.txt" for i in range(len(docs))]})
                while processed(base) < len(docs):
                    time.sleep(0.05)
                inserts[name] = len(docs) / (time.perf_counter() - t0)

            lat: dict[tuple[str, str], list[float]] = {}
            for mode in modes:
                for i in range(a.queries + 2):
                    question = questions[i % len(questions)]
                    order = ("stock", "serve") if i % 2 == 0 else ("serve", "stock")
                    for name in order:
                        t0 = time.perf_counter()
                        r = http("POST", bases[name] + "/query",
                                 {"query": question, "mode": mode})
                        dt = time.perf_counter() - t0
                        assert r.get("response"), r
                        if i >= 2:  # two warm-up rounds
                            lat.setdefault((name, mode), []).append(dt)
        finally:
            for p in reversed(procs):
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
            for p in reversed(procs):
                try:
                    p.wait(60)
                except subprocess.TimeoutExpired:
                    p.kill()

    rows = []
    for mode in modes:
        s, v = lat[("stock", mode)], lat[("serve", mode)]
        rows.append({"mode": mode, "n": len(s),
                     "stock_p50_ms": q(s, 0.5) * 1e3, "serve_p50_ms": q(v, 0.5) * 1e3,
                     "stock_p99_ms": q(s, 0.99) * 1e3, "serve_p99_ms": q(v, 0.99) * 1e3,
                     "added_p50_ms": (q(v, 0.5) - q(s, 0.5)) * 1e3,
                     "stock_mean_ms": statistics.mean(s) * 1e3,
                     "serve_mean_ms": statistics.mean(v) * 1e3})
    hooks = hook_cost()
    out = {"docs": len(docs), "queries_per_mode": a.queries, "queries": rows,
           "insert_docs_per_s": inserts, "hooks_per_query": hooks}
    if a.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"lightkeeper serve vs stock lightrag-server (reference), same offline endpoint, "
          f"{len(docs)} docs, {a.queries} queries per mode, alternating; LLM cache off")
    print(f"{'mode':6} {'stock p50':>10} {'serve p50':>10} {'added':>8} "
          f"{'stock p99':>10} {'serve p99':>10}   (ms)")
    for r in rows:
        print(f"{r['mode']:6} {r['stock_p50_ms']:10.1f} {r['serve_p50_ms']:10.1f} "
              f"{r['added_p50_ms']:+8.2f} {r['stock_p99_ms']:10.1f} {r['serve_p99_ms']:10.1f}")
    print(f"insert throughput (docs/s, /documents/texts to all processed): "
          f"stock {inserts['stock']:.2f}  serve {inserts['serve']:.2f}")
    print(f"hooks per query, in-process (no LightRAG): op record {hooks['op_record_us']:.0f} µs,"
          f" op record + write gate around the cache flush {hooks['op_and_gate_us']:.0f} µs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
