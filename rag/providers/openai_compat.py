"""OpenAI-compatible HTTP providers (OpenAI, vLLM, Ollama's /v1, LiteLLM...) over aiohttp.

LightRAG's own bindings install missing client packages with pip at run time; this module uses
only aiohttp, which lightkeeper depends on, so nothing is installed or downloaded. The API key
comes from an environment variable or an owner-only file, is sent only in the Authorization
header, and never appears in logs, errors or reprs.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

from lightkeeper.rag.instrument import report_usage


class ProviderError(RuntimeError):
    """The model endpoint failed or answered something unusable."""


def read_api_key(env_name: str, key_file: str | Path | None) -> str:
    """The API key from ``key_file`` (must not be group/other readable) or ``$env_name``."""
    if key_file:
        path = Path(key_file)
        try:
            st = path.stat()
        except FileNotFoundError:
            raise ProviderError(f"rag.api_key_file {path} does not exist") from None
        if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ProviderError(
                f"rag.api_key_file {path} is readable by others: chmod 600 it first")
        return path.read_text(encoding="utf-8").strip()
    return os.environ.get(env_name, "") if env_name else ""


class _Endpoint:
    def __init__(self, base_url: str, model: str, api_key: str, timeout: float) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ProviderError(f"base URL {base_url!r} must start with http:// or https://")
        if not model:
            raise ProviderError(f"no model name configured for {base_url}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self._key = api_key
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:  # never show the key
        return f"{type(self).__name__}({self.base_url!r}, model={self.model!r})"

    async def _post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        headers = {"Content-Type": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        url = f"{self.base_url}{path}"
        try:
            async with self._session.post(url, json=payload, headers=headers) as resp:
                if resp.status >= 400:
                    text = (await resp.text())[:300]
                    raise ProviderError(f"{url} answered HTTP {resp.status}: {text}")
                data = await resp.json(content_type=None)
        except aiohttp.ClientError as exc:
            raise ProviderError(f"{url} unreachable: {type(exc).__name__}: {exc}") from None
        if not isinstance(data, dict):
            raise ProviderError(f"{url} answered a non-object JSON body")
        return data

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()


class OpenAIChat(_Endpoint):
    """An ``llm_model_func``: POST {base}/chat/completions."""

    def __init__(self, base_url: str, model: str, api_key: str = "", timeout: float = 180.0,
                 extra: dict[str, Any] | None = None) -> None:
        super().__init__(base_url, model, api_key, timeout)
        self.extra = dict(extra or {})

    async def __call__(self, prompt: str, system_prompt: str | None = None,
                       history_messages: list[dict[str, Any]] | None = None,
                       **kwargs: Any) -> str:
        messages: list[dict[str, Any]] = []
        if system_prompt:
            messages.append({"role": "system", "content": system_prompt})
        messages.extend(history_messages or [])
        messages.append({"role": "user", "content": prompt})
        payload: dict[str, Any] = {"model": self.model, "messages": messages, **self.extra}
        fmt = kwargs.get("response_format")
        if isinstance(fmt, dict):
            payload["response_format"] = fmt
        data = await self._post("/chat/completions", payload)
        try:
            content = data["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise ProviderError(f"{self.base_url}/chat/completions: no choices in reply") from None
        usage = data.get("usage") or {}
        if isinstance(usage, dict) and "prompt_tokens" in usage:
            report_usage(usage.get("prompt_tokens") or 0, usage.get("completion_tokens") or 0)
        return str(content or "")


class OpenAIEmbed(_Endpoint):
    """An embedding function: POST {base}/embeddings."""

    def __init__(self, base_url: str, model: str, dim: int, api_key: str = "",
                 timeout: float = 60.0) -> None:
        super().__init__(base_url, model, api_key, timeout)
        if dim <= 0:
            raise ProviderError("rag.embed_dim must be set for an OpenAI-compatible embedder")
        self.dim = dim

    async def __call__(self, texts: list[str], **kwargs: Any) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        data = await self._post("/embeddings", {"model": self.model, "input": list(texts)})
        try:
            rows = sorted(data["data"], key=lambda r: r.get("index", 0))
            arr = np.array([r["embedding"] for r in rows], dtype=np.float32)
        except (KeyError, TypeError, ValueError):
            raise ProviderError(f"{self.base_url}/embeddings: malformed reply") from None
        if arr.shape != (len(texts), self.dim):
            raise ProviderError(
                f"{self.base_url}/embeddings returned shape {arr.shape}, expected "
                f"({len(texts)}, {self.dim}): check rag.embed_dim for model {self.model!r}")
        return arr
