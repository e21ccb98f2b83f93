"""Events: a live tail of the agent's events and audit log, with level filter and search."""

from __future__ import annotations

import json
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Input, RichLog, Static

from lightkeeper.fmt import clock_time
from lightkeeper.tui.actions import bindings
from lightkeeper.tui.panes.base import Pane, Request
from lightkeeper.tui.widgets.fields import FieldInput

MAX_ROWS = 2000
LEVELS: tuple[str | None, ...] = (None, "info", "warning", "error")
LEVEL_STYLE = {"debug": "dim", "info": "", "warning": "yellow", "error": "bold red",
               "critical": "bold white on red"}


NAME_WIDTH = 22  # the event column, widened (to NAME_MAX) when a longer name arrives
NAME_MAX = 32


def event_line(e: dict[str, Any], name_width: int = NAME_WIDTH) -> Text:
    """One event in columns two spaces apart: time, level, kind, event (padded so the next
    column lines up), who did it, then its context."""
    t = Text(no_wrap=True, overflow="ellipsis")
    level = e.get("level") or ""
    t.append(clock_time(e.get("ts")) + "  ", style="dim")
    t.append(f"{level[:4]:<4}  ", style=LEVEL_STYLE.get(level, ""))
    t.append(f"{e.get('kind', '')[:5]:<5}  ", style="dim")
    name = str(e.get("event", ""))
    t.append(f"{name:<{name_width}}", style="bold" if e.get("kind") == "audit" else "")
    if e.get("actor"):
        t.append(f"  by {e['actor']}", style="cyan")
    ctx = e.get("context") or {}
    if ctx:
        t.append("  " + "  ".join(f"{k}={_short(v)}" for k, v in ctx.items()), style="dim")
    return t


def _short(v: Any) -> str:
    s = v if isinstance(v, str) else json.dumps(v, default=str)
    return s if len(s) <= 60 else s[:59] + "…"


class EventsPane(Pane):
    pane_id = "events"
    topics = frozenset({"events"})
    BINDINGS = bindings("events")
    title = "Events"

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.level_i = 0
        self.search = ""
        self.last_id = 0
        self.gen = 0
        self.paused = False
        self.rows: list[dict[str, Any]] = []
        self._width = 0
        self._drawn = False
        self._name_width = NAME_WIDTH

    def compose(self) -> ComposeResult:
        with Horizontal(id="events-bar"):
            yield Static(id="events-filter")
            yield FieldInput(placeholder="search (press /)", id="events-search")
        yield RichLog(id="events-log", max_lines=2000, wrap=False, markup=False,
                      auto_scroll=True)

    def on_mount(self) -> None:
        self._bar()

    def focus_default(self) -> None:
        self.screen.set_focus(self.query_one("#events-log", RichLog))  # before queued keys

    def params(self) -> dict[str, Any]:
        return {"since": self.last_id, "level": LEVELS[self.level_i], "q": self.search or None,
                "gen": self.gen}

    def fetch(self, client: Any, req: Request) -> list[dict[str, Any]]:
        p = req.params
        return client.events(since=p["since"], limit=300 if p["since"] == 0 else 1000,
                             level=p["level"], q=p["q"])

    def show(self, data: list[dict[str, Any]], req: Request) -> None:
        if req.params.get("gen") != self.gen:
            return  # fetched with an older filter
        if req.params["since"] == 0:
            self.rows = []
        elif self.paused:
            return
        new = [e for e in data if e["id"] > self.last_id]
        if new:
            self.last_id = new[-1]["id"]
            self.rows = (self.rows + new)[-MAX_ROWS:]
        widest = max((len(str(e.get("event", ""))) for e in new), default=0)
        wider = min(NAME_MAX, widest) > self._name_width
        if wider:  # "state.permissions_tightened" ran into its context: widen the column
            self._name_width = min(NAME_MAX, widest)
        if req.params["since"] == 0 or wider:
            self._drawn = False
            self.call_after_refresh(self._render_all)  # once the log has its width
        else:
            self._write(new)
        self._bar()

    def on_resize(self) -> None:
        width = self.query_one("#events-log", RichLog).scrollable_content_region.width
        if width and width != self._width:  # lines are cut to the width: redo them
            self._render_all()

    def _render_all(self) -> None:
        log = self.query_one("#events-log", RichLog)
        self._width = log.scrollable_content_region.width
        log.clear()
        self._write(self.rows)
        self._drawn = True

    def settled(self) -> bool:
        return self._drawn and super().settled()

    def _write(self, rows: list[dict[str, Any]]) -> None:
        log = self.query_one("#events-log", RichLog)
        width = log.scrollable_content_region.width or None
        for e in rows:
            log.write(event_line(e, self._name_width), width=width)

    def _reset(self) -> None:
        self.gen += 1
        self.last_id = 0
        self._bar()
        self.lk.refresh_now()

    def _bar(self) -> None:
        t = Text(no_wrap=True, overflow="ellipsis")
        t.append(" level ", style="dim")
        t.append(LEVELS[self.level_i] or "all", style="bold")
        t.append("  l level  / search  p pause", style="dim")
        if self.paused:
            t.append("  PAUSED", style="bold yellow")
        self.query_one("#events-filter", Static).update(t)

    # -- actions ----------------------------------------------------------------------------
    def action_events_level(self) -> None:
        self.level_i = (self.level_i + 1) % len(LEVELS)
        self._reset()

    def action_events_search(self) -> None:
        self.screen.set_focus(self.query_one("#events-search", Input))  # before queued keys

    def action_events_pause(self) -> None:
        self.paused = not self.paused
        if not self.paused:
            self._reset()
        else:
            self._bar()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "events-search":
            self.search = event.value.strip()
            self._reset()
            self.query_one("#events-log", RichLog).focus()
