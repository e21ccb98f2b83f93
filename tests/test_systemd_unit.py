"""The agent's systemd unit: generated for this install, and valid for systemd-analyze."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lightkeeper.cli.unit import reference_unit

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "deploy" / "systemd" / "lightkeeper-agent.service"

needs_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                   reason="systemd-analyze missing: scripts/test.sh installs "
                                   "systemd")


def test_shipped_unit_is_the_reference_output() -> None:
    assert SHIPPED.read_text() == reference_unit(), \
        "regenerate deploy/systemd/lightkeeper-agent.service from lightkeeper.cli.unit"
    text = SHIPPED.read_text()
    for line in ("Type=notify", "ExecReload=/bin/kill -HUP $MAINPID", "User=lightkeeper",
                 "NoNewPrivileges=yes", "ProtectSystem=strict", "WatchdogSec=",
                 "ReadWritePaths=/var/lib/lightkeeper /srv/lightrag /var/backups/lightkeeper"):
        assert line in text, line


@needs_analyze
def test_installed_unit_passes_systemd_analyze_verify(run_cli, lk_env: dict[str, str],
                                                      tmp_path: Path) -> None:
    out = tmp_path / "units" / "lightkeeper-agent.service"
    out.parent.mkdir()
    r = run_cli("--set", "log.level=debug", "agent", "install-unit", "--user", "lkagent",
                "--output", str(out))
    assert "systemctl daemon-reload" in r.stdout
    text = out.read_text()
    assert f"ExecStart={sys.executable} -m lightkeeper.cli.main" in text
    # this install's paths and settings, including those set by the environment
    assert lk_env["LIGHTKEEPER_PATHS__STATE_DIR"] in text
    assert lk_env["LIGHTKEEPER_PATHS__DATA_ROOT"] in text
    assert "--set log.level=debug" in text and "User=lkagent" in text
    v = subprocess.run(["systemd-analyze", "verify", str(out)], capture_output=True, text=True)
    assert v.returncode == 0, v.stdout + v.stderr
    assert "lightkeeper-agent.service" not in v.stdout + v.stderr  # no warning about it
    # the check is real: a unit whose command does not exist is refused
    broken = out.with_name("broken-agent.service")
    broken.write_text(text.replace(f"ExecStart={sys.executable}", "ExecStart=/nonexistent/py"))
    v = subprocess.run(["systemd-analyze", "verify", str(broken)], capture_output=True,
                       text=True)
    assert v.returncode != 0 and "not executable" in v.stdout + v.stderr
