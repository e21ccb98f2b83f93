"""Low findings of issue #11 about input checks: ids anchored with `$`, tracebacks instead of
clean errors, API parameters that reached DuckDB unchecked."""

from __future__ import annotations

import pytest

from lightkeeper.client import AgentError
from lightkeeper.ids import USER_ID_RE, InvalidUserId, user_dir, validate_user_id


@pytest.mark.parametrize("bad", ["alice\n", "alice\n\n", "a\nb", "alice/..", "Alice", "", "-a"])
def test_low_validate_user_id_uses_fullmatch(bad: str, tmp_path) -> None:
    """`$` also matches before a final newline: 'alice\\n' passed and became a directory name."""
    with pytest.raises(InvalidUserId):
        validate_user_id(bad)
    with pytest.raises(InvalidUserId):
        user_dir(tmp_path, bad)
    assert USER_ID_RE.match(bad) is None  # the shared pattern is safe with .match too


def test_low_same_dollar_anchored_patterns_use_fullmatch_everywhere() -> None:
    from lightkeeper.agent import scheduler
    from lightkeeper.backup import snapshot

    with pytest.raises(snapshot.BackupError):
        snapshot._check_name("sqlite", "app\n")
    assert snapshot.SOURCE_NAME.match("app\n") is None
    assert scheduler.EVERY_RE.match("every 5m\n") is None
    assert scheduler.DAILY_AT_RE.match("daily 03:00\n") is None


def test_low_set_without_equals_is_a_usage_error(run_cli) -> None:
    r = run_cli("--set", "backup.keep_last", "config", "show", check=False)
    assert r.returncode == 2, r.stderr
    assert "--set expects KEY=VALUE, got 'backup.keep_last'" in r.stderr
    assert "Traceback" not in r.stderr


BAD_QUERIES = [
    ("/v1/events", {"limit": -1}, "limit must be between 1 and 5000"),
    ("/v1/events", {"limit": 0}, "limit must be between 1 and 5000"),
    ("/v1/events", {"since": -5}, "since must be between 0"),
    ("/v1/events", {"limit": "9" * 30}, "limit must be between"),
    ("/v1/alerts", {"limit": -5}, "limit must be between 1 and 5000"),
    ("/v1/alerts", {"limit": "x"}, "limit must be an integer"),
    ("/v1/jobs", {"limit": -1}, "limit must be between"),
    ("/v1/series", {"metric": "cpu_usage_ratio", "step": "0"}, "step must be a number between"),
    ("/v1/series", {"metric": "cpu_usage_ratio", "step": "nan"}, "step must be a number between"),
    ("/v1/series", {"metric": "cpu_usage_ratio", "step": "-inf"}, "step must be a number between"),
    ("/v1/series", {"metric": "cpu_usage_ratio", "step": "1", "window": "7d"},
     "more than 20000 points"),
]

BAD_CALLS = [
    ("rag.latency", {"step": "1) AS b FROM rag_ops; SELECT (1"}, "invalid step"),
    ("rag.latency", {"step": 0.001}, "invalid step"),
    ("metrics.series", {"metric": "x", "step": "1e309"}, "invalid step"),
    ("rag.top_users", {"limit": -1}, "limit must be between"),
    ("rag.slowest", {"limit": "ten"}, "limit must be an integer"),
    ("rag.summary", {"tuning_version": "v1"}, "tuning_version must be an integer"),
    ("rag.compare_versions", {"a": 1, "b": 2.5}, "b must be an integer"),
    ("bench.runs", {"limit": -1}, "limit must be between"),
    ("bench.record", {"ts": "nan"}, "ts must be a number"),
    ("spool.quarantine", {"limit": -1}, "limit must be between"),
    ("rag.latency", {"user": ["a"]}, "user must be a string"),
    ("backup.snapshots", {"limit": -1}, "limit must be between 0 and"),
]


def test_low_api_numeric_parameters_are_checked(agent) -> None:
    """On main `/v1/events?limit=-1` and `/v1/alerts?limit=-5` answered 500 with DuckDB's
    binder text, and a call's `step` was formatted into SQL unchecked."""
    for path, params, message in BAD_QUERIES:
        with pytest.raises(AgentError) as info:
            agent.client.get(path, **params)
        assert info.value.status == 400, (path, params, str(info.value))
        assert message in str(info.value), (path, params, str(info.value))
    for name, params, message in BAD_CALLS:
        with pytest.raises(AgentError) as info:
            agent.client.call(name, **params)
        assert info.value.status == 400, (name, params, str(info.value))
        assert message in str(info.value), (name, params, str(info.value))
    # a job's numeric parameters too: an infinite jitter would hold a backup forever
    job_id = agent.client.start_job("backup", {"jitter_s": "inf"})
    final = agent.client.wait_job_change(job_id, -1, timeout=15)
    while final["state"] in ("queued", "running"):
        final = agent.client.wait_job_change(job_id, final.get("version", -1), timeout=15)
    assert final["state"] == "failed" and "jitter_s must be a number" in (final["error"] or "")
    # the good forms still answer
    assert isinstance(agent.client.get("/v1/events", limit=1), list)
    assert isinstance(agent.client.get("/v1/alerts", limit=5), list)
    assert agent.client.call("rag.latency", step=60)["step"] == 60
    assert "rows" in agent.client.call("rag.compare_versions", a=1, b=2)


def test_low_cli_shows_agent_refusals_without_traceback(agent, run_cli) -> None:
    r = run_cli("events", "--limit", "-1", check=False)
    assert r.returncode == 2 and "limit must be between" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
