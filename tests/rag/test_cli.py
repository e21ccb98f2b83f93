"""The rag, bench and demo commands, run as a user runs them (real CLI, real agent)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.rag.test_serve import wait_for

pytestmark = pytest.mark.slow  # started first: see tests/conftest.py


def spool_records(lk_env: dict[str, str]) -> list[dict]:
    """Every spooled operation record, in the order the operations ran (each CLI process
    writes its own file, named by pid: file names do not give that order)."""
    spool = Path(lk_env["LIGHTKEEPER_PATHS__STATE_DIR"]) / "spool"
    out = []
    for f in spool.glob("ops-*.jsonl"):
        try:
            text = f.read_text()
        except FileNotFoundError:
            continue  # a finished writer's file, ingested and removed by a running agent
        out += [json.loads(line) for line in text.splitlines()]
    return sorted(out, key=lambda r: r["ts"])


def test_rag_insert_query_users(run_cli, lk_env, tmp_path: Path) -> None:
    doc = tmp_path / "marigold.txt"
    doc.write_text("Captain Ilya Brenn commands the ferry Marigold at Port Aubel.\n")
    ins = json.loads(run_cli("rag", "insert", "--user", "alice", str(doc), "--json").stdout)
    assert ins["documents"] == 1 and ins["failed"] == [] and ins["ids"][0].startswith("doc-")
    q = json.loads(run_cli("rag", "query", "--user", "alice", "--mode", "local",
                           "Who commands the ferry Marigold?", "--json").stdout)
    assert "Ilya Brenn" in q["answer"] and q["mode"] == "local"
    users = json.loads(run_cli("rag", "users", "--json").stdout)["users"]
    assert [u["user"] for u in users] == ["alice"]
    assert users[0]["documents"] == 1 and users[0]["entities"] >= 2
    assert users[0]["relations"] >= 1 and users[0]["size_bytes"] > 0
    text = run_cli("rag", "users").stdout
    assert "alice" in text and "ENTITIES" in text
    piped = json.loads(run_cli("rag", "insert", "--user", "alice", "-", "--json",
                               input="Pilot Nadia Orsk guides ships through the Narrows.").stdout)
    assert piped["documents"] == 1 and piped["files"] == ["stdin"]
    assert [r["op"] for r in spool_records(lk_env)] == ["insert", "query", "insert"]


@pytest.mark.parametrize("args, message", [
    (("rag", "query", "--user", "../etc", "q"), "invalid user id"),
    (("rag", "query", "--user", "nobody", "q"), "no LightRAG data"),
    (("rag", "insert", "--user", "alice", "/nonexistent.txt"), "no such file"),
    (("bench", "--concurrency", "0"), "--concurrency must be"),
    (("bench", "--modes", "fast"), "unknown query mode"),
])
def test_bad_input_exits_2_with_a_clear_message(run_cli, args, message) -> None:
    res = run_cli(*args, check=False)
    assert res.returncode == 2, res.stderr
    assert message in res.stderr


def test_binary_file_is_refused(run_cli, tmp_path: Path) -> None:
    f = tmp_path / "blob.bin"
    f.write_bytes(b"\xff\xfe\x00garbage")
    res = run_cli("rag", "insert", "--user", "alice", str(f), check=False)
    assert res.returncode == 2 and "not UTF-8" in res.stderr


def test_bench_prints_quantiles_and_tags_the_spool(run_cli, lk_env) -> None:
    res = run_cli("bench", "--docs", "6", "--queries", "10", "--concurrency", "2",
                  "--modes", "naive,mix", "--no-record", "--json")
    out = json.loads(res.stdout)
    ops = out["summary"]["ops"]
    assert set(ops) == {"insert", "query:naive", "query:mix"}
    assert ops["insert"]["count"] == 6 and ops["query:naive"]["count"] == 5
    for v in ops.values():
        assert v["errors"] == 0 and 0 < v["p50_s"] <= v["p95_s"] <= v["p99_s"] <= v["max_s"]
    assert out["summary"]["queries_per_s"] > 0
    recs = spool_records(lk_env)
    assert len(recs) == 16 and {r["run_id"] for r in recs} == {out["run_id"]}
    # the scratch data root is removed; the real data root is untouched
    assert not (Path(lk_env["LIGHTKEEPER_PATHS__STATE_DIR"]) / "bench" / out["run_id"]).exists()
    assert not any(Path(lk_env["LIGHTKEEPER_PATHS__DATA_ROOT"]).iterdir())


def _latency(run_cli, user: str) -> dict[str, dict]:
    rows = json.loads(run_cli("metrics", "latency", "--user", user, "--json").stdout)
    return {(f"{r['op']}/{r['mode']}" if r["mode"] else r["op"]): r for r in rows}


def test_demo_seeds_users_and_runs_a_background_workload(run_cli, lk_env) -> None:
    """Two users served by `lightkeeper serve` against `lightkeeper offline-llm` and driven
    over REST, two through the library runtime; `demo --stop` leaves no process behind."""
    import psutil

    state = Path(lk_env["LIGHTKEEPER_PATHS__STATE_DIR"])
    res = run_cli("demo", "--no-console", "--rate", "20", "--json", timeout=600)
    out = json.loads(res.stdout)
    assert set(out["seed"]["users"]) == {"harbour_office", "keepers_school", "lens_workshop",
                                         "archivist"}
    assert all(not u["failed"] for u in out["seed"]["users"].values()), out["seed"]
    assert out["agent"] == "running" and out["workload"]["started"]
    served = out["servers"]
    assert set(served) == {"harbour_office", "keepers_school"}
    pids = [out["workload"]["pid"], *(e["pid"] for e in served.values())]
    pids.append(json.loads((state / "demo-servers.json").read_text())["llm"]["pid"])
    try:
        users = {u["user"]: u for u in json.loads(run_cli("rag", "users", "--json").stdout)["users"]}
        assert users["archivist"]["documents"] >= 36 and users["archivist"]["entities"] > 50
        # the served users' documents went through their server's pipeline: 18 each
        for user in served:
            assert users[user]["documents"] == 18 and users[user]["entities"] > 20
        # their operations (REST inserts, queries in several modes) reach the agent, recorded
        # by their server (the library workload never opens a served workspace)
        for user, e in served.items():
            got = wait_for(lambda user=user: (lambda g: g if g.get("insert/text", {}).get("count", 0)
                                           >= 18 and sum(1 for k in g if k.startswith("query/"))
                                           >= 4 else None)(_latency(run_cli, user)),
                        60, f"{user}'s REST operations in metrics latency")
            assert got["insert/text"]["queued"] == got["insert/text"]["count"]
            assert all(r["errors"] == 0 for r in got.values()), got
            recs = [r for r in spool_records(lk_env) if r["user"] == user]
            assert all(r["pid"] == e["pid"] for r in recs), {r["pid"] for r in recs}
        wait_for(lambda: (lambda g: g if sum(1 for k in g if k.startswith("query/")) >= 4
                             else None)(_latency(run_cli, "archivist")), 60, "archivist's ops")
        # the processes panel's data names both servers by their workspace, gated and
        # instrumented. A server's spool file appears with its first record, and discovery
        # runs every 15 s: a pass just before that file appeared lists the server as not
        # instrumented until the next one.
        def both_listed(ps: list[dict]) -> list[dict] | None:
            mine = [p for p in ps if p["label"] in {"serve:harbour_office", "serve:keepers_school"}]
            return ps if len(mine) == 2 and all(p["gated"] and p["instrumented"]
                                                for p in mine) else None
        procs = wait_for(lambda: both_listed(
            json.loads(run_cli("processes", "--json").stdout)["processes"]),
            60, "both servers in lightkeeper processes, gated and instrumented")
        # (the machine may run other tests' servers at the same time: look at ours)
        ours = {p["label"]: p for p in procs if p["label"] in
                {f"serve:{u}" for u in served}}
        assert set(ours) == {f"serve:{u}" for u in served}
        for label, p in ours.items():
            assert p["pid"] == served[label.split(":", 1)[1]]["pid"]
            assert p["gated"] and p["instrumented"]
        pid = out["workload"]["pid"]
        seen = 0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the background process writes spool records
            seen = len([r for r in spool_records(lk_env) if r["pid"] == pid])
            if seen >= 3:
                break
            time.sleep(0.2)
        ingested = json.loads(run_cli("demo", "--status", "--json").stdout)
        assert ingested["running"] and ingested["pid"] == pid
        assert set(ingested["served"]) == set(served)
        assert all(s["running"] for s in ingested["servers"]["servers"].values())
        # the agent may already have ingested and removed some files: count what it holds too
        assert seen >= 3 or ingested.get("ops", 0) >= 3
        again = json.loads(run_cli("demo", "--no-console", "--json").stdout)
        assert again["workload"] == {"started": False, "pid": pid, "detail": "already running"}
        assert again["servers"] == served  # the running servers are reused
    finally:
        stop = json.loads(run_cli("demo", "--stop", "--json").stdout)
    assert stop["stopped"] and stop["pid"] == pid
    assert {s["name"] for s in stop["servers"] if s["stopped"]} == {
        "serve harbour_office", "serve keepers_school", "offline-llm"}
    assert run_cli("demo", "--status", check=False).returncode == 1
    assert not [p for p in pids if psutil.pid_exists(p)
                and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    left = subprocess.run(["pgrep", "-f", str(state)], capture_output=True, text=True)
    agent_pids = {int(x) for x in left.stdout.split()} - {os.getpid()}
    cmdlines = [" ".join(psutil.Process(p).cmdline()) for p in agent_pids
                if psutil.pid_exists(p)]
    assert not [c for c in cmdlines if "serve" in c.split() or "offline-llm" in c
                or "--run-workload" in c], cmdlines
