"""Alert thresholds: pending, firing, severity change and resolution, in the store and live."""

from __future__ import annotations

import json
import os
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from lightkeeper import config
from lightkeeper.agent.alerts import AlertEvaluator, Rule, configured_rules, list_alerts
from lightkeeper.agent.store.db import Store
from tests.agent.spoolgen import record, spool_name

pytestmark = pytest.mark.slow  # started first: see tests/conftest.py


def test_evaluator_pending_firing_escalating_resolving(tmp_path: Path) -> None:
    store = Store(tmp_path / "m.duckdb")
    audits = []
    rule = Rule("disk_free_low", "disk_free_ratio", "below", 0.15, 0.05, 60, "{label} {value:.0%}")
    ev = AlertEvaluator([rule], store, lambda e, **kw: audits.append((e, kw)))
    t = 1000.0
    assert ev.evaluate({("disk_free_ratio", "/srv"): (t, 0.5)}, t) == []
    assert ev.evaluate({("disk_free_ratio", "/srv"): (t, 0.10)}, t + 10) == []  # pending
    assert list_alerts(store) == []
    changes = ev.evaluate({("disk_free_ratio", "/srv"): (t, 0.10)}, t + 75)
    assert changes == [{"rule": "disk_free_low", "label": "/srv", "change": "firing",
                        "severity": "warning"}]
    active = list_alerts(store)
    assert len(active) == 1 and active[0]["started"] == t + 10 and active[0]["ended"] is None
    assert active[0]["message"] == "/srv 10%"
    ev.evaluate({("disk_free_ratio", "/srv"): (t, 0.02)}, t + 80)
    ev.evaluate({("disk_free_ratio", "/srv"): (t, 0.02)}, t + 150)
    assert list_alerts(store)[0]["severity"] == "critical"
    changes = ev.evaluate({("disk_free_ratio", "/srv"): (t, 0.5)}, t + 200)
    assert changes[0]["change"] == "resolved"
    assert list_alerts(store) == []
    done = list_alerts(store, active=False)[0]
    assert done["ended"] == t + 200
    assert [e for e, _ in audits] == ["alert.firing", "alert.changed", "alert.resolved"]


def test_short_blip_does_not_fire(tmp_path: Path) -> None:
    store = Store(tmp_path / "m.duckdb")
    rule = Rule("cpu_high", "cpu_usage_ratio", "above", 0.9, None, 300, "{value}")
    ev = AlertEvaluator([rule], store, lambda *a, **k: None)
    ev.evaluate({("cpu_usage_ratio", ""): (0, 0.99)}, 0)
    ev.evaluate({("cpu_usage_ratio", ""): (0, 0.99)}, 200)
    ev.evaluate({("cpu_usage_ratio", ""): (0, 0.20)}, 250)
    ev.evaluate({("cpu_usage_ratio", ""): (0, 0.99)}, 400)
    assert list_alerts(store) == []


def test_the_state_of_series_that_are_gone_is_not_kept(tmp_path: Path) -> None:
    """Evaluated series come and go (a user's series for every user active at some time):
    the evaluator kept a state for each label it ever saw, growing with uptime. A series that
    is gone drops its state; one that comes back starts its pending time again."""
    store = Store(tmp_path / "m.duckdb")
    rule = Rule("silent", "rag_silent_seconds", "above", 600, None, 120, "{label}")
    ev = AlertEvaluator([rule], store, lambda *a, **k: None)
    for i in range(50):  # 50 users in turn, 10 at a time, each under the threshold
        now = 1000.0 + 60 * i
        ev.evaluate({("rag_silent_seconds", f"u{j}"): (now, 5.0) for j in range(i, i + 10)}, now)
        assert len(ev.state) <= 10
    ev.evaluate({("rag_silent_seconds", "u1"): (0, 900.0)}, 5000)  # pending
    ev.evaluate({}, 5100)  # gone
    ev.evaluate({("rag_silent_seconds", "u1"): (0, 900.0)}, 5150)  # back: pending again
    assert list_alerts(store) == []
    ev.evaluate({("rag_silent_seconds", "u1"): (0, 900.0)}, 5280)
    assert [a["label"] for a in list_alerts(store)] == ["u1"]


def test_overrides_from_config(lk_env: dict[str, str], tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text("[alerts.disk_free_low]\nwarning = 0.3\nfor_seconds = 5\n"
                 "[alerts.cpu_high]\nenabled = false\n")
    rules = {r.name: r for r in configured_rules(config.load(f))}
    assert rules["disk_free_low"].warning == 0.3 and rules["disk_free_low"].critical == 0.05
    assert rules["disk_free_low"].for_seconds == 5
    assert rules["cpu_high"].enabled is False
    f.write_text("[alerts.disk_full]\nwarning = 0.3\n")
    try:
        configured_rules(config.load(f))
    except config.ConfigError as exc:
        assert "unknown alert" in str(exc) and "disk_free_low" in str(exc)
    else:
        raise AssertionError("an unknown alert name must be refused")


def test_live_alert_fires_and_resolves(start_agent, run_cli, lk_env: dict[str, str]) -> None:
    """A LightRAG writer stops mid-line: ingestion lags, the alert fires; the line completes,
    the lag goes, the alert resolves. Watched through the CLI, as an operator would."""
    a = start_agent({"LIGHTKEEPER_ALERTS__INGEST_LAG__WARNING": "1",
                     "LIGHTKEEPER_ALERTS__INGEST_LAG__FOR_SECONDS": "0"})
    spool = a.cfg.path("paths.spool_dir")
    me = psutil.Process()
    f = spool / spool_name(os.getpid(), int(me.create_time()), 0)
    line = json.dumps(record(1)).encode()
    with open(f, "ab") as fh:
        fh.write(line[:30])

    def active() -> list[dict]:
        return json.loads(run_cli("alerts", "--json").stdout)

    deadline = time.monotonic() + 40
    while not any(x["rule"] == "ingest_lag" for x in active()):
        assert time.monotonic() < deadline, "ingest_lag never fired"
        time.sleep(1)
    assert run_cli("alerts", "--check", check=False).returncode == 4
    with open(f, "ab") as fh:
        fh.write(line[30:] + b"\n")
    deadline = time.monotonic() + 40
    while any(x["rule"] == "ingest_lag" for x in active()):
        assert time.monotonic() < deadline, "ingest_lag never resolved"
        time.sleep(1)
    history = json.loads(run_cli("alerts", "--all", "--json").stdout)
    done = [x for x in history if x["rule"] == "ingest_lag"]
    assert done and done[0]["ended"] is not None and done[0]["ended"] > done[0]["started"]
    events = [e["event"] for e in a.client.events(kind="alert")]
    assert "alert.firing" in events and "alert.resolved" in events


def test_backup_age_seeded_from_repository_and_alert(start_agent, run_cli,
                                                     lk_env: dict[str, str]) -> None:
    """After a restart the agent knows the newest backup's age from the repository, and the
    backup_stale alert fires when it is older than the threshold."""
    user = Path(lk_env["LIGHTKEEPER_PATHS__DATA_ROOT"]) / "alice"
    user.mkdir()
    (user / "kv_store_full_docs.json").write_text('{"doc-1": {"content": "hello"}}')
    a = start_agent()
    run_cli("backup", "run")
    a.stop()
    b = start_agent({"LIGHTKEEPER_ALERTS__BACKUP_STALE__WARNING": "1"})
    deadline = time.monotonic() + 30
    while True:
        latest = b.client.call("metrics.latest", metrics=["backup_age_seconds"])
        if latest.get("backup_age_seconds", {}).get("", 0) > 1:
            break
        assert time.monotonic() < deadline, latest
        time.sleep(0.5)
    deadline = time.monotonic() + 30
    while not any(x["rule"] == "backup_stale" for x in b.client.alerts()):
        assert time.monotonic() < deadline, "backup_stale never fired"
        time.sleep(1)


def test_drill_age_alert_from_repository(start_agent, run_cli, lk_env: dict[str, str]) -> None:
    """A repository that no drill ever proved: the drill age counts from its oldest snapshot,
    grows between reads with no new event (computed at read time), and backup_drill_stale
    fires past backup.drill_max_age_days (here overridden to about a second)."""
    user = Path(lk_env["LIGHTKEEPER_PATHS__DATA_ROOT"]) / "alice"
    user.mkdir()
    (user / "kv_store_full_docs.json").write_text('{"doc-1": {"content": "hello"}}')
    a = start_agent()
    run_cli("backup", "run")
    a.stop()
    b = start_agent({"LIGHTKEEPER_ALERTS__BACKUP_DRILL_STALE__WARNING": "1"})

    def age() -> float:
        latest = b.client.call("metrics.latest", metrics=["backup_drill_age_seconds"])
        return latest.get("backup_drill_age_seconds", {}).get("", -1.0)

    deadline = time.monotonic() + 30
    while age() < 0:
        assert time.monotonic() < deadline, "the drill age was never seeded"
        time.sleep(0.5)
    first = age()
    time.sleep(1.5)
    assert age() > first
    deadline = time.monotonic() + 30
    while not any(x["rule"] == "backup_drill_stale" for x in b.client.alerts()):
        assert time.monotonic() < deadline, "backup_drill_stale never fired"
        time.sleep(1)
    metrics = urllib.request.urlopen(b.http + "/metrics", timeout=10).read().decode()
    assert "lightkeeper_backup_drill_age_seconds " in metrics


def test_open_alerts_values_are_stored_in_one_statement_each_evaluation(tmp_path: Path) -> None:
    """Many open alerts whose values move: after every evaluation each stored row holds its
    alert's current value (one UPDATE for all of them; before, one per alert and evaluation:
    1.7 s with 1,000 open alerts), and an unchanged value is not written again."""
    store = Store(tmp_path / "m.duckdb")
    rule = Rule("rag_operations_stopped", "rag_silent_seconds", "above", 900.0, 3600.0, 0,
                "{label} {value:.0f}")
    ev = AlertEvaluator([rule], store, lambda *a, **k: None)
    t = 1000.0
    values = {f"u{i:03d}": 1000.0 + i for i in range(300)}
    for step in range(4):
        if step:
            values = {u: v + 60 * (i % 3) for i, (u, v) in enumerate(values.items())}
        ev.evaluate({("rag_silent_seconds", u): (t, v) for u, v in values.items()}, t + step)
        stored = {r["label"]: r["value"] for r in list_alerts(store, active=True, limit=1000)}
        assert stored == values
    assert [(st.alert_id, v) for st, v in ev._values] == [
        (ev.state[(rule.name, u)].alert_id, v) for i, (u, v) in enumerate(values.items()) if i % 3]


def test_snapshot_for_delivery_firing_escalated_and_resolved(tmp_path: Path) -> None:
    """What the agent pushes to Alertmanager: a level change ends the old level's alert (its
    labels differ), and a resolved alert stays reported for a while."""
    store = Store(tmp_path / "m.duckdb")
    rule = Rule("disk_free_low", "disk_free_ratio", "below", 0.15, 0.05, 0, "{label} {value:.0%}")
    ev = AlertEvaluator([rule], store, lambda *a, **k: None)
    t = 1000.0
    ev.evaluate({("disk_free_ratio", "/srv"): (t, 0.10)}, t)
    firing, resolved = ev.snapshot(t)
    assert [(a["severity"], a["message"]) for a in firing] == [("warning", "/srv 10%")]
    assert resolved == []
    v = ev.version
    ev.evaluate({("disk_free_ratio", "/srv"): (t, 0.02)}, t + 5)
    firing, resolved = ev.snapshot(t + 5)
    assert [(a["severity"], a["message"]) for a in firing] == [("critical", "/srv 2%")]
    assert [(a["severity"], a["ended"]) for a in resolved] == [("warning", t + 5)]
    assert ev.version > v
    ev.evaluate({("disk_free_ratio", "/srv"): (t, 0.5)}, t + 10)
    firing, resolved = ev.snapshot(t + 10)
    assert firing == [] and {a["severity"] for a in resolved} == {"warning", "critical"}
    assert ev.snapshot(t + 10 + 16 * 60)[1] == []  # delivered long enough: forgotten


def test_disabled_rule_resolves_and_is_still_delivered(tmp_path: Path) -> None:
    store = Store(tmp_path / "m.duckdb")
    rule = Rule("cpu_high", "cpu_usage_ratio", "above", 0.9, None, 0, "{value:.0%}")
    ev = AlertEvaluator([rule], store, lambda *a, **k: None)
    ev.evaluate({("cpu_usage_ratio", ""): (0, 0.99)}, 10)
    assert list_alerts(store)
    ev.set_rules([Rule("cpu_high", "cpu_usage_ratio", "above", 0.9, None, 0, "{value:.0%}",
                       enabled=False)])
    assert list_alerts(store) == []
    firing, resolved = ev.snapshot()
    assert firing == [] and resolved[0]["definition"] == rule  # its resolve can still be sent
