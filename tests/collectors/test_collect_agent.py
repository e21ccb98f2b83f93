"""The collectors inside a real agent: samples reach the store, faults do not stop collection."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import psutil

FAST = {"LIGHTKEEPER_COLLECT__USERDIR_INTERVAL": "1",
        "LIGHTKEEPER_COLLECT__SYSTEM_INTERVAL": "0.5",
        "LIGHTKEEPER_STORE__FLUSH_INTERVAL": "0.2"}


def last(agent, metric: str, label: str) -> float | None:
    doc = agent.client.series(metric, label=label, window="5m", step=1, agg="last")
    points = [v for _, v in doc["series"].get(label, []) if v is not None]
    return points[-1] if points else None


def wait_for(fn, expected, timeout: float = 45.0):
    deadline = time.monotonic() + timeout
    got = None
    while time.monotonic() < deadline:
        got = fn()
        if got == expected:
            return got
        time.sleep(0.2)
    raise AssertionError(f"waited {timeout:.0f} s for {expected!r}, last saw {got!r}")


def collector(agent, name: str) -> dict:
    return next(c for c in agent.client.status()["collectors"] if c["name"] == name)


def test_agent_stores_system_and_user_samples_and_survives_a_removed_user(lk_env, start_agent):
    data = Path(lk_env["LIGHTKEEPER_PATHS__DATA_ROOT"])
    (data / "alice").mkdir()
    (data / "alice" / "kv_store_full_docs.json").write_bytes(b"a" * 1000)
    (data / "bob").mkdir()
    (data / "bob" / "vdb_chunks.json").write_bytes(b"b" * 10)
    agent = start_agent(FAST)
    wait_for(lambda: last(agent, "userdir_bytes", "alice"), 1000.0)
    assert last(agent, "memory_total_bytes", "") == psutil.virtual_memory().total
    wait_for(lambda: last(agent, "cpu_usage_ratio", "") is not None, True)
    assert last(agent, "process_resident_memory_bytes", "agent") > 0

    (data / "alice" / "graph_chunk_entity_relation.graphml").write_bytes(b"g" * 500)
    wait_for(lambda: last(agent, "userdir_bytes", "alice"), 1500.0)

    shutil.rmtree(data / "bob")
    wait_for(lambda: last(agent, "userdir_users", ""), 1.0)
    runs = collector(agent, "userdirs")["runs"]
    wait_for(lambda: collector(agent, "userdirs")["runs"] >= runs + 2, True)
    assert collector(agent, "userdirs")["errors"] == 0
    assert agent.proc.poll() is None


def test_agent_whose_data_root_vanishes_logs_once_and_keeps_collecting(lk_env, start_agent):
    # the agent refuses to start without a data root; this is the root going away later
    root = Path(lk_env["LIGHTKEEPER_PATHS__DATA_ROOT"])
    (root / "carol").mkdir()
    (root / "carol" / "doc.json").write_bytes(b"c" * 77)
    agent = start_agent(FAST)
    wait_for(lambda: last(agent, "userdir_bytes", "carol"), 77.0)
    aside = root.with_name("data-aside")
    root.rename(aside)
    wait_for(lambda: last(agent, "userdir_data_root_present", ""), 0.0)
    runs = collector(agent, "userdirs")["runs"]
    wait_for(lambda: collector(agent, "userdirs")["runs"] >= runs + 3, True)
    assert collector(agent, "userdirs")["errors"] == 0
    assert last(agent, "memory_total_bytes", "") == psutil.virtual_memory().total
    log_file = Path(lk_env["LIGHTKEEPER_PATHS__STATE_DIR"]) / "logs" / "lightkeeper.jsonl"
    lines = [ln for ln in log_file.read_text().splitlines() if "userdirs.data_root_missing" in ln]
    assert len(lines) == 1
    assert str(root) in lines[0]

    aside.rename(root)
    (root / "carol" / "more.json").write_bytes(b"c" * 23)
    wait_for(lambda: last(agent, "userdir_data_root_present", ""), 1.0)
    wait_for(lambda: last(agent, "userdir_bytes", "carol"), 100.0)
