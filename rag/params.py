"""The LightRAG parameters a runtime builds its instances from.

The tuning package owns the parameter model, the versions and the active file
(``paths.tuning_file``); this module is the one place the rag runtime asks for them:

- ``active_params(cfg, user=None) -> (version, params)``: one read of the active file;
- ``ParamSource``: the same answer from tuning's file watcher, for long-running processes.

A missing file means LightRAG's defaults (version None). An invalid file never stops a LightRAG
process: the last good copy is used, else the defaults, with a logged warning. ``DEFAULTS`` are
LightRAG's own, from the tuning model.
"""

from __future__ import annotations

from typing import Any

from lightkeeper.config import Config
from lightkeeper.logs import get_logger
from lightkeeper.tuning import params as tuning_params
from lightkeeper.tuning.activefile import load_active
from lightkeeper.tuning.watch import ActiveFileWatcher

log = get_logger("rag.params")

# LightRAG's own defaults, declared once in the tuning model.
DEFAULTS: dict[str, Any] = tuning_params.defaults()


def _fallback(user: str | None) -> tuple[int | None, dict[str, Any]]:
    return None, dict(DEFAULTS)


def active_params(cfg: Config, user: str | None = None) -> tuple[int | None, dict[str, Any]]:
    """(tuning version or None, effective parameters for ``user`` or the global set)."""
    try:
        version, params = load_active(cfg, user)  # falls back to the last good copy itself
        return version, {**DEFAULTS, **params}
    except Exception as exc:  # noqa: BLE001  invalid, and no good copy: run on defaults, say so
        log.warning("rag.params.tuning_unreadable", path=str(cfg.path("paths.tuning_file")),
                    error=f"{type(exc).__name__}: {exc}", using="defaults")
        return _fallback(user)


class ParamSource:
    """Effective parameters per user, kept current by tuning's ActiveFileWatcher."""
    def __init__(self, cfg: Config, watch: bool = True) -> None:
        self.cfg = cfg
        self._watcher: Any = None
        if watch:

            self._watcher = ActiveFileWatcher(cfg.path("paths.tuning_file")).start()
        self._cache: dict[str | None, tuple[int | None, dict[str, Any]]] = {}

    @property
    def version(self) -> int | None:
        if self._watcher is not None:
            return self._watcher.version
        return self.get(None)[0]

    def get(self, user: str | None = None) -> tuple[int | None, dict[str, Any]]:
        if self._watcher is not None:
            version = self._watcher.version
            return version, {**DEFAULTS, **self._watcher.params(user)}
        if user not in self._cache:
            self._cache[user] = active_params(self.cfg, user)
        return self._cache[user]

    def refresh(self) -> None:
        """Read the active tuning file now, not when the watcher's next event arrives: a
        server being built (at start, at ``serve --restart``) takes the version the operator
        just set, even when the restart follows the change within the watcher's debounce."""
        if self._watcher is not None:
            self._watcher.reload()
        else:
            self._cache.clear()

    def close(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None


def lightrag_kwargs(params: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments for ``LightRAG(...)``."""
    return tuning_params.lightrag_kwargs(params)


def query_kwargs(params: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments for ``QueryParam(...)`` (the mode is chosen per query)."""
    kwargs = tuning_params.query_param_kwargs(params)
    kwargs.pop("mode", None)
    return kwargs
