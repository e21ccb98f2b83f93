"""The spool is written by other accounts: what a hostile or broken writer can put there.

Each test is named after the finding of issue #11 it covers (High 1, High 2, Medium 1, Low).
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest

from lightkeeper.agent.alerts import AlertEvaluator, default_rules
from lightkeeper.agent.histograms import RagHistograms
from lightkeeper.agent.ingest import SpoolIngester
from lightkeeper.agent.store.db import Store
from tests.agent.spoolgen import dead_pid, record, spool_name, write_records


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    d = tmp_path / "spool"
    d.mkdir()
    return d


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "state" / "m.duckdb")
    yield s
    s.close()


def ingester(store: Store, spool: Path, tmp_path: Path) -> SpoolIngester:
    stage = tmp_path / "state"
    stage.mkdir(exist_ok=True)
    return SpoolIngester(store, spool, stage_dir=stage)


def quarantined(store: Store) -> list[dict]:
    return store.query_dicts("SELECT file, off, line, error FROM spool_quarantine ORDER BY file, off")


def count(store: Store, sql: str = "SELECT count(*) FROM rag_ops") -> int:
    return store.execute(sql)[0][0]


# -- High 1 -----------------------------------------------------------------------------------

def test_high1_bad_line_is_quarantined_and_other_lines_and_files_go_on(
        store: Store, spool: Path, tmp_path: Path) -> None:
    """A garbage line, then records whose llm_calls / tokens_in overflow (2**70) and a user with
    a lone surrogate: on main the block took the slow path and DuckDB's ConversionException
    aborted every pass, so later files stayed stuck forever."""
    pid = dead_pid()
    f0 = spool / spool_name(pid, 1000, 0)
    f1 = spool / spool_name(pid, 1000, 1)
    with open(f0, "wb") as fh:
        fh.write(b"this is not json\n")
        fh.write(json.dumps(record(1) | {"llm_calls": 2**70}).encode() + b"\n")
        fh.write(json.dumps(record(2) | {"tokens_in": 2**70}).encode() + b"\n")
        fh.write(json.dumps(record(3) | {"user": "a\ud800b"}).encode() + b"\n")
        fh.write(json.dumps(record(4)).encode() + b"\n")
    write_records(f1, [record(i) for i in range(5)])
    ing = ingester(store, spool, tmp_path)
    assert ing.ingest_once() == 6
    q = quarantined(store)
    assert len(q) == 4
    errors = " | ".join(r["error"] for r in q)
    assert "not JSON" in errors and "llm_calls" in errors and "tokens_in" in errors
    assert "surrogate" in errors
    assert count(store) == 6
    assert not f0.exists() and not f1.exists()  # both files finished and removed
    assert ing.stats.last_error is None and ing.lag() == 0.0


def test_high1_stuck_ingest_counts_into_lag(store: Store, spool: Path, tmp_path: Path) -> None:
    """A pass that cannot get on (the store busy) shows as lag while it waits; on main the lag
    stayed at its last value (0.0) however long the pass was stuck."""
    write_records(spool / spool_name(dead_pid(), 1000, 0), [record(i) for i in range(3)])
    ing = ingester(store, spool, tmp_path)
    t0 = time.time()
    with store.lock:  # another writer holds the store (a long job, a checkpoint...)
        worker = threading.Thread(target=ing.ingest_once, kwargs={"now": t0}, daemon=True)
        worker.start()
        deadline = time.monotonic() + 30
        while ing.stats.pass_started is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert ing.lag(t0 + 120) >= 120
    worker.join(30)
    assert count(store) == 3 and ing.lag(t0 + 1) == 0.0  # caught up


def test_high1_failing_ingest_counts_into_lag_and_fires_ingest_alert(
        store: Store, tmp_path: Path) -> None:
    """Ingestion that fails on every pass (here the spool path is not a directory) makes the
    lag grow from the last good pass, and the ingest_lag alert fires."""
    bad_spool = tmp_path / "spool-is-a-file"
    bad_spool.write_text("x")
    ing = ingester(store, bad_spool, tmp_path)
    t0 = time.time()
    events: list[str] = []
    rules = [r for r in default_rules(_cfg(tmp_path)) if r.name == "ingest_lag"]
    alerts = AlertEvaluator(rules, store, lambda event, **kw: events.append(event))
    for step in range(0, 200, 20):
        now = t0 + step
        with pytest.raises(NotADirectoryError):
            ing.ingest_once(now=now)
        alerts.evaluate({("lightkeeper_ingest_lag_seconds", ""): (now, ing.lag(now))}, now)
    assert ing.stats.last_error and "NotADirectoryError" in ing.stats.last_error
    assert ing.lag(t0 + 180) >= 180
    assert "alert.firing" in events
    assert store.execute("SELECT rule FROM alerts WHERE ended IS NULL")[0][0] == "ingest_lag"


def test_high1_failing_ingest_shows_in_status_and_readyz(lk_cfg) -> None:
    """The agent's status carries the ingest error and the lag, and readiness fails."""
    from lightkeeper.agent.daemon import Agent

    spool = lk_cfg.path("paths.spool_dir")
    spool.parent.mkdir(parents=True, exist_ok=True)
    spool.write_text("not a directory")
    agent = Agent(lk_cfg)
    agent.open()
    try:
        with pytest.raises(NotADirectoryError):
            agent.ingester.ingest_once()
        status = agent.status()
        assert status["ingest"]["error"] and not status["ready"]
        assert any("spool ingest failing" in p for p in status["problems"])
        t0 = time.time()
        agent._evaluate_alerts(now=t0 + 400)
        assert agent.services.current[("lightkeeper_ingest_lag_seconds", "")][1] >= 400
    finally:
        agent.close()


def _cfg(tmp_path: Path):
    from lightkeeper import config

    return config.load(env={"LIGHTKEEPER_PATHS__STATE_DIR": str(tmp_path / "state")},
                       read_system=False)


# -- High 2 -----------------------------------------------------------------------------------

def test_high2_symlink_at_staging_name_is_never_written_through(
        store: Store, spool: Path, tmp_path: Path) -> None:
    """On main the block was staged at spool/.ingest-block.tmp: a writer's symlink there made
    the agent overwrite any file (with a root agent, /etc/cron.d meant code execution)."""
    victim = tmp_path / "victim.conf"
    victim.write_text("precious\n")
    (spool / ".ingest-block.tmp").symlink_to(victim)
    write_records(spool / spool_name(dead_pid(), 1000, 0), [record(i) for i in range(4)])
    ing = ingester(store, spool, tmp_path)
    assert ing.ingest_once() == 4
    assert victim.read_text() == "precious\n"
    assert (spool / ".ingest-block.tmp").is_symlink()  # not ours: left alone
    # nothing of the agent's is ever created in the spool
    assert sorted(p.name for p in spool.iterdir()) == [".ingest-block.tmp"]
    # and the staging files (in the agent's own directory) are gone after the pass
    assert not list((tmp_path / "state").glob(".ingest-block.*"))


def test_high2_symlink_named_like_spool_file_never_reaches_quarantine(
        store: Store, spool: Path, tmp_path: Path) -> None:
    """On main a symlink named like a spool file was followed: the bytes of a file the writer
    could not read (a root-only file) landed in spool_quarantine."""
    secret = tmp_path / "shadow"
    secret.write_text("root:$6$secret-hash:19000:0:99999:7:::\n")
    os.chmod(secret, 0o600)
    link = spool / spool_name(dead_pid(), 1000, 0)
    link.symlink_to(secret)
    hard = spool / spool_name(dead_pid(), 1001, 0)
    os.link(secret, hard)  # a hard link (where the kernel allows it) is refused too
    fifo = spool / spool_name(dead_pid(), 1002, 0)
    os.mkfifo(fifo)  # a FIFO must not block the pass
    good = spool / spool_name(dead_pid(), 1003, 0)
    write_records(good, [record(i) for i in range(2)])
    ing = ingester(store, spool, tmp_path)
    assert ing.ingest_once() == 2
    dump = json.dumps(quarantined(store)) + json.dumps(
        store.query_dicts("SELECT * FROM rag_ops"), default=str)
    assert "secret-hash" not in dump and "root:" not in dump
    assert quarantined(store) == []
    assert ing.stats.skipped_files == 3
    assert link.is_symlink() and secret.read_text().startswith("root:")


# -- Medium 1 ---------------------------------------------------------------------------------

def test_medium1_unknown_ops_and_modes_are_quarantined_not_labels(
        store: Store, spool: Path, tmp_path: Path) -> None:
    """50,000 distinct op values became 50,000 label values on /metrics (81 MB per scrape)."""
    recs = [record(i, op=f"op{i}") for i in range(300)]
    recs += [record(i, mode=f"m{i}") for i in range(300)]
    recs += [record(i, op="insert", mode=None) for i in range(5)]
    recs += [record(i, op="query", mode="hybrid") for i in range(5)]
    write_records(spool / spool_name(dead_pid(), 1000, 0), recs)
    ing = ingester(store, spool, tmp_path)
    hist = RagHistograms()
    ing.on_rows = hist.observe
    assert ing.ingest_once() == 10
    assert count(store, "SELECT count(*) FROM spool_quarantine") == 600
    assert set(hist.hist) == {("insert", ""), ("query", "hybrid")}
    errors = {r["error"].split(" ")[0] + " " + r["error"].split(" ")[1] for r in quarantined(store)}
    assert errors == {"unknown op", "unknown mode"}


# -- Low: NaN, Infinity, absurd ts --------------------------------------------------------------

BAD_NUMBERS = [
    ("nan-ts", b'"ts": NaN'),
    ("inf-duration", b'"duration_s": Infinity'),
    ("neg-inf-llm", b'"llm_s": -Infinity'),
    ("huge-ts", b'"ts": 1e300'),
    ("neg-huge-ts", b'"ts": -1e300'),
    ("overflow-ts", b'"ts": 1e400'),
    ("far-future-ts", b'"ts": 4102444800.0'),
    ("far-past-ts", b'"ts": 1.0'),
    ("absurd-duration", b'"duration_s": 1e12'),
    ("negative-count", b'"llm_calls": -3'),
    ("float-count", b'"embed_calls": 2.5'),
    ("int-overflow", b'"pid": 4294967296'),
    ("nul-in-user", b'"user": "a\\u0000b"'),
    ("long-user", b'"user": "' + b"u" * 300 + b'"'),
    # text that a console would render as markup or a terminal as an escape
    ("markup-user", b'"user": "[@click=app.quit]alice[/]"'),
    ("newline-user", b'"user": "alice\\n"'),
    ("c1-csi-error", b'"error_class": "x\\u009b2J"'),
    ("esc-run-id", b'"run_id": "\\u001b]52;c;AAAA\\u0007"'),
    ("unknown-outcome", b'"outcome": "partial"'),
]


@pytest.mark.parametrize("name,field", BAD_NUMBERS, ids=[n for n, _ in BAD_NUMBERS])
def test_low_nan_infinity_and_absurd_values_are_quarantined(
        store: Store, spool: Path, tmp_path: Path, name: str, field: bytes) -> None:
    """Alone in its file, so the fast path (DuckDB's JSON reader) sees it first: on main NaN
    reached /metrics as `_sum NaN` and 1e300 made percentiles `inf`."""
    base = record(0)
    key = field.split(b":")[0].strip(b'" ')
    base.pop(key.decode())
    line = json.dumps(base).encode()[:-1] + b", " + field + b"}\n"
    f = spool / spool_name(dead_pid(), 1000, 0)
    f.write_bytes(line)
    ing = ingester(store, spool, tmp_path)
    assert ing.ingest_once() == 0
    assert count(store) == 0
    assert len(quarantined(store)) == 1


def test_low_good_values_at_the_edges_are_accepted(store: Store, spool: Path, tmp_path: Path) -> None:
    recs = [record(0) | {"tokens_in": 2**63 - 1, "llm_calls": 2**31 - 1, "duration_s": 0,
                         "ts": time.time() + 3600, "user": "u" * 64, "mode": None,
                         "error_class": "ü" * 100, "outcome": "error"}]
    write_records(spool / spool_name(dead_pid(), 1000, 0), recs)
    assert ingester(store, spool, tmp_path).ingest_once() == 1


def test_high1_line_that_breaks_duckdbs_error_message_is_quarantined(
        store: Store, spool: Path, tmp_path: Path) -> None:
    """Found by the fuzz suite: for this line DuckDB's JSON reader raised UnicodeDecodeError (its
    own error message quoted a broken character) instead of a duckdb.Error, which escaped the
    fast path and failed the whole file on every pass."""
    line = json.dumps([{"\x80\x80\U00010000": -(10**24)}, {"\x1f\x80": None}]).encode()
    f = spool / spool_name(dead_pid(), 1000, 0)
    f.write_bytes(line + b"\n" + json.dumps(record(1)).encode() + b"\n")
    ing = ingester(store, spool, tmp_path)
    assert ing.ingest_once() == 1
    assert len(quarantined(store)) == 1 and ing.stats.last_error is None
