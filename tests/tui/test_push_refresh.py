"""The console is told about changes: with its poll timer far longer than the test, a job that
ends, a tuning change, an event and an agent restart still reach the pane that shows them,
through the agent's ``changes.wait`` long poll."""

from __future__ import annotations

from typing import Any

from tests.tui.conftest import async_test, make_app, text_of, wait_until

SLOW = 600.0  # longer than the test: only a pushed change can refresh a pane in time


def _events(app: Any, name: str) -> int:
    return sum(1 for r in app.pane("events").rows if r.get("event") == name)


@async_test
async def test_panes_refresh_on_pushed_changes(agent: Any, start_agent: Any) -> None:
    client = agent.client
    app = make_app(client, refresh_s=SLOW, chart_s=SLOW, safety_s=SLOW)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: app.push_live, "the change watcher")

        # a job started outside the console: its end shows on the Backups pane
        await pilot.press("3")
        await wait_until(pilot, lambda: app.last_polled == "backups", "the backups pane")
        client.start_job("verify", {})  # no repository yet: it fails at once
        last = app.query_one("#backups-last")
        await wait_until(pilot, lambda: "verify failed" in text_of(last), "the failed verify")

        # a tuning change made elsewhere: the Tuning pane shows the new version
        await pilot.press("5")
        tuning: Any = app.pane("tuning")
        await wait_until(pilot, lambda: tuning.version == 1, "tuning version 1")
        client.call("tuning.set", changes={"top_k": 41}, note="pushed", actor="t")
        await wait_until(pilot, lambda: tuning.version == 2, "tuning version 2")

        # an event: the Events pane appends it
        await pilot.press("6")
        await wait_until(pilot, lambda: _events(app, "agent.started") == 1, "the events")
        client.reload(actor="t")
        await wait_until(pilot, lambda: _events(app, "config.reloaded") == 1, "the reload event")

        # the agent restarts: the watcher reconnects and the pane re-reads what it missed
        agent.stop()
        await wait_until(pilot, lambda: not app.push_live, "the watcher losing the agent")
        start_agent()
        await wait_until(pilot, lambda: app.push_live, "the watcher back", timeout=90)
        await wait_until(pilot, lambda: _events(app, "agent.started") == 2,
                         "the restarted agent's start event")
