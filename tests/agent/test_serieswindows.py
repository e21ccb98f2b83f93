"""The chart series the agent holds in memory (agent.store.serieswindows): once a series was asked
for, flushes of samples (late ones too), minute and hour roll-ups, the window moving on and
retention leave the held answer equal to the store's own query, for every agg and label filter."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from lightkeeper.agent.store import queries
from lightkeeper.agent.store.db import Store
from lightkeeper.agent.store.rollup import Retention, apply_retention, rollup
from lightkeeper.agent.store.serieswindows import MAX_GROUPS, MAX_HELD
from tests.agent.test_opswindows import _close

NOW = 1_790_000_000.0 - 1_000.0  # 16 min 40 s past an hour: the windows stand still
LABELS = {"cpu_usage_ratio": ("", "cpu0", "cpu1"), "userdir_bytes": ("alice", "alina", "bob")}
# (metric, label filter, window): raw, minute and hour resolutions, a slow series, prefixes
ASKED = [("cpu_usage_ratio", None, 3600.0), ("cpu_usage_ratio", "cpu*", 6 * 3600.0),
         ("cpu_usage_ratio", "", 86400.0), ("cpu_usage_ratio", None, 7 * 86400.0),
         ("userdir_bytes", "al*", 86400.0), ("userdir_bytes", "bob", 7 * 86400.0)]
AGGS = ("avg", "min", "max", "last")


def _samples(start: float, end: float, every: float, seed: int) -> list[tuple[Any, ...]]:
    out = []
    i = 0
    t = start
    while t < end:
        for metric, labels in LABELS.items():
            for n, label in enumerate(labels):
                i += 1
                value = None if (i + seed) % 97 == 0 else float((i * 7919 + seed) % 1000) / 10
                out.append((t + n * 0.5, metric, label, value))
        t += every
    return out


def _answers(store: Store, now: float, held: bool) -> dict[str, Any]:
    windows = store.series_windows if held else None
    return {f"{m} {label} {w} {agg}": queries.series(store, m, label, w, now=now, agg=agg,
                                                      windows=windows)
            for m, label, w in ASKED for agg in AGGS}


def _flush(store: Store, samples: list[tuple[Any, ...]]) -> None:
    store.add_samples(samples)
    assert store.flush() == len(samples)


def test_held_series_answer_as_the_store_does_through_flushes_rollups_and_retention(
        tmp_path: Path) -> None:
    store = Store(tmp_path / "m.duckdb")
    windows = store.series_windows
    _flush(store, _samples(NOW - 3 * 86400, NOW - 60, 60.0, seed=1))
    rollup(store, now=NOW - 600)  # the last ten minutes are raw only
    first = _answers(store, NOW, held=True)  # from the store, then held (one entry per series)
    assert windows.held() == len(ASKED)
    assert any(v is None for a in first.values() for s in a["series"].values() for _, v in s)
    assert _close(first, _answers(store, NOW, held=False))

    # flushes: samples in the last minutes, a new label, one older than every window, and a
    # late one in a minute that is already rolled up (the roll-up's next pass redoes it)
    mark = math.floor((NOW - 600) / 60) * 60
    _flush(store, [*_samples(NOW - 59, NOW, 7.0, seed=2), (NOW - 3, "cpu_usage_ratio", "cpu9", 42.0),
                   (NOW - 9 * 86400, "cpu_usage_ratio", "", 1.0),
                   (mark - 1, "cpu_usage_ratio", "cpu0", 99.5)])
    rollup(store, now=NOW - 600)
    assert windows.held() == len(ASKED)  # still held: the flushes were folded into them
    assert _close(_answers(store, NOW, held=True), _answers(store, NOW, held=False))

    # minutes and hours roll up: no bucket's sums change
    rollup(store, now=NOW)
    _flush(store, _samples(NOW - 20, NOW, 5.0, seed=3))
    assert windows.held() == len(ASKED)
    assert _close(_answers(store, NOW, held=True), _answers(store, NOW, held=False))

    # the windows move on: held entries keep their buckets from the new start
    later = NOW + 4000
    _flush(store, _samples(NOW, later, 30.0, seed=4))
    assert _close(_answers(store, later, held=True), _answers(store, later, held=False))
    assert windows.held() == len(ASKED)

    # retention deletes minute rollups from before the day's window: that one is asked again
    apply_retention(store, Retention(minute_days=0.5), now=later)
    assert windows.held() == len(ASKED) - 1
    assert _close(_answers(store, later, held=True), _answers(store, later, held=False))
    store.close()


def test_a_query_overlapping_a_flush_is_answered_but_not_held(tmp_path: Path) -> None:
    store = Store(tmp_path / "m.duckdb")
    _flush(store, _samples(NOW - 3600, NOW, 60.0, seed=5))
    windows = store.series_windows
    windows.begin()  # a flush between its begin and its commit
    answer = queries.series(store, "cpu_usage_ratio", None, 3600, now=NOW, windows=windows)
    windows.abort()
    assert answer["series"] and not windows.wanted()
    # an answer too large to hold (every label's buckets) is not held either
    many = [(NOW - 30, "userdir_bytes", f"u{i}", 1.0) for i in range(MAX_HELD + 1)]
    _flush(store, many)
    queries.series(store, "userdir_bytes", None, 3600, step=1.0, now=NOW, windows=windows)
    assert not windows.wanted()
    store.close()


def test_held_series_stay_within_their_budget(tmp_path: Path) -> None:
    """Series asked for are held up to MAX_GROUPS buckets in all: past it, the least recently
    read are let go (a console asking for every user's chart cannot grow the agent)."""
    store = Store(tmp_path / "m.duckdb")
    per = MAX_HELD // 2  # labels per metric: each answer is one bucket per label
    _flush(store, [(NOW - 30, f"m{k}", f"u{i}", 1.0) for k in range(8) for i in range(per)])
    windows = store.series_windows
    for k in range(8):
        queries.series(store, f"m{k}", None, 3600, step=3600.0, now=NOW, windows=windows)
    held = [k for k in range(8) if windows.read((f"m{k}", None, 3600, 3600.0, "samples_1h"),
                                               queries.series(store, f"m{k}", None, 3600,
                                                              step=3600.0, now=NOW)["start"],
                                               len) is not None]
    assert held == list(range(8 - MAX_GROUPS // per, 8))  # the newest that fit
    store.close()
