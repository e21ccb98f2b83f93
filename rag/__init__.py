"""LightRAG under watch: a per-user runtime with offline or OpenAI-compatible providers.

Modules: ``runtime`` (instance pool, stale-answer and multi-process guards), ``gate`` (the
per-user write gate), ``instrument`` and ``spool`` (one JSON line per operation for the agent),
``params`` (active tuning), ``providers`` (offline, OpenAI-compatible), ``tokenizer`` (offline
cl100k), ``inventory`` (what each user's directory holds), ``workload`` and ``corpus`` (demo and
bench), ``calls`` (what the agent serves). See docs/lightrag.md.
"""

from lightkeeper.rag import deferred_imports

# Before any module of this package imports LightRAG: its rarely used heavy imports load on use.
deferred_imports.defer()
