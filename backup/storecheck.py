"""Do a copy's LightRAG stores agree? The check a user's copy must pass to enter a snapshot.

A writer that ignores the write gate can leave a copy torn: LightRAG 1.5.7 replaces each store
file atomically but writes them at different moments. What a consistent copy looks like follows
from LightRAG's own write order (``lightrag/pipeline.py``, ``lightrag/lightrag.py``):

- ``kv_store_doc_status.json`` is the commit record. A document becomes ``processed`` only after
  ``_insert_done`` flushed every derived store (chunks, vectors, graph), and doc_status persists
  on upsert. So in any consistent state, every chunk of a processed document is in
  ``kv_store_text_chunks.json`` and ``vdb_chunks.json``.
- The derived stores are flushed together (``asyncio.gather`` over ``index_done_callback``), but
  not at one instant: the vector stores embed their buffered rows during the flush, and a
  flush triggered by one document also writes what other in-flight documents have merged in
  memory so far. So entities and relations of documents that are not yet processed may be in the
  graph and not yet in the vector stores, or the other way round. Those are allowed. An entity or
  relation that belongs to a processed document (its ``source_id`` names one of that document's
  chunks) must be in both the graph and its vector store.
- A document being deleted keeps its ``processed`` status until the very end, but carries a purge
  journal (``metadata.kg_purge``) written and flushed before the first destructive step. Its
  chunks, entities and relations may be half removed: such documents are exempt.

A record whose ``source_id`` is unknown (an older layout, a hand-made store) is held to the strict
rule (graph and vector store agree). Nothing here follows symlinks: the caller hands the bytes in.
"""

from __future__ import annotations

import json
import os
import stat
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DOC_STATUS = "kv_store_doc_status.json"
TEXT_CHUNKS = "kv_store_text_chunks.json"
VDB_CHUNKS = "vdb_chunks.json"
VDB_ENTITIES = "vdb_entities.json"
VDB_RELATIONS = "vdb_relationships.json"
GRAPH = "graph_chunk_entity_relation.graphml"
FILES = (DOC_STATUS, TEXT_CHUNKS, VDB_CHUNKS, VDB_ENTITIES, VDB_RELATIONS, GRAPH)

SEP = "<SEP>"                # lightrag.constants.GRAPH_FIELD_SEP
PURGE_KEY = "kg_purge"       # lightrag.constants.KG_PURGE_METADATA_KEY
PROCESSED = "processed"
MAX_PROBLEMS = 10


class StoreUnreadable(ValueError):
    """A store file exists but cannot be parsed: the copy is torn or damaged."""


@dataclass
class StoreCheck:
    """The result of one check. ``checked`` is False when the directory holds no stores."""

    ok: bool = True
    checked: bool = True
    documents: int = 0          # processed documents checked
    exempt_documents: int = 0   # processed documents with a purge (delete) in progress
    chunks: int = 0
    entities: int = 0
    relations: int = 0
    problems: list[str] = field(default_factory=list)

    def problem(self, text: str) -> None:
        self.ok = False
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(text)

    @property
    def reason(self) -> str:
        return "; ".join(self.problems[:3]) if self.problems else ""

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checked": self.checked, "documents": self.documents,
                "exempt_documents": self.exempt_documents, "chunks": self.chunks,
                "entities": self.entities, "relations": self.relations,
                "problems": list(self.problems)}


def _json(name: str, data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError as exc:
        raise StoreUnreadable(f"{name} is not valid JSON ({exc})") from None


def _kv(name: str, data: bytes | None) -> dict[str, Any]:
    if data is None or not data.strip():
        return {}
    doc = _json(name, data)
    if not isinstance(doc, dict):
        raise StoreUnreadable(f"{name} is not a JSON object")
    return doc


def _vdb_rows(name: str, data: bytes | None) -> list[dict[str, Any]]:
    if data is None or not data.strip():
        return []
    doc = _json(name, data)
    rows = doc.get("data") if isinstance(doc, dict) else None
    if not isinstance(rows, list):
        raise StoreUnreadable(f"{name} has no 'data' list (not a NanoVectorDB file)")
    return [r for r in rows if isinstance(r, dict)]


@dataclass
class _Item:
    key: Any
    sources: list[str] | None   # None: unknown


def _sources(value: Any) -> list[str] | None:
    if not isinstance(value, str) or not value:
        return None
    return [s for s in value.split(SEP) if s]


def _graph(data: bytes | None) -> tuple[list[_Item], list[_Item]]:
    """Nodes (by entity name) and edges (by unordered pair) of a GraphML file."""
    if data is None or not data.strip():
        return [], []
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise StoreUnreadable(f"{GRAPH} is not well-formed XML ({exc})") from None
    ns = root.tag[:root.tag.index("}") + 1] if root.tag.startswith("{") else ""
    keys = {k.get("id"): k.get("attr.name") for k in root.iter(f"{ns}key")}
    nodes, edges = [], []

    def attr(el: ET.Element, name: str) -> str | None:
        for d in el.findall(f"{ns}data"):
            if keys.get(d.get("key")) == name:
                return d.text or ""
        return None

    for n in root.iter(f"{ns}node"):
        nodes.append(_Item(n.get("id"), _sources(attr(n, "source_id"))))
    for e in root.iter(f"{ns}edge"):
        pair = frozenset((e.get("source"), e.get("target")))
        edges.append(_Item(pair, _sources(attr(e, "source_id"))))
    return nodes, edges


def _committed(item: _Item, chunks: set[str]) -> bool:
    return item.sources is None or any(s in chunks for s in item.sources)


def _compare(result: StoreCheck, what: str, graph: Iterable[_Item], vdb: Iterable[_Item],
             vdb_name: str, committed: set[str], show: Callable[[Any], str]) -> int:
    g = {i.key: i for i in graph}
    v = {i.key: i for i in vdb}
    for key, item in g.items():
        if key not in v and _committed(item, committed):
            result.problem(f"{what} {show(key)} of a processed document is in the graph but not "
                           f"in {vdb_name}")
    for key, item in v.items():
        if key not in g and _committed(item, committed):
            result.problem(f"{what} {show(key)} of a processed document is in {vdb_name} but not "
                           "in the graph")
    return len(g)


def check_stores(read: Callable[[str], bytes | None]) -> StoreCheck:
    """Check the stores ``read(name)`` returns (None: the file does not exist)."""
    result = StoreCheck()
    try:
        blobs = {name: read(name) for name in FILES}
    except StoreUnreadable as exc:
        result.problem(str(exc))
        return result
    if all(b is None for b in blobs.values()):
        result.checked = False
        return result
    try:
        status = _kv(DOC_STATUS, blobs[DOC_STATUS])
        text_chunks = _kv(TEXT_CHUNKS, blobs[TEXT_CHUNKS])
        vdb_chunk_rows = _vdb_rows(VDB_CHUNKS, blobs[VDB_CHUNKS])
        ent_rows = _vdb_rows(VDB_ENTITIES, blobs[VDB_ENTITIES])
        rel_rows = _vdb_rows(VDB_RELATIONS, blobs[VDB_RELATIONS])
        nodes, edges = _graph(blobs[GRAPH])
    except StoreUnreadable as exc:
        result.problem(str(exc))
        return result
    vdb_chunks = {r.get("__id__") for r in vdb_chunk_rows}
    committed: set[str] = set()
    for doc_id, rec in status.items():
        if not isinstance(rec, dict) or rec.get("status") != PROCESSED:
            continue
        meta = rec.get("metadata")
        if isinstance(meta, dict) and meta.get(PURGE_KEY):
            result.exempt_documents += 1
            continue
        result.documents += 1
        chunk_list = rec.get("chunks_list")
        if isinstance(chunk_list, list) and chunk_list:
            ids = [c for c in chunk_list if isinstance(c, str)]
        else:  # an older layout: find the chunks by their document
            ids = [c for c, v in text_chunks.items()
                   if isinstance(v, dict) and v.get("full_doc_id") == doc_id]
            want = rec.get("chunks_count")
            if isinstance(want, int) and want != len(ids):
                result.problem(f"document {doc_id} is processed with {want} chunks but "
                               f"{TEXT_CHUNKS} holds {len(ids)}")
        committed.update(ids)
        result.chunks += len(ids)
        for store, present in ((TEXT_CHUNKS, text_chunks), (VDB_CHUNKS, vdb_chunks)):
            missing = [c for c in ids if c not in present]
            if missing:
                result.problem(f"document {doc_id} is processed but {len(missing)} of its "
                               f"{len(ids)} chunks are missing from {store}")
    ents = [_Item(r.get("entity_name"), _sources(r.get("source_id"))) for r in ent_rows]
    rels = [_Item(frozenset((r.get("src_id"), r.get("tgt_id"))), _sources(r.get("source_id")))
            for r in rel_rows]
    result.entities = _compare(result, "entity", nodes, ents, VDB_ENTITIES, committed, repr)
    result.relations = _compare(result, "relation", edges, rels, VDB_RELATIONS, committed,
                                lambda k: " - ".join(sorted(map(str, k))))
    return result


def read_regular(directory: Path) -> Callable[[str], bytes | None]:
    """A reader for ``check_stores`` over a directory: regular files only, no symlinks."""
    def read(name: str) -> bytes | None:
        try:
            fd = os.open(Path(directory) / name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise StoreUnreadable(f"{name} is not a regular file")
            chunks = []
            while True:
                b = os.read(fd, 1 << 20)
                if not b:
                    break
                chunks.append(b)
            return b"".join(chunks)
        finally:
            os.close(fd)

    return read


def check_directory(directory: Path) -> StoreCheck:
    """Check a LightRAG working directory on disk (a restored copy, for example)."""
    return check_stores(read_regular(directory))
