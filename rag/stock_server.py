"""The stock ``lightrag-server``, unchanged, able to start offline: ``python -m
lightkeeper.rag.stock_server [lightrag-server arguments]``.

It only makes tiktoken's downloadable encodings resolve to the bundled cl100k
(:func:`lightkeeper.rag.tokenizer.serve_offline_encodings`) and then runs LightRAG's own
``lightrag.api.lightrag_server.main``: no instrumentation, no write gate, no tuning. It is the
reference ``bench/serve_overhead.py`` measures ``lightkeeper serve`` against, and what tests use
as "a stock server started by other means". Arguments and environment are lightrag-server's.
"""

from __future__ import annotations

import sys


def main() -> int | None:
    from lightkeeper.rag.tokenizer import serve_offline_encodings  # noqa: PLC0415

    serve_offline_encodings()
    # after the mapping: the server module builds tokenizers as it loads
    from lightrag.api.lightrag_server import main as lightrag_main  # noqa: PLC0415

    return lightrag_main()


if __name__ == "__main__":
    sys.exit(main())
