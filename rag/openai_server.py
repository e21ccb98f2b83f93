"""An OpenAI-compatible HTTP endpoint backed by the offline providers (``lightkeeper offline-llm``).

The stock LightRAG server, or anyone's own service, can point its OpenAI binding here and run
with no model and no network. Routes:

- ``GET /v1/models``: the two model names (any name is accepted by the other routes);
- ``POST /v1/chat/completions``: the offline LLM's reply to the conversation (system messages
  joined as the system prompt, the last user message as the prompt), as one JSON body or, with
  ``"stream": true``, as server-sent events (``chat.completion.chunk`` objects, then
  ``data: [DONE]``); ``usage`` counts tokens with the offline cl100k tokenizer;
- ``POST /v1/embeddings``: the offline hash embedding of each input, in the dimension the
  request asks (``dimensions``) or the server's default, as ``float`` lists or ``base64``
  (little-endian float32, what the ``openai`` client asks for by default);
- ``GET /health``.

Simulated latency (``Latency``: per call, per output token, per embedding call) makes clients
behave like a deployment whose time is spent in the model. Bad requests get a 400 with an
OpenAI-style ``{"error": {"message", "type"}}`` body naming what is wrong.

The server binds 127.0.0.1 unless told otherwise and keeps no state between requests.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from aiohttp import web

from lightkeeper.rag.providers.offline import HashEmbedder, Latency, OfflineLLM
from lightkeeper.rag.tokenizer import count_tokens

CHAT_MODEL = "lightkeeper-offline"
EMBED_MODEL = "lightkeeper-offline-hash"
MAX_BODY = 64 * 1024 * 1024
MAX_DIM = 8192
MAX_INPUTS = 4096


class BadRequest(ValueError):
    """A request the endpoint refuses (400)."""


@dataclass
class ServerSettings:
    latency: Latency
    embed_dim: int = 1024
    stream_chunk_chars: int = 24


def _error(status: int, message: str, kind: str = "invalid_request_error") -> web.Response:
    return web.json_response({"error": {"message": message, "type": kind, "code": None}},
                             status=status)


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the request body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    return body


def _content_text(content: Any, where: str) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # [{"type": "text", "text": ...}, ...]
        parts = []
        for part in content:
            if isinstance(part, dict) and part.get("type") == "text":
                parts.append(str(part.get("text", "")))
        return "".join(parts)
    raise BadRequest(f"{where}: content must be a string or a list of text parts")


def split_messages(messages: Any) -> tuple[str, str | None, list[dict[str, str]]]:
    """(prompt, system prompt, history) from an OpenAI ``messages`` list."""
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' must be a non-empty list")
    system: list[str] = []
    rest: list[dict[str, str]] = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise BadRequest(f"messages[{i}] must be an object with a 'role'")
        text = _content_text(m.get("content"), f"messages[{i}]")
        if m["role"] in ("system", "developer"):
            system.append(text)
        else:
            rest.append({"role": m["role"], "content": text})
    prompt = ""
    if rest and rest[-1]["role"] == "user":
        prompt = rest.pop()["content"]
    return prompt, ("\n\n".join(system) if system else None), rest


class OfflineOpenAI:
    """The aiohttp application's handlers around one offline LLM and embedder family."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.llm = OfflineLLM(settings.latency)
        self._embedders: dict[int, HashEmbedder] = {}
        self.requests = 0

    def embedder(self, dim: int) -> HashEmbedder:
        if dim not in self._embedders:
            self._embedders[dim] = HashEmbedder(dim, self.settings.latency)
        return self._embedders[dim]

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY, middlewares=[self._errors])
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/health", self.health)
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/v1/embeddings", self.embeddings)
        return app

    @web.middleware
    async def _errors(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests += 1
        try:
            return await handler(request)
        except BadRequest as exc:
            return _error(400, str(exc))
        except web.HTTPRequestEntityTooLarge:
            return _error(413, f"the request body is larger than {MAX_BODY} bytes")
        except web.HTTPNotFound:
            return _error(404, f"no route {request.method} {request.path} (this endpoint serves "
                          "/v1/models, /v1/chat/completions, /v1/embeddings)", "not_found")
        except web.HTTPMethodNotAllowed:
            return _error(405, f"{request.method} is not allowed on {request.path}",
                          "invalid_request_error")

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "requests": self.requests})

    async def models(self, request: web.Request) -> web.Response:
        now = int(time.time())
        return web.json_response({"object": "list", "data": [
            {"id": CHAT_MODEL, "object": "model", "created": now, "owned_by": "lightkeeper"},
            {"id": EMBED_MODEL, "object": "model", "created": now, "owned_by": "lightkeeper"},
        ]})

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = await _json_body(request)
        prompt, system, history = split_messages(body.get("messages"))
        model = str(body.get("model") or CHAT_MODEL)
        stream = body.get("stream", False)
        if not isinstance(stream, bool):
            raise BadRequest("'stream' must be true or false")
        reply = self.llm.respond(prompt, system)
        lat = self.settings.latency
        tokens_in = count_tokens((system or "") + prompt +
                                 "".join(m["content"] for m in history))
        tokens_out = count_tokens(reply)
        cid = f"chatcmpl-lk{time.time_ns():x}"
        created = int(time.time())
        usage = {"prompt_tokens": tokens_in, "completion_tokens": tokens_out,
                 "total_tokens": tokens_in + tokens_out}
        if not stream:
            if lat.llm_ms or lat.llm_ms_per_token:
                await asyncio.sleep((lat.llm_ms + lat.llm_ms_per_token * tokens_out) / 1000.0)
            return web.json_response({
                "id": cid, "object": "chat.completion", "created": created, "model": model,
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": reply}}],
                "usage": usage})
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache"})
        await resp.prepare(request)

        def chunk(delta: dict[str, Any], finish: str | None = None,
                  with_usage: bool = False) -> bytes:
            obj: dict[str, Any] = {"id": cid, "object": "chat.completion.chunk",
                                   "created": created, "model": model,
                                   "choices": [{"index": 0, "delta": delta,
                                                "finish_reason": finish}]}
            if with_usage:
                obj["usage"] = usage
            return b"data: " + json.dumps(obj).encode() + b"\n\n"

        if lat.llm_ms:
            await asyncio.sleep(lat.llm_ms / 1000.0)  # time to first token
        await resp.write(chunk({"role": "assistant", "content": ""}))
        step = max(1, self.settings.stream_chunk_chars)
        for i in range(0, len(reply), step):
            piece = reply[i:i + step]
            if lat.llm_ms_per_token:
                await asyncio.sleep(lat.llm_ms_per_token * max(1, len(piece) // 4) / 1000.0)
            await resp.write(chunk({"content": piece}))
        opts = body.get("stream_options")
        include_usage = isinstance(opts, dict) and bool(opts.get("include_usage"))
        await resp.write(chunk({}, "stop", with_usage=include_usage))
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    async def embeddings(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        inputs = body.get("input")
        if isinstance(inputs, str):
            inputs = [inputs]
        if not isinstance(inputs, list) or not all(isinstance(t, str) for t in inputs):
            raise BadRequest("'input' must be a string or a list of strings (token arrays are "
                             "not supported by the offline embedder)")
        if len(inputs) > MAX_INPUTS:
            raise BadRequest(f"{len(inputs)} inputs: at most {MAX_INPUTS} per request")
        dim = body.get("dimensions", self.settings.embed_dim)
        if isinstance(dim, bool) or not isinstance(dim, int) or not 8 <= dim <= MAX_DIM:
            raise BadRequest(f"'dimensions' must be an integer from 8 to {MAX_DIM}, not {dim!r}")
        fmt = body.get("encoding_format", "float")
        if fmt not in ("float", "base64"):
            raise BadRequest(f"'encoding_format' must be 'float' or 'base64', not {fmt!r}")
        vectors = await self.embedder(dim)(inputs)
        data = []
        for i, vec in enumerate(vectors):
            emb: Any = (base64.b64encode(np.asarray(vec, dtype="<f4").tobytes()).decode("ascii")
                        if fmt == "base64" else [float(x) for x in vec])
            data.append({"object": "embedding", "index": i, "embedding": emb})
        tokens = sum(len(t) for t in inputs) // 4
        return web.json_response({"object": "list", "data": data,
                                  "model": str(body.get("model") or EMBED_MODEL),
                                  "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})


async def serve(settings: ServerSettings, host: str, port: int,
                ready: Any = None) -> None:
    """Run until cancelled. ``ready(host, port)`` is called once the socket listens (port 0:
    the OS picks one, and ``ready`` learns which)."""
    sock = socket.create_server((host, port), reuse_port=False)
    bound = sock.getsockname()[1]
    runner = web.AppRunner(OfflineOpenAI(settings).app(), access_log=None)
    await runner.setup()
    try:
        await web.SockSite(runner, sock).start()
        if ready is not None:
            ready(host, bound)
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
        sock.close()
