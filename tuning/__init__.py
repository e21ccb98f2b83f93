"""Versioned LightRAG tuning: the parameter model, validation, the active file and its watcher,
versions in the agent's store, diff, revert and the LightRAG server's .env both ways.

Modules: ``params`` (the model), ``validate``, ``tuningset`` (global set + per-user overrides),
``activefile`` (read/write the file LightRAG processes use), ``watch`` (reload on change),
``versions`` (the store table), ``diff``, ``protect`` (embedding changes vs stored vectors),
``envfile`` (export/import), ``calls`` (what the agent serves). Never imports ``agent`` or
Textual.
"""
