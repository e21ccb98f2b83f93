"""From LightRAG operations to the agent's store: spool ingestion, bench runs, rag.users."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from lightkeeper.client import AgentError


def wait_for(fn, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


def test_operations_reach_the_store_and_bench_runs_are_recorded(agent, run_cli,
                                                                 tmp_path: Path) -> None:
    doc = tmp_path / "ferry.txt"
    doc.write_text("Captain Ilya Brenn commands the ferry Marigold at Port Aubel.")
    run_cli("rag", "insert", "--user", "alice", str(doc))
    run_cli("rag", "query", "--user", "alice", "--mode", "naive", "Who commands the Marigold?")
    out = json.loads(run_cli("bench", "--docs", "4", "--queries", "6", "--concurrency", "2",
                             "--modes", "local,mix", "--json").stdout)
    assert out["record"] == "recorded with the agent (bench.record)"
    run_id = out["run_id"]

    def bench_rows():
        rows = agent.client.call("rag.summary", window=3600, run_id=run_id)
        return rows if sum(r["count"] for r in rows) == 10 else None

    rows = wait_for(bench_rows)
    assert rows, "the bench's spool records were not ingested"
    by_key = {(r["op"], r["mode"]): r for r in rows}
    assert by_key[("insert", "")]["count"] == 4
    assert by_key[("query", "local")]["count"] == 3 and by_key[("query", "mix")]["count"] == 3
    assert all(r["errors"] == 0 for r in rows)

    def alice_rows():
        rows = agent.client.call("rag.summary", window=3600, user="alice")
        return rows if sum(r["count"] for r in rows) == 2 else None

    assert wait_for(alice_rows)
    runs = agent.client.call("bench.runs")
    run = next(r for r in runs if r["id"] == run_id)
    assert run["summary"]["ops"]["insert"]["count"] == 4
    assert run["params"]["concurrency"] == 2

    users = agent.client.call("rag.users")
    assert [u["user"] for u in users["users"]] == ["alice"]
    assert users["users"][0]["documents"] == 1
    with pytest.raises(AgentError) as bad:
        agent.client.call("rag.users", user="../etc")
    assert bad.value.status == 400 and "invalid user id" in str(bad.value)
    with pytest.raises(AgentError) as missing:
        agent.client.call("rag.users", user="nobody")
    assert missing.value.status == 404
