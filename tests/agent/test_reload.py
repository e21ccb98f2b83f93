"""Live reload: a valid change applies in the running agent (each key audited), a broken or
restart-only change is refused whole with the error `config check` gives, and the old
configuration keeps running."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

ZONE = """
[zones.eu1]
host = "127.0.0.1"
user = "backup"
remote_path = "/srv/lightkeeper"
"""


def _config_check_error(run_cli) -> str:
    r = run_cli("config", "check", check=False)
    assert r.returncode == 2, r.stdout + r.stderr
    return r.stderr.strip().removeprefix("lightkeeper: ")


def test_reload_adds_zone_and_refuses_broken_edit(start_agent, run_cli, tmp_path: Path) -> None:
    cfg_file = tmp_path / "config.toml"
    cfg_file.write_text("[alerts.cpu_high]\nfor_seconds = 600\n")
    env = {"LIGHTKEEPER_CONFIG": str(cfg_file)}
    agent = start_agent(env)

    def cli(*args: str, check: bool = True):
        return run_cli(*args, env=env, check=check)

    assert json.loads(cli("zones", "list", "--json").stdout) == []
    # a valid change: a new zone, a changed threshold
    cfg_file.write_text("[alerts.cpu_high]\nfor_seconds = 900\n" + ZONE)
    out = cli("agent", "reload").stdout
    assert "configuration reloaded" in out and "zones.eu1.host" in out
    zones = json.loads(cli("zones", "list", "--json").stdout)
    assert [z["name"] for z in zones] == ["eu1"]  # no restart
    audit = [e for e in agent.client.events(kind="audit") if e["event"] == "config.changed"]
    keys = {e["context"]["key"]: e["context"] for e in audit}
    assert keys["alerts.cpu_high.for_seconds"]["old"] == 600.0
    assert keys["alerts.cpu_high.for_seconds"]["new"] == 900.0
    assert {"zones.eu1.host", "zones.eu1.user", "zones.eu1.remote_path"} <= set(keys)
    status = agent.client.status()
    assert status["config"]["last_reload"]["ok"] is True
    pid = status["pid"]

    # a broken edit: refused by the CLI before the agent is asked, with config check's error
    cfg_file.write_text(ZONE + '[backup]\nschedule = "sometimes"\n')
    expected = _config_check_error(cli)
    assert "backup.schedule" in expected and "sometimes" in expected
    r = cli("agent", "reload", check=False)
    assert r.returncode == 2 and expected in r.stderr
    assert "keeps its current configuration" in r.stderr
    # ... and refused by the agent itself on SIGHUP: the same error, in its status
    os.kill(pid, signal.SIGHUP)
    deadline = time.monotonic() + 20
    while agent.client.status()["config"]["last_reload"]["ok"]:
        assert time.monotonic() < deadline, "SIGHUP never handled"
        time.sleep(0.2)
    last = agent.client.status()["config"]["last_reload"]
    assert last["error"] in expected
    assert [z["name"] for z in json.loads(cli("zones", "list", "--json").stdout)] == ["eu1"]
    assert any(e["event"] == "config.reload_refused" for e in agent.client.events(kind="audit"))
    assert agent.client.status()["pid"] == pid  # the same agent, still running

    # a setting that needs a restart is named in the refusal
    cfg_file.write_text(ZONE + f'[paths]\nspool_dir = "{tmp_path / "other-spool"}"\n')
    r = cli("agent", "reload", check=False)
    assert r.returncode == 2
    assert "cannot change while the agent runs: paths.spool_dir" in r.stderr
    assert agent.client.status()["config"]["last_reload"]["ok"] is False


def test_config_check_validates_schedules(run_cli, tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text(ZONE.replace("[zones.eu1]", "[zones.eu1]\nschedule = \"every 5 minutes\""))
    r = run_cli("--config", str(f), "config", "check", check=False)
    assert r.returncode == 2
    assert f"{f}: zones.eu1.schedule: schedule 'every 5 minutes' not understood" in r.stderr
    f.write_text('[backup]\nschedule = "every 30s"\n')
    r = run_cli("--config", str(f), "config", "check", check=False)
    assert r.returncode == 2 and "shortest interval is 1 minute" in r.stderr
    # the agent refuses to start on it too, with the same message
    r = run_cli("--config", str(f), "agent", check=False)
    assert r.returncode == 2 and "backup.schedule" in r.stderr


def test_reload_rebuilds_collectors(start_agent, run_cli, tmp_path: Path) -> None:
    """collect.* settings apply live: the collectors are rebuilt, and the series the new
    configuration excludes leave the current values."""
    cfg_file = tmp_path / "config.toml"
    cfg_file.write_text("[collect]\nsystem_interval = 1\n")
    env = {"LIGHTKEEPER_CONFIG": str(cfg_file)}
    agent = start_agent(env)

    def lo_series() -> list[str]:
        latest = agent.client.call("metrics.latest")
        return [m for m, labels in latest.items() if m.startswith("network_") and "lo" in labels]

    deadline = time.monotonic() + 30
    while not lo_series():
        assert time.monotonic() < deadline, "the loopback interface was never collected"
        time.sleep(0.5)
    cfg_file.write_text('[collect]\nsystem_interval = 1\ninterfaces_exclude = ["lo"]\n')
    out = run_cli("agent", "reload", env=env).stdout
    assert "collect.interfaces_exclude" in out
    time.sleep(3)  # a few collections at the 1 s interval
    assert lo_series() == []
    names = {c["name"] for c in agent.client.status()["collectors"]}
    assert names and all(c["runs"] > 0 for c in agent.client.status()["collectors"]
                         if c["interval_s"] <= 1)
