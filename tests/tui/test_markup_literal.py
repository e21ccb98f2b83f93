"""Strings that come from the agent are shown as typed, never read as Textual/Rich markup: a
note, an actor or a value like "[bold]x" or "[/]" shows literally on the Tuning screen (history
table, head, pending panel), in the Events tail and in a toast, and breaks nothing."""

from __future__ import annotations

from typing import Any

from textual.widgets._toast import Toast

from lightkeeper.tui.app import LightkeeperApp
from tests.tui.conftest import async_test, make_app, notifications, wait_until

NOTE = "[bold]loud[/bold] [/] note"
ACTOR = "[/]ops"
VALUE = "[/]12"


def screen_text(app: LightkeeperApp) -> str:
    """The characters on the terminal now, line by line (toasts and dialogs included)."""
    update = app.screen._compositor.render_full_update()  # what is painted
    return "\n".join("".join(strip.text for strip in line) for line in update.strips)


@async_test
async def test_agent_strings_show_literally(agent: Any) -> None:
    client = agent.client
    client.call("tuning.set", changes={"top_k": 41}, note=NOTE, actor=ACTOR)
    app = make_app(client)
    async with app.run_test(size=(200, 50), notifications=True) as pilot:
        await pilot.press("5")
        # the history table (a DataTable: str cells were parsed as markup) and the head
        await wait_until(pilot, lambda: screen_text(app).count(NOTE) >= 2,
                         "the note in the tuning head and in the history table")
        assert f"by {ACTOR}: {NOTE}" in screen_text(app)
        # a value the agent refuses, quoted back in its error: the field's inline error, the
        # pending panel, and the toast that refuses to apply
        await pilot.press("e")
        field = app.focused
        assert field is not None and getattr(field, "param", None), "focus is in a field"
        field.value = ""  # type: ignore[attr-defined]
        await pilot.press(*VALUE)
        await wait_until(pilot, lambda: "fix the errors to apply" in screen_text(app),
                         "the agent's validation error")
        await pilot.press("escape", "a")
        await wait_until(pilot, lambda: any(n.startswith("cannot apply") for n in
                                            notifications(app)), "the refusal toast")
        refusal = next(n for n in notifications(app) if n.startswith("cannot apply"))
        assert VALUE in refusal, refusal  # the agent quotes the value back
        await wait_until(pilot, lambda: any(VALUE in toast.render().plain
                                            for toast in app.screen.query(Toast)),
                         "the refusal toast showing the value as the agent quoted it")
        await pilot.press("u")  # undo the edit
        # the audit event in the Events tail
        await pilot.press("6")
        await wait_until(pilot, lambda: f"by {ACTOR}" in screen_text(app),
                         "the actor in the events tail")
        assert app.is_running
