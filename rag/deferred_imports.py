"""LightRAG's start-up imports that only rare paths use, loaded on first use instead.

``lightrag.utils`` imports ``pypinyin`` (and its dictionaries) at module level for one thing:
sorting Chinese graph labels by their pinyin. Every process that imports LightRAG paid for it at
start (``lightkeeper serve``, the ``rag`` commands, the demo's workload, a drill). ``defer()``
puts a finder first on ``sys.meta_path`` that hands out those modules with the standard library's
``importlib.util.LazyLoader``: LightRAG's ``import pypinyin`` gets a module whose code runs at
its first attribute access, so the sorting works exactly as before and a process that never
sorts never loads the dictionaries.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Sequence
from types import ModuleType

# Imported by LightRAG as ``import name`` (a lazy module works only with that form: ``from name
# import x`` reads an attribute at once) and used only on rare paths.
DEFERRED = frozenset({"pypinyin"})


class DeferredFinder(importlib.abc.MetaPathFinder):
    """Finds ``names`` with the other finders and wraps their loader in ``LazyLoader``."""

    def __init__(self, names: frozenset[str]) -> None:
        self.names = names

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.names:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = importlib.util.LazyLoader(spec.loader)
                return spec
        return None  # not installed: LightRAG handles the ImportError as it always did


def defer(names: frozenset[str] = DEFERRED) -> None:
    """Make each module of ``names`` load at its first use (once per process)."""
    if not any(isinstance(f, DeferredFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, DeferredFinder(names))
