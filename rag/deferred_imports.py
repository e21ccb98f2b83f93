"""LightRAG's start-up imports that only rare paths use, loaded on first use instead.

``lightrag.utils`` imports ``pypinyin`` (and its dictionaries) at module level for one thing:
sorting Chinese graph labels by their pinyin. Every process that imports LightRAG paid for it at
start (``lightkeeper serve``, the ``rag`` commands, the demo's workload, a drill). ``defer()``
puts a finder first on ``sys.meta_path`` that hands out those modules as a stand-in
(:class:`DeferredModule`): LightRAG's ``import pypinyin`` gets a module that already carries its
import attributes (``__file__``, ``__spec__``, ``__path__``...) and runs its code at the first
read of any other name, so the sorting works exactly as before and a process that never sorts
never loads the dictionaries.

The standard library's ``importlib.util.LazyLoader`` was used first; it runs the module at the
first read of *any* attribute, ``__file__`` included, and tools that walk ``sys.modules`` read
exactly that (Hypothesis' pytest plugin, collecting constants, loaded the dictionaries in every
test worker: 0.45 s of CPU each).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import threading
from collections.abc import Sequence
from types import ModuleType
from typing import Any

# Imported by LightRAG as ``import name`` (a stand-in works only with that form: ``from name
# import x`` reads an attribute at once) and used only on rare paths.
DEFERRED = frozenset({"pypinyin"})

_load_lock = threading.RLock()


class DeferredModule(ModuleType):
    """A module whose code runs when a name it does not hold yet is first read."""

    def __getattr__(self, name: str) -> Any:  # only names not found the usual way
        with _load_lock:
            loader = self.__dict__.pop("_deferred_loader", None)
            if loader is not None:
                loader.exec_module(self)  # the real module's code, into this module
        if name in self.__dict__:
            return self.__dict__[name]
        raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")


class _DeferringLoader(importlib.abc.Loader):
    def __init__(self, real: importlib.abc.Loader) -> None:
        self.real = real

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return DeferredModule(spec.name)

    def exec_module(self, module: ModuleType) -> None:
        module.__dict__["_deferred_loader"] = self.real  # runs at the first other name read


class DeferredFinder(importlib.abc.MetaPathFinder):
    """Finds ``names`` with the other finders and defers their loader's work."""

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
                    spec.loader = _DeferringLoader(spec.loader)
                return spec
        return None  # not installed: LightRAG handles the ImportError as it always did


def defer(names: frozenset[str] = DEFERRED) -> None:
    """Make each module of ``names`` load at its first use (once per process)."""
    if not any(isinstance(f, DeferredFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, DeferredFinder(names))
