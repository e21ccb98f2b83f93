"""The demo's workload over LightRAG's REST API (a ``lightkeeper serve`` per served user).

The same shape as the library workload (``rag/workload.py``): seed a user's documents, one
first question per mode, then a gentle mix of queries, inserts and deletes; but every
operation is an HTTP request to the user's server, which records it itself.

LightRAG's server keeps only a document's file name (``file_source``), so every document
sent here has a name of its own; seeding skips names the server already has, so a second
demo run adds nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from pathlib import PurePosixPath
from typing import Any

import aiohttp

TIMEOUT = aiohttp.ClientTimeout(total=300)
PAGE = 200  # the server's largest page


class RestError(RuntimeError):
    """The server answered with an error (the message has its status and reason)."""


class Served:
    """One user's ``lightkeeper serve``, spoken to over HTTP."""

    def __init__(self, user: str, url: str, session: aiohttp.ClientSession) -> None:
        self.user = user
        self.url = url.rstrip("/")
        self.session = session

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        async with self.session.request(method, self.url + path, json=body) as r:
            if r.status >= 400:
                text = (await r.text())[:300]
                raise RestError(f"{self.user}: {method} {path}: HTTP {r.status} {text}")
            return await r.json(content_type=None)

    async def documents(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        page = 1
        while True:
            doc = await self.call("POST", "/documents/paginated",
                                  {"page": page, "page_size": PAGE})
            docs = doc.get("documents") or []
            out += docs
            if len(docs) < PAGE:
                return out
            page += 1

    async def idle(self) -> bool:
        st = await self.call("GET", "/documents/pipeline_status")
        return not st.get("busy") and not st.get("pending_enqueues")

    async def insert(self, texts: Sequence[str], names: Sequence[str]) -> None:
        await self.call("POST", "/documents/texts", {"texts": list(texts),
                                                     "file_sources": list(names)})

    async def query(self, question: str, mode: str) -> str:
        r = await self.call("POST", "/query", {"query": question, "mode": mode})
        return str(r.get("response") or "")

    async def delete_named(self, name: str) -> bool:
        """Delete the processed document called ``name``; False when there is none (yet)."""
        for d in await self.documents():
            if d.get("file_path") == name and str(d.get("status")) == "processed":
                r = await self.call("DELETE", "/documents/delete_document",
                                    {"doc_ids": [d["id"]]})
                return r.get("status") == "deletion_started"
        return False


def name_of(path: str) -> str:
    """The file name the server keeps for a document path."""
    return PurePosixPath(path).name


async def seed(srv: Served, docs: Sequence[tuple[str, str]], batch: int = 3,
               progress: Callable[[str, int, int], None] | None = None,
               timeout: float = 900.0) -> dict[str, Any]:
    """Insert the documents (text, path) the server does not have yet, in small batches, and
    wait until its pipeline has processed them all. Returns ``{"documents", "failed"}``."""
    wanted = {name_of(p): t for t, p in docs}
    have = {d.get("file_path") for d in await srv.documents()}
    missing = [(t, n) for n, t in wanted.items() if n not in have]
    for i in range(0, len(missing), batch):
        part = missing[i:i + batch]
        await srv.insert([t for t, _ in part], [n for _, n in part])
    deadline = time.monotonic() + timeout
    while True:
        status = {d.get("file_path"): str(d.get("status")) for d in await srv.documents()}
        done = sum(1 for n in wanted if status.get(n) in ("processed", "failed"))
        if progress:
            progress(srv.user, done, len(wanted))
        if done == len(wanted) and await srv.idle():
            break
        if time.monotonic() > deadline:
            raise RestError(f"{srv.user}: {len(wanted) - done} documents still not processed "
                            f"after {timeout:.0f} s")
        await asyncio.sleep(0.5)
    return {"documents": len(wanted),
            "failed": sorted(n for n in wanted if status.get(n) == "failed")}


async def first_queries(srv: Served, questions: Sequence[str], modes: Sequence[str],
                        offset: int = 0) -> int:
    for j, mode in enumerate(modes):
        await srv.query(questions[(offset + j) % len(questions)], mode)
    return len(modes)
