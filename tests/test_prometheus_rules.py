"""The shipped Prometheus rules are valid and behave as their unit tests say."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

RULES = Path(__file__).resolve().parent.parent / "deploy" / "prometheus"

pytestmark = pytest.mark.skipif(shutil.which("promtool") is None,
                                reason="promtool missing: scripts/test.sh installs prometheus")


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
    """Every alert the agent evaluates has a Prometheus twin and a runbook entry."""
    from lightkeeper import config
    from lightkeeper.agent.alerts import default_rules

    text = (RULES / "alerts.yml").read_text()
    runbook = (RULES.parent.parent / "docs" / "runbook.md").read_text()
    for rule in default_rules(config.load(env={}, read_system=False)):
        assert rule.metric in text, rule.name
        assert f"docs/runbook.md#{rule.name}" in text, rule.name
        assert f"## {rule.name}" in runbook, rule.name
