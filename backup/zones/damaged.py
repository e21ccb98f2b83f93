"""Files a verify found damaged on a zone (wrong hash, wrong size, missing): the next sync
lists the zone in full and sends them again from the local repository, then forgets them."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from lightkeeper.backup.zones.state import _read_json, _write_json


class DamagedFiles:
    LIMIT = 100_000

    def __init__(self, zone_dir: Path) -> None:
        self.path = zone_dir / "damaged.json"

    def load(self) -> set[str]:
        data = _read_json(self.path) or {}
        return {str(r) for r in data.get("files", []) if isinstance(r, str)}

    def add(self, rels: Iterable[str]) -> None:
        new = set(rels)
        if not new:
            return
        _write_json(self.path, {"files": sorted(self.load() | new)[: self.LIMIT]})

    def discard(self, rels: Iterable[str]) -> None:
        have = self.load()
        if not have:
            return
        left = have - set(rels)
        if left:
            _write_json(self.path, {"files": sorted(left)})
        else:
            self.path.unlink(missing_ok=True)
