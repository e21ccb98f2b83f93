"""The lightkeeper console: one main screen with six panes, banners, a footer legend.

Data flow (dolphie's pattern): a poll worker thread reads from the agent and posts a typed
message (``Polled``); its handler renders on the main thread and schedules the next run, so
polls never overlap. Actions run in worker threads too and post ``ActionDone`` or
``ActionFailed``. The agent pushes changes (``tui.push``): a watcher thread long-polls
``changes.wait`` and the app refreshes the shown pane only when a topic it shows (or the status
line's: jobs, alerts, config) moved; a slow safety poll stays, and while the watcher is not
connected the app polls as it always did. ``window`` and ``active`` are reactives the top bar watches; every key is
bound on the widget that acts (see ``actions``). The app never imports DuckDB or the agent: it
only holds an ``AgentClient``.
"""

from __future__ import annotations

import collections
import gc
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from textual import work
from textual.app import App, ComposeResult, SystemCommand
from textual.css.query import NoMatches
from textual.message import Message
from textual.notifications import SeverityLevel
from textual.reactive import reactive
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import ContentSwitcher
from textual.worker import Worker, WorkerState

from lightkeeper.client import AgentError, AgentUnavailable
from lightkeeper.contracts.changes import TOPICS
from lightkeeper.tui.actions import ACTIONS, WINDOWS, bindings, key_label, window_for_age
from lightkeeper.tui.dialogs import HelpScreen
from lightkeeper.tui.panes.backups import BackupsPane
from lightkeeper.tui.panes.base import Pane, Request
from lightkeeper.tui.panes.events import EventsPane
from lightkeeper.tui.panes.lightrag import LightRagPane
from lightkeeper.tui.panes.overview import OverviewPane
from lightkeeper.tui.panes.tuning import TuningPane
from lightkeeper.tui.panes.zones import ZonesPane
from lightkeeper.tui.prefs import Prefs
from lightkeeper.tui.push import ChangeWatcher, PushState, TopicsMoved
from lightkeeper.tui.widgets.banners import AlertBanner, ConnectionBanner, KeyLegend, TopBar

THEMES = ("textual-dark", "textual-light")
# what every fetch shows besides the pane: running jobs, the alert banner, a reload notice
STATUS_TOPICS = frozenset({"jobs", "alerts", "config"})
FREQUENT_TOPICS = frozenset({"samples", "progress"})  # followed only by the panes that show them
# a refresh the agent asked for waits at least this long after the last one began
PUSH_GAP_S = 0.2


@dataclass
class PollResult:
    gen: int
    pane_id: str
    req: Request
    status: dict[str, Any] | None = None
    data: Any = None
    error: str | None = None
    pane_error: str | None = None


class Polled(Message):
    """A poll worker finished: the agent's status and the pane's data (or why not)."""

    def __init__(self, result: PollResult) -> None:
        super().__init__()
        self.result = result


class ActionDone(Message):
    """An action run in the agent succeeded; ``then`` renders its result."""

    def __init__(self, label: str, result: Any, then: Callable[[Any], None] | None) -> None:
        super().__init__()
        self.label = label
        self.result = result
        self.then = then


class ActionFailed(Message):
    """An action run in the agent failed with ``message``."""

    def __init__(self, label: str, message: str,
                 then: Callable[[str], None] | None) -> None:
        super().__init__()
        self.label = label
        self.message = message
        self.then = then


class LightkeeperApp(App[int]):
    CSS_PATH = "app.tcss"
    TITLE = "lightkeeper"
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (110, "-wide")]
    BINDINGS = bindings(None)

    window: reactive[str] = reactive("1h", init=False)
    active: reactive[str] = reactive("overview", init=False)
    host: reactive[str] = reactive("", init=False)

    def __init__(self, client: Any, *, refresh_s: float = 2.0, chart_s: float = 5.0,
                 window: str | None = None, theme: str = "textual-dark",
                 clock: Callable[[], float] = time.time, live: bool = True,
                 prefs: Prefs | None = None, safety_s: float = 45.0,
                 push: bool = True) -> None:
        super().__init__()
        self.client = client
        self.refresh_s = max(0.5, float(refresh_s))
        self.chart_s = max(self.refresh_s, float(chart_s))
        # with changes pushed, a pane is still re-read this often (what no topic reports)
        self.safety_s = max(self.refresh_s, float(safety_s))
        self.push = push  # follow the agent's changes (False: poll only, as before)
        self.prefs = prefs
        saved = prefs.window() if prefs is not None else None
        # the window given, else the operator's last one, else chosen from the data's age
        self.window_chosen = window in WINDOWS or saved in WINDOWS
        self.set_reactive(LightkeeperApp.window,
                          window if window in WINDOWS else saved if saved in WINDOWS else "5m")
        self.clock = clock
        self.live = live
        self.initial_theme = theme if theme in THEMES else THEMES[0]
        self.status: dict[str, Any] | None = None
        self.jobs: list[dict[str, Any]] = []
        self.conn_error: str | None = None
        self.conn_attempts = 0
        self.poll_count = 0
        self.last_polled = ""
        self._gen = 0
        self._last_pane_error: str | None = None
        self._timer: Timer | None = None
        self._frozen: set[str] = set()  # panes drawn once, their objects frozen for the gc
        self.watcher: ChangeWatcher | None = None
        self.push_live = False  # the watcher follows the agent: no short poll timer
        self._last_refresh = 0.0  # monotonic time the last poll began
        self._in_flight = False  # a poll is under way (a pushed change waits for it)
        self._push_gap: float | None = None  # a pushed change to re-read after that poll
        self._push_timer: Timer | None = None
        self.topics_seen: collections.Counter[str] = collections.Counter()  # what moved (bench)

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
        self.pane().focus_default()
        self.refresh_now()
        if self.live and self.push and callable(getattr(self.client, "wait_changes", None)):
            self.watcher = ChangeWatcher(self.client, self.post_message)
            self.watcher.follow(_followed(self.pane()))
            self.watcher.start()

    def on_unmount(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()

    def pane(self, pane_id: str | None = None) -> Pane:
        return self.query_one(f"#{pane_id or self.active}", Pane)

    # -- polling ----------------------------------------------------------------------------
    def refresh_now(self) -> None:
        """Poll at once (after an action, a pane switch or a filter change)."""
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        if self._push_timer is not None:
            self._push_timer.stop()
            self._push_timer = None
        try:
            pane = self.pane()
        except NoMatches:  # a timer fired while the screen's widgets are being removed
            return
        self._last_refresh = time.monotonic()
        self._in_flight = True
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
        self.post_message(Polled(result))

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

    def _torn_down(self) -> bool:
        """The app is shutting down: a worker's late result has nothing left to render into
        (the screen's widgets go one by one: the panes may still be there when the banners a
        poll result updates are already gone)."""
        return not (self.query("#panes") and self.query(ConnectionBanner)
                    and self.query(AlertBanner))

    def on_polled(self, message: Polled) -> None:
        result = message.result
        if result.gen != self._gen or self._torn_down():
            return  # a newer poll is under way, or nothing to show it in
        self._in_flight = False
        banner = self.query_one(ConnectionBanner)
        if result.error:
            self.conn_attempts += 1
            self.conn_error = result.error
            delay = min(2.0 * self.conn_attempts, 10.0)
            banner.show(result.error, self.conn_attempts, delay)
            self.query_one(AlertBanner).show(None)  # what the agent said before is stale
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
        self.host = str(self.status.get("host") or "")
        if not self.window_chosen:
            self._choose_window()
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
            if pane.pane_id not in self._frozen:
                self._frozen.add(pane.pane_id)
                self.call_after_refresh(_freeze_heap)
        self.last_polled = pane.pane_id
        self.poll_count += 1
        if self.watcher is not None and pane.pane_id == self.active:
            # what moves now matters to this pane: followed once its first fetch is shown,
            # so a new long poll never competes with a switch's repaint
            self.watcher.follow(_followed(pane))
        if pane.pane_id == self.active and self.push_live:
            interval = self.safety_s  # the agent says when to refresh sooner
        elif pane.pane_id == self.active:
            interval = self._chart_interval() if pane.chart_pane and not self.jobs \
                else self.refresh_s
        else:
            interval = 0.0
        self._schedule(interval)
        self._pushed_while_polling()

    def _pushed_while_polling(self) -> None:
        if self._push_gap is not None:  # a change was pushed while the poll ran
            gap, self._push_gap = self._push_gap, None
            self._refresh_after(gap)

    # -- changes pushed by the agent ------------------------------------------------------------
    def on_topics_moved(self, message: TopicsMoved) -> None:
        """Refresh the shown pane if it (or the status line) shows a topic that moved; other
        panes are re-read when shown (every switch fetches)."""
        self.topics_seen.update(message.moved)
        if self._torn_down() or self.conn_error is not None:
            return  # the reconnect loop re-reads everything once the agent answers
        pane = self.pane()
        wanted = message.moved & (pane.topics | STATUS_TOPICS)
        if message.restarted:
            self.refresh_now()
            return
        if not wanted:
            return
        gap = PUSH_GAP_S
        if wanted <= {"samples", "progress"}:
            # new samples every collection round and progress every 0.2 s: charts keep their
            # pace (no faster than the agent collects), progress the list's
            gap = self._chart_interval() if pane.chart_pane and "progress" not in wanted \
                else self.refresh_s
        self._refresh_after(gap)

    def _refresh_after(self, gap: float) -> None:
        """Refresh once ``gap`` seconds have passed since the last poll began (at once if so).
        A poll under way is never replaced (its answer would be dropped, and a pane just
        switched to would wait for a second one): the refresh follows it."""
        if self._in_flight:
            self._push_gap = gap if self._push_gap is None else min(gap, self._push_gap)
            return
        due = self._last_refresh + gap - time.monotonic()
        if due <= 0:
            self.refresh_now()
        elif self._push_timer is None:
            self._push_timer = self.set_timer(due, self._push_due)

    def _push_due(self) -> None:
        self._push_timer = None
        self.refresh_now()

    def on_push_state(self, message: PushState) -> None:
        self.push_live = message.live
        if not message.live and not self._torn_down() and self.conn_error is None:
            self._schedule(self.refresh_s)  # poll as before until the watcher is back

    def _choose_window(self) -> None:
        """The first time the agent answers: the smallest window its data fills."""
        self.window_chosen = True
        started = (self.status or {}).get("data_since") or (self.status or {}).get("started")
        if not started:
            return
        window = window_for_age(self.clock() - float(started))
        if window != self.window:
            self.set_reactive(LightkeeperApp.window, window)
            self.mutate_reactive(LightkeeperApp.window)
            self._gen += 1  # the poll under way asked for the old window
            self.call_later(self.refresh_now)

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
        """Run ``fn(client)`` in a worker thread; the result comes back as a message."""
        self._agent_action(label, fn, on_success, on_error)

    @work(thread=True, group="actions", exit_on_error=False)
    def _agent_action(self, label: str, fn: Callable[[Any], Any],
                      on_success: Callable[[Any], None] | None,
                      on_error: Callable[[str], None] | None) -> None:
        try:
            result = fn(self.client)
        except (AgentError, AgentUnavailable, OSError) as exc:
            self.post_message(ActionFailed(label, f"{label}: {exc}", on_error))
            return
        self.post_message(ActionDone(label, result, on_success))

    def on_action_done(self, message: ActionDone) -> None:
        if self._torn_down():
            return
        if message.then is not None:
            message.then(message.result)
        self.refresh_now()

    def on_action_failed(self, message: ActionFailed) -> None:
        if self._torn_down():
            return
        if message.then is not None:
            message.then(message.message)
        else:
            self.notify(message.message, severity="error", timeout=8)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR:
            err = event.worker.error
            self.notify(f"{event.worker.name}: {type(err).__name__}: {err}", severity="error",
                        timeout=8)
            if event.worker.group == "poll":
                self._in_flight = False
                self._schedule(self.refresh_s)
                self._pushed_while_polling()

    # -- reactives ----------------------------------------------------------------------------
    def _app_mounted(self) -> bool:
        # ``App.is_mounted`` is a method that asks about a widget (as a bare attribute it is
        # always true); the app's own mount state is MessagePump's ``_is_mounted``.
        return self._is_mounted

    def watch_active(self, old: str, new: str) -> None:
        if not self._app_mounted():
            return
        self.query_one("#panes", ContentSwitcher).current = new
        pane = self.pane()
        pane.on_activated()
        pane.focus_default()
        # poll once the switch is painted: the pane shows its last data at once, and the poll
        # worker's socket reads and JSON decoding do not compete with that repaint for the GIL
        self._gen += 1  # a poll under way is for the pane left
        self.call_after_refresh(self.refresh_now)

    def watch_window(self, window: str) -> None:
        if self.prefs is not None:
            self.prefs.set_window(window)
        if self._app_mounted():
            self.refresh_now()

    def notify(self, message: str, *, title: str = "", severity: SeverityLevel = "information",
               timeout: float | None = None, markup: bool = False) -> None:
        """A toast, always plain text: its messages carry the agent's errors, paths, user ids
        and notes, which may hold "[" (Textual would parse them as markup and a stray "[/]"
        would break the toast)."""
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=False)

    # -- the app's own actions ----------------------------------------------------------------
    def switch_to(self, pane_id: str) -> None:
        self.active = pane_id

    def action_show(self, pane_id: str) -> None:
        self.active = pane_id

    def action_cycle_window(self) -> None:
        self.window = WINDOWS[(WINDOWS.index(self.window) + 1) % len(WINDOWS)]

    def set_window(self, window: str) -> None:
        self.window = window

    def action_toggle_theme(self) -> None:
        self.theme = THEMES[1] if self.theme == THEMES[0] else THEMES[0]

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def action_refresh_now(self) -> None:
        self.refresh_now()

    def action_quit(self) -> None:  # type: ignore[override]
        self.exit(0)

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for a in ACTIONS:
            if a.name == "quit":
                continue
            if a.pane is not None and a.pane != self.active:
                yield SystemCommand(a.help, f"key {key_label(a.key)} on the {a.pane} screen",
                                    _goto_then(self, a.pane, a.name))
            elif a.pane is not None:
                yield SystemCommand(a.help, f"key {key_label(a.key)}",
                                    _goto_then(self, a.pane, a.name))
            else:
                yield SystemCommand(a.help, f"key {key_label(a.key)}", _run(self, a.name))
        for w in WINDOWS:
            yield SystemCommand(f"Window: {w}", "time window of every chart",
                                lambda w=w: self.set_window(w))


def _followed(pane: Pane) -> frozenset[str]:
    """The topics the watcher follows while ``pane`` is shown: all but the frequent ones
    (samples, progress) unless the pane shows them, so most switches keep the poll under way
    (a topic no pane shows wakes the watcher, not a fetch)."""
    return (frozenset(TOPICS) - FREQUENT_TOPICS) | pane.topics


def _freeze_heap() -> None:
    """Move the objects alive now (modules, widgets, styles, a pane's first data) out of the
    collector's sight: they live as long as the console. A full collection walked all of them
    and took 100+ ms, in the middle of a key press (most of the key-to-repaint p95); the
    young objects of each poll are still collected as before."""
    gc.freeze()


def _run(app: LightkeeperApp, name: str) -> Callable[[], Any]:
    return lambda: app.run_action(name)


def _goto_then(app: LightkeeperApp, pane: str, name: str) -> Callable[[], Any]:
    """Show ``pane`` and run its action there (the palette may be opened from any screen)."""
    async def go() -> None:
        app.active = pane
        await app.run_action(name, app.pane(pane))
    return go
