"""Protection of existing data: refuse embedding changes that would strand stored vectors.

LightRAG stores vectors per user in ``vdb_*.json`` (nano-vectordb: ``{"embedding_dim": N,
"data": [...], "matrix": "..."}``). A different ``embedding_dim`` makes LightRAG refuse to
open them; a different ``embedding_model`` of the same dimension silently mixes vector
spaces. Either change on a user that has vectors needs that user's data rebuilt, so it is
refused unless the operator acknowledges the rebuild.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightkeeper.ids import USER_ID_RE
from lightkeeper.tuning.params import PARAMS
from lightkeeper.tuning.tuningset import TuningSet

REBUILD_PARAMS = tuple(p.name for p in PARAMS if p.effect == "rebuild")
_HEAD_BYTES = 64 * 1024
_FULL_PARSE_BYTES = 4 * 1024 * 1024
_DIM_RE = re.compile(rb'"embedding_dim"\s*:\s*(\d+)')
_EMPTY_DATA_RE = re.compile(rb'"data"\s*:\s*\[\s*\]')
_DATA_RE = re.compile(rb'"data"\s*:\s*\[')


@dataclass(frozen=True)
class VectorFile:
    path: Path
    embedding_dim: int | None
    vectors: int | None  # None when the file is too large to count cheaply


def scan_vector_file(path: Path) -> VectorFile | None:
    """Describe one ``vdb_*.json``; None when it holds no vectors (or is not one)."""
    try:
        size = path.stat().st_size
        if size <= _FULL_PARSE_BYTES:
            doc = json.loads(path.read_bytes() or b"{}")
            if not isinstance(doc, dict):
                return None
            data = doc.get("data") or []
            if not data:
                return None
            dim = doc.get("embedding_dim")
            return VectorFile(path, dim if isinstance(dim, int) else None, len(data))
        with path.open("rb") as fh:
            head = fh.read(_HEAD_BYTES)
    except (OSError, ValueError):
        # Unreadable or mid-write: treat a big file as holding vectors (the safe side).
        try:
            return VectorFile(path, None, None) if path.stat().st_size > 1024 else None
        except OSError:
            return None
    if _EMPTY_DATA_RE.search(head):
        return None
    m = _DIM_RE.search(head)
    if not _DATA_RE.search(head) and m is None:
        return VectorFile(path, None, None)
    return VectorFile(path, int(m.group(1)) if m else None, None)


def users_with_vectors(data_root: Path | str) -> dict[str, list[VectorFile]]:
    """Users under ``data_root`` whose working directory (or a workspace in it) has vectors."""
    root = Path(data_root)
    found: dict[str, list[VectorFile]] = {}
    try:
        entries = sorted(root.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return found
    for entry in entries:
        if not entry.is_dir() or entry.is_symlink() or not USER_ID_RE.fullmatch(entry.name):
            continue
        files = list(entry.glob("vdb_*.json")) + list(entry.glob("*/vdb_*.json"))
        for f in sorted(files):
            if ".tmp." in f.name or not f.is_file():
                continue
            vf = scan_vector_file(f)
            if vf is not None:
                found.setdefault(entry.name, []).append(vf)
    return found


def rebuild_conflicts(old: TuningSet, new: TuningSet,
                      data_root: Path | str) -> dict[str, str]:
    """Per-field reasons why ``new`` would strand existing vectors (empty when safe)."""
    holders = users_with_vectors(data_root)
    errors: dict[str, str] = {}
    for name in REBUILD_PARAMS:
        affected: list[str] = []
        for user, files in holders.items():
            before, after = old.effective(user)[name], new.effective(user)[name]
            if before == after:
                continue
            dims = sorted({f.embedding_dim for f in files if f.embedding_dim is not None})
            if name == "embedding_dim" and dims == [after] and \
                    all(f.embedding_dim is not None for f in files):
                continue  # naming the dimension the vectors already have
            counts = [f.vectors for f in files if f.vectors is not None]
            what = f"{len(files)} vector file(s)"
            if counts:
                what += f", {sum(counts)} vectors"
            if dims:
                what += f", dim {'/'.join(str(d) for d in dims)}"
            affected.append(f"{user} ({what}; {before!r} -> {after!r})")
        if affected:
            consequence = ("LightRAG cannot open vectors of another dimension"
                           if name == "embedding_dim" else
                           "vectors from two models would be compared as if alike")
            errors[name] = (
                f"users with stored vectors would need a rebuild: {', '.join(affected)}; "
                f"{consequence}. Rebuild their data after the change and confirm with "
                "--acknowledge-rebuild (acknowledge_rebuild=true)")
    return errors


def summary(data_root: Path | str) -> dict[str, Any]:
    """JSON-ready view of who holds vectors (for `show` and the console)."""
    return {user: [{"file": f.path.name, "embedding_dim": f.embedding_dim,
                    "vectors": f.vectors} for f in files]
            for user, files in users_with_vectors(data_root).items()}
