"""The compact chunk index answers exactly as a dict of chunk id -> location would, costs a
fixed number of bytes per chunk, and keeps every entry prune and verify need."""

from __future__ import annotations

import random
from pathlib import Path

from lightkeeper.backup.chunkindex import BYTES_PER_CHUNK, ChunkIndex, key
from lightkeeper.backup.index import Loc, PackInfo
from lightkeeper.backup.repository import Repository


def _pack(rng: random.Random, n: int, ids: list[bytes] | None = None
          ) -> tuple[str, list[tuple[bytes, int, int, int, int]]]:
    pack = rng.randbytes(32).hex()
    entries = []
    for i in range(n):
        cid = ids[i] if ids else rng.randbytes(32)
        block = i // 7
        entries.append((cid, block * 300_000, 250_000 + block, (i % 7) * 9000,
                        rng.randrange(1, 70_000)))
    return pack, entries


def test_lookups_match_a_dict_across_many_runs() -> None:
    rng = random.Random(7)
    idx = ChunkIndex()
    ref: dict[bytes, Loc] = {}
    for _ in range(40):  # forty batches: runs are merged as they grow
        pack, entries = _pack(rng, rng.randrange(1, 300))
        idx.add_pack(pack, entries)
        for cid, boff, blen, inner, length in entries:
            ref.setdefault(cid, Loc(pack, boff, blen, inner, length))
    assert len(idx) == len(ref)
    for cid, loc in ref.items():
        assert cid in idx and idx[cid] == loc and idx.get(cid) == loc
        assert idx.get(key(cid)) == loc  # a 24-byte key finds it too
    others = [rng.randbytes(32) for _ in range(500)]
    for other in others:
        assert other not in idx and idx.get(other) is None
    mixed = others[:100] + list(ref)[:300]
    assert idx.contains_many(mixed).tolist() == [False] * 100 + [True] * 300
    assert b"short" not in idx and 42 not in idx
    # the batch lookup a restore uses answers as one get() per id, misses and short ids too
    batch = [*list(ref)[:200], *others[:50], b"short", key(list(ref)[5])]
    rng.shuffle(batch)
    assert idx.get_many(batch) == [idx.get(c) for c in batch]
    assert idx.get_many([]) == [] and ChunkIndex().get_many(batch[:3]) == [None] * 3
    # the packs a sync needs, from concatenated ids as a content list stores them
    found = list(ref)[:300]
    packs, lacking = idx.packs_of(b"".join(found), 32)
    assert packs == {ref[c].pack for c in found} and lacking == -1
    packs, lacking = idx.packs_of(b"".join([*found[:10], others[0], *found[10:20]]), 32)
    assert packs == {ref[c].pack for c in found[:20]} and lacking == 10
    assert idx.packs_of(b"", 32) == (set(), -1)
    assert ChunkIndex().packs_of(b"".join(found[:3]), 32) == (set(), 0)
    assert len(idx._runs) <= 8  # merged as they grow: about log2(batches)
    assert idx.nbytes() <= BYTES_PER_CHUNK * len(ref) + idx._blocks.nbytes


def test_a_chunk_stored_twice_is_served_from_the_first_pack_and_counted_once() -> None:
    rng = random.Random(8)
    shared = [rng.randbytes(32) for _ in range(50)]
    first, e1 = _pack(rng, 50, shared)
    second, e2 = _pack(rng, 50, shared)
    idx = ChunkIndex()
    idx.add_pack(first, e1)
    for _ in range(5):
        p, e = _pack(rng, 20)
        idx.add_pack(p, e)
    idx.add_pack(second, e2)
    assert len(idx) == 50 + 100
    assert all(idx[c].pack == first for c in shared)
    assert idx.contains_many(shared).all()
    assert all(loc is not None and loc.pack == first for loc in idx.get_many(shared))
    assert idx.packs_of(b"".join(shared), 32) == ({first}, -1)


def test_repository_pack_entries_keep_full_ids(tmp_path: Path) -> None:
    rng = random.Random(9)
    repo = Repository.init(tmp_path / "repo", tmp_path / "keys" / "repo.key")
    packs = []
    for _ in range(3):
        pack, entries = _pack(rng, 30)
        packs.append(PackInfo(pack, 123, entries))
    repo.write_index(packs)
    reopened = Repository.open(tmp_path / "repo", tmp_path / "keys" / "repo.key")
    entries = reopened.pack_entries()
    assert set(entries) == {p.pack for p in packs}
    for p in packs:
        assert [cid for cid, _ in entries[p.pack]] == [e[0] for e in p.entries]
        for cid, loc in entries[p.pack]:
            assert len(cid) == 32 and reopened.index[cid] == loc
    assert reopened.stats()["chunks"] == 90
