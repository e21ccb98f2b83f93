"""What each user's LightRAG working directory holds, read from its files without opening LightRAG.

Counts come from ``kv_store_doc_status.json`` (documents by status) and
``graph_chunk_entity_relation.graphml`` (entities are nodes, relations are edges). Reading files
that another process may be replacing is safe: LightRAG replaces each file atomically.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from lightkeeper.contracts.rag import UserSummary
from lightkeeper.ids import USER_ID_RE, UnsafePath, read_regular, validate_user_id

GRAPH_FILE = "graph_chunk_entity_relation.graphml"
STATUS_FILE = "kv_store_doc_status.json"


def _dir_size(path: Path) -> tuple[int, int, float]:
    """(bytes, files, newest mtime) under ``path``, skipping LightRAG temp files."""
    total = files = 0
    newest = 0.0
    for root, _dirs, names in os.walk(path):
        for name in names:
            if ".tmp." in name:
                continue
            try:
                st = os.stat(os.path.join(root, name), follow_symlinks=False)
            except FileNotFoundError:
                continue
            total += st.st_size
            files += 1
            newest = max(newest, st.st_mtime)
    return total, files, newest


def _graph_counts(path: Path) -> tuple[int, int]:
    try:  # in the user's directory, which the LightRAG account writes: no symlink, no FIFO
        data = read_regular(path)
    except FileNotFoundError:
        return 0, 0
    except UnsafePath:  # not counted: never read through a link or from a FIFO
        return 0, 0
    return data.count(b"<node "), data.count(b"<edge ")


def _doc_counts(path: Path) -> dict[str, int]:
    try:
        docs = json.loads(read_regular(path).decode("utf-8"))
    except FileNotFoundError:
        return {}
    except (ValueError, UnicodeDecodeError, RecursionError):  # UnsafePath is a ValueError
        return {"unreadable": 1}
    counts: dict[str, int] = {}
    if isinstance(docs, dict):
        for value in docs.values():
            status = value.get("status", "unknown") if isinstance(value, dict) else "unknown"
            counts[str(status)] = counts.get(str(status), 0) + 1
    return counts


def user_summary(data_root: Path, user: str) -> UserSummary:
    validate_user_id(user)
    d = Path(data_root) / user
    by_status = _doc_counts(d / STATUS_FILE)
    entities, relations = _graph_counts(d / GRAPH_FILE)
    size, files, newest = _dir_size(d)
    return {
        "user": user,
        "documents": by_status.get("processed", 0),
        "documents_by_status": by_status,
        "entities": entities,
        "relations": relations,
        "size_bytes": size,
        "files": files,
        "modified": newest or None,
    }


def list_users(data_root: Path) -> list[str]:
    root = Path(data_root)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir()
                  if p.is_dir() and USER_ID_RE.fullmatch(p.name))


def users(data_root: Path) -> list[UserSummary]:
    """One summary per user directory under ``data_root`` (sorted by user id)."""
    return [user_summary(data_root, u) for u in list_users(data_root)]
