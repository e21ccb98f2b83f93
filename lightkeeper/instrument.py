"""The stable API for recording LightRAG operations from your own service.

Import from here, not from ``lightkeeper.rag``: this module's names keep their meaning across
lightkeeper releases (additions only), while the runtime's internals may move.

- :class:`Instrument` records one operation per ``with instrument.op(user, "query", mode):``
  block into the spool the agent ingests (one JSON line per operation).
- :func:`wrap_llm` and :func:`wrap_embed` wrap LightRAG's ``llm_model_func`` and
  ``embedding_func`` so each operation's LLM and embedding time, calls and tokens are split out.
- :func:`report_usage` lets a model function report true token counts.
- :class:`SpoolWriter` is the spool file writer behind an ``Instrument``.

See ``docs/lightrag.md`` for a complete example service.
"""

from __future__ import annotations

from lightkeeper.rag.instrument import Instrument, Op, report_usage, wrap_embed, wrap_llm
from lightkeeper.rag.spool import SpoolWriter

__all__ = ["Instrument", "Op", "SpoolWriter", "report_usage", "wrap_embed", "wrap_llm"]
