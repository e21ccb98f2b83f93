"""Versions in a real DuckDB store through tuning.calls: set, show, diff, revert, history."""

from __future__ import annotations

import pytest

from lightkeeper.services import CallError
from lightkeeper.tuning import calls, versions
from lightkeeper.tuning.activefile import read_active, read_active_set, write_active
from lightkeeper.tuning.params import defaults
from lightkeeper.tuning.tuningset import TuningSet


def _file(services):
    return services.cfg.path("paths.tuning_file")


def test_first_use_records_defaults_as_version_1_and_writes_the_file(services):
    doc = calls.show(services, {})
    assert doc["version"] == 1 and doc["source"] == "initial"
    assert {r["name"]: r["value"] for r in doc["params"]} == defaults()
    assert all(r["origin"] == "default" for r in doc["params"])
    assert doc["file_state"] == "in_sync"
    assert read_active(_file(services)) == (1, defaults())
    assert [a["event"] for a in services.audits] == ["tuning.initialized"]


def test_first_use_adopts_an_existing_valid_file(services):
    write_active(_file(services), None, TuningSet().with_changes({"top_k": 55}))
    v = calls.ensure_initialized(services)
    assert v.version == 1 and v.tuning.params["top_k"] == 55
    assert "existing active file" in v.note


def test_set_diff_revert_round_trip(services):
    r1 = calls.set_params(services, {"changes": {"chunk_token_size": "600", "top_k": "60"},
                                     "note": "smaller chunks", "actor": "ops@box"})
    assert r1["changed"] and r1["version"] == 2 and r1["previous"] == 1
    assert {r["key"]: (r["old"], r["new"], r["effect"]) for r in r1["diff"]} == {
        "chunk_token_size": (1200, 600, "new_documents"), "top_k": (40, 60, "next_operation")}
    r2 = calls.set_params(services, {"changes": {"llm_model_max_async": 8},
                                     "note": "more LLM concurrency"})
    assert r2["version"] == 3 and r2["diff"][0]["effect"] == "restart"
    assert read_active(_file(services))[0] == 3

    d = calls.diff_call(services, {"a": 1, "b": 3})
    assert [(r["key"], r["change"]) for r in d["rows"]] == [
        ("chunk_token_size", "changed"), ("llm_model_max_async", "changed"),
        ("top_k", "changed")]
    back = calls.diff_call(services, {"a": 3, "b": 1})
    assert [(r["old"], r["new"]) for r in back["rows"]] == \
        [(r["new"], r["old"]) for r in d["rows"]]

    rv = calls.revert(services, {"version": 1, "note": "p95 doubled", "actor": "ops@box"})
    assert rv["version"] == 4
    v4 = versions.get(services.store, 4)
    assert v4.reverted_from == 1 and v4.source == "revert" and v4.actor == "ops@box"
    assert v4.tuning == versions.get(services.store, 1).tuning
    assert calls.diff_call(services, {"a": 1, "b": 4})["rows"] == []
    assert read_active(_file(services)) == (4, defaults())
    # revert of a revert: back to version 3's content as version 5
    calls.revert(services, {"version": 3, "note": "it was fine after all"})
    assert calls.diff_call(services, {"a": 3, "b": 5})["rows"] == []

    changed = [a for a in services.audits if a["event"] == "tuning.changed"]
    assert [a["version"] for a in changed] == [2, 3, 4, 5]
    assert changed[0]["actor"] == "ops@box" and changed[0]["note"] == "smaller chunks"
    assert "chunk_token_size: 1200 -> 600" in changed[0]["changes"]
    stored = services.store.events(kind="audit", search="tuning.changed")
    assert len(stored) == 4


def test_history_lists_what_each_version_changed(services):
    calls.set_params(services, {"changes": {"top_k": 50}, "note": "a"})
    calls.set_params(services, {"changes": {"top_k": 70}, "note": "b", "user": "alice"})
    calls.revert(services, {"version": 1, "note": "c"})
    rows = calls.history(services, {})["versions"]
    assert [r["version"] for r in rows] == [4, 3, 2, 1]
    assert rows[0]["reverted_from"] == 1
    assert rows[0]["changes"] == ["top_k", "users.alice.top_k"]
    assert rows[1]["changes"] == ["users.alice.top_k"]
    assert calls.history(services, {"limit": 2})["versions"][-1]["version"] == 3


def test_per_user_overrides_show_effective_value_and_origin(services):
    calls.set_params(services, {"changes": {"top_k": 60}, "note": "global"})
    calls.set_params(services, {"changes": {"top_k": 80, "query_mode": "local"},
                                "note": "alice is special", "user": "alice"})
    rows = {r["name"]: r for r in calls.show(services, {"user": "alice"})["params"]}
    assert (rows["top_k"]["value"], rows["top_k"]["origin"]) == (80, "user:alice")
    assert (rows["query_mode"]["value"], rows["query_mode"]["origin"]) == ("local", "user:alice")
    assert (rows["chunk_top_k"]["value"], rows["chunk_top_k"]["origin"]) == (20, "default")
    bob = {r["name"]: r for r in calls.show(services, {"user": "bob"})["params"]}
    assert (bob["top_k"]["value"], bob["top_k"]["origin"]) == (60, "global")
    assert read_active(_file(services), "alice")[1]["top_k"] == 80
    assert read_active(_file(services), "bob")[1]["top_k"] == 60
    # 'default' removes the override; the user then follows the global value again
    r = calls.set_params(services, {"changes": {"top_k": "default"}, "note": "drop",
                                    "user": "alice"})
    assert r["diff"][0]["change"] == "removed"
    rows = {r["name"]: r for r in calls.show(services, {"user": "alice"})["params"]}
    assert (rows["top_k"]["value"], rows["top_k"]["origin"]) == (60, "global")


@pytest.mark.parametrize("params, words", [
    ({"changes": {"top_k": "0"}, "note": "x"}, "top_k: 0 is not allowed (smaller than 1)"),
    ({"changes": {"chunk_overlap_token_size": 1500}, "note": "x"}, "must be smaller than"),
    ({"changes": {"top_k": 5}}, "note saying why is required"),
    ({"changes": {"top_k": 5}, "note": "   "}, "note saying why is required"),
    ({"changes": {}, "note": "x"}, "non-empty mapping"),
    ({"changes": {"top_k": 5}, "note": "x", "user": "../etc"}, "invalid user id"),
    ({"changes": {"topk": 5}, "note": "x"}, "did you mean 'top_k'"),
])
def test_bad_changes_are_refused_and_change_nothing(services, params, words):
    calls.ensure_initialized(services)
    before = _file(services).read_bytes()
    with pytest.raises(CallError) as info:
        calls.set_params(services, params)
    assert words in str(info.value)
    assert versions.latest(services.store).version == 1
    assert _file(services).read_bytes() == before


def test_setting_the_current_values_records_nothing(services):
    r = calls.set_params(services, {"changes": {"top_k": 40}, "note": "same"})
    assert r["changed"] is False and r["version"] == 1
    assert versions.latest(services.store).version == 1


def test_unknown_versions_are_reported(services):
    with pytest.raises(CallError) as info:
        calls.diff_call(services, {"a": 1, "b": 9})
    assert info.value.status == 404 and "versions are 1..1" in str(info.value)
    with pytest.raises(CallError):
        calls.revert(services, {"version": 7, "note": "x"})
    with pytest.raises(CallError, match="must be a version number"):
        calls.diff_call(services, {"a": "one"})


def test_validate_reports_every_field_without_applying(services):
    r = calls.validate_call(services, {"changes": {"top_k": "x", "chunk_overlap_token_size":
                                                   "5000", "max_parallel_insert": 2}})
    assert r["ok"] is False
    assert set(r["errors"]) == {"top_k", "chunk_overlap_token_size"}
    ok = calls.validate_call(services, {"changes": {"max_parallel_insert": 8}})
    assert ok["ok"] is True and ok["errors"] == {}
    assert "max_parallel_insert" in ok["warnings"]  # 8 inserts share 4 LLM slots
    assert ok["diff"][0]["effect"] == "restart"
    assert versions.latest(services.store).version == 1


def test_params_call_describes_the_model(services):
    doc = calls.params_call(services, {})
    by = {p["name"]: p for p in doc["params"]}
    assert by["chunk_token_size"]["effect"] == "new_documents"
    assert by["chunk_token_size"]["env"] == "CHUNK_SIZE"
    assert by["top_k"]["allowed"] == "an integer from 1 to 1000"
    assert by["query_mode"]["choices"] == ["local", "global", "hybrid", "naive", "mix", "bypass"]
    assert set(doc["effects"]) == {"next_operation", "new_documents", "restart", "rebuild"}


def test_version_call_returns_the_full_set(services):
    calls.set_params(services, {"changes": {"top_k": 33}, "note": "x", "user": "carol"})
    doc = calls.version_call(services, {"version": 2})
    assert doc["tuning"]["users"] == {"carol": {"top_k": 33}}
    assert TuningSet.from_json(doc["tuning"]) == read_active_set(_file(services))[1]


def test_a_store_failure_leaves_file_and_history_agreeing(services):
    calls.set_params(services, {"changes": {"top_k": 45}, "note": "first"})
    path = _file(services)
    before = read_active(path)
    # a real constraint in the real store makes the next insert fail after the file was written
    services.store.execute("CREATE UNIQUE INDEX tuning_note_once ON tuning_versions(note)")
    with pytest.raises(Exception, match="[Cc]onstraint|[Dd]uplicate"):
        calls.set_params(services, {"changes": {"top_k": 46}, "note": "first"})
    assert versions.latest(services.store).version == 2
    assert read_active(path) == before
    assert calls.on_active_file_changed(services)["state"] == "unchanged"
