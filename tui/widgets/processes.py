"""The Overview processes panel: LightRAG processes named by the user or workspace they serve,
with memory, CPU, uptime, restarts, and whether each is instrumented and gated; an ungated writer
on a user's directory stands out (runbook: ungated_writer). Self-contained: the pane fetches
``processes.list`` through the client and hands the answer to :meth:`ProcessesPanel.show_rows`.
"""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from lightkeeper.contracts.agent import ProcessesResponse, ProcessRow
from lightkeeper.fmt import human_bytes, human_duration, pct
from lightkeeper.tui.agentdata import Failed

MAX_ROWS = 8


def _yes(flag: Any) -> Text:
    return Text("yes", style="green") if flag else Text("no", style="dim")


def processes_table(rows: list[ProcessRow]) -> Table:
    t = Table(title="Processes", title_justify="left", title_style="bold", box=None,
              expand=True, padding=(0, 1), show_edge=False, header_style="dim")
    for name, right in (("PROCESS", False), ("RSS", True), ("CPU", True), ("UP", True),
                        ("RESTARTS", True), ("INSTR", False), ("GATED", False)):
        t.add_column(name, justify="right" if right else "left", no_wrap=True,
                     overflow="ellipsis")
    # ungated writers first, then by memory
    ordered = sorted(rows, key=lambda r: (not r.get("ungated_writer"), -(r.get("rss_bytes") or 0)))
    for r in ordered[:MAX_ROWS]:
        agent = r.get("kind") == "agent"
        label = Text(r["label"], style="bold red" if r.get("ungated_writer") else "")
        t.add_row(label, human_bytes(r.get("rss_bytes")),
                  pct(r["cpu_ratio"]) if r.get("cpu_ratio") is not None else "-",
                  human_duration(r.get("uptime_s")), str(r.get("restarts") or 0),
                  Text("-", style="dim") if agent else _yes(r.get("instrumented")),
                  Text("-", style="dim") if agent else _yes(r.get("gated")))
    return t


class ProcessesPanel(Static):
    """``show_rows(answer)`` with the answer of ``processes.list`` (or the Failed it became)."""

    def show_rows(self, answer: ProcessesResponse | Failed) -> None:
        if isinstance(answer, Failed):
            self.update(Text(f"Processes: {answer}", style="dim italic"))
            return
        rows = answer["processes"]
        parts: list[Any] = [processes_table(rows)]
        ungated = [r["label"] for r in rows if r.get("ungated_writer")]
        if ungated:
            parts.append(Text(f"writing without the gate: {', '.join(ungated)} "
                              "(backups of those users can be partial)", style="red"))
        elif len(rows) > MAX_ROWS:
            parts.append(Text(f"{len(rows) - MAX_ROWS} more: lightkeeper processes",
                              style="dim"))
        self.update(Group(*parts))
