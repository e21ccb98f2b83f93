"""What the chunk index costs in memory, on a synthetic repository (index files only: the packs
they list are not needed to load the index).

Writes N chunk entries (default 12 million, as for 100 GB of data at an 8 KiB average chunk) as
real, encrypted index files of a real repository, then opens the repository in a fresh process
and loads the index. Prints the RSS the index adds per chunk and the process's peak, next to
the dict of chunk id -> location the repository used before (measured on a sample and scaled).

    .venv/bin/python bench/index_memory.py [--chunks 12000000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, os, resource, sys, time
from pathlib import Path
from lightkeeper.backup.repository import Repository

def rss():
    for line in open(f"/proc/{os.getpid()}/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) * 1024

repo = Repository.open(Path(sys.argv[1]), Path(sys.argv[2]))
before = rss()
t0 = time.perf_counter()
repo.load_index()
n = len(repo.index)
load_s = time.perf_counter() - t0
after = rss()
t0 = time.perf_counter()
hits = 0
sample = json.loads(Path(sys.argv[3]).read_text())
for cid in sample:
    hits += bytes.fromhex(cid) in repo.index
lookup_us = (time.perf_counter() - t0) / max(1, len(sample)) * 1e6
print(json.dumps({"chunks": n, "index_rss": after - before, "load_s": load_s,
                  "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                  "lookup_us": lookup_us, "hits": hits, "arrays": repo.index.nbytes()}))
"""

DICT_CHILD = r"""
import json, os, sys
from lightkeeper.backup.index import Loc
def rss():
    for line in open(f"/proc/{os.getpid()}/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) * 1024
n = int(sys.argv[1]); pid = os.urandom(32).hex()
before = rss(); idx = {}; entries = []
for i in range(n):
    cid = os.urandom(32); loc = Loc(pid, (i // 32) * 262144, 262144 + i % 7, (i % 32) * 8192,
                                    8192 + i % 1000)
    idx[cid] = loc; entries.append((cid, loc))
print(json.dumps({"per_chunk": (rss() - before) / n}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chunks", type=int, default=12_000_000)
    ap.add_argument("--per-pack", type=int, default=1000, help="chunks per 8 MiB pack")
    ap.add_argument("--per-index", type=int, default=200_000, help="entries per index file")
    args = ap.parse_args()

    from lightkeeper.backup.index import PackInfo
    from lightkeeper.backup.repository import Repository

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        key = root / "keys" / "repo.key"
        repo = Repository.init(root / "repo", key)
        t0 = time.perf_counter()
        sample: list[str] = []
        batch: list[PackInfo] = []
        count = 0
        written = 0
        while written < args.chunks:
            n = min(args.per_pack, args.chunks - written)
            ids = os.urandom(32 * n)
            entries = []
            for i in range(n):
                block = i // 32
                entries.append((ids[32 * i:32 * i + 32], block * 262_144, 262_144 + block % 7,
                                (i % 32) * 8192, 8192))
            if len(sample) < 20_000:
                sample += [e[0].hex() for e in entries[:50]]
            batch.append(PackInfo(os.urandom(32).hex(), 8 << 20, entries))
            count += n
            written += n
            if count >= args.per_index:
                repo.write_index(batch)
                batch, count = [], 0
        if batch:
            repo.write_index(batch)
        repo.close()
        gen_s = time.perf_counter() - t0
        index_bytes = sum(p.stat().st_size for p in (root / "repo" / "index").iterdir())
        (root / "sample.json").write_text(json.dumps(sample[:20_000]))
        out = subprocess.run([sys.executable, "-c", CHILD, str(root / "repo"), str(key),
                              str(root / "sample.json")],
                             check=True, capture_output=True, text=True).stdout
        r = json.loads(out)
    ref_n = min(args.chunks, 500_000)
    ref = json.loads(subprocess.run([sys.executable, "-c", DICT_CHILD, str(ref_n)], check=True,
                                    capture_output=True, text=True).stdout)
    per = r["index_rss"] / r["chunks"]
    print(f"== chunk index memory, {r['chunks']:,} chunks "
          f"({r['chunks'] * 8192 / 1e9:.0f} GB of data at an 8 KiB average chunk)")
    print(f"index files on disk: {index_bytes / 1e6:.0f} MB (generated in {gen_s:.0f} s)")
    print(f"compact index:  {per:6.1f} bytes of RSS per chunk (arrays {r['arrays'] / r['chunks']:.1f}"
          f" B/chunk), load {r['load_s']:.1f} s, peak RSS {r['peak_rss'] / 2**20:.0f} MiB, "
          f"lookup {r['lookup_us']:.1f} us ({r['hits']} of {len(sample[:20_000])} hit)")
    print(f"reference: dict of id -> Loc (before): {ref['per_chunk']:6.1f} bytes per chunk "
          f"(measured on {ref_n:,}; {ref['per_chunk'] * r['chunks'] / 2**30:.1f} GiB at "
          f"{r['chunks']:,})")
    print("goal: <= 40 bytes per chunk, peak < 1 GiB at 12 million chunks")


if __name__ == "__main__":
    main()
