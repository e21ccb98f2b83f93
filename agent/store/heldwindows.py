"""Answers of window queries held in memory and kept current by the store's writers (issue 13).

The console repeats the same few window queries on every poll (a chart's series, the LightRAG
latency summary). Each costs DuckDB a few to twenty milliseconds whatever its rows, while what
changed since the last poll is a handful of new rows. :class:`HeldWindows` holds the last
answers' additive state (sums, counts, extremes per group) and every writer of the tables they
read folds what it wrote into them, so a poll reads memory. Subclasses say how rows fold
(:meth:`HeldWindows._fold`), what a window that moved on keeps (:meth:`HeldWindows._moved`) and
what a deletion cuts (:meth:`HeldWindows._cut`): :mod:`opswindows` (LightRAG's histograms) and
:mod:`serieswindows` (the samples behind the charts).

Consistency with the store: a writer announces its transaction (:meth:`HeldWindows.begin`)
before it commits and folds (:meth:`HeldWindows.add`) or cuts (:meth:`HeldWindows.cut`) after;
:meth:`HeldWindows.writing` does both around a block. A reader notes the generation before its
query (:meth:`HeldWindows.ticket`) and keeps its answer only if no writer began or finished
meanwhile (:meth:`HeldWindows.keep`): its query then saw exactly the data the held state
describes, and every later write reaches that state.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

IDLE_S = 120.0  # a window nobody read for this long is let go (a console polls every 2 s)


@dataclass
class Entry:
    start: float  # the window's first bucket
    step: float | None  # the bucket width (None: one group per key, no buckets)
    groups: dict[tuple[Any, ...], list[Any]]
    read_at: float  # the clock's time of its last read
    spec: Any = None  # what the subclass needs to fold rows into it (filters, table)


@dataclass
class Write:
    """What a write tells the windows once it committed."""

    rows: list[Any] = field(default_factory=list)  # the rows it added, to fold
    cut: Any = None  # what it deleted (the subclass's form); None: nothing


class HeldWindows:
    """Window answers held for the agent's calls; see the module's text for the protocol."""

    max_entries = 8
    max_groups: int | None = None  # all entries' groups together (None: only max_entries)
    max_entry_groups: int | None = None  # an answer with more groups is not held

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._gen = 0
        self._writing = 0
        self._entries: OrderedDict[tuple[Any, ...], Entry] = OrderedDict()

    # -- what subclasses define ---------------------------------------------------------------
    def _fold(self, entries: list[Entry], rows: list[Any]) -> None:
        """Fold a committed write's rows into the held entries (called under the lock)."""
        raise NotImplementedError

    def _moved(self, entry: Entry, start: float) -> bool:
        """The window now starts at ``start``: adjust the entry and say whether it still
        answers (False: it is dropped and the store is asked again)."""
        return False

    def _cut(self, entry: Entry, cut: Any) -> bool:
        """Whether a deletion (``Write.cut``) reached into the entry (then it is dropped)."""
        raise NotImplementedError

    # -- readers ----------------------------------------------------------------------------
    def ticket(self) -> int | None:
        """The generation a query starts at, or None while a writer is between its begin and
        its end (an answer computed now cannot be kept)."""
        with self._lock:
            return None if self._writing else self._gen

    def keep(self, key: tuple[Any, ...], ticket: int | None, start: float, step: float | None,
             groups: dict[tuple[Any, ...], list[Any]], spec: Any = None) -> None:
        """Hold a query's answer (its groups are the entry's from now on) if nothing was
        written since its ticket."""
        if self.max_entry_groups is not None and len(groups) > self.max_entry_groups:
            return
        with self._lock:
            if ticket is None or ticket != self._gen or self._writing:
                return
            self._entries[key] = Entry(start, step, groups, self._clock(), spec)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
            if self.max_groups is not None:  # the least recently read go first
                total = sum(len(e.groups) for e in self._entries.values())
                while total > self.max_groups and self._entries:
                    total -= len(self._entries.popitem(last=False)[1].groups)

    def read(self, key: tuple[Any, ...], start: float,
             render: Callable[[dict[tuple[Any, ...], list[Any]]], Any]) -> Any | None:
        """``render(groups)`` of the window held for ``key`` from ``start``, else None. It runs
        under the lock: the groups are not changed while it reads them."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry.start != start:
                if not self._moved(entry, start):
                    del self._entries[key]
                    return None
                entry.start = start
            self._entries.move_to_end(key)
            entry.read_at = self._clock()
            return render(entry.groups)

    def answer(self, key: tuple[Any, ...], start: float, step: float | None,
               compute: Callable[[], dict[tuple[Any, ...], list[Any]]],
               render: Callable[[dict[tuple[Any, ...], list[Any]]], Any],
               spec: Any = None) -> Any:
        """``render`` of the window held for ``key``; else of ``compute()`` (the store's
        query), which is then held if no write overlapped it."""
        held = self.read(key, start, render)
        if held is not None:
            return held
        ticket = self.ticket()
        groups = compute()
        self.keep(key, ticket, start, step, groups, spec)
        return render(groups)

    def held(self) -> int:
        """How many windows are held."""
        return len(self._entries)

    # -- writers ----------------------------------------------------------------------------
    def wanted(self) -> bool:
        """Whether any window is held (a writer need not collect rows otherwise)."""
        return bool(self._entries)

    @contextmanager
    def writing(self) -> Iterator[Write]:
        """Around a write: :meth:`begin` before, then :meth:`add` or :meth:`cut` with what the
        body put in the :class:`Write`, or :meth:`abort` if it raised."""
        self.begin()
        done = Write()
        try:
            yield done
        except BaseException:
            self.abort()
            raise
        if done.cut is not None:
            self.cut(done.cut)
        else:
            self.add(done.rows)

    def begin(self) -> None:
        """Before a write commits."""
        with self._lock:
            self._writing += 1
            self._gen += 1

    def abort(self) -> None:
        """The write did not commit."""
        with self._lock:
            self._writing -= 1
            self._gen += 1

    def add(self, rows: Iterable[Sequence[Any]]) -> None:
        """After a write committed: fold the rows it added into every window they fall in."""
        with self._lock:
            self._writing -= 1
            self._gen += 1
            # windows no console reads any more: let go, so writers stop collecting rows
            idle = self._clock() - IDLE_S
            for key in [k for k, e in self._entries.items() if e.read_at < idle]:
                del self._entries[key]
            if self._entries:  # (a flush with nothing held copies nothing)
                rows = list(rows)
                if rows:
                    self._fold(list(self._entries.values()), rows)

    def cut(self, cut: Any) -> None:
        """After rows were deleted: the windows the deletion reached into are dropped."""
        with self._lock:
            self._writing -= 1
            self._gen += 1
            for key in [k for k, e in self._entries.items() if self._cut(e, cut)]:
                del self._entries[key]


def held_answer(windows: HeldWindows | None, key: tuple[Any, ...], start: float,
                step: float | None, compute: Callable[[], dict[tuple[Any, ...], list[Any]]],
                render: Callable[[dict[tuple[Any, ...], list[Any]]], Any],
                spec: Any = None) -> Any:
    """:meth:`HeldWindows.answer`, or ``render(compute())`` when nothing is held (no
    ``windows``: a caller outside the agent, or a filtered query)."""
    if windows is None:
        return render(compute())
    return windows.answer(key, start, step, compute, render, spec)
