"""OpenAI-compatible providers against a local fake endpoint (the one mock: a paid API).

The fake answers with the offline provider's logic, so LightRAG runs end to end through HTTP.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
from pathlib import Path

import pytest
from aiohttp import web

from lightkeeper.rag.instrument import Instrument, wrap_llm
from lightkeeper.rag.providers.offline import HashEmbedder, OfflineLLM
from lightkeeper.rag.providers.openai_compat import (
    OpenAIChat,
    OpenAIEmbed,
    ProviderError,
    read_api_key,
)
from lightkeeper.rag.runtime import RagRuntime
from tests.rag.conftest import make_cfg

KEY = "sk-test-1234567890abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakeOpenAI:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.requests: list[tuple[str, dict, str]] = []
        self.llm = OfflineLLM()
        self.embedder = HashEmbedder(64)

    async def chat(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(("chat", body, request.headers.get("Authorization", "")))
        if self.fail:
            return web.Response(status=500, text="upstream exploded")
        msgs = body["messages"]
        system = next((m["content"] for m in msgs if m["role"] == "system"), None)
        reply = self.llm.respond(msgs[-1]["content"], system)
        return web.json_response({"choices": [{"message": {"content": reply}}],
                                  "usage": {"prompt_tokens": 111, "completion_tokens": 22}})

    async def embeddings(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(("embed", body, request.headers.get("Authorization", "")))
        vecs = await self.embedder(body["input"])
        return web.json_response({"data": [{"index": i, "embedding": v.tolist()}
                                           for i, v in enumerate(vecs)]})


async def serve(fake: FakeOpenAI) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", fake.chat)
    app.router.add_post("/v1/embeddings", fake.embeddings)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}/v1"


def test_chat_sends_messages_and_key_and_reports_usage() -> None:
    fake = FakeOpenAI()

    async def main() -> dict:
        runner, url = await serve(fake)
        chat = OpenAIChat(url, "m1", KEY)
        inst = Instrument(None)
        try:
            with inst.op("alice", "query", "mix"):
                out = await wrap_llm(chat)("Who commands the ferry?", system_prompt="sys",
                                           history_messages=[{"role": "user", "content": "hi"}])
            assert isinstance(out, str)
        finally:
            await chat.close()
            await runner.cleanup()
        return inst.last

    rec = asyncio.run(main())
    kind, body, auth = fake.requests[0]
    assert kind == "chat" and body["model"] == "m1" and auth == f"Bearer {KEY}"
    assert [m["role"] for m in body["messages"]] == ["system", "user", "user"]
    assert rec["tokens_in"] == 111 and rec["tokens_out"] == 22 and rec["llm_calls"] == 1
    assert KEY not in repr(OpenAIChat("http://x/v1", "m", KEY))


def test_errors_are_clear_and_never_carry_the_key() -> None:
    fake = FakeOpenAI(fail=True)

    async def main() -> None:
        runner, url = await serve(fake)
        chat = OpenAIChat(url, "m1", KEY)
        emb = OpenAIEmbed(url, "e1", 32, KEY)  # the fake answers 64 dimensions
        try:
            with pytest.raises(ProviderError, match="HTTP 500") as e1:
                await chat("q")
            with pytest.raises(ProviderError, match=r"shape \(1, 64\).*rag.embed_dim") as e2:
                await emb(["text"])
            for e in (e1, e2):
                assert KEY not in str(e.value)
        finally:
            await chat.close()
            await emb.close()
            await runner.cleanup()
        with pytest.raises(ProviderError, match="unreachable"):
            dead = OpenAIChat(f"http://127.0.0.1:{free_port()}/v1", "m", KEY)
            try:
                await dead("q")
            finally:
                await dead.close()

    asyncio.run(main())
    with pytest.raises(ProviderError, match="http"):
        OpenAIChat("ftp://x", "m")


def test_key_file_must_be_owner_only(tmp_path: Path, monkeypatch) -> None:
    f = tmp_path / "key"
    f.write_text(KEY + "\n")
    os.chmod(f, 0o644)
    with pytest.raises(ProviderError, match="readable by others"):
        read_api_key("X", f)
    os.chmod(f, 0o600)
    assert read_api_key("X", f) == KEY
    monkeypatch.setenv("LK_TEST_KEY", "from-env")
    assert read_api_key("LK_TEST_KEY", None) == "from-env"


def test_lightrag_runs_end_to_end_through_the_http_providers(tmp_path: Path, monkeypatch) -> None:
    fake = FakeOpenAI()
    monkeypatch.setenv("LK_TEST_KEY", KEY)

    async def main() -> str:
        runner, url = await serve(fake)
        cfg = make_cfg(tmp_path / "state", rag__provider="openai", rag__llm_url=url,
                       rag__llm_model="m1", rag__embed_model="e1", rag__embed_dim="64",
                       rag__api_key_env="LK_TEST_KEY")
        try:
            async with RagRuntime(cfg) as rt:
                await rt.insert("alice", ["Captain Ilya Brenn commands the ferry Marigold."])
                return await rt.query("alice", "Who commands the ferry Marigold?", "mix")
        finally:
            await runner.cleanup()

    answer = asyncio.run(main())
    assert "Ilya Brenn" in answer
    kinds = {k for k, _, _ in fake.requests}
    assert kinds == {"chat", "embed"}
    assert all(auth == f"Bearer {KEY}" for _, _, auth in fake.requests)
    spool = "".join(p.read_text() for p in (tmp_path / "state" / "spool").glob("*.jsonl"))
    assert KEY not in spool
    recs = [json.loads(line) for line in spool.splitlines()]
    assert recs[-1]["tokens_in"] == 111 * recs[-1]["llm_calls"]
