"""A text field of a pane's form: it takes every printable key (Textual's Input consumes them, so
no screen key fires while typing) and esc hands focus back to the pane's main widget."""

from __future__ import annotations

from textual.binding import Binding
from textual.widgets import Input


class FieldInput(Input):
    BINDINGS = [Binding("escape", "leave", "Leave field")]

    def action_leave(self) -> None:
        for node in self.ancestors:
            focus_default = getattr(node, "focus_default", None)
            if focus_default is not None:
                focus_default()
                return
        self.screen.set_focus(None)
