"""The adapter between ``lightkeeper serve`` and LightRAG 1.5.7's own API server.

**Every use of LightRAG internals by ``serve`` is in this module**, and
``tests/rag/test_lightrag_api_contract.py`` checks each of them against the installed LightRAG,
so an upgrade that moves one fails that test loudly instead of silently losing measurements or
the write gate. What it relies on (names as of lightrag-hku 1.5.7):

- ``lightrag.api.config.parse_args()`` reads ``sys.argv`` and the environment;
  ``initialize_config(args, force=True)`` publishes them to the server's modules;
- ``lightrag.api.lightrag_server.create_app(args)`` builds the FastAPI application and
  constructs ``LightRAG`` by the module-global name ``LightRAG`` (replaced here by a subclass);
- ``LightRAG`` methods the routes call: ``aquery_llm`` / ``aquery_data`` (queries; a streaming
  ``aquery_llm`` returns ``{"llm_response": {"is_streaming": True, "response_iterator": ...}}``),
  ``apipeline_enqueue_documents`` (every REST insert), ``process_single_document(*, doc_id,
  status_doc, parsed_data, ctx)`` (one pipeline document: chunking, extraction, merge and its
  final flush; ``status_doc.created_at`` is the enqueue time, ``status_doc.track_id`` starts
  with ``upload``, ``insert`` (text and texts), ``scan``), ``adelete_by_doc_id``, the graph
  edits (``aedit_entity``... ``adelete_by_relation``), ``get_knowledge_graph``, and
  ``_query_done`` (a query's LLM-cache flush);
- ``LightRAG.__post_init__(addon_params)`` (an ``InitVar``), dataclass fields ``tokenizer``, ``llm_model_func``, ``embedding_func`` (an
  ``EmbeddingFunc`` whose ``func`` is the model call), ``role_llm_configs`` (per-role funcs);
- the storages, built in ``__post_init__`` as the attributes :data:`STORAGE_ATTRS` (every
  ``lightrag.base.StorageNameSpace`` the instance holds), touch their files only in
  :data:`STORAGE_WRITE_METHODS`: ``index_done_callback`` (every flush; ``doc_status.upsert``
  and ``update_doc_status_fields`` call it), ``initialize`` (the LLM cache's legacy migration),
  ``finalize`` (the cache and vector stores flush at shutdown) and ``drop``. Each is wrapped
  per instance with ``Hooks.store_write``: so the writes the pipeline makes outside one
  document's processing (a REST enqueue, the parse and analyze workers' ``doc_status``
  transitions and LLM-cache commits, the consistency repairs at a batch's start, a query's
  cache flush) hold the gate too.
"""

from __future__ import annotations

import importlib.metadata
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

LIGHTRAG_VERSION = "1.5.7"
QUERY_METHODS = ("aquery_llm", "aquery_data")
# graph edit method -> the op's mode in the spool (rag.spool.GRAPH_MODES)
GRAPH_WRITE_MODES = {"aedit_entity": "edit_entity", "aedit_relation": "edit_relation",
                     "acreate_entity": "create_entity", "acreate_relation": "create_relation",
                     "amerge_entities": "merge_entities", "adelete_by_entity": "delete_entity",
                     "adelete_by_relation": "delete_relation"}
GRAPH_WRITE_METHODS = tuple(GRAPH_WRITE_MODES)
# track_id prefix (lightrag.utils.generate_track_id) -> the insert's mode in the spool
INSERT_SOURCES = {"upload": "upload", "insert": "text", "scan": "scan"}
# the LightRAG attributes holding its storages (LightRAG.initialize_storages' list)
STORAGE_ATTRS = ("full_docs", "text_chunks", "full_entities", "full_relations", "entity_chunks",
                 "relation_chunks", "entities_vdb", "relationships_vdb", "chunks_vdb",
                 "chunk_entity_relation_graph", "llm_response_cache", "doc_status")
# the storage methods that write their files (JSON KV, doc status, NanoVectorDB, NetworkX)
STORAGE_WRITE_METHODS = ("initialize", "index_done_callback", "finalize", "drop")


class VersionMismatch(RuntimeError):
    """The installed LightRAG is not the version ``serve`` was tested with."""


def installed_version() -> str:
    try:
        return importlib.metadata.version("lightrag-hku")
    except importlib.metadata.PackageNotFoundError:
        return "none"


def check_version() -> str:
    found = installed_version()
    if found != LIGHTRAG_VERSION:
        raise VersionMismatch(
            f"lightkeeper serve is tested with lightrag-hku {LIGHTRAG_VERSION} and refuses to "
            f"run on lightrag-hku {found}: its instrumentation and write gate use that "
            f"version's internals (install lightrag-hku[api]=={LIGHTRAG_VERSION})")
    return found


def parse_server_args(argv: list[str]) -> Any:
    """lightrag-server's own argument parsing (it reads ``sys.argv`` and the environment)."""
    from lightrag.api import config  # noqa: PLC0415  heavy; only serve loads the server

    saved = sys.argv
    sys.argv = ["lightrag-server", *argv]
    try:
        args = config.parse_args()
    finally:
        sys.argv = saved
    config.initialize_config(args, force=True)
    return args


@dataclass
class Hooks:
    """What ``serve`` attaches to the server's LightRAG instance.

    - ``op(op, mode, force=False)``: an async context manager recording one operation
      (yields the op: ``fail(exc)``, ``queue_wait_s``, ``llm_s``...; ``None`` when another is
      in progress, unless ``force``); its ``detach()`` lets a streamed answer finish it later;
    - ``write()``: an async context manager holding the user's write gate for one operation
      (called where LightRAG holds none of its own locks, so it may wait for a backup);
    - ``store_write()``: the same for one storage method writing its files, called inside
      LightRAG (possibly under its locks): it joins a hold in progress rather than wait;
    - ``wrap_llm`` / ``wrap_embed``: the instrumentation of the model functions;
    - ``tokenizer``: the offline tokenizer; ``configure(rag)``: tuning applied at build;
      ``query_param(rag, param)`` before each query, ``before_document(rag)`` before each
      pipeline document: live tuning.
    """

    op: Callable[..., Any]
    write: Callable[[], Any]
    store_write: Callable[[], Any]
    wrap_llm: Callable[[Any], Any]
    wrap_embed: Callable[[Any], Any]
    tokenizer: Any
    configure: Callable[[Any], None]
    query_param: Callable[[Any, Any], None]
    before_document: Callable[[Any], None]
    instances: list[Any] = field(default_factory=list)


def _created_ts(status_doc: Any) -> float | None:
    created = getattr(status_doc, "created_at", None)
    if not created:
        return None
    try:
        return datetime.fromisoformat(str(created)).timestamp()
    except ValueError:
        return None


def insert_mode(status_doc: Any) -> str:
    track = str(getattr(status_doc, "track_id", "") or "")
    return INSERT_SOURCES.get(track.split("_", 1)[0], "pipeline")


async def _measured_stream(iterator: AsyncIterator[Any], scope: Any, rec: Any,
                           perf: Callable[[], float]) -> AsyncIterator[Any]:
    """Pass a streamed answer through, counting the wait for each chunk as LLM time, and end
    the operation when the stream ends (or the client goes away)."""
    exc: BaseException | None = None
    try:
        while True:
            t0 = perf()
            try:
                chunk = await iterator.__anext__()
            except StopAsyncIteration:
                break
            finally:
                rec.llm_s += perf() - t0
            if isinstance(chunk, str):
                rec.tokens_out += len(chunk) // 4
                rec.result_bytes += len(chunk.encode("utf-8"))
            yield chunk
    except BaseException as e:
        exc = e
        raise
    finally:
        await scope.__aexit__(type(exc) if exc else None, exc, None)


def gate_storages(rag: Any, hooks: Hooks) -> list[str]:
    """Wrap each storage's file-writing methods (:data:`STORAGE_WRITE_METHODS`) on this
    instance with ``hooks.store_write``; returns what was wrapped (``attr.method``)."""
    wrapped = []
    for attr in STORAGE_ATTRS:
        storage = getattr(rag, attr, None)
        if storage is None or getattr(storage, "__lightkeeper_gated__", False):
            continue
        for name in STORAGE_WRITE_METHODS:
            method = getattr(storage, name, None)
            if method is None:
                continue
            setattr(storage, name, _store_writer(method, hooks))
            wrapped.append(f"{attr}.{name}")
        storage.__lightkeeper_gated__ = True
    return wrapped


def _store_writer(method: Callable[..., Awaitable[Any]],
                  hooks: Hooks) -> Callable[..., Awaitable[Any]]:
    async def gated(*args: Any, **kwargs: Any) -> Any:
        async with hooks.store_write():
            return await method(*args, **kwargs)

    gated.__name__ = getattr(method, "__name__", "gated")
    gated.__wrapped__ = method  # type: ignore[attr-defined]
    return gated


def instrumented_class(base: Any, hooks: Hooks) -> type:
    """A subclass of LightRAG's ``LightRAG`` with ``hooks`` attached (see module docstring).
    ``base`` is typed Any: LightRAG ships no type information."""
    import time  # noqa: PLC0415  only for the stream timer

    perf = time.perf_counter

    class ServedLightRAG(base):
        # LightRAG's dataclass fields this subclass rewrites, declared for the type checker
        # only (annotations without values: the class is not re-made into a dataclass).
        tokenizer: Any
        llm_model_func: Any

        def __post_init__(self, *init_vars: Any) -> None:  # 1.5.7: the addon_params InitVar
            if self.tokenizer is None:
                self.tokenizer = hooks.tokenizer
            self.llm_model_func = hooks.wrap_llm(self.llm_model_func)
            emb = self.embedding_func
            if emb is not None and getattr(emb, "func", None) is not None:
                emb.func = hooks.wrap_embed(emb.func)
            for cfg in (self.role_llm_configs or {}).values():
                if getattr(cfg, "func", None) is not None:
                    cfg.func = hooks.wrap_llm(cfg.func)
            hooks.configure(self)
            super().__post_init__(*init_vars)
            gate_storages(self, hooks)
            hooks.instances.append(self)

        # -- queries ------------------------------------------------------------------
        async def aquery_llm(self, query: str, param: Any = None, *args: Any,
                             **kwargs: Any) -> Any:
            if param is None:
                return await super().aquery_llm(query, *args, **kwargs)
            hooks.query_param(self, param)
            scope = hooks.op("query", getattr(param, "mode", None))
            rec = await scope.__aenter__()
            if rec is None:  # inside another recorded operation
                await scope.__aexit__(None, None, None)
                return await super().aquery_llm(query, param, *args, **kwargs)
            try:
                result = await super().aquery_llm(query, param, *args, **kwargs)
            except BaseException as exc:
                await scope.__aexit__(type(exc), exc, None)
                raise
            llm = result.get("llm_response") if isinstance(result, dict) else None
            if isinstance(llm, dict) and llm.get("is_streaming") and \
                    llm.get("response_iterator") is not None:
                scope.detach()  # the route's stream consumer finishes the op
                llm["response_iterator"] = _measured_stream(llm["response_iterator"], scope,
                                                            rec, perf)
                return result
            if isinstance(llm, dict) and isinstance(llm.get("content"), str):
                rec.result_bytes = len(llm["content"].encode("utf-8"))
            if isinstance(result, dict) and result.get("status") == "failure":
                rec.fail(str(result.get("message") or "QueryFailed")[:60])
            await scope.__aexit__(None, None, None)
            return result

        async def aquery_data(self, query: str, param: Any = None, *args: Any,
                              **kwargs: Any) -> Any:
            if param is None:
                return await super().aquery_data(query, *args, **kwargs)
            hooks.query_param(self, param)
            async with hooks.op("query", f"{getattr(param, 'mode', '')}-data") as rec:
                result = await super().aquery_data(query, param, *args, **kwargs)
                if rec is not None and isinstance(result, dict) and \
                        result.get("status") == "failure":
                    rec.fail("QueryFailed")
                return result

        async def _query_done(self, *args: Any, **kwargs: Any) -> Any:
            async with hooks.write():  # the query's LLM-cache flush
                return await super()._query_done(*args, **kwargs)

        # -- inserts ------------------------------------------------------------------
        async def apipeline_enqueue_documents(self, *args: Any, **kwargs: Any) -> Any:
            async with hooks.write():
                return await super().apipeline_enqueue_documents(*args, **kwargs)

        async def process_single_document(self, **kwargs: Any) -> Any:
            status_doc = kwargs.get("status_doc")
            doc_id = kwargs.get("doc_id")
            hooks.before_document(self)
            started = time.time()
            async with hooks.op("insert", insert_mode(status_doc), True) as rec:
                if rec is not None:
                    created = _created_ts(status_doc)
                    rec.queue_wait_s = max(0.0, started - created) if created else None
                async with hooks.write():
                    result = await super().process_single_document(**kwargs)
                if rec is not None:
                    rec.result_bytes = int(getattr(status_doc, "content_length", 0) or 0)
                    done = await self.doc_status.get_by_id(doc_id) if doc_id else None
                    status = (done or {}).get("status")
                    status = str(getattr(status, "value", status) or "")
                    if status != "processed":
                        rec.fail(f"Document{status.capitalize() or 'Unknown'}")
                return result

        # -- deletes and graph edits --------------------------------------------------
        async def adelete_by_doc_id(self, *args: Any, **kwargs: Any) -> Any:
            async with hooks.op("delete", None) as rec:
                async with hooks.write():
                    result = await super().adelete_by_doc_id(*args, **kwargs)
                status = getattr(result, "status", None)
                if rec is not None and status not in (None, "success"):
                    rec.fail(f"Delete{str(status).capitalize()}")
                return result

        async def get_knowledge_graph(self, *args: Any, **kwargs: Any) -> Any:
            async with hooks.op("graph", "read"):
                return await super().get_knowledge_graph(*args, **kwargs)

    def _graph_write(name: str) -> Callable[..., Awaitable[Any]]:
        async def method(self: Any, *args: Any, **kwargs: Any) -> Any:
            async with hooks.op("graph", GRAPH_WRITE_MODES[name]):
                async with hooks.write():
                    return await getattr(super(ServedLightRAG, self), name)(*args, **kwargs)

        method.__name__ = name
        return method

    for name in GRAPH_WRITE_METHODS:
        setattr(ServedLightRAG, name, _graph_write(name))
    ServedLightRAG.__name__ = ServedLightRAG.__qualname__ = "LightRAG"
    return ServedLightRAG


def create_app(args: Any, hooks: Hooks) -> Any:
    """LightRAG's own FastAPI application, its ``LightRAG`` built as :func:`instrumented_class`."""
    from lightrag.api import lightrag_server  # noqa: PLC0415  heavy; only serve loads it

    original = lightrag_server.LightRAG
    base = getattr(original, "__lightkeeper_base__", original)
    served = instrumented_class(base, hooks)
    served.__lightkeeper_base__ = base  # type: ignore[attr-defined]
    lightrag_server.LightRAG = served
    try:
        return lightrag_server.create_app(args)
    finally:
        lightrag_server.LightRAG = base


def configure_logging() -> None:
    """The stock server's logging setup (console and its rotating ``lightrag.log``)."""
    from lightrag.api import lightrag_server  # noqa: PLC0415

    lightrag_server.configure_logging()
