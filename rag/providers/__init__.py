"""LLM and embedding providers for LightRAG: offline (default) or OpenAI-compatible HTTP.

``build_providers(cfg)`` constructs them without touching the network. The embedding
dimension is the tuning parameter ``embedding_dim`` of the user's effective parameters when it
is not 0, else ``rag.embed_dim``, else the provider's own (offline: 256).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from lightkeeper.config import Config
from lightkeeper.rag.providers.offline import HashEmbedder, Latency, OfflineLLM


@dataclass
class Providers:
    name: str
    llm: Callable[..., Awaitable[Any]]
    make_embedder: Callable[[int], Callable[..., Awaitable[Any]]]
    model_name: str
    config_dim: int = 0  # rag.embed_dim
    default_dim: int = 0  # the provider's own (0: none, the operator must say)
    embed_model: str = ""
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    _embedders: dict[int, Callable[..., Awaitable[Any]]] = field(default_factory=dict)

    def dim_for(self, params: dict[str, Any]) -> int:
        dim = int(params.get("embedding_dim") or self.config_dim or self.default_dim)
        if dim <= 0:
            raise ValueError("the embedding dimension is unknown: set rag.embed_dim to the "
                             "dimension of rag.embed_model (or the tuning's embedding_dim)")
        return dim

    def embedder(self, dim: int) -> Callable[..., Awaitable[Any]]:
        if dim not in self._embedders:
            emb = self.make_embedder(dim)
            self._embedders[dim] = emb
            close = getattr(emb, "close", None)
            if close is not None:
                self.closers.append(close)
        return self._embedders[dim]

    async def close(self) -> None:
        for close in self.closers:
            await close()


def build_providers(cfg: Config) -> Providers:
    provider = cfg["rag.provider"]
    if provider == "offline":
        latency = Latency(cfg["rag.simulate_llm_ms"], cfg["rag.simulate_llm_ms_per_token"],
                          cfg["rag.simulate_embed_ms"])
        return Providers("offline", OfflineLLM(latency),
                         lambda dim: HashEmbedder(dim, latency), "lightkeeper-offline",
                         config_dim=int(cfg["rag.embed_dim"] or 0), default_dim=256,
                         embed_model="lightkeeper-offline-hash")
    # aiohttp loads only when an API provider is configured (the offline demo never needs it)
    from lightkeeper.rag.providers.openai_compat import (  # noqa: PLC0415
        OpenAIChat,
        OpenAIEmbed,
        read_api_key,
    )

    key = read_api_key(cfg["rag.api_key_env"], cfg["rag.api_key_file"] or None)
    timeout = float(cfg["rag.request_timeout"])
    chat = OpenAIChat(cfg["rag.llm_url"], cfg["rag.llm_model"], key, timeout=timeout)
    embed_url = cfg["rag.embed_url"] or cfg["rag.llm_url"]
    embed_model = cfg["rag.embed_model"]
    return Providers("openai", chat,
                     lambda dim: OpenAIEmbed(embed_url, embed_model, dim, key, timeout=timeout),
                     cfg["rag.llm_model"], config_dim=int(cfg["rag.embed_dim"] or 0),
                     embed_model=embed_model, closers=[chat.close])
