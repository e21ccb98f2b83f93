"""The lightkeeper console: one main screen with six panes, banners, a footer legend.

Data flow (dolphie's pattern): a poll worker thread reads from the agent, then renders on the
main thread and schedules its own next run, so polls never overlap. Actions run in worker
threads too; their errors become notifications. The app never imports DuckDB or the agent: it
only holds an ``AgentClient``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from textual import work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.screen import ModalScreen, Screen
from textual.timer import Timer
from textual.widgets import ContentSwitcher, Input
from textual.worker import Worker, WorkerState

from lightkeeper.client import AgentError, AgentUnavailable
from lightkeeper.tui.actions import ACTIONS, BY_NAME, PANES, WINDOWS
from lightkeeper.tui.dialogs import HelpScreen
from lightkeeper.tui.panes.backups import BackupsPane
from lightkeeper.tui.panes.base import Pane, Request
from lightkeeper.tui.panes.events import EventsPane
from lightkeeper.tui.panes.lightrag import LightRagPane
from lightkeeper.tui.panes.overview import OverviewPane
from lightkeeper.tui.panes.tuning import TuningPane
from lightkeeper.tui.panes.zones import ZonesPane
from lightkeeper.tui.widgets.banners import AlertBanner, ConnectionBanner, KeyLegend, TopBar

THEMES = ("textual-dark", "textual-light")


@dataclass
class PollResult:
    gen: int
    pane_id: str
    req: Request
    status: dict[str, Any] | None = None
    data: Any = None
    error: str | None = None
    pane_error: str | None = None
    jobs: list[dict[str, Any]] = field(default_factory=list)


class LightkeeperApp(App[int]):
    CSS_PATH = "app.tcss"
    TITLE = "lightkeeper"
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (110, "-wide")]
    BINDINGS = [Binding(a.key, a.name, a.label, show=a.show, priority=a.priority)
                for a in ACTIONS]

    def __init__(self, client: Any, *, refresh_s: float = 2.0, chart_s: float = 5.0,
                 window: str = "1h", theme: str = "textual-dark",
                 clock: Callable[[], float] = time.time, live: bool = True) -> None:
        super().__init__()
        self.client = client
        self.refresh_s = max(0.5, float(refresh_s))
        self.chart_s = max(self.refresh_s, float(chart_s))
        self.window = window if window in WINDOWS else "1h"
        self.clock = clock
        self.live = live
        self.initial_theme = theme if theme in THEMES else THEMES[0]
        self.active = "overview"
        self.status: dict[str, Any] | None = None
        self.jobs: list[dict[str, Any]] = []
        self.conn_error: str | None = None
        self.conn_attempts = 0
        self.poll_count = 0
        self.last_polled = ""
        self._gen = 0
        self._last_pane_error: str | None = None
        self._timer: Timer | None = None

    # -- layout -----------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield TopBar(id="topbar")
        yield ConnectionBanner(id="conn-banner")
        yield AlertBanner(id="alert-banner")
        with ContentSwitcher(initial="overview", id="panes"):
            yield OverviewPane(id="overview")
            yield LightRagPane(id="lightrag")
            yield BackupsPane(id="backups")
            yield ZonesPane(id="zones")
            yield TuningPane(id="tuning")
            yield EventsPane(id="events")
        yield KeyLegend(id="legend")

    def on_mount(self) -> None:
        self.theme = self.initial_theme
        self.query_one(ConnectionBanner).display = False
        self.query_one(AlertBanner).display = False
        self._topbar()
        self.refresh_now()

    def pane(self, pane_id: str | None = None) -> Pane:
        return self.query_one(f"#{pane_id or self.active}", Pane)

    def _topbar(self) -> None:
        host = (self.status or {}).get("host", "")
        self.query_one(TopBar).show(self.active, self.window, host)
        self.query_one(KeyLegend).show(self.active)

    # -- polling ----------------------------------------------------------------------------
    def refresh_now(self) -> None:
        """Poll at once (after an action, a pane switch or a filter change)."""
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        pane = self.pane()
        self._gen += 1
        req = Request(window=self.window, now=self.clock(), params=pane.params(),
                      status=self.status)
        self._poll(self._gen, pane, req)

    @work(thread=True, exclusive=True, group="poll", exit_on_error=False)
    def _poll(self, gen: int, pane: Pane, req: Request) -> None:
        result = PollResult(gen=gen, pane_id=pane.pane_id, req=req)
        try:
            result.status = self.client.status()
            req = Request(req.window, req.now, req.params, result.status)
            result.req = req
            try:
                result.data = pane.fetch(self.client, req)
            except AgentError as exc:
                result.pane_error = str(exc)
        except AgentUnavailable as exc:
            result.error = str(exc)
        except AgentError as exc:
            result.error = f"agent error: {exc}"
        except OSError as exc:
            result.error = f"{type(exc).__name__}: {exc}"
        self.call_from_thread(self._on_poll, result)

    def _notify_reload(self, last: dict[str, Any] | None) -> None:
        """Say once that the agent reloaded its configuration, or refused to (and why)."""
        first_poll = not hasattr(self, "_reload_seen")
        seen, self._reload_seen = getattr(self, "_reload_seen", None), (last or {}).get("ts")
        if not last or first_poll or last.get("ts") == seen:
            return  # nothing new since the console started or since the last poll
        if last.get("ok"):
            self.notify(f"config reloaded ({len(last.get('changed') or [])} changed)", timeout=5)
        else:
            self.notify(f"config reload refused: {last.get('error')}", severity="error",
                        timeout=15)

    def _on_poll(self, result: PollResult) -> None:
        if result.gen != self._gen:
            return  # a newer poll is under way
        banner = self.query_one(ConnectionBanner)
        if result.error:
            self.conn_attempts += 1
            self.conn_error = result.error
            delay = min(2.0 * self.conn_attempts, 10.0)
            banner.show(result.error, self.conn_attempts, delay)
            self._schedule(delay)
            return
        if self.conn_error:
            self.notify("agent connection restored", timeout=3)
        self.conn_error = None
        self.conn_attempts = 0
        banner.show(None)
        self.status = result.status or {}
        self._notify_reload((self.status.get("config") or {}).get("last_reload"))
        self.jobs = list((self.status.get("jobs") or {}).get("running") or [])
        self.query_one(AlertBanner).show(self.status.get("alerts"))
        self._topbar()
        pane = self.pane(result.pane_id)
        if result.pane_error:
            if result.pane_error != self._last_pane_error:  # once, not on every poll
                self.notify(result.pane_error, severity="error", timeout=6)
            self._last_pane_error = result.pane_error
        elif result.data is not None:
            self._last_pane_error = None
            try:
                pane.show(result.data, result.req)
            except Exception as exc:  # noqa: BLE001  a rendering bug must not stop the poll loop
                self.log.error(f"render {pane.pane_id}: {exc!r}")
                self.notify(f"could not show {pane.title}: {exc}", severity="error")
        self.last_polled = pane.pane_id
        self.poll_count += 1
        if pane.pane_id == self.active:
            interval = self._chart_interval() if pane.chart_pane and not self.jobs \
                else self.refresh_s
        else:
            interval = 0.0
        self._schedule(interval)

    def _chart_interval(self) -> float:
        """Charts refresh no faster than the agent collects (collect.system_interval)."""
        intervals = [c.get("interval_s") for c in (self.status or {}).get("collectors") or []
                     if c.get("name") in ("cpu", "memory", "disk", "network")]
        collected = min((float(i) for i in intervals if i), default=0.0)
        return max(self.chart_s, collected)

    def _schedule(self, interval: float) -> None:
        if not self.live and self.conn_error is None:
            return
        if interval <= 0:
            self.refresh_now()
            return
        if self._timer is not None:
            self._timer.stop()
        self._timer = self.set_timer(interval, self.refresh_now)

    # -- actions run in the agent -------------------------------------------------------------
    def run_agent(self, label: str, fn: Callable[[Any], Any],
                  on_success: Callable[[Any], None] | None = None,
                  on_error: Callable[[str], None] | None = None) -> None:
        """Run ``fn(client)`` in a worker thread; errors become a notification."""
        self._agent_action(label, fn, on_success, on_error)

    @work(thread=True, group="actions", exit_on_error=False)
    def _agent_action(self, label: str, fn: Callable[[Any], Any],
                      on_success: Callable[[Any], None] | None,
                      on_error: Callable[[str], None] | None) -> None:
        try:
            result = fn(self.client)
        except (AgentError, AgentUnavailable, OSError) as exc:
            message = f"{label}: {exc}"
            if on_error is not None:
                self.call_from_thread(on_error, message)
            else:
                self.call_from_thread(self.notify, message, severity="error", timeout=8)
            return
        if on_success is not None:
            self.call_from_thread(on_success, result)
        self.call_from_thread(self.refresh_now)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR:
            err = event.worker.error
            self.notify(f"{event.worker.name}: {type(err).__name__}: {err}", severity="error",
                        timeout=8)
            if event.worker.group == "poll":
                self._schedule(self.refresh_s)

    # -- bindings ---------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        spec = BY_NAME.get(action)
        if spec is None:
            return True
        if isinstance(self.screen, ModalScreen):
            return False
        if spec.pane is not None and spec.pane != self.active:
            return False
        if action == "leave_field":
            return isinstance(self.focused, Input)
        return True

    def switch_to(self, pane_id: str) -> None:
        if pane_id == self.active:
            return
        self.active = pane_id
        self.query_one("#panes", ContentSwitcher).current = pane_id
        self.set_focus(None)
        pane = self.pane()
        pane.on_activated()
        pane.focus_default()
        self._topbar()
        self.refresh_bindings()
        self.refresh_now()

    def action_cycle_window(self) -> None:
        self.window = WINDOWS[(WINDOWS.index(self.window) + 1) % len(WINDOWS)]
        self._topbar()
        self.refresh_now()

    def set_window(self, window: str) -> None:
        self.window = window
        self._topbar()
        self.refresh_now()

    def action_toggle_theme(self) -> None:
        self.theme = THEMES[1] if self.theme == THEMES[0] else THEMES[0]

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def action_refresh_now(self) -> None:
        self.refresh_now()

    def action_leave_field(self) -> None:
        self.set_focus(None)
        self.pane().focus_default()

    def action_quit(self) -> None:  # type: ignore[override]
        self.exit(0)

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for a in ACTIONS:
            if a.name in ("quit", "leave_field"):
                continue
            if a.pane is not None and a.pane != self.active:
                yield SystemCommand(a.help, f"key {a.key} on the {a.pane} screen",
                                    _goto_then(self, a.pane, a.name))
            else:
                yield SystemCommand(a.help, f"key {a.key}", _run(self, a.name))
        for w in WINDOWS:
            yield SystemCommand(f"Window: {w}", "time window of every chart",
                                lambda w=w: self.set_window(w))


def _run(app: LightkeeperApp, name: str) -> Callable[[], Any]:
    return lambda: app.run_action(name)


def _goto_then(app: LightkeeperApp, pane: str, name: str) -> Callable[[], Any]:
    async def go() -> None:
        app.switch_to(pane)
        await app.run_action(name)
    return go


def _show(pane_id: str) -> Callable[[LightkeeperApp], None]:
    def action(self: LightkeeperApp) -> None:
        self.switch_to(pane_id)
    return action


def _forward(name: str) -> Callable[[LightkeeperApp], None]:
    def action(self: LightkeeperApp) -> None:
        spec = BY_NAME[name]
        getattr(self.pane(spec.pane), f"do_{name}")()
    return action


for _pid, _title, _key in PANES:
    setattr(LightkeeperApp, f"action_show_{_pid}", _show(_pid))
for _spec in ACTIONS:
    if _spec.pane is not None:
        setattr(LightkeeperApp, f"action_{_spec.name}", _forward(_spec.name))
