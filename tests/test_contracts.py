"""Typed call contracts (lightkeeper/contracts): every call and job the agent serves declares
its request and response types, and real answers carry exactly the keys those types declare."""

from __future__ import annotations

import time
import typing
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints, is_typeddict

import pytest

from lightkeeper.agent import registry

# Jobs whose summaries are still plain dicts (built deep in backup/ and backup/zones/): this set
# may only shrink; a new job must declare its summary type.
UNTYPED_SUMMARIES: set[str] = set()


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
    assert untyped == UNTYPED_SUMMARIES


def _check(tp: Any, value: Any, where: str) -> None:
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
            _check(hints[k], v, f"{where}.{k}")
        return
    origin, args = get_origin(tp), get_args(tp)
    if origin is typing.NotRequired or origin is typing.Required:
        _check(args[0], value, where)
    elif origin is list and isinstance(value, list):
        for i, v in enumerate(value):
            _check(args[0], v, f"{where}[{i}]")
    elif origin is dict and isinstance(value, dict):
        for k, v in value.items():
            _check(args[1], v, f"{where}[{k!r}]")
    elif args and value is not None:  # a union: check against its declared members
        for member in args:
            if is_typeddict(member) or get_origin(member) in (list, dict):
                _check(member, value, where)
                return


def _response_type(name: str) -> Any:
    calls, _, _ = registry.load()
    return get_type_hints(calls[name])["return"]


@pytest.mark.parametrize("name, params", [
    ("store.stats", {}),
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
def test_answers_carry_exactly_the_declared_keys(agent: Any, lk_env: dict[str, str],
                                                 name: str, params: dict[str, Any]) -> None:
    (Path(lk_env["LIGHTKEEPER_PATHS__DATA_ROOT"]) / "alice").mkdir(exist_ok=True)
    answer = agent.client.call(name, **params)
    deadline = time.monotonic() + 30
    while name == "processes.list" and not answer["processes"] and time.monotonic() < deadline:
        time.sleep(0.2)  # the process collector's first round
        answer = agent.client.call(name, **params)
    tp = _response_type(name)
    assert answer is not None
    _check(tp, answer, name)
    if name == "processes.list":
        assert answer["processes"], "the agent lists itself"
    if name == "rag.users":
        assert [u["user"] for u in answer["users"]] == ["alice"]


def test_a_change_answers_with_the_declared_commit_keys(agent: Any) -> None:
    answer = agent.client.call("tuning.set", changes={"top_k": 50}, note="contract test")
    assert answer["changed"]
    _check(_response_type("tuning.set"), answer, "tuning.set")
    again = agent.client.call("tuning.set", changes={"top_k": 50}, note="same again")
    assert not again["changed"] and "message" in again
    _check(_response_type("tuning.set"), again, "tuning.set")
