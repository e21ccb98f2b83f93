"""A second benchmark data set, unlike the LightRAG-shaped demo corpus (``bench/datagen.py``):
per user, many small JSON documents and a few large GraphML files.

``generate(root, users=30, seed=11, total_mb=250)`` writes, per user, a tree of small JSON
records (``records/NN/rec-NNNNN.json``, 0.5-12 KB each: nested objects, lists of numbers,
short texts; about 30 % of the bytes) and 2-4 GraphML graphs of 0.5-25 MB (the rest), with
the same skew of user sizes as a real server (the largest user about 10x the median). At the
defaults that is about 250 MB in about 15,000 files. Deterministic for a given seed.
``bench.datagen.scatter_edits`` works on it too (it rewrites JSON records and GraphML
descriptions in place).

Run: ``python -m bench.datagen_mixed ROOT [--users 30] [--seed 11] [--total-mb 250]``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from bench.datagen import _SYL

JSON_SHARE = 0.30      # of each user's bytes
JSON_MEAN = 5_000      # bytes per JSON record on average
KINDS = ("note", "ticket", "contact", "event", "measurement", "invoice")


class _Words:
    """Fast pseudo-text: words drawn (Zipf-like) in one numpy call per request."""

    def __init__(self, rng: np.random.Generator, n: int = 4000) -> None:
        words: set[str] = set()
        while len(words) < n:
            k = int(rng.integers(1, 4))
            words.add("".join(_SYL[int(i)] for i in rng.integers(0, len(_SYL), k)))
        self.vocab = np.array(sorted(words))
        p = 1.0 / np.arange(1, n + 1) ** 1.1
        self.p = p / p.sum()
        self.rng = rng

    def text(self, nchars: int) -> str:
        n = max(1, nchars // 6)
        return " ".join(self.vocab[self.rng.choice(len(self.vocab), size=n, p=self.p)])

    def many(self, count: int, nchars: int) -> list[str]:
        """``count`` texts of about ``nchars`` characters each (one draw for all)."""
        per = max(1, nchars // 6)
        idx = self.rng.choice(len(self.vocab), size=count * per, p=self.p)
        flat = self.vocab[idx].reshape(count, per)
        return [" ".join(row) for row in flat]


def _record(rng: np.random.Generator, words: _Words, i: int, size: int) -> dict:
    kind = KINDS[i % len(KINDS)]
    n_vals = max(1, size // 40)
    return {
        "id": f"{kind}-{i:06d}-{rng.bytes(6).hex()}",
        "kind": kind,
        "created": 1_750_000_000 + int(rng.integers(0, 10_000_000)),
        "tags": words.text(30).split(" ")[:4],
        "owner": {"name": words.text(14).title(), "team": words.text(8)},
        "values": [round(float(v), 4) for v in rng.standard_normal(n_vals)],
        "body": words.text(max(20, size // 2)),
        "links": [f"rec-{int(j):05d}" for j in rng.integers(0, 10_000, int(rng.integers(0, 6)))],
    }


def _graphml(path: Path, rng: np.random.Generator, words: _Words, size: int) -> int:
    """A GraphML file of about ``size`` bytes (nodes with labels and descriptions, weighted
    edges), written in one piece."""
    n_nodes = max(20, size // 900)
    n_edges = int(n_nodes * 1.5)
    names = [f"n{i}" for i in range(n_nodes)]
    labels = words.many(n_nodes, 24)
    descs = words.many(n_nodes, 360)
    edesc = words.many(n_edges, 200)
    ends = rng.integers(0, n_nodes, (n_edges, 2))
    weights = rng.random(n_edges)
    parts = ["<?xml version='1.0' encoding='utf-8'?>\n",
             '<graphml xmlns="http://graphml.graphdrawing.org/xmlns">\n',
             '  <key id="d0" for="node" attr.name="label" attr.type="string" />\n',
             '  <key id="d1" for="node" attr.name="description" attr.type="string" />\n',
             '  <key id="d2" for="edge" attr.name="description" attr.type="string" />\n',
             '  <key id="d3" for="edge" attr.name="weight" attr.type="double" />\n',
             '  <graph edgedefault="directed">\n']
    for name, label, desc in zip(names, labels, descs, strict=True):
        parts.append(f'    <node id="{name}">\n      <data key="d0">{label}</data>\n'
                     f'      <data key="d1">{desc}</data>\n    </node>\n')
    for (a, b), desc, w in zip(ends, edesc, weights, strict=True):
        parts.append(f'    <edge source="n{a}" target="n{b}">\n'
                     f'      <data key="d2">{desc}</data>\n'
                     f'      <data key="d3">{w:.5f}</data>\n    </edge>\n')
    parts.append("  </graph>\n</graphml>\n")
    body = "".join(parts).encode()
    path.write_bytes(body)
    return len(body)


def _user(udir: Path, rng: np.random.Generator, words: _Words, nbytes: float) -> tuple[int, int]:
    files = total = 0
    n_json = max(40, int(nbytes * JSON_SHARE / JSON_MEAN))
    for i in range(n_json):
        d = udir / "records" / f"{i // 200:02d}"
        if i % 200 == 0:
            d.mkdir(parents=True, exist_ok=True)
        size = int(min(12_000, max(500, rng.lognormal(np.log(JSON_MEAN * 0.8), 0.6))))
        body = json.dumps(_record(rng, words, i, size), indent=1).encode()
        (d / f"rec-{i:05d}.json").write_bytes(body)
        files += 1
        total += len(body)
    n_graphs = int(rng.integers(2, 5))
    shares = rng.dirichlet(np.ones(n_graphs))
    gdir = udir / "graphs"
    gdir.mkdir(parents=True, exist_ok=True)
    for g, share in enumerate(shares):
        total += _graphml(gdir / f"graph-{g}.graphml", rng, words,
                          int(max(200_000, nbytes * (1 - JSON_SHARE) * share)))
        files += 1
    return files, total


def generate(root: Path, users: int = 30, seed: int = 11, total_mb: float = 250.0) -> dict:
    """Write the data root; returns {"files": n, "bytes": n, "users": [...]}."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    words = _Words(rng)
    names = [f"acct{i:02d}" for i in range(users)]
    weights = 1.0 / np.arange(1, users + 1) ** 0.9
    weights = weights / weights.sum()
    files = total = 0
    for name, w in zip(names, weights, strict=True):
        f, b = _user(root / name, rng, words, total_mb * 1e6 * float(w))
        files += f
        total += b
    return {"files": files, "bytes": total, "users": names}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", type=Path)
    ap.add_argument("--users", type=int, default=30)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--total-mb", type=float, default=250.0)
    a = ap.parse_args()
    print(json.dumps(generate(a.root, a.users, a.seed, a.total_mb)))


if __name__ == "__main__":
    main()
