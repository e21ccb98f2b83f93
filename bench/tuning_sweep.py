"""Tuning sweep: ``lightkeeper bench`` under chunk size 600/1200/2400 and LLM concurrency 2/4/8.

Each setting is a real tuning version, set through a real agent, so ``lightkeeper tuning
compare`` reproduces the comparison afterwards. Everything runs in a temporary state directory
and data root with its own agent (free HTTP port, short socket path under /tmp); the operator's
own agent and data are never touched.

Settings: the reference is LightRAG's defaults (``chunk_token_size=1200``,
``llm_model_max_async=4``); each variant changes one key from there. The sweep runs
``--repeats`` rounds over all settings, forward in odd rounds and reversed in even ones, so
drifting load on a shared machine does not favour one setting. For every setting in a round:

1. ``lightkeeper tuning set chunk_token_size=.. llm_model_max_async=.. --note ...`` (a new
   version unless the active one already holds those values);
2. ``lightkeeper bench --json --keep`` with the offline providers and a simulated model latency
   (``LIGHTKEEPER_RAG__SIMULATE_*``, same values for agent and bench), so time is spent "in the
   model" as in a deployment.

Then ``--probe-rounds`` rounds of a **long-document probe** over the three chunk sizes, each
under a version of its own (so a bench pair's ``tuning compare`` holds bench operations only):
the shipped corpus documents are ~70 tokens each, below every chunk size, so ``bench`` alone
cannot show what chunk size does. The probe inserts 3 documents of ~2,300 tokens (corpus
documents concatenated in three orders) one after the other for a fresh user, then asks the 20
corpus questions in ``mix`` mode one at a time, in one process, through lightkeeper's runtime
(same instrumentation, same spool).

Figures per setting: insert and query throughput, p50/p95/p99 per operation (from bench's own
measurements), LLM calls per document and per query (from the runs' spool records, which carry
each operation's ``llm_calls``), the bench process's resident memory, and chunks, entities and
relations built (read from the kept scratch data root). Each process spools into a private
directory; the sweep reads the records and then hands the files to the agent's spool directory,
waits until the agent has ingested them, and runs ``lightkeeper tuning compare REF V --json``
for every round's reference and variant versions.

The workload: ``--docs 36 --queries 100 --concurrency 8 --users 2 --batch 3``. Eight operations
in flight over two users put about four queries on each user's LightRAG instance, and a batch of
3 lets LightRAG extract 3 documents at once (``max_parallel_insert`` 3), so an LLM concurrency
of 2 is a real limit; inserts of one user are serialised by the write gate, so bench's insert
latency includes waiting for the gate.

Run: ``.venv/bin/python bench/tuning_sweep.py [--repeats 4] [--probe-rounds 2] [--json-out F]``.
Defaults took 6 min 12 s on 2 cores (20 bench runs of 9-15 s, 6 probes of ~20 s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
LK = [str(REPO / ".venv" / "bin" / "lightkeeper")]

# Simulated model latency: the demo's values (lightkeeper/cli/demo.py, DEMO_SIMULATION).
SIMULATION = {"LIGHTKEEPER_RAG__SIMULATE_LLM_MS": "150",
              "LIGHTKEEPER_RAG__SIMULATE_LLM_MS_PER_TOKEN": "0.5",
              "LIGHTKEEPER_RAG__SIMULATE_EMBED_MS": "20"}

# Both keys spelled out in every setting, so each one is reached from any other in one `set`.
SETTINGS: list[tuple[str, dict[str, int]]] = [
    ("reference: defaults (chunk 1200, max_async 4)",
     {"chunk_token_size": 1200, "llm_model_max_async": 4}),
    ("chunk_token_size=600", {"chunk_token_size": 600, "llm_model_max_async": 4}),
    ("chunk_token_size=2400", {"chunk_token_size": 2400, "llm_model_max_async": 4}),
    ("llm_model_max_async=2", {"chunk_token_size": 1200, "llm_model_max_async": 2}),
    ("llm_model_max_async=8", {"chunk_token_size": 1200, "llm_model_max_async": 8}),
]
LONG_DOC_TOKENS = 2300
LONG_DOCS = 3


# -- environment ------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_env(tmp: Path, sock: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIGHTKEEPER_")}
    env.update({
        "XDG_CONFIG_HOME": str(tmp / "config"),
        "XDG_STATE_HOME": str(tmp / "xdg-state"),
        "LIGHTKEEPER_PATHS__STATE_DIR": str(tmp / "state"),
        "LIGHTKEEPER_PATHS__DATA_ROOT": str(tmp / "data"),
        "LIGHTKEEPER_HTTP__LISTEN": f"127.0.0.1:{free_port()}",
        "LIGHTKEEPER_AGENT__SOCKET": str(sock),
        "LIGHTKEEPER_RAG__PROVIDER": "offline",
        **SIMULATION,
    })
    return env


def lk(env: dict[str, str], *args: str, timeout: float = 600, check: bool = True
       ) -> subprocess.CompletedProcess[str]:
    res = subprocess.run([*LK, *args], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=timeout, stdin=subprocess.DEVNULL)
    if check and res.returncode != 0:
        raise SystemExit(f"lightkeeper {' '.join(args)} failed ({res.returncode}):\n"
                         f"{res.stdout[-2000:]}\n{res.stderr[-3000:]}")
    return res


def lk_json(env: dict[str, str], *args: str, timeout: float = 600) -> Any:
    return json.loads(lk(env, *args, "--json", timeout=timeout).stdout)


# -- spool hand-over --------------------------------------------------------------------
def read_spool(private: Path) -> list[dict[str, Any]]:
    records = []
    for path in sorted(private.glob("ops-*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                records.append(json.loads(line))
    return records


def hand_over(private: Path, agent_spool: Path) -> None:
    """Move the finished spool files into the agent's spool directory (atomic renames)."""
    agent_spool.mkdir(parents=True, exist_ok=True)
    for path in sorted(private.glob("ops-*.jsonl")):
        tmp = agent_spool / f".{path.name}.part"
        shutil.copyfile(path, tmp)
        os.replace(tmp, agent_spool / path.name)
        path.unlink()


# -- data built -------------------------------------------------------------------------
def data_counts(data_root: Path) -> dict[str, int]:
    from lightkeeper.rag import inventory

    out = {"chunks": 0, "entities": 0, "relations": 0, "size_bytes": 0}
    if not data_root.is_dir():
        return out
    for user in inventory.list_users(data_root):
        s = inventory.user_summary(data_root, user)
        out["entities"] += s["entities"]
        out["relations"] += s["relations"]
        out["size_bytes"] += s["size_bytes"]
        chunks = data_root / user / "kv_store_text_chunks.json"
        if chunks.exists():
            out["chunks"] += len(json.loads(chunks.read_text(encoding="utf-8")))
    return out


# -- one bench run ----------------------------------------------------------------------
def bench_once(env: dict[str, str], tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    private = tmp / f"spool-{time.monotonic_ns()}"
    private.mkdir()
    benv = {**env, "LIGHTKEEPER_PATHS__SPOOL_DIR": str(private)}
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    out = lk_json(benv, "bench", "--docs", str(args.docs), "--queries", str(args.queries),
                  "--concurrency", str(args.concurrency), "--users", str(args.users),
                  "--batch", str(args.batch), "--seed", "1", "--keep")
    wall = time.perf_counter() - t0
    s = out["summary"]
    records = [r for r in read_spool(private) if r.get("run_id") == out["run_id"]]
    inserts = [r for r in records if r["op"] == "insert"]
    queries = [r for r in records if r["op"] == "query"]
    kept = Path(out["data_root"]) if out.get("data_root") else None
    counts = data_counts(kept) if kept else {}
    if kept:
        shutil.rmtree(kept.parent, ignore_errors=True)
    ops = s["ops"]
    qops = [v for k, v in ops.items() if k.startswith("query")]
    return {
        "run_id": out["run_id"], "version": out["tuning_version"], "wall_s": wall,
        "docs_per_s": s["ingest_docs_per_s"], "queries_per_s": s["queries_per_s"],
        "ops": {k: {q: v[q] for q in ("count", "errors", "p50_s", "p95_s", "p99_s")}
                for k, v in ops.items()},
        "query_errors": sum(v["errors"] for v in qops),
        "insert_errors": ops.get("insert", {}).get("errors", 0),
        "llm_calls_per_doc": sum(r.get("llm_calls") or 0 for r in inserts) / args.docs,
        "llm_calls_per_query": (sum(r.get("llm_calls") or 0 for r in queries) / len(queries)
                                if queries else None),
        "query_llm_share": (sum(r.get("llm_s") or 0 for r in queries)
                            / max(sum(r["duration_s"] for r in queries), 1e-9)
                            if queries else None),
        "rss_mb": s.get("rss_bytes", 0) / 2**20,
        "load1": (load_before + os.getloadavg()[0]) / 2,
        **counts,
        "records": records, "private": private,
    }


# -- long-document probe (runs in a child process, see main) -----------------------------
def long_documents() -> list[tuple[str, str]]:
    from lightkeeper.rag import corpus
    from lightkeeper.rag.tokenizer import count_tokens

    base = corpus.documents()
    docs = []
    for i in range(LONG_DOCS):
        order = list(base)
        random.Random(100 + i).shuffle(order)
        parts: list[str] = []
        for d in order:
            if count_tokens("\n\n".join([*parts, d.text])) > LONG_DOC_TOKENS:
                break
            parts.append(d.text)
        docs.append(("\n\n".join(parts), f"long/handbook-{i}.txt"))
    return docs


async def _probe(user: str, run_id: str) -> dict[str, Any]:
    from lightkeeper.config import load
    from lightkeeper.rag import corpus
    from lightkeeper.rag.runtime import RagRuntime
    from lightkeeper.rag.tokenizer import count_tokens

    cfg = load()
    docs = long_documents()
    ins: list[float] = []
    qry: list[float] = []
    async with RagRuntime(cfg, run_id=run_id) as rt:
        for text, path in docs:
            t0 = time.perf_counter()
            res = await rt.insert(user, [text], [path])
            ins.append(time.perf_counter() - t0)
            if res["failed"]:
                raise SystemExit(f"long-document insert failed: {res}")
        for q in corpus.questions():
            t0 = time.perf_counter()
            await rt.query(user, q, "mix")
            qry.append(time.perf_counter() - t0)
        version = rt.tuning_version
    return {"version": version, "doc_tokens": [count_tokens(t) for t, _ in docs],
            "insert_s": ins, "query_s": qry}


def probe_long(env: dict[str, str], tmp: Path, tag: str) -> dict[str, Any]:
    private = tmp / f"spool-{time.monotonic_ns()}"
    private.mkdir()
    run_id = f"sweep-long-{tag}-{int(time.time())}"
    user = f"long-{tag}"
    penv = {**env, "LIGHTKEEPER_PATHS__SPOOL_DIR": str(private)}
    load_before = os.getloadavg()[0]
    res = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--probe-long", user,
                          run_id], cwd=REPO, env=penv, capture_output=True, text=True,
                         timeout=600, stdin=subprocess.DEVNULL)
    if res.returncode != 0:
        raise SystemExit(f"long-document probe failed:\n{res.stderr[-3000:]}")
    out = json.loads(res.stdout.strip().splitlines()[-1])
    records = [r for r in read_spool(private) if r.get("run_id") == run_id]
    inserts = [r for r in records if r["op"] == "insert"]
    data_root = Path(env["LIGHTKEEPER_PATHS__DATA_ROOT"])
    from lightkeeper.rag import inventory

    s = inventory.user_summary(data_root, user)
    chunks = len(json.loads((data_root / user / "kv_store_text_chunks.json")
                            .read_text(encoding="utf-8")))
    qs = sorted(out["query_s"])
    return {**out, "chunks": chunks, "entities": s["entities"], "relations": s["relations"],
            "llm_calls_per_doc": sum(r.get("llm_calls") or 0 for r in inserts) / len(inserts),
            "tokens_out_per_doc": sum(r.get("tokens_out") or 0 for r in inserts) / len(inserts),
            "load1": (load_before + os.getloadavg()[0]) / 2,
            "insert_mean_s": statistics.mean(out["insert_s"]),
            "query_p50_s": statistics.median(qs), "query_max_s": qs[-1],
            "records": records, "private": private}


# -- sweep --------------------------------------------------------------------------------
def med(runs: list[dict[str, Any]], key: str, op: str | None = None) -> float | None:
    values = [(r["ops"].get(op, {}).get(key) if op else r.get(key)) for r in runs]
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(x: float | None, scale: float = 1.0, digits: int = 0) -> str:
    return "-" if x is None else f"{x * scale:.{digits}f}"


def wait_ingested(env: dict[str, str], pairs: list[tuple[int, int]], expected: dict[int, int],
                  timeout: float = 120) -> dict[tuple[int, int], dict[str, Any]]:
    """``tuning compare A B`` for every pair once the agent holds every moved record."""
    deadline = time.monotonic() + timeout
    while True:
        results = {(a, b): lk_json(env, "tuning", "compare", str(a), str(b))
                   for a, b in dict.fromkeys(pairs)}
        have: dict[int, int] = {}
        for (a, b), r in results.items():
            have[a] = sum(row["a_count"] for row in r["rows"])
            have[b] = sum(row["b_count"] for row in r["rows"])
        if all(have.get(v, 0) >= n for v, n in expected.items()):
            return results
        if time.monotonic() > deadline:
            print(f"warning: agent ingested {have}, expected {expected}; comparing anyway",
                  file=sys.stderr)
            return results
        time.sleep(1.0)


def sweep(args: argparse.Namespace) -> None:
    started = time.time()
    tmp = Path(tempfile.mkdtemp(prefix="lk-tuning-sweep-"))
    sock = Path(tempfile.mkdtemp(prefix="lksw-", dir="/tmp")) / "a.sock"
    env = make_env(tmp, sock)
    (tmp / "data").mkdir()
    agent_spool = tmp / "state" / "spool"
    sim = {k.split("__")[1].lower(): v for k, v in SIMULATION.items()}
    print(f"tuning sweep: bench --docs {args.docs} --queries {args.queries} --concurrency "
          f"{args.concurrency} --users {args.users} --batch {args.batch} --seed 1, "
          f"{args.repeats} round(s) over the settings (forward, then reversed, ...); offline "
          f"provider, simulated latency {sim}; {os.cpu_count()} CPUs; state in {tmp}",
          flush=True)
    lk(env, "agent", "--detach", "--wait", "60")
    rows: dict[str, dict[str, Any]] = {
        label: {"label": label, "changes": changes, "versions": [], "runs": [], "probes": [],
                "probe_versions": []}
        for label, changes in SETTINGS}
    expected: dict[int, int] = {}
    pairs: list[tuple[int, int]] = []
    probe_pairs: list[tuple[int, int]] = []
    current = ""
    try:
        for rnd in range(args.repeats):
            order = SETTINGS if rnd % 2 == 0 else SETTINGS[::-1]
            versions: dict[str, int] = {}
            for label, changes in order:
                res = lk_json(env, "tuning", "set", *[f"{k}={v}" for k, v in changes.items()],
                              "--note", f"tuning sweep round {rnd + 1}: {label}")
                version = int(res["version"])
                versions[label] = version
                row = rows[label]
                r = bench_once(env, tmp, args)
                if r["version"] != version:
                    raise SystemExit(f"bench ran under version {r['version']}, expected "
                                     f"{version}: the active file was not picked up")
                expected[version] = expected.get(version, 0) + len(r.pop("records"))
                hand_over(r.pop("private"), agent_spool)
                r["round"] = rnd + 1
                row["runs"].append(r)
                row["versions"].append(version)
                print(f"  round {rnd + 1} v{version:<3} {label:<46} {r['wall_s']:.0f} s, "
                      f"{fmt(r['docs_per_s'], digits=2)} docs/s, "
                      f"{fmt(r['queries_per_s'], digits=2)} q/s, insert p50 "
                      f"{fmt(r['ops']['insert']['p50_s'], 1000)} ms, "
                      f"query:mix p50 {fmt(r['ops'].get('query:mix', {}).get('p50_s'), 1000)}"
                      f" ms, load {r['load1']:.1f}", flush=True)
            ref = versions[SETTINGS[0][0]]
            pairs += [(ref, versions[label]) for label, _ in SETTINGS[1:]]
            current = order[-1][0]
        # The probe runs after the bench rounds, under versions of its own, so that
        # `tuning compare` of a bench pair holds bench operations only.
        chunk_settings = [st for st in SETTINGS if st[1]["llm_model_max_async"] == 4]
        ref_s, small, large = chunk_settings
        # a Latin square: each setting once in each position over three rounds, and no round
        # starts with the setting the previous one ended with (that would share its version)
        orders = [[small, ref_s, large], [ref_s, large, small], [large, small, ref_s]]
        for rnd in range(args.probe_rounds):
            order = orders[rnd % 3]
            if order[0][0] == current:
                order = order[1:] + order[:1]
            versions = {}
            for label, changes in order:
                res = lk_json(env, "tuning", "set", *[f"{k}={v}" for k, v in changes.items()],
                              "--note", f"tuning sweep long-document probe {rnd + 1}: {label}")
                version = int(res["version"])
                if not res.get("changed", True):
                    print(f"warning: probe of {label} shares version {version} with bench runs",
                          file=sys.stderr)
                versions[label] = version
                current = label
                probe = probe_long(env, tmp, f"v{version}-p{rnd + 1}")
                if probe["version"] != version:
                    raise SystemExit(f"probe ran under version {probe['version']}, expected "
                                     f"{version}")
                expected[version] = expected.get(version, 0) + len(probe.pop("records"))
                hand_over(probe.pop("private"), agent_spool)
                probe["round"] = rnd + 1
                rows[label]["probes"].append(probe)
                rows[label]["probe_versions"].append(version)
                print(f"  probe {rnd + 1} v{version:<3} {label:<46} long docs: "
                      f"{probe['chunks']} chunks, {probe['llm_calls_per_doc']:.1f} LLM "
                      f"calls/doc, {probe['tokens_out_per_doc']:.0f} LLM output tokens/doc, "
                      f"insert {probe['insert_mean_s']:.2f} s/doc, mix query p50 "
                      f"{probe['query_p50_s'] * 1000:.0f} ms, load {probe['load1']:.1f}",
                      flush=True)
            ref = versions[SETTINGS[0][0]]
            probe_pairs += [(ref, versions[label]) for label, _ in chunk_settings[1:]]
        compares = wait_ingested(env, pairs + probe_pairs, expected)
    finally:
        lk(env, "agent", "--stop", check=False)
    report(args, list(rows.values()), pairs, probe_pairs, compares, time.time() - started)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(
            {"args": vars(args), "simulation": sim, "cpus": os.cpu_count(),
             "rows": list(rows.values()),
             "compare": [{"a": a, "b": b, **compares[(a, b)]}
                         for a, b in dict.fromkeys(pairs + probe_pairs)],
             "started": started, "elapsed_s": time.time() - started},
            indent=1, default=str), encoding="utf-8")
    if not args.keep_state:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(sock.parent, ignore_errors=True)


def report(args: argparse.Namespace, rows: list[dict[str, Any]], pairs: list[tuple[int, int]],
           probe_pairs: list[tuple[int, int]], compares: dict[tuple[int, int], dict[str, Any]],
           elapsed: float) -> None:
    n = args.repeats
    print(f"\nmedian of {n} bench run(s) per setting, one per round (insert latency includes waiting for the "
          "user's write gate)")
    head = (f"{'setting':<46} {'vers':>7} {'docs/s':>6} {'q/s':>5} {'insert p50/p95/p99 ms':>22} "
            f"{'query:mix p50/p95/p99':>22} {'q:naive p50':>11} {'LLM/doc':>7} {'LLM/q':>5} "
            f"{'q LLM%':>6} {'RSS MB':>6} {'chunks':>6} {'ents':>5} {'rels':>5} {'load':>4}")
    print(head)
    print("-" * len(head))
    for row in rows:
        runs = row["runs"]

        def trio(op: str, runs: list[dict[str, Any]] = runs) -> str:
            return "/".join(fmt(med(runs, q, op), 1000) for q in ("p50_s", "p95_s", "p99_s"))

        vers = ",".join(str(v) for v in dict.fromkeys(row["versions"]))
        print(f"{row['label']:<46} {vers:>7} {fmt(med(runs, 'docs_per_s'), digits=2):>6}"
              f" {fmt(med(runs, 'queries_per_s'), digits=1):>5} {trio('insert'):>22} "
              f"{trio('query:mix'):>22} {fmt(med(runs, 'p50_s', 'query:naive'), 1000):>11} "
              f"{fmt(med(runs, 'llm_calls_per_doc'), digits=2):>7} "
              f"{fmt(med(runs, 'llm_calls_per_query'), digits=2):>5} "
              f"{fmt(med(runs, 'query_llm_share'), 100):>6} "
              f"{fmt(med(runs, 'rss_mb')):>6} {fmt(med(runs, 'chunks')):>6} "
              f"{fmt(med(runs, 'entities')):>5} {fmt(med(runs, 'relations')):>5} "
              f"{fmt(med(runs, 'load1'), digits=1):>4}")
    print("\nper run in round order (docs/s, queries/s, insert p50 ms, query:mix p50 ms, "
          "errors, 1-min load average):")
    for row in rows:
        cells = [f"{r['docs_per_s']:.2f}, {r['queries_per_s']:.2f}, "
                 f"{r['ops']['insert']['p50_s'] * 1000:.0f}, "
                 f"{r['ops'].get('query:mix', {}).get('p50_s', 0) * 1000:.0f}, "
                 f"{r['insert_errors'] + r['query_errors']}, {r['load1']:.1f}" for r in row["runs"]]
        print(f"  {row['label']:<46} " + " | ".join(cells))
    probes = [r for r in rows if r["probes"]]
    if probes:
        print(f"\nlong-document probe (median of {len(probes[0]['probes'])} run(s)): "
              f"{LONG_DOCS} documents of ~{LONG_DOC_TOKENS} tokens inserted one at a time, then "
              "the 20 corpus questions in mix mode one at a time")
        print(f"{'setting':<46} {'vers':>5} {'chunks':>6} {'ents':>5} {'rels':>5} "
              f"{'LLM/doc':>7} {'out tok/doc':>11} {'insert s/doc':>12} {'mix p50 ms':>10} {'mix max ms':>10}  per run "
              "(insert s/doc, mix p50 ms)")
        for row in probes:
            ps = row["probes"]

            def pm(key: str, ps: list[dict[str, Any]] = ps) -> float:
                return statistics.median(p[key] for p in ps)

            per = " | ".join(f"{p['insert_mean_s']:.2f}, {p['query_p50_s'] * 1000:.0f}"
                             for p in ps)
            vers = ",".join(str(v) for v in row["probe_versions"])
            print(f"{row['label']:<46} {vers:>5} {pm('chunks'):>6.0f} {pm('entities'):>5.0f} "
                  f"{pm('relations'):>5.0f} {pm('llm_calls_per_doc'):>7.1f} "
                  f"{pm('tokens_out_per_doc'):>11.0f} "
                  f"{pm('insert_mean_s'):>12.2f} {pm('query_p50_s') * 1000:>10.0f} "
                  f"{pm('query_max_s') * 1000:>10.0f}  {per}")
    labels = {v: row["label"] for row in rows for v in row["versions"] + row["probe_versions"]}
    for title, ps in (("bench runs", pairs), ("long-document probes", probe_pairs)):
        if not ps:
            continue
        print(f"\nlightkeeper tuning compare REF V, {title}, per round (operations A/B and "
              "change of p50, from the agent's store)")
        for a, b in dict.fromkeys(ps):
            cells = []
            for c in compares[(a, b)]["rows"]:
                key = c["op"] + (f":{c['mode']}" if c.get("mode") else "")
                ch = c.get("change_p50")
                cells.append(f"{key} {c['a_count']}/{c['b_count']} "
                             f"{'-' if ch is None else f'{ch * 100:+.0f}%'}")
            print(f"  {a} vs {b} ({labels.get(b, '?')}): " + ", ".join(cells))
    print(f"\nsweep took {elapsed:.0f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=36)
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--users", type=int, default=2)
    ap.add_argument("--batch", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=4,
                    help="rounds over all settings (default 4; even rounds run reversed)")
    ap.add_argument("--json-out", metavar="FILE", help="also write every figure as JSON")
    ap.add_argument("--probe-rounds", type=int, default=2,
                    help="long-document probe rounds after the bench rounds (default 2; 0: none)")
    ap.add_argument("--keep-state", action="store_true",
                    help="keep the temporary state directory (printed at the start)")
    ap.add_argument("--probe-long", nargs=2, metavar=("USER", "RUN_ID"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.probe_long:
        out = asyncio.run(_probe(*args.probe_long))
        print(json.dumps(out))
        return
    sweep(args)


if __name__ == "__main__":
    main()
