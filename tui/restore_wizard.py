"""The restore wizard: snapshot, then scope (all, one user, one database), then target (a new
path, or in place with its safety snapshot), then confirm: enter for a new directory (nothing
is overwritten there), the snapshot id typed for in place (the current data is replaced).
esc or q closes it from any step; backspace (outside a text field) or Back steps back."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, ContentSwitcher, Input, OptionList, Static
from textual.widgets.option_list import Option

from lightkeeper.contracts.backup import SnapshotInfo
from lightkeeper.fmt import clock_time, human_bytes
from lightkeeper.ids import InvalidUserId, validate_user_id
from lightkeeper.tui.widgets.banners import KeyLegend


def snapshot_label(s: SnapshotInfo) -> str:
    return (f"{s['short_id']}  {clock_time(s['time'], True)}  "
            f"{len(s['users'])} users  {human_bytes(s['summary'].get('bytes_total'))}")


class RestoreWizard(ModalScreen[dict[str, Any] | None]):
    """Returns the restore job's params, or None when cancelled."""

    BINDINGS = [Binding("escape", "cancel", "Close"), Binding("q", "cancel", "Close"),
                Binding("backspace", "back", "Back")]
    STEPS = ("snapshot", "scope", "pick", "target", "path", "confirm")

    def __init__(self, snapshots: list[SnapshotInfo], databases: dict[str, list[str]]
                 | None = None) -> None:
        """``databases``: snapshot id -> the databases its manifest holds (backup.show)."""
        super().__init__()
        self.snapshots = sorted(snapshots, key=lambda s: -s["time"])
        self.databases = databases or {}
        self.snapshot: SnapshotInfo | None = None
        self.scope = "all"  # all | user | database
        self.item: str | None = None
        self.in_place = False
        self.target: str | None = None
        self.history: list[str] = []

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Static("Restore", classes="dialog-title", id="wiz-title")
            yield Static("", id="wiz-summary", classes="dim")
            with ContentSwitcher(initial="snapshot", id="wiz-steps"):
                yield OptionList(*[Option(snapshot_label(s), id=s["id"])
                                   for s in self.snapshots], id="snapshot", markup=False)
                yield OptionList(Option("everything in the snapshot", id="all"),
                                 Option("one user", id="user"),
                                 Option("one database", id="database"), id="scope")
                yield OptionList(id="pick", markup=False)  # user and database names
                yield OptionList(Option("restore to a new directory", id="new"),
                                 Option("restore in place (a safety snapshot of the current "
                                        "data is taken first)", id="in_place"), id="target")
                with Vertical(id="path"):
                    yield Static("Target directory (new or empty):")
                    yield Input(id="path-input", placeholder="/srv/restore/2024-05-01")
                with Vertical(id="confirm"):
                    yield Static("", id="confirm-text")
                    yield Input(id="confirm-input")
            yield Static("", id="wiz-error", classes="error", markup=False)
            with Horizontal(classes="buttons"):
                yield Button("Start restore", id="start", variant="primary")
                yield Button("Back", id="back")
                yield Button("Cancel", id="cancel")
        yield KeyLegend(classes="legend")

    def on_mount(self) -> None:
        self._go("snapshot", remember=False)

    # -- navigation -------------------------------------------------------------------------
    def _go(self, step: str, remember: bool = True) -> None:
        sw = self.query_one("#wiz-steps", ContentSwitcher)
        if remember and sw.current:
            self.history.append(sw.current)
        sw.current = step
        self.query_one("#wiz-error", Static).update("")
        titles = {"snapshot": "1/4 choose a snapshot", "scope": "2/4 what to restore",
                  "pick": "2/4 which one", "target": "3/4 where to", "path": "3/4 where to",
                  "confirm": "4/4 confirm"}
        self.query_one("#wiz-title", Static).update(f"Restore - {titles[step]}")
        self._summary()
        typed = step == "confirm" and self.in_place
        self.query_one("#confirm-input", Input).display = typed
        self.query_one("#start", Button).display = step == "confirm"
        focus = {"path": "#path-input",
                 "confirm": "#confirm-input" if typed else "#start"}.get(step, f"#{step}")
        self.query_one(focus).focus()

    def _summary(self) -> None:
        parts = []
        if self.snapshot:
            parts.append(f"snapshot {self.snapshot['short_id']}")
        step = self.query_one("#wiz-steps", ContentSwitcher).current
        if self.snapshot and step not in ("snapshot", "scope"):
            if self.scope == "all":
                parts.append("everything")
            elif self.item is not None:  # chosen on the "pick" step
                parts.append(f"{self.scope} {self.item}")
        if self.in_place:
            parts.append("in place")
        elif self.target:
            parts.append(f"to {self.target}")
        self.query_one("#wiz-summary", Static).update(Text(" > ".join(parts), style="dim"))

    def action_back(self) -> None:
        """One step back (the first step has none: nothing happens)."""
        if not self.history:
            return
        step = self.history.pop()
        self.in_place, self.target = False, None  # every step back is before the target
        if step in ("snapshot", "scope"):
            self.item = None
        self._go(step, remember=False)

    def action_cancel(self) -> None:
        self.dismiss(None)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "back":
            self.action_back()
        elif event.button.id == "start":
            self._start()
        else:
            self.dismiss(None)

    def _error(self, text: str) -> None:
        self.query_one("#wiz-error", Static).update(text)

    # -- steps ------------------------------------------------------------------------------
    @on(OptionList.OptionSelected, "#snapshot")
    def _snapshot(self, event: OptionList.OptionSelected) -> None:
        self.snapshot = next(s for s in self.snapshots if s["id"] == event.option.id)
        self._go("scope")

    @on(OptionList.OptionSelected, "#scope")
    def _scope(self, event: OptionList.OptionSelected) -> None:
        assert self.snapshot is not None
        self.scope = str(event.option.id)
        self.item = None
        if self.scope == "all":
            self._go("target")
            return
        items = self.snapshot["users"] if self.scope == "user" else \
            self.databases.get(self.snapshot["id"], [])
        if not items:
            self._error(f"this snapshot has no {'users' if self.scope == 'user' else 'databases'}")
            return
        pick = self.query_one("#pick", OptionList)
        pick.clear_options()
        pick.add_options([Option(i, id=i) for i in sorted(items)])
        pick.highlighted = 0
        self._go("pick")

    @on(OptionList.OptionSelected, "#pick")
    def _pick(self, event: OptionList.OptionSelected) -> None:
        item = str(event.option.id)
        if self.scope == "user":
            try:
                validate_user_id(item)
            except InvalidUserId as exc:
                self._error(str(exc))
                return
        self.item = item
        self._go("target")

    @on(OptionList.OptionSelected, "#target")
    def _target(self, event: OptionList.OptionSelected) -> None:
        if event.option.id == "in_place":
            if self.scope == "database":
                self._error("databases cannot be restored in place; choose a new directory")
                return
            self.in_place = True
            self.target = None
            self._confirm_step()
        else:
            self.in_place = False
            self._go("path")

    @on(Input.Submitted, "#path-input")
    def _path(self, event: Input.Submitted) -> None:
        event.stop()
        path = event.value.strip()
        if not path.startswith("/"):
            self._error("give an absolute path (it starts with /)")
            return
        self.target = path
        self._confirm_step()

    def _confirm_step(self) -> None:
        assert self.snapshot is not None
        sid = self.snapshot["short_id"]
        what = {"all": "everything", "user": f"user {self.item}",
                "database": f"database {self.item}"}[self.scope]
        t = Text()
        t.append(f"Restore {what} from snapshot {sid} "
                 f"({clock_time(self.snapshot['time'], True)})\n")
        if self.in_place:
            t.append("IN PLACE: the current data of the restored users is replaced. A safety "
                     "snapshot of it is taken first, so this can be undone.\n",
                     style="bold yellow")
        else:
            t.append(f"into {self.target} (must be new or empty)\n")
        if self.in_place:
            t.append("\nType the snapshot id ")
            t.append(sid, style="bold")
            t.append(" to start:")
        else:
            t.append("\nEnter starts the restore.", style="bold")
        self.query_one("#confirm-text", Static).update(t)
        inp = self.query_one("#confirm-input", Input)
        inp.value = ""
        inp.placeholder = sid
        self._go("confirm")

    @on(Input.Submitted, "#confirm-input")
    def _confirm(self, event: Input.Submitted) -> None:
        event.stop()
        self._start()

    def _start(self) -> None:
        assert self.snapshot is not None
        sid = self.snapshot["short_id"]
        if self.in_place:
            typed = self.query_one("#confirm-input", Input).value.strip()
            if typed not in (sid, self.snapshot["id"]):
                self._error(f"that is not {sid}; nothing was restored" if typed
                            else f"type {sid} first: in place replaces the current data")
                return
        params: dict[str, Any] = {"snapshot": self.snapshot["id"]}
        if self.scope == "user":
            params["users"] = [self.item]
        elif self.scope == "database":
            params["dbs"] = [self.item]
        if self.in_place:
            params["in_place"] = True
        else:
            params["target"] = self.target
        self.dismiss(params)
