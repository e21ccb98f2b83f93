"""The stable API for recording LightRAG operations from your own service.

Import from here, not from ``lightkeeper.rag``: this module's names keep their meaning across
lightkeeper releases (additions only), while the runtime's internals may move.

- :class:`Service` is the one object a service keeps: its spool and its data root.
  ``service.wrap_llm(f)`` / ``service.wrap_embed(f)`` wrap LightRAG's model functions (pass
  them when you build ``LightRAG``) so each operation's LLM and embedding time, calls and
  tokens are split out; ``service.wrap(rag, user)`` returns the instance with its operations
  recorded (``ainsert``, ``aquery``, ``aquery_llm``, ``aquery_data``, ``adelete_by_doc_id``
  and the graph edits: one spool record each) and its writes holding the user's write gate;
  ``service.gate.writer(user)`` is the write gate itself, a context manager (``with`` or
  ``async with``) for any other write; ``service.op(user, op, mode)`` records a block of
  your own.
- :class:`Instrument` records one operation per ``with instrument.op(user, "query", mode):``
  block into the spool the agent ingests (one JSON line per operation).
- :func:`wrap_llm` and :func:`wrap_embed` are the model-function wrappers;
  :func:`report_usage` lets a model function report true token counts.
- :class:`SpoolWriter` is the spool file writer behind an ``Instrument``.
- :func:`offline_tokenizer` is a ``LightRAG`` tokenizer that downloads nothing.

See ``docs/lightrag.md`` ("Your own service") for a complete example service; a test runs it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

from lightkeeper.ids import validate_user_id
from lightkeeper.rag import gate as _gate
from lightkeeper.rag.instrument import (
    Instrument,
    Op,
    current_op,
    report_usage,
    wrap_embed,
    wrap_llm,
)
from lightkeeper.rag.spool import SpoolWriter
from lightkeeper.rag.tokenizer import offline_tokenizer

__all__ = ["Gate", "Instrument", "Op", "Service", "SpoolWriter", "Watched",
           "offline_tokenizer", "report_usage", "wrap_embed", "wrap_llm"]

GRAPH_EDITS = {"aedit_entity": "edit_entity", "aedit_relation": "edit_relation",
               "acreate_entity": "create_entity", "acreate_relation": "create_relation",
               "amerge_entities": "merge_entities", "adelete_by_entity": "delete_entity",
               "adelete_by_relation": "delete_relation"}


class _GateHold:
    """The gate of one user as ``with`` (blocking) or ``async with`` (waits in the loop)."""

    def __init__(self, data_root: Path, user: str, timeout: float, write: bool) -> None:
        self.args = (data_root, validate_user_id(user), timeout)
        self.write = write
        self._cm: Any = None

    def __enter__(self) -> None:
        self._cm = (_gate.write_gate if self.write else _gate.read_gate)(*self.args)
        self._cm.__enter__()

    def __exit__(self, *exc: Any) -> None:
        self._cm.__exit__(*exc)

    async def __aenter__(self) -> None:
        self._cm = (_gate.async_write_gate if self.write else _gate.async_read_gate)(*self.args)
        await self._cm.__aenter__()

    async def __aexit__(self, *exc: Any) -> None:
        await self._cm.__aexit__(*exc)


class Gate:
    """The write gate of the users under ``data_root`` (``<data_root>/<user>/.lightkeeper.lock``).

    ``writer(user)`` holds ``LOCK_EX`` for a write (insert, delete, graph edit: the whole of it,
    LightRAG's final flush included); ``reader(user)`` holds ``LOCK_SH`` for a reader that
    needs a quiet moment. Both wait up to ``timeout`` seconds, then raise ``GateTimeout``.
    """

    def __init__(self, data_root: str | Path, timeout: float = 120.0) -> None:
        self.data_root = Path(data_root)
        self.timeout = float(timeout)

    def writer(self, user: str) -> _GateHold:
        return _GateHold(self.data_root, user, self.timeout, write=True)

    def reader(self, user: str) -> _GateHold:
        return _GateHold(self.data_root, user, self.timeout, write=False)


class Service:
    """What a LightRAG service keeps to be watched: a spool and its users' data root."""

    def __init__(self, data_root: str | Path, spool_dir: str | Path, *,
                 tuning_version: int | None = None, gate_timeout: float = 120.0) -> None:
        self.instrument = Instrument(SpoolWriter(spool_dir), tuning_version)
        self.gate = Gate(data_root, gate_timeout)
        self.wrap_llm = wrap_llm
        self.wrap_embed = wrap_embed

    def op(self, user: str, op: str, mode: str | None = None) -> Any:
        """Record one operation: ``with service.op(user, "query", "mix") as rec: ...``."""
        return self.instrument.op(validate_user_id(user), op, mode)

    def wrap(self, rag: Any, user: str) -> Watched:
        """``rag`` (a ``LightRAG`` of ``user``'s workspace) with its operations recorded and
        its writes gated. Other attributes pass through unchanged."""
        return Watched(self, rag, validate_user_id(user))

    def close(self) -> None:
        if self.instrument.spool is not None:
            self.instrument.spool.close()


async def _stream(iterator: AsyncIterator[Any], scope: Any, rec: Op) -> AsyncIterator[Any]:
    exc: BaseException | None = None
    try:
        while True:
            t0 = time.perf_counter()
            try:
                chunk = await iterator.__anext__()
            except StopAsyncIteration:
                break
            finally:
                rec.llm_s += time.perf_counter() - t0
            if isinstance(chunk, str):
                rec.result_bytes += len(chunk.encode("utf-8"))
            yield chunk
    except BaseException as e:
        exc = e
        raise
    finally:
        scope.__exit__(type(exc) if exc else None, exc, None)


class Watched:
    """A ``LightRAG`` instance whose operations are recorded and whose writes are gated."""

    def __init__(self, service: Service, rag: Any, user: str) -> None:
        self._service = service
        self._rag = rag
        self._user = user

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._rag, name)
        if name in GRAPH_EDITS:
            return self._graph_edit(name, attr)
        return attr

    @contextmanager
    def _op(self, op: str, mode: str | None) -> Iterator[Op | None]:
        if current_op() is not None:  # inside an operation already recorded
            yield None
            return
        with self._service.op(self._user, op, mode) as rec:
            yield rec

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[None]:
        async with self._service.gate.writer(self._user):
            yield

    async def ainsert(self, *args: Any, **kwargs: Any) -> Any:
        with self._op("insert", None):
            async with self._write():
                return await self._rag.ainsert(*args, **kwargs)

    async def adelete_by_doc_id(self, *args: Any, **kwargs: Any) -> Any:
        with self._op("delete", None) as rec:
            async with self._write():
                result = await self._rag.adelete_by_doc_id(*args, **kwargs)
            status = getattr(result, "status", None)
            if rec is not None and status not in (None, "success"):
                rec.fail(f"Delete{str(status).capitalize()}")
            return result

    async def _query(self, method: str, query: str, param: Any = None, *args: Any,
                     **kwargs: Any) -> Any:
        call: Callable[..., Awaitable[Any]] = getattr(self._rag, method)
        call_args = (query,) if param is None else (query, param)
        mode = getattr(param, "mode", None) if param is not None else "mix"
        if method == "aquery_data":
            mode = f"{mode}-data"
        if current_op() is not None:
            return await call(*call_args, *args, **kwargs)
        scope = self._service.op(self._user, "query", mode)
        rec = scope.__enter__()
        try:
            result = await call(*call_args, *args, **kwargs)
        except BaseException as exc:
            scope.__exit__(type(exc), exc, None)
            raise
        if hasattr(result, "__anext__"):  # a streamed answer: the op ends with the stream
            scope.detach()
            return _stream(result, scope, rec)
        if isinstance(result, str):
            rec.result_bytes = len(result.encode("utf-8"))
        scope.__exit__(None, None, None)
        return result

    async def aquery(self, query: str, param: Any = None, *args: Any, **kwargs: Any) -> Any:
        return await self._query("aquery", query, param, *args, **kwargs)

    async def aquery_llm(self, query: str, param: Any = None, *args: Any,
                         **kwargs: Any) -> Any:
        return await self._query("aquery_llm", query, param, *args, **kwargs)

    async def aquery_data(self, query: str, param: Any = None, *args: Any,
                          **kwargs: Any) -> Any:
        return await self._query("aquery_data", query, param, *args, **kwargs)

    def _graph_edit(self, name: str, method: Callable[..., Awaitable[Any]]) -> Any:
        async def edit(*args: Any, **kwargs: Any) -> Any:
            with self._op("graph", GRAPH_EDITS[name]):
                async with self._write():
                    return await method(*args, **kwargs)

        return edit
