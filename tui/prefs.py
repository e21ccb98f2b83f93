"""What the console remembers for its operator between launches (the chart window).

A small JSON file in the operator's own state directory ($XDG_STATE_HOME/lightkeeper, else
~/.local/state/lightkeeper), not in the agent's: it is one person's view, not the server's
state. It is replaced atomically (temp file created exclusively, then renamed); a file that
cannot be read is ignored with a log line, never fatal.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from lightkeeper.logs import get_logger

log = get_logger("lightkeeper.tui.prefs")


def default_path() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "lightkeeper" / "console.json"


class Prefs:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path or default_path()
        self._doc: dict[str, Any] = self._read()

    def _read(self) -> dict[str, Any]:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            return {}
        except OSError as exc:
            log.warning("console.prefs_unreadable", path=str(self.path), error=str(exc))
            return {}
        try:
            with os.fdopen(fd) as f:
                doc = json.load(f)
        except (OSError, ValueError) as exc:
            log.warning("console.prefs_unreadable", path=str(self.path), error=str(exc))
            return {}
        return doc if isinstance(doc, dict) else {}

    def window(self) -> str | None:
        value = self._doc.get("window")
        return value if isinstance(value, str) else None

    def set_window(self, window: str) -> None:
        if self._doc.get("window") == window:
            return
        self._doc["window"] = window
        self._write()

    def _write(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".console.", suffix=".tmp")
            with os.fdopen(fd, "w") as f:
                json.dump(self._doc, f)
            os.replace(tmp, self.path)
        except OSError as exc:
            log.warning("console.prefs_not_saved", path=str(self.path), error=str(exc))
