"""The parameter model against the installed LightRAG, and every bound and cross-field rule."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

import lightrag
import pytest
from lightrag import LightRAG, QueryParam, constants

from lightkeeper.tuning.params import (
    BY_NAME,
    EFFECTS,
    PARAMS,
    defaults,
    lightrag_kwargs,
    query_param_kwargs,
)
from lightkeeper.tuning.tuningset import TuningSet
from lightkeeper.tuning.validate import TuningError, coerce

LIGHTRAG_SRC = Path(lightrag.__file__).parent


def test_required_parameters_are_modelled():
    required = {"chunk_token_size", "chunk_overlap_token_size", "entity_extract_max_gleaning",
                "embedding_batch_num", "embedding_func_max_async", "embedding_model",
                "embedding_dim", "llm_model_max_async", "max_parallel_insert", "top_k",
                "chunk_top_k", "max_entity_tokens", "max_relation_tokens", "max_total_tokens",
                "cosine_better_than_threshold", "related_chunk_number", "max_graph_nodes",
                "graph_max_depth", "enable_llm_cache", "summary_max_tokens", "query_mode"}
    assert required <= set(BY_NAME)
    for p in PARAMS:
        assert p.effect in EFFECTS
        assert p.meaning and p.source


def test_defaults_are_lightrags_own():
    expected = {
        "top_k": constants.DEFAULT_TOP_K, "chunk_top_k": constants.DEFAULT_CHUNK_TOP_K,
        "max_entity_tokens": constants.DEFAULT_MAX_ENTITY_TOKENS,
        "max_relation_tokens": constants.DEFAULT_MAX_RELATION_TOKENS,
        "max_total_tokens": constants.DEFAULT_MAX_TOTAL_TOKENS,
        "cosine_better_than_threshold": constants.DEFAULT_COSINE_THRESHOLD,
        "related_chunk_number": constants.DEFAULT_RELATED_CHUNK_NUMBER,
        "max_graph_nodes": constants.DEFAULT_MAX_GRAPH_NODES,
        "entity_extract_max_gleaning": constants.DEFAULT_MAX_GLEANING,
        "summary_max_tokens": constants.DEFAULT_SUMMARY_MAX_TOKENS,
        "summary_context_size": constants.DEFAULT_SUMMARY_CONTEXT_SIZE,
        "summary_length_recommended": constants.DEFAULT_SUMMARY_LENGTH_RECOMMENDED,
        "force_llm_summary_on_merge": constants.DEFAULT_FORCE_LLM_SUMMARY_ON_MERGE,
        "embedding_batch_num": constants.DEFAULT_EMBEDDING_BATCH_NUM,
        "embedding_func_max_async": constants.DEFAULT_EMBEDDING_FUNC_MAX_ASYNC,
        "llm_model_max_async": constants.DEFAULT_MAX_ASYNC,
        "max_parallel_insert": constants.DEFAULT_MAX_PARALLEL_INSERT,
        "kg_chunk_pick_method": constants.DEFAULT_KG_CHUNK_PICK_METHOD,
        "query_mode": QueryParam().mode,
        "graph_max_depth": inspect.signature(LightRAG.get_knowledge_graph)
        .parameters["max_depth"].default,
    }
    fields = {f.name: f for f in dataclasses.fields(LightRAG)}
    expected["enable_llm_cache"] = fields["enable_llm_cache"].default
    expected["enable_llm_cache_for_entity_extract"] = \
        fields["enable_llm_cache_for_entity_extract"].default
    d = defaults()
    for name, value in expected.items():
        assert d[name] == value, name
    # chunk sizes: LightRAG resolves None to CHUNK_SIZE / CHUNK_OVERLAP_SIZE with these defaults
    src = (LIGHTRAG_SRC / "lightrag.py").read_text()
    assert '_chunk_env_int("CHUNK_SIZE", 1200)' in src and d["chunk_token_size"] == 1200
    assert '_chunk_env_int("CHUNK_OVERLAP_SIZE", 100)' in src and \
        d["chunk_overlap_token_size"] == 100


def test_mapping_targets_exist_in_lightrag():
    fields = {f.name for f in dataclasses.fields(LightRAG)}
    qfields = {f.name for f in dataclasses.fields(QueryParam)}
    for p in PARAMS:
        if p.lightrag_field:
            assert p.lightrag_field in fields, p.name
        if p.query_param:
            assert p.query_param in qfields, p.name
    assert set(lightrag_kwargs(defaults())) <= fields
    QueryParam(**query_param_kwargs(defaults()))  # accepted as is
    server = (LIGHTRAG_SRC / "api" / "config.py").read_text() + \
        (LIGHTRAG_SRC / "lightrag.py").read_text()
    for p in PARAMS:
        if p.env:
            assert f'"{p.env}"' in server, p.env


def _ok(name, value):
    return coerce(BY_NAME[name], value)


def _refused(name, value):
    with pytest.raises(ValueError) as info:
        coerce(BY_NAME[name], value)
    return str(info.value)


@pytest.mark.parametrize("param", [p for p in PARAMS if p.type == "int"], ids=lambda p: p.name)
def test_int_bounds(param):
    assert _ok(param.name, int(param.min)) == param.min
    assert _ok(param.name, str(int(param.max))) == param.max
    assert "smaller than" in _refused(param.name, int(param.min) - 1)
    assert "larger than" in _refused(param.name, int(param.max) + 1)
    assert "expected an integer" in _refused(param.name, "twelve")
    assert "not a whole number" in _refused(param.name, param.min + 0.5)
    _refused(param.name, True)


@pytest.mark.parametrize("param", [p for p in PARAMS if p.type == "float"], ids=lambda p: p.name)
def test_float_bounds(param):
    assert _ok(param.name, param.min) == param.min
    assert _ok(param.name, str(param.max)) == param.max
    assert "smaller than" in _refused(param.name, param.min - 0.01)
    assert "larger than" in _refused(param.name, param.max + 0.01)
    assert "finite" in _refused(param.name, "nan")
    _refused(param.name, "high")


@pytest.mark.parametrize("param", [p for p in PARAMS if p.type == "bool"], ids=lambda p: p.name)
def test_bool_values(param):
    assert _ok(param.name, "false") is False
    assert _ok(param.name, "ON") is True
    assert _ok(param.name, True) is True
    assert "true or false" in _refused(param.name, "maybe")
    _refused(param.name, 1)


@pytest.mark.parametrize("param", [p for p in PARAMS if p.type == "str"], ids=lambda p: p.name)
def test_str_values(param):
    if param.choices:
        for choice in param.choices:
            assert _ok(param.name, choice) == choice
            assert _ok(param.name, choice.swapcase()) == choice
        assert "one of" in _refused(param.name, "sideways")
    else:
        assert _ok(param.name, " text-embedding-3-small ") == "text-embedding-3-small"
        assert "control" in _refused(param.name, "a\nb")
        assert "256" in _refused(param.name, "x" * 300)
    _refused(param.name, 3)


def test_unknown_parameter_suggests_the_name():
    with pytest.raises(TuningError) as info:
        TuningSet().with_changes({"chunk_size": 600})
    assert "chunk_size" in info.value.errors
    assert "did you mean 'chunk_token_size'" in info.value.errors["chunk_size"]


@pytest.mark.parametrize("changes, field, words", [
    ({"chunk_overlap_token_size": 1200}, "chunk_overlap_token_size", "smaller than chunk_token"),
    ({"chunk_token_size": 100}, "chunk_overlap_token_size", "smaller than chunk_token"),
    ({"max_entity_tokens": 20000, "max_relation_tokens": 10000}, "max_total_tokens",
     "must exceed max_entity_tokens + max_relation_tokens = 30000"),
    ({"max_total_tokens": 14000}, "max_total_tokens", "= 14000"),
    ({"summary_length_recommended": 1500}, "summary_length_recommended",
     "must not exceed summary_max_tokens"),
    ({"summary_max_tokens": 13000}, "summary_max_tokens", "summary_context_size"),
    ({"summary_context_size": 31000}, "summary_context_size", "max_total_tokens"),
])
def test_cross_field_rules(changes, field, words):
    with pytest.raises(TuningError) as info:
        TuningSet().with_changes(changes)
    assert field in info.value.errors
    assert words in info.value.errors[field]


def test_cross_field_rules_pass_at_their_edge():
    t = TuningSet().with_changes({"chunk_overlap_token_size": 1199,
                                  "max_entity_tokens": 10000, "max_relation_tokens": 19999,
                                  "summary_length_recommended": 1200,
                                  "summary_context_size": 30000})
    assert t.params["chunk_overlap_token_size"] == 1199


def test_cross_field_rules_apply_to_each_users_effective_set():
    t = TuningSet().with_changes({"chunk_token_size": 600}, user="alice")
    with pytest.raises(TuningError) as info:
        t.with_changes({"chunk_token_size": 90})  # global is fine, alice's override is not
    assert "chunk_overlap_token_size" in info.value.errors
    with pytest.raises(TuningError) as info:
        t.with_changes({"chunk_overlap_token_size": 700})
    assert "users.alice.chunk_overlap_token_size" in info.value.errors


def test_every_error_is_reported_at_once():
    new, errors = TuningSet().try_changes({"top_k": "0", "chunk_overlap_token_size": 5000,
                                           "bogus": 1})
    assert set(errors) == {"top_k", "chunk_overlap_token_size", "bogus"}


def test_cross_field_errors_also_mark_the_edited_fields():
    _, errors = TuningSet().try_changes({"max_entity_tokens": 20000,
                                         "max_relation_tokens": 10000})
    assert set(errors) == {"max_total_tokens", "max_entity_tokens", "max_relation_tokens"}
    _, errors = TuningSet().try_changes({"chunk_token_size": 90}, user="alice")
    assert set(errors) == {"users.alice.chunk_overlap_token_size",
                           "users.alice.chunk_token_size"}
