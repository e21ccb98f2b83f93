"""A LightRAG writer that ignores the write gate: the library used directly, as an operator's
own service might, with lightkeeper's offline providers (no model, no network).

Usage: python -m tests.backup.ungated_writer DATA_ROOT USER STOP_FILE PROGRESS_FILE [LLM_MS [PAUSE_S [BURST]]]
Inserts generated documents one after another until STOP_FILE exists; after each insert it
writes the number of documents inserted to PROGRESS_FILE (outside the data root); after every
BURST inserts (default 1) it pauses PAUSE_S seconds, as a service's inserts come in bursts. Prints READY
once the workspace is open.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from lightrag import LightRAG
from lightrag.utils import EmbeddingFunc

from lightkeeper.rag.providers.offline import HashEmbedder, Latency, OfflineLLM
from lightkeeper.rag.tokenizer import offline_tokenizer

CORPUS = Path(__file__).resolve().parents[2] / "rag" / "corpus" / "docs.json"


def documents() -> list[str]:
    return [d["text"] for d in json.loads(CORPUS.read_text())["documents"]]


async def main(root: Path, user: str, stop: Path, progress: Path, llm_ms: float,
               pause: float, burst: int) -> None:
    lat = Latency(llm_ms=llm_ms, embed_ms=llm_ms / 4)
    rag = LightRAG(working_dir=str(root), workspace=user, llm_model_func=OfflineLLM(lat),
                   llm_model_name="lightkeeper-offline",
                   embedding_func=EmbeddingFunc(embedding_dim=256, func=HashEmbedder(256, lat)),
                   tokenizer=offline_tokenizer(), entity_extraction_use_json=False)
    await rag.initialize_storages()
    print("READY", flush=True)
    texts = documents()
    n = 0
    while not stop.exists():
        base = texts[n % len(texts)]
        await rag.ainsert(f"{base}\n\nBulletin {n} from the writer (pid {os.getpid()}).")
        n += 1
        tmp = progress.with_name(progress.name + ".tmp")
        tmp.write_text(str(n))
        os.replace(tmp, progress)
        if pause and n % burst == 0:
            await asyncio.sleep(pause)
    await rag.finalize_storages()


if __name__ == "__main__":
    a = sys.argv[1:]
    asyncio.run(main(Path(a[0]), a[1], Path(a[2]), Path(a[3]), float(a[4]) if len(a) > 4 else 0,
                     float(a[5]) if len(a) > 5 else 0, int(a[6]) if len(a) > 6 else 1))
