"""A LightRAG-side process for the tests: watches the active file and reports on stdout.

Prints one JSON line per event: ready, change, error, and params (answer to "params" on stdin).
"""

from __future__ import annotations

import json
import sys

from lightkeeper.tuning.watch import ActiveFileWatcher


def say(**doc: object) -> None:
    print(json.dumps(doc), flush=True)


def main() -> None:
    watcher: ActiveFileWatcher | None = None

    def changed(version: int | None, tset: object) -> None:
        say(event="change", version=version, top_k=tset.params["top_k"])  # type: ignore[attr-defined]

    def error(reason: str) -> None:
        kept = watcher.params()["top_k"] if watcher else None
        say(event="error", reason=reason, version=watcher.version if watcher else None,
            top_k=kept)

    watcher = ActiveFileWatcher(sys.argv[1], on_change=changed, on_error=error).start()
    say(event="ready", version=watcher.version, top_k=watcher.params()["top_k"])
    for line in sys.stdin:
        if line.strip() == "params":
            say(event="params", version=watcher.version, top_k=watcher.params()["top_k"],
                last_error=watcher.last_error)
    watcher.stop()


if __name__ == "__main__":
    main()
