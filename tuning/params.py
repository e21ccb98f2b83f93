"""The LightRAG tuning parameters lightkeeper manages, as data.

Every default is lightrag-hku 1.5.7's own, read from the installed source:

- ``lightrag/constants.py`` (``DEFAULT_TOP_K = 40`` and friends),
- the ``LightRAG`` dataclass fields in ``lightrag/lightrag.py``,
- ``QueryParam`` in ``lightrag/base.py`` (``mode = "mix"``),
- ``LightRAG.get_knowledge_graph(max_depth=3)``,
- the server's environment names in ``lightrag/api/config.py`` (``CHUNK_SIZE`` 1200,
  ``CHUNK_OVERLAP_SIZE`` 100, ``COSINE_THRESHOLD``...).

Effect classes say when a change takes effect in a running LightRAG process:

``next_operation``
    read per call (a ``QueryParam`` field or an argument); the next query uses it.
``new_documents``
    read when a document is inserted; documents already indexed keep what they were built with.
``restart``
    read when the LightRAG instance (or its storages) is constructed; the instance must be
    re-created (lightkeeper's runtime does that for the workspace; LightRAG's own server needs
    a process restart).
``rebuild``
    baked into the stored vectors; changing it on existing data needs those vectors rebuilt.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from lightkeeper.coerce import fmt_num

EFFECTS: dict[str, str] = {
    "next_operation": "applies to the next operation",
    "new_documents": "applies to documents inserted from now on; existing ones are unchanged",
    "restart": "applies when LightRAG instances are re-created (restart)",
    "rebuild": "needs existing vectors rebuilt; refused on data with vectors unless acknowledged",
}

# The effect classes a running LightRAG instance picks up by itself (no restart).
LIVE_EFFECTS = ("next_operation", "new_documents")

QUERY_MODES = ("local", "global", "hybrid", "naive", "mix", "bypass")


@dataclass(frozen=True)
class Param:
    """One tunable parameter and where it lands in LightRAG."""

    name: str
    type: str  # "int", "float", "bool", "str"
    default: Any
    unit: str
    meaning: str
    effect: str  # a key of EFFECTS
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] | None = None
    lightrag_field: str | None = None  # LightRAG(...) constructor field
    query_param: str | None = None  # QueryParam field
    call_arg: str | None = None  # argument of a LightRAG method, e.g. get_knowledge_graph.max_depth
    embedding_attr: str | None = None  # attribute of lightrag.utils.EmbeddingFunc
    env: str | None = None  # LightRAG server .env name
    source: str = ""  # where the default comes from in the installed LightRAG

    def allowed(self) -> str:
        if self.choices:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        kind = {"int": "an integer", "float": "a number", "bool": "true or false",
                "str": "a string"}[self.type]
        parts = [kind]
        if self.min is not None and self.max is not None:
            parts.append(f"from {fmt_num(self.min)} to {fmt_num(self.max)}")
        elif self.min is not None:
            parts.append(f">= {fmt_num(self.min)}")
        elif self.max is not None:
            parts.append(f"<= {fmt_num(self.max)}")
        return " ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["choices"] = list(self.choices) if self.choices else None
        d["allowed"] = self.allowed()
        d["effect_text"] = EFFECTS[self.effect]
        return d


P = Param
PARAMS: tuple[Param, ...] = (
    # -- chunking and extraction (new documents) --------------------------------------------
    P("chunk_token_size", "int", 1200, "tokens",
      "Maximum tokens per text chunk when documents are split.",
      "new_documents", min=64, max=32768, lightrag_field="chunk_token_size", env="CHUNK_SIZE",
      source="lightrag.py _apply_chunk_size_overlay: CHUNK_SIZE default 1200"),
    P("chunk_overlap_token_size", "int", 100, "tokens",
      "Tokens shared by consecutive chunks, so facts cut at a boundary survive.",
      "new_documents", min=0, max=8192, lightrag_field="chunk_overlap_token_size",
      env="CHUNK_OVERLAP_SIZE",
      source="lightrag.py _apply_chunk_size_overlay: CHUNK_OVERLAP_SIZE default 100"),
    P("entity_extract_max_gleaning", "int", 1, "passes",
      "Extra LLM pass per chunk asking for entities the first pass missed (1.5.7 runs one "
      "pass for any value above 0, so 0 or 1).",
      "new_documents", min=0, max=1, lightrag_field="entity_extract_max_gleaning",
      env="MAX_GLEANING", source="constants.DEFAULT_MAX_GLEANING"),
    P("summary_max_tokens", "int", 1200, "tokens",
      "Entity/relation description size that triggers an LLM summary on merge.",
      "new_documents", min=100, max=32768, lightrag_field="summary_max_tokens",
      env="SUMMARY_MAX_TOKENS", source="constants.DEFAULT_SUMMARY_MAX_TOKENS"),
    P("summary_context_size", "int", 12000, "tokens",
      "Maximum tokens sent to the LLM for one description summary.",
      "new_documents", min=500, max=200000, lightrag_field="summary_context_size",
      env="SUMMARY_CONTEXT_SIZE", source="constants.DEFAULT_SUMMARY_CONTEXT_SIZE"),
    P("summary_length_recommended", "int", 600, "tokens",
      "Length the LLM is asked to keep a description summary to.",
      "new_documents", min=50, max=32768, lightrag_field="summary_length_recommended",
      env="SUMMARY_LENGTH_RECOMMENDED", source="constants.DEFAULT_SUMMARY_LENGTH_RECOMMENDED"),
    P("force_llm_summary_on_merge", "int", 8, "fragments",
      "Number of description fragments of one entity that forces an LLM summary.",
      "new_documents", min=1, max=1000, lightrag_field="force_llm_summary_on_merge",
      env="FORCE_LLM_SUMMARY_ON_MERGE", source="constants.DEFAULT_FORCE_LLM_SUMMARY_ON_MERGE"),
    # -- embedding ---------------------------------------------------------------------------
    P("embedding_model", "str", "", "name",
      "Embedding model name ('' = the provider's default). Vectors of different models "
      "must not be mixed.",
      "rebuild", embedding_attr="model_name", env="EMBEDDING_MODEL",
      source="api/config.py EMBEDDING_MODEL default None (binding default)"),
    P("embedding_dim", "int", 0, "dimensions",
      "Dimension of the embedding vectors (0 = the provider's own: rag.embed_dim, or the "
      "offline provider's); stored vectors must all have it.",
      "rebuild", min=0, max=65536, embedding_attr="embedding_dim", env="EMBEDDING_DIM",
      source="api/config.py EMBEDDING_DIM default None: the binding decides "
             "(openai_embed 1536, ollama 1024); LightRAG has no global default"),
    P("embedding_batch_num", "int", 10, "texts/call",
      "Texts sent to the embedding function per call.",
      "restart", min=1, max=2048, lightrag_field="embedding_batch_num",
      env="EMBEDDING_BATCH_NUM", source="constants.DEFAULT_EMBEDDING_BATCH_NUM"),
    P("embedding_func_max_async", "int", 8, "calls",
      "Concurrent embedding calls per LightRAG instance.",
      "restart", min=1, max=256, lightrag_field="embedding_func_max_async",
      env="EMBEDDING_FUNC_MAX_ASYNC", source="constants.DEFAULT_EMBEDDING_FUNC_MAX_ASYNC"),
    # -- LLM and pipeline concurrency -------------------------------------------------------
    P("llm_model_max_async", "int", 4, "calls",
      "Concurrent LLM calls per LightRAG instance.",
      "restart", min=1, max=256, lightrag_field="llm_model_max_async", env="MAX_ASYNC_LLM",
      source="constants.DEFAULT_MAX_ASYNC (env MAX_ASYNC_LLM, then the older MAX_ASYNC)"),
    P("max_parallel_insert", "int", 3, "documents",
      "Documents processed in parallel by one insert pipeline.",
      "restart", min=1, max=64, lightrag_field="max_parallel_insert",
      env="MAX_PARALLEL_INSERT", source="constants.DEFAULT_MAX_PARALLEL_INSERT"),
    P("enable_llm_cache", "bool", True, "",
      "Cache LLM answers to queries (a repeated query may return an answer older than "
      "newer documents).",
      "restart", lightrag_field="enable_llm_cache", env="ENABLE_LLM_CACHE",
      source="lightrag.py enable_llm_cache default True"),
    P("enable_llm_cache_for_entity_extract", "bool", True, "",
      "Cache entity-extraction LLM replies (needed to rebuild entities after a deletion).",
      "restart", lightrag_field="enable_llm_cache_for_entity_extract",
      env="ENABLE_LLM_CACHE_FOR_EXTRACT",
      source="lightrag.py enable_llm_cache_for_entity_extract default True"),
    # -- retrieval (next query) --------------------------------------------------------------
    P("query_mode", "str", "mix", "",
      "Default retrieval mode of a query that does not name one.",
      "next_operation", choices=QUERY_MODES, query_param="mode",
      source="base.py QueryParam.mode default 'mix'"),
    P("top_k", "int", 40, "items",
      "Entities (local) or relations (global) retrieved per query.",
      "next_operation", min=1, max=1000, lightrag_field="top_k", query_param="top_k",
      env="TOP_K", source="constants.DEFAULT_TOP_K"),
    P("chunk_top_k", "int", 20, "chunks",
      "Text chunks retrieved by vector search and kept in the context.",
      "next_operation", min=1, max=1000, lightrag_field="chunk_top_k",
      query_param="chunk_top_k", env="CHUNK_TOP_K", source="constants.DEFAULT_CHUNK_TOP_K"),
    P("max_entity_tokens", "int", 6000, "tokens",
      "Token budget for entity descriptions in the query context.",
      "next_operation", min=100, max=1000000, lightrag_field="max_entity_tokens",
      query_param="max_entity_tokens", env="MAX_ENTITY_TOKENS",
      source="constants.DEFAULT_MAX_ENTITY_TOKENS"),
    P("max_relation_tokens", "int", 8000, "tokens",
      "Token budget for relation descriptions in the query context.",
      "next_operation", min=100, max=1000000, lightrag_field="max_relation_tokens",
      query_param="max_relation_tokens", env="MAX_RELATION_TOKENS",
      source="constants.DEFAULT_MAX_RELATION_TOKENS"),
    P("max_total_tokens", "int", 30000, "tokens",
      "Total token budget of the query context (system prompt, entities, relations, chunks).",
      "next_operation", min=1000, max=2000000, lightrag_field="max_total_tokens",
      query_param="max_total_tokens", env="MAX_TOTAL_TOKENS",
      source="constants.DEFAULT_MAX_TOTAL_TOKENS"),
    P("cosine_better_than_threshold", "float", 0.2, "cosine",
      "Minimum cosine similarity for a vector match to be used.",
      "restart", min=0.0, max=1.0, lightrag_field="cosine_better_than_threshold",
      env="COSINE_THRESHOLD", source="constants.DEFAULT_COSINE_THRESHOLD"),
    P("related_chunk_number", "int", 5, "chunks",
      "Chunks pulled in for each retrieved entity or relation.",
      "restart", min=1, max=100, lightrag_field="related_chunk_number",
      env="RELATED_CHUNK_NUMBER", source="constants.DEFAULT_RELATED_CHUNK_NUMBER"),
    P("kg_chunk_pick_method", "str", "VECTOR", "",
      "How chunks related to entities are picked: by embedding similarity or by weight.",
      "restart", choices=("VECTOR", "WEIGHT"), lightrag_field="kg_chunk_pick_method",
      env="KG_CHUNK_PICK_METHOD", source="constants.DEFAULT_KG_CHUNK_PICK_METHOD"),
    # -- graph traversal ----------------------------------------------------------------------
    P("max_graph_nodes", "int", 1000, "nodes",
      "Maximum nodes returned by a knowledge-graph traversal.",
      "next_operation", min=1, max=100000, lightrag_field="max_graph_nodes",
      env="MAX_GRAPH_NODES", source="constants.DEFAULT_MAX_GRAPH_NODES"),
    P("graph_max_depth", "int", 3, "hops",
      "Traversal depth of get_knowledge_graph from the start node.",
      "next_operation", min=1, max=10, call_arg="get_knowledge_graph.max_depth",
      source="lightrag.py get_knowledge_graph(max_depth=3)"),
)

BY_NAME: dict[str, Param] = {p.name: p for p in PARAMS}
NAMES: tuple[str, ...] = tuple(BY_NAME)


def defaults() -> dict[str, Any]:
    """LightRAG's own value for every parameter."""
    return {p.name: p.default for p in PARAMS}


def model() -> list[dict[str, Any]]:
    """The parameter model as JSON-ready dicts (for ``tuning.params`` and the console)."""
    return [p.as_dict() for p in PARAMS]


def effect_of(name: str) -> str:
    """Effect class of ``name``; a per-user key (``users.U.name``) has its parameter's."""
    base = name.rsplit(".", 1)[-1]
    p = BY_NAME.get(base)
    return p.effect if p else "restart"


def lightrag_kwargs(params: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments for ``LightRAG(...)`` from a full parameter set.

    Covers fields of the ``LightRAG`` dataclass only; the embedding attributes go to
    ``EmbeddingFunc`` (see :func:`embedding_attrs`), and ``query_mode``/``graph_max_depth``
    are per call (see :func:`query_param_kwargs`).
    """
    return {p.lightrag_field: params.get(p.name, p.default) for p in PARAMS if p.lightrag_field}


def query_param_kwargs(params: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments for ``QueryParam(...)`` from a full parameter set."""
    return {p.query_param: params.get(p.name, p.default) for p in PARAMS if p.query_param}


def embedding_attrs(params: dict[str, Any]) -> dict[str, Any]:
    """``{"embedding_dim": ..., "model_name": ...}`` for ``EmbeddingFunc``."""
    return {p.embedding_attr: params.get(p.name, p.default) for p in PARAMS if p.embedding_attr}
