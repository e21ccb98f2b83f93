"""The Tuning screen says plainly which running `lightkeeper serve` needs a restart after a
change (real agent, real `lightkeeper serve` against `lightkeeper offline-llm`)."""

from __future__ import annotations

from typing import Any

from textual.widgets import Input, Static

from tests.rag import test_serve as served
from tests.tui.conftest import async_test, make_app, notifications, text_of, wait_until

llm_env = served.llm_env
offline_llm = served.offline_llm
serve = served.serve


@async_test
async def test_tuning_screen_shows_which_server_needs_a_restart(agent: Any, serve: Any) -> None:
    srv = serve("srv_c")
    pid = srv.info["pid"]
    app = make_app(agent.client)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("5")
        await wait_until(pilot, lambda: app.query("#p-llm_model_max_async"), "the form")
        box = app.query_one("#tuning-servers", Static)
        head = app.query_one("#tuning-head", Static)
        await wait_until(pilot, lambda: "active version 1" in text_of(head), "version 1")
        assert not box.display and not text_of(box).strip()

        # a live parameter changed elsewhere: no notice
        agent.client.call("tuning.set", changes={"top_k": 55}, note="wider")
        field = app.query_one("#p-top_k", Input)
        await wait_until(pilot, lambda: field.value == "55", "the form follows version 2")
        assert "needs a restart" not in text_of(box)

        # a restart parameter applied from the form: a warning and a standing notice
        inp = app.query_one("#p-llm_model_max_async", Input)
        app.screen.set_focus(inp)
        await pilot.press("end", "backspace", "2")
        panel = app.query_one("#tuning-panel")
        await wait_until(pilot, lambda: "llm_model_max_async" in text_of(panel)
                         and "restart" in text_of(panel), "the pending diff")
        await pilot.press("escape", "a")
        await wait_until(pilot, lambda: app.screen.__class__.__name__ == "NoteDialog",
                         "the note dialog")
        await pilot.press(*"fewer LLM calls", "enter")
        expected = f"lightkeeper serve for srv_c (pid {pid}) needs a restart for: " \
            "llm_model_max_async"
        await wait_until(pilot, lambda: any(expected in m for m in notifications(app)),
                         "the warning after apply")
        await wait_until(pilot, lambda: box.display and expected in text_of(box, 300)
                         and "lightkeeper serve --restart --user srv_c" in text_of(box, 300),
                         "the notice on the Tuning screen")
        assert box.region.height >= 1  # laid out, not just present
