"""Tuning by keyboard against a real agent: a bad value is marked inline and cannot be
applied, a good one shows in the pending diff, apply asks for a note, versions diff, latency
compare, revert with confirmation."""

from __future__ import annotations

from textual.widgets import DataTable, Input

from lightkeeper.tui.dialogs import NoteDialog
from tests.tui import conftest as tui
from tests.tui.conftest import async_test, make_app, notifications, text_of, wait_until


async def _type_into_first_field(pilot, app, text: str) -> Input:
    field = app.query_one("#p-chunk_token_size", Input)
    if app.focused is not field:  # keyboard only: one tab from the history reaches it
        await pilot.press("tab")
    assert app.focused is field
    await pilot.press("end", *["backspace"] * 8, *text)
    return field


@async_test
async def test_edit_validate_apply_diff_compare_revert(agent):
    client = agent.client
    app = make_app(client)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("5")
        await wait_until(pilot, lambda: app.query("#p-chunk_token_size"), "the form")
        err = app.query_one("#info-chunk_token_size")
        field_box = app.query_one("#info-chunk_token_size")

        # a bad value: inline error, apply refused
        await _type_into_first_field(pilot, app, "5")
        await wait_until(pilot, lambda: field_box.has_class("invalid")
                         and "smaller than 64" in text_of(err), "the inline error for 5")
        await pilot.press("escape", "a")
        await wait_until(pilot, lambda: any("cannot apply" in m for m in notifications(app)),
                         "apply refused")
        assert not isinstance(app.screen, NoteDialog)
        assert client.call("tuning.show")["version"] == 1

        # a good value: error gone, pending diff shows it
        await _type_into_first_field(pilot, app, "1000")
        panel = app.query_one("#tuning-panel")
        await wait_until(pilot, lambda: not field_box.has_class("invalid")
                         and "smaller than" not in text_of(err) and "1000" in text_of(panel)
                         and "1200" in text_of(panel), "the pending diff 1200 -> 1000")

        # apply with a note
        await pilot.press("escape", "a")
        await tui.wait_for_screen(pilot, app, NoteDialog, "the note dialog")
        await pilot.press("enter")  # an empty note is refused
        assert isinstance(app.screen, NoteDialog)
        await pilot.press(*"smaller chunks for short docs", "enter")
        await wait_until(pilot, lambda: client.call("tuning.show")["version"] == 2, "version 2")
        v2 = client.call("tuning.history")["versions"][0]
        assert v2["note"] == "smaller chunks for short docs"
        assert v2["changes"] == ["chunk_token_size"]
        assert "@" in v2["actor"]
        values = {p["name"]: p["value"] for p in client.call("tuning.show")["params"]}
        assert values["chunk_token_size"] == 1000

        table = app.query_one("#tuning-history", DataTable)
        await wait_until(pilot, lambda: table.row_count == 2, "two versions in the history")
        assert app.focused is table and table.cursor_row == 0

        # diff: mark v1 as A, select v2, d
        await pilot.press("down", "m", "up", "d")
        await wait_until(pilot, lambda: "v1 → v2" in text_of(panel), "the version diff")
        assert "chunk_token_size" in text_of(panel)

        # latency comparison is one key away
        await pilot.press("c")
        await wait_until(pilot, lambda: "Latency p95: v1 → v2" in text_of(panel), "compare")

        # revert v1: confirm with a note
        await pilot.press("down", "r")
        await tui.wait_for_screen(pilot, app, NoteDialog, "revert dialog")
        await pilot.press(*"back to defaults", "enter")
        await wait_until(pilot, lambda: client.call("tuning.show")["version"] == 3, "version 3")
        v3 = client.call("tuning.history")["versions"][0]
        assert v3["reverted_from"] == 1 and v3["note"] == "back to defaults"
        values = {p["name"]: p["value"] for p in client.call("tuning.show")["params"]}
        assert values["chunk_token_size"] == 1200
        field = app.query_one("#p-chunk_token_size", Input)
        await wait_until(pilot, lambda: field.value == "1200", "the form follows the revert")


@async_test
async def test_undo_discards_pending_edits(agent):
    app = make_app(agent.client)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("5")
        await wait_until(pilot, lambda: app.query("#p-chunk_token_size"), "the form")
        field = await _type_into_first_field(pilot, app, "900")
        await pilot.press("escape", "u")
        assert field.value == "1200"
        pane = app.query_one("#tuning")
        assert pane.pending == {}
