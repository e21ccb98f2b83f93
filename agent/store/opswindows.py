"""The console's latency windows across all users, kept current in memory (issue 13).

rag.summary and rag.latency across all users answer from the per-minute histograms
(:mod:`ophist`). Whatever the rows, such a query costs DuckDB 10-20 ms (its per-column work
over the histograms' 58 columns), and the console repeats it on every poll of the LightRAG
pane. Here the answer's sums are held per window once computed, and every ingest batch adds its
histogram rows to them, so a poll reads memory until the window's first minute moves on (once
a minute), a retention pass cuts into the window, the entry is pushed out by newer ones, or nobody
read it for two minutes (then batches stop collecting rows for it).

What may be added is exactly what the store's query would count: the sums are additive and the
extremes are minima and maxima, so folding a batch's rows (those from the window's first
minute on) into a window's sums gives the sums of the store's rows. Compaction merges rows and
rolls hours up without changing any sum, so it changes nothing here.

Consistency with the store is :mod:`heldwindows`' protocol: ingest and retention write through
:meth:`OpsWindows.writing` (retention's cut is the time its deletion reached), and a query
overlapping a write is answered but not kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lightkeeper.agent.store.heldwindows import IDLE_S, Entry, HeldWindows
from lightkeeper.catalog import LATENCY_BUCKETS

__all__ = ["IDLE_S", "OpsWindows", "fold_point", "fold_sums"]

_N = len(LATENCY_BUCKETS)

# A summary group: [n, errors, sum_s, min_s, max_s, llm_s, embed_s, first, last, queued,
# qw_sum, qw_min, qw_max, d (list), w (list)], the columns of ophist.sums_sql after its group.
_SUMS = (0, 1, 2, 5, 6, 9, 10)
_MINS = (3, 7, 11)
_MAXS = (4, 8, 12)
# A latency point: [n, errors, min_s, max_s, d (list)], ophist.latency_sql's columns.


def _lo(a: Any, b: Any) -> Any:
    return b if a is None else a if b is None else min(a, b)


def _hi(a: Any, b: Any) -> Any:
    return b if a is None else a if b is None else max(a, b)


def _add(a: Any, b: Any) -> Any:
    return b if a is None else a if b is None else a + b


def fold_sums(acc: list[Any], other: Sequence[Any]) -> None:
    """Adds a summary group's values (same shape) into ``acc``."""
    for i in _SUMS:
        acc[i] = _add(acc[i], other[i])
    for i in _MINS:
        acc[i] = _lo(acc[i], other[i])
    for i in _MAXS:
        acc[i] = _hi(acc[i], other[i])
    acc[13] = [x + y for x, y in zip(acc[13], other[13], strict=True)]
    acc[14] = [x + y for x, y in zip(acc[14], other[14], strict=True)]


def fold_point(acc: list[Any], n: int, errors: int, lo: Any, hi: Any, d: Sequence[int]) -> None:
    acc[0] += n
    acc[1] += errors
    acc[2], acc[3] = _lo(acc[2], lo), _hi(acc[3], hi)
    acc[4] = [x + y for x, y in zip(acc[4], d, strict=True)]


class OpsWindows(HeldWindows):
    """rag.summary and rag.latency windows across all users: an entry's groups are a summary's
    groups by (op, mode) (``step`` None) or a latency chart's points by (op, mode, bucket).
    A window whose first minute moved on is asked of the store again; retention's cut (a time)
    drops the windows that reached back that far."""

    max_entries = 8  # the console asks for one window at a time per pane

    def _fold(self, entries: list[Entry], rows: list[Any]) -> None:
        """A batch's histogram rows (``ophist.BATCH_ROWS``: minute, op, mode, tuning version,
        run id, then the sums, extremes and buckets) into every window they fall in."""
        for entry in entries:
            for r in rows:
                ts = r[0]
                if ts < entry.start:
                    continue  # a late operation from before the window
                if entry.step is None:
                    values = [*r[5:18], list(r[18:18 + _N]), list(r[18 + _N:18 + 2 * _N])]
                    acc = entry.groups.get((r[1], r[2]))
                    if acc is None:
                        entry.groups[(r[1], r[2])] = values
                    else:
                        fold_sums(acc, values)
                else:
                    bucket = (ts // entry.step) * entry.step
                    key = (r[1], r[2], bucket)
                    d = list(r[18:18 + _N])
                    point = entry.groups.get(key)
                    if point is None:
                        entry.groups[key] = [r[5], r[6], r[8], r[9], d]
                    else:
                        fold_point(point, r[5], r[6], r[8], r[9], d)

    def _cut(self, entry: Entry, cut: Any) -> bool:
        return bool(entry.start < cut)
