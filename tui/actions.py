"""Every console action, by name: its key, where it applies, and what it does.

The key bindings, the footer legend, the help screen and the command palette are all built
from this one list, so they never disagree (harlequin's pattern of named actions). Each action
is bound on the widget that acts (``pane``: that pane; ``None``: the app), so Textual's own
binding chain scopes it: a pane's keys work only while focus is inside that pane, and a text
field or a dialog takes its keys first.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding, BindingType

PANES: tuple[tuple[str, str, str], ...] = (
    # (id, title, key)
    ("overview", "Overview", "1"),
    ("lightrag", "LightRAG", "2"),
    ("backups", "Backups", "3"),
    ("zones", "Zones", "4"),
    ("tuning", "Tuning", "5"),
    ("events", "Events", "6"),
)

WINDOWS: tuple[str, ...] = ("5m", "1h", "24h", "7d")


def window_seconds(window: str) -> float:
    units = {"m": 60, "h": 3600, "d": 86400}
    return float(window[:-1]) * units[window[-1]]


def window_for_age(age_s: float) -> str:
    """The smallest window that data ``age_s`` seconds old fills."""
    for w in WINDOWS:
        if age_s <= window_seconds(w):
            return w
    return WINDOWS[-1]


@dataclass(frozen=True)
class ActionSpec:
    name: str  # the action: ``action_<name>`` on the pane (or the app when ``pane`` is None)
    key: str
    label: str  # short, for the footer
    help: str  # one sentence, for the help screen and the command palette
    pane: str | None = None  # None: everywhere
    show: bool = True  # shown in the footer
    priority: bool = False


def _pane_actions() -> list[ActionSpec]:
    return [ActionSpec(f"show('{pid}')", key, title, f"Show the {title} screen", show=False)
            for pid, title, key in PANES]


ACTIONS: tuple[ActionSpec, ...] = (
    *_pane_actions(),
    ActionSpec("quit", "q", "Quit", "Leave the console (jobs keep running in the agent)"),
    ActionSpec("help", "question_mark", "Help", "Show every key and what it does"),
    ActionSpec("cycle_window", "w", "Window", "Cycle the chart time window: 5m, 1h, 24h, 7d"),
    ActionSpec("toggle_theme", "ctrl+t", "Theme", "Switch between the dark and light theme",
               show=False),
    ActionSpec("refresh_now", "ctrl+r", "Refresh", "Fetch everything from the agent now",
               show=False),
    # LightRAG
    ActionSpec("rag_user", "u", "User", "LightRAG: filter by user (cycles through users, then all)",
               "lightrag"),
    ActionSpec("rag_series", "m", "Op/mode", "LightRAG: choose which operation and mode the "
               "latency chart shows", "lightrag"),
    # Backups
    ActionSpec("backup_start", "b", "Backup", "Backups: start a backup now", "backups"),
    ActionSpec("backup_verify", "v", "Verify", "Backups: verify the repository", "backups"),
    ActionSpec("backup_prune", "p", "Prune", "Backups: apply the retention policy and prune",
               "backups"),
    ActionSpec("backup_restore", "r", "Restore", "Backups: restore wizard (snapshot, scope, "
               "target, confirm)", "backups"),
    ActionSpec("backup_cancel", "x", "Cancel", "Backups: cancel the running repository job",
               "backups"),
    # Zones
    ActionSpec("zone_sync", "s", "Sync", "Zones: replicate to the selected zone", "zones"),
    ActionSpec("zone_sync_all", "a", "Sync all", "Zones: replicate to every zone", "zones"),
    ActionSpec("zone_verify", "v", "Verify", "Zones: verify the selected zone's copy", "zones"),
    ActionSpec("zone_trust", "k", "Trust key", "Zones: show the selected zone's host key "
               "fingerprint and trust it after confirmation", "zones"),
    ActionSpec("zone_cancel", "x", "Cancel", "Zones: cancel the running replication job",
               "zones"),
    # Tuning
    ActionSpec("edit", "e", "Edit", "Tuning: move into the form (tab too; esc leaves it)",
               "tuning"),
    ActionSpec("tuning_apply", "a", "Apply", "Tuning: apply the pending edits (asks for a note)",
               "tuning"),
    ActionSpec("tuning_discard", "u", "Undo", "Tuning: discard the pending edits",
               "tuning"),
    ActionSpec("tuning_mark", "m", "Mark A", "Tuning: mark the selected version as A for a diff",
               "tuning"),
    ActionSpec("tuning_diff", "d", "Diff", "Tuning: diff marked version A against the "
               "selected one", "tuning"),
    ActionSpec("tuning_revert", "r", "Revert", "Tuning: revert to the selected version "
               "(asks to confirm and for a note)", "tuning"),
    ActionSpec("tuning_compare", "c", "A/B", "Tuning: compare LightRAG latency between "
               "the marked (or previous) version and the selected one", "tuning"),
    # Events
    ActionSpec("events_level", "l", "Level", "Events: cycle the minimum level (all, info, "
               "warning, error)", "events"),
    ActionSpec("events_search", "slash", "Search", "Events: search the events text", "events"),
    ActionSpec("events_pause", "p", "Pause", "Events: pause or resume the live tail", "events"),
)

BY_NAME: dict[str, ActionSpec] = {a.name: a for a in ACTIONS}


def bindings(pane: str | None) -> list[BindingType]:
    """Textual bindings for the actions of one pane (``None``: the app's own)."""
    return [Binding(a.key, a.name, a.label, show=a.show, priority=a.priority,
                    tooltip=a.help) for a in ACTIONS if a.pane == pane]


def key_label(key: str) -> str:
    return {"question_mark": "?", "slash": "/", "escape": "esc"}.get(key, key)
