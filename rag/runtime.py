"""LightRAG per user: an instance pool, the write gate, stale-cache protection, instrumentation.

Each user is one LightRAG workspace: ``working_dir = data_root`` and ``workspace = user``, so the
files live in ``<data_root>/<user>/`` and LightRAG's in-process shared storage (keyed by
workspace) never mixes two users. All methods are coroutines and must run on one event loop.

- **Pool.** At most ``rag.pool_size`` users are open; the least recently used is finalized
  (``finalize_storages()``) and its namespaces are removed from LightRAG's process-wide shared
  storage, which ``finalize_storages()`` alone leaves in memory. ``stats()`` reports the
  workspaces the process really holds and its RSS.
- **Write gate.** Insert and delete hold ``LOCK_EX`` on ``<user>/.lightkeeper.lock``
  (``rag/gate.py``); opening a workspace holds ``LOCK_SH`` so it never loads half a write.
- **Other processes.** LightRAG's JSON storages never reload files written by another process.
  Every finished write stamps the gate file; before each operation the pool compares the stamp
  with the one its instance was loaded under and reloads the workspace if it changed.
- **Stale answers.** LightRAG's answer cache key does not include the retrieved context, so with
  the LLM cache on a repeated question returns an answer cached before newer documents. Each
  cached answer is tagged with the stamp of the data it was computed from; after a write the
  writer drops all cached answers, and every load drops answers tagged with another stamp.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
from lightrag import LightRAG, QueryParam
from lightrag.kg import shared_storage
from lightrag.utils import EmbeddingFunc

from lightkeeper.config import Config
from lightkeeper.ids import validate_user_id
from lightkeeper.logs import get_logger
from lightkeeper.rag import gate
from lightkeeper.rag.instrument import Instrument, wrap_embed, wrap_llm
from lightkeeper.rag.params import ParamSource, lightrag_kwargs, query_kwargs
from lightkeeper.rag.providers import Providers, build_providers
from lightkeeper.rag.spool import QUERY_MODES, SpoolWriter
from lightkeeper.rag.tokenizer import offline_tokenizer

log = get_logger("rag.runtime")

MODES = QUERY_MODES  # the spool format declares them (the agent accepts these only)
STAMP_FIELD = "lk_stamp"

for _name in ("lightrag", "nano-vectordb"):
    logging.getLogger(_name).setLevel(logging.WARNING)


class RagError(ValueError):
    """A LightRAG operation that cannot be done (bad mode, failed documents...)."""


class UnknownUser(RagError):
    """The user has no working directory yet."""


class WorkspaceError(RagError):
    """LightRAG could not open a user's workspace (for example an embedding dimension that
    differs from the stored vectors')."""


@dataclass
class _Entry:
    rag: LightRAG
    stamp: bytes
    version: int | None = None
    params: dict[str, Any] | None = None
    busy: int = 0
    retired: bool = False


def doc_id(text: str) -> str:
    """The id a document gets from its content (re-inserting the same text is a no-op)."""
    return "doc-" + hashlib.md5(text.strip().encode("utf-8")).hexdigest()


# user -> the runtime holding it in this process (see _load)
_OPEN_IN_PROCESS: weakref.WeakValueDictionary[str, RagRuntime] = weakref.WeakValueDictionary()


def purge_shared_namespaces(workspace: str) -> int:
    """Remove a workspace's data from LightRAG's process-wide shared storage.

    ``finalize_storages()`` leaves it there (the dicts are keyed ``<workspace>:<namespace>``), so
    a process that opened many users would keep all of them in memory.
    """
    prefix = f"{workspace}:"
    removed = 0
    for name in ("_shared_dicts", "_init_flags", "_update_flags", "_namespace_data_cache"):
        table = getattr(shared_storage, name, None)
        if not table:
            continue
        for key in [k for k in list(table.keys()) if str(k).startswith(prefix)]:
            table.pop(key, None)
            removed += 1
    return removed


def _clear_dirty_flags(workspace: str) -> None:
    """Mark a workspace's JSON storages clean so finalizing a stale instance writes nothing."""
    flags = getattr(shared_storage, "_update_flags", None) or {}
    prefix = f"{workspace}:"
    for key, values in list(flags.items()):
        if str(key).startswith(prefix):
            for flag in values:
                try:
                    flag.value = False
                except AttributeError:
                    pass


def workspaces_held() -> int:
    """How many distinct workspaces LightRAG's shared storage holds in this process."""
    table = getattr(shared_storage, "_shared_dicts", None) or {}
    return len({str(k).split(":", 1)[0] for k in table.keys() if ":" in str(k)})


class RagRuntime:
    """LightRAG for many users in one process. Use ``async with RagRuntime(cfg) as rt``."""

    def __init__(self, cfg: Config, *, spool: bool = True, run_id: str | None = None,
                 pool_size: int | None = None, gate_timeout: float | None = None,
                 instrumented: bool = True, providers: Providers | None = None,
                 watch_tuning: bool = False) -> None:
        self.cfg = cfg
        self.data_root = cfg.path("paths.data_root")
        self.pool_size = int(pool_size or cfg["rag.pool_size"])
        self.gate_timeout = float(cfg["rag.gate_timeout"] if gate_timeout is None
                                  else gate_timeout)
        self.tuning = ParamSource(cfg, watch=watch_tuning)
        self.providers = providers or build_providers(cfg)
        self.instrumented = instrumented
        writer = SpoolWriter(cfg.path("paths.spool_dir"), cfg["rag.spool_max_bytes"]) \
            if spool and instrumented else None
        self.instrument = Instrument(writer, self.tuning.version, run_id)
        self._llm = wrap_llm(self.providers.llm) if instrumented else self.providers.llm
        self._embedding_funcs: dict[int, EmbeddingFunc] = {}
        self._pool: OrderedDict[str, _Entry] = OrderedDict()
        self._opening: dict[str, asyncio.Lock] = {}
        self._writing: dict[str, asyncio.Lock] = {}
        self.evictions = 0
        self.reloads = 0

    @property
    def tuning_version(self) -> int | None:
        return self.tuning.version

    def params(self, user: str | None = None) -> dict[str, Any]:
        return self.tuning.get(user)[1]

    async def __aenter__(self) -> RagRuntime:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    # -- instances ------------------------------------------------------------------------
    def _embedding(self, dim: int) -> EmbeddingFunc:
        if dim not in self._embedding_funcs:
            func = self.providers.embedder(dim)
            if self.instrumented:
                func = wrap_embed(func)
            self._embedding_funcs[dim] = EmbeddingFunc(
                embedding_dim=dim, func=func,
                model_name=self.providers.embed_model or None)
        return self._embedding_funcs[dim]

    def _build(self, user: str) -> tuple[LightRAG, int | None, dict[str, Any]]:
        version, p = self.tuning.get(user)
        rag = LightRAG(
            working_dir=str(self.data_root),
            workspace=user,
            llm_model_func=self._llm,
            llm_model_name=self.providers.model_name,
            embedding_func=self._embedding(self.providers.dim_for(p)),
            tokenizer=offline_tokenizer(),
            entity_extraction_use_json=False,
            vector_db_storage_cls_kwargs={
                "cosine_better_than_threshold": p["cosine_better_than_threshold"]},
            **lightrag_kwargs(p),
        )
        return rag, version, p

    async def _load(self, user: str, stamp: bytes, busy: int = 0) -> _Entry:
        owner = _OPEN_IN_PROCESS.get(user)
        if owner is not None and owner is not self:
            # LightRAG's shared storage is per process and keyed by workspace: two runtimes
            # holding one user would share (and purge) each other's data
            raise RagError(f"user {user!r} is already open in another RagRuntime of this "
                           "process; use one runtime per process")
        _OPEN_IN_PROCESS[user] = self
        purge_shared_namespaces(user)  # load from disk, not from an older in-memory copy
        try:
            rag, version, params = self._build(user)
            await rag.initialize_storages()
            await self._drop_cached_answers(rag, keep_stamp=stamp)
        except Exception as exc:
            purge_shared_namespaces(user)
            _OPEN_IN_PROCESS.pop(user, None)
            raise WorkspaceError(f"cannot open the LightRAG workspace of {user!r} under "
                                 f"{self.data_root}: {type(exc).__name__}: {exc}") from exc
        entry = _Entry(rag, stamp, version, params, busy=busy)
        self._tag_answers(rag, user)
        self._pool[user] = entry
        return entry

    async def _evict_for_room(self) -> None:
        while len(self._pool) >= self.pool_size:
            idle = next((u for u, e in self._pool.items() if e.busy == 0), None)
            if idle is None:  # every open user is in use: exceed the bound for a moment
                log.warning("rag.pool.over_capacity", open=len(self._pool), bound=self.pool_size)
                return
            old = self._pool.pop(idle)
            await self._finalize(idle, old, flush=True)
            self.evictions += 1

    async def _open(self, user: str) -> _Entry:
        await self._evict_for_room()
        self.data_root.mkdir(parents=True, exist_ok=True)
        async with gate.async_read_gate(self.data_root, user, self.gate_timeout):
            stamp = gate.read_stamp(self.data_root, user).raw
            return await self._load(user, stamp)

    async def _finalize(self, user: str, entry: _Entry, flush: bool) -> None:
        if flush and gate.read_stamp(self.data_root, user).raw != entry.stamp:
            flush = False  # another process wrote meanwhile: our cache must not overwrite it
        if not flush:
            _clear_dirty_flags(user)
        try:
            await entry.rag.finalize_storages()
        except Exception as exc:  # noqa: BLE001  a failed finalize must not keep the slot
            log.warning("rag.finalize_failed", user=user, error=f"{type(exc).__name__}: {exc}")
        purge_shared_namespaces(user)
        if _OPEN_IN_PROCESS.get(user) is self:
            del _OPEN_IN_PROCESS[user]

    async def _get(self, user: str) -> _Entry:
        validate_user_id(user)
        lock = self._opening.setdefault(user, asyncio.Lock())
        async with lock:
            entry = self._pool.get(user)
            if entry is not None:
                stale = gate.read_stamp(self.data_root, user).raw != entry.stamp
                if entry.version != self.tuning.version:
                    entry.retired = True  # the active tuning changed: rebuild when idle
                if (stale or entry.retired) and entry.busy == 0:
                    # another process wrote this user (or the tuning changed): reload; a stale
                    # copy is dropped unflushed so it cannot overwrite the newer files
                    del self._pool[user]
                    await self._finalize(user, entry, flush=not stale)
                    self.reloads += 1
                    entry = None
                else:
                    self._pool.move_to_end(user)
            if entry is None:
                entry = await self._open(user)
            return entry

    # -- stale answer protection ----------------------------------------------------------
    def _tag_answers(self, rag: LightRAG, user: str) -> None:
        """Tag every answer LightRAG caches with the stamp of the data it came from."""
        cache = rag.llm_response_cache
        if cache is None:
            return
        original = cache.upsert
        pool = self._pool

        async def upsert(data: dict[str, dict[str, Any]]) -> None:
            entry = pool.get(user)
            if entry is not None:
                for value in data.values():
                    if isinstance(value, dict) and value.get("cache_type") == "query":
                        value[STAMP_FIELD] = entry.stamp.decode("ascii", "replace")
            await original(data)

        cache.upsert = upsert

    async def _drop_cached_answers(self, rag: LightRAG, keep_stamp: bytes | None) -> int:
        cache = rag.llm_response_cache
        data = getattr(cache, "_data", None)
        if cache is None or data is None:
            return 0
        keep = None if keep_stamp is None else keep_stamp.decode("ascii", "replace")
        stale = [k for k, v in list(data.items())
                 if ":query:" in k and (keep is None or
                                        not isinstance(v, dict) or v.get(STAMP_FIELD) != keep)]
        if stale:
            await cache.delete(stale)
        return len(stale)

    # -- operations -----------------------------------------------------------------------
    async def insert(self, user: str, texts: list[str],
                     file_paths: list[str] | None = None) -> dict[str, Any]:
        """Insert documents for ``user`` (holding the write gate). Returns ids and outcome."""
        validate_user_id(user)
        if file_paths is not None and len(file_paths) != len(texts):
            raise RagError(f"{len(texts)} documents but {len(file_paths)} file paths")
        docs: dict[str, tuple[str, str]] = {}  # id -> (text, path); duplicates collapse
        for i, text in enumerate(texts):
            if text and text.strip():
                path = file_paths[i] if file_paths is not None else "unknown_source"
                docs.setdefault(doc_id(text), (text, path))
        if not docs:
            raise RagError("nothing to insert: every document is empty")
        ids = list(docs)
        texts = [docs[i][0] for i in ids]
        paths = [docs[i][1] for i in ids] if file_paths is not None else None
        with self.instrument.op(user, "insert") as rec:
            rec.result_bytes = sum(len(t.encode("utf-8")) for t in texts)
            failed = await self._write(user, rec, self._do_insert, texts, ids, paths)
            if failed:
                rec.fail("DocumentFailed")
        return {"user": user, "ids": ids, "documents": len(ids), "failed": failed}

    async def _do_insert(self, rag: LightRAG, texts: list[str], ids: list[str],
                         paths: list[str] | None) -> list[str]:
        await rag.ainsert(texts, ids=ids, file_paths=paths)
        statuses = await rag.doc_status.get_by_ids(ids)
        failed = []
        for i, st in zip(ids, statuses, strict=False):
            status = (st or {}).get("status")
            status = getattr(status, "value", status)
            if status != "processed":
                failed.append(i)
        return failed

    async def delete(self, user: str, doc: str) -> dict[str, Any]:
        """Delete one document (by id) and what was derived only from it."""
        validate_user_id(user)
        with self.instrument.op(user, "delete") as rec:
            self._require_user(user)
            result = await self._write(user, rec, self._do_delete, doc)
            if result.get("status") != "success":
                rec.fail("DeleteFailed" if result.get("status") != "not_found" else "NotFound")
        return result

    async def _do_delete(self, rag: LightRAG, doc: str) -> dict[str, Any]:
        res = await rag.adelete_by_doc_id(doc)
        return {"doc_id": doc, "status": getattr(res, "status", None),
                "message": getattr(res, "message", None)}

    async def _write(self, user: str, rec: Any, fn: Any, *args: Any) -> Any:
        wlock = self._writing.setdefault(user, asyncio.Lock())
        async with wlock:
            entry = await self._get(user)
            rec.tuning_version = entry.version
            entry.busy += 1
            try:
                async with gate.async_write_gate(self.data_root, user,
                                                 self.gate_timeout) as held:
                    if gate.read_stamp(self.data_root, user).raw != entry.stamp:
                        # changed between loading and taking the gate: load again, inside it
                        entry = await self._reload_locked(user, entry)
                    rag = entry.rag
                    try:
                        result = await fn(rag, *args)
                    finally:
                        if rag.llm_response_cache is not None:
                            await self._drop_cached_answers(rag, keep_stamp=None)
                            await rag.llm_response_cache.index_done_callback()
                entry.stamp = held.stamp
            finally:
                entry.busy -= 1
            return result

    async def _reload_locked(self, user: str, entry: _Entry) -> _Entry:
        """Reload a workspace while this process holds its write gate."""
        entry.busy -= 1
        if self._pool.get(user) is entry:
            del self._pool[user]
        await self._finalize(user, entry, flush=False)
        self.reloads += 1
        return await self._load(user, b"", busy=1)

    def _require_user(self, user: str) -> None:
        if not (self.data_root / user).is_dir():
            raise UnknownUser(f"user {user!r} has no LightRAG data under {self.data_root} "
                              "(insert documents first)")

    async def query(self, user: str, question: str, mode: str | None = None) -> str:
        """Ask ``user``'s knowledge base. ``mode`` is one of MODES (default: the tuning's)."""
        if mode is None:
            mode = str(self.params(user).get("query_mode") or "mix")
        if mode not in MODES:
            raise RagError(f"unknown query mode {mode!r}: use one of {', '.join(MODES)}")
        if not question.strip():
            raise RagError("empty question")
        validate_user_id(user)
        with self.instrument.op(user, "query", mode) as rec:
            self._require_user(user)
            entry = await self._get(user)
            rec.tuning_version = entry.version
            param = QueryParam(mode=mode, enable_rerank=False,
                               **query_kwargs(entry.params or {}))
            entry.busy += 1
            try:
                answer = await entry.rag.aquery(question, param=param)
            finally:
                entry.busy -= 1
            if not isinstance(answer, str):
                answer = str(answer)
            rec.result_bytes = len(answer.encode("utf-8"))
        return answer

    # -- reporting and shutdown ------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        return {
            "pool_size": self.pool_size,
            "open_users": list(self._pool),
            "workspaces_held": workspaces_held(),
            "evictions": self.evictions,
            "reloads": self.reloads,
            "rss_bytes": psutil.Process(os.getpid()).memory_info().rss,
            "tuning_version": self.tuning_version,
            "provider": self.providers.name,
            "spool_written": self.instrument.spool.written if self.instrument.spool else 0,
        }

    async def evict(self, user: str) -> bool:
        entry = self._pool.get(user)
        if entry is None or entry.busy:
            return False
        del self._pool[user]
        await self._finalize(user, entry, flush=True)
        self.evictions += 1
        return True

    async def close(self) -> None:
        for user in list(self._pool):
            entry = self._pool.pop(user)
            await self._finalize(user, entry, flush=True)
        await self.providers.close()
        self.tuning.close()
        if self.instrument.spool is not None:
            self.instrument.spool.close()


def data_root(cfg: Config) -> Path:
    return cfg.path("paths.data_root")
