"""Spool ingestion: exactly once across SIGKILL, quarantine, partial lines, finished files."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import psutil
import pytest

from lightkeeper.agent.ingest import SpoolIngester
from lightkeeper.agent.store.db import Store
from tests.agent.spoolgen import dead_pid, record, spool_name, write_records


def wait_for(pred, timeout: float = 60.0, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")


def test_partial_line_waits_and_corrupt_line_is_quarantined(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    store = Store(tmp_path / "m.duckdb")
    me = psutil.Process()
    f = spool / spool_name(os.getpid(), int(me.create_time()), 0)
    write_records(f, [record(i) for i in range(5)])
    with open(f, "ab") as fh:
        fh.write(b'{"this is": "not a record"}\n')
        fh.write(b"garbage that is not json\n")
        partial = json.dumps(record(99)).encode()
        fh.write(partial[:20])
    ing = SpoolIngester(store, spool)
    assert ing.ingest_once() == 5
    assert store.execute("SELECT count(*) FROM rag_ops")[0][0] == 5
    q = store.query_dicts("SELECT off, line, error FROM spool_quarantine ORDER BY off")
    assert [r["error"].split(":")[0] for r in q] == ["missing ts, user, op, duration_s", "not JSON"]
    assert ing.stats.pending_bytes == 20  # the partial line waits for its writer
    with open(f, "ab") as fh:
        fh.write(partial[20:] + b"\n")
    assert ing.ingest_once() == 1
    assert store.execute("SELECT count(*) FROM rag_ops")[0][0] == 6
    assert f.exists()  # our process is alive and this is its newest file: not finished


def test_finished_files_removed_and_dead_writers_partial_line_quarantined(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    store = Store(tmp_path / "m.duckdb")
    pid = dead_pid()
    f0 = spool / spool_name(pid, 1000, 0)
    f1 = spool / spool_name(pid, 1000, 1)
    write_records(f0, [record(i) for i in range(10)])
    write_records(f1, [record(i) for i in range(3)])
    with open(f1, "ab") as fh:
        fh.write(b'{"ts": 1')  # the writer died mid-line
    ing = SpoolIngester(store, spool)
    assert ing.ingest_once() == 13
    assert not f0.exists() and not f1.exists()
    assert store.execute("SELECT count(*) FROM spool_quarantine")[0][0] == 1
    assert store.execute("SELECT count(*) FROM spool_offsets")[0][0] == 0


def test_exactly_once_across_agent_sigkill(start_agent, lk_env: dict[str, str]) -> None:
    """Kill the agent with SIGKILL in the middle of ingesting; after a restart every operation is
    in the store exactly once."""
    spool = Path(lk_env["LIGHTKEEPER_PATHS__STATE_DIR"]) / "spool"
    spool.mkdir(parents=True)
    pid = dead_pid()
    expected: set[str] = set()
    for seq in range(12):
        recs = [record(i, user=f"u{seq % 3}") for i in range(25_000)]
        expected.update(r["op_id"] for r in recs)
        write_records(spool / spool_name(pid, 2000, seq), recs)
    a = start_agent()
    # wait until ingestion is visibly under way, then kill it hard
    wait_for(lambda: a.client.status()["ingest"]["rows"] > 0, timeout=60, interval=0.02)
    a.kill()
    b = start_agent()
    store_path = b.cfg.path("store.path")
    wait_for(lambda: b.client.status()["ingest"]["pending_bytes"] == 0 and
             not list(spool.glob("*.jsonl")), timeout=120)
    b.stop()
    store = Store(store_path, read_only=True)
    total, distinct = store.execute("SELECT count(*), count(DISTINCT op_id) FROM rag_ops")[0]
    got = {r[0] for r in store.execute("SELECT op_id FROM rag_ops")}
    assert total == distinct == len(expected) == 300_000
    assert got == expected


@pytest.mark.parametrize("bad", [b'{"ts": "yesterday", "user": "u", "op": "q", "duration_s": 1}',
                                 b'{"ts": 1, "user": "u", "op": "q", "duration_s": -1}',
                                 b'[1, 2, 3]'])
def test_bad_field_types_are_quarantined(tmp_path: Path, bad: bytes) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    store = Store(tmp_path / "m.duckdb")
    f = spool / spool_name(dead_pid(), 1, 0)
    f.write_bytes(bad + b"\n")
    SpoolIngester(store, spool).ingest_once()
    assert store.execute("SELECT count(*) FROM rag_ops")[0][0] == 0
    assert store.execute("SELECT count(*) FROM spool_quarantine")[0][0] == 1


def test_metrics_carry_aggregate_latency_histograms(start_agent, lk_env: dict[str, str]) -> None:
    import subprocess
    import urllib.request

    spool = Path(lk_env["LIGHTKEEPER_PATHS__STATE_DIR"]) / "spool"
    spool.mkdir(parents=True)
    recs = [record(i, user=f"user{i % 7}") for i in range(500)]
    write_records(spool / spool_name(dead_pid(), 3000, 0), recs)
    a = start_agent()
    wait_for(lambda: a.client.status()["ingest"]["rows"] == 500)
    body = urllib.request.urlopen(a.http + "/metrics", timeout=10).read()
    text = body.decode()
    le_50ms = sum(1 for r in recs if r["duration_s"] <= 0.05)
    assert (f'lightkeeper_rag_operation_duration_seconds_bucket{{le="0.05",mode="mix",op="query"}} '
            f"{float(le_50ms)}") in text
    assert 'lightkeeper_rag_operation_duration_seconds_count{mode="mix",op="query"} 500.0' in text
    assert "user0" not in text  # aggregates only
    check = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True)
    assert check.returncode == 0, check.stdout + check.stderr
    summary = a.client.call("rag.summary", window="1h")
    assert summary[0]["count"] == 500 and summary[0]["p99"] is not None


def test_ingest_goes_on_after_the_spool_is_deleted_and_made_again(
        start_agent, lk_env: dict[str, str]) -> None:
    """The agent keeps one watcher on the spool for its life; when the spool itself is removed
    (an operator's cleanup) it watches the directory made in its place and keeps ingesting."""
    import shutil

    spool = Path(lk_env["LIGHTKEEPER_PATHS__STATE_DIR"]) / "spool"
    spool.mkdir(parents=True)
    write_records(spool / spool_name(dead_pid(), 4000, 0), [record(i) for i in range(20)])
    a = start_agent()
    wait_for(lambda: a.client.status()["ingest"]["rows"] == 20)
    shutil.rmtree(spool)
    spool.mkdir()
    write_records(spool / spool_name(dead_pid(), 4000, 1), [record(i) for i in range(20, 50)])
    wait_for(lambda: a.client.status()["ingest"]["rows"] == 50)
    shutil.rmtree(spool)  # and gone for good: the agent makes it again (as at start)
    wait_for(lambda: spool.is_dir())
    write_records(spool / spool_name(dead_pid(), 4000, 2), [record(i) for i in range(50, 60)])
    wait_for(lambda: a.client.status()["ingest"]["rows"] == 60)
    assert a.proc.poll() is None


def test_idle_passes_see_the_next_file(tmp_path: Path) -> None:
    """Passes over an empty spool skip the offsets query once nothing is left to forget; the
    next file is still read whole and exactly once."""
    spool = tmp_path / "spool"
    spool.mkdir()
    store = Store(tmp_path / "m.duckdb")
    ing = SpoolIngester(store, spool)
    assert ing.ingest_once() == 0 and ing.ingest_once() == 0
    pid = dead_pid()
    for seq, count in enumerate((5, 7)):
        write_records(spool / spool_name(pid, 5000, seq), [record(seq * 100 + i)
                                                           for i in range(count)])
        assert ing.ingest_once() == count
        assert ing.ingest_once() == 0 and ing.stats.pending_bytes == 0
        assert not list(spool.iterdir())
    assert store.execute("SELECT count(*), count(DISTINCT op_id) FROM rag_ops")[0] == (12, 12)
    assert store.execute("SELECT count(*) FROM spool_offsets")[0][0] == 0


def test_a_staging_failure_is_the_files_error_not_a_vanished_file(tmp_path: Path) -> None:
    """The staging directory is the agent's own; when it is gone the pass says so and keeps
    the spool file. It used to pass for the spool file having vanished: nothing ingested,
    nothing reported, nothing pending."""
    spool = tmp_path / "spool"
    spool.mkdir()
    store = Store(tmp_path / "m.duckdb")
    f = spool / spool_name(dead_pid(), 1000, 0)
    write_records(f, [record(i) for i in range(4)])
    stage = tmp_path / "stage"
    stage.mkdir()
    ing = SpoolIngester(store, spool, stage_dir=stage)
    stage.rmdir()
    assert ing.ingest_once() == 0
    (error,) = ing.stats.file_errors.values()
    assert f"cannot create a staging file in {stage}" in error
    assert ing.stats.last_error and ing.stats.pending_bytes == f.stat().st_size
    assert f.exists()
    stage.mkdir()
    assert ing.ingest_once() == 4 and not f.exists()
    assert not ing.stats.file_errors and ing.stats.last_error is None
    store.close()


def test_a_private_staging_directory_goes_with_its_ingester(tmp_path: Path) -> None:
    """An ingester given no staging directory makes a private one and removes it when it is
    gone (tests and tools made one per ingester and left it in /tmp); one it was given stays."""
    import gc

    spool = tmp_path / "spool"
    spool.mkdir()
    store = Store(tmp_path / "m.duckdb")
    ing = SpoolIngester(store, spool)
    own = ing.stage_dir
    assert own.is_dir() and os.stat(own).st_mode & 0o777 == 0o700
    stage = tmp_path / "stage"
    stage.mkdir()
    given = SpoolIngester(store, spool, stage_dir=stage)
    del ing, given
    gc.collect()
    assert not own.exists()
    assert stage.is_dir()
    store.close()
