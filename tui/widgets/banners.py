"""The bars every screen shows: screen tabs and window, lost connection, active alerts, keys."""

from __future__ import annotations

import re
from typing import Any

from rich.text import Text
from textual.widgets import Static

from lightkeeper.tui.actions import PANES, key_label

_PATH = re.compile(r"/[^\s()]+")


def fit_paths(text: str, width: int) -> str:
    """``text`` made to fit ``width`` by shortening its paths in the middle, keeping the first
    and last components (``/home/…/state/agent.sock``), so the end of the message (the reason)
    and the file name stay readable. Falls back to cutting the end only if that is not enough."""
    while len(text) > width:
        paths = sorted(_PATH.finditer(text), key=lambda m: -len(m.group()))
        shortened = False
        for m in paths:
            parts = m.group().split("/")
            keep = [i for i, p in enumerate(parts) if p and p != "…"]
            if len(keep) <= 2:
                continue
            # drop the component after the first one, marking the gap with …
            inner = keep[1:-1]
            drop = inner[0] if parts[inner[0] - 1] != "…" else inner[-1]
            parts[drop] = "…"
            new = "/".join(parts).replace("…/…", "…")
            text = text[:m.start()] + new + text[m.end():]
            shortened = True
            break
        if not shortened:
            return text[: max(1, width - 1)] + "…"
    return text


class QuietStatic(Static):
    """A Static that skips the refresh (and relayout) when the content did not change."""

    _shown: object = None
    # a bar of a fixed height (the top bar, the key legend): new text needs no relayout of
    # the screen, only a repaint of this line
    fixed_height = False

    def set_text(self, content: Text) -> None:
        plain = (content.plain, tuple(str(s) for s in content.spans))
        if plain != self._shown:
            self._shown = plain
            self.update(content, layout=not self.fixed_height)


class TopBar(QuietStatic):
    """Screen tabs with their keys, the time window and the agent's host (k9s' header): it
    watches the app's ``active``, ``window`` and ``host`` reactives."""

    fixed_height = True

    def on_mount(self) -> None:
        for name in ("active", "window", "host"):
            self.watch(self.app, name, self._changed)

    def on_resize(self) -> None:
        self._changed()

    def _changed(self, _value: Any = None) -> None:
        app: Any = self.app
        self.set_text(self.render_bar(app.active, app.window, app.host, self.size.width or 80))

    @staticmethod
    def render_bar(active: str, window: str, host: str, width: int) -> Text:
        narrow = width < 100
        t = Text(no_wrap=True, overflow="ellipsis")
        t.append(" lk " if narrow else " lightkeeper ", style="bold reverse")
        for pid, title, key in PANES:
            t.append("│" if pid != PANES[0][0] else " ", style="dim")
            t.append(f" {key} {title} ", style="bold reverse" if pid == active else "")
        t.append("│", style="dim")
        label = " window " if len(t) + 8 + len(window) <= width else " "
        t.append(label, style="dim")
        t.append(window, style="bold")
        if host and len(t) + 3 + len(host) <= width:
            t.append(" │ ", style="dim")
            t.append(host, style="dim")
        return t


class ConnectionBanner(QuietStatic):
    """Shown while the agent does not answer; the poll loop keeps trying to reconnect. Two
    lines: what happens, then the reason with its paths shortened in the middle to fit."""

    _error: tuple[str, int, float] | None = None

    def show(self, error: str | None, attempts: int = 0, retry_in: float = 0) -> None:
        if not error:
            self._error = None
            self.display = False
            return
        self._error = (error, attempts, retry_in)
        self.display = True
        self._draw()

    def on_resize(self) -> None:
        if self._error:
            self._draw()

    def _draw(self) -> None:
        assert self._error is not None
        error, attempts, retry_in = self._error
        width = max(20, (self.size.width or 80) - 2)
        t = Text(no_wrap=True, overflow="ellipsis")
        t.append(f" agent connection lost - reconnecting (attempt {attempts}, next in "
                 f"{retry_in:.0f} s)\n", style="bold")
        t.append(" " + fit_paths(error, width))
        self.set_text(t)


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
    """The keys that act now, from Textual's active bindings of this legend's screen (so a
    text field or a dialog shows its own keys, never one it would swallow). One line, no
    recompose: cheaper than Textual's Footer on every focus change."""

    fixed_height = True

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self._changed)
        self._changed()

    def _changed(self, _screen: Any = None) -> None:
        # keys bound to one action on one widget are shown together ("esc/q Close"); the
        # app's own keys first, so they stay visible when the line is cut at 80 columns
        groups: dict[tuple[int, str], tuple[bool, list[str], str]] = {}
        for key, active in self.screen.active_bindings.items():
            b = active.binding
            if not b.show or not active.enabled:
                continue
            is_app = active.node is self.app
            slot = (id(active.node), b.action)
            label = key_label(b.key_display or key)
            if slot in groups:
                groups[slot][1].append(label)
            else:
                groups[slot] = (is_app, [label], b.description)
        t = Text(" ", no_wrap=True, overflow="ellipsis")
        for _is_app, keys, description in sorted(groups.values(), key=lambda g: not g[0]):
            t.append("/".join(keys), style="bold reverse")
            t.append(f" {description}  ")
        if not self.screen.is_modal:
            t.append("^p", style="bold reverse")
            t.append(" palette")
        self.set_text(t)
