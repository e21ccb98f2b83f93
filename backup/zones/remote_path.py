"""Remote paths of a zone: every path we write or delete must stay inside remote_path."""

from __future__ import annotations

import posixpath

from lightkeeper.backup.zones.errors import RemotePathError

# What a repository-relative path may look like: config, data/ab/<id>, index/<id>,
# snapshots/<id> (and our own temp names). Nothing else is ever written remotely.
_ALLOWED_TOP = ("config", "data", "index", "snapshots", ".lightkeeper-sync")


class RemoteRoot:
    def __init__(self, zone: str, root: str) -> None:
        self.zone = zone
        self.root = root.rstrip("/") or "/"

    def join(self, rel: str) -> str:
        """Absolute remote path of the repository-relative ``rel``, or RemotePathError."""
        if not rel or rel.startswith("/") or "\\" in rel or "\x00" in rel:
            raise RemotePathError(self.zone, f"refused remote path {rel!r}")
        parts = rel.split("/")
        top = parts[0].removesuffix(".lktmp") if len(parts) == 1 else parts[0]
        if any(p in ("", ".", "..") for p in parts) or top not in _ALLOWED_TOP:
            raise RemotePathError(self.zone, f"refused remote path {rel!r}: outside the "
                                  f"repository layout under {self.root}")
        full = posixpath.normpath(posixpath.join(self.root, rel))
        if not full.startswith(self.root + "/"):
            raise RemotePathError(self.zone, f"refused remote path {rel!r}: leaves {self.root}")
        return full

    def rel(self, full: str) -> str:
        if not full.startswith(self.root + "/"):
            raise RemotePathError(self.zone, f"{full!r} is not under {self.root}")
        return full[len(self.root) + 1:]
