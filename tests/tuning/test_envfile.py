"""export-env / import-env: LightRAG server names, read back by us and by the server's reader."""

from __future__ import annotations

import pytest
from dotenv import dotenv_values
from lightrag.utils import get_env_value

from lightkeeper import config
from lightkeeper.agent.store.db import Store
from lightkeeper.services import CallError
from lightkeeper.tuning import calls, versions
from lightkeeper.tuning.envfile import export_env, parse_env
from lightkeeper.tuning.params import PARAMS, defaults
from lightkeeper.tuning.validate import TuningError
from tests.tuning.tuning_services import LocalServices

CHANGES = {"chunk_token_size": 600, "chunk_overlap_token_size": 50, "top_k": 60,
           "chunk_top_k": 10, "cosine_better_than_threshold": 0.35,
           "llm_model_max_async": 8, "max_graph_nodes": 500, "embedding_dim": 384,
           "embedding_model": "all-minilm-l6-v2", "enable_llm_cache": False,
           "kg_chunk_pick_method": "WEIGHT", "max_total_tokens": 40000}


def test_export_names_match_lightrag_server(services):
    calls.set_params(services, {"changes": CHANGES, "note": "tuned"})
    text = calls.export_env_call(services, {})["text"]
    assert "CHUNK_SIZE=600\n" in text and "CHUNK_OVERLAP_SIZE=50\n" in text
    assert "TOP_K=60\n" in text and "COSINE_THRESHOLD=0.35\n" in text
    assert "MAX_ASYNC_LLM=8\n" in text and "MAX_ASYNC=8\n" in text
    assert "MAX_GRAPH_NODES=500\n" in text and "EMBEDDING_DIM=384\n" in text
    assert "ENABLE_LLM_CACHE=false\n" in text
    assert "# graph_max_depth=3" in text  # no server variable: a comment


def test_lightrag_server_reads_the_export(tmp_path, services, monkeypatch):
    """Load the file the way the server does (python-dotenv) and read it with LightRAG's own
    get_env_value: every variable comes back as the value we exported."""
    calls.set_params(services, {"changes": CHANGES, "note": "tuned"})
    env_file = tmp_path / ".env"
    env_file.write_text(calls.export_env_call(services, {})["text"])
    loaded = dotenv_values(env_file)
    for name, value in loaded.items():
        monkeypatch.setenv(name, value)
    effective = versions.latest(services.store).tuning.effective()
    pytypes = {"int": int, "float": float, "bool": bool, "str": str}
    for p in PARAMS:
        if p.env is None:
            continue
        got = get_env_value(p.env, "UNSET", pytypes[p.type])
        assert got == effective[p.name], p.env


def test_round_trip_into_another_store(services, tmp_path):
    calls.set_params(services, {"changes": CHANGES, "note": "tuned"})
    text = calls.export_env_call(services, {})["text"]
    # a second installation: its own state directory, store and active file
    cfg = config.load(overrides=[("paths.state_dir", str(tmp_path / "other"))],
                      read_system=False)
    other = LocalServices(cfg, Store(tmp_path / "other.duckdb"))
    try:
        r = calls.import_env_call(other, {"text": text, "note": "from box A", "file_name": "/x/a.env"})
        assert r["version"] == 2 and r["ignored"] == []
        assert versions.get(other.store, 2).source == "import-env:a.env"
        a = versions.latest(services.store).tuning.effective()
        b = versions.latest(other.store).tuning.effective()
        assert a == b  # query_mode and graph_max_depth are defaults on both sides here
        again = calls.import_env_call(other, {"text": text, "note": "again"})
        assert again["changed"] is False
    finally:
        other.store.close()


def test_export_of_an_old_version_and_per_user(services):
    calls.set_params(services, {"changes": {"top_k": 70}, "note": "a"})
    calls.set_params(services, {"changes": {"top_k": 90}, "note": "b", "user": "alice"})
    assert "TOP_K=40\n" in calls.export_env_call(services, {"version": 1})["text"]
    assert "TOP_K=70\n" in calls.export_env_call(services, {})["text"]
    assert "TOP_K=90\n" in calls.export_env_call(services, {"user": "alice"})["text"]


def test_parse_handles_server_env_syntax():
    text = """
# comment
export CHUNK_SIZE=800
TOP_K = "55"\t
COSINE_THRESHOLD='0.3' # inline
MAX_ASYNC_LLM=6
MAX_ASYNC=2
EMBEDDING_MODEL=None
LLM_BINDING=openai
LLM_BINDING_API_KEY=sk-not-a-tuning-value
"""
    r = parse_env(text)
    assert r.values == {"chunk_token_size": 800, "top_k": 55,
                        "cosine_better_than_threshold": 0.3, "llm_model_max_async": 6,
                        "embedding_model": ""}
    assert r.ignored == ["LLM_BINDING", "LLM_BINDING_API_KEY"]
    # MAX_ASYNC_LLM wins over MAX_ASYNC whatever the order, as in LightRAG
    assert parse_env("MAX_ASYNC_LLM=6\nMAX_ASYNC=2\n").values == {"llm_model_max_async": 6}
    assert parse_env("MAX_ASYNC=2\n").values == {"llm_model_max_async": 2}


def test_parse_errors_name_line_and_variable():
    with pytest.raises(TuningError) as info:
        parse_env("TOP_K=lots\nLLM_BINDING_API_KEY sk-secret-value-123\n")
    errors = info.value.errors
    assert "TOP_K (top_k)" in errors and "expected an integer" in errors["TOP_K (top_k)"]
    assert "line 2" in errors
    assert "sk-secret" not in str(info.value)  # a malformed line may hold a secret


def test_import_refuses_files_without_tuning_and_invalid_sets(services):
    with pytest.raises(CallError, match="sets none of the tuning variables"):
        calls.import_env_call(services, {"text": "LLM_BINDING=openai\n", "note": "x"})
    with pytest.raises(CallError, match="must be smaller than chunk_token_size"):
        calls.import_env_call(services, {"text": "CHUNK_SIZE=100\nCHUNK_OVERLAP_SIZE=200\n",
                                         "note": "x"})
    with pytest.raises(CallError, match="note"):
        calls.import_env_call(services, {"text": "TOP_K=5\n"})
    assert versions.latest(services.store).version == 1


def test_defaults_export_parse_round_trip():
    parsed = parse_env(export_env(defaults())).values
    assert parsed == {p.name: p.default for p in PARAMS
                      if p.env and not (p.effect == "rebuild" and p.default in ("", 0))}
