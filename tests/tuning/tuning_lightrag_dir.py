"""Build a real LightRAG working directory offline: real LightRAG 1.5.7 and its storages, a
deterministic hashing embedder and an extractor that answers in LightRAG's record format (the
only stand-in is the paid LLM API)."""

from __future__ import annotations

import asyncio
import hashlib
import re
from pathlib import Path
from typing import Any

import numpy as np


async def _llm(prompt: str, system_prompt: str | None = None, history_messages: Any = None,
               **kwargs: Any) -> str:
    text = f"{system_prompt or ''}\n{prompt}"
    names = sorted(set(re.findall(r"\b([A-Z][a-z]{2,})\b", text)))[:6] or ["Thing"]
    lines = [f"entity<|#|>{n}<|#|>concept<|#|>{n} is mentioned in the text." for n in names]
    for a, b in zip(names, names[1:], strict=False):
        lines.append(f"relation<|#|>{a}<|#|>{b}<|#|>related<|#|>{a} relates to {b}.")
    return "\n".join(lines) + "\n<|COMPLETE|>"


def _embedder(dim: int) -> Any:
    async def embed(texts: list[str], **kwargs: Any) -> np.ndarray:
        out = np.zeros((len(texts), dim), dtype=np.float32)
        for i, t in enumerate(texts):
            for word in t.lower().split():
                h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "big")
                out[i, h % dim] += 1.0
            out[i] /= max(float(np.linalg.norm(out[i])), 1e-9)
        return out

    return embed


def build_lightrag(data_root: Path, user: str, dim: int) -> Any:
    from lightrag import LightRAG
    from lightrag.utils import EmbeddingFunc

    # lightkeeper's tokenizer: it also keeps tiktoken from caching the encoding file in the
    # shared temp directory (tests/security/test_tokenizer_cache.py)
    from lightkeeper.rag.tokenizer import offline_tokenizer

    return LightRAG(
        working_dir=str(data_root), workspace=user, llm_model_func=_llm,
        embedding_func=EmbeddingFunc(embedding_dim=dim, func=_embedder(dim),
                                     max_token_size=8192, model_name="hash-test"),
        tokenizer=offline_tokenizer(), llm_model_name="offline-test")


async def _insert(data_root: Path, user: str, dim: int, texts: list[str]) -> None:
    rag = build_lightrag(data_root, user, dim)
    await rag.initialize_storages()
    try:
        await rag.ainsert(texts)
    finally:
        await rag.finalize_storages()


def make_user_with_vectors(data_root: Path, user: str, dim: int) -> Path:
    """Insert a small document for ``user`` with real LightRAG; returns the user's directory."""
    asyncio.run(_insert(data_root, user, dim, [
        "Alice works at Acme in Paris. Bob manages Alice. Acme builds rockets for Mars."]))
    return data_root / user


def make_in_subprocess(data_root: Path, user: str, dim: int) -> Path:
    """Same as :func:`make_user_with_vectors`, in a fresh process: LightRAG keeps process-wide
    state per workspace name that would leak into later tests."""
    import subprocess
    import sys

    subprocess.run([sys.executable, __file__, str(data_root), user, str(dim)], check=True,
                   capture_output=True, timeout=120, cwd=Path(__file__).resolve().parents[2])
    return data_root / user


if __name__ == "__main__":
    import sys

    make_user_with_vectors(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]))
