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

Consistency with the store: a writer announces its transaction (:meth:`OpsWindows.begin`)
before committing and folds (:meth:`add`) or cuts (:meth:`cut`) after; ingest and retention
do both through :meth:`OpsWindows.writing`. A reader notes the
generation before its query and keeps its answer only if no writer began or finished
meanwhile (:meth:`keep`): its query then saw exactly the data the held sums describe.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from lightkeeper.catalog import LATENCY_BUCKETS

_N = len(LATENCY_BUCKETS)
MAX_ENTRIES = 8  # windows held (the console asks for one window at a time per pane)
IDLE_S = 120.0  # a window nobody read for this long is let go (a console polls every 2 s)

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


@dataclass
class _Entry:
    start: float  # the window's first minute
    step: float | None  # latency: the bucket width; None for a summary
    groups: dict[tuple[Any, ...], list[Any]]
    read_at: float  # the clock's time of its last read


@dataclass
class Write:
    """What a write of the histogram tables tells the windows once it committed."""

    rows: list[Any] = field(default_factory=list)  # the batch's histogram rows, to fold
    cut_before: float | None = None  # rows older than this were deleted


class OpsWindows:
    """Window sums held for the agent's calls; see the module's text for the protocol."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._gen = 0
        self._writing = 0
        self._entries: OrderedDict[tuple[Any, ...], _Entry] = OrderedDict()

    # -- readers ----------------------------------------------------------------------------
    def ticket(self) -> int | None:
        """The generation a query starts at, or None while a writer is between its begin and
        its end (an answer computed now cannot be kept)."""
        with self._lock:
            return None if self._writing else self._gen

    def keep(self, key: tuple[Any, ...], ticket: int | None, start: float, step: float | None,
             groups: dict[tuple[Any, ...], list[Any]]) -> None:
        """Hold a query's answer (its groups are the entry's from now on) if nothing was
        written since its ticket."""
        with self._lock:
            if ticket is None or ticket != self._gen or self._writing:
                return
            self._entries[key] = _Entry(start, step, groups, self._clock())
            self._entries.move_to_end(key)
            while len(self._entries) > MAX_ENTRIES:
                self._entries.popitem(last=False)

    def read(self, key: tuple[Any, ...], start: float,
             render: Callable[[dict[tuple[Any, ...], list[Any]]], Any]) -> Any | None:
        """``render(groups)`` of the window held for ``key`` from ``start``, else None. It runs
        under the lock: the groups are not changed while it reads them."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry.start != start:  # the window moved on: its first minute left
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            entry.read_at = self._clock()
            return render(entry.groups)

    # -- writers ----------------------------------------------------------------------------
    def wanted(self) -> bool:
        """Whether any window is held (a writer need not collect rows otherwise)."""
        return bool(self._entries)

    @contextmanager
    def writing(self) -> Iterator[Write]:
        """Around a write of the histogram tables: :meth:`begin` before, then :meth:`add` or
        :meth:`cut` with what the body put in the :class:`Write`, or :meth:`abort` if it
        raised."""
        self.begin()
        done = Write()
        try:
            yield done
        except BaseException:
            self.abort()
            raise
        if done.cut_before is not None:
            self.cut(done.cut_before)
        else:
            self.add(done.rows)

    def begin(self) -> None:
        """Before a write of the histogram tables commits."""
        with self._lock:
            self._writing += 1
            self._gen += 1

    def abort(self) -> None:
        """The write did not commit."""
        with self._lock:
            self._writing -= 1
            self._gen += 1

    def add(self, rows: Iterable[Sequence[Any]]) -> None:
        """After a batch committed: fold its histogram rows (``ophist.BATCH_ROWS``: minute,
        op, mode, tuning version, run id, then the sums, extremes and buckets) into every
        window they fall in."""
        rows = list(rows)
        with self._lock:
            self._writing -= 1
            self._gen += 1
            # windows no console reads any more: let go, so batches stop collecting rows
            idle = self._clock() - IDLE_S
            for key in [k for k, e in self._entries.items() if e.read_at < idle]:
                del self._entries[key]
            for entry in self._entries.values():
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

    def cut(self, before: float) -> None:
        """After rows older than ``before`` were deleted (retention): the windows that
        reached back that far are dropped."""
        with self._lock:
            self._writing -= 1
            self._gen += 1
            for key in [k for k, e in self._entries.items() if e.start < before]:
                del self._entries[key]
