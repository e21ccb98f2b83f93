"""Live progress of the agent's running jobs: bar, bytes, rate, ETA, current item."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.console import Group
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from lightkeeper.fmt import age, human_bytes, human_duration, rate, shorten


def job_line(job: dict[str, Any], width: int = 80) -> Group:
    p = job.get("progress") or {}
    pct = p.get("percent")
    head = Text(no_wrap=True, overflow="ellipsis")
    head.append(f"{job.get('kind', '?')} ", style="bold")
    head.append(f"{job.get('id', '')} ", style="dim")
    head.append(f"{job.get('state', '')} {p.get('phase') or ''}")
    if job.get("actor"):
        head.append(f"  by {job['actor']}", style="dim")
    grid = Table.grid(expand=True, padding=(0, 1))
    grid.add_column(ratio=1)
    grid.add_column(no_wrap=True)
    bar = ProgressBar(total=100.0, completed=float(pct or 0.0), pulse=pct is None)
    figures = []
    figures.append("  ?%" if pct is None else f"{pct:5.1f}%")
    if p.get("bytes_total"):
        figures.append(f"{human_bytes(p.get('bytes_done'))}/{human_bytes(p['bytes_total'])}")
    elif p.get("files_total"):
        figures.append(f"{p.get('files_done', 0)}/{p['files_total']} files")
    figures.append(rate(p.get("rate_bytes_s")))
    figures.append("ETA " + human_duration(p.get("eta_s")))
    grid.add_row(bar, Text("  ".join(figures)))
    cur = p.get("current")
    lines: list[Any] = [head, grid]
    if cur:
        lines.append(Text(shorten(cur, max(20, width - 4)), style="dim", no_wrap=True))
    return Group(*lines)


class JobProgress(Static):
    """Shows the active jobs of the given kinds, or a quiet line when none runs."""

    def __init__(self, kinds: Iterable[str], idle: str, id: str | None = None) -> None:
        super().__init__(id=id, classes="jobprogress")
        self.kinds = set(kinds)
        self.idle = idle
        self.jobs: list[dict[str, Any]] = []

    def show(self, jobs: list[dict[str, Any]] | None) -> None:
        mine = [j for j in (jobs or []) if j.get("kind") in self.kinds]
        self.jobs = mine
        if not mine:
            self.update(Text(self.idle, style="dim"))
            return
        width = self.size.width or 80
        self.update(Group(*(job_line(j, width) for j in mine)))


def last_finished_line(recent: list[dict[str, Any]], kinds: Any, now: float) -> Text | str:
    """' last: KIND STATE AGE - error' for the newest finished job of ``kinds`` ('' if none)."""
    done = [j for j in recent if j.get("kind") in kinds
            and j.get("state") not in ("queued", "running")]
    if not done:
        return ""
    j = done[0]
    return Text(f" last: {j['kind']} {j['state']} {age(j.get('finished'), now)}"
                + (f" - {j['error']}" if j.get("error") else ""),
                style="red" if j["state"] == "failed" else "dim")

