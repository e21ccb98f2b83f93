"""The rag, bench and demo commands, run as a user runs them (real CLI, real agent)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest


def spool_records(lk_env: dict[str, str]) -> list[dict]:
    spool = Path(lk_env["LIGHTKEEPER_PATHS__STATE_DIR"]) / "spool"
    out = []
    for f in sorted(spool.glob("ops-*.jsonl")):
        out += [json.loads(line) for line in f.read_text().splitlines()]
    return out


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


def test_demo_seeds_users_and_runs_a_background_workload(run_cli, lk_env) -> None:
    res = run_cli("demo", "--no-console", "--rate", "20", "--json", timeout=240)
    out = json.loads(res.stdout)
    assert set(out["seed"]["users"]) == {"harbour-office", "keepers-school", "lens-workshop",
                                         "archivist"}
    assert out["agent"] == "running" and out["workload"]["started"]
    try:
        users = {u["user"]: u for u in json.loads(run_cli("rag", "users", "--json").stdout)["users"]}
        assert users["archivist"]["documents"] >= 36 and users["archivist"]["entities"] > 50
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
        # the agent may already have ingested and removed some files: count what it holds too
        assert seen >= 3 or ingested.get("ops", 0) >= 3
        again = json.loads(run_cli("demo", "--no-console", "--json").stdout)
        assert again["workload"] == {"started": False, "pid": pid, "detail": "already running"}
    finally:
        stop = json.loads(run_cli("demo", "--stop", "--json").stdout)
    assert stop["stopped"] and stop["pid"] == pid
    assert run_cli("demo", "--status", check=False).returncode == 1
