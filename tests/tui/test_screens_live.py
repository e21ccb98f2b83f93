"""Every screen against a real agent: overview charts fill, panes switch by key, the window
selector, events filter and search, the alert banner and the lost-connection banner."""

from __future__ import annotations

import pytest
from textual.widgets import DataTable, RichLog

from lightkeeper.tui.widgets.banners import AlertBanner, ConnectionBanner, TopBar
from lightkeeper.tui.widgets.chart import TimeChart
from tests.tui.conftest import async_test, make_app, text_of, wait_until

pytestmark = pytest.mark.slow  # started first: see tests/conftest.py


@async_test
async def test_overview_shows_live_charts_and_details(agent):
    app = make_app(agent.client)
    async with app.run_test(size=(120, 40)) as pilot:
        cpu = app.query_one("#ch-cpu", TimeChart)
        await wait_until(pilot, lambda: any(line.points for line in cpu.data.lines),
                         "CPU samples on the overview chart")
        await wait_until(pilot, lambda: "cpu" in text_of(app.query_one("#ov-health")),
                         "collector health")
        assert "/" in text_of(app.query_one("#ov-storage"))  # the root mount
        assert "Overview" in text_of(app.query_one(TopBar))


@async_test
async def test_every_screen_opens_by_key_and_the_window_cycles(agent):
    app = make_app(agent.client)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: app.poll_count > 0, "the first poll")
        for key, pane in (("2", "lightrag"), ("3", "backups"), ("4", "zones"),
                          ("5", "tuning"), ("6", "events"), ("1", "overview")):
            count = app.poll_count
            await pilot.press(key)
            assert app.active == pane
            await wait_until(pilot, lambda p=pane: app.query_one("#panes").current == p,
                             f"pane {pane}")
            # the switch fetches the pane (later refreshes come when the agent pushes a change
            # or from the safety re-fetch: tests/tui/test_push_refresh.py)
            await wait_until(pilot, lambda c=count, p=pane: app.poll_count > c
                             and app.last_polled == p, f"{pane}'s fetch after the switch")
        legend = app.query_one("#legend")
        assert "w Window" in text_of(legend) and "b Backup" not in text_of(legend)
        await pilot.press("3")
        assert "b Backup" in text_of(legend) and "x Cancel" in text_of(legend)
        await pilot.press("1")
        assert app.window == "5m"  # a fresh agent: the window its data fills
        await pilot.press("w", "w")
        assert app.window == "24h"
        await wait_until(pilot, lambda: "24h" in text_of(app.query_one(TopBar)), "window 24h")
        chart = app.query_one("#ch-cpu", TimeChart)
        await wait_until(pilot, lambda: chart.data.window_s == 86400, "a 24 h chart")
        await pilot.press("question_mark")
        await wait_until(pilot, lambda: app.screen.__class__.__name__ == "HelpScreen", "help")
        await pilot.press("escape")
        assert app.screen.__class__.__name__ != "HelpScreen"


@async_test
async def test_lightrag_screen_without_operations_says_so(agent):
    app = make_app(agent.client)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("2")
        await wait_until(pilot, lambda: "no operations in this window" in text_of(
            app.query_one("#rag-summary")), "the empty summary")


@async_test
async def test_events_tail_filters_and_searches(agent):
    app = make_app(agent.client)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("6")
        log = app.query_one("#events-log", RichLog)

        def lines() -> str:
            return "\n".join(str(s.text) for s in log.lines)

        await wait_until(pilot, lambda: "agent.started" in lines(), "the agent.started event")
        # a new event appears in the tail without any key press
        agent.client.call("tuning.set", changes={"top_k": 41}, note="tail test", actor="t")
        await wait_until(pilot, lambda: "tuning.changed" in lines(), "the new audit event")
        await pilot.press("slash")
        for ch in "tuning.changed":
            await pilot.press(ch)
        await pilot.press("enter")
        await wait_until(pilot, lambda: "tuning.changed" in lines()
                         and "agent.started" not in lines(), "search results only")
        await pilot.press("l", "l")  # warning and above: the info events go
        await wait_until(pilot, lambda: "tuning.changed" not in lines(), "level filter")


@async_test
async def test_alert_banner_shows_a_firing_alert(start_agent):
    # disk free below 101 % is always true: the rule fires on the first evaluation
    agent = start_agent({"LIGHTKEEPER_ALERTS__DISK_FREE_LOW__WARNING": "1.01",
                         "LIGHTKEEPER_ALERTS__DISK_FREE_LOW__CRITICAL": "0",
                         "LIGHTKEEPER_ALERTS__DISK_FREE_LOW__FOR_SECONDS": "0"})
    app = make_app(agent.client)
    async with app.run_test(size=(80, 24)) as pilot:
        banner = app.query_one(AlertBanner)
        await wait_until(pilot, lambda: banner.display and "disk_free_low" in text_of(banner),
                         "the disk_free_low alert in the banner")
        await pilot.press("5")  # still there on another screen
        assert banner.display


@async_test
async def test_lost_agent_shows_banner_and_reconnects(start_agent):
    agent = start_agent()
    app = make_app(agent.client)
    async with app.run_test(size=(80, 24)) as pilot:
        banner = app.query_one(ConnectionBanner)
        await wait_until(pilot, lambda: app.poll_count > 0, "the first poll")
        assert not banner.display
        agent.stop()
        await wait_until(pilot, lambda: banner.display, "the lost-connection banner")
        assert "connection lost" in text_of(banner)
        await pilot.press("3")  # the UI stays usable meanwhile
        assert app.active == "backups"
        agent.start()
        await wait_until(pilot, lambda: not banner.display, "reconnection", timeout=90)
        table = app.query_one("#snap-table", DataTable)
        assert table is not None


@async_test
async def test_command_palette_runs_an_action_of_another_screen(agent):
    app = make_app(agent.client)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: app.poll_count > 0, "the first poll")
        await pilot.press("ctrl+p")
        await wait_until(pilot, lambda: app.screen.__class__.__name__ == "CommandPalette",
                         "the command palette")
        await pilot.press(*"Tuning: discard")
        await wait_until(pilot, lambda: "discard" in " ".join(
            str(o.prompt) for o in app.screen.query_one("CommandList").options).lower(),
            "the tuning action in the palette")
        await pilot.press("enter")
        await wait_until(pilot, lambda: app.active == "tuning", "the tuning screen")


@async_test
async def test_theme_toggle_and_resize(agent):
    app = make_app(agent.client)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: app.poll_count > 0, "the first poll")
        assert app.theme == "textual-dark"
        await pilot.press("ctrl+t")
        assert app.theme == "textual-light"
        assert app.screen.has_class("-narrow")
        await pilot.resize_terminal(140, 45)
        await wait_until(pilot, lambda: app.screen.has_class("-wide"), "the wide layout")
        await wait_until(pilot, lambda: "lightkeeper" in text_of(app.query_one(TopBar)),
                         "the long top bar")


def test_console_refuses_without_a_terminal(run_cli):
    r = run_cli("console", check=False)
    assert r.returncode == 2
    assert "needs a terminal" in r.stderr


@async_test
async def test_lightrag_screen_shows_ingested_operations_and_filters_by_user(agent, lk_env):
    import os
    import time
    import uuid
    from pathlib import Path

    from lightkeeper.rag.spool import SpoolWriter

    root = Path(lk_env["LIGHTKEEPER_PATHS__DATA_ROOT"])
    for user in ("alice", "bob"):
        (root / user).mkdir()
        (root / user / "kv_store_full_docs.json").write_text("{}")
    writer = SpoolWriter(agent.cfg.path("paths.spool_dir"))
    now = time.time()
    for i in range(12):
        for user, op, mode, outcome in (("alice", "query", "mix", "ok"),
                                        ("alice", "insert", None, "ok"),
                                        ("bob", "query", "local", "error" if i % 3 else "ok")):
            writer.write({"v": 1, "op_id": uuid.uuid4().hex, "ts": now - 60 + i, "user": user,
                          "op": op, "mode": mode, "duration_s": 0.05 + i * 0.01, "llm_s": 0.03,
                          "llm_calls": 1, "embed_s": 0.01, "embed_calls": 1, "embed_items": 1,
                          "tokens_in": 10, "tokens_out": 5, "result_bytes": 10,
                          "outcome": outcome,
                          "error_class": None if outcome == "ok" else "TimeoutError",
                          "tuning_version": 1, "pid": os.getpid(), "run_id": None})
    writer.close()
    app = make_app(agent.client)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("2")
        summary = app.query_one("#rag-summary")
        await wait_until(pilot, lambda: "query/local" in text_of(summary)
                         and "query/mix" in text_of(summary), "the ingested operations")
        assert "insert" in text_of(summary)
        assert "error" in text_of(app.query_one("#rag-slowest"))  # bob's failures
        await wait_until(pilot, lambda: app.query_one("#lightrag").users == ["alice", "bob"],
                         "the user list")
        await pilot.press("u")  # alice only
        await wait_until(pilot, lambda: "query/local" not in text_of(summary)
                         and "query/mix" in text_of(summary), "alice's operations only")
        assert "user alice" in text_of(app.query_one("#rag-filter"))
        await pilot.press("m")  # the chart follows another operation/mode
        await wait_until(pilot, lambda: "Latency query/mix" not in app.query_one(
            "#ch-lat").title, "another op/mode on the latency chart")
