"""The console says when the agent reloaded its configuration, or refused to and why."""

from __future__ import annotations

from pathlib import Path

from tests.tui.conftest import async_test, make_app, notifications, wait_until


@async_test
async def test_console_says_config_reloaded_or_refused(start_agent, tmp_path: Path) -> None:
    cfg_file = tmp_path / "config.toml"
    cfg_file.write_text("[alerts.cpu_high]\nfor_seconds = 600\n")
    agent = start_agent({"LIGHTKEEPER_CONFIG": str(cfg_file)})
    app = make_app(agent.client)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: app.poll_count > 0, "the first poll")
        cfg_file.write_text("[alerts.cpu_high]\nfor_seconds = 900\n")
        assert agent.client.reload()["ok"]
        await wait_until(pilot, lambda: "config reloaded (1 changed)" in notifications(app),
                         "the reload notice")
        cfg_file.write_text('[backup]\nschedule = "now and then"\n')
        assert not agent.client.reload()["ok"]
        await wait_until(pilot, lambda: any("config reload refused" in m
                                            and "backup.schedule" in m
                                            for m in notifications(app)), "the refusal")
