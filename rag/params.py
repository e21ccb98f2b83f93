"""The LightRAG parameters a runtime builds its instances from.

The tuning package owns the parameter model, the versions and the active file
(``paths.tuning_file``); this module is the one place the rag runtime asks for them:

- ``active_params(cfg, user=None) -> (version, params)``: one read of the active file;
- ``ParamSource``: the same answer from tuning's file watcher, for long-running processes.

A missing file means LightRAG's defaults (version None). An invalid file never stops a LightRAG
process: the last good copy is used, else the defaults, with a logged warning. ``DEFAULTS`` is
the fallback used only if the tuning package cannot be imported.
"""

from __future__ import annotations

from typing import Any

from lightkeeper.config import Config
from lightkeeper.logs import get_logger

log = get_logger("rag.params")

# lightrag-hku 1.5.7's own defaults (the same values tuning.params declares).
DEFAULTS: dict[str, Any] = {
    "chunk_token_size": 1200, "chunk_overlap_token_size": 100, "entity_extract_max_gleaning": 1,
    "summary_max_tokens": 1200, "summary_context_size": 12000,
    "summary_length_recommended": 600, "force_llm_summary_on_merge": 8,
    "embedding_model": "", "embedding_dim": 0, "embedding_batch_num": 10,
    "embedding_func_max_async": 8, "llm_model_max_async": 4, "max_parallel_insert": 3,
    "enable_llm_cache": True, "enable_llm_cache_for_entity_extract": True,
    "query_mode": "mix", "top_k": 40, "chunk_top_k": 20, "max_entity_tokens": 6000,
    "max_relation_tokens": 8000, "max_total_tokens": 30000,
    "cosine_better_than_threshold": 0.2, "related_chunk_number": 5,
    "kg_chunk_pick_method": "VECTOR", "max_graph_nodes": 1000, "graph_max_depth": 3,
}
_QUERY = {"top_k": "top_k", "chunk_top_k": "chunk_top_k", "max_entity_tokens":
          "max_entity_tokens", "max_relation_tokens": "max_relation_tokens",
          "max_total_tokens": "max_total_tokens"}
_NOT_LIGHTRAG = {"embedding_model", "embedding_dim", "query_mode", "graph_max_depth"}


def _fallback(user: str | None) -> tuple[int | None, dict[str, Any]]:
    return None, dict(DEFAULTS)


def active_params(cfg: Config, user: str | None = None) -> tuple[int | None, dict[str, Any]]:
    """(tuning version or None, effective parameters for ``user`` or the global set)."""
    try:
        from tuning.activefile import load_active
    except ImportError:
        return _fallback(user)
    try:
        version, params = load_active(cfg, user)  # falls back to the last good copy itself
        return version, {**DEFAULTS, **params}
    except Exception as exc:  # invalid, and no good copy: run on defaults, say so
        log.warning("rag.params.tuning_unreadable", path=str(cfg.path("paths.tuning_file")),
                    error=f"{type(exc).__name__}: {exc}", using="defaults")
        return _fallback(user)


class ParamSource:
    """Effective parameters per user, kept current by tuning's ActiveFileWatcher."""

    def __init__(self, cfg: Config, watch: bool = True) -> None:
        self.cfg = cfg
        self._watcher: Any = None
        if watch:
            try:
                from tuning.watch import ActiveFileWatcher
            except ImportError:
                ActiveFileWatcher = None  # noqa: N806
            if ActiveFileWatcher is not None:
                self._watcher = ActiveFileWatcher(cfg.path("paths.tuning_file")).start()
        self._cache: dict[str | None, tuple[int | None, dict[str, Any]]] = {}

    @property
    def version(self) -> int | None:
        if self._watcher is not None:
            return self._watcher.version
        return self.get(None)[0]

    def get(self, user: str | None = None) -> tuple[int | None, dict[str, Any]]:
        if self._watcher is not None:
            version = self._watcher.version
            return version, {**DEFAULTS, **self._watcher.params(user)}
        if user not in self._cache:
            self._cache[user] = active_params(self.cfg, user)
        return self._cache[user]

    def close(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None


def lightrag_kwargs(params: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments for ``LightRAG(...)``."""
    try:
        from tuning.params import lightrag_kwargs as from_tuning
    except ImportError:
        return {k: params.get(k, v) for k, v in DEFAULTS.items() if k not in _NOT_LIGHTRAG}
    return from_tuning(params)


def query_kwargs(params: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments for ``QueryParam(...)`` (the mode is chosen per query)."""
    return {q: params.get(k, DEFAULTS[k]) for k, q in _QUERY.items()}
