"""Make real repositories for zone tests with ``backup.repository`` (packs, index, manifests),
using the backup engine's snapshot function when it exists."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

from backup.repository import Repository


def write_user_files(data_root: Path, user: str, nfiles: int, size: int, seed: int) -> Path:
    d = data_root / user
    d.mkdir(parents=True, exist_ok=True)
    rnd = __import__("random").Random(seed)
    for i in range(nfiles):
        (d / f"kv_store_{i}.json").write_bytes(rnd.randbytes(size))
    (d / "graph_chunk_entity_relation.graphml").write_text(f"<graphml seed='{seed}'/>\n")
    return d


def snapshot_dirs(repo: Repository, data_root: Path, users: list[str],
                  when: float | None = None) -> str:
    """A snapshot of the users' directories: fixed 64 KiB chunks, content lists as tree
    chunks, one manifest written last (the manifest shape ``backup.repository`` reads)."""
    writer = repo.pack_writer()
    files: list[dict[str, Any]] = []
    user_info: dict[str, Any] = {}
    for user in users:
        base = data_root / user
        nbytes = 0
        for p in sorted(base.rglob("*")):
            if not p.is_file():
                continue
            data = p.read_bytes()
            ids = []
            for off in range(0, len(data), 65536):
                piece = data[off:off + 65536]
                cid = repo.sealer.chunk_id(piece)
                if not repo.has_chunk(cid) and cid not in writer.pending:
                    writer.add(cid, piece)
                ids.append(cid)
            tree = b"".join(ids)
            lid = repo.sealer.chunk_id(tree)
            if not repo.has_chunk(lid) and lid not in writer.pending:
                writer.add(lid, tree)
            files.append({"path": f"{user}/{p.relative_to(base)}", "user": user,
                          "size": len(data), "list": lid.hex(), "mode": 0o600,
                          "mtime": p.stat().st_mtime})
            nbytes += len(data)
        user_info[user] = {"files": sum(1 for f in files if f["user"] == user), "bytes": nbytes}
    writer.flush()
    repo.flush_index()
    manifest = {"time": when or time.time(), "host": socket.gethostname(), "tags": [],
                "users": user_info, "files": files, "summary": {"files": len(files)},
                "parent": None}
    return repo.write_snapshot(manifest)


def restore_user(repo: Repository, snapshot_id: str, user: str, target: Path) -> list[Path]:
    doc = repo.read_snapshot(snapshot_id)
    out = []
    for f in doc["files"]:
        if f["user"] != user:
            continue
        dest = target / f["path"]
        dest.parent.mkdir(parents=True, exist_ok=True)
        with open(dest, "wb") as fh:
            for piece in repo.iter_file_data(f):
                fh.write(piece)
        out.append(dest)
    return out


def make_repo(path: Path, key_file: Path, pack_size: int = 1 << 20) -> Repository:
    repo = Repository.init(path, key_file, encrypt=True)
    repo.config["pack_size"] = pack_size
    return repo


def tree_digest(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.name.startswith(".")}


__all__ = ["make_repo", "snapshot_dirs", "restore_user", "write_user_files", "tree_digest",
           "os"]
