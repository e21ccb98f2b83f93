"""Helpers shared by panes: series arithmetic, small Rich tables."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text

from lightkeeper.tui.agentdata import problem


def series_lines(doc: Any) -> dict[str, list[list[float]]]:
    if problem(doc) or not isinstance(doc, dict):
        return {}
    return doc.get("series") or {}


def sum_series(series: dict[str, list[list[float]]], skip: set[str] | None = None
               ) -> list[list[float]]:
    """Add the labels' series bucket by bucket (network interfaces into one line)."""
    total: dict[float, float] = {}
    for label, points in series.items():
        if skip and label in skip:
            continue
        for ts, v in points:
            if v is not None:
                total[ts] = total.get(ts, 0.0) + v
    return [[ts, total[ts]] for ts in sorted(total)]


def invert(points: list[list[float]]) -> list[list[float]]:
    return [[ts, None if v is None else 1.0 - v] for ts, v in points]


def small_table(title: str, columns: list[str], rows: list[list[Any]], empty: str = "(none)",
                justify_right: set[int] | None = None) -> Table:
    # an empty table says so below its header, across the whole width (as a row it was cut
    # to the first column's width: "(no user grew in the last …")
    t = Table(title=title, title_justify="left", title_style="bold", box=None, expand=True,
              padding=(0, 1), show_edge=False, header_style="dim",
              caption=None if rows else Text(" " + empty, style="dim"), caption_justify="left")
    right = justify_right or set()
    for i, c in enumerate(columns):
        t.add_column(c, justify="right" if i in right else "left", no_wrap=True,
                     overflow="ellipsis")
    for r in rows:
        t.add_row(*[x if isinstance(x, Text) else Text("" if x is None else str(x)) for x in r])
    return t


def note_text(message: str) -> Text:
    return Text(message, style="dim italic")
