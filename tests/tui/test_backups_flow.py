"""Backups by keyboard against a real agent: start a backup and watch its progress to the end,
cancel one, restore one user to a new path through the wizard."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from textual.widgets import DataTable

from lightkeeper.backup.gate import exclusive_gate
from lightkeeper.tui.dialogs import ConfirmDialog
from lightkeeper.tui.restore_wizard import RestoreWizard
from tests.tui import conftest as tui
from tests.tui.conftest import async_test, make_app, notifications, text_of, wait_until
from tests.zones.repo_helper import write_user_files

pytestmark = pytest.mark.slow  # started first: see tests/conftest.py


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and not p.name.startswith(".")}


def _data_root(lk_env: dict[str, str]) -> Path:
    return Path(lk_env["LIGHTKEEPER_PATHS__DATA_ROOT"])


@async_test
async def test_backup_progress_until_it_finishes(agent, lk_env):
    root = _data_root(lk_env)
    write_user_files(root, "alice", 4, 50_000, 1)
    app = make_app(agent.client)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("3")
        note = app.query_one("#backups-note")
        await wait_until(pilot, lambda: "press b" in text_of(note), "no repository yet")
        progress = app.query_one("#backups-progress")
        # a writer holds alice's gate: the backup waits for it, so we can watch it run
        with exclusive_gate(root / "alice"):
            await pilot.press("b")
            await wait_until(pilot, lambda: "backup" in text_of(progress)
                             and "running" in text_of(progress), "the running backup's bar")
            assert "ETA" in text_of(progress)
        table = app.query_one("#snap-table", DataTable)
        await wait_until(pilot, lambda: table.row_count == 1, "the new snapshot in the list")
        await wait_until(pilot, lambda: "no repository job running" in text_of(progress),
                         "the bar gone at the end")
        assert "backup succeeded" in text_of(app.query_one("#backups-last"))
        snap = agent.client.call("backup.snapshots")["snapshots"][0]
        assert snap["users"] == ["alice"]
        # verify is one key away and marks the snapshot verified
        await pilot.press("v")
        await wait_until(pilot, lambda: "yes" in str(table.get_row_at(0)[-1]),
                         "the snapshot marked verified")
        # prune shows its plan before asking: what is forgotten, what is freed
        await pilot.press("p")
        await tui.wait_for_screen(pilot, app, ConfirmDialog, "the plan")
        plan = text_of(app.screen.query_one(".dialog-body Static"))
        assert "keeps 1 snapshot, all there are" in plan and "Frees about" in plan, plan
        await pilot.press("escape")
        assert not isinstance(app.screen, ConfirmDialog)


@async_test
async def test_cancel_a_backup_started_from_the_cli(agent, lk_env):
    root = _data_root(lk_env)
    write_user_files(root, "alice", 2, 10_000, 2)
    app = make_app(agent.client)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("3")
        progress = app.query_one("#backups-progress")
        with exclusive_gate(root / "alice"):
            # started elsewhere (the CLI or the schedule): the console shows it all the same
            job_id = agent.client.start_job("backup", {"tags": ["from-cli"]}, actor="cli")
            await wait_until(pilot, lambda: "running" in text_of(progress)
                             and "by cli" in text_of(progress), "the CLI's running backup")
            assert app.jobs[0]["id"] == job_id
            await pilot.press("x")
            await wait_until(pilot, lambda: any("cancel requested" in m
                                                for m in notifications(app)), "cancel sent")
        job = agent.client.wait_job(job_id, timeout=120)
        assert job["state"] == "cancelled"
        await wait_until(pilot, lambda: "backup cancelled" in text_of(
            app.query_one("#backups-last")), "the cancelled job reported")
        assert agent.client.call("backup.snapshots")["snapshots"] == []


@async_test
async def test_restore_one_user_to_a_new_path_through_the_wizard(agent, lk_env, tmp_path):
    root = _data_root(lk_env)
    write_user_files(root, "alice", 3, 20_000, 3)
    write_user_files(root, "bob", 3, 20_000, 4)
    job = agent.client.wait_job(agent.client.start_job("backup", {}))
    assert job["state"] == "succeeded", job
    assert len(agent.client.call("backup.snapshots")["snapshots"]) == 1
    target = tmp_path / "restored"
    app = make_app(agent.client)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("3")
        table = app.query_one("#snap-table", DataTable)
        await wait_until(pilot, lambda: table.row_count == 1, "the snapshot")
        await pilot.press("r")
        await tui.wait_for_screen(pilot, app, RestoreWizard, "the wizard")
        wizard = app.screen
        summary = wizard.query_one("#wiz-summary")
        await pilot.press("enter")  # 1. the (selected) snapshot
        await pilot.press("down", "enter")  # 2. one user
        assert "None" not in text_of(summary)  # the breadcrumb names only what was chosen
        await pilot.press("down", "enter")  # ... bob (alice, bob)
        assert "user bob" in text_of(summary)
        await pilot.press("enter")  # 3. a new directory
        await pilot.press(*str(target), "enter")
        # 4. a new directory overwrites nothing: enter starts it, no id to type
        assert "Enter starts the restore" in text_of(wizard.query_one("#confirm-text"))
        await pilot.press("enter")
        await wait_until(pilot, lambda: not isinstance(app.screen, RestoreWizard), "started")
        await wait_until(pilot, lambda: "restore succeeded" in text_of(
            app.query_one("#backups-last")), "the restore finished")
        # the last message says where the files went
        await wait_until(pilot, lambda: any(f"restored into {target}" in m
                                            for m in notifications(app)), "where they went")
        # esc closes the wizard from any step, not one page at a time
        await pilot.press("r")
        await tui.wait_for_screen(pilot, app, RestoreWizard, "the wizard")
        await pilot.press("enter", "down", "enter")
        await pilot.press("escape")
        assert not isinstance(app.screen, RestoreWizard)
    restored = [p for p in target.rglob("kv_store_0.json")]
    assert len(restored) == 1, list(target.rglob("*"))
    assert _tree(restored[0].parent) == _tree(root / "bob")
    assert not any("alice" in str(p) for p in target.rglob("*"))
