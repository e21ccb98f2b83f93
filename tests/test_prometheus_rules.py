"""The Prometheus rules are generated from the agent's own rule declarations, with the
configuration's overrides; the shipped file is the output for the default configuration."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lightkeeper import config
from lightkeeper.agent.alerts import default_rules
from lightkeeper.agent.rules_export import export

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "deploy" / "prometheus"

pytestmark = pytest.mark.skipif(shutil.which("promtool") is None,
                                reason="promtool missing: scripts/test.sh installs prometheus")

OVERRIDE_TEST = """\
rule_files:
  - alerts.yml
evaluation_interval: 15s
tests:
  - interval: 15s
    input_series:
      - series: 'lightkeeper_disk_free_ratio{mount="/srv", instance="a", job="lightkeeper"}'
        values: '0.95x4 0.85x20'
    alert_rule_test:
      - eval_time: 45s
        alertname: LightkeeperDiskFreeLow
        exp_alerts: []
      - eval_time: 2m30s
        alertname: LightkeeperDiskFreeLow
        exp_alerts:
          - exp_labels: {severity: warning, rule: disk_free_low, mount: "/srv", instance: "a",
                         job: "lightkeeper"}
            exp_annotations:
              summary: "filesystem /srv has 85% free"
              description: "warning: lightkeeper_disk_free_ratio below 0.9 for 1m"
              runbook_url: "https://wiki.example.org/ops/lightkeeper#disk_free_low"
"""


def _default_cfg() -> config.Config:
    return config.load(env={}, read_system=False)


def test_shipped_rules_are_the_generator_output() -> None:
    assert (RULES / "alerts.yml").read_text() == export(_default_cfg()), \
        "regenerate: lightkeeper alerts export-rules -o deploy/prometheus/alerts.yml"


def test_check_rules() -> None:
    r = subprocess.run(["promtool", "check", "rules", "alerts.yml"], cwd=RULES,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


def test_rule_unit_tests() -> None:
    r = subprocess.run(["promtool", "test", "rules", "alerts_test.yml"], cwd=RULES,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_rules_cover_the_agents_alerts() -> None:
    """Every alert the agent evaluates is exported, with both levels and a runbook section."""
    text = (RULES / "alerts.yml").read_text()
    runbook = (ROOT / "docs" / "runbook.md").read_text()
    for rule in default_rules(_default_cfg()):
        assert f"alert: {rule.alertname}\n" in text, rule.name
        assert f"runbook.md#{rule.name}\"" in text, rule.name
        assert f"## {rule.name}\n" in runbook, rule.name
        for level in (rule.warning, rule.critical):
            if level is not None and rule.prom_expr:  # computed by Prometheus from /metrics
                assert json.dumps(rule.prom_expr)[1:-1] in text, rule.name
            elif level is not None:
                assert f"lightkeeper_{rule.metric.removeprefix('lightkeeper_')}" in text


def test_export_with_overridden_threshold_passes_promtool(tmp_path: Path) -> None:
    """With [alerts.disk_free_low] warning = 0.90 the exported rules fire at 85 % free, as the
    agent does; the shipped default rules do not (the bug this replaces)."""
    cfg_file = tmp_path / "config.toml"
    cfg_file.write_text('[alerts.disk_free_low]\nwarning = 0.90\n'
                        '[alerting]\nrunbook_base_url = "https://wiki.example.org/ops/lightkeeper"\n')
    out = tmp_path / "generated"
    out.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIGHTKEEPER_")}
    env.update(HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path / "xdg"))
    r = subprocess.run([sys.executable, "-m", "lightkeeper.cli.main", "--config", str(cfg_file),
                        "alerts", "export-rules", "-o", str(out / "alerts.yml")],
                       capture_output=True, text=True, env=env, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    (out / "test.yml").write_text(OVERRIDE_TEST)
    r = subprocess.run(["promtool", "check", "rules", "alerts.yml"], cwd=out,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run(["promtool", "test", "rules", "test.yml"], cwd=out,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    # the same unit test against the default rules fails: the threshold really moved
    default = tmp_path / "default"
    default.mkdir()
    shutil.copy(RULES / "alerts.yml", default / "alerts.yml")
    (default / "test.yml").write_text(OVERRIDE_TEST)
    r = subprocess.run(["promtool", "test", "rules", "test.yml"], cwd=default,
                       capture_output=True, text=True)
    assert r.returncode != 0


def test_disabled_rule_is_not_exported() -> None:
    cfg = config.load(overrides=[("alerts.cpu_high.enabled", "false")], env={},
                      read_system=False)
    assert "LightkeeperCpuHigh" not in export(cfg)
    assert "LightkeeperCpuHigh" in export(_default_cfg())
