"""The bars every screen shows: screen tabs and window, lost connection, active alerts."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import Static

from lightkeeper.tui.actions import ACTIONS, PANES, key_label


class QuietStatic(Static):
    """A Static that skips the refresh (and relayout) when the content did not change."""

    _shown: object = None

    def set_text(self, content: Text) -> None:
        plain = (content.plain, tuple(str(s) for s in content.spans))
        if plain != self._shown:
            self._shown = plain
            self.update(content)


class TopBar(QuietStatic):
    """Screen tabs with their keys, the time window and the agent's host."""

    _last: tuple[str, str, str] = ("overview", "1h", "")

    def on_resize(self) -> None:
        self.show(*self._last)

    def show(self, active: str, window: str, host: str = "") -> None:
        self._last = (active, window, host)
        t = Text(no_wrap=True, overflow="ellipsis")
        narrow = (self.size.width or 80) < 100
        t.append(" lk " if narrow else " lightkeeper ", style="bold reverse")
        for pid, title, key in PANES:
            style = "bold reverse" if pid == active else ""
            t.append(" ")
            t.append(f"{key} {title}", style=style)
        t.append("  window ", style="dim")
        t.append(window, style="bold")
        if host and not narrow:
            t.append(f"  {host}", style="dim")
        self.set_text(t)


class ConnectionBanner(QuietStatic):
    """Shown while the agent does not answer; the poll loop keeps trying to reconnect."""

    def show(self, error: str | None, attempts: int = 0, retry_in: float = 0) -> None:
        if not error:
            self.display = False
            return
        self.display = True
        self.set_text(Text(f" agent connection lost: {error} - reconnecting (attempt {attempts}, "
                         f"next in {retry_in:.0f} s)", no_wrap=True, overflow="ellipsis"))


class AlertBanner(QuietStatic):
    """The active alerts, most severe first, on every screen."""

    def show(self, alerts: list[dict[str, Any]] | None) -> None:
        alerts = alerts or []
        if not alerts:
            self.display = False
            self.remove_class("critical")
            return
        self.display = True
        order = {"critical": 0, "error": 1, "warning": 2}
        alerts = sorted(alerts, key=lambda a: (order.get(a.get("severity", ""), 3),
                                               -(a.get("started") or 0)))
        critical = any(a.get("severity") == "critical" for a in alerts)
        self.set_class(critical, "critical")
        t = Text(no_wrap=True, overflow="ellipsis")
        t.append(f" {len(alerts)} alert{'s' if len(alerts) != 1 else ''}: ", style="bold")
        parts = []
        for a in alerts[:4]:
            label = f"{a.get('rule')}" + (f"[{a['label']}]" if a.get("label") else "")
            if a.get("silenced_by"):  # a silence in Alertmanager covers it
                label += " (silenced)"
            msg = a.get("message") or ""
            parts.append(f"{a.get('severity', '?')} {label}" + (f" {msg}" if msg else ""))
        t.append(" | ".join(parts))
        if len(alerts) > 4:
            t.append(f" | +{len(alerts) - 4} more")
        self.set_text(t)


class KeyLegend(QuietStatic):
    """The keys of the current screen, from the action registry (one line, no recompose)."""

    def show(self, active: str) -> None:
        t = Text(" ", no_wrap=True, overflow="ellipsis")
        for a in ACTIONS:
            if not a.show or (a.pane is not None and a.pane != active):
                continue
            t.append(key_label(a.key), style="bold reverse")
            t.append(f" {a.label}  ")
        t.append("^p", style="bold reverse")
        t.append(" palette")
        self.set_text(t)
