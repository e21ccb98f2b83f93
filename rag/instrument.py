"""Per-operation measurement of LightRAG: duration, and the LLM/embedding share of it.

An operation (insert, query, delete) opens an :class:`Op` with :meth:`Instrument.op`. The op is
put in a context variable; the wrapped LLM and embedding functions add their time, call count,
items and tokens to whatever op is current. LightRAG runs model calls in worker tasks of its
concurrency limiter but executes each call under the caller's captured context
(``lightrag.utils.priority_limit_async_func_call``), so the attribution holds under
concurrency. Time a call spends queued for a concurrency slot counts as LightRAG's own time.

Tokens: a provider that knows the true usage (an OpenAI-compatible reply's ``usage``) reports it
with :func:`report_usage`; otherwise tokens are estimated as characters / 4, which keeps the
hot path cheap (counting with tiktoken would cost more than the whole overhead budget).
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar, Token
from typing import Any

from lightkeeper.rag.spool import SpoolWriter

_current: ContextVar[Op | None] = ContextVar("lightkeeper_rag_op", default=None)
# Set by the LLM wrapper around one call: [tokens_in, tokens_out] reported by the provider.
_usage: ContextVar[list[int] | None] = ContextVar("lightkeeper_rag_usage", default=None)

_perf = time.perf_counter


class Op:
    """The measurements of one operation; becomes one spool record."""

    __slots__ = ("ts", "t0", "user", "op", "mode", "llm_s", "llm_calls", "embed_s",
                 "embed_calls", "embed_items", "tokens_in", "tokens_out", "result_bytes",
                 "outcome", "error_class", "tuning_version", "queue_wait_s")

    def __init__(self, user: str, op: str, mode: str | None) -> None:
        self.ts = time.time()
        self.t0 = _perf()
        self.user = user
        self.op = op
        self.mode = mode
        self.llm_s = 0.0
        self.llm_calls = 0
        self.embed_s = 0.0
        self.embed_calls = 0
        self.embed_items = 0
        self.tokens_in = 0
        self.tokens_out = 0
        self.result_bytes = 0
        self.outcome = "ok"
        self.error_class: str | None = None
        self.tuning_version: int | None = None
        # Seconds a queued operation (a pipeline insert) waited before it ran; its
        # duration_s is then the run time only. None for operations that do not queue.
        self.queue_wait_s: float | None = None

    def fail(self, error: BaseException | str) -> None:
        self.outcome = "error"
        self.error_class = error if isinstance(error, str) else type(error).__name__


def new_op_id() -> str:
    """A random uuid4 as 32 hex digits (what ``uuid.uuid4().hex`` gives, without its cost)."""
    b = bytearray(os.urandom(16))
    b[6] = (b[6] & 0x0F) | 0x40
    b[8] = (b[8] & 0x3F) | 0x80
    return b.hex()


class Instrument:
    """Writes one spool record per operation, tagged with tuning version and bench run id."""

    def __init__(self, spool: SpoolWriter | None, tuning_version: int | None = None,
                 run_id: str | None = None) -> None:
        self.spool = spool
        self.tuning_version = tuning_version
        self.run_id = run_id
        self.pid = os.getpid()
        self.last: dict[str, Any] | None = None

    def op(self, user: str, op: str, mode: str | None = None) -> _OpScope:
        return _OpScope(self, Op(user, op, mode))

    def finish(self, rec: Op) -> dict[str, Any]:
        duration = _perf() - rec.t0
        record = {
            "v": 1, "op_id": new_op_id(), "ts": rec.ts, "user": rec.user, "op": rec.op,
            "mode": rec.mode, "duration_s": duration, "llm_s": rec.llm_s,
            "llm_calls": rec.llm_calls, "embed_s": rec.embed_s, "embed_calls": rec.embed_calls,
            "embed_items": rec.embed_items, "tokens_in": rec.tokens_in,
            "tokens_out": rec.tokens_out, "result_bytes": rec.result_bytes,
            "outcome": rec.outcome, "error_class": rec.error_class,
            "tuning_version": rec.tuning_version if rec.tuning_version is not None
            else self.tuning_version, "pid": self.pid, "run_id": self.run_id,
        }
        if rec.queue_wait_s is not None:
            record["queue_wait_s"] = rec.queue_wait_s
        self.last = record
        if self.spool is not None:
            self.spool.write(record)
        return record


class _OpScope:
    __slots__ = ("inst", "rec", "token")

    def __init__(self, inst: Instrument, rec: Op) -> None:
        self.inst = inst
        self.rec = rec
        self.token: Token[Op | None] | None = None

    def __enter__(self) -> Op:
        self.token = _current.set(self.rec)
        return self.rec

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if self.token is not None:
            _current.reset(self.token)
        if exc is not None and self.rec.outcome == "ok":
            self.rec.fail(exc)
        self.inst.finish(self.rec)

    def detach(self) -> None:
        """Stop being the current op of this context now; the op stays open and is finished
        by ``__exit__`` later, possibly in another context (a streamed answer's consumer)."""
        if self.token is not None:
            _current.reset(self.token)
            self.token = None

    async def __aenter__(self) -> Op:
        return self.__enter__()

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self.__exit__(exc_type, exc, tb)


def current_op() -> Op | None:
    return _current.get()


def report_usage(tokens_in: int, tokens_out: int) -> None:
    """Called by a provider inside an LLM call with the true token usage."""
    usage = _usage.get()
    if usage is not None:
        usage[0] = int(tokens_in)
        usage[1] = int(tokens_out)


def _text_len(prompt: Any, system_prompt: Any, history: Any) -> int:
    n = len(prompt) if isinstance(prompt, str) else 0
    if isinstance(system_prompt, str):
        n += len(system_prompt)
    if history:
        for m in history:
            c = m.get("content") if isinstance(m, dict) else None
            if isinstance(c, str):
                n += len(c)
    return n


def wrap_llm(func: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """Wrap an LLM function so its time, calls and tokens count towards the current op."""

    async def instrumented_llm(prompt: str, system_prompt: str | None = None,
                               history_messages: list[dict[str, Any]] | None = None,
                               **kwargs: Any) -> Any:
        rec = _current.get()
        if rec is None:
            return await func(prompt, system_prompt=system_prompt,
                              history_messages=history_messages, **kwargs)
        usage = [-1, -1]
        token = _usage.set(usage)
        t0 = _perf()
        try:
            result = await func(prompt, system_prompt=system_prompt,
                                history_messages=history_messages, **kwargs)
        finally:
            rec.llm_s += _perf() - t0
            rec.llm_calls += 1
            _usage.reset(token)
        if usage[0] >= 0:
            rec.tokens_in += usage[0]
            rec.tokens_out += usage[1]
        else:
            rec.tokens_in += _text_len(prompt, system_prompt, history_messages) // 4
            if isinstance(result, str):
                rec.tokens_out += len(result) // 4
        return result

    instrumented_llm.__wrapped__ = func  # type: ignore[attr-defined]
    return instrumented_llm


def wrap_embed(func: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """Wrap an embedding function so its time, calls and items count towards the current op."""

    async def instrumented_embed(texts: list[str], *args: Any, **kwargs: Any) -> Any:
        rec = _current.get()
        if rec is None:
            return await func(texts, *args, **kwargs)
        t0 = _perf()
        try:
            return await func(texts, *args, **kwargs)
        finally:
            rec.embed_s += _perf() - t0
            rec.embed_calls += 1
            rec.embed_items += len(texts)

    instrumented_embed.__wrapped__ = func  # type: ignore[attr-defined]
    return instrumented_embed
