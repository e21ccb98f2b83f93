"""The `lightkeeper tuning` commands end to end: a real agent process and the real CLI."""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from pathlib import Path

from lightkeeper.tuning.activefile import read_active

DEADLINE = 30.0


def wait_for(predicate, what: str, deadline: float = DEADLINE):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def jcli(run_cli, *args: str) -> dict:
    return json.loads(run_cli("tuning", *args, "--json").stdout)


def test_set_show_diff_revert_history(agent, run_cli, lk_cfg):
    r = jcli(run_cli, "set", "chunk_token_size=600", "top_k=60", "--note", "FAQ documents")
    assert r["version"] == 2 and r["changed"]
    human = run_cli("tuning", "set", "llm_model_max_async=8", "--note", "more LLM").stdout
    assert "tuning version 3 recorded" in human and "restart" in human

    run_cli("tuning", "set", "top_k=80", "--user", "alice", "--note", "alice")
    show = jcli(run_cli, "show", "--user", "alice")
    rows = {p["name"]: p for p in show["params"]}
    assert (rows["top_k"]["value"], rows["top_k"]["origin"]) == (80, "user:alice")
    assert (rows["chunk_token_size"]["value"], rows["chunk_token_size"]["origin"]) == \
        (600, "global")
    assert show["file_state"] == "in_sync"
    text = run_cli("tuning", "show", "--user", "alice").stdout
    assert "user:alice" in text and "tuning version 4 for user alice" in text

    d = jcli(run_cli, "diff", "1", "3")
    assert [x["key"] for x in d["rows"]] == ["chunk_token_size", "llm_model_max_async", "top_k"]
    assert "~  chunk_token_size" in run_cli("tuning", "diff", "1", "3").stdout

    rv = jcli(run_cli, "revert", "1", "--note", "p95 got worse")
    assert rv["version"] == 5
    assert jcli(run_cli, "diff", "1", "5")["rows"] == []
    assert read_active(lk_cfg.path("paths.tuning_file"))[0] == 5

    hist = jcli(run_cli, "history")["versions"]
    assert [v["version"] for v in hist] == [5, 4, 3, 2, 1]
    assert hist[0]["reverted_from"] == 1 and hist[0]["note"] == "p95 got worse"
    assert "@" in hist[0]["actor"]  # user@host of whoever ran the command
    events = agent.client.events(kind="audit", q="tuning.changed")
    assert len(events) == 4


def test_failures_exit_non_zero_with_a_reason(agent, run_cli):
    bad = run_cli("tuning", "set", "top_k=0", "--note", "x", check=False)
    assert bad.returncode == 2 and "top_k: 0 is not allowed" in bad.stderr
    bad = run_cli("tuning", "set", "chunk_overlap_token_size=1500", "--note", "x", check=False)
    assert bad.returncode == 2 and "smaller than chunk_token_size" in bad.stderr
    bad = run_cli("tuning", "set", "top_k", "--note", "x", check=False)
    assert bad.returncode == 2 and "expected KEY=VALUE" in bad.stderr
    bad = run_cli("tuning", "set", "top_k=5", check=False)
    assert bad.returncode == 2 and "--note" in bad.stderr
    bad = run_cli("tuning", "diff", "1", "42", check=False)
    assert bad.returncode == 2 and "does not exist" in bad.stderr
    bad = run_cli("tuning", "import-env", "/nonexistent/lightrag.env", "--note", "x",
                  check=False)
    assert bad.returncode == 2 and "no such file" in bad.stderr
    v = run_cli("tuning", "validate", "top_k=x", check=False)
    assert v.returncode == 1 and "error   top_k" in v.stdout
    assert jcli(run_cli, "history")["versions"][0]["version"] == 1


def test_embedding_protection_from_the_cli(agent, run_cli, lk_cfg):
    user_dir = lk_cfg.path("paths.data_root") / "alice"
    user_dir.mkdir(parents=True)
    (user_dir / "vdb_entities.json").write_text(json.dumps(
        {"embedding_dim": 256, "data": [{"__id__": "ent-1"}], "matrix": ""}))
    bad = run_cli("tuning", "set", "embedding_dim=1024", "--note", "bigger model", check=False)
    assert bad.returncode == 1 and "alice" in bad.stderr and "--acknowledge-rebuild" in bad.stderr
    ok = jcli(run_cli, "set", "embedding_dim=1024", "--note", "bigger model",
              "--acknowledge-rebuild")
    assert ok["acknowledged_rebuild"] == ["embedding_dim"]


def test_export_and_import_env(agent, run_cli, tmp_path):
    run_cli("tuning", "set", "chunk_token_size=800", "top_k=55", "--note", "x")
    out = tmp_path / "lightrag.env"
    r = jcli(run_cli, "export-env", "--output", str(out))
    assert r["version"] == 2 and out.read_text() == r["text"]
    assert "CHUNK_SIZE=800" in run_cli("tuning", "export-env").stdout
    run_cli("tuning", "revert", "1", "--note", "back")
    imp = jcli(run_cli, "import-env", str(out), "--note", "restore box settings")
    assert imp["version"] == 4 and set(imp["imported"]) >= {"chunk_token_size", "top_k"}
    assert jcli(run_cli, "diff", "2", "4")["rows"] == []


def test_params_lists_the_model(agent, run_cli):
    doc = jcli(run_cli, "params")
    assert {p["name"] for p in doc["params"]} >= {"chunk_token_size", "graph_max_depth"}
    text = run_cli("tuning", "params").stdout
    assert "CHUNK_SIZE" in text and "new_documents" in text


def test_agent_records_external_edits_and_refuses_invalid_ones(agent, run_cli, lk_cfg):
    path = lk_cfg.path("paths.tuning_file")
    wait_for(path.exists, "the agent to write the active file")
    jcli(run_cli, "show")
    path.write_text(path.read_text().replace("top_k = 40", "top_k = 45"))

    def external_version():
        hist = jcli(run_cli, "history")["versions"]
        return hist[0] if hist[0]["actor"] == "external-edit" else None

    v = wait_for(external_version, "the agent to record the external edit")
    assert v["changes"] == ["top_k"]
    wait_for(lambda: read_active(path)[0] == v["version"], "the file to carry the version")

    path.write_text(path.read_text().replace("top_k = 45", "top_k = -5"))
    wait_for(lambda: agent.client.events(q="external_edit_refused"),
             "the refusal to be recorded")
    assert jcli(run_cli, "history")["versions"][0]["version"] == v["version"]
    show = jcli(run_cli, "show")
    assert show["file_state"].startswith("invalid") and show["version"] == v["version"]

    def firing():
        return [a for a in agent.client.alerts(active=True) if a["rule"] == "tuning_invalid_edit"]

    wait_for(firing, "the tuning_invalid_edit alert to fire")
    # repair through lightkeeper: a new version replaces the bad edit and the alert clears
    run_cli("tuning", "revert", str(v["version"]), "--note", "undo the broken hand edit")
    wait_for(lambda: not firing(), "the alert to clear")
    assert read_active(path)[1]["top_k"] == 45


def test_compare_versions_from_spooled_operations(agent, run_cli, lk_cfg):
    run_cli("tuning", "set", "chunk_top_k=10", "--note", "fewer chunks")
    spool = lk_cfg.path("paths.spool_dir")
    spool.mkdir(parents=True, exist_ok=True)
    now = time.time()
    lines = []
    for version, n, base in ((1, 40, 0.50), (2, 5, 0.30)):
        for i in range(n):
            lines.append(json.dumps({
                "v": 1, "op_id": uuid.uuid4().hex, "ts": now - 60 + i * 0.1, "user": "alice",
                "op": "query", "mode": "mix", "duration_s": base + i * 0.001, "llm_s": 0.1,
                "llm_calls": 1, "embed_s": 0.01, "embed_calls": 1, "embed_items": 1,
                "tokens_in": 100, "tokens_out": 50, "result_bytes": 300, "outcome": "ok",
                "error_class": None, "tuning_version": version, "pid": os.getpid(),
                "run_id": None}))
    name = f"ops-{socket.gethostname()}-{os.getpid()}-{int(now)}-000000.jsonl"
    tmp = spool / (name + ".part")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.rename(spool / name)

    def counted():
        doc = agent.client.call("rag.compare_versions", a=1, b=2)
        rows = [r for r in doc["rows"] if r["op"] == "query"]
        return rows if rows and rows[0]["a_count"] == 40 and rows[0]["b_count"] == 5 else None

    wait_for(counted, "the agent to ingest the spooled operations")
    doc = jcli(run_cli, "compare", "1", "2")
    row = [r for r in doc["rows"] if r["op"] == "query"][0]
    assert row["thin_evidence"] is True and row["change_p50"] < 0
    text = run_cli("tuning", "compare", "1", "2").stdout
    assert "query" in text and "thin evidence" in text and "40" in text
    assert Path(lk_cfg.path("paths.tuning_file")).exists()
