"""Modal dialogs: confirm (optionally by typing a word), note, help."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static

from lightkeeper.tui.actions import ACTIONS, PANES, key_label
from lightkeeper.tui.widgets.banners import KeyLegend

# Every dialog closes with esc, and with q unless a text field has focus (the field takes the
# q then, and the key legend at the bottom stops showing it).
CLOSE: list[BindingType] = [Binding("escape", "cancel", "Cancel"), Binding("q", "cancel", "Cancel")]


class ConfirmDialog(ModalScreen[bool]):
    """Yes/no; with ``typed`` the operator must type that exact text to confirm."""

    BINDINGS = CLOSE

    def __init__(self, title: str, body: Any = "", typed: str | None = None,
                 confirm_label: str = "Confirm", danger: bool = True) -> None:
        super().__init__()
        self.title_text = title
        self.body = body
        self.typed = typed
        self.confirm_label = confirm_label
        self.danger = danger

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(self.title_text, classes="dialog-title", markup=False)
            with VerticalScroll(classes="dialog-body"):
                yield Static(self.body, markup=False)
            if self.typed is not None:
                yield Static(Text.assemble("Type ", (self.typed, "bold"), " to confirm:"))
                yield Input(id="typed", placeholder=self.typed)
            yield Static("", id="dialog-error", classes="error", markup=False)
            with Horizontal(classes="buttons"):
                yield Button(self.confirm_label, id="ok",
                             variant="error" if self.danger else "primary")
                yield Button("Cancel", id="cancel")
        yield KeyLegend(classes="legend")

    def on_mount(self) -> None:
        if self.typed is not None:
            self.query_one("#typed", Input).focus()
        else:
            self.query_one("#ok", Button).focus()

    def _try_confirm(self) -> None:
        if self.typed is not None:
            value = self.query_one("#typed", Input).value.strip()
            if value != self.typed:
                self.query_one("#dialog-error", Static).update(
                    f"that is not {self.typed!r}; nothing was done" if value
                    else f"type {self.typed!r} first")
                return
        self.dismiss(True)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "ok":
            self._try_confirm()
        else:
            self.dismiss(False)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._try_confirm()

    def action_cancel(self) -> None:
        self.dismiss(False)


class NoteDialog(ModalScreen[str | None]):
    """Asks for a note (why), required and non-empty; shows what will happen above it."""

    BINDINGS = CLOSE

    def __init__(self, title: str, body: Any = "", label: str = "Note (why):",
                 confirm_label: str = "Apply") -> None:
        super().__init__()
        self.title_text = title
        self.body = body
        self.label = label
        self.confirm_label = confirm_label

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(self.title_text, classes="dialog-title", markup=False)
            with VerticalScroll(classes="dialog-body"):
                yield Static(self.body, markup=False)
            yield Static(self.label, markup=False)
            yield Input(id="note", placeholder="what and why, for the history")
            yield Static("", id="dialog-error", classes="error", markup=False)
            with Horizontal(classes="buttons"):
                yield Button(self.confirm_label, id="ok", variant="primary")
                yield Button("Cancel", id="cancel")
        yield KeyLegend(classes="legend")

    def on_mount(self) -> None:
        self.query_one("#note", Input).focus()

    def _submit(self) -> None:
        note = self.query_one("#note", Input).value.strip()
        if not note:
            self.query_one("#dialog-error", Static).update("a note is required")
            return
        self.dismiss(note)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "ok":
            self._submit()
        else:
            self.dismiss(None)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._submit()

    def action_cancel(self) -> None:
        self.dismiss(None)


class HelpScreen(ModalScreen[None]):
    """Every key, by screen, built from the action registry."""

    BINDINGS = [Binding("escape", "close", "Close"), Binding("q", "close", "Close"),
                Binding("question_mark", "close", "Close")]

    def compose(self) -> ComposeResult:
        table = Table(box=None, expand=True, padding=(0, 1), show_header=False)
        table.add_column(no_wrap=True, style="bold cyan")
        table.add_column()
        table.add_row(Text("Everywhere", style="bold"), "")
        table.add_row(" ".join(k for _, _, k in PANES), "switch screen: " + ", ".join(
            t for _, t, _ in PANES))
        groups: dict[str | None, list[Any]] = {}
        for a in ACTIONS:
            if a.name.startswith("show("):
                continue
            groups.setdefault(a.pane, []).append(a)
        titles = {pid: title for pid, title, _ in PANES}
        for pane, actions in groups.items():
            if pane is not None:
                table.add_row("", "")
                table.add_row(Text(titles.get(pane, pane), style="bold"), "")
            for a in actions:
                table.add_row(key_label(a.key), a.help)
        table.add_row("ctrl+p", "command palette: every action by name")
        with Vertical(classes="dialog wide"):
            yield Static("Keys", classes="dialog-title")
            with VerticalScroll(classes="dialog-body"):
                yield Static(table)
            with Horizontal(classes="buttons"):
                yield Button("Close", id="close", variant="primary")
        yield KeyLegend(classes="legend")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(None)

    def action_close(self) -> None:
        self.dismiss(None)
