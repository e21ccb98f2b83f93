"""The LightRAG latency windows the agent holds in memory (agent.store.opswindows): once a window
was asked for, ingest batches, hour roll-ups, retention and the window's first minute moving on
leave the held answer equal to the store's own query, and a query that overlapped a write is
not kept."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import pytest

from lightkeeper.agent.ingest import SpoolIngester
from lightkeeper.agent.store import ophist, queries
from lightkeeper.agent.store.db import Store
from lightkeeper.agent.store.opswindows import IDLE_S, OpsWindows
from lightkeeper.agent.store.rollup import Retention, apply_retention
from tests.agent.spoolgen import dead_pid, record, spool_name, write_records
from tests.agent.test_ophist import mixed_records

WINDOWS = (300.0, 3600.0, 86400.0)


def _close(a: Any, b: Any) -> bool:
    """Equal, floats to rounding (sums added in another order)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and math.isclose(a, b, rel_tol=1e-9,
                                                                abs_tol=1e-12)
    return bool(a == b)


def _answers(store: Store, now: float, windows: OpsWindows | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for w in WINDOWS:
        out[f"summary {w}"] = queries.ops_summary(store, w, now=now, windows=windows)
        out[f"latency {w}"] = queries.latency(store, w, now=now, windows=windows)
        out[f"latency {w} hourly"] = queries.latency(store, w, step=3600, now=now,
                                                     windows=windows)
    return out


def _held(windows: OpsWindows, store: Store, now: float) -> int:
    """How many of the answers come from memory (their render is called under the lock)."""
    hits = 0
    for w in WINDOWS:
        start = ophist.window_start(now, w)
        hits += windows.read(("summary", w), start, lambda g: g) is not None
        for step in {ophist.chart_step(queries.default_step(w, 60)), ophist.chart_step(3600)}:
            hits += windows.read(("latency", w, step), start, lambda g: g) is not None
    return hits


class Spool:
    def __init__(self, tmp_path: Path, store: Store) -> None:
        self.dir = tmp_path / "spool"
        self.dir.mkdir()
        self.pid = dead_pid()
        self.files = 0
        self.ing = SpoolIngester(store, self.dir, stage_dir=tmp_path)

    def add(self, records: list[dict[str, Any]]) -> None:
        write_records(self.dir / spool_name(self.pid, 1000, self.files), records)
        self.files += 1
        assert self.ing.ingest_once() == len(records)


def test_held_windows_answer_as_the_store_does_through_ingest_rollup_and_retention(
        tmp_path: Path) -> None:
    now = math.floor(time.time() / 60) * 60 - 30.0  # mid-minute, past: the windows stand still
    store = Store(tmp_path / "m.duckdb")
    spool = Spool(tmp_path, store)
    spool.add(mixed_records(1500, now, seed=1, span=80000))
    windows = store.ops_windows
    first = _answers(store, now, windows)  # computed from the store, then held
    assert _held(windows, store, now) == 8
    assert _close(first, _answers(store, now, None))

    # batches: operations in the last minutes, a new operation and mode, and late ones from
    # before every window (a backlog) and from inside the day's window only
    late = [record(10_000 + i, op="graph", mode="read") for i in range(30)]
    for i, r in enumerate(late):
        r["ts"] = now - (90_000 if i % 2 else 7_000) - i
    spool.add(mixed_records(400, now, seed=2, span=200) + late)
    assert _held(windows, store, now) == 8  # still held: the batch was added to them
    assert _close(_answers(store, now, windows), _answers(store, now, None))

    # the hours roll up and minutes merge: no sum changes, the held answers stay right
    ophist.compact(store, now=now + 3 * 3600)
    spool.add(mixed_records(200, now, seed=3, span=100))
    assert _held(windows, store, now) == 8
    assert _close(_answers(store, now, windows), _answers(store, now, None))

    # retention into the day's window: that window is dropped and asked the store again
    apply_retention(store, Retention(ops_days=0.5), now=now)
    assert _held(windows, store, now) < 8
    assert _close(_answers(store, now, windows), _answers(store, now, None))

    # the window's first minute moves on: asked the store again
    later = now + 60
    assert _held(windows, store, later) == 0
    assert _close(_answers(store, later, windows), _answers(store, later, None))
    store.close()


def test_filtered_calls_are_not_held(tmp_path: Path) -> None:
    now = time.time()
    store = Store(tmp_path / "m.duckdb")
    Spool(tmp_path, store).add(mixed_records(300, now, seed=4, span=3000))
    windows = store.ops_windows
    queries.ops_summary(store, 3600, tuning_version=1, now=now, windows=windows)
    queries.latency(store, 3600, op="query", now=now, windows=windows)
    queries.ops_summary(store, 3600, user="u1", now=now, windows=windows)
    assert not windows.wanted()
    store.close()


def test_an_answer_that_overlapped_a_write_is_not_kept() -> None:
    w = OpsWindows()
    groups: dict[tuple[Any, ...], list[Any]] = {}
    ticket = w.ticket()
    w.begin()  # a batch is being written while the query runs
    assert w.ticket() is None
    w.keep(("summary", 60.0), ticket, 0.0, None, groups)
    w.add([])
    assert not w.wanted()  # its snapshot may or may not hold the batch: not kept
    ticket = w.ticket()
    w.begin()
    w.abort()  # a write that did not commit still ends the ticket
    w.keep(("summary", 60.0), ticket, 0.0, None, groups)
    assert not w.wanted()
    w.keep(("summary", 60.0), w.ticket(), 0.0, None, groups)
    assert w.wanted()
    assert w.read(("summary", 60.0), 60.0, lambda g: g) is None  # moved on: dropped
    assert not w.wanted()


@pytest.mark.parametrize("entries", [12])
def test_held_windows_are_bounded(entries: int) -> None:
    w = OpsWindows()
    for i in range(entries):
        w.keep(("summary", float(i)), w.ticket(), 0.0, None, {})
    held = sum(w.read(("summary", float(i)), 0.0, lambda g: g) is not None
               for i in range(entries))
    assert held == 8


def test_windows_nobody_reads_are_let_go_at_the_next_batch() -> None:
    """After a console closes, ingest stops collecting rows for its windows."""
    now = [0.0]
    w = OpsWindows(clock=lambda: now[0])
    w.keep(("summary", 60.0), w.ticket(), 0.0, None, {})
    w.keep(("summary", 3600.0), w.ticket(), 0.0, None, {})
    now[0] = IDLE_S - 1
    assert w.read(("summary", 60.0), 0.0, lambda g: g) is not None  # still read
    now[0] = IDLE_S + 1
    w.begin()
    w.add([])
    assert w.read(("summary", 3600.0), 0.0, lambda g: g) is None  # not read for too long
    assert w.read(("summary", 60.0), 0.0, lambda g: g) is not None
    now[0] = 3 * IDLE_S
    w.begin()
    w.add([])
    assert not w.wanted()
