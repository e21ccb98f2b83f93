"""Deterministic LightRAG-shaped data root for backup and replication benchmarks.

``generate(root, users=30, seed=7)`` writes about 250 MB: per user one LightRAG working
directory (``kv_store_*.json`` written like LightRAG writes them, ``vdb_*.json`` in
NanoVectorDB's shape with a base64 float32 matrix, ``graph_chunk_entity_relation.graphml``)
plus an ``inputs/`` folder of source documents; about 1,000 files in all. User sizes are
skewed (the largest user has a ~20 MB graph, the smallest a few hundred KB), as on a real
server. ``scatter_edits(root, fraction=0.05, record_fraction=0.02, seed=...)`` rewrites about
5 % of the files with about 2 % of their records edited at scattered places, the way LightRAG
rewrites a whole store file after touching a few records.

Run: ``python -m bench.datagen ROOT [--users 30] [--seed 7] [--edit]``.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
from pathlib import Path

import numpy as np

DIM = 256
_SYL = ["ka", "lo", "mi", "ner", "tos", "va", "quel", "rin", "da", "sho", "pe", "tra", "gu",
        "zen", "bi", "mor", "el", "fa", "cu", "wy", "ix", "on", "ar", "sel"]


def _vocab(rng: np.random.Generator, n: int = 6000) -> list[str]:
    words = set()
    while len(words) < n:
        k = int(rng.integers(1, 5))
        words.add("".join(_SYL[int(i)] for i in rng.integers(0, len(_SYL), k)))
    return sorted(words)


class _Text:
    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.vocab = _vocab(rng)
        # Zipf-like word frequencies, as in natural language
        p = 1.0 / np.arange(1, len(self.vocab) + 1) ** 1.05
        self.p = p / p.sum()

    def words(self, n: int) -> str:
        idx = self.rng.choice(len(self.vocab), size=max(1, n), p=self.p)
        v = self.vocab
        return " ".join([v[i] for i in idx])

    def sentence_text(self, nchars: int) -> str:
        return self.words(max(1, nchars // 7)) + "."


def _hexid(rng: np.random.Generator, prefix: str) -> str:
    return prefix + rng.bytes(16).hex()


def _dump(path: Path, obj: object) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)


def _vdb(path: Path, rng: np.random.Generator, ids: list[str], contents: list[str],
         extra: dict[str, list[str]] | None = None) -> None:
    n = len(ids)
    matrix = rng.standard_normal((n, DIM), dtype=np.float32)
    data = []
    for i, (vid, content) in enumerate(zip(ids, contents, strict=True)):
        row = {"__id__": vid, "__created_at__": 1_760_000_000 + i, "content": content}
        for k, vals in (extra or {}).items():
            row[k] = vals[i]
        data.append(row)
    _dump(path, {"embedding_dim": DIM, "data": data,
                 "matrix": base64.b64encode(matrix.tobytes()).decode()})


def _xml(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def _user(udir: Path, rng: np.random.Generator, text: _Text, n_docs: int) -> int:
    udir.mkdir(parents=True, exist_ok=True)
    docs, status, chunks, cache = {}, {}, {}, {}
    chunk_ids, chunk_texts = [], []
    for d in range(n_docs):
        did = _hexid(rng, "doc-")
        content = text.sentence_text(int(rng.integers(2500, 6500)))
        fp = f"inputs/doc{d:05d}.md"
        docs[did] = {"content": content, "file_path": fp}
        pieces = [content[i:i + 1400] for i in range(0, len(content), 1400)]
        cl = []
        for j, piece in enumerate(pieces):
            cid = _hexid(rng, "chunk-")
            cl.append(cid)
            chunks[cid] = {"tokens": len(piece) // 4, "content": piece, "chunk_order_index": j,
                           "full_doc_id": did, "file_path": fp, "llm_cache_list": [],
                           "create_time": 1_760_000_000 + d, "update_time": 1_760_000_000 + d,
                           "_id": cid}
            chunk_ids.append(cid)
            chunk_texts.append(piece)
            ck = "default:extract:" + rng.bytes(16).hex()
            cache[ck] = {"return": text.sentence_text(int(rng.integers(800, 2000))),
                         "cache_type": "extract", "chunk_id": cid, "original_prompt": piece[:200],
                         "create_time": 1_760_000_000 + d, "update_time": 1_760_000_000 + d,
                         "_id": ck}
        status[did] = {"status": "processed", "content_summary": content[:100],
                       "content_length": len(content), "chunks_count": len(pieces),
                       "chunks_list": cl, "created_at": "2026-01-01T00:00:00+00:00",
                       "updated_at": "2026-01-01T00:00:00+00:00", "file_path": fp,
                       "track_id": "insert_" + rng.bytes(8).hex()}
    n_ent, n_rel = 5 * n_docs, 6 * n_docs
    ents = [f"{text.words(2).title()} {i}" for i in range(n_ent)]
    ent_desc = [text.sentence_text(int(rng.integers(400, 1400))) for _ in range(n_ent)]
    rels = [(ents[int(a)], ents[int(b)]) for a, b in rng.integers(0, n_ent, (n_rel, 2))]
    rel_desc = [text.sentence_text(int(rng.integers(300, 1000))) for _ in range(n_rel)]
    lines = ['<?xml version=\'1.0\' encoding=\'utf-8\'?>',
             '<graphml xmlns="http://graphml.graphdrawing.org/xmlns">',
             '  <key id="d0" for="node" attr.name="entity_id" attr.type="string" />',
             '  <key id="d1" for="node" attr.name="description" attr.type="string" />',
             '  <key id="d2" for="edge" attr.name="description" attr.type="string" />',
             '  <key id="d3" for="edge" attr.name="weight" attr.type="double" />',
             '  <graph edgedefault="undirected">']
    for name, desc in zip(ents, ent_desc, strict=True):
        src = "<SEP>".join(chunk_ids[int(i)] for i in rng.integers(0, len(chunk_ids), 2))
        lines += [f'    <node id="{_xml(name)}">', f'      <data key="d0">{_xml(name)}</data>',
                  f'      <data key="d1">{_xml(desc)}</data>',
                  f'      <data key="d4">{_xml(src)}</data>', '    </node>']
    for (a, b), desc in zip(rels, rel_desc, strict=True):
        lines += [f'    <edge source="{_xml(a)}" target="{_xml(b)}">',
                  f'      <data key="d2">{_xml(desc)}</data>',
                  f'      <data key="d3">{float(rng.integers(1, 10))}</data>', '    </edge>']
    lines += ["  </graph>", "</graphml>"]
    (udir / "graph_chunk_entity_relation.graphml").write_text("\n".join(lines) + "\n")
    _dump(udir / "kv_store_full_docs.json", docs)
    _dump(udir / "kv_store_text_chunks.json", chunks)
    _dump(udir / "kv_store_doc_status.json", status)
    _dump(udir / "kv_store_llm_response_cache.json", cache)
    _dump(udir / "kv_store_full_entities.json",
          {did: {"entity_names": ents[i * 5:(i + 1) * 5], "count": 5}
           for i, did in enumerate(docs)})
    _dump(udir / "kv_store_full_relations.json",
          {did: {"relation_pairs": [list(p) for p in rels[i * 6:(i + 1) * 6]], "count": 6}
           for i, did in enumerate(docs)})
    _vdb(udir / "vdb_chunks.json", rng, chunk_ids, chunk_texts,
         {"full_doc_id": [chunks[c]["full_doc_id"] for c in chunk_ids]})
    _vdb(udir / "vdb_entities.json", rng, ["ent-" + rng.bytes(16).hex() for _ in ents],
         [f"{n}\n{d[:300]}" for n, d in zip(ents, ent_desc, strict=True)],
         {"entity_name": ents})
    _vdb(udir / "vdb_relationships.json", rng, ["rel-" + rng.bytes(16).hex() for _ in rels],
         [f"{a}\t{b}\n{d[:200]}" for (a, b), d in zip(rels, rel_desc, strict=True)],
         {"src_id": [a for a, _ in rels], "tgt_id": [b for _, b in rels]})
    inputs = udir / "inputs"
    inputs.mkdir(exist_ok=True)
    for i, (_did, doc) in enumerate(list(docs.items())[:23]):
        (inputs / f"doc{i:05d}.md").write_text(f"# Document {i}\n\n{doc['content']}\n")
    return sum(p.stat().st_size for p in udir.rglob("*") if p.is_file())


def user_names(users: int) -> list[str]:
    return [f"user{i:02d}" for i in range(users)]


def generate(root: Path, users: int = 30, seed: int = 7, total_mb: float = 250.0) -> dict:
    """Write the data root; returns {"files": n, "bytes": n, "users": [...]}."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    text = _Text(rng)
    names = user_names(users)
    weights = 1.0 / np.arange(1, users + 1) ** 1.1
    weights = weights / weights.sum()
    per_doc = 64_000  # bytes of store files per document, measured on this generator
    total = 0
    for name, w in zip(names, weights, strict=True):
        n_docs = max(23, int(total_mb * 1e6 * w / per_doc))
        total += _user(root / name, rng, text, n_docs)
    files = sum(1 for p in root.rglob("*") if p.is_file())
    return {"files": files, "bytes": total, "users": names}


_DESC = re.compile(r'(<data key="d[12]">)([^<]*)(</data>)')


def _edit_words(rng: np.random.Generator, text: _Text, s: str) -> str:
    words = s.split(" ")
    if len(words) < 3:
        return s + " " + text.words(1)
    i = int(rng.integers(0, len(words)))
    words[i:i + 2] = text.words(2).split(" ")
    return " ".join(words)


def _edit_file(path: Path, rng: np.random.Generator, text: _Text, frac: float) -> None:
    name = path.name
    if name.endswith(".graphml"):
        s = path.read_text()
        out = []
        pos = 0
        for m in _DESC.finditer(s):
            if rng.random() < frac:
                out.append(s[pos:m.start(2)])
                out.append(_edit_words(rng, text, m.group(2)))
                pos = m.end(2)
        out.append(s[pos:])
        path.write_text("".join(out))
    elif name.startswith("vdb_"):
        doc = json.loads(path.read_text())
        m = np.frombuffer(base64.b64decode(doc["matrix"]), dtype=np.float32).reshape(-1, DIM).copy()
        for i in range(len(doc["data"])):
            if rng.random() < frac:
                m[i] = rng.standard_normal(DIM, dtype=np.float32)
                doc["data"][i]["content"] = _edit_words(rng, text, doc["data"][i]["content"])
        doc["matrix"] = base64.b64encode(m.tobytes()).decode()
        _dump(path, doc)
    elif name.endswith(".json"):
        doc = json.loads(path.read_text())
        for v in doc.values():
            if rng.random() < frac and isinstance(v, dict):
                for k in ("content", "return", "content_summary"):
                    if isinstance(v.get(k), str):
                        v[k] = _edit_words(rng, text, v[k])
                        break
                else:
                    v["update_time"] = int(v.get("update_time", 0)) + 1
        _dump(path, doc)
    else:
        lines = path.read_text().split("\n")
        for i in range(len(lines)):
            if rng.random() < max(frac, 1.0 / max(1, len(lines))):
                lines[i] = _edit_words(rng, text, lines[i])
        path.write_text("\n".join(lines))


def scatter_edits(root: Path, fraction: float = 0.05, record_fraction: float = 0.02,
                  seed: int = 11) -> list[str]:
    """Rewrite ``fraction`` of the files with ``record_fraction`` of their records edited."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    text = _Text(rng)
    files = sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
    n = max(1, round(len(files) * fraction))
    chosen = sorted(rng.choice(len(files), size=n, replace=False))
    changed = []
    for i in chosen:
        p = files[int(i)]
        _edit_file(p, rng, text, record_fraction)
        st = p.stat()
        os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
        changed.append(str(p.relative_to(root)))
    return changed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", type=Path)
    ap.add_argument("--users", type=int, default=30)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--total-mb", type=float, default=250.0)
    ap.add_argument("--edit", action="store_true", help="apply scattered edits to ROOT instead")
    a = ap.parse_args()
    if a.edit:
        print(json.dumps({"changed": scatter_edits(a.root, seed=a.seed)}))
    else:
        print(json.dumps(generate(a.root, a.users, a.seed, a.total_mb)))


if __name__ == "__main__":
    main()
