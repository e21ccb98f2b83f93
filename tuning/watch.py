"""Reload the active tuning file when it changes, keeping the last good version on bad edits.

Usage (a LightRAG process)::

    watcher = ActiveFileWatcher(cfg.path("paths.tuning_file"), on_change=apply, on_error=warn)
    watcher.start()
    ...
    params = watcher.params(user)      # effective, last good
    watcher.stop()

``on_change(version, tuning_set)`` runs in the watcher thread after a valid change;
``on_error(reason)`` after an invalid one (the previous parameters stay in force). The
directory is watched rather than the file, because the file is replaced by rename.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import watchfiles

from lightkeeper import fswatch
from lightkeeper.logs import get_logger
from lightkeeper.tuning.activefile import read_active_set, read_last_good
from lightkeeper.tuning.tuningset import TuningSet
from lightkeeper.tuning.validate import TuningError

log = get_logger("tuning.watch")

ChangeFn = Callable[[int | None, TuningSet], None]
ErrorFn = Callable[[str], None]


EMPTY = "empty"


def _digest(path: Path) -> str | None:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"error:{exc.errno}"
    return hashlib.sha256(data).hexdigest() if data.strip() else EMPTY


class ActiveFileWatcher:
    """Watches the active tuning file in a daemon thread (watchfiles)."""

    def __init__(self, path: Path | str, on_change: ChangeFn | None = None,
                 on_error: ErrorFn | None = None, debounce_ms: int = 150) -> None:
        self.path = Path(path)
        self.on_change = on_change
        self.on_error = on_error
        self.debounce_ms = debounce_ms
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._digest: str | None = None
        self.version: int | None = None
        self.tuning: TuningSet = TuningSet()
        self.last_error: str | None = None
        self.reloads = 0
        self.rejected = 0
        if not self.reload() and self.last_error is not None:
            # Starting while the file holds an invalid edit: use what lightkeeper last wrote.
            fallback = read_last_good(self.path)
            if fallback is not None:
                self.version, self.tuning = fallback
                log.warning("tuning.using_last_good", path=str(self.path),
                            version=self.version)

    # -- reading -------------------------------------------------------------------------------
    def params(self, user: str | None = None) -> dict[str, Any]:
        """Effective last-good parameters for ``user`` (or the global set)."""
        with self._lock:
            return self.tuning.effective(user)

    def current(self) -> tuple[int | None, TuningSet]:
        with self._lock:
            return self.version, self.tuning.copy()

    def reload(self) -> bool:
        """Read the file now. True when new valid parameters were applied."""
        digest = _digest(self.path)
        if digest == self._digest:
            return False
        if digest in (EMPTY, None) and self._digest is not None:
            # Mid-save (truncated, not yet written) or briefly absent during a replace: wait
            # for the next event rather than report an error or fall back to defaults.
            return False
        self._digest = digest
        try:
            version, tset = read_active_set(self.path)
        except (TuningError, OSError) as exc:
            reason = str(exc)
            with self._lock:
                self.last_error = reason
                self.rejected += 1
            log.warning("tuning.reload_refused", path=str(self.path), error=reason,
                        kept_version=self.version)
            if self.on_error is not None:
                self._safe(self.on_error, reason)
            return False
        with self._lock:
            changed = (version, tset) != (self.version, self.tuning)
            self.version, self.tuning = version, tset
            self.last_error = None
            self.reloads += 1
        if changed:
            log.info("tuning.reloaded", path=str(self.path), version=version)
            if self.on_change is not None:
                self._safe(self.on_change, version, tset.copy())
        return changed

    @staticmethod
    def _safe(fn: Callable[..., Any], *args: Any) -> None:
        try:
            fn(*args)
        except Exception:
            log.exception("tuning.watch_callback_failed")

    # -- thread --------------------------------------------------------------------------------
    def start(self) -> ActiveFileWatcher:
        if self._thread is not None:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="tuning-watch", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> ActiveFileWatcher:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _run(self) -> None:
        name = self.path.name

        def only_ours(_change: watchfiles.Change, changed: str) -> bool:
            return Path(changed).name == name

        # The file may have changed between construction and the watch starting.
        self.reload()
        while not self._stop.is_set():
            try:
                for _changes in watchfiles.watch(
                        self.path.parent, watch_filter=only_ours, debounce=self.debounce_ms,
                        step=fswatch.STEP_MS, stop_event=self._stop, yield_on_timeout=True,
                        rust_timeout=1000, recursive=False, raise_interrupt=False):
                    if self._stop.is_set():
                        return
                    # On timeout the set is empty: re-check anyway (cheap: a hash of a small
                    # file), which also covers file systems that miss events.
                    self.reload()
            except Exception as exc:  # noqa: BLE001  the directory vanished, inotify limits...
                log.warning("tuning.watch_failed", path=str(self.path), error=str(exc))
                if self._stop.wait(1.0):
                    return
                try:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                except OSError:
                    pass
