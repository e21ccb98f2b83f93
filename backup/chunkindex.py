"""The in-memory chunk index: chunk id -> location, in compact sorted arrays.

A Python dict of ``bytes -> Loc`` costs about 420 bytes of RSS per chunk; at an 8 KiB average
chunk, 100 GB of LightRAG data is about 12 million chunks, so 5 GB. Here a chunk costs 36 bytes:

- its key, the first 24 bytes of the chunk id (a keyed BLAKE3 hash, so nobody without the
  repository key can choose ids, and 192 bits leave collisions out of reach: about 1e-44 for
  12 million chunks), as one sorted ``uint64`` (searched) and two more ``uint64``;
- a block number (``uint32``) into a table of (pack, block offset, block length): the chunks of
  one compressed block share a row;
- the chunk's offset inside the decompressed block and its length (``uint32`` each).

Entries arrive in batches (an index file, a finished pack) as numpy arrays, never as a Python
object per entry. A batch becomes a sorted *run*; runs are merged when the newest is at least as
large as the one before it, so there are about log2(n) runs at most and each entry is re-sorted
O(log n) times (as in an LSM tree). Lookups binary-search each run. Every entry is kept (a chunk
stored in two packs, after an interrupted prune, is listed for both); a lookup answers with the
location added first. Reads check each chunk's full id against its data (the hash, or the AEAD
tag when encrypted), so a key never serves wrong data.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterable

import numpy as np

from lightkeeper.backup.index import ENTRY, ENTRY_DTYPE, Loc

KEY_LEN = 24
BYTES_PER_CHUNK = 8 + 16 + 4 + 4 + 4  # k0, (k1, k2), block, inner, length

_BE8 = np.dtype(">u8")
_ENTRY = np.dtype(ENTRY_DTYPE)


def _trim_heap() -> None:
    """Give the heap space the sorts freed back to the system (glibc keeps large freed blocks
    once its mmap threshold has grown; the index is built once and kept)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc: nothing to trim


def key(cid: bytes) -> bytes:
    """The index key of a chunk id (its first 24 bytes); a key passes through unchanged."""
    return bytes(cid[:KEY_LEN])


class _Run:
    """One sorted batch of entries."""

    __slots__ = ("block", "inner", "k0", "k12", "length")

    def __init__(self, k0: np.ndarray, k12: np.ndarray, block: np.ndarray, inner: np.ndarray,
                 length: np.ndarray, presorted: bool = False) -> None:
        if not presorted:  # stable: among equal keys the earlier entry stays first
            order = np.lexsort((k12[:, 1], k12[:, 0], k0))
            k0, k12, block, inner, length = (k0[order], k12[order], block[order], inner[order],
                                             length[order])
        self.k0, self.k12, self.block, self.inner, self.length = k0, k12, block, inner, length

    def __len__(self) -> int:
        return len(self.k0)

    def find(self, k0: np.uint64, k1: np.uint64, k2: np.uint64) -> int:
        """First row holding the key, or -1."""
        row = int(np.searchsorted(self.k0, k0, "left"))
        n = len(self.k0)
        while row < n and self.k0[row] == k0:
            if self.k12[row, 0] == k1 and self.k12[row, 1] == k2:
                return row
            row += 1
        return -1

    @staticmethod
    def merge(a: _Run, b: _Run) -> _Run:
        """One run from two, which are consumed; among equal keys the entries of ``a`` (added
        earlier) come first. Column by column, each input freed as soon as it is copied, so
        the peak stays near one copy of the index plus one column (not three copies)."""
        cols: dict[str, np.ndarray] = {}
        for name in ("k0", "k12", "block", "inner", "length"):
            cols[name] = np.concatenate((getattr(a, name), getattr(b, name)))
            delattr(a, name)
            delattr(b, name)
        order = np.lexsort((cols["k12"][:, 1], cols["k12"][:, 0], cols["k0"]))  # stable
        for name in cols:
            cols[name] = cols[name][order]
        del order
        return _Run(cols["k0"], cols["k12"], cols["block"], cols["inner"], cols["length"],
                    presorted=True)

    def distinct(self) -> int:
        if len(self.k0) < 2:
            return len(self.k0)
        same = ((self.k0[1:] == self.k0[:-1]) & (self.k12[1:, 0] == self.k12[:-1, 0])
                & (self.k12[1:, 1] == self.k12[:-1, 1]))
        return len(self.k0) - int(same.sum())


class ChunkIndex:
    """Mapping-like: ``cid in idx``, ``idx.get(cid)``, ``idx[cid]``, ``len(idx)``; ``cid`` may
    be a full id or a key. Full ids of every entry are in the index files (prune and verify read
    them from there: ``Repository.pack_entries``)."""

    def __init__(self) -> None:
        self._runs: list[_Run] = []
        self._packs: list[str] = []
        self._pack_no: dict[str, int] = {}
        # blocks table: pack number, block offset, block length (grown by doubling)
        self._blocks = np.zeros((0, 3), dtype=np.uint32)
        self._nblocks = 0
        self._len: int | None = 0

    # -- building ----------------------------------------------------------------------
    def _pack_numbers(self, packs: list[str]) -> np.ndarray:
        out = np.empty(len(packs), dtype=np.uint32)
        for i, pack in enumerate(packs):
            pno = self._pack_no.get(pack)
            if pno is None:
                pno = self._pack_no[pack] = len(self._packs)
                self._packs.append(pack)
            out[i] = pno
        return out

    def _add_blocks(self, triples: np.ndarray) -> np.ndarray:
        """Block numbers for (pack number, offset, length) rows, adding the new blocks."""
        uniq, inverse = np.unique(triples, axis=0, return_inverse=True)
        need = self._nblocks + len(uniq)
        if need > len(self._blocks):
            grown = np.zeros((max(1024, 2 * need), 3), dtype=np.uint32)
            grown[:self._nblocks] = self._blocks[:self._nblocks]
            self._blocks = grown
        self._blocks[self._nblocks:need] = uniq
        first = self._nblocks
        self._nblocks = need
        return (inverse.reshape(-1).astype(np.uint32) + np.uint32(first))

    def add_entries(self, packs: list[str], entries: np.ndarray) -> None:
        """Add an index file's entries: ``entries`` has the fields of ``index.ENTRY_DTYPE``,
        its ``pack`` field numbering ``packs``."""
        n = len(entries)
        if n == 0:
            return
        ids = np.ascontiguousarray(entries["id"][:, :KEY_LEN]).view(_BE8).reshape(n, 3)
        pno = self._pack_numbers(packs)[entries["pack"]]
        triples = np.stack((pno, entries["boff"].astype(np.uint32),
                            entries["blen"].astype(np.uint32)), axis=1)
        block = self._add_blocks(triples)
        self._runs.append(_Run(ids[:, 0].astype(np.uint64), ids[:, 1:].astype(np.uint64),
                               block, entries["inner"].astype(np.uint32),
                               entries["length"].astype(np.uint32)))
        while len(self._runs) > 1 and len(self._runs[-1]) >= len(self._runs[-2]):
            b = self._runs.pop()
            a = self._runs.pop()
            self._runs.append(_Run.merge(a, b))
        self._len = None

    def add_pack(self, pack: str, entries: Iterable[tuple[bytes, int, int, int, int]]) -> None:
        """Add one pack's entries: (chunk id, block offset, block length, inner offset,
        length), as a pack writer reports them."""
        raw = b"".join(ENTRY.pack(bytes(cid), 0, boff, blen, inner, length)
                       for cid, boff, blen, inner, length in entries)
        self.add_entries([pack], np.frombuffer(raw, dtype=_ENTRY))

    # -- lookups -----------------------------------------------------------------------
    def _locate(self, cid: bytes) -> tuple[_Run, int] | None:
        k = bytes(cid[:KEY_LEN])
        if len(k) != KEY_LEN:
            return None
        k0, k1, k2 = (np.uint64(int.from_bytes(k[i:i + 8], "big")) for i in (0, 8, 16))
        for run in self._runs:  # older runs first: the location added first wins
            row = run.find(k0, k1, k2)
            if row >= 0:
                return run, row
        return None

    def _loc(self, run: _Run, row: int) -> Loc:
        pno, off, blen = self._blocks[run.block[row]].tolist()
        return Loc(self._packs[pno], off, blen, int(run.inner[row]), int(run.length[row]))

    def contains_many(self, cids: list[bytes]) -> np.ndarray:
        """``[cid in self for cid in cids]`` as one vectorised search per run (the backup's
        hot path asks for a file's chunks at once)."""
        n = len(cids)
        found = np.zeros(n, dtype=bool)
        if not n or not self._runs:
            return found
        keys = np.frombuffer(b"".join(bytes(c[:KEY_LEN]).ljust(KEY_LEN, b"\0") for c in cids),
                             dtype=_BE8).reshape(n, 3).astype(np.uint64)
        k0, k1, k2 = keys[:, 0], keys[:, 1], keys[:, 2]
        for run in self._runs:
            lo = np.searchsorted(run.k0, k0, "left")
            hi = np.searchsorted(run.k0, k0, "right")
            span = hi - lo
            one = np.nonzero((span == 1) & ~found)[0]
            if len(one):
                rows = lo[one]
                found[one] = (run.k12[rows, 0] == k1[one]) & (run.k12[rows, 1] == k2[one])
            for i in np.nonzero((span > 1) & ~found)[0]:  # 64-bit prefix shared: rare
                found[i] = run.find(k0[i], k1[i], k2[i]) >= 0
        return found

    def get_many(self, cids: list[bytes]) -> list[Loc | None]:
        """``[self.get(cid) for cid in cids]`` as one vectorised search per run (a restore
        resolves a batch of files' chunks at once instead of one scalar search per chunk)."""
        n = len(cids)
        if not n or not self._runs:
            return [None] * n
        keys = np.frombuffer(b"".join(bytes(c[:KEY_LEN]).ljust(KEY_LEN, b"\0") for c in cids),
                             dtype=_BE8).reshape(n, 3).astype(np.uint64)
        k0, k1, k2 = keys[:, 0], keys[:, 1], keys[:, 2]
        out: list[Loc | None] = [None] * n
        todo = np.fromiter((len(c) >= KEY_LEN for c in cids), dtype=bool, count=n)
        for run in self._runs:  # older runs first: the location added first wins
            if not todo.any():
                break
            lo = np.searchsorted(run.k0, k0, "left")
            hi = np.searchsorted(run.k0, k0, "right")
            span = hi - lo
            one = np.nonzero((span == 1) & todo)[0]
            if len(one):
                rows = lo[one]
                hit = (run.k12[rows, 0] == k1[one]) & (run.k12[rows, 1] == k2[one])
                idx, rows = one[hit], rows[hit]
                blocks = self._blocks[run.block[rows]].tolist()
                for i, (pno, off, blen), inner, length in zip(
                        idx.tolist(), blocks, run.inner[rows].tolist(),
                        run.length[rows].tolist(), strict=True):
                    out[i] = Loc(self._packs[pno], off, blen, inner, length)
                todo[idx] = False
            for i in np.nonzero((span > 1) & todo)[0].tolist():  # 64-bit prefix shared: rare
                row = run.find(k0[i], k1[i], k2[i])
                if row >= 0:
                    out[i] = self._loc(run, row)
                    todo[i] = False
        return out

    def compact(self) -> None:
        """Merge every run into one (after loading: lookups then search once)."""
        while len(self._runs) > 1:
            b = self._runs.pop()
            a = self._runs.pop()
            self._runs.append(_Run.merge(a, b))
        _trim_heap()

    def __contains__(self, cid: object) -> bool:
        return isinstance(cid, (bytes, bytearray, memoryview)) and \
            self._locate(bytes(cid)) is not None

    def get(self, cid: bytes, default: Loc | None = None) -> Loc | None:
        found = self._locate(cid)
        return self._loc(*found) if found else default

    def __getitem__(self, cid: bytes) -> Loc:
        found = self._locate(cid)
        if found is None:
            raise KeyError(cid)
        return self._loc(*found)

    def packs_of(self, ids: bytes | bytearray, id_len: int) -> tuple[set[str], int]:
        """The packs holding the chunks whose ids are concatenated in ``ids`` (``id_len`` bytes
        each, as a content list stores them), and the position of one chunk no index lists
        (-1 when every one is found): which packs a snapshot needs, in one vectorised search
        per run and without a location object per chunk (a sync asks it of every chunk)."""
        if id_len < KEY_LEN or len(ids) % id_len:
            raise ValueError(f"{len(ids)} bytes are not a list of {id_len}-byte ids")
        n = len(ids) // id_len
        if not n:
            return set(), -1
        raw = np.frombuffer(bytes(ids), dtype=np.uint8).reshape(n, id_len)[:, :KEY_LEN]
        keys = np.ascontiguousarray(raw).view(_BE8).reshape(n, 3).astype(np.uint64)
        k0, k1, k2 = keys[:, 0], keys[:, 1], keys[:, 2]
        pno = np.full(n, -1, dtype=np.int64)
        todo = np.ones(n, dtype=bool)
        for run in self._runs:  # older runs first: the location added first wins
            if not todo.any():
                break
            lo = np.searchsorted(run.k0, k0, "left")
            hi = np.searchsorted(run.k0, k0, "right")
            span = hi - lo
            one = np.nonzero((span == 1) & todo)[0]
            if len(one):
                rows = lo[one]
                hit = (run.k12[rows, 0] == k1[one]) & (run.k12[rows, 1] == k2[one])
                idx, rows = one[hit], rows[hit]
                pno[idx] = self._blocks[run.block[rows], 0]
                todo[idx] = False
            for i in np.nonzero((span > 1) & todo)[0].tolist():  # 64-bit prefix shared: rare
                row = run.find(k0[i], k1[i], k2[i])
                if row >= 0:
                    pno[i] = int(self._blocks[run.block[row], 0])
                    todo[i] = False
        lacking = np.nonzero(pno < 0)[0]
        packs = {self._packs[p] for p in np.unique(pno[pno >= 0]).tolist()}
        return packs, (int(lacking[0]) if len(lacking) else -1)

    def __len__(self) -> int:
        """Distinct chunks (a chunk stored in two packs counts once)."""
        if self._len is None:
            self.compact()
            self._len = self._runs[0].distinct() if self._runs else 0
        return self._len

    def nbytes(self) -> int:
        """Bytes held by the arrays (the per-chunk cost; the block table is shared)."""
        return sum(r.k0.nbytes + r.k12.nbytes + r.block.nbytes + r.inner.nbytes +
                   r.length.nbytes for r in self._runs) + self._nblocks * 12
