"""The console's chart series, kept current in memory (issue 13).

A chart's series (``metrics.series``: one metric, its labels or a prefix of them, bucketed by a
step over a window) costs DuckDB 3-8 ms whatever the rows, and every pane of the console asks
for its charts on every poll. Here each answer's per-bucket state is held once computed and
every flush of samples folds its rows into it, so a poll reads memory.

What a bucket holds is additive: for ``avg`` the sum of value × count and the count (a rollup
row carries the mean and the count of the samples it stands for), for ``min`` and ``max`` the
extremes, for ``last`` the latest value and its time. So one held entry answers every ``agg``,
and folding the samples a flush wrote gives the store's own answer:

- rolling samples up into minutes and hours changes no bucket's sums or extremes (a rollup
  row's mean times its count is its samples' sum); the rollup writes through
  :meth:`SeriesWindows.writing` all the same, so that a query overlapping it is not kept;
- a window that moved on keeps its buckets from the new start (starts are whole steps, so a
  bucket is either all in the window or all out of it);
- a retention pass that deleted rows of the table an entry reads, from before the entry's
  start, drops it (the store is asked again);
- a sample that reaches the store after its bucket was rolled up counts here at once, and in
  the store's answer from the rollup's next pass (which redoes the last bucket for such late
  samples).

The protocol with the store's writers and readers is :mod:`heldwindows`'.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from lightkeeper.agent.store.heldwindows import Entry, HeldWindows

MAX_HELD = 20_000  # an answer with more buckets (every user's series, say) is not held
# All held series together: a bucket's state is about 200 bytes, so at most about 10 MB
MAX_GROUPS = 50_000

# A bucket's state, as the store's query returns it after (bucket, label):
# [sum of value × n, sum of n, min, max, last value, time of the last value]
SUM, N, LO, HI, LAST, LAST_TS = range(6)


@dataclass(frozen=True)
class SeriesSpec:
    metric: str
    label: str | None  # exact, or a prefix when it ends with "*"
    table: str  # the resolution the window reads (retention's cut is per table)

    def matches(self, label: str) -> bool:
        if self.label is None:
            return True
        if self.label.endswith("*"):
            return label.startswith(self.label[:-1])
        return label == self.label


def bucket_of(ts: float, step: float) -> float:
    """The bucket a time falls in, as the store's ``floor(ts / step) * step``."""
    return math.floor(ts / step) * step


def fold_sample(acc: list[Any], ts: float, value: float | None) -> None:
    """One raw sample (a count of 1) into a bucket's state."""
    acc[N] += 1
    if value is None:
        return
    acc[SUM] = value if acc[SUM] is None else acc[SUM] + value
    acc[LO] = value if acc[LO] is None else min(acc[LO], value)
    acc[HI] = value if acc[HI] is None else max(acc[HI], value)
    if acc[LAST_TS] is None or ts >= acc[LAST_TS]:
        acc[LAST], acc[LAST_TS] = value, ts


def value_of(acc: list[Any], agg: str) -> float | None:
    if agg == "avg":
        return None if acc[SUM] is None or not acc[N] else acc[SUM] / acc[N]
    return acc[{"min": LO, "max": HI, "last": LAST}[agg]]


class SeriesWindows(HeldWindows):
    """Chart series held for ``metrics.series``. An entry's groups are bucket states by
    (label, bucket); its spec is a :class:`SeriesSpec`. The rows a flush folds are the samples
    it wrote, ``(ts, metric, label, value)``; a retention pass's cut is ``{table: limit}``."""

    max_entries = 32  # the console's panes show up to about a dozen charts
    max_groups = MAX_GROUPS
    max_entry_groups = MAX_HELD

    def _fold(self, entries: list[Entry], rows: list[Any]) -> None:
        by_metric: dict[str, list[Entry]] = {}
        for entry in entries:
            by_metric.setdefault(entry.spec.metric, []).append(entry)
        for ts, metric, label, value in rows:
            for entry in by_metric.get(metric, ()):
                if ts < entry.start or not entry.spec.matches(label):
                    continue
                assert entry.step is not None
                key = (label, bucket_of(ts, entry.step))
                acc = entry.groups.get(key)
                if acc is None:
                    entry.groups[key] = acc = [None, 0, None, None, None, None]
                fold_sample(acc, ts, value)

    def _moved(self, entry: Entry, start: float) -> bool:
        if start < entry.start:
            return False  # the clock went back: ask the store
        for key in [k for k in entry.groups if k[1] < start]:
            del entry.groups[key]
        return True

    def _cut(self, entry: Entry, cut: Any) -> bool:
        limit = cut.get(entry.spec.table)
        return limit is not None and entry.start < limit
