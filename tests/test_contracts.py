"""Typed call contracts (lightkeeper/contracts): every call and job the agent serves declares
its request and response types, and real answers carry exactly the keys those types declare."""

from __future__ import annotations

import time
import typing
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints, is_typeddict

import pytest

from lightkeeper.agent import registry


def _declared(tp: Any) -> bool:
    """A TypedDict, or a list/dict of declared types (or of plain scalars)."""
    if is_typeddict(tp) or tp in (str, int, float, bool):
        return True
    origin = get_origin(tp)
    return origin in (list, dict) and all(_declared(a) for a in get_args(tp))


def test_every_call_and_job_declares_its_request_and_response_types() -> None:
    calls, jobs, _ = registry.load()
    assert calls and jobs
    untyped = set()
    for name, fn in [*calls.items(), *jobs.items()]:
        hints = get_type_hints(fn)
        assert is_typeddict(hints["params"]), f"{name}: params is {hints['params']}"
        if not _declared(hints["return"]):
            untyped.add(name)
    assert not untyped, f"answers without a declared type: {sorted(untyped)}"


def check_answer(tp: Any, value: Any, where: str) -> None:
    """``value`` has every required key of TypedDict ``tp`` and no key it does not declare;
    nested declared values are checked the same way."""
    if is_typeddict(tp):
        assert isinstance(value, dict), where
        keys = set(value)
        missing = tp.__required_keys__ - keys
        extra = keys - tp.__required_keys__ - tp.__optional_keys__
        assert not missing and not extra, f"{where}: missing {missing}, undeclared {extra}"
        hints = get_type_hints(tp)
        for k, v in value.items():
            check_answer(hints[k], v, f"{where}.{k}")
        return
    origin, args = get_origin(tp), get_args(tp)
    if origin is typing.NotRequired or origin is typing.Required:
        check_answer(args[0], value, where)
    elif origin is list and isinstance(value, list):
        for i, v in enumerate(value):
            check_answer(args[0], v, f"{where}[{i}]")
    elif origin is dict and isinstance(value, dict):
        for k, v in value.items():
            check_answer(args[1], v, f"{where}[{k!r}]")
    elif args and value is not None:  # a union: check against its declared members
        for member in args:
            if is_typeddict(member) or get_origin(member) in (list, dict):
                check_answer(member, value, where)
                return


def response_type(name: str) -> Any:
    calls, _, _ = registry.load()
    return get_type_hints(calls[name])["return"]


def summary_type(kind: str) -> Any:
    _, jobs, _ = registry.load()
    return get_type_hints(jobs[kind])["return"]


def run_job(client: Any, kind: str, params: dict[str, Any], state: str = "succeeded"
            ) -> dict[str, Any]:
    """Run a job in the agent; its summary, checked against the job's declared type."""
    job = client.wait_job(client.start_job(kind, params), timeout=300)
    assert job["state"] == state, job
    check_answer(summary_type(kind), job["summary"], f"job {kind}")
    return job["summary"]


@pytest.mark.parametrize("name, params", [
    ("store.stats", {}),
    ("agent.modules", {}),
    ("processes.list", {}),
    ("rag.users", {}),
    ("rag.latency", {"window": "1h"}),
    ("rag.summary", {"window": "1h"}),
    ("metrics.series", {"metric": "cpu_usage_ratio", "window": "5m"}),
    ("tuning.show", {}),
    ("tuning.history", {}),
    ("tuning.params", {}),
    ("tuning.validate", {"changes": {"top_k": 50}}),
    ("tuning.export_env", {}),
    ("zones.list", {}),
])
def test_answers_carry_exactly_the_declared_keys(module_agent: Any, name: str,
                                                 params: dict[str, Any]) -> None:
    # read-only calls (tuning.validate commits nothing): one agent answers them all
    agent = module_agent
    (Path(agent.env["LIGHTKEEPER_PATHS__DATA_ROOT"]) / "alice").mkdir(exist_ok=True)
    answer = agent.client.call(name, **params)
    deadline = time.monotonic() + 30
    while name == "processes.list" and not answer["processes"] and time.monotonic() < deadline:
        time.sleep(0.2)  # the process collector's first round
        answer = agent.client.call(name, **params)
    tp = response_type(name)
    assert answer is not None
    check_answer(tp, answer, name)
    if name == "processes.list":
        assert answer["processes"], "the agent lists itself"
    if name == "rag.users":
        assert [u["user"] for u in answer["users"]] == ["alice"]


def test_a_change_answers_with_the_declared_commit_keys(agent: Any) -> None:
    answer = agent.client.call("tuning.set", changes={"top_k": 50}, note="contract test")
    assert answer["changed"]
    check_answer(response_type("tuning.set"), answer, "tuning.set")
    again = agent.client.call("tuning.set", changes={"top_k": 50}, note="same again")
    assert not again["changed"] and "message" in again
    check_answer(response_type("tuning.set"), again, "tuning.set")


def test_backup_answers_and_job_summaries_carry_the_declared_keys(
        agent: Any, lk_env: dict[str, str], tmp_path: Path) -> None:
    """A real repository of real files: the backup package's calls and the summaries of its
    jobs (the repository's first answers, and once verify and a drill have run) against the
    declared types."""
    from tests.datacopy import generated

    client = agent.client
    data_root = Path(lk_env["LIGHTKEEPER_PATHS__DATA_ROOT"])
    generated(data_root, users=2, seed=10, total_mb=1)

    def call(name: str, **params: Any) -> dict[str, Any]:
        answer = client.call(name, **params)
        check_answer(response_type(name), answer, name)
        return answer

    first = run_job(client, "backup", {"tags": ["contract"]})
    assert first["files"] > 0 and first["bytes_added"] > 0
    assert call("backup.stats", )["verified"] is None
    (data_root / "user00" / "more.txt").write_text("a change for the second snapshot\n")
    second = run_job(client, "backup", {})
    snaps = call("backup.snapshots")["snapshots"]
    assert [s["id"] for s in snaps] == [first["snapshot_id"], second["snapshot_id"]]
    assert snaps[0]["summary"]["bytes_added_data"] > snaps[1]["summary"]["bytes_added_data"]
    shown = call("backup.show", snapshot=second["short_id"], files=True)
    assert shown["file_count"] == len(shown["files"]) == second["files"]
    call("backup.key_export")
    verified = run_job(client, "verify", {"full": True})
    assert verified["ok"] and verified["snapshots_ok"]
    restored = run_job(client, "restore", {"snapshot": first["snapshot_id"],
                                           "target": str(tmp_path / "restored")})
    assert restored["files"] == first["files"] and "failures" not in restored
    drilled = run_job(client, "drill", {"users": 1, "no_lightrag": True})
    assert drilled["ok"] and len(drilled["per_user"]) == 1
    stats = call("backup.stats")
    assert stats["verified"] and stats["verified"]["newest_verified"] == second["snapshot_id"]
    assert stats["drill"] and stats["drill"]["last_success"] == stats["drill"]["last"]
    plan = run_job(client, "forget", {"keep_last": 1, "dry_run": True, "prune": True})
    assert plan["removed_count"] == 1 and "prune" in plan
    run_job(client, "prune", {"dry_run": True})
